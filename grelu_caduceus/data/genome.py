"""A lazy genome window dataset: one-hot windows read from a FASTA file on demand.

Nothing is loaded up front: the dataset stores interval arithmetic (which windows exist) and reads
each window through pyfaidx when it is asked for, so memory does not grow with the genome, and
windows of 131,072 bp or more cost only their own size.

Windows come from one of three sources:

* ``intervals``: a BED file or DataFrame; each interval, resized around its centre to ``seq_len``,
  is one item. An interval outside its chromosome is an error naming its row; a window that runs
  past an end only because of the resizing is padded with N, and a warning counts such windows.
* sliding windows (the default): every ``stride`` bp over the chosen chromosomes or ``regions``.
* random windows: ``n_random`` windows per epoch, uniformly over all valid window positions.

Items are float32 one-hot tensors of shape (4, seq_len) in gReLU's layout: rows A, C, G, T; any
other base (N, IUPAC codes) is an all-zero column; lower-case (soft-masked) bases count as normal.

Readers that hold a fixed set of windows (``grelu-caduceus predict``, Kipoi, training tables, vep)
apply :func:`clean_sequence` to each and count its fix-ups with :class:`WindowTally`: IUPAC codes
read as N, all-N windows, windows padded with N, each in one warning; any other character is an error.
With ``intervals`` and ``check_letters=True`` this dataset does the same at construction, in one
chunked pass over the FASTA that keeps nothing (the FASTA-backed training tables are served this way).

Example::

    train = GenomeWindowDataset("hg19.fa.gz", seq_len=131_072, n_random=10_000, max_n_frac=0.1,
                                splits={"val": ["chr8"], "test": ["chr9"]}, split="train",
                                rc_prob=0.5, max_shift=64)
    val = GenomeWindowDataset("hg19.fa.gz", seq_len=131_072, stride=131_072, max_n_frac=0.1,
                              splits={"val": ["chr8"], "test": ["chr9"]}, split="val")
    x = train[0]  # torch.float32, (4, 131072)
"""

from __future__ import annotations

import difflib
import gzip
import hashlib
import os
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Sequence, Union

import numpy as np
import pandas as pd
import torch
from torch.utils.data import Dataset

from ..errors import InputWarning
from .intervals import centred_starts

IntervalSource = Union[str, os.PathLike, pd.DataFrame]
SPLIT_NAMES = ("train", "val", "test")
SCAN_CHUNK = 1 << 20  # bases read at a time when looking for N runs


class GenomeDataError(ValueError):
    """A user mistake with genome data (missing file, wrong chromosome name, bad interval ...)."""


# --------------------------------------------------------------------------- one-hot encoding
# Byte -> index: A/a=0, C/c=1, G/g=2, T/t=3, anything else 4 (an all-zero column).
_BASE_INDEX = np.full(256, 4, dtype=np.uint8)
for _i, _base in enumerate("ACGT"):
    _BASE_INDEX[ord(_base)] = _BASE_INDEX[ord(_base.lower())] = _i
_ONE_HOT_ROWS = np.eye(5, 4, dtype=np.float32)  # row 4 (N) is all zero


def index_encode(sequence: str) -> np.ndarray:
    """DNA string (length L) -> int8 array (L,) in gReLU's index encoding: A, C, G, T (either case)
    0-3, N and any other letter 4."""
    return _BASE_INDEX[np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)].astype(np.int8)


def one_hot_encode(sequence: str) -> torch.Tensor:
    """DNA string (length L) -> float32 tensor (4, L), rows A, C, G, T; N and others all-zero."""
    indices = _BASE_INDEX[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]
    return torch.from_numpy(np.ascontiguousarray(_ONE_HOT_ROWS[indices].T))


# --------------------------------------------------------------------------- the letters of a window
# The one rule, used by every reader of windows (predict, Kipoi, training data, vep): A, C, G, T and
# N in either case are kept (upper-cased); the IUPAC ambiguity codes below, in either case, are
# read as N and counted; any other character is an error. Windows with no A/C/G/T are counted too.
IUPAC_AMBIGUITY = "RYKMSWBDHV"
_ACGT, _N, _IUPAC, _OTHER = range(4)
_LETTER_CLASS = np.full(256, _OTHER, dtype=np.uint8)
for _letters, _cls in (("ACGT", _ACGT), ("N", _N), (IUPAC_AMBIGUITY, _IUPAC)):
    for _base in _letters:
        _LETTER_CLASS[ord(_base)] = _LETTER_CLASS[ord(_base.lower())] = _cls
_AS_N = str.maketrans(IUPAC_AMBIGUITY + IUPAC_AMBIGUITY.lower() + "acgtn",
                      "N" * (2 * len(IUPAC_AMBIGUITY)) + "ACGTN")


def clean_sequence(sequence: str, where="sequence") -> tuple[str, int, bool]:
    """Apply the letter rule to one window.

    Args:
        sequence: the window's letters, as read from a FASTA or a table.
        where: names the window in the error message (e.g. "row 3 (chr1:100-300)"), or a function
            returning that name (only called for the message).

    Returns:
        (the sequence upper-cased with IUPAC codes as N, the number of IUPAC codes, whether it has
        no A/C/G/T base at all).

    Raises:
        GenomeDataError: a character that is neither A/C/G/T/N nor an IUPAC code (either case).
    """
    raw = np.frombuffer(sequence.encode("ascii", "replace"), dtype=np.uint8)
    counts = np.bincount(_LETTER_CLASS[raw], minlength=4)
    if counts[_OTHER]:
        bad = sorted({chr(c) for c in raw[_LETTER_CLASS[raw] == _OTHER].tolist()})
        shown = ", ".join(repr(c) for c in bad[:6])
        raise GenomeDataError(
            f"{where() if callable(where) else where} holds {int(counts[_OTHER])} character(s) that are not DNA letters ({shown}): a window may "
            f"hold A, C, G, T, N and the IUPAC codes {'/'.join(IUPAC_AMBIGUITY)} (read as N), in either case. "
            "Is this a protein or aligned (gapped) sequence?"
        )
    return sequence.translate(_AS_N), int(counts[_IUPAC]), bool(counts[_ACGT] == 0)


