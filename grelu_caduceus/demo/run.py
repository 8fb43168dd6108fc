"""Running the demo: :func:`run_demo` runs (or resumes) every stage and writes metrics.json,
report.md and the plots; the ``grelu-caduceus demo`` command (``grelu_caduceus.cli.demo``) calls it."""

from __future__ import annotations

import contextlib
import json
import os
import time

import torch

from .console import log
from .report import plot_finetune_curves, plot_mlm_curves, write_report
from .stages import DemoRun


@contextlib.contextmanager
def compute_threads(device: str):
    """Use one compute thread on CPU unless OpenMP threads wait passively; yields a description.

    torch's OpenMP pool and the numba scan's pool alternate many times per step; with busy-waiting
    idle threads (OpenMP's default) they starve each other. The ``grelu-caduceus`` command sets
    OMP_WAIT_POLICY=PASSIVE for its own process before torch starts (2 cores, the default
    pretraining step: 1.0 s on one thread, 0.62 s on two with passive waiting, 3.8 s on two with
    busy waiting). The caller's thread counts are restored on exit.
    """
    if device != "cpu":
        yield "GPU"
        return
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        yield f"{torch.get_num_threads()} threads"
        return
    try:
        import numba
    except ImportError:
        numba = None
    saved = torch.get_num_threads(), numba.get_num_threads() if numba else None
    torch.set_num_threads(1)
    if numba:
        numba.set_num_threads(1)
    try:
        yield "1 thread (set OMP_WAIT_POLICY=PASSIVE before starting to use more)"
    finally:
        torch.set_num_threads(saved[0])
        if numba:
            numba.set_num_threads(saved[1])


def run_demo(out_dir, device: str = "auto", budget: str = "default", seed: int = 0) -> dict:
    """Run (or resume) the demo in ``out_dir``; returns the metrics written to ``out_dir/metrics.json``.

    Args:
        out_dir: output folder; re-running with the same folder reuses finished stages.
        device: "auto" (GPU when present), "cpu", "cuda" or "cuda:N".
        budget: "quick" (~1 minute smoke run), "default" (~11 minutes on 2 CPU cores) or "full"
            (a larger model and longer training, for a GPU), or a DemoBudget.
        seed: random seed of every stage.

    Returns:
        dict with at least mlm_val_accuracy, mlm_baseline_accuracy and finetune_val_auroc.
    """
    demo = DemoRun(out_dir, device, budget, seed)
    with compute_threads(demo.device) as threads:
        return _run_stages(demo, threads)


def _run_stages(demo: "DemoRun", threads: str) -> dict:
    from ..data import task_baseline

    started = time.perf_counter()
    b = demo.budget
    log.info(f"writing to {demo.out} (budget {b.name}, device {demo.device}, {threads}, seed {demo.seed})")
    pretrain = demo.pretrain()
    mlm_eval = demo.evaluate_mlm(pretrain)
    runs = {"finetune_pretrained": demo.finetune("finetune_pretrained", pretrain["checkpoint"])}
    if b.scratch_comparison:
        runs["finetune_scratch"] = demo.finetune("finetune_scratch", None)
    attributions = demo.attributions(runs["finetune_pretrained"])
    log.info("[5/5] plots, metrics.json and report.md")
    figures = {"mlm": plot_mlm_curves(demo.out, mlm_eval), "finetune": plot_finetune_curves(demo.out, list(runs), demo.task.title),
               "attributions": attributions["figures"]}
    stage_seconds = {"pretrain": pretrain["seconds"], "mlm_eval": mlm_eval["seconds"],
                     **{k: v["seconds"] for k, v in runs.items()}, "attributions": attributions["seconds"]}
    tuned = runs["finetune_pretrained"]
    metrics = {
        "mlm_val_accuracy": mlm_eval["model_accuracy"],
        "mlm_baseline_accuracy": mlm_eval["best_baseline_accuracy"],
        "finetune_val_auroc": tuned["val_auroc"],
        "finetune_test_auroc": tuned["test_auroc"],
        "mlm_best_baseline": mlm_eval["best_baseline"],
        "mlm_baseline_accuracies": mlm_eval["baselines"],
        "mlm_val_accuracy_all_chosen": mlm_eval["model_accuracy_all_chosen"],
        "mlm_baseline_accuracies_all_chosen": mlm_eval["baselines_all_chosen"],
        "mlm_baseline_accuracies_clean_context": mlm_eval["baselines_clean_context"],
        "mlm_val_sites": mlm_eval["n_sites"],
        "mlm_val_windows": mlm_eval["n_windows"],
        "mlm_difference_vs_baseline": mlm_eval["difference"],
        "mlm_difference_ci95": mlm_eval["difference_ci95"],
        "mlm_steps": pretrain["steps"],
        "mlm_parameters": pretrain["parameters"],
        "mlm_d_model": b.d_model,
        "mlm_n_layer": b.n_layer,
        "mlm_seq_len": b.seq_len,
        "mlm_batch_size": b.batch_size,
        "mlm_lr": b.lr,
        "finetune_task": demo.task.name,
        "finetune_task_title": demo.task.title,
        "finetune_task_positive": demo.task.positive,
        "finetune_task_reference": task_baseline(demo.task.name),
        "finetune_runs": runs,
        "budget": b.name,
        "device": demo.device,
        "seed": demo.seed,
        "stage_seconds": stage_seconds,
        "seconds_total": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    if "finetune_scratch" in runs:
        metrics["scratch_val_auroc"] = runs["finetune_scratch"]["val_auroc"]
        metrics["scratch_test_auroc"] = runs["finetune_scratch"]["test_auroc"]
    (demo.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report = write_report(demo.out, metrics, figures)
    log.info(f"done in {metrics['seconds_total']:.0f} s: masked accuracy {metrics['mlm_val_accuracy']:.4f} vs best baseline "
        f"{metrics['mlm_baseline_accuracy']:.4f}; {demo.task.name} val AUROC {metrics['finetune_val_auroc']:.4f}, test "
        f"{metrics['finetune_test_auroc']:.4f}. Report: {report}")
    return metrics


__all__ = ["compute_threads", "run_demo"]
