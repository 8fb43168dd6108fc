"""Run folders: resuming is safe (same configuration, all metrics rows kept, no duplicate
checkpoints), a short run still validates, Ctrl-C says how to resume, and the console is quiet."""

import json

import pandas as pd
import pytest
import torch

from grelu_caduceus.cli import main as cli_main

TINY = ["model=caduceus", "data=ctcf", "model.d_model=16", "model.n_layer=1", "task.batch_size=8",
        "trainer.progress_bar=false", "trainer.max_epochs=3", "trainer.limit_val_batches=2",
        "trainer.log_every_n_steps=1"]


def train(run, *extra):
    return cli_main(["train", *TINY, f"hydra.run.dir={run}", *extra])


@pytest.fixture(scope="module")
def first_run(tmp_path_factory):
    """A 3-step labelled run (shorter than one epoch of the bundled CTCF task)."""
    run = tmp_path_factory.mktemp("runs") / "run"
    assert train(run, "trainer.max_steps=3") == 0
    return run


def copy_run(first_run, tmp_path):
    import shutil

    run = tmp_path / "run"
    shutil.copytree(first_run, run)
    return run


def test_a_run_shorter_than_an_epoch_validates_at_its_end_and_keeps_the_best(first_run):
    metrics = pd.read_csv(first_run / "logs" / "metrics.csv")
    assert metrics.val_loss.notna().sum() == 1
    assert (first_run / "checkpoints" / "best.ckpt").exists()
    recorded = json.loads((first_run / "run_config.json").read_text())
    assert recorded["task.lr"] == pytest.approx(1e-3) and recorded["model.d_model"] == 16


@pytest.mark.parametrize("change, named, forceable", [
    ("task.lr=0.01", "task.lr: 0.001 -> 0.01", True),
    ("model.d_model=32", "model.d_model: 16 -> 32", False),
])
def test_resuming_with_another_configuration_is_refused_in_one_line(first_run, tmp_path, capsys, change, named,
                                                                    forceable):
    run = copy_run(first_run, tmp_path)
    before = (run / "checkpoints" / "last.ckpt").read_bytes()
    assert train(run, "trainer.max_steps=6", change) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and named in err[0] and "hydra.run.dir" in err[0] and "trainer.resume=null" in err[0]
    assert ("trainer.resume=force" in err[0]) == forceable
    assert (run / "checkpoints" / "last.ckpt").read_bytes() == before  # nothing was trained
    assert train(run, "trainer.max_steps=6", change, "trainer.resume=force") == (0 if forceable else 2)


def test_resuming_keeps_earlier_metrics_rows_and_writes_no_duplicate_checkpoints(first_run, tmp_path):
    run = copy_run(first_run, tmp_path)
    earlier = pd.read_csv(run / "logs" / "metrics.csv")
    # a longer run is not another configuration: it continues from last.ckpt
    assert train(run, "trainer.max_steps=6") == 0
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    pd.testing.assert_frame_equal(metrics.iloc[:len(earlier)][earlier.columns], earlier)
    assert metrics.step.max() == 5 and metrics.val_loss.notna().sum() == 2
    assert sorted(p.name for p in (run / "checkpoints").iterdir()) == ["best.ckpt", "last.ckpt"]
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 6


def test_resume_null_starts_afresh_in_the_same_folder(first_run, tmp_path):
    run = copy_run(first_run, tmp_path)
    assert train(run, "trainer.max_steps=2", "task.lr=0.01", "trainer.resume=null") == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    assert json.loads((run / "run_config.json").read_text())["task.lr"] == pytest.approx(0.01)


def test_ctrl_c_saves_last_and_says_how_to_resume(tmp_path, capsys, monkeypatch):
    import pytorch_lightning as pl

    from grelu_caduceus import training

    class CtrlC(pl.Callback):
        def on_train_batch_end(self, trainer, *args):
            if trainer.global_step == 2:
                raise KeyboardInterrupt

    original = training.build_callbacks
    monkeypatch.setattr(training, "build_callbacks", lambda params: original(params) + [CtrlC()])
    run = tmp_path / "run"
    assert train(run, "trainer.max_steps=5") != 0
    captured = capsys.readouterr()
    shown = captured.out + captured.err  # a log line: on the console (Hydra's handler) and in train.log
    assert "Interrupted at step 2" in shown and f"hydra.run.dir={run}" in shown
    assert "Interrupted at step 2" in (run / "train.log").read_text()
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 2
    monkeypatch.setattr(training, "build_callbacks", original)
    import signal

    signal.signal(signal.SIGINT, signal.default_int_handler)  # Lightning ignores Ctrl-C after one
    assert train(run, "trainer.max_steps=5") == 0
    assert torch.load(run / "checkpoints" / "last.ckpt", weights_only=False)["global_step"] == 5


def test_console_has_no_lightning_tips_but_shows_each_validation(tmp_path, capfd):
    assert train(tmp_path / "run", "trainer.max_steps=4", "trainer.val_check_interval=2") == 0
    out = "\n".join(capfd.readouterr())
    for noise in ("Tip:", "GPU available", "TPU available", "LeafSpec", "deprecated", "weights_only", "┃"):
        assert noise not in out, noise
    shown = [line for line in out.splitlines() if "validation at step" in line]
    assert len(shown) == 2 and all("val_loss" in line and "val_auroc" in line for line in shown)
