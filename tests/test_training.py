"""grelu_caduceus.training: a Trainer from train_params with the settings gReLU 1.1.0 drops
(precision, strategy, max_steps, val_check_interval, seed, ...), and gReLU's training loop on it."""

import copy
import math
import os
import warnings

import numpy as np
import pytest
import torch

import grelu_caduceus  # noqa: F401  (registers the models on grelu.model.models)
import grelu.model.models  # noqa: F401
from grelu.data.dataset import LabeledSeqDataset
from grelu.lightning import LightningModel
from pytorch_lightning.callbacks import Callback, EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers import CSVLogger
from pytorch_lightning.strategies import DDPStrategy

from grelu_caduceus.core.caduceus import Block
from grelu_caduceus.training import build_trainer, resolve_devices, resolve_strategy, train_on_dataset

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*number of training batches.*")

SEQ_LEN = 48
QUIET = dict(enable_progress_bar=False, num_sanity_val_steps=0, log_every_n_steps=1)


def datasets(n_train=24, n_val=8, seed=0):
    """Random sequences labelled by whether they contain 'GATA' (any label works here)."""
    rng = np.random.default_rng(seed)
    seqs = ["".join(rng.choice(list("ACGT"), SEQ_LEN)) for _ in range(n_train + n_val)]
    labels = np.array([[["GATA" in s]] for s in seqs], dtype=np.float32)
    return (LabeledSeqDataset(seqs[:n_train], labels=labels[:n_train], tasks=["gata"]),
            LabeledSeqDataset(seqs[n_train:], labels=labels[n_train:], tasks=["gata"]))


def tiny_model(tmp_path, **train_params):
    torch.manual_seed(0)
    params = {"task": "binary", "loss": "bce", "lr": 1e-2, "batch_size": 8, "num_workers": 0, "devices": "cpu",
              "logger": None, "save_dir": str(tmp_path), "max_epochs": 1, **train_params}
    return LightningModel(model_params={"model_type": "CaduceusModel", "n_tasks": 1, "d_model": 8, "n_layer": 1},
                          train_params=params)


# --- build_trainer: settings reach the Trainer ---------------------------------------------------


def test_build_trainer_passes_settings_grelu_drops(tmp_path):
    params = {"precision": "bf16-mixed", "strategy": "ddp", "accelerator": "cpu", "devices": 2, "max_steps": 7,
              "val_check_interval": 3, "accumulate_grad_batches": 2, "clip": 0.5, "logger": "csv",
              "save_dir": str(tmp_path), "name": "run", "early_stopping": True, "patience": 3,
              "checkpoint": {"monitor": "val_loss", "save_top_k": 2}, "lr": 1e-3}
    trainer = build_trainer(params)
    assert trainer.precision == "bf16-mixed"
    assert isinstance(trainer.strategy, DDPStrategy) and trainer.num_devices == 2
    assert trainer.max_steps == 7
    # an int interval counts batches across epochs: per-epoch validation is switched off
    assert trainer.val_check_interval == 3 and trainer.check_val_every_n_epoch is None
    assert trainer.accumulate_grad_batches == 2
    assert trainer.gradient_clip_val == 0.5
    assert isinstance(trainer.logger, CSVLogger) and trainer.logger.name == "run"
    assert os.path.samefile(trainer.logger.save_dir, tmp_path)
    (ckpt,) = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert ckpt.monitor == "val_loss" and ckpt.save_top_k == 2
    (stop,) = [c for c in trainer.callbacks if isinstance(c, EarlyStopping)]
    assert stop.patience == 3


def test_defaults_match_grelu_trainer(tmp_path):
    trainer = build_trainer({"save_dir": str(tmp_path)})
    assert trainer.precision == "32-true" and trainer.max_epochs == 1 and trainer.max_steps == -1
    assert trainer.num_devices == 1 and type(trainer.accelerator).__name__ == "CPUAccelerator"
    (ckpt,) = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
    assert ckpt.monitor == "val_loss" and ckpt.save_last
    assert trainer.gradient_clip_val is None and trainer.logger is None


def test_overrides_win_and_leave_train_params_alone(tmp_path):
    params = {"max_steps": 5, "precision": None, "save_dir": str(tmp_path)}
    trainer = build_trainer(params, max_steps=9, precision="bf16-mixed", gradient_clip_val=1.5)
    assert trainer.max_steps == 9 and trainer.precision == "bf16-mixed" and trainer.gradient_clip_val == 1.5
    assert params == {"max_steps": 5, "precision": None, "save_dir": str(tmp_path)}


