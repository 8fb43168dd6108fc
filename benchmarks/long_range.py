"""Long-range suite: tasks whose label depends on sequence away from the site the model reads out.

Every model of :data:`benchmarks.scaling.MATCHED` (Caduceus-PS, HyenaDNA, compact Enformer, about
200k parameters each) is trained from scratch on every task at every context length, with the
same budget (steps, batch, learning rate) and the same seeds, in one plain PyTorch loop. The
prediction is always read at the centre (the model's output is cropped to the central
``readout_len`` bp, then averaged), so a longer context can only add information:

* ``motif_distance`` (synthetic): uniform random DNA; positives carry a cluster of four adjacent
  copies of a CTCF-like 14-mer (each on either strand) centred ``context/2 - 32`` bp upstream or
  downstream of the sequence centre (outside the read-out window); negatives carry none. Read at
  the centre, the label is only visible to a model that moves information over that distance.
* ``atac_gm12878`` (real): GM12878 ATAC-seq peaks on hg19 chr20 against GC-matched background
  (the bundled ``atac`` table), windows of ``context`` bp centred on the bundled 200 bp windows,
  read from the full chr20 of ``benchmarks/data/prepare.py``.
* ``ctcf_hg19`` (real): the same for hg19 CTCF sites (bundled ``ctcf`` table).

Each run writes one row of ``long_range.csv``: ``task, data, model, context_len, params, metric,
value, seed`` (metric ``auroc`` on the held-out test split), plus ``steps, n_train, n_test,
train_s`` (the budget and the wall time of training).

``quick`` is a smoke test (contexts 96 and 160 bp, a handful of steps) that needs no download: its
real task crops the bundled 200 bp windows.
"""

from __future__ import annotations

import csv
import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.scaling import MATCHED, build_model, count_params

COLUMNS = ["task", "data", "model", "context_len", "params", "metric", "value", "seed",
           "steps", "n_train", "n_test", "train_s"]
# hg19 CTCF consensus core (JASPAR MA0139.1, most likely base at each position), planted as a
# cluster of adjacent copies (56 bp): one copy is hard to pick up from a few hundred examples.
MOTIF = "CCACCAGGGGGCGC"
MOTIF_COPIES = 4
BASES = "ACGT"


@dataclass
class Budget:
    """What every (model, task, context, seed) run gets.

    Attributes:
        contexts: sequence lengths (bp), each a multiple of 32 (Enformer's pooling).
        readout_len: central bp the prediction is read from.
        steps, batch_size, lr, weight_decay, warmup_steps: AdamW training, linear warm-up, then
            constant; gradients clipped to norm 1.
        n_train: training examples per run (balanced), sampled per seed; n_test: balanced test
            examples, the same for every seed and model.
        seeds: torch / sampling seeds.
    """

    contexts: list[int] = field(default_factory=lambda: [256, 1024, 2048])
    readout_len: int = 128
    steps: int = 40
    batch_size: int = 8
    lr: float = 2e-3
    weight_decay: float = 0.01
    warmup_steps: int = 4
    n_train: int = 320
    n_test: int = 192
    seeds: list[int] = field(default_factory=lambda: [0])


# Sized for two CPU cores: Caduceus trains at a few thousand positions per second there, so each
# (model, task, context) run sees every one of its 320 training sequences once (40 steps of 8).
FULL = Budget()
QUICK = Budget(contexts=[96, 160], readout_len=32, steps=3, batch_size=8, warmup_steps=1, n_train=32, n_test=32,
               seeds=[0])


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


def one_hot(codes: np.ndarray) -> torch.Tensor:
    """uint8 codes (n, L) -> float32 one-hot (n, 4, L); N is an all-zero column."""
    rows = np.eye(5, 4, dtype=np.float32)[codes]  # (n, L, 4)
    return torch.from_numpy(np.ascontiguousarray(rows.transpose(0, 2, 1)))


