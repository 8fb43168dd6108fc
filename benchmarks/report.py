#!/usr/bin/env python
"""Regenerate the tables of benchmarks/README.md and the PNG plots from the committed CSVs.

    .venv/bin/python benchmarks/report.py [--results benchmarks/results] [--readme benchmarks/README.md]

The README keeps hand-written prose; everything between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` is replaced by the block ``name`` generated here, so every number shown
there comes from a CSV:

  models      parameter counts (scaling.csv, long_range.csv)
  scaling     time and peak memory tables (scaling.csv) + scaling_time.png / scaling_memory.png
  long_range  test AUROC per task, budget, model and context (long_range.csv), paired differences
              by seed with 95% t-intervals and which are significant, the cases where Caduceus is
              behind, hardware and budgets (long_range_meta.json) + long_range.png and the
              learning curves long_range_curves.png (long_range_curves.csv)
  pretrained  released checkpoints probed / fine-tuned on the grid's cells (long_range_pretrained.csv),
              when it exists
  suites      GLRB / DNALongBench probe results (suites.csv), when it exists
  gpu         the GPU suite's scaling table (results/gpu/scaling.csv), when it exists
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path

import pandas as pd

from benchmarks.hardware import hardware_text

REPO = Path(__file__).resolve().parents[1]
RESULTS = REPO / "benchmarks" / "results"
README = REPO / "benchmarks" / "README.md"
MODEL_ORDER = ["caduceus", "hyenadna", "enformer", "enformer_published"]
COLORS = {"caduceus": "tab:blue", "hyenadna": "tab:orange", "enformer": "tab:green", "enformer_published": "tab:gray"}


def _models_in(df: pd.DataFrame) -> list[str]:
    present = list(dict.fromkeys(df.model))
    return [m for m in MODEL_ORDER if m in present] + [m for m in present if m not in MODEL_ORDER]


def _bp(n: int) -> str:
    """1024 -> '1k', 131072 -> '128k', 1048576 -> '1M' (binary prefixes, as the lengths are powers of 2)."""
    n = int(n)
    if n >= 2**20 and n % 2**20 == 0:
        return f"{n // 2**20}M"
    if n >= 1024 and n % 1024 == 0:
        return f"{n // 1024}k"
    return str(n)


def markdown_table(header: list[str], rows: list[list[str]]) -> str:
    """A GitHub markdown table (DataFrame.to_markdown) of already formatted cells, printed as given."""
    frame = pd.DataFrame([[str(c) for c in row] for row in rows], columns=[str(h) for h in header])
    return frame.to_markdown(index=False, tablefmt="github", disable_numparse=True)


def _fmt(x, digits=0) -> str:
    return "–" if pd.isna(x) else f"{x:,.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Scaling
# ---------------------------------------------------------------------------------------------


def scaling_block(df: pd.DataFrame, png_names: tuple[str, str] | None, meta: dict | None = None) -> str:
    """Time and memory tables (rows: length; columns: model), one pair per mode, plus the ratio line.

    ``meta`` (scaling_meta.json) adds the machine the sweep ran on."""
    models = _models_in(df)
    sweep = ""
    if meta and "quick" in meta:
        sweep = (" Sweep: " + ("the quick one (`--quick`)" if meta["quick"] else "the full one")
                 + f", lengths {', '.join(_bp(L) for L in meta.get('lengths', []))}.")
    parts = [f"Device: {', '.join(sorted(set(df.device)))}; batch 1; `–` = not run (predicted past the "
             f"time or memory cap, see the run log). {hardware_text(meta)}{sweep}".rstrip()]
    for mode, title in (("fwd", "Forward (inference)"), ("fwd_bwd", "Forward + backward (training step without optimiser)")):
        sub = df[df["mode"] == mode]
        if sub.empty:
            continue
        lengths = sorted(set(sub.seq_len))
        time_rows, mem_rows = [], []
        for L in lengths:
            at = sub[sub.seq_len == L].set_index("model")
            time_rows.append([_bp(L)] + [_fmt(at.ms.get(m), 1) for m in models])
            mem_rows.append([_bp(L)] + [_fmt(at.peak_mem_mb.get(m), 0) for m in models])
        parts.append(f"**{title}: time (ms)**\n\n" + markdown_table(["length"] + models, time_rows))
        parts.append(f"**{title}: peak memory above weights and input (MB)**\n\n"
                     + markdown_table(["length"] + models, mem_rows))
    parts.append(scaling_summary(df))
    if png_names:
        parts.append(" ".join(f"![{name}](results/{name})" for name in png_names))
    return "\n\n".join(parts)


def scaling_summary(df: pd.DataFrame) -> str:
    """Sentences: Enformer/Caduceus and HyenaDNA/Caduceus time ratios at the longest common length."""
    lines = []
    for mode in ("fwd", "fwd_bwd"):
        sub = df[df["mode"] == mode]
        if not {"caduceus", "enformer"} <= set(sub.model):
            continue
        common = set(sub[sub.model == "caduceus"].seq_len) & set(sub[sub.model == "enformer"].seq_len)
        if not common:
            continue
        L = max(common)
        t = sub[sub.seq_len == L].set_index("model").ms
        text = f"- `{mode}` at {_bp(L)} (longest length both ran): Enformer/Caduceus time {t['enformer'] / t['caduceus']:.2f}"
        if "hyenadna" in t:
            text += f", HyenaDNA/Caduceus {t['hyenadna'] / t['caduceus']:.2f}"
        longest = {m: _bp(sub[sub.model == m].seq_len.max()) for m in _models_in(sub)}
        text += "; longest run per model: " + ", ".join(f"{m} {v}" for m, v in longest.items())
        lines.append(text + ".")
    return "\n".join(lines)


def plot_scaling(df: pd.DataFrame, column: str, ylabel: str, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4), sharey=True)
    for ax, mode in zip(axes, ("fwd", "fwd_bwd")):
        sub = df[df["mode"] == mode]
        for model in _models_in(sub):
            m = sub[sub.model == model].sort_values("seq_len")
            ax.plot(m.seq_len, m[column], "o-", label=f"{model} ({int(m.params.iloc[0]):,} params)",
                    color=COLORS.get(model))
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length (bp)")
        ax.set_title(mode)
        ax.grid(True, which="both", alpha=0.3)
    axes[0].set_ylabel(ylabel)
    axes[1].legend(fontsize=8)
    fig.suptitle(f"{ylabel} vs length, batch 1, {', '.join(sorted(set(df.device)))}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# Long range
# ---------------------------------------------------------------------------------------------


def long_range_summary_frame(df: pd.DataFrame) -> pd.DataFrame:
    """Mean, min, max and count of the metric over seeds per (task, data, budget, model, context)."""
    df = _with_budget(df)
    return (df.groupby(["task", "data", "budget", "model", "context_len"]).value
            .agg(["mean", "min", "max", "count"]).reset_index())


def _with_budget(df: pd.DataFrame) -> pd.DataFrame:
    """Older CSVs have no ``budget`` column: they ran one fixed number of steps."""
    return df if "budget" in df.columns else df.assign(budget="equal_steps")


BUDGET_TITLES = {"equal_steps": "equal steps", "equal_time": "equal wall time"}


def paired_difference(a: pd.Series, b: pd.Series, level: float = 0.95) -> dict:
    """Mean of a - b over the seeds both have, with a paired t-interval.

    Args:
        a, b: metric values indexed by seed (same task, context and budget; the seed fixes the
            training sample and the initialisation, so runs with one seed are paired).

    Returns:
        dict(mean, lo, hi, n, significant): ``significant`` when the interval excludes 0; with
        n < 2 the interval is undefined (NaN) and nothing is called significant. Identical
        differences (sd 0) give a zero-width interval.
    """
    from scipy import stats

    common = sorted(set(a.index) & set(b.index))
    d = (a.loc[common] - b.loc[common]).to_numpy(dtype=float)
    n = len(d)
    if n == 0:
        return dict(mean=float("nan"), lo=float("nan"), hi=float("nan"), n=0, significant=False)
    mean = float(d.mean())
    if n < 2:
        return dict(mean=mean, lo=float("nan"), hi=float("nan"), n=n, significant=False)
    half = float(stats.t.ppf(0.5 + level / 2, n - 1) * d.std(ddof=1) / n ** 0.5)
    lo, hi = mean - half, mean + half
    return dict(mean=mean, lo=lo, hi=hi, n=n, significant=bool(lo > 0 or hi < 0))


def paired_comparisons(df: pd.DataFrame) -> pd.DataFrame:
    """Every model pair (in MODEL_ORDER) per task, budget and context: paired_difference by seed."""
    df = _with_budget(df)
    rows = []
    models = _models_in(df)
    pairs = [(a, b) for i, a in enumerate(models) for b in models[i + 1:]]
    for (task, budget, context), g in df.groupby(["task", "budget", "context_len"], sort=False):
        by_model = {m: gm.set_index("seed").value for m, gm in g.groupby("model")}
        for a, b in pairs:
            if a in by_model and b in by_model:
                rows.append(dict(task=task, budget=budget, context_len=context, a=a, b=b,
                                 **paired_difference(by_model[a], by_model[b])))
    return pd.DataFrame(rows)


def _diff_cell(r) -> str:
    if pd.isna(r["lo"]):
        return f"{r['mean']:+.3f} (n={r['n']})"
    text = f"{r['mean']:+.3f} [{r['lo']:+.3f}, {r['hi']:+.3f}]"
    if r["significant"]:
        winner = r["a"] if r["mean"] > 0 else r["b"]
        return f"**{text}** {winner}"
    return text + " n.s."


def long_range_block(df: pd.DataFrame, png_names: tuple[str, ...] | None, meta: dict | None = None) -> str:
    df = _with_budget(df)
    summary = long_range_summary_frame(df)
    comparisons = paired_comparisons(df)
    models = _models_in(df)
    seeds = sorted(set(df.seed))
    metric = ", ".join(sorted(set(df.metric)))
    parts = [f"Test {metric}; mean over seeds {seeds} (min–max in brackets when more than one seed). "
             f"{hardware_text(meta)} Budgets: {_budget_text(df, meta)}.{_standard_error_text(df)}",
             "Paired differences: for each seed (same training sample and initialisation for every model), the "
             "difference of the two models' test metric; the mean over seeds with its 95% t-interval. **Bold** "
             "with the winner's name: the interval excludes 0; `n.s.`: not significant (the interval contains 0)."]
    for task in dict.fromkeys(df.task):
        sub = summary[summary.task == task]
        contexts = sorted(set(sub.context_len))
        header = ["model"] + [f"{_bp(c)} bp" if c >= 1024 else f"{c} bp" for c in contexts]
        data_kind = sub.data.iloc[0]
        parts.append(f"### {task} ({data_kind})")
        for budget in [b for b in BUDGET_TITLES if b in set(sub.budget)] + \
                [b for b in dict.fromkeys(sub.budget) if b not in BUDGET_TITLES]:
            sb = sub[sub.budget == budget]
            rows = []
            for model in models:
                cells = []
                for c in contexts:
                    r = sb[(sb.model == model) & (sb.context_len == c)]
                    if r.empty:
                        cells.append("–")
                        continue
                    r = r.iloc[0]
                    best = sb[sb.context_len == c]["mean"].max()
                    cell = f"{r['mean']:.3f}"
                    if r["count"] > 1:
                        cell += f" ({r['min']:.3f}–{r['max']:.3f})"
                    cells.append(f"**{cell}**" if r["mean"] == best else cell)
                rows.append([model] + cells)
            parts.append(f"**{task}, {BUDGET_TITLES.get(budget, budget)}**: {metric}\n\n" + markdown_table(header, rows))
            comp = comparisons[(comparisons.task == task) & (comparisons.budget == budget)] if len(comparisons) else comparisons
            if len(comp):
                crows = []
                for (a, b), g in comp.groupby(["a", "b"], sort=False):
                    cells = []
                    for c in contexts:
                        r = g[g.context_len == c]
                        cells.append(_diff_cell(r.iloc[0]) if len(r) else "–")
                    crows.append([f"{a} − {b}"] + cells)
                parts.append(f"Paired differences ({BUDGET_TITLES.get(budget, budget)}), mean [95% CI]:\n\n"
                             + markdown_table(["pair"] + header[1:], crows))
    parts.append(caduceus_verdict(summary, comparisons))
    parts.append(training_time_table(df))
    if png_names:
        parts.append(" ".join(f"![{name}](results/{name})" for name in png_names))
    return "\n\n".join(parts)


def _standard_error_text(df: pd.DataFrame) -> str:
    """Standard error of one AUROC near 0.5 on a balanced test set (Hanley & McNeil 1982)."""
    if "n_test" not in df.columns or set(df.metric) != {"auroc"}:
        return ""
    n = int(df.n_test.min())
    half = n // 2
    se = ((n + 1) / (12 * half * half)) ** 0.5
    return (f" One run's AUROC near 0.5 on {n} balanced test examples has a standard error of {se:.3f}, so single-run "
            f"differences below about {2.5 * se:.2f} are within noise.")


def _budget_text(df: pd.DataFrame, meta: dict | None = None) -> str:
    df = _with_budget(df)
    parts = []
    b = (meta or {}).get("budget") or {}
    if "equal_steps" in set(df.budget):
        steps = sorted({int(x) for x in df[df.budget == "equal_steps"].steps})
        parts.append("equal steps = " + "/".join(map(str, steps)) + " optimiser steps"
                     + (f" of batch {int(df.batch_size.iloc[0])}" if "batch_size" in df.columns else ""))
    if "equal_time" in set(df.budget):
        target = b.get("train_seconds")
        parts.append("equal wall time = " + (f"{target:g} s" if target else "a fixed number of seconds")
                     + " of training per run (evaluation excluded)")
    cols = [c for c in ("n_train", "n_test") if c in df.columns]
    if cols:
        combos = df[cols].drop_duplicates()
        parts.append("; ".join(", ".join(f"{c} {int(v)}" for c, v in zip(cols, row))
                               for row in combos.itertuples(index=False)))
    if "lr" in df.columns and df.lr.notna().any():
        lrs = df.dropna(subset=["lr"]).groupby("model").lr.agg(lambda x: sorted(set(float(v) for v in x)))
        lr_text = "AdamW lr " + ", ".join(f"{m} {'/'.join(f'{v:g}' for v in lrs[m])}"
                                          for m in _models_in(df) if m in lrs.index)
    else:
        lr_text = f"AdamW lr {b.get('lr')}" if b else ""
    if b:
        parts.append(f"{lr_text}, {b.get('warmup_steps')} warm-up steps then constant, "
                     f"read-out: central {b.get('readout_len')} bp")
    elif lr_text:
        parts.append(lr_text)
    return "; ".join(parts) if parts else "see long_range.py"


def caduceus_verdict(summary: pd.DataFrame, comparisons: pd.DataFrame | None = None) -> str:
    """Where Caduceus wins and where it is behind the best other model (mean over seeds), per budget,
    with whether the paired difference to that model is significant."""
    if "caduceus" not in set(summary.model):
        return ""
    lines = []
    for budget, sb in summary.groupby("budget", sort=False):
        wins, losses = [], []
        n_sig_loss = 0
        for (task, context), group in sb.groupby(["task", "context_len"], sort=False):
            means = group.set_index("model")["mean"]
            others = means.drop("caduceus", errors="ignore")
            if "caduceus" not in means or others.empty:
                continue
            best_other = others.idxmax()
            sig = ""
            if comparisons is not None and len(comparisons):
                c = comparisons[(comparisons.task == task) & (comparisons.budget == budget)
                                & (comparisons.context_len == context)
                                & (((comparisons.a == "caduceus") & (comparisons.b == best_other))
                                   | ((comparisons.b == "caduceus") & (comparisons.a == best_other)))]
                if len(c):
                    sig = ", significant" if bool(c.significant.iloc[0]) else ", n.s."
            text = f"{task} @ {context} bp (caduceus {means['caduceus']:.3f} vs {best_other} {others.max():.3f}{sig})"
            if means["caduceus"] >= others.max():
                wins.append(text)
            else:
                losses.append(text)
                n_sig_loss += sig == ", significant"
        title = BUDGET_TITLES.get(budget, budget)
        lines.append(f"**{title}**: Caduceus best or tied in {len(wins)} of {len(wins) + len(losses)} task/context "
                     f"cells; behind in {len(losses)} ({n_sig_loss} of them significantly).")
        if losses:
            lines.append(f"Caduceus is behind ({title}) in: " + "; ".join(losses) + ".")
        if wins:
            lines.append(f"Caduceus leads ({title}) in: " + "; ".join(wins) + ".")
    return "\n\n".join(lines)


def training_time_table(df: pd.DataFrame) -> str:
    if "train_s" not in df.columns:
        return ""
    df = _with_budget(df)
    parts = []
    for budget, column, digits, title in (
            ("equal_steps", "train_s", 1, "Training wall time of the equal-steps budget (s, mean over tasks and seeds)"),
            ("equal_time", "steps", 0, "Optimiser steps that fit the equal-wall-time budget (mean over tasks and seeds)")):
        rows_of_budget = df[df.budget == budget]
        if not len(rows_of_budget):
            continue
        t = rows_of_budget.groupby(["model", "context_len"])[column].mean().unstack()
        contexts = list(t.columns)
        rows = [[m] + [_fmt(t.loc[m, c], digits) for c in contexts] for m in _models_in(df) if m in t.index]
        parts.append(f"**{title}**\n\n" + markdown_table(["model"] + [f"{c} bp" for c in contexts], rows))
    return "\n\n".join(parts)


def plot_long_range(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = long_range_summary_frame(df)
    tasks = list(dict.fromkeys(df.task))
    budgets = list(dict.fromkeys(summary.budget))
    fig, axes = plt.subplots(len(budgets), len(tasks), figsize=(4.2 * len(tasks), 3.6 * len(budgets)), sharey=True,
                             squeeze=False)
    for row, budget in zip(axes, budgets):
        for ax, task in zip(row, tasks):
            sub = summary[(summary.task == task) & (summary.budget == budget)]
            for model in _models_in(sub):
                m = sub[sub.model == model].sort_values("context_len")
                ax.errorbar(m.context_len, m["mean"], yerr=[m["mean"] - m["min"], m["max"] - m["mean"]], fmt="o-",
                            capsize=3, label=model, color=COLORS.get(model))
            ax.axhline(0.5, color="k", lw=0.8, ls=":")
            ax.set_xscale("log", base=2)
            contexts = sorted(set(sub.context_len))
            ax.set_xticks(contexts, [str(c) for c in contexts])
            ax.minorticks_off()
            ax.set_xlabel("context (bp)")
            ax.set_title(f"{task}, {BUDGET_TITLES.get(budget, budget)}", fontsize=9)
            ax.grid(True, alpha=0.3)
        row[0].set_ylabel(", ".join(sorted(set(df.metric))) + " (test; mean, min–max over seeds)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def plot_learning_curves(curves: pd.DataFrame, path: Path) -> None:
    """Metric against training seconds: one panel per (task, context), one thin line per (model, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves = curves.assign(model=curves.model.str.lower())
    tasks = list(dict.fromkeys(curves.task))
    contexts = sorted(set(curves.context_len))
    fig, axes = plt.subplots(len(tasks), len(contexts), figsize=(3.6 * len(contexts), 2.8 * len(tasks)),
                             sharey=True, squeeze=False)
    for row, task in zip(axes, tasks):
        for ax, context in zip(row, contexts):
            sub = curves[(curves.task == task) & (curves.context_len == context)]
            for model in _models_in(sub):
                for i, (seed, g) in enumerate(sub[sub.model == model].groupby("seed")):
                    g = g.sort_values("train_s")
                    ax.plot(g.train_s, g.value, "o-", ms=2.5, lw=1, alpha=0.7, color=COLORS.get(model),
                            label=model if i == 0 else None)
            ax.axhline(0.5, color="k", lw=0.8, ls=":")
            ax.set_xscale("symlog", linthresh=1.0)
            ax.set_title(f"{task} @ {context} bp", fontsize=9)
            ax.grid(True, alpha=0.3)
            ax.set_xlabel("training time (s)")
        row[0].set_ylabel("test " + ", ".join(sorted(set(curves.metric))))
    axes[0][-1].legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# GPU (the GPU suite's own CSV, when present) and parameter counts
# ---------------------------------------------------------------------------------------------


def gpu_block(gpu_dir: Path) -> str | None:
    path = gpu_dir / "scaling.csv"
    if not path.exists():
        return None
    df = pd.read_csv(path)
    if df.empty or not {"model", "seq_len", "mode", "ms"} <= set(df.columns):
        return None
    df = df[df.ms.notna()]
    parts = [f"From `results/gpu/scaling.csv` (written by `benchmarks/gpu_suite.py`); device: "
             f"{', '.join(sorted(set(df.device.astype(str))))}."]
    for mode in dict.fromkeys(df["mode"]):
        sub = df[df["mode"] == mode]
        models = _models_in(sub)
        rows = []
        for L in sorted(set(sub.seq_len)):
            at = sub[sub.seq_len == L].groupby("model").ms.min()
            rows.append([_bp(L)] + [_fmt(at.get(m), 1) for m in models])
        parts.append(f"**{mode}: time (ms)**\n\n" + markdown_table(["length"] + models, rows))
    return "\n\n".join(parts)


def pretrained_block(df: pd.DataFrame) -> str:
    """Released checkpoints on the grid's cells: one table per (mode, budget), rows task x model,
    columns context; mean (min–max) over seeds."""
    df = df.assign(model=df.model.str.lower())
    parts = ["From `results/long_range_pretrained.csv` (`benchmarks/run.py long_range --pretrained ...`): released "
             "checkpoints, a logistic-regression probe on frozen pooled embeddings (`pretrained_probe`) or fine-tuned "
             f"with the grid's budgets (`pretrained_finetune`); test {', '.join(sorted(set(df.metric)))}, mean over "
             f"seeds {sorted(set(int(x) for x in df.seed))} (min–max)."]
    for (mode, budget), g in df.groupby(["mode", "budget"], sort=False):
        stats = g.groupby(["task", "model", "checkpoint", "context_len"]).value.agg(["mean", "min", "max", "count"])
        table = stats.apply(lambda r: f"{r['mean']:.3f}" + (f" ({r['min']:.3f}–{r['max']:.3f})" if r["count"] > 1
                                                              else ""), axis=1).unstack("context_len")
        table.columns = [f"{c} bp" for c in table.columns]
        table = table.fillna("–").reset_index()
        parts.append(f"**{mode}, {BUDGET_TITLES.get(budget, budget)}**\n\n"
                     + table.to_markdown(index=False, tablefmt="github", disable_numparse=True))
    return "\n\n".join(parts)


def suites_block(df: pd.DataFrame) -> str:
    """GLRB / DNALongBench rows as they are in suites.csv (one row per probe run)."""
    columns = [c for c in ("suite", "task", "model", "checkpoint", "metric", "value", "other_metrics", "n_train",
                           "n_test", "sequence_length", "seconds") if c in df.columns]
    table = df[columns].copy()
    if "value" in table:
        table["value"] = table.value.map(lambda v: _fmt(v, 4))
    return ("From `results/suites.csv` (`benchmarks/run.py glrb|dnalongbench ...`): an embedding probe per task, "
            "scored with the metric of the suite's paper (benchmarks/suites.py says which and where it is from).\n\n"
            + table.to_markdown(index=False, tablefmt="github", disable_numparse=True))


def models_block(frames: list[pd.DataFrame]) -> str:
    counts = pd.concat([f[["model", "params"]] for f in frames if f is not None]).drop_duplicates()
    rows = []
    for model in _models_in(counts):
        values = sorted(set(counts[counts.model == model].params))
        rows.append([model, " / ".join(f"{int(v):,}" for v in values)])
    return markdown_table(["model", "parameters (with a 1-track head)"], rows)


# ---------------------------------------------------------------------------------------------
# Pre-training study (pretraining.csv, pretraining_baselines.csv, pretraining_curves.csv)
# ---------------------------------------------------------------------------------------------

# Per ablation: (the variant the paper finds better, the variant it beats, the claim in words).
PAPER_CLAIMS = {
    "ntp": ("mamba", "hyenadna", "with next-token loss, Mamba reaches a lower held-out loss than HyenaDNA"),
    "mlm_tying": ("tied", "untied", "with masked-LM loss, a BiMamba with tied in/out projections at depth 2k beats "
                                    "an untied one at depth k"),
    "mlm_rc": ("caduceus_ps", "bimamba", "with masked-LM loss, the RC-equivariant Caduceus-PS beats the same BiMamba "
                                         "without equivariance (trained with RC augmentation)"),
}
LM_TITLES = {"caduceus_ps": "Caduceus-PS", "caduceus_ph": "Caduceus-Ph", "hyenadna": "HyenaDNA"}


def claim_verdict(d: dict) -> str:
    """Words for a paired difference (other − favoured: positive is the paper's direction)."""
    if d["n"] < 2 or pd.isna(d["lo"]):
        return "too few seeds to say"
    if d["lo"] > 0:
        return "**reproduces** (the interval is above 0)"
    if d["hi"] < 0:
        return "**reversed here** (the interval is below 0)"
    if d["mean"] > 0:
        return "not at this scale: the paper's direction, but the interval contains 0"
    return "not at this scale: the interval contains 0 (mean against the paper's direction)"


def claim_comparisons(df: pd.DataFrame) -> pd.DataFrame:
    """One row per ablation: paired held-out loss difference (other − favoured) by seed."""
    rows = []
    for experiment, (favoured, other, claim) in PAPER_CLAIMS.items():
        g = df[df.experiment == experiment]
        by = {v: gv.set_index("seed").heldout_loss for v, gv in g.groupby("variant")}
        if favoured not in by or other not in by:
            continue
        d = paired_difference(by[other], by[favoured])
        per_seed = (by[other] - by[favoured]).dropna()
        rows.append(dict(experiment=experiment, favoured=favoured, other=other, claim=claim, **d,
                         per_seed=", ".join(f"{x:+.4f}" for x in per_seed.to_numpy()),
                         relative=d["mean"] / by[other].mean()))
    return pd.DataFrame(rows)


def _best_baseline(baselines: pd.DataFrame | None, objective: str, column: str, lower_is_better: bool):
    if baselines is None:
        return None
    b = baselines[baselines.objective == objective].dropna(subset=[column])
    if b.empty:
        return None
    return b.loc[b[column].idxmin() if lower_is_better else b[column].idxmax()]


def pretraining_block(df: pd.DataFrame, baselines: pd.DataFrame | None, meta: dict | None,
                      png_names: tuple[str, ...] = ()) -> str:
    ablations = df[df.experiment.isin(list(PAPER_CLAIMS))]
    parts = []
    if meta:
        protocols = meta.get("protocols", {})
        ab = protocols.get("ablation", {})
        parts.append(
            f"Data: hg19 chr20, training windows from the downstream tasks' train blocks only (block % 5 in 0, 1, 2, "
            f"{meta.get('edge_margin', 0):,} bp kept clear of every val/test block); held-out loss on every "
            f"non-overlapping window of {meta.get('heldout')} ({meta.get('heldout_windows')} windows, one fixed set of "
            f"masks). {hardware_text(meta)} Ablation runs: {ab.get('batch_size')} x {ab.get('seq_len')} bp per step, "
            f"{ab.get('steps')} steps ({ab.get('batch_size', 0) * ab.get('seq_len', 0) * ab.get('steps', 0):,} tokens). "
            "Changes to the paper's recipe: " + "; ".join(meta.get("recipe_changes", [])) + ". Why these token "
            "counts: " + "; ".join(f"{k}: {v}" for k, v in meta.get("why_these_tokens", {}).items()) + ".")
    if len(ablations):
        rows = []
        for (experiment, variant), g in ablations.groupby(["experiment", "variant"], sort=False):
            objective = g.objective.iloc[0]
            best = _best_baseline(baselines, objective, "heldout_loss", True)
            rows.append([experiment, variant, f"{int(g.params.iloc[0]):,}", f"{int(g.tokens.iloc[0]) / 1e6:.2f}M",
                         objective, str(len(g)), f"{g.heldout_loss.mean():.4f} ({g.heldout_loss.min():.4f}–"
                         f"{g.heldout_loss.max():.4f})",
                         "–" if best is None else f"{best.heldout_loss:.4f} ({best.baseline})"])
        parts.append("Held-out loss (cross-entropy, nats; masked-LM loss over all chosen positions, as trained; "
                     "mean over seeds, min–max), with the best k-mer context model of the same objective on the same "
                     "positions:\n\n" + markdown_table(
                         ["experiment", "variant", "params", "tokens", "objective", "seeds", "held-out loss",
                          "best k-mer baseline"], rows))
        comp = claim_comparisons(ablations)
        if len(comp):
            crows = [[r.experiment, f"{r.other} − {r.favoured}", f"{r['mean']:+.4f}",
                      "–" if pd.isna(r.lo) else f"[{r.lo:+.4f}, {r.hi:+.4f}]", r.per_seed, f"{100 * r.relative:+.2f}%",
                      claim_verdict(r)] for _, r in comp.iterrows()]
            parts.append("**The paper's claims, tested here.** Paired by seed (same initialisation seed, same "
                         "windows and masks), held-out loss of the variant the paper finds worse minus the one it "
                         "finds better, with its 95% t-interval: positive is the paper's direction.\n\n"
                         + markdown_table(["claim", "difference", "mean", "95% CI", "by seed", "relative", "here"], crows)
                         + "\n\n" + "\n".join(f"- `{r.experiment}`: {r.claim}: {claim_verdict(r)}."
                                                for _, r in comp.iterrows()))
    lm = df[df.experiment == "lm"]
    if len(lm):
        rows = []
        for _, r in lm.iterrows():
            mlm = r.objective == "mlm"
            column = "heldout_mask_accuracy" if mlm else "heldout_accuracy"
            best = _best_baseline(baselines, r.objective, column, False)
            acc = r[column]
            rows.append([LM_TITLES.get(r.variant, r.variant), r.objective, f"{int(r.params):,}",
                         f"{int(r.tokens) / 1e6:.1f}M", f"{r.train_s / 60:.0f} min", f"{r.heldout_loss:.4f}",
                         f"{acc:.4f}" + (" ([MASK] sites)" if mlm else " (next base)"),
                         "–" if best is None else f"{best[column]:.4f} ({best.baseline})",
                         "–" if best is None else f"{acc - best[column]:+.4f}"])
        parts.append("**Pretrained language models** (the downstream study's starting points; the Caduceus-PS one is "
                     "shipped in the package): held-out accuracy against the best k-mer model of the same objective "
                     "on the same positions (masked LM: the [MASK]ed sites only, where neither the model nor the "
                     "k-mer model sees the base).\n\n" + markdown_table(
                         ["model", "objective", "params", "tokens", "training", "held-out loss", "accuracy",
                          "best k-mer", "difference"], rows))
    if png_names:
        parts.append(" ".join(f"![{name}](results/{name})" for name in png_names))
    return "\n\n".join(parts)


def pretraining_findings(df: pd.DataFrame, baselines: pd.DataFrame | None) -> str:
    """A few sentences for the project README: per claim the verdict, and the pretrained LMs against k-mers."""
    lines = []
    comp = claim_comparisons(df[df.experiment.isin(list(PAPER_CLAIMS))])
    for _, r in comp.iterrows():
        ci = "" if pd.isna(r.lo) else f", 95% CI [{r.lo:+.4f}, {r.hi:+.4f}]"
        lines.append(f"- `{r.experiment}` ({r.claim}): held-out loss {r.other} − {r.favoured} = {r['mean']:+.4f} nats"
                     f"{ci} over {r.n} seeds: {claim_verdict(r)}.")
    for _, r in df[df.experiment == "lm"].iterrows():
        mlm = r.objective == "mlm"
        column = "heldout_mask_accuracy" if mlm else "heldout_accuracy"
        best = _best_baseline(baselines, r.objective, column, False)
        if best is not None:
            lines.append(f"- {LM_TITLES.get(r.variant, r.variant)} ({r.objective}, {int(r.params):,} parameters, "
                         f"{int(r.tokens) / 1e6:.1f}M tokens): held-out {'masked' if mlm else 'next-base'} accuracy "
                         f"{r[column]:.4f} against {best[column]:.4f} for the best k-mer model ({best.baseline}), "
                         f"{r[column] - best[column]:+.4f}.")
    return "\n".join(lines) if lines else "No results yet (`benchmarks/run.py pretraining`)."


def downstream_findings(df: pd.DataFrame) -> str:
    """For the project README: per model, how often pretraining (fine-tuned or probed) beats training from
    scratch, significantly, over the tasks, and the mean AUROC of each init against the 4-mer reference."""
    from benchmarks.downstream import REFERENCE, paired_frame

    pairs = paired_frame(df)
    lines = []
    for model in [m for m in dict.fromkeys(df.model) if m != REFERENCE[0]]:
        parts = []
        for comparison in ("finetune − scratch", "probe − scratch"):
            g = pairs[(pairs.model == model) & (pairs.comparison == comparison)]
            if len(g):
                wins = int(((g.lo > 0) & g.significant).sum())
                losses = int(((g.hi < 0) & g.significant).sum())
                parts.append(f"{comparison} {g['mean'].mean():+.3f} AUROC on average over {len(g)} tasks "
                             f"(significantly ahead on {wins}, behind on {losses})")
        means = df[df.model == model].groupby("init").value.mean()
        mean_text = ", ".join(f"{init} {means[init]:.3f}" for init in ("scratch", "finetune", "probe") if init in means)
        lines.append(f"- {LM_TITLES.get(model, model)}: " + "; ".join(parts) + f"; mean test AUROC {mean_text}.")
    ref = df[df.model == REFERENCE[0]].value
    if len(ref):
        lines.append(f"- The 4-mer logistic regression on the same examples: mean test AUROC {ref.mean():.3f}.")
    return "\n".join(lines)


def plot_pretraining_curves(curves: pd.DataFrame, baselines: pd.DataFrame | None, path: Path) -> None:
    """Held-out loss against tokens: one panel per experiment, one line per (variant, seed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    experiments = list(dict.fromkeys(curves.experiment))
    fig, axes = plt.subplots(1, len(experiments), figsize=(4.2 * len(experiments), 3.2), squeeze=False)
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    for ax, experiment in zip(axes[0], experiments):
        sub = curves[(curves.experiment == experiment) & (curves.step > 0)]
        for k, variant in enumerate(dict.fromkeys(sub.variant)):
            for i, (_, g) in enumerate(sub[sub.variant == variant].groupby("seed")):
                g = g.sort_values("tokens")
                ax.plot(g.tokens / 1e6, g.heldout_loss, "-", lw=1, alpha=0.8, color=colors[k % len(colors)],
                        label=variant if i == 0 else None)
        objective = "ntp" if experiment == "ntp" else "mlm"
        best = _best_baseline(baselines, objective, "heldout_loss", True) if experiment != "lm" else None
        if best is not None:
            ax.axhline(best.heldout_loss, color="k", lw=0.8, ls=":", label=best.baseline)
        ax.set_title(experiment, fontsize=9)
        ax.set_xlabel("training tokens (M)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0][0].set_ylabel("held-out loss (curve subset)")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


# ---------------------------------------------------------------------------------------------
# README update
# ---------------------------------------------------------------------------------------------


def replace_block(text: str, name: str, content: str) -> str:
    """Replace what lies between the ``name`` markers; raise if the README lacks them."""
    pattern = re.compile(rf"(<!-- BEGIN {name} -->).*?(<!-- END {name} -->)", re.S)
    if not pattern.search(text):
        raise ValueError(f"README has no '<!-- BEGIN {name} -->' ... '<!-- END {name} -->' markers: add them where "
                         f"the {name} tables should go.")
    return pattern.sub(lambda m: m.group(1) + "\n" + content.strip() + "\n" + m.group(2), text)


def build(results: Path, readme: Path, log=print, project_readme: Path | None = None) -> dict[str, str]:
    """Write the plots into ``results`` and the tables into ``readme`` (and the ``*_findings`` blocks into
    ``project_readme``, the repository's README, where it has their markers); returns the generated blocks."""
    results = Path(results)
    scaling = pd.read_csv(results / "scaling.csv") if (results / "scaling.csv").exists() else None
    long_range = pd.read_csv(results / "long_range.csv") if (results / "long_range.csv").exists() else None
    if scaling is None and long_range is None:
        raise FileNotFoundError(f"Neither scaling.csv nor long_range.csv in {results}: run "
                                "`benchmarks/run.py scaling` / `long_range` first.")
    blocks = {}
    if scaling is not None:
        scaling = scaling.assign(model=scaling.model.str.lower())
        plot_scaling(scaling, "ms", "time (ms)", results / "scaling_time.png")
        plot_scaling(scaling, "peak_mem_mb", "peak memory (MB)", results / "scaling_memory.png")
        meta_path = results / "scaling_meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        blocks["scaling"] = scaling_block(scaling, ("scaling_time.png", "scaling_memory.png"), meta)
    if long_range is not None:
        long_range = long_range.assign(model=long_range.model.str.lower())
        plot_long_range(long_range, results / "long_range.png")
        pngs = ["long_range.png"]
        if (results / "long_range_curves.csv").exists():
            plot_learning_curves(pd.read_csv(results / "long_range_curves.csv"), results / "long_range_curves.png")
            pngs.append("long_range_curves.png")
        meta_path = results / "long_range_meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        blocks["long_range"] = long_range_block(long_range, tuple(pngs), meta)
    blocks["models"] = models_block([scaling, long_range])
    pretrained_path, suites_path = results / "long_range_pretrained.csv", results / "suites.csv"
    blocks["pretrained"] = (pretrained_block(pd.read_csv(pretrained_path)) if pretrained_path.exists() else
                            "No results yet (`benchmarks/run.py long_range --pretrained caduceus=NAME hyenadna=NAME "
                            "enformer=NAME`).")
    blocks["suites"] = (suites_block(pd.read_csv(suites_path)) if suites_path.exists() else
                        "No results yet (`benchmarks/run.py glrb --task T --data DIR --model M`, "
                        "`benchmarks/run.py dnalongbench ...`).")
    if (results / "pretraining.csv").exists():
        pretraining = pd.read_csv(results / "pretraining.csv")
        base_path, curve_path, meta_path = (results / f"pretraining_{n}" for n in ("baselines.csv", "curves.csv", "meta.json"))
        baselines = pd.read_csv(base_path) if base_path.exists() else None
        pngs = ()
        if curve_path.exists():
            plot_pretraining_curves(pd.read_csv(curve_path), baselines, results / "pretraining_curves.png")
            pngs = ("pretraining_curves.png",)
        blocks["pretraining"] = pretraining_block(pretraining, baselines,
                                                  json.loads(meta_path.read_text()) if meta_path.exists() else None, pngs)
        blocks["pretraining_findings"] = pretraining_findings(pretraining, baselines)
    else:
        blocks["pretraining"] = "No results yet (`benchmarks/run.py pretraining`)."
    if (results / "downstream.csv").exists():
        from benchmarks.downstream import downstream_tables, plot_downstream

        plot_downstream(results, results / "downstream.png")
        meta_path = results / "downstream_meta.json"
        meta = json.loads(meta_path.read_text()) if meta_path.exists() else None
        blocks["downstream"] = (hardware_text(meta) + "\n\n" if meta else "") + downstream_tables(results) \
            + "\n\n![downstream](results/downstream.png)"
        blocks["downstream_findings"] = downstream_findings(pd.read_csv(results / "downstream.csv"))
    else:
        blocks["downstream"] = "No results yet (`benchmarks/run.py downstream`)."
    gpu = gpu_block(results / "gpu")
    blocks["gpu"] = gpu or "No GPU results committed yet (`benchmarks/run.py gpu --out benchmarks/results/gpu`)."
    if readme is not None and Path(readme).exists():
        text = Path(readme).read_text()
        for name, content in blocks.items():
            if f"<!-- BEGIN {name} -->" in text:
                text = replace_block(text, name, content)
            elif not name.endswith("_findings"):  # the findings blocks belong to the project README
                log(f"note: {readme} has no {name} markers; block not written")
        Path(readme).write_text(text)
        log(f"updated {readme}")
    if project_readme is not None and Path(project_readme).exists():
        text = original = Path(project_readme).read_text()
        for name, content in blocks.items():
            if f"<!-- BEGIN {name} -->" in text:
                text = replace_block(text, name, content)
        if text != original:
            Path(project_readme).write_text(text)
            log(f"updated {project_readme}")
    return blocks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder with scaling.csv / long_range.csv")
    parser.add_argument("--readme", type=Path, default=README, help="README whose marked blocks are rewritten")
    args = parser.parse_args(argv)
    try:
        build(args.results, args.readme, project_readme=REPO / "README.md" if args.readme == README else None)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
