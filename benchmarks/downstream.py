"""Downstream study: does pretraining pay on the real long-range tasks?

    benchmarks/run.py downstream [--models ...] [--inits ...] [--tasks ...] [--seeds 0 1 2] [--out DIR]
    benchmarks/run.py downstream --export-only     # pretraining_runs/lm/*/0/weights.pt -> pretrained_lms/

The three language models of :mod:`benchmarks.pretraining` (experiment ``lm``: Caduceus-PS and
Caduceus-Ph with masked-LM loss, HyenaDNA with next-token loss, about 164k parameters each, all on
hg19 chr20 train blocks) are compared on the real tasks of :mod:`benchmarks.long_range`
(``atac_gm12878``, ``ctcf_hg19``, ``rnaseq_dm3``; the same ``TaskData``: balanced training examples
sampled per seed, fixed balanced test examples), each model three ways:

* ``scratch``: the pretrained model's architecture (``EXPERIMENTS["lm"][model]``) with random
  weights, its features averaged over the central ``readout_len`` bp, then a linear head; all
  weights trained;
* ``finetune``: the same, starting from the pretrained weights (``pretrained_lms/<model>/``);
* ``probe``: the frozen pretrained model's pooled features and the logistic-regression probe of
  :func:`grelu_caduceus.vep_probe.fit_probe` (C by 3-fold CV on the training examples only).

Both trained inits go through :class:`benchmarks.pretrained.PooledHead` and
:func:`benchmarks.long_range.train_run` with one budget (``BUDGET``): ``steps`` AdamW steps of
batch ``batch_size``, warm-up then a constant rate, the learning rate of the model's family in the
long-range grid (:func:`benchmarks.long_range.model_lr`: 8e-3 for Caduceus, 2e-3 for HyenaDNA) for
scratch and finetune alike. Checkpoint selection: none; the model after exactly ``steps`` steps is
scored on the test set once (no validation-based early stopping, so the test set chooses nothing).
The probe is the frozen features of :func:`benchmarks.pretrained.probe_cell`. Strands as in
``embed``: Caduceus-PS is strand-symmetric by construction, Caduceus-Ph is conjoined with its
reverse-complement pass, HyenaDNA reads the forward strand.

A 4-mer logistic regression (:func:`benchmarks.long_range.kmer_probe`) on the same training and test
examples is the reference row of every (task, seed): model ``kmer4``, init ``reference``.

Outputs in OUT (default benchmarks/results/): ``downstream.csv`` (``COLUMNS``, one row per run;
metric = test AUROC), ``downstream_meta.json`` (CPU, threads, budget, the checkpoints' sha256) and,
from :func:`downstream_tables` / :func:`plot_downstream`, the report's tables and ``downstream.png``.
Resumable: a (task, model, init, seed) in the CSV is skipped; rows are appended per run. A CSV
written under another budget or other checkpoints is moved aside (``downstream.old.csv``).

The pretrained LMs are read from ``pretrained_lms/<model>/`` (exported by
:func:`export_pretrained_lms` from ``pretraining_runs/lm/<model>/0/weights.pt``: Caduceus in the HF
layout of ``grelu_caduceus.load_pretrained``, HyenaDNA in the transformers-port layout of
``grelu_caduceus.hyena.load_pretrained``); a missing or older export is redone from the weights.
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np
import torch

from benchmarks import long_range as lr
from benchmarks import pretraining as ptr
from benchmarks.hardware import hardware_meta

TASKS = ("atac_gm12878", "ctcf_hg19", "rnaseq_dm3")
MODELS = tuple(ptr.EXPERIMENTS["lm"])  # caduceus_ps, caduceus_ph, hyenadna
INITS = ("scratch", "finetune", "probe")
TRAINED_INITS = ("scratch", "finetune")
KMER_K = 4
REFERENCE = (f"kmer{KMER_K}", "reference")  # (model, init) of the k-mer rows
LM_DIR = "pretrained_lms"
COLUMNS = ["task", "model", "init", "seed", "metric", "value", "context", "steps", "train_s", "params", "n_train",
           "n_test", "lr", "note"]

# One context for every run: 256 bp, by cost (a Caduceus step at 512 bp costs twice as much, and the
# study would no longer fit in 20 minutes of 2 cores); the LMs were pretrained on 1,024 bp windows and
# read any shorter input. The long-range grid's step budget, batch, warm-up, learning rates and
# readout (lr.FULL), with no time budget. n_test 256: nearly all of atac_gm12878's 282 test sites (the
# smallest test split), the same sites for every run of a task.
BUDGET = replace(lr.FULL, contexts=[256], train_seconds=None, max_steps=lr.FULL.steps, curve_points=1, n_test=256,
                 seeds=[0, 1, 2])
# Smoke test: the bundled 200 bp windows cropped (no download), a few steps.
QUICK = replace(BUDGET, contexts=[96], steps=2, max_steps=2, warmup_steps=1, n_train=16, n_test=16, seeds=[0])

# For the ETA before any run has finished (then rescaled by what the finished runs took): seconds on
# 2 AMD EPYC cores at 256 bp, measured on stand-in LMs while another 2-thread job shared the cores
# (so about 2x pessimistic): per training step of batch 8, per example embedded without gradients
# (the trained runs' test set; the probe's train + test sets), taken to grow linearly with the
# context; PROBE_FIT_S: fit_probe's cross-validated fit; RUN_OVERHEAD_S: loading, sampling.
STEP_S = {"caduceus_ps": 0.34, "caduceus_ph": 0.33, "hyenadna": 0.12}
EMBED_S = {"caduceus_ps": 0.02, "caduceus_ph": 0.017, "hyenadna": 0.005}
PROBE_FIT_S = 4.0
RUN_OVERHEAD_S = 1.5


# ----------------------------------------------------------------------------------------------
# The pretrained LMs as loadable folders
# ----------------------------------------------------------------------------------------------


def weights_path(results_dir, model: str) -> Path:
    """The final state dict of the ``lm`` pretraining run of ``model`` (seed 0)."""
    return ptr.run_dir(Path(results_dir), "lm", model, 0) / "weights.pt"


def lm_folder(lms_dir, model: str) -> Path:
    return Path(lms_dir) / LM_DIR / model


def _arm(model: str) -> ptr.Arm:
    arms = ptr.EXPERIMENTS["lm"]
    if model not in arms:
        raise ValueError(f"unknown model {model!r}; choose from {', '.join(arms)}.")
    return arms[model]


def export_pretrained_lms(results_dir, models=None, log=print) -> dict[str, Path]:
    """Write every finished ``lm`` run's weights as a loadable folder in RESULTS/pretrained_lms/<model>/.

    Caduceus: ``grelu_caduceus.core.checkpoint.save_pretrained`` (HF layout, ``grelu_caduceus.load_pretrained``);
    HyenaDNA: ``grelu_caduceus.hyena.pretrained.save_pretrained`` (transformers-port layout,
    ``grelu_caduceus.hyena.load_pretrained``). Each folder also gets ``pretraining.json`` (the arm,
    the protocol and the run's row of pretraining.csv). Models without weights.pt are skipped
    (logged). Returns {model: folder} of those written.
    """
    from grelu_caduceus.core.checkpoint import save_pretrained as save_caduceus
    from grelu_caduceus.hyena.pretrained import save_pretrained as save_hyena

    results_dir = Path(results_dir)
    rows = {r["variant"]: r for r in lr._read_rows(results_dir / "pretraining.csv") if r["experiment"] == "lm"
            and r["seed"] == "0"}
    out = {}
    for model in models or MODELS:
        arm, source = _arm(model), weights_path(results_dir, model)
        if not source.is_file():
            log(f"  {model}: no {source} yet (run `benchmarks/run.py pretraining --experiments lm`); not exported")
            continue
        with torch.random.fork_rng():  # building draws an initialisation that is then overwritten
            module = arm.build()
        module.load_state_dict(torch.load(source, map_location="cpu", weights_only=True))
        folder = lm_folder(results_dir, model)
        if arm.family == "hyenadna":
            save_hyena(module, folder)
        else:  # tied tensors once: 0.7 MB instead of 1.1 (the loader takes either)
            save_caduceus(module, folder, store_tied_once=True)
        info = dict(model=model, arm=asdict(arm), protocol=asdict(ptr.PROTOCOLS["lm"]),
                    source=str(source.relative_to(results_dir)), pretraining_row=rows.get(model))
        (folder / "pretraining.json").write_text(json.dumps(info, indent=1) + "\n")
        log(f"  {model}: exported {source.relative_to(results_dir)} -> {folder}")
        out[model] = folder
    return out


def _weights_file(folder: Path) -> Path:
    return folder / "model.safetensors"


def ensure_lms(lms_dir, models, log=print) -> dict[str, str]:
    """{model: sha256 of its weights} for every model, (re)exporting a folder that is missing or older
    than its run's weights.pt; a one-line error when neither exists."""
    lms_dir = Path(lms_dir)
    hashes = {}
    for model in models:
        folder, source = lm_folder(lms_dir, model), weights_path(lms_dir, model)
        target = _weights_file(folder)
        if source.is_file() and (not target.is_file() or source.stat().st_mtime > target.stat().st_mtime):
            export_pretrained_lms(lms_dir, [model], log=log)
        if not target.is_file():
            raise ValueError(f"no pretrained {model}: neither {folder} nor {source} exists (run `benchmarks/run.py "
                             "pretraining --experiments lm`, or leave the model out with --models).")
        hashes[model] = hashlib.sha256(target.read_bytes()).hexdigest()
    return hashes


def load_lm(model: str, init: str, lms_dir) -> torch.nn.Module:
    """The trunk of one run: the pretrained LM (finetune, probe) or its architecture at random (scratch,
    drawn from torch's current random state)."""
    from grelu_caduceus.core import load_pretrained
    from grelu_caduceus.hyena import load_pretrained as load_hyena

    arm = _arm(model)
    if init == "scratch":
        return arm.build()
    folder = lm_folder(lms_dir, model)
    return load_hyena(folder).backbone if arm.family == "hyenadna" else load_pretrained(folder)


# ----------------------------------------------------------------------------------------------
# One run
# ----------------------------------------------------------------------------------------------


def run_one(task_name: str, data: lr.TaskData, model: str, init: str, budget: lr.Budget, seed: int,
            lms_dir) -> dict:
    """Train / fit and test one (task, model, init, seed) -> its CSV row."""
    from grelu_caduceus.embed import load_embedder

    from benchmarks.pretrained import PooledHead, probe_cell

    context = budget.contexts[0]
    common = dict(task=task_name, model=model, init=init, seed=seed, metric="auroc", context=context,
                  n_train=int((~data.is_test).sum()), n_test=int(data.is_test.sum()))
    if (model, init) == REFERENCE:
        start = time.perf_counter()
        value = lr.kmer_probe(data, context, k=KMER_K)
        return dict(common, value=round(value, 4), steps=0, train_s=round(time.perf_counter() - start, 2),
                    params=4 ** KMER_K + 1, lr="", note=f"logistic regression on {KMER_K}-mer frequencies, C=1")
    if init == "probe":
        embedder = load_embedder(load_lm(model, init, lms_dir))
        value, C, seconds = probe_cell(embedder, data, context, budget.readout_len, seed)
        return dict(common, value=round(value, 4), steps=0, train_s=round(seconds, 2),
                    params=lr.count_params(embedder.module), lr="", note=f"frozen trunk, logistic C={C:g}")
    rate = lr.model_lr(_arm(model).family, budget)
    codes = data.centre(context)
    train, test = ~data.is_test, data.is_test
    with torch.random.fork_rng():  # the seed fixes the initialisation without touching the caller's state
        torch.manual_seed(seed)
        net = PooledHead(load_embedder(load_lm(model, init, lms_dir)), budget.readout_len)
        result = lr.train_run(net, lr.one_hot(codes[train]), torch.from_numpy(data.labels[train]),
                              lr.one_hot(codes[test]), data.labels[test], budget, seed, lr=rate)
    steps, seconds, value = result.points["equal_steps"]
    what = "random init" if init == "scratch" else "pretrained init"
    return dict(common, value=round(value, 4), steps=steps, train_s=round(seconds, 2), params=lr.count_params(net),
                lr=rate, note=f"{what}, trunk + linear head, all trained")


def predicted_seconds(model: str, init: str, budget: lr.Budget) -> float:
    if (model, init) == REFERENCE:
        return 1.0
    scale = budget.contexts[0] / 256
    if init in TRAINED_INITS:
        return scale * (budget.steps * STEP_S[model] + budget.n_test * EMBED_S[model]) + RUN_OVERHEAD_S
    return scale * (budget.n_train + budget.n_test) * EMBED_S[model] + PROBE_FIT_S + RUN_OVERHEAD_S


# ----------------------------------------------------------------------------------------------
# The study
# ----------------------------------------------------------------------------------------------

SUBSET_FIELDS = ("seeds",)  # budget fields that may differ between resumed invocations


def _protocol(budget: dict) -> dict:
    return {k: v for k, v in budget.items() if k not in SUBSET_FIELDS}


def _prepare_output(out_dir: Path, budget: lr.Budget, hashes: dict, log) -> Path:
    """downstream.csv, moved aside first when its rows come from other columns, another budget (seeds
    aside) or other weights of a model (downstream_meta.json), so a resumed study never mixes them."""
    path, meta_path = out_dir / "downstream.csv", out_dir / "downstream_meta.json"
    if not path.exists() or not path.stat().st_size:
        return path
    import csv

    with open(path, newline="") as f:
        header = next(csv.reader(f), [])
    why = "other columns" if header != COLUMNS else None
    if why is None and meta_path.exists():
        try:
            meta = json.loads(meta_path.read_text())
        except ValueError:
            meta = {}
        recorded = meta.get("checkpoints_sha256") or {}
        if _protocol(meta.get("budget") or {}) != _protocol(json.loads(json.dumps(asdict(budget)))):
            why = "another budget"
        elif any(recorded.get(m, h) != h for m, h in hashes.items()):
            why = "other pretrained weights"
    if why:
        old = path.with_name("downstream.old.csv")
        path.replace(old)
        log(f"downstream.csv is from {why} (downstream_meta.json): moved to {old.name}")
    return path


def _write_meta(out_dir: Path, budget: lr.Budget, hashes: dict, threads) -> None:
    meta_path = out_dir / "downstream_meta.json"
    recorded = {}
    if meta_path.exists() and (out_dir / "downstream.csv").exists():
        try:
            recorded = json.loads(meta_path.read_text()).get("checkpoints_sha256") or {}
        except ValueError:
            pass
    meta = dict(hardware_meta(), threads=threads, budget=asdict(budget),
                learning_rates={m: lr.model_lr(_arm(m).family, budget) for m in MODELS},
                selection=f"the model after exactly {budget.steps} steps (no validation-based selection)",
                probe="grelu_caduceus.vep_probe.fit_probe, logistic, C by 3-fold CV on the training examples",
                checkpoints_sha256=recorded | hashes)
    meta_path.write_text(json.dumps(meta, indent=1) + "\n")


def run_downstream(out_dir, quick=False, tasks=None, models=None, inits=None, seeds=None, threads: int | None = 2,
                   data_dir=None, lms_dir=None, budget: lr.Budget | None = None, log=print) -> Path:
    """Run every (task, seed, model, init) and k-mer reference not yet in OUT/downstream.csv.

    Args:
        out_dir: output folder (downstream.csv, downstream_meta.json).
        quick: the smoke-test budget (QUICK: bundled windows cropped to 96 bp, 2 steps).
        tasks, models, inits, seeds: subsets (default TASKS, MODELS, INITS, the budget's seeds).
        threads: torch threads during the study (restored after).
        data_dir: cache folder of benchmarks/data/prepare.py (hg19 chr20).
        lms_dir: folder holding pretrained_lms/ (and pretraining_runs/; default out_dir).
        budget: a custom lr.Budget (one context; overrides quick).
    """
    budget = budget or (QUICK if quick else BUDGET)
    if seeds:
        budget = replace(budget, seeds=[int(s) for s in seeds])
    if len(budget.contexts) != 1:
        raise ValueError(f"the downstream study uses one context, got {budget.contexts}.")
    tasks, models, inits = list(tasks or TASKS), list(models or MODELS), list(inits or INITS)
    for given, known, what in ((tasks, TASKS, "task"), (models, MODELS, "model"), (inits, INITS, "init")):
        unknown = [x for x in given if x not in known]
        if unknown:
            raise ValueError(f"unknown {what}(s) {unknown}; choose from {', '.join(known)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    lms_dir = Path(lms_dir) if lms_dir else out_dir
    hashes = ensure_lms(lms_dir, models if set(inits) - {"scratch"} else [], log=log)
    path = _prepare_output(out_dir, budget, hashes, log)
    done = {(r["task"], r["model"], r["init"], int(r["seed"])) for r in lr._read_rows(path)}
    _write_meta(out_dir, budget, hashes, threads)
    cells = [REFERENCE] + [(m, i) for m in models for i in inits]
    plan = [(t, s, m, i) for t in tasks for s in budget.seeds for m, i in cells if (t, m, i, s) not in done]
    total = len(tasks) * len(budget.seeds) * len(cells)
    predicted = [predicted_seconds(m, i, budget) for _, _, m, i in plan]
    log(f"downstream: tasks {tasks}, models {models}, inits {inits}, seeds {budget.seeds}; {budget.contexts[0]} bp, "
        f"{budget.steps} steps x {budget.batch_size}, {budget.n_train} train / {budget.n_test} test -> {path}")
    log(f"downstream: {total - len(plan)} of {total} runs in the CSV; {len(plan)} to run, predicted "
        f"{sum(predicted) / 60:.1f} min (a pessimistic cost model, rescaled as runs finish)")
    started = time.perf_counter()
    spent_predicted = spent_actual = 0.0
    sources, data_key, data = {}, None, None
    with ptr.torch_threads(threads):
        for i, (task_name, seed, model, init) in enumerate(plan):
            if (task_name, seed) != data_key:
                if task_name not in sources:
                    sources[task_name] = lr.real_task(lr.TASKS[task_name], budget.contexts[0], data_dir, log)
                data_key, data = (task_name, seed), sources[task_name].data(budget.n_train, budget.n_test, seed)
            t0 = time.perf_counter()
            row = run_one(task_name, data, model, init, budget, seed, lms_dir)
            lr.append_rows(path, COLUMNS, [row])
            spent_actual += time.perf_counter() - t0
            spent_predicted += predicted[i]
            left = sum(predicted[i + 1:]) * spent_actual / max(spent_predicted, 1e-9)
            log(f"  [{i + 1}/{len(plan)}] {task_name:13s} {model:11s} {init:9s} seed {seed}: auroc {row['value']:.3f} "
                f"({row['steps']} steps, {time.perf_counter() - t0:.1f} s); elapsed "
                f"{(time.perf_counter() - started) / 60:.1f} min, ETA {left / 60:.1f} min")
    log(f"downstream: {len(plan)} runs in {(time.perf_counter() - started) / 60:.1f} min")
    return path


# ----------------------------------------------------------------------------------------------
# Report: tables and plot from the CSV
# ----------------------------------------------------------------------------------------------

# (a, b): the paired differences a - b of the report, by seed
COMPARISONS = (("finetune", "scratch"), ("probe", "scratch"), ("scratch", REFERENCE[0]), ("finetune", REFERENCE[0]),
               ("probe", REFERENCE[0]))


def _read_csv(results_dir):
    import pandas as pd

    path = Path(results_dir) / "downstream.csv"
    if not path.exists():
        raise ValueError(f"no {path}: run `benchmarks/run.py downstream` first.")
    df = pd.read_csv(path)
    return df[df.metric == "auroc"]


def _by_seed(df, task: str, model: str, init: str):
    """AUROC by seed of one arm (the k-mer reference when init is REFERENCE's model name)."""
    if init == REFERENCE[0]:
        model, init = REFERENCE
    sel = df[(df.task == task) & (df.model == model) & (df.init == init)]
    return sel.set_index("seed").value


def paired_frame(df):
    """One row per (task, model, comparison): mean of a - b over the seeds both have, 95% t-interval."""
    import pandas as pd

    from benchmarks.report import paired_difference

    rows = []
    for task in dict.fromkeys(df.task):
        for model in [m for m in dict.fromkeys(df.model) if m != REFERENCE[0]]:
            for a, b in COMPARISONS:
                sa, sb = _by_seed(df, task, model, a), _by_seed(df, task, model, b)
                if len(sa) and len(sb):
                    d = paired_difference(sa, sb)
                    rows.append(dict(task=task, model=model, comparison=f"{a} − {b}", **d))
    return pd.DataFrame(rows)


def _mean_range(values) -> str:
    if not len(values):
        return ""
    return f"{values.mean():.3f} ({values.min():.3f}–{values.max():.3f})"


def _interval(r) -> str:
    if math.isnan(r.lo):
        return f"{r.mean:+.3f} (n={r.n})"
    text = f"{r.mean:+.3f} [{r.lo:+.3f}, {r.hi:+.3f}]"
    return f"**{text}**" if r.significant else text


def downstream_tables(results_dir) -> str:
    """Markdown: mean test AUROC (min–max over seeds) per task, model and init, then the paired
    differences by seed (mean [95% t-interval]; bold when it excludes 0)."""
    import pandas as pd

    df = _read_csv(results_dir)
    models = [m for m in dict.fromkeys(df.model) if m != REFERENCE[0]]
    rows = []
    for task in dict.fromkeys(df.task):
        reference = _mean_range(_by_seed(df, task, *REFERENCE))
        for model in models:
            cells = {init: _mean_range(_by_seed(df, task, model, init)) for init in INITS}
            rows.append(dict(task=task, model=model, **cells, **{f"{REFERENCE[0]} (reference)": reference}))
    means = pd.DataFrame(rows)
    n_seeds = int(df.seed.nunique())
    wide = [dict(task=task, model=model, **{r.comparison: _interval(r) for r in g.itertuples()})
            for (task, model), g in paired_frame(df).groupby(["task", "model"], sort=False)]
    return "\n\n".join([
        f"Test AUROC, mean (min–max) over {n_seeds} seed(s):",
        means.to_markdown(index=False),
        "Paired differences by seed (same training sample and test set per seed): mean [95% t-interval over "
        "the seeds]; bold: the interval excludes 0.",
        pd.DataFrame(wide).to_markdown(index=False),
    ])


INIT_COLORS = {"scratch": "tab:gray", "finetune": "tab:blue", "probe": "tab:orange"}


def plot_downstream(results_dir, path=None) -> Path:
    """downstream.png: test AUROC per task (panels), model (groups) and init (colours); a point per
    seed, a bar at the mean; the k-mer reference's mean as a dashed line."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure  # no pyplot: no process-wide backend or figure state

    df = _read_csv(results_dir)
    path = Path(path) if path else Path(results_dir) / "downstream.png"
    tasks = list(dict.fromkeys(df.task))
    models = [m for m in MODELS if m in set(df.model)]
    fig = Figure(figsize=(4.2 * len(tasks), 3.6))
    FigureCanvasAgg(fig)
    axes = fig.subplots(1, len(tasks), sharey=True, squeeze=False)[0]
    width = 0.8 / len(INITS)
    for ax, task in zip(axes, tasks):
        for j, init in enumerate(INITS):
            for k, model in enumerate(models):
                values = _by_seed(df, task, model, init)
                if not len(values):
                    continue
                x = k + (j - (len(INITS) - 1) / 2) * width
                ax.bar(x, values.mean() - 0.5, width * 0.9, bottom=0.5, color=INIT_COLORS[init], alpha=0.35,
                       label=init if k == 0 else None)
                ax.scatter(np.full(len(values), x), values, s=12, color=INIT_COLORS[init], zorder=3)
        reference = _by_seed(df, task, *REFERENCE)
        if len(reference):
            ax.axhline(reference.mean(), color="k", ls="--", lw=1, label=f"{REFERENCE[0]} (mean)")
        ax.axhline(0.5, color="k", ls=":", lw=0.8)
        ax.set_xticks(range(len(models)), models, fontsize=8)
        ax.set_title(task, fontsize=9)
        ax.grid(True, axis="y", alpha=0.3)
    axes[0].set_ylabel("test AUROC (bar: mean; points: seeds)")
    axes[-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path


__all__ = ["BUDGET", "COLUMNS", "INITS", "MODELS", "QUICK", "REFERENCE", "TASKS", "downstream_tables",
           "ensure_lms", "export_pretrained_lms", "load_lm", "paired_frame", "plot_downstream", "run_downstream",
           "run_one"]