class WindowTally:
    """Reads windows through :func:`clean_sequence` and counts what was done, for one warning per kind.

    Args:
        source: what the windows come from, for the messages (e.g. "predict: peaks.bed").
        describe: row index -> text naming that window in a message (e.g. "row 3 (chr1:100-300)").

    Call :meth:`clean` on every window (``padded=True`` for a window that runs past its chromosome's
    edge and was padded with N), then :meth:`warn` once.
    """

    def __init__(self, source: str, describe=None):
        self.source, self.describe = source, describe or (lambda row: f"row {row + 1}")
        self.n = self.iupac_codes = 0
        self.rows: dict[str, list[int]] = {"padded": [], "iupac": [], "all_n": []}

    def clean(self, sequence: str, row: int, padded: bool = False) -> str:
        cleaned, n_iupac, all_n = clean_sequence(sequence, lambda: self.describe(row))
        self.n += 1
        self.iupac_codes += n_iupac
        for kind, flag in (("padded", padded), ("iupac", n_iupac), ("all_n", all_n)):
            if flag:
                self.rows[kind].append(row)
        return cleaned

    def count(self, n: int, padded_rows=(), iupac_rows=(), iupac_codes: int = 0, all_n_rows=()) -> None:
        """Count ``n`` windows that are read elsewhere (lazily): ``padded_rows`` are padded with N,
        ``iupac_rows`` hold ``iupac_codes`` IUPAC codes in all, ``all_n_rows`` have no A/C/G/T (rows in
        increasing order)."""
        self.n += int(n)
        self.iupac_codes += int(iupac_codes)
        for kind, rows in (("padded", padded_rows), ("iupac", iupac_rows), ("all_n", all_n_rows)):
            self.rows[kind].extend(int(r) for r in rows)

    def messages(self, seq_len: int | None = None) -> list[str]:
        """One line per kind of fix-up seen: what was done, to how many windows, and the first one."""
        out = []
        rows = self.rows

        def head(kind: str, singular: str, plural: str) -> str:
            k = len(rows[kind])
            return f"{self.source}: {k} of {self.n} window{'s' if self.n != 1 else ''} {singular if k == 1 else plural}"

        def first(kind: str) -> str:
            return f"(first: {self.describe(rows[kind][0])})"

        if rows["padded"]:
            length = f" in {seq_len} bp windows" if seq_len else ""
            out.append(f"{head('padded', 'runs', 'run')} past a chromosome end only because of centring{length}; "
                       f"the bases beyond the end are padded with N {first('padded')}.")
        if rows["iupac"]:
            codes = f"{self.iupac_codes} IUPAC ambiguity code{'s' if self.iupac_codes != 1 else ''}"
            out.append(f"{head('iupac', 'holds', 'hold')} {codes} ({'/'.join(IUPAC_AMBIGUITY)}), read as N "
                       f"{first('iupac')}.")
        if rows["all_n"]:
            out.append(f"{head('all_n', 'is', 'are')} all-N (no A/C/G/T base), with no sequence information; kept "
                       f"as they are (drop those rows if that is not wanted) {first('all_n')}.")
        return out

    def warn(self, seq_len: int | None = None, stacklevel: int = 3) -> None:
        """Issue each message as an :class:`grelu_caduceus.errors.InputWarning`."""
        for message in self.messages(seq_len):
            warnings.warn(message, InputWarning, stacklevel=stacklevel)


# --------------------------------------------------------------------------- interval checks
def check_intervals_in_bounds(frame: pd.DataFrame, genome: "FastaGenome", source: str) -> None:
    """Every interval must name a chromosome of ``genome``, have end > start and lie wholly inside it.

    Args:
        frame: chrom, start, end (0-based, end-exclusive), one row per interval in input order.
        genome: the FASTA the intervals are read from.
        source: names the intervals in the message (e.g. "intervals file peaks.bed").

    Raises:
        GenomeDataError: naming the count and the first offending rows (1-based row number,
        chrom:start-end, the chromosome's length).
    """
    for chrom in frame.chrom.unique():
        genome.check_chrom(chrom)
    sizes = frame.chrom.map(genome.sizes).to_numpy(np.int64)
    starts, ends = frame.start.to_numpy(np.int64), frame.end.to_numpy(np.int64)

    def rows_text(mask: np.ndarray) -> str:
        return "; ".join(f"row {i + 1}: {frame.chrom.iat[i]}:{starts[i]}-{ends[i]} (chromosome length {sizes[i]})"
                         for i in np.flatnonzero(mask)[:3])

    empty = ends <= starts
    outside = ~empty & ((starts < 0) | (ends > sizes))
    problems = []  # every kind at once, each with its first rows
    if empty.any():
        problems.append(f"{int(empty.sum())} of {len(frame)} intervals have end <= start, e.g. {rows_text(empty)}. "
                        "Coordinates are 0-based and end-exclusive, so end must be larger than start.")
    if outside.any():
        problems.append(f"{int(outside.sum())} of {len(frame)} intervals lie wholly or partly outside their "
                        f"chromosome, e.g. {rows_text(outside)}. Check that the BED uses the same assembly as the "
                        "FASTA (hg19 vs hg38) and 0-based, end-exclusive coordinates, or drop or clip those rows.")
    if problems:
        raise GenomeDataError(f"{source}: " + " Also, ".join(problems))


def padded_windows(chroms, starts: np.ndarray, seq_len: int, sizes: Mapping[str, int]) -> np.ndarray:
    """Which windows [start, start + seq_len) run past their chromosome's start or end (bool array)."""
    starts = np.asarray(starts, np.int64)
    ends = starts + int(seq_len)
    limits = np.array([sizes[c] for c in chroms], np.int64)
    return (starts < 0) | (ends > limits)


