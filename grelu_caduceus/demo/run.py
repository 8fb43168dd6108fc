"""Running the demo: :func:`run_demo` runs (or resumes) every stage and writes metrics.json,
report.md and the plots; the ``grelu-caduceus demo`` command (``grelu_caduceus.cli.demo``) calls it."""

from __future__ import annotations

import contextlib
import json
import os
import time

import torch

from .console import log
from .report import plot_finetune_curves, plot_mlm_accuracy, plot_own_mlm_curves, write_report
from .stages import N_STEPS, DemoRun


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


def run_demo(out_dir, device: str = "auto", budget: str = "default", seed: int = 0, pretrained=None) -> dict:
    """Run (or resume) the demo in ``out_dir``; returns the metrics written to ``out_dir/metrics.json``.

    Args:
        out_dir: output folder; re-running with the same folder reuses finished stages.
        device: "auto" (GPU when present), "cpu", "cuda" or "cuda:N".
        budget: "quick" (a smoke run of a minute or two), "default" (the main job, under 10 minutes on
            2 CPU cores) or "full" (longer fine-tuning and own pretraining, for a GPU), or a DemoBudget.
        seed: random seed of every stage.
        pretrained: the pretrained model's HF-format folder, with the k-mer counts of its training
            DNA (``kmer_context_k5.npz``); None: the shipped Caduceus-PS (``caduceus_ps_chr20``).

    Returns:
        dict with at least mlm_val_accuracy, mlm_baseline_accuracy, mlm_difference_vs_baseline,
        mlm_difference_ci95, finetune_val_auroc, finetune_test_auroc, finetune_scratch_val_auroc,
        finetune_scratch_test_auroc, the own pretraining's mlm_own_* and seconds_total.
    """
    demo = DemoRun(out_dir, device, budget, seed, pretrained)
    with compute_threads(demo.device) as threads:
        return _run_stages(demo, threads)


def masked_accuracy_metrics(prefix: str, result: dict) -> dict:
    """metrics.json's keys of one masked-accuracy comparison (evaluate_masked's result), under ``prefix``."""
    return {
        f"{prefix}_val_accuracy": result["model_accuracy"],
        f"{prefix}_baseline_accuracy": result["best_baseline_accuracy"],
        f"{prefix}_difference_vs_baseline": result["difference"],
        f"{prefix}_difference_ci95": result["difference_ci95"],
        f"{prefix}_best_baseline": result["best_baseline"],
        f"{prefix}_baseline_accuracies": result["baselines"],
        f"{prefix}_val_accuracy_all_chosen": result["model_accuracy_all_chosen"],
        f"{prefix}_baseline_accuracies_all_chosen": result["baselines_all_chosen"],
        f"{prefix}_baseline_accuracies_clean_context": result["baselines_clean_context"],
        f"{prefix}_val_sites": result["n_sites"],
        f"{prefix}_val_windows": result["n_windows"],
    }


def _run_stages(demo: "DemoRun", threads: str) -> dict:
    from ..data import task_baseline

    started = time.perf_counter()
    b = demo.budget
    log.info(f"writing to {demo.out} (budget {b.name}, device {demo.device}, {threads}, seed {demo.seed}, pretrained "
             f"model {demo.pretrained.name})")
    mlm_eval = demo.evaluate_pretrained()
    runs = {"finetune_pretrained": demo.finetune("finetune_pretrained", from_pretrained=True),
            "finetune_scratch": demo.finetune("finetune_scratch", from_pretrained=False)}
    own_pretrain = demo.own_pretrain()
    own_eval = demo.evaluate_own(own_pretrain)
    attributions = demo.attributions(runs["finetune_pretrained"])
    log.info(f"[{N_STEPS}/{N_STEPS}] plots, metrics.json and report.md")
    figures = {"mlm": plot_mlm_accuracy(demo.out, mlm_eval),
               "own_mlm": plot_own_mlm_curves(demo.out, own_eval),
               "finetune": plot_finetune_curves(demo.out, list(runs), demo.task.title),
               "attributions": attributions["figures"]}
    stage_seconds = {"mlm_eval": mlm_eval["seconds"], **{k: v["seconds"] for k, v in runs.items()},
                     "own_pretrain": own_pretrain["seconds"], "own_mlm_eval": own_eval["seconds"],
                     "attributions": attributions["seconds"]}
    tuned, scratch = runs["finetune_pretrained"], runs["finetune_scratch"]
    metrics = {
        **masked_accuracy_metrics("mlm", mlm_eval),
        "mlm_seq_len": mlm_eval["seq_len"],
        "mlm_model": mlm_eval["model"],
        "finetune_val_auroc": tuned["val_auroc"],
        "finetune_test_auroc": tuned["test_auroc"],
        "finetune_scratch_val_auroc": scratch["val_auroc"],
        "finetune_scratch_test_auroc": scratch["test_auroc"],
        "finetune_task": demo.task.name,
        "finetune_task_title": demo.task.title,
        "finetune_task_positive": demo.task.positive,
        "finetune_task_reference": task_baseline(demo.task.name),
        "finetune_epochs": b.finetune_epochs,
        "finetune_batch_size": b.finetune_batch_size,
        "finetune_lr": b.finetune_lr,
        "finetune_runs": runs,
        **masked_accuracy_metrics("mlm_own", own_eval),
        "mlm_own_steps": own_pretrain["steps"],
        "mlm_own_parameters": own_pretrain["parameters"],
        "mlm_own_d_model": b.own_d_model,
        "mlm_own_n_layer": b.own_n_layer,
        "mlm_own_seq_len": b.own_seq_len,
        "mlm_own_batch_size": b.own_batch_size,
        "mlm_own_lr": b.own_lr,
        "budget": b.name,
        "device": demo.device,
        "seed": demo.seed,
        "stage_seconds": stage_seconds,
        "seconds_total": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    (demo.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report = write_report(demo.out, metrics, figures)
    log.info(f"done in {metrics['seconds_total']:.0f} s: masked accuracy {metrics['mlm_val_accuracy']:.4f} vs best "
             f"baseline {metrics['mlm_baseline_accuracy']:.4f}; {demo.task.name} val AUROC "
             f"{metrics['finetune_val_auroc']:.4f}, test {metrics['finetune_test_auroc']:.4f} (from scratch "
             f"{metrics['finetune_scratch_test_auroc']:.4f}). Report: {report}")
    return metrics


__all__ = ["compute_threads", "masked_accuracy_metrics", "run_demo"]