def test_unknown_override_names_the_setting():
    with pytest.raises(TypeError, match="'precission' .*did you mean 'precision'"):
        build_trainer({}, precission="bf16-mixed")


def test_clip_and_alias_must_agree():
    with pytest.raises(ValueError, match="clip=0.5 and gradient_clip_val=1.0 disagree"):
        build_trainer({"clip": 0.5, "gradient_clip_val": 1.0})
    # an override of either name wins over train_params
    assert build_trainer({"clip": 0.5}, gradient_clip_val=2.0).gradient_clip_val == 2.0
    assert build_trainer({"clip": 0.5}, clip=0).gradient_clip_val is None


def test_own_checkpoint_callback_with_checkpoint_false(tmp_path):
    mine = ModelCheckpoint(dirpath=str(tmp_path), monitor="val_auroc", mode="max")
    trainer = build_trainer({"checkpoint": False}, callbacks=[mine])
    assert trainer.checkpoint_callback is mine
    assert build_trainer({"checkpoint": False}).checkpoint_callback is None


def test_seed_is_applied_when_building():
    build_trainer({"seed": 123})
    first = torch.rand(3)
    build_trainer({"seed": 123})
    assert torch.equal(first, torch.rand(3))


def test_devices_follow_lightning_meaning_in_every_trainer_builder(monkeypatch):
    assert resolve_devices("cpu") == ("cpu", "auto")
    assert resolve_devices(2) == ("gpu", 2)  # Lightning: an int is a number of GPUs
    assert resolve_devices(-1) == ("gpu", -1)
    assert resolve_devices([2]) == ("gpu", [2])  # a list names GPU indices
    assert resolve_devices([0, 3]) == ("gpu", [0, 3])
    assert resolve_devices("auto") == ("auto", "auto")
    assert resolve_devices(4, accelerator="gpu") == ("gpu", 4)  # explicit accelerator: Lightning's meaning
    with pytest.raises(ValueError, match="devices='cuda:0' is not understood"):
        resolve_devices("cuda:0")
    for bad in (0, -2, True, [], [-1]):
        with pytest.raises(ValueError, match="is not understood"):
            resolve_devices(bad)
    # both Trainer builders read devices=2 the same way: two GPUs
    import pytorch_lightning as pl

    from grelu_caduceus.tasks import mlm

    seen = []
    monkeypatch.setattr(pl, "Trainer", lambda **kwargs: seen.append((kwargs["accelerator"], kwargs["devices"])))
    build_trainer({"devices": 2, "checkpoint": False})
    mlm.build_mlm_trainer({"devices": 2, "max_steps": 1}, "unused_dir")
    assert seen == [("gpu", 2), ("gpu", 2)]


def test_fsdp_wraps_caduceus_blocks_and_refuses_cpu():
    from pytorch_lightning.strategies import FSDPStrategy

    strategy = resolve_strategy("fsdp", "gpu", {"sharding_strategy": "SHARD_GRAD_OP"})
    assert isinstance(strategy, FSDPStrategy)
    assert Block in strategy.kwargs["auto_wrap_policy"]._module_classes
    assert strategy.kwargs["use_orig_params"] is True
    assert resolve_strategy("ddp", "gpu") == "ddp"
    with pytest.raises(ValueError, match="strategy='fsdp' needs GPUs"):
        build_trainer({"strategy": "fsdp", "devices": "cpu"})
    with pytest.raises(ValueError, match="fsdp_kwargs are only used with strategy='fsdp'"):
        build_trainer({"strategy": "ddp", "fsdp_kwargs": {"cpu_offload": True}})


# --- train_on_dataset ------------------------------------------------------------------------------


class HeadDtype(Callback):
    """Records the dtype of the head's output in training steps (autocast makes it bf16)."""

    def __init__(self):
        self.dtypes = set()

    def on_train_start(self, trainer, pl_module):
        pl_module.model.head.register_forward_hook(lambda m, i, o: self.dtypes.add(o.dtype) if m.training else None)


