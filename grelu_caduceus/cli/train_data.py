"""Datasets of ``grelu-caduceus train``, built from a checked data config (``config_schema.*Data``).

This module only maps a config's fields onto the data layer's readers:

* ``genome_windows`` (task=mlm): lazy one-hot windows, :class:`grelu_caduceus.data.GenomeWindowDataset`.
* labelled kinds (``bundled_task``, ``table``, ``fasta_bed``, ``bigwig``): the readers of
  :mod:`grelu_caduceus.data.tables`, served as gReLU ``LabeledSeqDataset`` objects (what gReLU's
  LightningModel trains on); labels are (N, T, L) float32 arrays (T tasks, or T classes one-hot for
  task=multiclass). ``fasta_bed`` and ``bigwig`` read each window from the FASTA when training asks
  for it (only coordinates and labels are held in memory).

Every user mistake (missing file, missing column, unknown chromosome, labels that do not fit the
task) raises :class:`DataConfigError`, a UserError, with the fix (a ``data.*`` key) in the message.
"""

from __future__ import annotations

import math

from ..data import tables
from ..data.tables import DataConfigError  # noqa: F401  (the error of every reader; re-exported for the CLI)


def build_datasets(data, task_name: str):
    """(train, val) datasets for a checked data config and a task name ("mlm", "binary", ...)."""
    if data.kind == "genome_windows":
        return genome_windows(data)
    readers = {"bundled_task": _bundled_table, "table": _table, "fasta_bed": _fasta_bed_table,
               "bigwig": _bigwig_table}
    return tables.labelled_datasets(readers[data.kind](data, task_name), rc_aug=data.rc_aug, max_shift=data.max_shift)


def genome_windows(data):
    """Train windows drawn anew each epoch and a fixed (seeded) validation set, both (4, seq_len)."""
    from ..data import GenomeWindowDataset, demo_genome_fasta, demo_genome_regions

    if data.fasta is None:
        fasta, splits = demo_genome_fasta(), demo_genome_regions()
    else:
        fasta = tables.existing(data.fasta, "data.fasta")
        splits = tables.read_splits(data.splits) if isinstance(data.splits, str) else data.splits
    common = dict(chroms=data.chroms, splits=splits, max_n_frac=data.max_n_frac)
    train = GenomeWindowDataset(fasta, data.seq_len, n_random=data.train_windows, split="train",
                                rc_prob=data.rc_prob, max_shift=data.max_shift, **common)
    val = GenomeWindowDataset(fasta, data.seq_len, n_random=data.val_windows, split="val", seed=0, **common)
    return train, val


def _bundled_table(data, task_name: str):
    return tables.bundled_table(data.name, task_name)


def _table(data, task_name: str):
    return tables.sequence_table(data.path, data.seq_column, list(data.label_columns), data.split_column, task_name,
                                 seq_len=data.seq_len)


def _fasta_bed_table(data, task_name: str):
    return tables.fasta_bed_table(data.fasta, data.intervals, list(data.label_columns), task_name, seq_len=data.seq_len,
                                  split_column=data.split_column, val_chroms=data.val_chroms,
                                  test_chroms=data.test_chroms)


def _bigwig_table(data, task_name: str):
    return tables.bigwig_table(data.fasta, data.intervals, list(data.bigwigs), seq_len=data.seq_len,
                               label_len=data.label_len, bin_size=data.bin_size, label_aggfunc=data.label_aggfunc,
                               split_column=data.split_column, val_chroms=data.val_chroms,
                               test_chroms=data.test_chroms)


def steps_per_epoch(n_items: int, batch_size: int, accumulate: int, n_devices: int = 1) -> int:
    """Optimiser steps in one pass over ``n_items`` (drop_last=False)."""
    return max(1, math.ceil(n_items / (batch_size * max(1, n_devices)) / max(1, accumulate)))
