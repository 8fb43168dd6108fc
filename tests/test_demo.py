"""The `grelu-caduceus demo` job in its quick (smoke) size: outputs, resumption, settings guard."""

import json
import math

import pytest

from grelu_caduceus.cli import UserError
from grelu_caduceus.cli import main as cli_main
from grelu_caduceus.demo import run_demo


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    metrics = run_demo(out, device="cpu", budget="quick", seed=0)
    return out, metrics


def test_quick_demo_writes_metrics_report_and_plots(quick_run):
    out, metrics = quick_run
    saved = json.loads((out / "metrics.json").read_text())
    for key in ("mlm_val_accuracy", "mlm_baseline_accuracy", "finetune_val_auroc"):
        assert 0.0 <= saved[key] <= 1.0 and math.isfinite(saved[key]), key
    assert saved["mlm_baseline_accuracy"] == max(saved["mlm_baseline_accuracies"].values())
    assert set(saved["mlm_baseline_accuracies"]) == {"most_frequent_base", "kmer_context_k1", "kmer_context_k2",
                                                     "kmer_context_k3", "kmer_context_k4"}
    assert saved["mlm_steps"] == 12 and saved["budget"] == "quick" and saved["device"] == "cpu"
    report = (out / "report.md").read_text()
    assert f"{saved['mlm_val_accuracy']:.4f}" in report and f"{saved['finetune_val_auroc']:.4f}" in report
    for png in ("mlm_curves.png", "finetune_curves.png", "attribution_logo_0.png"):
        assert (out / png).stat().st_size > 1000, png
        assert f"]({png})" in report
    assert (out / "pretrain" / "checkpoints" / "final.ckpt").exists()
    assert (out / "pretrain" / "logs" / "metrics.csv").exists()


def test_rerun_reuses_finished_stages(quick_run, capsys):
    out, metrics = quick_run
    assert cli_main(["demo", "--out", str(out), "--quick", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    for stage in ("pretrain", "mlm_eval", "finetune_pretrained", "attributions"):
        assert f"{stage}: already done" in printed
    again = json.loads((out / "metrics.json").read_text())
    for key in ("mlm_val_accuracy", "mlm_baseline_accuracy", "finetune_val_auroc", "finetune_test_auroc"):
        assert again[key] == metrics[key]


def test_other_settings_in_the_same_folder_are_refused(quick_run):
    out, _ = quick_run
    with pytest.raises(UserError, match="other settings"):
        run_demo(out, device="cpu", budget="quick", seed=1)
    assert cli_main(["demo", "--out", str(out), "--budget", "default", "--quick"]) == 2


def test_training_curve_and_its_baselines_are_scored_on_the_same_sites(quick_run):
    """The accuracy plot's curve (val_mask_accuracy logged during pretraining) and its baseline lines
    come from the same windows, masks and [MASK]ed sites: rescoring the final model on the
    recorded training-time set gives the curve's last point."""
    import pandas as pd

    out, metrics = quick_run
    stage = json.loads((out / "stages" / "mlm_eval.json").read_text())
    during = stage["training_val"]
    logged = pd.read_csv(out / "pretrain" / "logs" / "metrics.csv").dropna(subset=["val_mask_accuracy"])
    last = logged.sort_values("step").iloc[-1]
    assert abs(during["model_accuracy"] - last.val_mask_accuracy) <= 1.0 / during["n_sites"]
    assert during["n_windows"] == 8 and set(during["baselines"]) == set(metrics["mlm_baseline_accuracies"])
    report = (out / "report.md").read_text()
    assert "| predictor" in report and "|:--" in report  # tables written by DataFrame.to_markdown


def test_model_and_baselines_are_evaluated_on_the_same_sites():
    """A 'model' that predicts what the k=2 baseline predicts must score exactly the baseline's
    accuracy, with a zero difference: both are scored on the same sites of the same inputs."""
    import numpy as np
    import torch

    from grelu_caduceus.core.tokens import A_ID
    from grelu_caduceus.demo import KmerContextModel, MaskedEvalSet, evaluate_masked
    from grelu_caduceus.demo.baselines import fit_baselines, ids_to_bases
    from grelu_caduceus.demo.stages import region_ids

    class BaselineAsModel(torch.nn.Module):
        def __init__(self, baseline):
            super().__init__()
            self.baseline = baseline

        def forward(self, ids):
            bases = ids_to_bases(ids)
            rows, cols = np.nonzero(np.ones_like(bases, dtype=bool))
            guess = self.baseline.predict(bases, rows, cols).reshape(bases.shape)
            return torch.nn.functional.one_hot(torch.as_tensor(guess) + A_ID, 16).float()

    ids = region_ids("val")[: 16 * 256].reshape(16, 256)
    baselines = fit_baselines(ids_to_bases(region_ids("train")))
    k2 = next(bl for bl in baselines if isinstance(bl, KmerContextModel) and bl.k == 2)
    result = evaluate_masked(BaselineAsModel(k2), MaskedEvalSet.build(ids, 8), baselines, 8, "cpu")
    assert result["model_accuracy"] == result["baselines"]["kmer_context_k2"]
    assert result["n_windows"] == 16 and result["n_sites"] > 400
    if result["best_baseline"] == "kmer_context_k2":
        assert result["difference"] == 0.0 and result["difference_ci95"] == (0.0, 0.0)
    else:
        assert result["difference"] < 0.0