# --------------------------------------------------------------------------- interval input
def read_intervals(source: IntervalSource, what: str = "intervals", keep_name: bool = False) -> pd.DataFrame:
    """A BED file (plain or .gz, with or without header) or DataFrame -> chrom, start, end[, name][, split].

    Only the first three columns of a header-less BED are used (plus a ``split`` column when a
    DataFrame or a headed file has one, and with ``keep_name`` the BED name: column 4 of a header-less
    BED, or a ``name`` column). Coordinates are 0-based, end-exclusive.
    """
    if isinstance(source, pd.DataFrame):
        frame = source.copy()
        if not {"chrom", "start", "end"} <= set(frame.columns):
            raise GenomeDataError(
                f"{what} DataFrame needs columns chrom, start, end (0-based, end-exclusive); "
                f"it has {list(frame.columns)}. Rename the columns, e.g. df.rename(columns={{...}})."
            )
    else:
        frame = _read_bed_file(Path(source), what)
    if len(frame) == 0:
        where = "DataFrame" if isinstance(source, pd.DataFrame) else f"file {source}"
        raise GenomeDataError(f"{what} {where} is empty: it has no intervals (give at least one tab-separated "
                              "chrom, start, end line).")
    columns = ["chrom", "start", "end"] + (["name"] if keep_name and "name" in frame.columns else []) + \
        (["split"] if "split" in frame.columns else [])
    frame = frame[columns].reset_index(drop=True)
    if "name" in columns:
        frame["name"] = frame["name"].fillna("").astype(str)
    where = "DataFrame" if isinstance(source, pd.DataFrame) else f"file {source}"
    numbers = {}
    for column in ("start", "end"):
        values = frame[column].astype(str).str.strip() if frame[column].dtype == object else frame[column]
        numbers[column] = pd.to_numeric(values, errors="coerce")
    bad = np.zeros(len(frame), bool)
    for values in numbers.values():
        bad |= (values.isna() | (values % 1 != 0)).to_numpy()
    if bad.any():
        rows = "; ".join(f"row {i + 1}: {frame.chrom.iat[i]} {frame.start.iat[i]!r} {frame.end.iat[i]!r}"
                         for i in np.flatnonzero(bad)[:3])
        raise GenomeDataError(f"{what} {where}: {int(bad.sum())} of {len(frame)} rows have a start or end that is "
                              f"not a whole number, e.g. {rows}. Columns 2 and 3 are 0-based integer positions.")
    frame["start"] = numbers["start"].astype(np.int64)
    frame["end"] = numbers["end"].astype(np.int64)
    frame["chrom"] = frame["chrom"].astype(str)
    return frame


def _read_bed_file(path: Path, what: str) -> pd.DataFrame:
    """Read a BED-like file: skips track/browser/# lines; a header row names the columns."""
    if not path.exists():
        raise GenomeDataError(f"{what} file not found: {path}. Pass an existing BED file or a DataFrame.")
    opener = gzip.open if path.name.endswith(".gz") else open
    n_skip, header, has_data = 0, None, False
    with opener(path, "rt") as f:
        for line in f:
            if line.startswith(("track", "browser", "#")) or not line.strip():
                n_skip += 1
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3:
                raise GenomeDataError(f"{what} file {path} needs tab-separated chrom, start, end; got {line!r}.")
            if header is None and not fields[1].strip().lstrip("-").isdigit():
                header = fields
                n_skip += 1
                continue
            has_data, n_fields = True, len(fields)
            break
    if not has_data:
        raise GenomeDataError(f"{what} file {path} is empty: it has no intervals, only "
                              f"{'a header, ' if header else ''}comments or blank lines (give at least one "
                              "tab-separated chrom, start, end line).")
    if header is not None and {"chrom", "start", "end"} <= set(header):
        names = header
    else:
        names = None
    bed_columns = ["chrom", "start", "end", "name"][:min(n_fields, 4)]  # BED's 4th column is the name
    frame = pd.read_csv(path, sep="\t", header=None, skiprows=n_skip, dtype=str, comment="#", names=names,
                        usecols=None if names else list(range(len(bed_columns))))
    if names is None:
        frame.columns = bed_columns
    return frame


# --------------------------------------------------------------------------- FASTA access
def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def _is_bgzf(path: Path) -> bool:
    """BGZF = gzip whose first member carries the 'BC' extra subfield."""
    with open(path, "rb") as f:
        head = f.read(18)
    return len(head) == 18 and head[:4] == b"\x1f\x8b\x08\x04" and head[12:14] == b"BC"


def bgzip_copy_name(path: Path) -> Path:
    """A new name beside a plain-gzip FASTA for its bgzip copy: genome.fa.gz -> genome.bgz.fa.gz (never
    ``path`` itself: ``gunzip -c X | bgzip > X`` empties X before reading it)."""
    name = path.name
    stem = name[:-3] if name.endswith(".gz") else name
    for ext in (".fa", ".fasta", ".fna"):
        if stem.endswith(ext):
            return path.with_name(f"{stem[:-len(ext)]}.bgz{ext}.gz")
    return path.with_name(f"{stem}.bgz.gz")


def default_index_cache() -> Path:
    """Folder for FASTA indexes that cannot be written beside the FASTA."""
    root = os.environ.get("GRELU_CADUCEUS_CACHE") or os.path.join(
        os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache"), "grelu_caduceus"
    )
    return Path(root) / "fasta_index"


