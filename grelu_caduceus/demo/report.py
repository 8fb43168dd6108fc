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


def _accuracy_bars(ax, result: dict, model_label: str) -> None:
    """Horizontal bars: the model and each baseline's accuracy on the same [MASK]ed sites."""
    names = [model_label, *result["baselines"]]
    values = [result["model_accuracy"], *result["baselines"].values()]
    ax.barh(names[::-1], values[::-1], color=["grey"] * (len(names) - 1) + ["C0"])
    for y, value in enumerate(values[::-1]):
        ax.text(value, y, f" {value:.3f}", va="center", fontsize=7)
    ax.set(xlabel="accuracy", xlim=(0, max(values) * 1.2),
           title=f"{result['n_sites']:,} [MASK]ed sites of {result['n_windows']} held-out windows")
    ax.title.set_fontsize(9)
    ax.tick_params(axis="y", labelsize=7)


def plot_mlm_accuracy(out: Path, mlm_eval: dict) -> str:
    """mlm_accuracy.png: the pretrained model against the baselines of its training DNA, on the
    same held-out [MASK]ed sites."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.5, 3.2))
    _accuracy_bars(ax, mlm_eval, f"Caduceus-PS ({mlm_eval['model']['folder']})")
    fig.tight_layout()
    fig.savefig(out / "mlm_accuracy.png", dpi=110)
    plt.close(fig)
    return "mlm_accuracy.png"


def plot_own_mlm_curves(out: Path, own_eval: dict) -> str | None:
    """mlm_own_curves.png, the demo's own short pretraining: the masked-LM loss; the training-time
    held-out [MASK]ed-site accuracy against the baselines scored on the same windows, masks and
    sites; the final model against the baselines on the evaluation windows' [MASK]ed sites. Each
    accuracy panel compares like with like."""
    frame = read_csv_log(out / "own_pretrain" / "logs" / "metrics.csv")
    if frame is None:
        return None
    plt = _pyplot()
    fig, (ax_loss, ax_val, ax_eval) = plt.subplots(1, 3, figsize=(15, 3.8), gridspec_kw={"width_ratios": [1, 1, 0.8]})
    for column, label in (("train_loss", "train"), ("val_loss", "held-out")):
        rows = _series(frame, column)
        if rows is not None:
            ax_loss.plot(rows.step, rows[column], marker="o" if column == "val_loss" else None, label=label)
    ax_loss.set(xlabel="step", ylabel="masked cross-entropy (nats)", title="Own short pretraining: masked-LM loss")
    ax_loss.legend()

    during = own_eval.get("training_val")
    rows = _series(frame, "val_mask_accuracy")
    if rows is not None:
        ax_val.plot(rows.step, rows.val_mask_accuracy, marker="o", label="Caduceus-PS during training")
    for i, (name, acc) in enumerate((during or {}).get("baselines", {}).items()):
        ax_val.axhline(acc, color=f"C{i + 1}", lw=0.9, ls="--", label=name)
    sites = f"{during['n_sites']:,} [MASK]ed sites of {during['n_windows']} val windows" if during else "[MASK]ed sites"
    ax_val.set(xlabel="step", ylabel="accuracy", title=f"During training: {sites}")
    ax_val.title.set_fontsize(9)
    ax_val.legend(fontsize=7, loc="lower right")

    _accuracy_bars(ax_eval, own_eval, "Caduceus-PS (final)")
    fig.tight_layout()
    fig.savefig(out / "mlm_own_curves.png", dpi=110)
    plt.close(fig)
    return "mlm_own_curves.png"


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


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}" + ("" if n == 1 else "s")


def _table(frame: pd.DataFrame, floatfmt: str = ".4f") -> list[str]:
    return frame.to_markdown(index=False, floatfmt=floatfmt).splitlines()


def _masked_table(m: dict, prefix: str, model_label: str) -> list[str]:
    return _table(pd.DataFrame({
        "predictor": [model_label, *m[f"{prefix}_baseline_accuracies"]],
        "accuracy ([MASK]ed sites)": [m[f"{prefix}_val_accuracy"], *m[f"{prefix}_baseline_accuracies"].values()],
        "all chosen sites": [m[f"{prefix}_val_accuracy_all_chosen"],
                             *m[f"{prefix}_baseline_accuracies_all_chosen"].values()],
    }))


def _verdict(m: dict, prefix: str, what: str) -> str:
    verdict = "beats" if m[f"{prefix}_val_accuracy"] > m[f"{prefix}_baseline_accuracy"] else "does NOT beat"
    lo, hi = m[f"{prefix}_difference_ci95"]
    return (f"{what} {verdict} the best baseline ({m[f'{prefix}_best_baseline']}, "
            f"{m[f'{prefix}_baseline_accuracy']:.4f}) on {m[f'{prefix}_val_sites']:,} [MASK]ed sites of "
            f"{m[f'{prefix}_val_windows']:,} non-overlapping held-out windows: difference "
            f"{m[f'{prefix}_difference_vs_baseline']:+.4f}, 95% interval {lo:+.4f} to {hi:+.4f} (paired bootstrap "
            "over windows).")


def _clean_context(m: dict, prefix: str) -> str:
    return ("For reference, k-mer models given the *uncorrupted* neighbours (information the model never has): "
            + ", ".join(f"{k} {v:.4f}" for k, v in m[f"{prefix}_baseline_accuracies_clean_context"].items()) + ".")


def _training_sentence(model: dict) -> str:
    """How the pretrained model was trained, from MANIFEST.json's record (shipped model only)."""
    t = model.get("training")
    if not t:
        return f"Pretrained model: the folder `{model['folder']}` (no training record in the bundled manifest)."
    return (f"It was pretrained by `scripts/build_pretrained_lm.py` ({t['benchmark']}) for {t['steps']:,} steps of "
            f"{t['batch_size']} x {t['seq_len']:,} bp windows ({t['tokens'] / 1e6:.1f}M tokens) drawn at random from "
            f"hg19 chr20's train blocks ({t['objective']}; {t['optimizer']}; lr {t['lr']}, {t['schedule']}), in "
            f"{t['train_seconds'] / 60:.1f} minutes on {t['threads']} threads of an {t['cpu']}.")