def motif_distance_data(context: int, n_train: int, n_test: int, seed: int) -> TaskData:
    """The synthetic task at one context: ``n_train`` then ``n_test`` sequences (even counts, balanced).

    Positives hold a cluster of MOTIF_COPIES adjacent copies of MOTIF (each on a random strand),
    centred ``motif_distance(context)`` bp to a random side of the sequence centre; negatives hold
    random DNA only (chance occurrences of a 14-mer are ~1e-5 per sequence and ignored).
    """
    if n_train % 2 or n_test % 2:
        raise ValueError(f"n_train and n_test must be even (balanced classes), got {n_train} and {n_test}.")
    rng = np.random.default_rng([seed, context])
    n = n_train + n_test
    codes = rng.integers(0, 4, size=(n, context), dtype=np.uint8)
    labels = np.tile(np.array([1, 0], dtype=np.float32), n // 2)
    motif = encode(MOTIF)
    motif_rc = (3 - motif)[::-1]
    k = len(MOTIF)
    distance = motif_distance(context)
    for i in np.flatnonzero(labels):
        cluster_start = context // 2 + distance * (1 if rng.random() < 0.5 else -1) - MOTIF_COPIES * k // 2
        for copy in range(MOTIF_COPIES):
            start = cluster_start + copy * k
            codes[i, start:start + k] = motif if rng.random() < 0.5 else motif_rc
    is_test = np.arange(n) >= n_train  # labels alternate, so both parts are balanced
    return TaskData(codes, labels, is_test)


def motif_distance(context: int) -> int:
    """Distance (bp) from the sequence centre to the centre of the motif cluster: near the far end."""
    return context // 2 - 32


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
        from grelu_caduceus.data import read_task_table

        self.table = read_task_table(table)
        self.labels = self.table.label.to_numpy(np.float32)
        self.max_context = max_context
        self.data_dir = data_dir
        self.log = log
        self._codes = {}  # row index -> codes (max_context,)

    def _genome(self):
        from benchmarks.data.prepare import prepare
        from grelu_caduceus.data import FastaGenome

        paths = prepare(["hg19_chr20"], cache_dir=self.data_dir, log=self.log)["hg19_chr20"]
        return FastaGenome(paths["fasta"])

    def _read(self, rows: np.ndarray) -> None:
        missing = [int(r) for r in rows if int(r) not in self._codes]
        if not missing:
            return
        if self.max_context <= 200:  # the bundled sequences already cover it
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


@dataclass(frozen=True)
class TaskSpec:
    name: str
    data_kind: str  # "real" or "synthetic"
    table: str | None = None


TASKS = {
    "motif_distance": TaskSpec("motif_distance", "synthetic"),
    "atac_gm12878": TaskSpec("atac_gm12878", "real", "atac"),
    "ctcf_hg19": TaskSpec("ctcf_hg19", "real", "ctcf"),
}


# ---------------------------------------------------------------------------------------------
# Training and evaluation (one loop for every model).
# ---------------------------------------------------------------------------------------------


def auroc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (ties count half), from the Mann-Whitney U statistic."""
    import pandas as pd

    labels = np.asarray(labels).astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return math.nan
    ranks = pd.Series(np.asarray(scores, dtype=np.float64)).rank(method="average").to_numpy()
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


def train_and_evaluate(model: torch.nn.Module, train_x: torch.Tensor, train_y: torch.Tensor,
                       test_x: torch.Tensor, test_y: np.ndarray, budget: Budget, seed: int) -> tuple[float, float]:
    """Train ``model`` on (train_x (n, 4, L), train_y (n,)) and return (test AUROC, training seconds).

    Batches are drawn as shuffled passes over the training set (order from ``seed``). The model's
    output (N, 1, 1) is a logit; loss: binary cross-entropy.
    """
    generator = torch.Generator().manual_seed(seed)
    optimizer = torch.optim.AdamW(model.parameters(), lr=budget.lr, weight_decay=budget.weight_decay)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda step: min(1.0, (step + 1) / max(1, budget.warmup_steps)))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    order = torch.empty(0, dtype=torch.long)
    model.train()
    start = time.perf_counter()
    for _ in range(budget.steps):
        if len(order) < budget.batch_size:
            order = torch.cat([order, torch.randperm(len(train_x), generator=generator)])
        batch, order = order[:budget.batch_size], order[budget.batch_size:]
        logits = model(train_x[batch]).reshape(-1)
        loss = loss_fn(logits, train_y[batch])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()
        schedule.step()
    train_seconds = time.perf_counter() - start
    model.eval()
    with torch.no_grad():
        scores = torch.cat([model(test_x[i:i + 64]).reshape(-1) for i in range(0, len(test_x), 64)])
    return auroc(test_y, scores.float().numpy()), train_seconds


def run_one(task: TaskSpec, data: TaskData, model_name: str, context: int, budget: Budget, seed: int) -> dict:
    """Train and test one model on one task at one context; returns the CSV row."""
    codes = data.centre(context)
    train, test = ~data.is_test, data.is_test
    torch.manual_seed(seed)
    model = build_model(model_name, context, readout_len=budget.readout_len)
    value, seconds = train_and_evaluate(
        model, one_hot(codes[train]), torch.from_numpy(data.labels[train]),
        one_hot(codes[test]), data.labels[test], budget, seed)
    return dict(task=task.name, data=task.data_kind, model=model_name, context_len=context,
                params=count_params(model), metric="auroc", value=round(value, 4), seed=seed, steps=budget.steps,
                n_train=int(train.sum()), n_test=int(test.sum()), train_s=round(seconds, 1))


def run_long_range(out_dir, quick=False, seeds=None, tasks=None, models=None, data_dir=None, log=print,
                   budget: Budget | None = None) -> Path:
    """Run every (task, context, seed, model) and write ``out_dir/long_range.csv`` after each row.

    Args:
        out_dir: output folder (created).
        quick: the smoke-test budget (QUICK) instead of FULL.
        seeds, tasks, models: subsets (default: the budget's seeds, all TASKS, all MATCHED models).
        data_dir: cache folder for the hg19 chr20 download (benchmarks/data/prepare.py).
        budget: a custom Budget (overrides quick).
    """
    budget = budget or (QUICK if quick else FULL)
    if seeds:
        budget = replace(budget, seeds=list(seeds))
    tasks = list(tasks or TASKS)
    models = list(models or MATCHED)
    for given, known, what in ((tasks, TASKS, "task"), (models, MATCHED, "model")):
        unknown = [x for x in given if x not in known]
        if unknown:
            raise ValueError(f"Unknown {what}(s) {unknown}; choose from {', '.join(known)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "long_range.csv"
    log(f"long_range: tasks {tasks}, models {models}, contexts {budget.contexts}, seeds {budget.seeds}, "
        f"{budget.steps} steps x {budget.batch_size} -> {path}")
    rows = []
    started = time.perf_counter()
    max_context = max(budget.contexts)
    for task_name in tasks:
        task = TASKS[task_name]
        real = RealTask(task.table, max_context, data_dir, log) if task.data_kind == "real" else None
        for seed in budget.seeds:
            shared = real.data(budget.n_train, budget.n_test, seed) if real else None
            for context in budget.contexts:
                if real:
                    data = shared
                else:  # the synthetic motif sits at a distance set by the context: new data per context
                    data = motif_distance_data(context, budget.n_train, budget.n_test, seed)
                for model_name in models:
                    row = run_one(task, data, model_name, context, budget, seed)
                    rows.append(row)
                    write_csv(path, rows)
                    log(f"  {task_name:15s} {model_name:9s} {context:5d} bp seed {seed}: AUROC {row['value']:.3f} "
                        f"({row['train_s']:.0f} s training)")
    log(f"long_range: {len(rows)} runs in {(time.perf_counter() - started) / 60:.1f} min")
    return path


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