class FastaGenome:
    """Random access to a FASTA (plain or bgzip) through pyfaidx, opened lazily per process.

    The index (.fai, plus .gzi for bgzip) is used or built beside the FASTA; when that folder is
    not writable it goes to ``index_dir`` (default: :func:`default_index_cache`). Only chromosome
    sizes are kept in memory. The pyfaidx handle is opened on first use in each process, so a
    copy sent to a DataLoader worker opens its own file.
    """

    def __init__(self, fasta: str | os.PathLike, index_dir: str | os.PathLike | None = None):
        self.path = Path(fasta).expanduser().absolute()
        if not self.path.is_file():
            from .bundled import demo_genome_fasta  # in Python: grelu_caduceus.data.demo_genome_fasta()

            raise GenomeDataError(
                f"FASTA file not found: {self.path}. Give the path of an existing .fa / .fa.gz "
                f"(bgzip) file; the bundled demo genome (hg19 chr20:40-44 Mb) is {demo_genome_fasta()}."
            )
        self.bgzf = _is_bgzf(self.path)
        if not self.bgzf and _is_gzip(self.path):
            # (in Python: grelu_caduceus.data.bgzf.bgzip_fasta(src, dst) writes the bgzip copy and its indexes)
            raise GenomeDataError(
                f"{self.path} is gzip-compressed but not with bgzip, so it cannot be read by random "
                f"access. Write a bgzip copy under a new name and use that: "
                f"`gunzip -c {self.path} | bgzip > {bgzip_copy_name(self.path)}` (htslib's bgzip), or "
                f"decompress it: `gunzip -k {self.path}` (then give {self.path.with_suffix('')})."
            )
        if self.bgzf and not self.path.name.endswith((".gz", ".bgz")):
            raise GenomeDataError(
                f"{self.path} is bgzip-compressed but its name does not end in .gz or .bgz, which "
                "pyfaidx needs to decompress it: rename it (e.g. genome.fa.gz)."
            )
        self._index_paths = self._prepare_index(Path(index_dir) if index_dir is not None else None)
        self.sizes = self._read_sizes(self._index_paths[0])
        self._faidx = None
        self._pid = None
        self._n_run_cache: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}

    # ---- index
    def _open(self, fai: Path, gzi: Path | None, rebuild: bool):
        from pyfaidx import Faidx

        kwargs = {"indexname": str(fai), "rebuild": rebuild, "as_raw": True}
        if self.bgzf:
            kwargs["gzi_indexname"] = str(gzi)
        return Faidx(str(self.path), **kwargs)

    def _index_is_fresh(self, fai: Path, gzi: Path | None) -> bool:
        mtime = self.path.stat().st_mtime
        paths = [fai] + ([gzi] if self.bgzf else [])
        return all(p.exists() and p.stat().st_mtime >= mtime for p in paths)

    def _try_build(self, fai: Path, gzi: Path | None) -> bool:
        """Open once so pyfaidx writes a missing or stale index; False if it cannot write there."""
        from pyfaidx import FastaIndexingError

        try:
            self._open(fai, gzi, rebuild=True).close()
        except FastaIndexingError as err:
            raise GenomeDataError(
                f"{self.path} is not a valid FASTA for indexing: {err} Every sequence line of a "
                "record must have the same length (except the last); reformat it, e.g. "
                "`seqkit seq -w 60`."
            ) from err
        except OSError:
            for partial in (fai, gzi):
                if partial is not None and partial.exists() and not self._index_is_fresh(fai, gzi):
                    try:
                        partial.unlink()
                    except OSError:
                        pass
            return False
        return True

    def _prepare_index(self, index_dir: Path | None) -> tuple[Path, Path | None]:
        """Pick (fai, gzi) paths and make sure the index exists there."""
        name = self.path.name
        if index_dir is None:
            beside = (Path(f"{self.path}.fai"), Path(f"{self.path}.gzi") if self.bgzf else None)
            if self._index_is_fresh(*beside):
                return beside
            if os.access(self.path.parent, os.W_OK) and self._try_build(*beside):
                return beside
            # Key the cache by path, size and mtime so a changed FASTA gets a new index.
            stat = self.path.stat()
            key = hashlib.sha1(f"{self.path}|{stat.st_size}|{stat.st_mtime_ns}".encode()).hexdigest()[:16]
            index_dir = default_index_cache() / key
            where = f"beside the FASTA ({self.path.parent} is not writable) nor in the cache folder {index_dir}"
        else:
            where = f"in index_dir={index_dir}"
        paths = (index_dir / f"{name}.fai", index_dir / f"{name}.gzi" if self.bgzf else None)
        try:
            index_dir.mkdir(parents=True, exist_ok=True)
        except OSError:
            ok = False
        else:
            ok = self._index_is_fresh(*paths) or self._try_build(*paths)
        if not ok:
            raise GenomeDataError(
                f"Cannot write the FASTA index (.fai{' and .gzi' if self.bgzf else ''}) for {self.path} "
                f"{where}. Pass index_dir= a writable folder (or set GRELU_CADUCEUS_CACHE), or "
                f"create the index once where you can write, e.g. `samtools faidx {self.path}`."
            )
        return paths

    @staticmethod
    def _read_sizes(fai: Path) -> dict[str, int]:
        sizes = {}
        with open(fai) as f:
            for line in f:
                fields = line.rstrip("\n").split("\t")
                sizes[fields[0]] = int(fields[1])
        return sizes

    # ---- per-process handle
    def _handle(self):
        if self._faidx is None or self._pid != os.getpid():
            # A handle inherited through fork shares its file offset with the parent: reopen.
            self._faidx = self._open(*self._index_paths, rebuild=False)
            self._pid = os.getpid()
        return self._faidx

    def close(self) -> None:
        if self._faidx is not None and self._pid == os.getpid():
            self._faidx.close()
        self._faidx = None

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_faidx"], state["_pid"] = None, None  # file handles do not pickle (spawn workers)
        return state

    # ---- names
    def check_chrom(self, chrom: str) -> None:
        """Raise GenomeDataError naming the closest spelling when ``chrom`` is not in the FASTA."""
        if chrom in self.sizes:
            return
        names = list(self.sizes)
        toggled = chrom[3:] if chrom.startswith("chr") else "chr" + chrom
        if toggled in self.sizes:
            guess = f"Did you mean '{toggled}'? This FASTA names chromosomes {'with' if toggled.startswith('chr') else 'without'} the 'chr' prefix; rename yours to match."
        else:
            close = difflib.get_close_matches(chrom, names, n=3)
            guess = f"Did you mean {', '.join(repr(c) for c in close)}?" if close else "Use names from the FASTA."
        shown = ", ".join(names[:8]) + (f", ... ({len(names)} in all)" if len(names) > 8 else "")
        raise GenomeDataError(f"Chromosome '{chrom}' is not in {self.path.name} (it has {shown}). {guess}")

    # ---- reading
    def fetch(self, chrom: str, start: int, end: int) -> str:
        """Sequence of [start, end) (0-based); positions outside the chromosome read as N."""
        size = self.sizes[chrom]
        lo, hi = max(start, 0), min(end, size)
        body = self._handle().from_file(chrom, lo + 1, hi) if hi > lo else ""
        return "N" * (min(lo, end) - start) + body + "N" * (end - max(hi, start))

    def n_runs(self, chrom: str, start: int, end: int) -> tuple[np.ndarray, np.ndarray]:
        """Runs of non-ACGT bases in [start, end): (starts, ends) int64 arrays, sorted, merged.

        Reads the span in chunks of SCAN_CHUNK bases, so memory is bounded by the chunk and the
        number of runs, not the span. Results are cached per span.
        """
        key = (chrom, start, end)
        if key not in self._n_run_cache:
            run_starts, run_ends = [], []
            for chunk_start in range(start, end, SCAN_CHUNK):
                chunk_end = min(chunk_start + SCAN_CHUNK, end)
                codes = _BASE_INDEX[np.frombuffer(self.fetch(chrom, chunk_start, chunk_end).encode("ascii"), np.uint8)]
                is_n = np.concatenate([[False], codes == 4, [False]])
                edges = np.flatnonzero(np.diff(is_n.view(np.int8)))
                run_starts.append(edges[0::2] + chunk_start)
                run_ends.append(edges[1::2] + chunk_start)
            starts = np.concatenate(run_starts) if run_starts else np.zeros(0, np.int64)
            ends = np.concatenate(run_ends) if run_ends else np.zeros(0, np.int64)
            self._n_run_cache[key] = _merge_touching(starts.astype(np.int64), ends.astype(np.int64))
        return self._n_run_cache[key]

    def letter_runs(self, chrom: str, start: int, end: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """Runs, in [start, end) of a chromosome, of each kind of letter the letter rule treats apart
        (:func:`clean_sequence`): "not_acgt" (N, IUPAC codes and anything else), "iupac" (IUPAC codes)
        and "other" (characters that are not DNA letters): (starts, ends) int64 arrays, sorted and
        disjoint. Read in chunks of SCAN_CHUNK bases, like :meth:`n_runs`; nothing is cached."""
        masks = {"not_acgt": lambda c: c != _ACGT, "iupac": lambda c: c == _IUPAC, "other": lambda c: c == _OTHER}
        runs = {kind: ([], []) for kind in masks}
        for chunk_start in range(start, end, SCAN_CHUNK):
            chunk_end = min(chunk_start + SCAN_CHUNK, end)
            raw = np.frombuffer(self.fetch(chrom, chunk_start, chunk_end).encode("ascii", "replace"), np.uint8)
            classes = _LETTER_CLASS[raw]
            for kind, mask in masks.items():
                edges = np.flatnonzero(np.diff(np.concatenate([[False], mask(classes), [False]]).view(np.int8)))
                runs[kind][0].append(edges[0::2] + chunk_start)
                runs[kind][1].append(edges[1::2] + chunk_start)
        empty = np.zeros(0, np.int64)
        return {kind: tuple(np.concatenate(parts).astype(np.int64) if parts else empty for parts in (a, b))
                for kind, (a, b) in runs.items()}


def _merge_touching(starts: np.ndarray, ends: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Merge sorted intervals that overlap or touch (runs split at chunk edges)."""
    if len(starts) < 2:
        return starts, ends
    order = np.argsort(starts, kind="stable")
    starts, ends = starts[order], ends[order]
    running_end = np.maximum.accumulate(ends)
    new_group = np.concatenate([[True], starts[1:] > running_end[:-1]])
    group = np.cumsum(new_group) - 1
    merged_ends = np.zeros(group[-1] + 1, np.int64)
    np.maximum.at(merged_ends, group, ends)
    return starts[new_group], merged_ends


# --------------------------------------------------------------------------- N arithmetic
def n_count(run_starts: np.ndarray, run_ends: np.ndarray, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Number of N bases in each [starts[i], ends[i]) given sorted, disjoint N runs."""
    cumulative = np.concatenate([[0], np.cumsum(run_ends - run_starts)])

    def n_before(x: np.ndarray) -> np.ndarray:  # N bases in [0, x)
        k = np.searchsorted(run_ends, x, side="right")  # runs entirely before x
        partial = np.zeros_like(x)
        inside = (k < len(run_starts))
        partial[inside] = np.clip(x[inside] - run_starts[k[inside]], 0, None)
        return cumulative[k] + partial

    return n_before(np.asarray(ends, np.int64)) - n_before(np.asarray(starts, np.int64))


def window_letters(genome: "FastaGenome", chroms: np.ndarray, starts: np.ndarray, seq_len: int):
    """The letter rule's counts for windows [starts, starts + seq_len) of ``genome``, without holding them.

    Each stretch of a chromosome covered by windows is read once, in chunks (overlapping windows are
    not read twice); bases outside the chromosome count as N.

    Returns:
        (IUPAC codes per window, characters that are not DNA letters per window, whether a window
        has no A/C/G/T base): int64, int64 and bool arrays in the order of ``starts``.
    """
    chroms, starts = np.asarray(chroms), np.asarray(starts, np.int64)
    iupac, other = np.zeros(len(starts), np.int64), np.zeros(len(starts), np.int64)
    no_acgt = np.zeros(len(starts), bool)
    for chrom in np.unique(chroms):
        rows = np.flatnonzero(chroms == chrom)
        size = genome.sizes[str(chrom)]
        lo, hi = np.clip(starts[rows], 0, size), np.clip(starts[rows] + seq_len, 0, size)
        spans = _merge_touching(lo[hi > lo], hi[hi > lo])
        pieces = [genome.letter_runs(str(chrom), int(a), int(b)) for a, b in zip(*spans)]
        runs = {kind: tuple(np.concatenate([p[kind][i] for p in pieces] or [np.zeros(0, np.int64)]) for i in (0, 1))
                for kind in ("not_acgt", "iupac", "other")}
        iupac[rows] = n_count(*runs["iupac"], lo, hi)
        other[rows] = n_count(*runs["other"], lo, hi)
        no_acgt[rows] = n_count(*runs["not_acgt"], lo, hi) + (seq_len - (hi - lo)) == seq_len
    return iupac, other, no_acgt


def bad_window_starts(
    run_starts: np.ndarray, run_ends: np.ndarray, lo: int, hi: int, seq_len: int, max_n: int
) -> tuple[np.ndarray, np.ndarray]:
    """Starts s in [lo, hi] whose window [s, s + seq_len) has more than ``max_n`` N bases.

    Returned as half-open intervals (starts, ends) of start positions. The N count of a window is
    piecewise linear in s with slope -1, 0 or +1, changing only where s or s + seq_len crosses a
    run edge, so it is evaluated at those breakpoints only: cost O(runs), not O(positions).
    """
    if len(run_starts) == 0 or hi < lo:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    points = np.concatenate([run_starts, run_ends, run_starts - seq_len, run_ends - seq_len, [lo, hi + 1]])
    points = np.unique(np.clip(points, lo, hi + 1))
    seg_lo, seg_hi = points[:-1], points[1:]  # segments [seg_lo, seg_hi) of constant slope
    f0 = n_count(run_starts, run_ends, seg_lo, seg_lo + seq_len)
    f1 = n_count(run_starts, run_ends, seg_lo + 1, seg_lo + 1 + seq_len)
    slope = np.where(seg_hi - seg_lo > 1, f1 - f0, 0)
    bad_lo = np.where(slope > 0, seg_lo + np.maximum(max_n - f0 + 1, 0), seg_lo)
    bad_hi = np.where(slope < 0, np.minimum(seg_hi, seg_lo + np.maximum(f0 - max_n, 0)), seg_hi)
    bad_lo = np.where((slope == 0) & (f0 <= max_n), seg_hi, bad_lo)  # flat and fine: empty
    keep = bad_hi > bad_lo
    return _merge_touching(bad_lo[keep].astype(np.int64), bad_hi[keep].astype(np.int64))


def subtract_intervals(lo: int, hi: int, cut_starts: np.ndarray, cut_ends: np.ndarray):
    """[lo, hi) minus sorted disjoint cuts -> list of (start, end) pieces."""
    pieces, cursor = [], lo
    for a, b in zip(cut_starts.tolist(), cut_ends.tolist()):
        if a > cursor:
            pieces.append((cursor, min(a, hi)))
        cursor = max(cursor, b)
        if cursor >= hi:
            break
    if cursor < hi:
        pieces.append((cursor, hi))
    return [(a, b) for a, b in pieces if b > a]


# --------------------------------------------------------------------------- window sets
@dataclass
class WindowSegments:
    """Window starts stored as arithmetic runs: segment k holds ``count[k]`` windows on
    chromosome ``chrom[k]`` starting at ``first[k], first[k] + step, ...``.

    Memory grows with the number of segments (regions and N gaps), never with the genome size.
    """

    chrom: np.ndarray  # (n_segments,) int32 index into chrom_names
    first: np.ndarray  # (n_segments,) int64
    count: np.ndarray  # (n_segments,) int64
    step: int
    chrom_names: list[str]

    def __post_init__(self):
        self.offsets = np.concatenate([[0], np.cumsum(self.count)]).astype(np.int64)

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def locate(self, index: int) -> tuple[str, int]:
        """(chromosome, window start) of window ``index``."""
        k = int(np.searchsorted(self.offsets, index, side="right")) - 1
        return self.chrom_names[self.chrom[k]], int(self.first[k] + (index - self.offsets[k]) * self.step)


def _grid_segment(region_start: int, a: int, b: int, step: int) -> tuple[int, int]:
    """First grid point (region_start + k * step) in [a, b) and how many there are."""
    first = region_start + -(-(a - region_start) // step) * step
    count = 0 if first >= b else (b - 1 - first) // step + 1
    return first, count


# --------------------------------------------------------------------------- splits
def _split_filter(splits, split: str | None, genome: FastaGenome):
    """Allowed territory for ``split``: None (everything), a set of chromosomes, or a
    DataFrame of regions (chrom, start, end)."""
    if splits is None:
        if split is not None:
            raise GenomeDataError(
                f"split={split!r} needs splits=: a dict of chromosomes per split (e.g. "
                "{'val': ['chr8'], 'test': ['chr9']}) or a BED/DataFrame of regions with a split column."
            )
        return None
    if split is None:
        raise GenomeDataError("splits= is given but split= is not: choose the split to load, e.g. split='train'.")
    if isinstance(splits, Mapping):
        unknown = set(splits) - set(SPLIT_NAMES)
        if unknown:
            raise GenomeDataError(f"unknown split names {sorted(unknown)} in splits=: use {list(SPLIT_NAMES)}.")
        listed = {c: name for name, chroms in splits.items() for c in chroms}
        for chrom in listed:
            genome.check_chrom(chrom)
        if split in splits:
            return set(splits[split])
        if split == "train":  # train = every chromosome not held out
            return set(genome.sizes) - set(listed)
        raise GenomeDataError(f"split={split!r} is not in splits= (it has {sorted(splits)}).")
    regions = read_intervals(splits, "splits")
    for chrom in regions.chrom.unique():
        genome.check_chrom(chrom)
    if "split" not in regions.columns:
        raise GenomeDataError("splits= regions need a 'split' column (train / val / test).")
    if split not in set(regions.split):
        raise GenomeDataError(f"split={split!r} has no region in splits= (it has {sorted(set(regions.split))}).")
    return regions[regions.split == split][["chrom", "start", "end"]]


def _intersect_regions(regions: pd.DataFrame, allowed: pd.DataFrame) -> pd.DataFrame:
    """Pieces of ``regions`` that lie inside ``allowed`` (both chrom, start, end)."""
    pieces = []
    for chrom, group in regions.groupby("chrom", sort=False):
        mine = allowed[allowed.chrom == chrom]
        starts, ends = _merge_touching(mine.start.to_numpy(np.int64), mine.end.to_numpy(np.int64))
        for a, b in zip(group.start.tolist(), group.end.tolist()):
            lo_k = np.searchsorted(ends, a, side="right")
            for s, e in zip(starts[lo_k:].tolist(), ends[lo_k:].tolist()):
                if s >= b:
                    break
                pieces.append((chrom, max(a, s), min(b, e)))
    return pd.DataFrame(pieces, columns=["chrom", "start", "end"])


# --------------------------------------------------------------------------- the dataset
class GenomeWindowDataset(Dataset):
    """Lazy one-hot windows of a genome: items are float32 tensors (4, seq_len).

    Args:
        fasta: FASTA path, plain or bgzip (.fa.gz with .gzi); the index is built if needed.
        seq_len: window length in bp (any size; 131,072 and beyond are fine). With ``intervals``
            it may be None when all intervals have the same length.
        intervals: BED path or DataFrame (chrom, start, end): one item per interval, resized
            around its centre to ``seq_len``; bases outside the chromosome read as N.
        regions: BED path or DataFrame of regions to tile or sample (default: whole chromosomes).
        chroms: restrict to these chromosomes (default: all in the FASTA).
        stride: step of the sliding windows (default ``seq_len``: no overlap).
        n_random: if given, draw this many random windows per epoch instead of sliding windows,
            uniformly over all valid positions.
        splits: hold-out definition, either {"val": [chroms], "test": [chroms]} (train = the
            other chromosomes unless "train" is given) or a BED/DataFrame of regions with a
            ``split`` column. Windows must lie wholly inside a region of the chosen split.
        split: which split to load ("train", "val" or "test"); needs ``splits``.
        max_n_frac: drop windows whose fraction of non-ACGT bases exceeds this (None: keep all).
        rc_prob: probability of reverse-complementing an item (``x.flip(0, 1)``).
        max_shift: shift each window by a random offset in [-max_shift, max_shift] bp.
        seed: None (default): random windows, shifts and RC use torch's RNG, so they differ every
            epoch and follow ``torch.manual_seed`` / Lightning's ``seed_everything(workers=True)``.
            An int: item i of epoch e always gets the same draws (fixed validation sets); call
            :meth:`set_epoch` for new draws.
        index_dir: folder for the .fai/.gzi index when it cannot be written beside the FASTA.
        check_letters: with ``intervals``, read every window once at construction (each stretch of
            the FASTA once, in chunks; nothing is kept) through the letter rule of
            :func:`clean_sequence`: a character that is not a DNA letter is an error naming its row,
            and the windows holding IUPAC codes and the all-N ones are counted in warnings, next to
            the padded ones (items read IUPAC codes as N whether or not this is set).
        name: what messages about ``intervals`` call them (e.g. "data.intervals=peaks.bed").
        describe: row index -> text naming that interval in a message (default "row 3 (chr1:100-300)").
    """

    def __init__(
        self,
        fasta: str | os.PathLike,
        seq_len: int | None,
        *,
        intervals: IntervalSource | None = None,
        regions: IntervalSource | None = None,
        chroms: Sequence[str] | None = None,
        stride: int | None = None,
        n_random: int | None = None,
        splits: Mapping[str, Sequence[str]] | IntervalSource | None = None,
        split: str | None = None,
        max_n_frac: float | None = None,
        rc_prob: float = 0.0,
        max_shift: int = 0,
        seed: int | None = None,
        index_dir: str | os.PathLike | None = None,
        check_letters: bool = False,
        name: str = "intervals",
        describe=None,
    ):
        if intervals is not None and (regions is not None or n_random is not None or stride is not None):
            raise GenomeDataError("intervals= gives the windows itself: do not combine it with regions=, stride= or n_random=.")
        if check_letters and intervals is None:
            raise GenomeDataError("check_letters=True reads a fixed set of windows: give intervals= with it.")
        self._check_letters, self._name = bool(check_letters), str(name)
        if not 0.0 <= rc_prob <= 1.0:
            raise GenomeDataError(f"rc_prob must be in [0, 1], got {rc_prob}.")
        if max_shift < 0:
            raise GenomeDataError(f"max_shift must be >= 0, got {max_shift}.")
        if max_n_frac is not None and not 0.0 <= max_n_frac <= 1.0:
            raise GenomeDataError(f"max_n_frac must be in [0, 1] or None, got {max_n_frac}.")
        self.genome = FastaGenome(fasta, index_dir)
        self.rc_prob, self.max_shift, self.seed = float(rc_prob), int(max_shift), seed
        self.max_n_frac = max_n_frac
        self.n_random = n_random
        self.epoch = 0
        allowed = _split_filter(splits, split, self.genome)
        chrom_set = self._chosen_chroms(chroms)
        if isinstance(allowed, set):
            chrom_set = [c for c in chrom_set if c in allowed]
            allowed = None
        if intervals is not None:
            self.seq_len = self._build_from_intervals(intervals, seq_len, chrom_set, allowed, describe)
        else:
            if seq_len is None or seq_len < 1:
                raise GenomeDataError(f"seq_len must be a positive number of bases, got {seq_len}.")
            self.seq_len = int(seq_len)
            if stride is not None and stride < 1:
                raise GenomeDataError(f"stride must be >= 1, got {stride}.")
            step = 1 if n_random is not None else int(stride or seq_len)
            self.windows = self._build_segments(regions, chrom_set, explicit=chroms is not None or regions is not None,
                                                allowed=allowed, step=step)
        if len(self.windows) == 0:
            raise GenomeDataError(
                "No window is left after filtering (chromosomes, regions, split, max_n_frac): "
                "check that they overlap and that seq_len fits inside the regions."
            )

    # ---- construction helpers
    def _chosen_chroms(self, chroms: Sequence[str] | None) -> list[str]:
        if chroms is None:
            return list(self.genome.sizes)
        if isinstance(chroms, str):
            chroms = [chroms]
        for chrom in chroms:
            self.genome.check_chrom(chrom)
        return list(chroms)

    def _max_n(self, length: int) -> int | None:
        return None if self.max_n_frac is None else int(np.floor(self.max_n_frac * length + 1e-9))

    def _build_segments(self, regions, chrom_set, explicit, allowed, step) -> WindowSegments:
        L = self.seq_len
        if regions is None:
            too_short = [c for c in chrom_set if self.genome.sizes[c] < L]
            if too_short and explicit:
                raise GenomeDataError(
                    f"seq_len={L} is longer than chromosome(s) "
                    + ", ".join(f"{c} ({self.genome.sizes[c]} bp)" for c in too_short[:5])
                    + ": use a shorter seq_len or leave those chromosomes out of chroms=."
                )
            region_frame = pd.DataFrame({"chrom": chrom_set, "start": 0,
                                         "end": [self.genome.sizes[c] for c in chrom_set]})
        else:
            region_frame = read_intervals(regions, "regions")
            self._check_bounds(region_frame, "regions")
            region_frame = region_frame[region_frame.chrom.isin(set(chrom_set))]
        if allowed is not None:
            region_frame = _intersect_regions(region_frame, allowed)
        names = list(self.genome.sizes)
        code = {c: i for i, c in enumerate(names)}
        max_n = self._max_n(L)
        seg_chrom, seg_first, seg_count = [], [], []
        for chrom, start, end in region_frame[["chrom", "start", "end"]].itertuples(index=False):
            last_start = end - L  # valid window starts are [start, last_start]
            if last_start < start:
                continue
            pieces = [(start, last_start + 1)]
            if max_n is not None and max_n < L:
                runs = self.genome.n_runs(chrom, start, end)
                bad = bad_window_starts(*runs, start, last_start, L, max_n)
                pieces = subtract_intervals(start, last_start + 1, *bad)
            for a, b in pieces:
                first, count = _grid_segment(start, a, b, step)
                if count:
                    seg_chrom.append(code[chrom]); seg_first.append(first); seg_count.append(count)
        return WindowSegments(np.array(seg_chrom, np.int32), np.array(seg_first, np.int64),
                              np.array(seg_count, np.int64), step, names)

    def _check_bounds(self, frame: pd.DataFrame, what: str) -> None:
        check_intervals_in_bounds(frame, self.genome, what)

    def _build_from_intervals(self, intervals, seq_len, chrom_set, allowed, describe=None) -> int:
        frame = read_intervals(intervals, self._name)
        self._check_bounds(frame, self._name)
        lengths = (frame.end - frame.start).to_numpy()
        if seq_len is None:
            if len(set(lengths.tolist())) > 1:
                raise GenomeDataError(
                    f"intervals have different lengths ({lengths.min()}-{lengths.max()} bp): pass "
                    "seq_len= to resize them all around their centres."
                )
            seq_len = int(lengths[0]) if len(lengths) else 1
        seq_len = int(seq_len)
        too_long = [c for c in frame.chrom.unique() if self.genome.sizes[c] < seq_len]
        if too_long:
            raise GenomeDataError(
                f"seq_len={seq_len} is longer than chromosome(s) {', '.join(too_long[:5])}: use a "
                "shorter seq_len or drop intervals on those chromosomes."
            )
        starts = centred_starts(frame.start.to_numpy(np.int64), frame.end.to_numpy(np.int64), seq_len)
        keep = frame.chrom.isin(set(chrom_set)).to_numpy()
        if allowed is not None:
            keep &= self._inside(frame.chrom.to_numpy(), starts, starts + seq_len, allowed)
        max_n = self._max_n(seq_len)
        if max_n is not None:
            for chrom in np.unique(frame.chrom.to_numpy()[keep]):
                rows = keep & (frame.chrom.to_numpy() == chrom)
                lo, hi = max(int(starts[rows].min()), 0), min(int(starts[rows].max()) + seq_len, self.genome.sizes[chrom])
                runs = self.genome.n_runs(chrom, lo, hi)
                s = starts[rows]
                outside = np.clip(-s, 0, None) + np.clip(s + seq_len - self.genome.sizes[chrom], 0, None)
                counts = n_count(*runs, np.clip(s, lo, hi), np.clip(s + seq_len, lo, hi)) + outside
                keep[np.flatnonzero(rows)[counts > max_n]] = False
        padded = padded_windows(frame.chrom.to_numpy(), starts, seq_len, self.genome.sizes) & keep
        describe = describe or (lambda row: f"row {row + 1} ({frame.chrom.iat[row]}:"
                                            f"{frame.start.iat[row]}-{frame.end.iat[row]})")
        tally = WindowTally(self._name, describe)
        letters = {}
        if self._check_letters:
            kept = np.flatnonzero(keep)
            iupac, other, no_acgt = window_letters(self.genome, frame.chrom.to_numpy()[kept], starts[kept], seq_len)
            if other.any():  # the message of the letter rule itself, for the first such window
                row = int(kept[np.flatnonzero(other)[0]])
                chrom = frame.chrom.iat[row]
                window = self.genome.fetch(chrom, int(starts[row]), int(starts[row]) + seq_len)
                clean_sequence(window, lambda: describe(row))
            letters = dict(iupac_rows=kept[iupac > 0], iupac_codes=int(iupac.sum()), all_n_rows=kept[no_acgt])
        tally.count(int(keep.sum()), np.flatnonzero(padded), **letters)
        tally.warn(seq_len)
        names = list(self.genome.sizes)
        code = {c: i for i, c in enumerate(names)}
        chrom_codes = frame.chrom.map(code).to_numpy(np.int32)[keep]
        self.windows = WindowSegments(chrom_codes, starts[keep], np.ones(int(keep.sum()), np.int64), 1, names)
        return seq_len

    @staticmethod
    def _inside(chroms: np.ndarray, starts: np.ndarray, ends: np.ndarray, allowed: pd.DataFrame) -> np.ndarray:
        """Which windows lie wholly inside one merged allowed region."""
        inside = np.zeros(len(starts), bool)
        for chrom in np.unique(chroms):
            rows = chroms == chrom
            mine = allowed[allowed.chrom == chrom]
            a, b = _merge_touching(mine.start.to_numpy(np.int64), mine.end.to_numpy(np.int64))
            k = np.searchsorted(a, starts[rows], side="right") - 1
            ok = k >= 0
            ok[ok] &= ends[rows][ok] <= b[k[ok]]
            inside[rows] = ok
        return inside

    # ---- epochs and randomness
    def set_epoch(self, epoch: int) -> None:
        """Use the draws of ``epoch`` (random windows, shifts, RC) when ``seed`` is set."""
        self.epoch = int(epoch)

    def _rng(self, index: int) -> np.random.Generator:
        if self.seed is None:
            return np.random.default_rng(int(torch.randint(0, 2**62, (1,)).item()))
        return np.random.default_rng([int(self.seed), self.epoch, int(index)])

    # ---- items
    def __len__(self) -> int:
        return int(self.n_random) if self.n_random is not None else len(self.windows)

    def window(self, index: int, rng: np.random.Generator | None = None) -> tuple[str, int, int]:
        """(chrom, start, end) of item ``index`` before shift and RC (random windows need ``rng``)."""
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} windows")
        index %= len(self)
        if self.n_random is not None:
            rng = rng or self._rng(index)
            index = int(rng.integers(len(self.windows)))
        chrom, start = self.windows.locate(index)
        return chrom, start, start + self.seq_len

    def read(self, index: int, flank: int = 0) -> str:
        """The letters of window ``index`` (before shift and RC), widened by ``flank`` bp on each side
        (the room a shift of up to ``flank`` bp needs); bases outside the chromosome read as N."""
        chrom, start, end = self.window(index)
        return self.genome.fetch(chrom, start - int(flank), end + int(flank))

    def __getitem__(self, index: int) -> torch.Tensor:
        """One-hot window, float32 (4, seq_len)."""
        random = self.n_random is not None or self.max_shift or self.rc_prob
        rng = self._rng(index) if random else None
        chrom, start, end = self.window(index, rng)
        if self.max_shift:
            shift = int(rng.integers(-self.max_shift, self.max_shift + 1))
            size = self.genome.sizes[chrom]
            if 0 <= start and end <= size:  # a window inside the chromosome stays inside
                shift = int(np.clip(shift, -start, size - end))
            start, end = start + shift, end + shift
        x = one_hot_encode(self.genome.fetch(chrom, start, end))
        if self.rc_prob and rng.random() < self.rc_prob:
            x = x.flip(0, 1)  # reverse complement in A,C,G,T row order
        return x