def test_bf16_mixed_trains_with_finite_loss(tmp_path):
    model = tiny_model(tmp_path)
    before = copy.deepcopy(model.model.state_dict())
    tr, va = datasets()
    seen = HeadDtype()
    trainer = train_on_dataset(model, tr, va, precision="bf16-mixed", max_steps=3, max_epochs=10, checkpoint=False,
                               callbacks=[seen], **QUIET)
    assert trainer.precision == "bf16-mixed" and trainer.global_step == 3
    assert seen.dtypes == {torch.bfloat16}  # autocast really ran the forward in bf16
    loss = trainer.callback_metrics["train_loss_step"]
    assert torch.isfinite(loss)
    after = model.model.state_dict()
    assert any(not torch.equal(before[k], after[k]) for k in before)
    assert all(torch.isfinite(v).all() for v in after.values() if v.is_floating_point())
    # parameters stay float32 under mixed precision (A_log and D in particular)
    assert all(p.dtype == torch.float32 for p in model.parameters())


def test_overrides_are_recorded_in_the_checkpoint(tmp_path):
    model = tiny_model(tmp_path)
    tr, va = datasets()
    # 3 steps = one epoch, which ends with the validation that writes the best checkpoint
    trainer = train_on_dataset(model, tr, va, max_steps=3, precision="bf16-mixed", seed=7, **QUIET)
    assert model.train_params["precision"] == "bf16-mixed" and model.train_params["max_steps"] == 3
    path = trainer.checkpoint_callback.best_model_path
    assert path.startswith(str(tmp_path))
    saved = torch.load(path, map_location="cpu", weights_only=False)
    assert saved["hyper_parameters"]["train_params"]["precision"] == "bf16-mixed"
    assert saved["hyper_parameters"]["train_params"]["seed"] == 7
    assert saved["data_params"]["train"]["seq_len"] == SEQ_LEN
    assert saved["data_params"]["tasks"]["name"] == ["gata"]


def test_same_seed_same_weights_other_seed_differs(tmp_path):
    tr, va = datasets()
    start = tiny_model(tmp_path)
    results = []
    for seed in (5, 5, 6):
        model = copy.deepcopy(start)
        train_on_dataset(model, tr, va, seed=seed, max_steps=2, checkpoint=False, validate_first=False, **QUIET)
        results.append(model.model.state_dict())
    assert all(torch.equal(results[0][k], results[1][k]) for k in results[0])
    assert any(not torch.equal(results[0][k], results[2][k]) for k in results[0])


def test_step_based_validation_and_max_steps(tmp_path):
    class CountValidations(Callback):
        steps = []

        def on_validation_end(self, trainer, pl_module):
            if not trainer.sanity_checking:
                self.steps.append(trainer.global_step)

    model = tiny_model(tmp_path)
    tr, va = datasets(n_train=24)  # 3 batches per epoch
    counter = CountValidations()
    trainer = train_on_dataset(model, tr, va, max_steps=5, max_epochs=-1, val_check_interval=2, checkpoint=False,
                               validate_first=False, callbacks=[counter], **QUIET)
    assert trainer.global_step == 5
    # every 2 training batches, across the epoch boundary at 3, and at the last step (ValidateOnLastStep)
    assert counter.steps == [2, 4, 5]


def test_checkpoint_false_and_prediction_flag(tmp_path):
    """Two gReLU 1.1.0 failures that train_on_dataset avoids: checkpoint=False raises, and a dataset
    once used for prediction yields sequences without labels."""
    tr, va = datasets()
    model = tiny_model(tmp_path, checkpoint=False)
    with pytest.raises(Exception, match="Checkpoint type must be a bool or dict"):
        model.train_on_dataset(tr, va)
    model.predict_on_dataset(va, num_workers=0)
    assert va.predict is True
    trainer = train_on_dataset(model, tr, va, max_steps=1, **QUIET)
    assert trainer.checkpoint_callback is None and trainer.global_step == 1
    # the first validation pass ran on (sequence, label) pairs again
    assert va.predict is False and isinstance(va[0], tuple)
    assert math.isfinite(float(model.performance["val"]["val_auroc"]))


def test_csv_logger_writes_metrics(tmp_path):
    model = tiny_model(tmp_path, logger="csv", name="csvrun")
    tr, va = datasets()
    trainer = train_on_dataset(model, tr, va, max_steps=2, checkpoint=False, **QUIET)
    metrics = os.path.join(trainer.logger.log_dir, "metrics.csv")
    assert trainer.logger.log_dir.startswith(os.path.join(str(tmp_path), "csvrun"))
    assert "train_loss_step" in open(metrics).readline()


def test_needs_a_labeled_dataset(tmp_path):
    from grelu.data.dataset import SeqDataset

    model = tiny_model(tmp_path)
    tr, va = datasets()
    with pytest.raises(TypeError, match="training dataset is a SeqDataset; gReLU training needs a LabeledSeqDataset"):
        train_on_dataset(model, SeqDataset(["ACGT" * 12]), va)
