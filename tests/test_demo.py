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
