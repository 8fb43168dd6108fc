"""Long-range suite from released checkpoints: a linear probe on pooled embeddings, or fine-tuning.

    benchmarks/run.py long_range --pretrained caduceus=NAME hyenadna=NAME enformer=NAME [--probe | --finetune]

Each NAME is anything :func:`grelu_caduceus.embed.load_embedder` takes: a Caduceus hub name or
HF-format folder (``grelu_caduceus.load_pretrained``), a HyenaDNA hub name or LongSafari folder
(``grelu_caduceus.hyena.load_pretrained``), ``Genentech/enformer-model`` / a local
``human_state_dict.h5`` (``grelu_caduceus.enformer``) or a gReLU ``.ckpt`` of an Enformer. The family
before ``=`` is checked against what was loaded.

The tasks, contexts, seeds and training/test examples are those of the from-scratch grid
(:mod:`benchmarks.long_range`: the same ``TaskData`` per task, seed and context, the same budget).

* ``--probe`` (mode ``pretrained_probe``, the default): the frozen model embeds every sequence; the
  features are averaged over the central ``readout_len`` bp (the from-scratch models read out there
  too, so a longer context can only add information); the probe is
  :func:`grelu_caduceus.vep_probe.fit_probe` (standardised logistic regression, C by 3-fold CV on
  the training examples), scored by test AUROC. One row per cell, ``budget = probe``,
  ``steps = 0`` and ``train_s`` = seconds to embed and fit.
* ``--finetune`` (mode ``pretrained_finetune``): the same features (the pretrained trunk, pooled
  over the central ``readout_len`` bp) with a new linear head, all weights trained by
  :func:`benchmarks.long_range.train_run` with the grid's budget: two rows per cell
  (``equal_steps`` and ``equal_time``) and learning-curve rows, like the from-scratch grid.

Strands as in ``embed``: Caduceus-PS is strand symmetric by construction, Caduceus-Ph is conjoined
with its reverse-complement pass, HyenaDNA and Enformer read the forward strand. Enformer's inputs
are padded with N to a multiple of its 128-bp bins. A HyenaDNA release only takes contexts up to its
``l_max``.

Rows go to ``long_range_pretrained.csv`` (the grid's columns plus ``mode``, ``checkpoint`` and
``note``) and ``long_range_pretrained_curves.csv``; both are resumable like the grid's.
"""

from __future__ import annotations

import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks import long_range as lr

FAMILIES = ("caduceus", "hyenadna", "enformer")
# Embedder.family for each family named on the command line.
EMBEDDER_FAMILY = {"caduceus": "caduceus", "hyenadna": "hyenadna", "enformer": "grelu"}
MODES = ("pretrained_probe", "pretrained_finetune")
COLUMNS = ["mode", "checkpoint"] + lr.COLUMNS + ["note"]
CURVE_COLUMNS = ["mode", "checkpoint"] + lr.CURVE_COLUMNS


def parse_pretrained(items) -> dict[str, str]:
    """``["caduceus=NAME", ...]`` -> {family: NAME}; a bare NAME is refused (say which family it is)."""
    out = {}
    for item in items or []:
        family, sep, name = str(item).partition("=")
        family = family.strip().lower()
        if not sep or not name.strip():
            raise ValueError(f"--pretrained takes FAMILY=NAME (families: {', '.join(FAMILIES)}), got {item!r}.")
        if family not in FAMILIES:
            raise ValueError(f"Unknown model family {family!r} in {item!r}; choose from {', '.join(FAMILIES)}.")
        if family in out:
            raise ValueError(f"--pretrained names {family} twice.")
        out[family] = name.strip()
    if not out:
        raise ValueError("--pretrained needs at least one FAMILY=NAME.")
    return out


def load_family(family: str | None, name: str, trust_pickle: bool = False):
    """The Embedder of checkpoint ``name``; with ``family`` given, check that it is that kind of model."""
    from grelu_caduceus.embed import load_embedder

    embedder = load_embedder(name, trust_pickle=trust_pickle, device="cpu")
    if family is not None and embedder.family != EMBEDDER_FAMILY[family]:
        got = {v: k for k, v in EMBEDDER_FAMILY.items()}.get(embedder.family, embedder.family)
        raise ValueError(f"{family}={name} loaded a {got} model, not a {family} one.")
    return embedder


