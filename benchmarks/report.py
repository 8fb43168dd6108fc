#!/usr/bin/env python
"""Regenerate the tables of benchmarks/README.md and the PNG plots from the committed CSVs.

    .venv/bin/python benchmarks/report.py [--results benchmarks/results] [--readme benchmarks/README.md]

The README keeps hand-written prose; everything between ``<!-- BEGIN name -->`` and
``<!-- END name -->`` is replaced by the block ``name`` generated here, so every number shown
there comes from a CSV:

  models      parameter counts (scaling.csv, long_range.csv)
  scaling     time and peak memory tables (scaling.csv) + scaling_time.png / scaling_memory.png
  long_range  test AUROC per task, model and context (long_range.csv) + long_range.png, and the
              cases where Caduceus is behind
  gpu         the GPU suite's scaling table (results/gpu/scaling.csv), when it exists
"""

from __future__ import annotations

import argparse
import re
import sys
from pathlib import Path

import pandas as pd

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
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _fmt(x, digits=0) -> str:
    return "–" if pd.isna(x) else f"{x:,.{digits}f}"


# ---------------------------------------------------------------------------------------------
# Scaling
# ---------------------------------------------------------------------------------------------


def scaling_block(df: pd.DataFrame, png_names: tuple[str, str] | None) -> str:
    """Time and memory tables (rows: length; columns: model), one pair per mode, plus the ratio line."""
    models = _models_in(df)
    parts = [f"Device: {', '.join(sorted(set(df.device)))}; batch 1; `–` = not run (predicted past the "
             "time or memory cap, see the run log)."]
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
    """Mean, min, max and count of the metric over seeds per (task, data, model, context)."""
    return (df.groupby(["task", "data", "model", "context_len"]).value
            .agg(["mean", "min", "max", "count"]).reset_index())


def long_range_block(df: pd.DataFrame, png_name: str | None) -> str:
    summary = long_range_summary_frame(df)
    models = _models_in(df)
    seeds = sorted(set(df.seed))
    metric = ", ".join(sorted(set(df.metric)))
    parts = [f"Test {metric}; mean over seeds {seeds} (min–max in brackets when more than one seed). "
             f"Budget per run: {_budget_text(df)}.{_standard_error_text(df)}"]
    for task in dict.fromkeys(df.task):
        sub = summary[summary.task == task]
        contexts = sorted(set(sub.context_len))
        rows = []
        for model in models:
            cells = []
            for c in contexts:
                r = sub[(sub.model == model) & (sub.context_len == c)]
                if r.empty:
                    cells.append("–")
                    continue
                r = r.iloc[0]
                best = sub[sub.context_len == c]["mean"].max()
                cell = f"{r['mean']:.3f}"
                if r["count"] > 1:
                    cell += f" ({r['min']:.3f}–{r['max']:.3f})"
                cells.append(f"**{cell}**" if r["mean"] == best else cell)
            rows.append([model] + cells)
        data_kind = sub.data.iloc[0]
        parts.append(f"**{task}** ({data_kind})\n\n" + markdown_table(["model"] + [f"{_bp(c)} bp" if c >= 1024 else f"{c} bp"
                                                                               for c in contexts], rows))
    parts.append(caduceus_verdict(summary))
    parts.append(training_time_table(df))
    if png_name:
        parts.append(f"![long-range results](results/{png_name})")
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


def _budget_text(df: pd.DataFrame) -> str:
    cols = [c for c in ("steps", "n_train", "n_test") if c in df.columns]
    if not cols:
        return "see long_range.py"
    combos = df[cols].drop_duplicates()
    return "; ".join(", ".join(f"{c} {int(v)}" for c, v in zip(cols, row)) for row in combos.itertuples(index=False))


def caduceus_verdict(summary: pd.DataFrame) -> str:
    """Where Caduceus wins and where it is behind the best other model (mean over seeds)."""
    if "caduceus" not in set(summary.model):
        return ""
    wins, losses = [], []
    for (task, context), group in summary.groupby(["task", "context_len"], sort=False):
        means = group.set_index("model")["mean"]
        others = means.drop("caduceus", errors="ignore")
        if "caduceus" not in means or others.empty:
            continue
        best_other = others.idxmax()
        text = f"{task} @ {context} bp (caduceus {means['caduceus']:.3f} vs {best_other} {others.max():.3f})"
        (wins if means["caduceus"] >= others.max() else losses).append(text)
    lines = [f"Caduceus best or tied in {len(wins)} of {len(wins) + len(losses)} task/context cells."]
    if losses:
        lines.append("Caduceus is behind in: " + "; ".join(losses) + ".")
    if wins:
        lines.append("Caduceus leads in: " + "; ".join(wins) + ".")
    return "\n\n".join(lines)


def training_time_table(df: pd.DataFrame) -> str:
    if "train_s" not in df.columns:
        return ""
    t = df.groupby(["model", "context_len"]).train_s.mean().unstack()
    contexts = list(t.columns)
    rows = [[m] + [_fmt(t.loc[m, c], 1) for c in contexts] for m in _models_in(df) if m in t.index]
    return ("**Training wall time per run (s, mean over tasks and seeds)**\n\n"
            + markdown_table(["model"] + [f"{c} bp" for c in contexts], rows))


def plot_long_range(df: pd.DataFrame, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    summary = long_range_summary_frame(df)
    tasks = list(dict.fromkeys(df.task))
    fig, axes = plt.subplots(1, len(tasks), figsize=(4.2 * len(tasks), 3.8), sharey=True, squeeze=False)
    for ax, task in zip(axes[0], tasks):
        sub = summary[summary.task == task]
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
        ax.set_title(f"{task} ({sub.data.iloc[0]})")
        ax.grid(True, alpha=0.3)
    axes[0][0].set_ylabel(", ".join(sorted(set(df.metric))) + " (test)")
    axes[0][-1].legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
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


def models_block(frames: list[pd.DataFrame]) -> str:
    counts = pd.concat([f[["model", "params"]] for f in frames if f is not None]).drop_duplicates()
    rows = []
    for model in _models_in(counts):
        values = sorted(set(counts[counts.model == model].params))
        rows.append([model, " / ".join(f"{int(v):,}" for v in values)])
    return markdown_table(["model", "parameters (with a 1-track head)"], rows)


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


def build(results: Path, readme: Path, log=print) -> dict[str, str]:
    """Write the plots into ``results`` and the tables into ``readme``; returns the generated blocks."""
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
        blocks["scaling"] = scaling_block(scaling, ("scaling_time.png", "scaling_memory.png"))
    if long_range is not None:
        long_range = long_range.assign(model=long_range.model.str.lower())
        plot_long_range(long_range, results / "long_range.png")
        blocks["long_range"] = long_range_block(long_range, "long_range.png")
    blocks["models"] = models_block([scaling, long_range])
    gpu = gpu_block(results / "gpu")
    blocks["gpu"] = gpu or "No GPU results committed yet (`benchmarks/run.py gpu --out benchmarks/results/gpu`)."
    if readme is not None and Path(readme).exists():
        text = Path(readme).read_text()
        for name, content in blocks.items():
            if f"<!-- BEGIN {name} -->" in text:
                text = replace_block(text, name, content)
            else:
                log(f"note: {readme} has no {name} markers; block not written")
        Path(readme).write_text(text)
        log(f"updated {readme}")
    return blocks


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=RESULTS, help="folder with scaling.csv / long_range.csv")
    parser.add_argument("--readme", type=Path, default=README, help="README whose marked blocks are rewritten")
    args = parser.parse_args(argv)
    try:
        build(args.results, args.readme)
    except (FileNotFoundError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
