"""scripts/finetune_task.py: the shuffled-label control and a tiny end-to-end run."""

import importlib.util
import json
from pathlib import Path

import numpy as np

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "finetune_task.py"


def load_script():
    spec = importlib.util.spec_from_file_location("finetune_task", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_control_permutes_only_the_training_labels():
    script = load_script()
    real = script.datasets("atac", 200, shuffle_train_labels=False, seed=0)
    control = script.datasets("atac", 200, shuffle_train_labels=True, seed=0)
    y_real, y_control = real["train"].labels.ravel(), control["train"].labels.ravel()
    assert np.array_equal(np.sort(y_real), np.sort(y_control))  # same class balance
    assert (y_real != y_control).mean() > 0.3  # a real permutation, not the identity
    for split in ("val", "test"):
        assert np.array_equal(real[split].labels, control[split].labels)


def test_tiny_run_writes_json_and_markdown(tmp_path):
    script = load_script()
    result = script.main(["--task", "atac", "--max-steps", "2", "--val-every", "1", "--batch-size", "8",
                          "--d-model", "16", "--n-layer", "1", "--threads", "1", "--out", str(tmp_path)])
    saved = json.loads((tmp_path / "finetune_atac.json").read_text())
    for run in ("real", "shuffled"):
        assert saved[run]["steps"] == 2 and 0.0 <= saved[run]["test"]["auroc"] <= 1.0
    assert saved["shuffled"]["shuffled_train_labels"] and not saved["real"]["shuffled_train_labels"]
    markdown = (tmp_path / "finetune_atac.md").read_text()
    assert f"{result['real']['test']['auroc']:.3f}" in markdown
    assert "--task atac --d-model 16" in markdown