def family_of(embedder) -> str:
    return {v: k for k, v in EMBEDDER_FAMILY.items()}[embedder.family]


class PooledHead(nn.Module):
    """A pretrained trunk, its features averaged over the central ``pool_len`` bp, then a linear head.

    ``forward(x)`` takes one-hot (N, 4, L) and returns logits (N, 1, 1) like the grid's models. The
    features are the embedder's (strands combined as in ``embed``); the trunk's weights train with
    the head.
    """

    def __init__(self, embedder, pool_len: int, n_tasks: int = 1):
        super().__init__()
        self.trunk = embedder.module
        self._features = embedder.features
        self.bin_size = max(1, int(embedder.bin_size))
        self.max_len = embedder.max_len
        self.pool_len = int(pool_len)
        self.head = nn.Linear(embedder.hidden_size, n_tasks)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        from grelu_caduceus.embed import _pool

        length = int(x.shape[-1])
        pad = (-length) % self.bin_size if self.bin_size > 1 else 0
        if pad:
            x = nn.functional.pad(x, (pad // 2, pad - pad // 2))
        feats = self._features(x)
        pooled = _pool(feats, length + pad, pad // 2 + (length - self.pool_len) // 2, "mean")
        return self.head(pooled).unsqueeze(-1)


def _check_context(embedder, family: str, name: str, contexts) -> None:
    if embedder.max_len is not None and max(contexts) > embedder.max_len:
        raise ValueError(f"{family}={name} takes at most {embedder.max_len} bp; contexts {list(contexts)} "
                         "include longer ones (use --contexts).")


def probe_cell(embedder, data: lr.TaskData, context: int, readout_len: int, seed: int, batch_size: int = 16):
    """Fit the probe on one (task, context, seed) cell: (test AUROC, C, seconds)."""
    from grelu_caduceus.embed import embed_onehot
    from grelu_caduceus.vep_probe import fit_probe

    start = time.perf_counter()
    codes = data.centre(context)
    X = embed_onehot(embedder, lr.one_hot(codes), pool_len=readout_len, batch_size=batch_size).astype(np.float64)
    y = data.labels.astype(np.int64)
    train, test = ~data.is_test, data.is_test
    probe, C = fit_probe(X[train], y[train], "logistic", seed=seed)
    value = lr.auroc(y[test], probe.decision_function(X[test]))
    return value, C, time.perf_counter() - start


def _done(path: Path) -> set:
    done = {}
    for row in lr._read_rows(path):
        key = (row["mode"], row["task"], row["model"], int(row["context_len"]), int(row["seed"]))
        done.setdefault(key, set()).add(row["budget"])
    need = {"pretrained_probe": {"probe"}, "pretrained_finetune": set(lr.BUDGET_KINDS)}
    return {k for k, kinds in done.items() if need[k[0]] <= kinds}


def run_pretrained(out_dir, pretrained: dict, mode: str = "pretrained_probe", quick=False, seeds=None, tasks=None,
                   contexts=None, data_dir=None, log=print, budget: lr.Budget | None = None,
                   trust_pickle: bool = False) -> Path:
    """Run every (task, seed, context, family) not yet in ``out_dir/long_range_pretrained.csv``.

    Args:
        pretrained: {family: checkpoint} (see :func:`parse_pretrained`).
        mode: "pretrained_probe" or "pretrained_finetune".
        quick, seeds, tasks, contexts, data_dir, budget: as in :func:`benchmarks.long_range.run_long_range`.
        trust_pickle: allow checkpoint files that need full unpickling.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}.")
    budget = budget or (lr.QUICK if quick else lr.FULL)
    if seeds:
        budget = replace(budget, seeds=list(seeds))
    if contexts:
        budget = replace(budget, contexts=sorted(int(c) for c in contexts))
    tasks = list(tasks or lr.GRID_TASKS)
    unknown = [t for t in tasks if t not in lr.TASKS]
    if unknown:
        raise ValueError(f"Unknown task(s) {unknown}; choose from {', '.join(lr.TASKS)}.")
    embedders = {}
    for family, name in pretrained.items():  # load (and check) every checkpoint before any work
        embedders[family] = load_family(family, name, trust_pickle)
        _check_context(embedders[family], family, name, budget.contexts)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path, curves_path = out_dir / "long_range_pretrained.csv", out_dir / "long_range_pretrained_curves.csv"
    done = _done(path)
    plan = [(t, s, c, f) for t in tasks for s in budget.seeds for c in budget.contexts for f in pretrained
            if (mode, t, f, c, s) not in done]
    log(f"long_range {mode}: {', '.join(f'{f}={n}' for f, n in pretrained.items())}; tasks {tasks}, contexts "
        f"{budget.contexts}, seeds {budget.seeds}; {len(plan)} run(s) to do -> {path}")
    real_tasks, cached = {}, {}
    for i, (task_name, seed, context, family) in enumerate(plan, 1):
        task = lr.TASKS[task_name]
        key = (task_name, seed, context)
        if key not in cached:
            cached.clear()
            if task.table:
                if task_name not in real_tasks:
                    real_tasks[task_name] = lr.real_task(task, max(budget.contexts), data_dir, log)
                cached[key] = real_tasks[task_name].data(budget.n_train, budget.n_test, seed)
            else:
                cached[key] = lr.SYNTHETIC[task_name](context, budget.n_train, budget.n_test, seed)
        data = cached[key]
        common = dict(mode=mode, checkpoint=pretrained[family], task=task_name, data=task.data_kind, model=family,
                      context_len=context, metric="auroc", seed=seed, n_train=int((~data.is_test).sum()),
                      n_test=int(data.is_test.sum()))
        if mode == "pretrained_probe":
            embedder = embedders[family]
            value, C, seconds = probe_cell(embedder, data, context, budget.readout_len, seed)
            params = sum(p.numel() for p in embedder.module.parameters()) if embedder.module is not None else 0
            rows = [dict(common, params=params, budget="probe", value=round(value, 4), steps=0,
                         train_s=round(seconds, 2), batch_size="", lr="", note=f"logistic C={C:g}")]
            curve = []
            summary = f"auroc {value:.3f} (C={C:g}, {seconds:.1f} s)"
        else:
            torch.manual_seed(seed)
            # A fresh copy of the released weights for every run.
            model = PooledHead(load_family(family, pretrained[family], trust_pickle), budget.readout_len)
            codes = data.centre(context)
            train, test = ~data.is_test, data.is_test
            result = lr.train_run(model, lr.one_hot(codes[train]), torch.from_numpy(data.labels[train]),
                                  lr.one_hot(codes[test]), data.labels[test], budget, seed)
            rows = [dict(common, params=lr.count_params(model), budget=kind, value=round(result.points[kind][2], 4),
                         steps=result.points[kind][0], train_s=round(result.points[kind][1], 2),
                         batch_size=budget.batch_size, lr=budget.lr, note="trunk + linear head, all trained")
                    for kind in lr.BUDGET_KINDS]
            curve = [dict(mode=mode, checkpoint=pretrained[family], task=task_name, model=family, context_len=context,
                          seed=seed, step=s, train_s=t, metric="auroc", value=round(v, 4)) for s, t, v in result.curve]
            by = {r["budget"]: r for r in rows}
            summary = (f"auroc {by['equal_steps']['value']:.3f} @ {by['equal_steps']['steps']} steps | "
                       f"{by['equal_time']['value']:.3f} @ {by['equal_time']['train_s']:.1f} s")
        lr.append_rows(path, COLUMNS, rows)
        if curve:
            lr.append_rows(curves_path, CURVE_COLUMNS, curve)
        log(f"  [{i}/{len(plan)}] {task_name:14s} {family:8s} {context:5d} bp seed {seed}: {summary}")
    return path


__all__ = ["COLUMNS", "FAMILIES", "MODES", "PooledHead", "load_family", "parse_pretrained", "probe_cell",
           "run_pretrained"]
