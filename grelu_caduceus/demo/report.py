"""The demo's report: metrics.json's numbers as report.md (tables by pandas' to_markdown) and PNG plots."""

from __future__ import annotations

from pathlib import Path

import pandas as pd


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def read_csv_log(path: Path) -> pd.DataFrame | None:
    """A Lightning CSVLogger metrics.csv as a DataFrame (None if missing)."""
    return pd.read_csv(path) if path.exists() else None


def _series(frame, column):
    if frame is None or column not in frame:
        return None
    rows = frame[["step", column]].dropna()
    return rows if len(rows) else None


def plot_mlm_curves(out: Path, mlm_eval: dict) -> str | None:
    """mlm_curves.png: the masked-LM loss; the training-time held-out [MASK]ed-site accuracy against
    the baselines scored on the same windows, masks and sites; the final model against the
    baselines on the evaluation windows' [MASK]ed sites. Each accuracy panel compares like with like."""
    frame = read_csv_log(out / "pretrain" / "logs" / "metrics.csv")
    if frame is None:
        return None
    plt = _pyplot()
    fig, (ax_loss, ax_val, ax_eval) = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for column, label in (("train_loss", "train"), ("val_loss", "held-out")):
        rows = _series(frame, column)
        if rows is not None:
            ax_loss.plot(rows.step, rows[column], marker="o" if column == "val_loss" else None, label=label)
    ax_loss.set(xlabel="step", ylabel="masked cross-entropy (nats)", title="Masked-LM loss")
    ax_loss.legend()

    during = mlm_eval.get("training_val")
    rows = _series(frame, "val_mask_accuracy")
    if rows is not None:
        ax_val.plot(rows.step, rows.val_mask_accuracy, marker="o", label="Caduceus-PS during training")
    for i, (name, acc) in enumerate((during or {}).get("baselines", {}).items()):
        ax_val.axhline(acc, color=f"C{i + 1}", lw=0.9, ls="--", label=name)
    sites = f"{during['n_sites']:,} [MASK]ed sites of {during['n_windows']} val windows" if during else "[MASK]ed sites"
    ax_val.set(xlabel="step", ylabel="accuracy", title=f"During training: {sites}")
    ax_val.title.set_fontsize(9)
    ax_val.legend(fontsize=7, loc="lower right")

    names = ["Caduceus-PS (final)", *mlm_eval["baselines"]]
    values = [mlm_eval["model_accuracy"], *mlm_eval["baselines"].values()]
    ax_eval.barh(names[::-1], values[::-1], color=["grey"] * (len(names) - 1) + ["C0"])
    for y, value in enumerate(values[::-1]):
        ax_eval.text(value, y, f" {value:.3f}", va="center", fontsize=7)
    ax_eval.set(xlabel="accuracy", xlim=(0, max(values) * 1.2),
                title=f"Evaluation: {mlm_eval['n_sites']:,} [MASK]ed sites of {mlm_eval['n_windows']} windows")
    ax_eval.title.set_fontsize(9)
    ax_eval.tick_params(axis="y", labelsize=7)
    fig.tight_layout()
    fig.savefig(out / "mlm_curves.png", dpi=110)
    plt.close(fig)
    return "mlm_curves.png"


def plot_finetune_curves(out: Path, names: list[str], task_title: str) -> str | None:
    frames = {name: read_csv_log(out / name / "logs" / "metrics.csv") for name in names}
    if all(f is None for f in frames.values()):
        return None
    plt = _pyplot()
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (name, frame) in enumerate(frames.items()):
        for column, style in (("train_loss_step", "-"), ("val_loss", "o-")):
            rows = _series(frame, column)
            if rows is not None:
                ax_loss.plot(rows.step, rows[column], style, color=f"C{i}", alpha=0.5 if style == "-" else 1,
                             label=f"{name} {'train' if style == '-' else 'val'}")
        rows = _series(frame, "val_auroc")
        if rows is not None:
            ax_auc.plot(rows.step, rows.val_auroc, "o-", color=f"C{i}", label=name)
    ax_loss.set(xlabel="step", ylabel="binary cross-entropy", title=f"fine-tuning loss ({task_title})")
    ax_loss.legend(fontsize=7)
    ax_auc.axhline(0.75, color="grey", ls="--", lw=0.8)
    ax_auc.set(xlabel="step", ylabel="AUROC (val subset)", title="validation AUROC")
    ax_auc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "finetune_curves.png", dpi=110)
    plt.close(fig)
    return "finetune_curves.png"