def write_report(out: Path, metrics: dict, figures: dict) -> Path:
    """report.md from metrics.json's content and the figure file names."""
    m = metrics
    model = m["mlm_model"]
    lines = [
        "# grelu-caduceus demo",
        "",
        f"Budget `{m['budget']}`, device `{m['device']}`, seed {m['seed']}, total {m['seconds_total']:.0f} s. "
        f"The job (1) scores the pretrained Caduceus-PS `{model['folder']}` against simple baselines on held-out "
        f"DNA, (2) fine-tunes it on {m['finetune_task_title']} and (3) fine-tunes the same architecture from "
        "scratch beside it, (4) runs a short masked-LM pretraining of its own on the bundled 3 Mb, so that the "
        "whole training path runs, and (5) draws attributions of the fine-tuned model.",
        "",
        "## 1. The pretrained Caduceus-PS on held-out hg19 chr20:43-44 Mb",
        "",
        f"Model: Caduceus-PS (RC-equivariant) masked LM, d_model {model['d_model']}, {_count(model['n_layer'], 'layer')}, "
        f"{model['parameters']:,} parameters. {_training_sentence(model)}",
        "",
        f"Accuracy at the held-out [MASK]ed sites of {m['mlm_seq_len']:,} bp windows (15% of positions chosen, "
        "80/10/10 masking, fixed masks). The baselines are k-mer context counts of the model's own training DNA "
        "(k bases either side; lower k summed out of the stored k = 5 table) and see exactly the model's input: "
        "masked neighbours are unknown (summed out of the counts). Each column scores every predictor on the same "
        "sites.",
        "",
        *_masked_table(m, "mlm", "**Caduceus-PS (pretrained)**"),
        "",
        _verdict(m, "mlm", "The pretrained masked LM") + " " + _clean_context(m, "mlm"),
        "",
        f"![masked accuracy]({figures['mlm']})",
        "",
        f"## 2-3. Fine-tuning on {m['finetune_task_title']} (bundled, hg19 chr20): pretrained vs from scratch",
        "",
        f"200 bp windows centred on {m['finetune_task_title']} vs GC-matched background; train/val/test by 1 Mb "
        f"blocks. Both runs train the same architecture for {_count(m['finetune_epochs'], 'epoch')} (batch "
        f"{m['finetune_batch_size']}, lr {m['finetune_lr']}); one starts from the pretrained weights, the other "
        "from a fresh initialisation. Each reports the checkpoint chosen on validation AUROC, so the test AUROC "
        "is the unbiased one.",
        "",
        *_table(pd.DataFrame([{"model": f"{name} ({r['model_type']})", "val AUROC": r["val_auroc"],
                               "test AUROC": r["test_auroc"], "steps": r["steps"]}
                              for name, r in m["finetune_runs"].items()])),
        "",
        f"Pretraining changes the test AUROC by {m['finetune_test_auroc'] - m['finetune_scratch_test_auroc']:+.4f} "
        f"({m['finetune_test_auroc']:.4f} vs {m['finetune_scratch_test_auroc']:.4f} from scratch).",
        "",
    ]
    reference = m.get("finetune_task_reference")
    if reference:
        lines += [f"Reference: {reference['model']} (bundled manifest) reaches val AUROC "
                  f"{reference['val_auroc']:.3f}, test {reference['test_auroc']:.3f}.", ""]
    if figures.get("finetune"):
        lines += [f"![fine-tuning curves]({figures['finetune']})", ""]
    lines += [
        "## 4. A short pretraining of our own on the bundled hg19 chr20:40-43 Mb",
        "",
        f"Caduceus-PS masked LM, d_model {m['mlm_own_d_model']}, {_count(m['mlm_own_n_layer'], 'layer')}, "
        f"{m['mlm_own_parameters']:,} parameters, {m['mlm_own_steps']} steps of {m['mlm_own_batch_size']} x "
        f"{m['mlm_own_seq_len']} bp windows (lr {m['mlm_own_lr']}) through `grelu_caduceus.tasks.mlm.train_mlm`; "
        "baselines fitted on the same 3 Mb, scored on the same held-out region.",
        "",
        *_masked_table(m, "mlm_own", "**Caduceus-PS (own, short)**"),
        "",
        _verdict(m, "mlm_own", "This small, briefly trained model"),
        "",
    ]
    if figures.get("own_mlm"):
        lines += [f"![own pretraining curves]({figures['own_mlm']})", ""]
    lines += [f"## 5. Attributions (input x gradient) of the most confident held-out {m['finetune_task_positive']}s",
              ""]
    for name in figures.get("attributions", []):
        lines += [f"![attribution logo]({name})", ""]
    lines += ["## Timings (s)", ""]
    lines += _table(pd.DataFrame({"stage": list(m["stage_seconds"]), "seconds": list(m["stage_seconds"].values())}),
                    floatfmt=".1f")
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


__all__ = ["plot_finetune_curves", "plot_mlm_accuracy", "plot_own_mlm_curves", "read_csv_log", "write_report"]
