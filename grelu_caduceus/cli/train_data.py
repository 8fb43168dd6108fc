"""Datasets of ``grelu-caduceus train``, built from a checked data config (``config_schema.*Data``).

* ``genome_windows`` (task=mlm): lazy one-hot windows, :class:`grelu_caduceus.data.GenomeWindowDataset`.
* labelled kinds (``bundled_task``, ``table``, ``fasta_bed``, ``bigwig``): gReLU
  ``LabeledSeqDataset`` objects, which is what gReLU's LightningModel trains on; labels are
  (N, T, L) float32 arrays (T tasks, or T classes one-hot for task=multiclass).

Every user mistake (missing file, missing column, unknown chromosome, labels that do not fit the
task) raises :class:`DataConfigError`, a UserError, with the fix in the message.
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd

from ..data.intervals import centre_resize_sequence, centred_starts
from . import UserError

# split spellings found in the wild -> ours (Basenji/Enformer BEDs say "valid")
SPLIT_ALIASES = {"train": "train", "training": "train", "val": "val", "valid": "val", "validation": "val",
                 "test": "test"}


class DataConfigError(UserError):
    """Data that cannot be read as the config says."""


def build_datasets(data, task_name: str):
    """(train, val) datasets for a checked data config and a task name ("mlm", "binary", ...)."""
    if data.kind == "genome_windows":
        return genome_windows(data)
    readers = {"bundled_task": _bundled_table, "table": _table, "fasta_bed": _fasta_bed_table,
               "bigwig": _bigwig_table}
    return labelled_datasets(readers[data.kind](data, task_name), data)


# --------------------------------------------------------------------------- masked-LM windows
def genome_windows(data):
    """Train windows drawn anew each epoch and a fixed (seeded) validation set, both (4, seq_len)."""
    from ..data import GenomeWindowDataset, demo_genome_fasta, demo_genome_regions

    if data.fasta is None:
        fasta, splits = demo_genome_fasta(), demo_genome_regions()
    else:
        fasta = _existing(data.fasta, "data.fasta")
        splits = _read_splits(data.splits) if isinstance(data.splits, str) else data.splits
    common = dict(chroms=data.chroms, splits=splits, max_n_frac=data.max_n_frac)
    train = GenomeWindowDataset(fasta, data.seq_len, n_random=data.train_windows, split="train",
                                rc_prob=data.rc_prob, max_shift=data.max_shift, **common)
    val = GenomeWindowDataset(fasta, data.seq_len, n_random=data.val_windows, split="val", seed=0, **common)
    return train, val


def _read_splits(path: str) -> pd.DataFrame:
    """A BED of regions with the split in the 4th column (headed or not) -> chrom, start, end, split."""
    path = _existing(path, "data.splits")
    first = pd.read_csv(path, sep="\t", header=None, nrows=1, comment="#", dtype=str)
    headed = first.iloc[0, 0] == "chrom"
    frame = pd.read_csv(path, sep="\t", header=0 if headed else None, comment="#", dtype=str)
    if not headed:
        if frame.shape[1] < 4:
            raise DataConfigError(f"data.splits={path} needs a 4th column naming the split (train / val / test).")
        frame = frame.iloc[:, :4]
        frame.columns = ["chrom", "start", "end", "split"]
    elif "split" not in frame.columns:
        raise DataConfigError(f"data.splits={path} has no 'split' column (columns: {', '.join(frame.columns)}).")
    frame["split"] = _normalise_splits(frame["split"], f"data.splits={path}")
    frame[["start", "end"]] = frame[["start", "end"]].astype(np.int64)
    return frame[["chrom", "start", "end", "split"]]


# --------------------------------------------------------------------------- labelled tables
# Every labelled reader returns a LabelledTable: per-row sequences, labels (N, T, L), split names.
class LabelledTable:
    """Sequences, labels (N, T, L) float32, task names and per-row split ("train" / "val" / "test")."""

    def __init__(self, seqs: list[str], labels: np.ndarray, tasks: list[str], split: np.ndarray, source: str):
        self.seqs, self.labels, self.tasks, self.split, self.source = seqs, labels, tasks, split, source

    def rows(self, split: str):
        keep = np.flatnonzero(self.split == split)
        return [self.seqs[i] for i in keep], self.labels[keep]


def labelled_datasets(table: LabelledTable, data):
    """gReLU LabeledSeqDatasets for the train and val rows (augmentation on the train rows only)."""
    from grelu.data.dataset import LabeledSeqDataset

    datasets = []
    for split in ("train", "val"):
        seqs, labels = table.rows(split)
        if not seqs:
            raise DataConfigError(f"{table.source} has no '{split}' rows: every run needs train and val rows "
                                  "(see data.split_column / data.val_chroms).")
        lengths = {len(s) for s in seqs}
        if len(lengths) > 1:
            raise DataConfigError(f"{table.source}: sequences have different lengths "
                                  f"({min(lengths)}-{max(lengths)} bp); set data.seq_len to resize them")
        augment = split == "train"
        datasets.append(LabeledSeqDataset(
            seqs, labels=labels, tasks=table.tasks,
            rc=bool(data.rc_aug) and augment, max_seq_shift=data.max_shift if augment else 0,
            augment_mode="random",
        ))
    return tuple(datasets)


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


def _bundled_table(data, task_name: str) -> LabelledTable:
    from ..data.bundled import read_task_table

    source = f"bundled task {data.name}"
    frame = read_task_table(data.name)
    labels, tasks = encode_labels(frame[["label"]].to_numpy(), [data.name], task_name, source)
    if task_name != "multiclass":
        tasks = [data.name]
    return LabelledTable(_clean_seqs(frame.seq.tolist(), source), labels, tasks, frame.split.to_numpy(), source)


def _clean_seqs(seqs: list[str], source: str, padded=None, describe=None) -> list[str]:
    """Sequences through the letter rule (data.genome.clean_sequence: upper case, IUPAC codes read as N,
    anything else an error), with one warning per kind that counts the windows padded with N
    (``padded``: a bool per sequence), holding IUPAC codes, or all-N."""
    from ..data.genome import GenomeDataError, WindowTally

    tally = WindowTally(source, describe)
    try:
        cleaned = [tally.clean(seq, i, padded=bool(padded[i]) if padded is not None else False)
                   for i, seq in enumerate(seqs)]
    except GenomeDataError as err:
        raise DataConfigError(str(err)) from err
    tally.warn(len(cleaned[0]) if padded is not None and cleaned else None, stacklevel=4)
    return cleaned


def _read_table(path: str, what: str) -> pd.DataFrame:
    resolved = _existing(path, what)
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


def _columns(frame: pd.DataFrame, wanted: list[str], source: str, key: str) -> None:
    missing = [c for c in wanted if c not in frame.columns]
    if missing:
        present = ", ".join(map(str, frame.columns))
        raise DataConfigError(f"{source} has no column(s) {', '.join(missing)} (it has {present}); set {key}")


def _table(data, task_name: str) -> LabelledTable:
    source = f"data.path={data.path}"
    frame = _read_table(data.path, "data.path")
    _columns(frame, [data.seq_column], source, "data.seq_column")
    _columns(frame, list(data.label_columns), source, "data.label_columns=[...]")
    _columns(frame, [data.split_column], source, "data.split_column (values train / val / test)")
    columns = list(data.label_columns)
    labels, tasks = encode_labels(frame[columns].to_numpy(), columns, task_name, source)
    seqs = frame[data.seq_column].astype(str).tolist()
    if data.seq_len:
        seqs = [centre_resize_sequence(s, data.seq_len) for s in seqs]
    return LabelledTable(_clean_seqs(seqs, source), labels, tasks, _normalise_splits(frame[data.split_column], source),
                         source)


def _row_splits(data, source: str, frame: pd.DataFrame) -> np.ndarray:
    """Split per row: the split column if the table has one, else data.val_chroms / test_chroms."""
    if data.split_column in frame.columns:
        return _normalise_splits(frame[data.split_column], source)
    if not data.val_chroms:
        raise DataConfigError(f"{source} has no '{data.split_column}' column: add one (train / val / test) or "
                              "hold out chromosomes with data.val_chroms=[chr10] (and data.test_chroms=[...])")
    chrom = frame.chrom.astype(str)
    return np.where(chrom.isin(data.val_chroms), "val", np.where(chrom.isin(data.test_chroms), "test", "train"))


def _read_headed_intervals(path: str, what: str) -> pd.DataFrame:
    """A table with a header naming chrom, start, end (BED without a header: first three columns)."""
    resolved = _existing(path, what)
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
    _columns(frame, ["chrom", "start", "end"], f"{what}={path}", f"{what} (a header line: chrom, start, end, ...)")
    frame["chrom"] = frame["chrom"].astype(str)
    return frame


def _windows(frame: pd.DataFrame, seq_len: int | None, source: str) -> tuple[np.ndarray, int]:
    """Window starts centred on each interval and the window length."""
    starts, ends = frame.start.to_numpy(np.int64), frame.end.to_numpy(np.int64)
    if seq_len is None:
        lengths = set((ends - starts).tolist())
        if len(lengths) > 1:
            raise DataConfigError(f"{source}: intervals have different lengths ({min(lengths)}-{max(lengths)} bp); "
                                  "set data.seq_len to resize them around their centres")
        seq_len = lengths.pop()
    return centred_starts(starts, ends, seq_len), int(seq_len)


def _fetch(fasta: str, frame: pd.DataFrame, starts: np.ndarray, length: int, source: str) -> list[str]:
    """The windows [starts, starts + length) of the intervals in ``frame``, through the letter rule.

    An interval outside its chromosome is an error naming its row; a window past a chromosome end
    (only because it was centred to ``length``) is padded with N; both that and IUPAC codes (read
    as N) and all-N windows are counted in warnings."""
    from ..data import FastaGenome
    from ..data.genome import GenomeDataError, check_intervals_in_bounds, padded_windows

    genome = FastaGenome(_existing(fasta, "data.fasta"))
    rows = pd.DataFrame({"chrom": frame.chrom.astype(str), "start": frame.start.to_numpy(np.int64),
                         "end": frame.end.to_numpy(np.int64)})
    try:
        check_intervals_in_bounds(rows, genome, source)
    except GenomeDataError as err:
        raise DataConfigError(str(err)) from err
    seqs = [genome.fetch(c, int(s), int(s) + length) for c, s in zip(rows.chrom, starts)]
    padded = padded_windows(rows.chrom.to_numpy(), starts, length, genome.sizes)
    return _clean_seqs(seqs, source, padded,
                       lambda i: f"row {i + 1}: {rows.chrom.iat[i]}:{rows.start.iat[i]}-{rows.end.iat[i]}")


def _fasta_bed_table(data, task_name: str) -> LabelledTable:
    source = f"data.intervals={data.intervals}"
    frame = _read_headed_intervals(data.intervals, "data.intervals")
    _columns(frame, list(data.label_columns), source, "data.label_columns=[...]")
    columns = list(data.label_columns)
    labels, tasks = encode_labels(frame[columns].to_numpy(), columns, task_name, source)
    starts, seq_len = _windows(frame, data.seq_len, source)
    split = _row_splits(data, source, frame)
    return LabelledTable(_fetch(data.fasta, frame, starts, seq_len, source), labels, tasks, split, source)


def _bigwig_table(data, task_name: str) -> LabelledTable:
    """Coverage over label_len centred on each interval, binned by LabeledSeqDataset's own rule."""
    from grelu.io.bigwig import read_bigwig

    source = f"data.intervals={data.intervals}"
    frame = _read_headed_intervals(data.intervals, "data.intervals")
    bigwigs = [str(_existing(p, "data.bigwigs")) for p in data.bigwigs]
    starts, seq_len = _windows(frame, data.seq_len, source)
    seqs = _fetch(data.fasta, frame, starts, seq_len, source)  # checks the intervals before bigwig reads them
    label_len = data.label_len or seq_len
    label_starts = centred_starts(frame.start.to_numpy(np.int64), frame.end.to_numpy(np.int64), label_len)
    label_windows = pd.DataFrame({"chrom": frame.chrom, "start": label_starts, "end": label_starts + label_len})
    coverage = np.nan_to_num(read_bigwig(label_windows, bigwigs, aggfunc=None)).astype(np.float32)  # (N, T, label_len)
    n_bins = label_len // data.bin_size
    labels = getattr(np, data.label_aggfunc)(coverage.reshape(len(frame), len(bigwigs), n_bins, data.bin_size), axis=-1)
    tasks = [Path(p).name.split(".")[0] for p in bigwigs]
    split = _row_splits(data, source, frame)
    return LabelledTable(seqs, labels.astype(np.float32), tasks, split, source)


# --------------------------------------------------------------------------- helpers
def _normalise_splits(values: pd.Series, source: str) -> np.ndarray:
    names = values.astype(str).str.strip().str.lower()
    unknown = sorted(set(names) - set(SPLIT_ALIASES))
    if unknown:
        raise DataConfigError(f"{source}: unknown split name(s) {unknown[:5]}; use train, val (or valid) and test")
    return names.map(SPLIT_ALIASES).to_numpy()


def _existing(path, what: str) -> Path:
    resolved = Path(str(path)).expanduser()
    if not resolved.exists():
        raise DataConfigError(f"{what}: file {resolved} not found (relative paths are taken from "
                              f"{Path.cwd()})")
    return resolved


def steps_per_epoch(n_items: int, batch_size: int, accumulate: int, n_devices: int = 1) -> int:
    """Optimiser steps in one pass over ``n_items`` (drop_last=False)."""
    return max(1, math.ceil(n_items / (batch_size * max(1, n_devices)) / max(1, accumulate)))