def _table(frame: pd.DataFrame, floatfmt: str = ".4f") -> list[str]:
    return frame.to_markdown(index=False, floatfmt=floatfmt).splitlines()


def write_report(out: Path, metrics: dict, figures: dict) -> Path:
    """report.md from metrics.json's content and the figure file names."""
    m = metrics
    predictors = ["**Caduceus-PS masked LM**", *m["mlm_baseline_accuracies"]]
    masked = pd.DataFrame({
        "predictor": predictors,
        "accuracy ([MASK]ed sites)": [m["mlm_val_accuracy"], *m["mlm_baseline_accuracies"].values()],
        "all chosen sites": [m["mlm_val_accuracy_all_chosen"], *m["mlm_baseline_accuracies_all_chosen"].values()],
    })
    lines = [
        "# grelu-caduceus demo",
        "",
        f"Budget `{m['budget']}`, device `{m['device']}`, seed {m['seed']}, total {m['seconds_total']:.0f} s.",
        "",
        "## 1. Masked-LM pretraining (Caduceus-PS) on hg19 chr20:40-43 Mb, held-out 43-44 Mb",
        "",
        f"Model: d_model {m['mlm_d_model']}, {m['mlm_n_layer']} layers, {m['mlm_parameters']:,} parameters, "
        f"{m['mlm_steps']} steps of {m['mlm_batch_size']} x {m['mlm_seq_len']} bp windows (lr {m['mlm_lr']}).",
        "",
        "Accuracy at the held-out [MASK]ed sites (15% of positions chosen, 80/10/10 masking, fixed masks). The "
        "baselines are fitted on the train region and see exactly the model's input: masked neighbours are "
        "unknown (summed out of the k-mer counts). Each column scores every predictor on the same sites.",
        "",
        *_table(masked),
    ]
    verdict = "beats" if m["mlm_val_accuracy"] > m["mlm_baseline_accuracy"] else "does NOT beat"
    lines += [
        "",
        f"The masked LM {verdict} the best baseline ({m['mlm_best_baseline']}, {m['mlm_baseline_accuracy']:.4f}) "
        f"on {m['mlm_val_sites']:,} [MASK]ed sites of {m['mlm_val_windows']:,} non-overlapping held-out windows: "
        f"difference {m['mlm_difference_vs_baseline']:+.4f}, 95% interval {m['mlm_difference_ci95'][0]:+.4f} to "
        f"{m['mlm_difference_ci95'][1]:+.4f} (paired bootstrap over windows). "
        "For reference, k-mer models given the *uncorrupted* "
        "neighbours (information the model never has): "
        + ", ".join(f"{k} {v:.4f}" for k, v in m["mlm_baseline_accuracies_clean_context"].items()) + ".",
        "",
    ]
    if figures.get("mlm"):
        lines += [f"![masked-LM curves]({figures['mlm']})", ""]
    lines += [
        f"## 2. Fine-tuning on {m['finetune_task_title']} (bundled, hg19 chr20)",
        "",
        f"200 bp windows centred on {m['finetune_task_title']} vs GC-matched background; train/val/test by 1 Mb "
        "blocks. The reported checkpoint is chosen on validation AUROC, so the test AUROC is the unbiased one.",
        "",
        *_table(pd.DataFrame([{"model": f"{name} ({r['model_type']})", "val AUROC": r["val_auroc"],
                               "test AUROC": r["test_auroc"], "steps": r["steps"]}
                              for name, r in m["finetune_runs"].items()])),
        "",
    ]
    reference = m.get("finetune_task_reference")
    if reference:
        lines += [f"Reference: {reference['model']} (bundled manifest) reaches val AUROC "
                  f"{reference['val_auroc']:.3f}, test {reference['test_auroc']:.3f}.", ""]
    if figures.get("finetune"):
        lines += [f"![fine-tuning curves]({figures['finetune']})", ""]
    lines += [f"## 3. Attributions (input x gradient) of the most confident held-out {m['finetune_task_positive']}s", ""]
    for name in figures.get("attributions", []):
        lines += [f"![attribution logo]({name})", ""]
    lines += ["## Timings (s)", ""]
    lines += _table(pd.DataFrame({"stage": list(m["stage_seconds"]), "seconds": list(m["stage_seconds"].values())}),
                    floatfmt=".1f")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


__all__ = ["plot_finetune_curves", "plot_mlm_curves", "read_csv_log", "write_report"]
