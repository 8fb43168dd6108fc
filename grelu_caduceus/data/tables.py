"""Labelled tables for training: sequences, labels (N, T, L) and a split per row, read from a table
of sequences, a BED of intervals (with a FASTA), bigWig coverage over intervals, or a bundled task.

Readers take plain arguments; ``what`` / ``key`` name the setting a file or column came from, so
that an error says what to change (the command line passes its config keys, e.g. ``data.path``).
Every user mistake (missing file, missing column, unknown chromosome, labels that do not fit the
task) raises :class:`DataConfigError`, a UserError, with the fix in the message. Sequences go
through the letter rule (:func:`grelu_caduceus.data.genome.clean_sequence`), windows through the
one centre-resize rule (:mod:`grelu_caduceus.data.intervals`). Tables of sequences hold them in
memory; the FASTA-backed tables (``fasta_bed_table``, ``bigwig_table``) hold only their windows'
coordinates and labels, check and count the windows' letters once at construction, and read each
window when training asks for it (:mod:`grelu_caduceus.data.labelled`).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from ..errors import UserError
from .intervals import centre_resize_sequence, centred_starts

# split spellings found in the wild -> ours (Basenji/Enformer BEDs say "valid")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}


class DataConfigError(UserError):
    """Data that cannot be read as its settings say."""


class LabelledTable:
    """Labels (N, T, L) float32, task names, per-row split ("train" / "val" / "test") and the inputs:
    either ``seqs`` (strings, for tables that give their sequences) or ``windows`` (a
    GenomeWindowDataset with one window per row, read from the FASTA only when an item asks for it)."""

    def __init__(self, seqs: list[str] | None, labels: np.ndarray, tasks: list[str], split: np.ndarray, source: str,
                 windows=None):
        self.seqs, self.labels, self.tasks, self.split, self.source = seqs, labels, tasks, split, source
        self.windows = windows

    def rows(self, split: str) -> np.ndarray:
        """Indices of the rows of ``split``, in table order."""
        return np.flatnonzero(self.split == split)


# --------------------------------------------------------------------------- files and columns
def existing(path, what: str) -> Path:
    """``path`` as a Path; DataConfigError naming ``what`` if it does not exist."""
    resolved = Path(str(path)).expanduser()
    if not resolved.exists():
        raise DataConfigError(f"{what}: file {resolved} not found (relative paths are taken from "
                              f"{Path.cwd()})")
    return resolved


def read_table(path, what: str) -> pd.DataFrame:
    """A headed table (tab-separated, or comma-separated if named .csv[.gz]) with at least one row."""
    resolved = existing(path, what)
    name = resolved.name.removesuffix(".gz")
    sep = "," if name.endswith(".csv") else "\t"
    try:
        frame = pd.read_csv(resolved, sep=sep)
    except pd.errors.EmptyDataError:
        frame = pd.DataFrame()
    if len(frame) == 0:
        raise DataConfigError(f"{what}={path} is empty: it has no rows"
                              f"{' below its header' if len(frame.columns) else ''}.")
    return frame


def require_columns(frame: pd.DataFrame, wanted: list[str], source: str, key: str) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        present = ", ".join(map(str, frame.columns))
        raise DataConfigError(f"{source} has no column(s) {', '.join(missing)} (it has {present}); set {key}")


def read_headed_intervals(path, what: str) -> pd.DataFrame:
    """A table with a header naming chrom, start, end (BED without a header: first three columns,
    and a fourth as ``split``)."""
    resolved = existing(path, what)
    try:
        first = pd.read_csv(resolved, sep="\t", header=None, nrows=1, comment="#", dtype=str)
    except pd.errors.EmptyDataError:
        first = pd.DataFrame()
    headed = len(first) > 0 and str(first.iloc[0, 0]).lower() == "chrom"
    frame = pd.read_csv(resolved, sep="\t", header=0 if headed else None, comment="#") if len(first) else first
    if len(frame) == 0:
        raise DataConfigError(f"{what}={path} is empty: it has no interval rows{' below its header' if headed else ''} "
                              "(give tab-separated chrom, start, end, label lines)")
    if not headed:
        names = ["chrom", "start", "end", "split"][: min(frame.shape[1], 4)]
        frame = frame.iloc[:, : len(names)]
        frame.columns = names
    require_columns(frame, ["chrom", "start", "end"], f"{what}={path}", f"{what} (a header line: chrom, start, end, ...)")
    frame["chrom"] = frame["chrom"].astype(str)
    return frame


def read_splits(path, what: str = "data.splits") -> pd.DataFrame:
    """A BED of regions with the split in the 4th column (headed or not) -> chrom, start, end, split."""
    path = existing(path, what)
    first = pd.read_csv(path, sep="\t", header=None, nrows=1, comment="#", dtype=str)
    headed = first.iloc[0, 0] == "chrom"
    frame = pd.read_csv(path, sep="\t", header=0 if headed else None, comment="#", dtype=str)
    if not headed:
        if frame.shape[1] < 4:
            raise DataConfigError(f"{what}={path} needs a 4th column naming the split (train / val / test).")
        frame = frame.iloc[:, :4]
        frame.columns = ["chrom", "start", "end", "split"]
    elif "split" not in frame.columns:
        raise DataConfigError(f"{what}={path} has no 'split' column (columns: {', '.join(frame.columns)}).")
    frame["split"] = normalise_splits(frame["split"], f"{what}={path}")
    frame[["start", "end"]] = frame[["start", "end"]].astype(np.int64)
    return frame[["chrom", "start", "end", "split"]]


# --------------------------------------------------------------------------- splits and labels
def normalise_splits(values: pd.Series, source: str) -> np.ndarray:
    names = values.astype(str).str.strip().str.lower()
    unknown = sorted(set(names) - set(SPLIT_ALIASES))
    if unknown:
        raise DataConfigError(f"{source}: unknown split name(s) {unknown[:5]}; use train, val (or valid) and test")
    return names.map(SPLIT_ALIASES).to_numpy()


def row_splits(frame: pd.DataFrame, split_column: str, val_chroms, test_chroms, source: str,
               key: str = "data") -> np.ndarray:
    """Split per row: ``split_column`` if the table has it, else held-out chromosomes."""
    if split_column in frame.columns:
        return normalise_splits(frame[split_column], source)
    if not val_chroms:
        raise DataConfigError(f"{source} has no '{split_column}' column: add one (train / val / test) or "
                              f"hold out chromosomes with {key}.val_chroms=[chr10] (and {key}.test_chroms=[...])")
    chrom = frame.chrom.astype(str)
    return np.where(chrom.isin(val_chroms), "val", np.where(chrom.isin(test_chroms), "test", "train"))


def encode_labels(values: np.ndarray, columns: list[str], task_name: str, source: str):
    """Label columns (N, T) -> (labels (N, T', 1) float32, task names) for a gReLU task.

    binary: 0/1 values, one task per column. regression: numbers, one task per column.
    multiclass: one column of class names or numbers -> one-hot over the sorted classes.
    """
    if task_name == "multiclass":
        names = pd.Series(values[:, 0]).astype(str)
        classes = sorted(names.unique())
        if len(classes) < 2:
            raise DataConfigError(f"{source}: column {columns[0]} has a single class ({classes[0]}); "
                                  "task=multiclass needs at least two")
        onehot = (names.to_numpy()[:, None] == np.array(classes)[None, :]).astype(np.float32)
        return onehot[:, :, None], classes
    try:
        numbers = values.astype(np.float64)
    except (TypeError, ValueError):
        raise DataConfigError(f"{source}: label columns {columns} must hold numbers for task={task_name} "
                              "(class names need task=multiclass)") from None
    if np.isnan(numbers).any():
        raise DataConfigError(f"{source}: label columns {columns} have missing values; fill or drop those rows")
    if task_name == "binary" and not np.isin(numbers, (0.0, 1.0)).all():
        found = sorted(set(np.unique(numbers).tolist()))[:6]
        raise DataConfigError(f"{source}: task=binary needs labels 0 or 1, found {found}; use task=regression "
                              "for numbers or task=multiclass for classes")
    return numbers.astype(np.float32)[:, :, None], list(columns)


# --------------------------------------------------------------------------- sequences
def clean_seqs(seqs: list[str], source: str) -> list[str]:
    """Sequences through the letter rule (data.genome.clean_sequence: upper case, IUPAC codes read as N,
    anything else an error), with one warning per kind that counts the sequences holding IUPAC codes
    or all-N."""
    from .genome import GenomeDataError, WindowTally

    tally = WindowTally(source)
    try:
        cleaned = [tally.clean(seq, i) for i, seq in enumerate(seqs)]
    except GenomeDataError as err:
        raise DataConfigError(str(err)) from err
    tally.warn(stacklevel=4)
    return cleaned


def window_length(frame: pd.DataFrame, seq_len: int | None, source: str, key: str = "data.seq_len") -> int:
    """The length of the windows centred on the intervals: ``seq_len``, or when it is None the
    intervals' own length, which must then be the same for all."""
    starts, ends = frame.start.to_numpy(np.int64), frame.end.to_numpy(np.int64)
    if seq_len is None:
        lengths = set((ends - starts).tolist())
        if len(lengths) > 1:
            raise DataConfigError(f"{source}: intervals have different lengths ({min(lengths)}-{max(lengths)} bp); "
                                  f"set {key} to resize them around their centres")
        seq_len = lengths.pop()
    return int(seq_len)


def genome_windows(fasta, frame: pd.DataFrame, length: int, source: str, what: str = "data.fasta"):
    """The ``length``-bp windows centred on the intervals in ``frame``, one per row, as a
    GenomeWindowDataset that reads a window from ``fasta`` only when it is asked for.

    Checked here, before any training: an interval outside its chromosome is an error naming its
    row, and so is a character that is not a DNA letter in a window. Every window is scanned once,
    without being kept, to count in warnings the windows padded with N past a chromosome end (only
    because they were centred to ``length``), those holding IUPAC codes (read as N) and the all-N ones."""
    from .genome import GenomeDataError, GenomeWindowDataset

    rows = pd.DataFrame({"chrom": frame.chrom.astype(str).to_numpy(), "start": frame.start.to_numpy(np.int64),
                         "end": frame.end.to_numpy(np.int64)})
    try:
        return GenomeWindowDataset(existing(fasta, what), length, intervals=rows, check_letters=True, name=source,
                                   describe=lambda i: f"row {i + 1}: {rows.chrom.iat[i]}:{rows.start.iat[i]}-"
                                                      f"{rows.end.iat[i]}")
    except GenomeDataError as err:
        raise DataConfigError(str(err)) from err


# --------------------------------------------------------------------------- the readers
def bundled_table(name: str, task_name: str) -> LabelledTable:
    """A bundled task (``grelu_caduceus.data.bundled``) as a labelled table."""
    from .bundled import read_task_table

    source = f"bundled task {name}"
    frame = read_task_table(name)
    labels, tasks = encode_labels(frame[["label"]].to_numpy(), [name], task_name, source)
    if task_name != "multiclass":
        tasks = [name]
    return LabelledTable(clean_seqs(frame.seq.tolist(), source), labels, tasks, frame.split.to_numpy(), source)


def sequence_table(path, seq_column: str, label_columns: list[str], split_column: str, task_name: str,
                   seq_len: int | None = None, key: str = "data") -> LabelledTable:
    """A table of sequences with label and split columns; ``seq_len`` resizes the sequences around
    their centres (N-padded)."""
    source = f"{key}.path={path}"
    frame = read_table(path, f"{key}.path")
    require_columns(frame, [seq_column], source, f"{key}.seq_column")
    require_columns(frame, list(label_columns), source, f"{key}.label_columns=[...]")
    require_columns(frame, [split_column], source, f"{key}.split_column (values train / val / test)")
    columns = list(label_columns)
    labels, tasks = encode_labels(frame[columns].to_numpy(), columns, task_name, source)
    seqs = frame[seq_column].astype(str).tolist()
    if seq_len:
        seqs = [centre_resize_sequence(s, seq_len) for s in seqs]
    return LabelledTable(clean_seqs(seqs, source), labels, tasks, normalise_splits(frame[split_column], source),
                         source)


def fasta_bed_table(fasta, intervals, label_columns: list[str], task_name: str, seq_len: int | None = None,
                    split_column: str = "split", val_chroms=(), test_chroms=(), key: str = "data") -> LabelledTable:
    """Intervals (a headed BED) with label columns; sequences from ``fasta``, centred to ``seq_len``
    and read lazily (:func:`genome_windows`)."""
    source = f"{key}.intervals={intervals}"
    frame = read_headed_intervals(intervals, f"{key}.intervals")
    require_columns(frame, list(label_columns), source, f"{key}.label_columns=[...]")
    columns = list(label_columns)
    labels, tasks = encode_labels(frame[columns].to_numpy(), columns, task_name, source)
    seq_len = window_length(frame, seq_len, source, f"{key}.seq_len")
    split = row_splits(frame, split_column, val_chroms, test_chroms, source, key)
    windows = genome_windows(fasta, frame, seq_len, source, f"{key}.fasta")
    return LabelledTable(None, labels, tasks, split, source, windows=windows)


def bigwig_table(fasta, intervals, bigwigs: list[str], seq_len: int | None = None, label_len: int | None = None,
                 bin_size: int = 1, label_aggfunc: str = "mean", split_column: str = "split", val_chroms=(),
                 test_chroms=(), key: str = "data") -> LabelledTable:
    """Coverage of ``bigwigs`` over ``label_len`` centred on each interval, binned (``bin_size``,
    ``label_aggfunc``) by LabeledSeqDataset's own rule; sequences from ``fasta``, read lazily
    (:func:`genome_windows`)."""
    from grelu.io.bigwig import read_bigwig

    source = f"{key}.intervals={intervals}"
    frame = read_headed_intervals(intervals, f"{key}.intervals")
    bigwigs = [str(existing(p, f"{key}.bigwigs")) for p in bigwigs]
    seq_len = window_length(frame, seq_len, source, f"{key}.seq_len")
    windows = genome_windows(fasta, frame, seq_len, source, f"{key}.fasta")  # checks intervals before bigwig reads
    label_len = label_len or seq_len
    label_starts = centred_starts(frame.start.to_numpy(np.int64), frame.end.to_numpy(np.int64), label_len)
    label_windows = pd.DataFrame({"chrom": frame.chrom, "start": label_starts, "end": label_starts + label_len})
    coverage = np.nan_to_num(read_bigwig(label_windows, bigwigs, aggfunc=None)).astype(np.float32)  # (N, T, label_len)
    n_bins = label_len // bin_size
    labels = getattr(np, label_aggfunc)(coverage.reshape(len(frame), len(bigwigs), n_bins, bin_size), axis=-1)
    tasks = [Path(p).name.split(".")[0] for p in bigwigs]
    split = row_splits(frame, split_column, val_chroms, test_chroms, source, key)
    return LabelledTable(None, labels.astype(np.float32), tasks, split, source, windows=windows)


def labelled_datasets(table: LabelledTable, rc_aug: bool = False, max_shift: int = 0, key: str = "data"):
    """gReLU LabeledSeqDatasets for the train and val rows (augmentation on the train rows only).

    A table of genome windows gives :class:`grelu_caduceus.data.labelled.GenomeLabeledSeqDataset`
    objects, which read each window from the FASTA when it is asked for (a shift then shows the
    genome's flanking bases); a table of sequences gives gReLU's own, in memory (a shift shows N)."""
    from grelu.data.dataset import LabeledSeqDataset

    from .labelled import GenomeLabeledSeqDataset

    datasets = []
    for split in ("train", "val"):
        rows = table.rows(split)
        if not len(rows):
            raise DataConfigError(f"{table.source} has no '{split}' rows: every run needs train and val rows "
                                  f"(see {key}.split_column / {key}.val_chroms).")
        augment = dict(rc=bool(rc_aug) and split == "train", max_seq_shift=max_shift if split == "train" else 0,
                       augment_mode="random")
        if table.windows is not None:
            datasets.append(GenomeLabeledSeqDataset(table.windows, rows, table.labels[rows], table.tasks, **augment))
            continue
        seqs = [table.seqs[i] for i in rows]
        lengths = {len(s) for s in seqs}
        if len(lengths) > 1:
            raise DataConfigError(f"{table.source}: sequences have different lengths "
                                  f"({min(lengths)}-{max(lengths)} bp); set {key}.seq_len to resize them")
        datasets.append(LabeledSeqDataset(seqs, labels=table.labels[rows], tasks=table.tasks, **augment))
    return tuple(datasets)
