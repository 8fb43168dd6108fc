"""A Lightning Trainer built from gReLU ``train_params``, with the settings gReLU 1.1.0 drops.

gReLU's ``LightningModel.train_on_dataset`` builds its Trainer from ``max_epochs``, ``devices``,
``logger``, ``checkpoint``, ``clip`` and ``accumulate_grad_batches`` only; ``precision``,
``strategy``, ``max_steps``, ``val_check_interval`` and ``seed`` in ``train_params`` are kept but
ignored. :func:`build_trainer` reads all of them (see :data:`TRAINER_DEFAULTS`), and
:func:`train_on_dataset` is gReLU's training loop (first validation pass, data parameters in the
checkpoint, gReLU's own dataloaders) on that Trainer::

    from grelu_caduceus.training import train_on_dataset
    model = LightningModel(model_params={"model_type": "CaduceusModel", ...},
                           train_params={"task": "binary", "precision": "bf16-mixed",
                                         "strategy": "ddp", "devices": [0, 1], "max_steps": 10_000})
    trainer = train_on_dataset(model, train_ds, val_ds)

Keyword overrides win over ``train_params`` (``train_on_dataset(model, tr, va, max_steps=10)``)
and are written into ``model.train_params``, so the checkpoint records what was used.
"""

from __future__ import annotations

import csv
import difflib
import logging
from datetime import datetime
from pathlib import Path

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import EarlyStopping, ModelCheckpoint
from pytorch_lightning.loggers.csv_logs import ExperimentWriter
from pytorch_lightning.loggers.logger import rank_zero_experiment

from .core.precision import float32_matmul_precision

# Trainer settings read from train_params, with their defaults. The first block are gReLU's own
# keys (same defaults as grelu.lightning.default_train_params); the rest are the ones gReLU ignores.
TRAINER_DEFAULTS = {
    # gReLU keys
    "devices": "cpu",  # "cpu", "auto", a number of GPUs or a list of GPU indices (Lightning's meaning)
    "max_epochs": 1,
    "logger": None,  # None | "csv" | "wandb" | "tensorboard" | a Lightning Logger
    "save_dir": ".",
    "checkpoint": True,  # True (best val_loss + last) | False | dict of ModelCheckpoint arguments
    "clip": 0,  # gradient clipping value (gradient_clip_val)
    "accumulate_grad_batches": 1,
    "early_stopping": False,
    "patience": 5,
    "monitor": "val_loss",
    "mode": "min",
    # keys gReLU 1.1.0 does not pass to its Trainer
    "accelerator": None,  # None: from devices; else passed as is, with devices in Lightning's meaning
    "num_nodes": 1,
    "precision": None,  # None (32-true) | "bf16-mixed" | "16-mixed" | "bf16-true" | ...
    # None: float32 matmuls as the caller set them; "high" | "medium": allow TF32 on CUDA while
    # training (never on CPU, where oneDNN would compute float32 matmuls in bfloat16 on AMX)
    "matmul_precision": None,
    "strategy": "auto",  # "auto" | "ddp" | "fsdp" | any Lightning strategy name or object
    "max_steps": -1,
    "max_time": None,  # e.g. "00:01:30:00" or {"minutes": 5}: stop after this wall time
    "val_check_interval": None,  # float: fraction of an epoch; int: every n training batches
    "check_val_every_n_epoch": 1,
    "limit_train_batches": None,
    "limit_val_batches": None,
    "gradient_clip_algorithm": "norm",
    "seed": None,  # seeds python, numpy and torch (and dataloader workers) when the trainer is built
    "deterministic": None,
    "log_every_n_steps": 50,
    "enable_progress_bar": True,
    "enable_model_summary": True,
    "num_sanity_val_steps": 2,
    "callbacks": None,  # extra Lightning callbacks
    "fsdp_kwargs": None,  # extra FSDPStrategy arguments for strategy="fsdp"
    "trainer_kwargs": None,  # any other pl.Trainer arguments, passed last
}

# Keys gReLU's LightningModel reads from train_params (not Trainer settings, but valid overrides).
GRELU_TRAIN_KEYS = {
    "task", "loss", "lr", "optimizer", "batch_size", "num_workers", "name", "pos_weight",
    "class_weights", "total_weight",
}


def _settings(train_params: dict, overrides: dict) -> dict:
    """Trainer settings: defaults < train_params < overrides; unknown override keys are errors."""
    known = set(TRAINER_DEFAULTS) | GRELU_TRAIN_KEYS | {"gradient_clip_val"}
    unknown = [k for k in overrides if k not in known]
    if unknown:
        hints = {k: difflib.get_close_matches(k, sorted(known), n=1) for k in unknown}
        hint = "; ".join(f"{k!r}" + (f" (did you mean {h[0]!r}?)" if h else "") for k, h in hints.items())
        raise TypeError(f"Unknown training setting {hint}. Known settings: {sorted(known)}.")
    params = {**TRAINER_DEFAULTS, **train_params, **overrides}
    # Lightning's name for gReLU's "clip" is an alias; overrides win over train_params, and within
    # one of them two different non-zero values are ambiguous.
    for layer in (train_params, overrides):
        alias, clip = layer.get("gradient_clip_val"), layer.get("clip")
        if alias is not None:
            if clip not in (None, 0) and clip != alias:
                raise ValueError(
                    f"clip={clip} and gradient_clip_val={alias} disagree: set only one "
                    "(clip is gReLU's name for gradient_clip_val)."
                )
            params["clip"] = alias
        elif "clip" in layer:
            params["clip"] = clip
    return params


def resolve_devices(devices, accelerator=None):
    """(accelerator, devices) for the Trainer, with ``devices`` in Lightning's meaning.

    "cpu" (or None) -> one CPU process; "auto" -> every available accelerator; an int n -> n GPUs
    (-1: all of them); a list -> those GPU indices (``[2]`` is GPU number 2). With an explicit
    ``accelerator`` the devices are passed unchanged (``accelerator="cpu", devices=2`` is two CPU
    processes). Note that gReLU's own ``LightningModel.parse_devices`` reads an int as a GPU index;
    every Trainer of this package reads it as a count, as Lightning does.
    """
    if accelerator is not None:
        return accelerator, ("auto" if devices in (None, "cpu") else devices)
    if devices in ("cpu", None):
        return "cpu", "auto"
    if devices == "auto":
        return "auto", "auto"
    if isinstance(devices, int) and not isinstance(devices, bool) and (devices > 0 or devices == -1):
        return "gpu", devices
    if isinstance(devices, (list, tuple)) and devices and all(
            isinstance(d, int) and not isinstance(d, bool) and d >= 0 for d in devices):
        return "gpu", list(devices)
    raise ValueError(
        f"devices={devices!r} is not understood: use 'cpu', 'auto', a number of GPUs (-1: all) or a list of "
        "GPU indices such as [0, 2] (or set accelerator to pass devices to Lightning unchanged)."
    )


def training_precision(params: dict):
    """The float32 matmul precision a training run asks for (None: the caller's), checked.

    Reduced precision ("high"/"medium", TF32) applies only when the run is on CUDA: on CPU it would
    make oneDNN compute float32 matmuls in bfloat16 (CPUs with AMX), so it is ignored there.
    """
    from .core.precision import PRECISIONS

    asked = params.get("matmul_precision")
    if asked is not None and asked not in PRECISIONS:
        raise ValueError(f"matmul_precision must be None or one of {', '.join(PRECISIONS)}, got {asked!r}.")
    accelerator, _ = resolve_devices(params.get("devices", "cpu"), params.get("accelerator"))
    on_cuda = accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())
    return asked if on_cuda else None


def fsdp_block_classes() -> set:
    """Module classes that FSDP shards as units: one Caduceus residual block each."""
    from .core.caduceus import Block

    return {Block}


def resolve_strategy(strategy, accelerator, fsdp_kwargs=None):
    """The Trainer's strategy: strings pass through, except "fsdp", which becomes an FSDPStrategy
    that wraps each Caduceus block (``use_orig_params`` keeps the weight-tied BiMamba projections
    and frozen parameters working). FSDP needs GPUs; on CPU this raises a clear error."""
    if not (isinstance(strategy, str) and strategy.startswith("fsdp")):
        if fsdp_kwargs:
            raise ValueError(f"fsdp_kwargs are only used with strategy='fsdp', not strategy={strategy!r}.")
        return strategy
    if accelerator == "cpu":
        raise ValueError(
            "strategy='fsdp' needs GPUs but the devices are on CPU: set devices to GPU indices "
            "(e.g. [0, 1]) or use strategy='ddp' (which also runs on CPU)."
        )
    from pytorch_lightning.strategies import FSDPStrategy

    kwargs = {"auto_wrap_policy": fsdp_block_classes(), "use_orig_params": True}
    kwargs.update(fsdp_kwargs or {})
    return FSDPStrategy(**kwargs)


log = logging.getLogger(__name__)


# --------------------------------------------------------------------------- callbacks
class ValidateOnLastStep(pl.Callback):
    """Validate when training stops at ``max_steps`` between two scheduled validations.

    A run shorter than one epoch would otherwise never validate, so ``val_loss`` is never seen and
    no best checkpoint is written. Lightning validates when ``trainer.should_stop`` is set at the end
    of a training batch (as early stopping does); this sets it on the last step.
    """

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
        if 0 < trainer.max_steps <= trainer.global_step:
            trainer.should_stop = True


class PrintValidationMetrics(pl.Callback):
    """One console line per validation: ``validation at step 120 (epoch 1): val_loss 0.6812 ...``."""

    def __init__(self, digits: int = 4):
        self.digits = digits

    def on_validation_end(self, trainer, pl_module):
        # Lightning's rank-zero logger: shown on the console (Lightning gives it a handler) and, under
        # Hydra, also written to the run's train.log
        from pytorch_lightning.utilities.rank_zero import rank_zero_info

        if trainer.sanity_checking:
            return
        metrics = {k: v for k, v in trainer.callback_metrics.items() if k.startswith("val_")}
        if not metrics:
            return
        shown = "  ".join(f"{k} {float(v):.{self.digits}g}" for k, v in sorted(metrics.items()))
        where = f" at step {trainer.global_step} (epoch {trainer.current_epoch})" if trainer.state.fn == "fit" else ""
        rank_zero_info(f"validation{where}: {shown}")


class SaveOnInterrupt(pl.Callback):
    """Writes ``<dirpath>/last.ckpt`` when training stops on an exception or Ctrl-C (so that an
    interrupted run resumes where it stopped, not at the last periodic checkpoint) and, on Ctrl-C,
    says how to resume.

    Not Lightning's OnExceptionCheckpoint (checked with Lightning 2.6): with one of those among the
    callbacks, ``fit(ckpt_path=None)`` becomes ``ckpt_path="last"`` (checkpoint_connector.
    _parse_ckpt_path), which also picks up ModelCheckpoint's ``last.ckpt`` in the run folder, so
    ``trainer.resume=null`` would resume instead of starting afresh (tests/test_run_folder.py::
    test_resume_null_starts_afresh_in_the_same_folder fails with it); there is no public value of
    ckpt_path that means "no checkpoint". Its teardown also deletes its file after a normal end,
    which here is the run's last.ckpt.

    Args:
        dirpath: the run's checkpoint folder.
        resume_hint: how to resume, e.g. "run the same command again with hydra.run.dir=RUN".
    """

    def __init__(self, dirpath, resume_hint: str | None = None):
        self.ckpt_path = str(Path(dirpath) / "last.ckpt")
        self.resume_hint = resume_hint or "pass it as the checkpoint to resume from"

    def on_exception(self, trainer, pl_module, exception):
        if trainer.global_step == 0:
            return  # nothing trained yet: keep whatever last.ckpt there is
        trainer.save_checkpoint(self.ckpt_path, weights_only=False)
        if isinstance(exception, KeyboardInterrupt) and trainer.is_global_zero:
            # a log record, so that a run's train.log has it too (and the console, through its handler)
            logging.getLogger(__name__).warning(f"Interrupted at step {trainer.global_step}: saved {self.ckpt_path}. "
                                                f"To resume, {self.resume_hint}.")


class _StepBoundedBar:
    """Progress-bar behaviour for runs bounded by ``max_steps``: the bar counts the batches this epoch
    will really run (Lightning caps them only when max_epochs is -1: a 20-step run showed "20/512"),
    and the description drops the epoch limit that will not be reached ("Epoch 0/9")."""

    @property
    def total_train_batches(self):
        trainer = self.trainer
        total = trainer.num_training_batches
        if trainer.max_steps is not None and trainer.max_steps > 0:
            left = (trainer.max_steps - trainer.global_step) * max(1, int(trainer.accumulate_grad_batches or 1))
            return min(total, max(left, 0))
        return total

    def _get_train_description(self, current_epoch: int) -> str:
        text = super()._get_train_description(current_epoch)
        trainer = self.trainer
        if trainer.max_steps is not None and trainer.max_steps > 0 and trainer.max_epochs is not None:
            text = text.replace(f"Epoch {current_epoch}/{trainer.max_epochs - 1}", f"Epoch {current_epoch}")
        return text


def step_bounded_progress_bar():
    """Lightning's own default bar (rich when installed, else tqdm) with :class:`_StepBoundedBar`."""
    from pytorch_lightning.callbacks import RichProgressBar, TQDMProgressBar
    from pytorch_lightning.utilities.imports import _RICH_AVAILABLE

    base = RichProgressBar if _RICH_AVAILABLE else TQDMProgressBar
    return type(f"StepBounded{base.__name__}", (_StepBoundedBar, base), {})()


def run_folder_checkpoint(ckpt_dir, **kwargs) -> ModelCheckpoint:
    """A ModelCheckpoint writing fixed names into a run folder (``best``, ``last``, ``step{step}``):
    a resumed run overwrites them instead of adding ``last-v1.ckpt`` copies."""
    return ModelCheckpoint(dirpath=str(ckpt_dir), enable_version_counter=False, auto_insert_metric_name=False,
                           **kwargs)


# --------------------------------------------------------------------------- loggers
class _AppendingWriter(ExperimentWriter):
    """Lightning's CSV writer, except that an existing metrics.csv is continued, not deleted."""

    def _check_log_dir_exists(self) -> None:
        if self._fs.isfile(self.metrics_file_path):
            with self._fs.open(self.metrics_file_path, "r", newline="") as file:
                self.metrics_keys = sorted(next(csv.reader(file), []))


class RunFolderCSVLogger(pl.loggers.CSVLogger):
    """``<run>/logs/metrics.csv``; with ``resuming=True`` the rows of the earlier run are kept and
    the resumed run's rows follow them (Lightning's CSVLogger deletes the file)."""

    def __init__(self, out_dir, resuming: bool = False):
        super().__init__(str(out_dir), name="logs", version="")
        self.resuming = resuming

    @property
    @rank_zero_experiment
    def experiment(self):
        if self._experiment is None and self.resuming:
            self._fs.makedirs(self.root_dir, exist_ok=True)
            self._experiment = _AppendingWriter(log_dir=self.log_dir)
        return super().experiment


def run_folder_logger(kind, out_dir, resuming: bool = False, wandb_project: str = "grelu-caduceus"):
    """The logger of a run folder: "csv" (logs/metrics.csv), "wandb" or None."""
    if kind == "csv":
        return RunFolderCSVLogger(Path(out_dir), resuming=resuming)
    if kind == "wandb":
        return pl.loggers.WandbLogger(save_dir=str(out_dir), project=wandb_project)
    if kind in (None, False):
        return False
    raise ValueError(f"logger={kind!r} is not supported here: use 'csv', 'wandb' or None.")


def build_callbacks(params: dict) -> list:
    """Checkpointing and early stopping as gReLU sets them up, plus ``params["callbacks"]``.

    ``checkpoint``: True keeps the best model by val_loss and the last one (gReLU's default), a dict
    gives ModelCheckpoint's arguments, False turns checkpointing off (gReLU 1.1.0 raises on False).
    """
    checkpoint = params["checkpoint"]
    if checkpoint is True:
        callbacks = [ModelCheckpoint(monitor="val_loss", mode="min", save_last=True)]
    elif isinstance(checkpoint, dict):
        callbacks = [ModelCheckpoint(**checkpoint)]
    elif checkpoint is False or checkpoint is None:
        callbacks = []
    else:
        raise ValueError(f"checkpoint must be True, False or a dict of ModelCheckpoint arguments, got {checkpoint!r}.")
    if params["early_stopping"]:
        callbacks.append(EarlyStopping(monitor=params["monitor"], patience=params["patience"], mode=params["mode"]))
    callbacks += [ValidateOnLastStep(), PrintValidationMetrics()]
    return callbacks + list(params["callbacks"] or [])


def build_logger(params: dict):
    """A Lightning logger from ``logger`` ("csv", "wandb", "tensorboard", None or a Logger object),
    writing under ``save_dir`` with run ``name`` (a timestamp by default, as in gReLU)."""
    logger = params["logger"]
    if logger is None or logger is False:
        return False
    if not isinstance(logger, str):
        return logger  # a Logger instance (or a list of them)
    name = params.get("name") or datetime.now().strftime("%Y_%d_%m_%H_%M")
    if logger == "csv":
        return pl.loggers.CSVLogger(save_dir=params["save_dir"], name=name)
    if logger == "tensorboard":
        return pl.loggers.TensorBoardLogger(save_dir=params["save_dir"], name=name)
    if logger == "wandb":
        return pl.loggers.WandbLogger(name=name, save_dir=params["save_dir"], log_model=True)
    raise ValueError(f"logger={logger!r} is not supported: use None, 'csv', 'wandb', 'tensorboard' or a Logger.")


def build_trainer(train_params: dict, **overrides) -> pl.Trainer:
    """A Lightning Trainer from gReLU-style ``train_params`` (see :data:`TRAINER_DEFAULTS`).

    Reads precision, strategy ("ddp", "fsdp", ...), devices/accelerator/num_nodes, max_epochs,
    max_steps, max_time, val_check_interval, accumulate_grad_batches, clip (gradient_clip_val),
    seed, logger/save_dir/name, checkpoint and early stopping, extra callbacks and trainer_kwargs.
    Keys that are not Trainer settings (lr, task, ...) are ignored. ``overrides`` win over
    ``train_params``; ``train_params`` itself is not modified.

    An int ``val_check_interval`` counts training batches across epoch boundaries (step-based
    validation, ``check_val_every_n_epoch=None``), as for long single-pass pretraining.
    """
    p = _settings(train_params, overrides)
    if p["seed"] is not None:
        pl.seed_everything(int(p["seed"]), workers=True)
    accelerator, devices = resolve_devices(p["devices"], p["accelerator"])
    val_check_interval = p["val_check_interval"]
    step_based_validation = isinstance(val_check_interval, int) and not isinstance(val_check_interval, bool)
    callbacks = build_callbacks(p)
    if p["enable_progress_bar"] and not any(isinstance(c, pl.callbacks.ProgressBar) for c in callbacks):
        callbacks.append(step_bounded_progress_bar())
    kwargs = dict(
        accelerator=accelerator,
        devices=devices,
        num_nodes=p["num_nodes"],
        strategy=resolve_strategy(p["strategy"], accelerator, p["fsdp_kwargs"]),
        max_epochs=p["max_epochs"],
        max_steps=p["max_steps"],
        max_time=p["max_time"],
        val_check_interval=val_check_interval,
        check_val_every_n_epoch=None if step_based_validation else p["check_val_every_n_epoch"],
        limit_train_batches=p["limit_train_batches"],
        limit_val_batches=p["limit_val_batches"],
        accumulate_grad_batches=p["accumulate_grad_batches"],
        gradient_clip_val=p["clip"] or None,
        gradient_clip_algorithm=p["gradient_clip_algorithm"],
        deterministic=p["deterministic"],
        logger=build_logger(p),
        callbacks=callbacks,
        # Lightning refuses ModelCheckpoint callbacks when checkpointing is off (checkpoint=False
        # with a user's own ModelCheckpoint in callbacks)
        enable_checkpointing=any(isinstance(c, ModelCheckpoint) for c in callbacks),
        default_root_dir=p["save_dir"],
        log_every_n_steps=p["log_every_n_steps"],
        enable_progress_bar=p["enable_progress_bar"],
        enable_model_summary=p["enable_model_summary"],
        num_sanity_val_steps=p["num_sanity_val_steps"],
    )
    if p["precision"] is not None:
        kwargs["precision"] = p["precision"]
    kwargs.update(p["trainer_kwargs"] or {})
    return pl.Trainer(**kwargs)


def _check_labeled(dataset, role: str) -> None:
    from grelu.data.dataset import LabeledSeqDataset

    if not isinstance(dataset, LabeledSeqDataset):
        raise TypeError(
            f"The {role} dataset is a {type(dataset).__name__}; gReLU training needs a LabeledSeqDataset "
            "(or DFSeqDataset, BigWigSeqDataset, AnnDataSeqDataset), which yields (sequence, label) pairs."
        )
    # gReLU's make_predict_loader sets dataset.predict = True and never resets it: a dataset used
    # for prediction would then yield sequences without labels.
    dataset.predict = False


def train_on_dataset(model, train_dataset, val_dataset, checkpoint_path=None, validate_first: bool = True,
                     **overrides) -> pl.Trainer:
    """gReLU's ``LightningModel.train_on_dataset`` on a Trainer from :func:`build_trainer`.

    Args:
        model: a grelu.lightning.LightningModel (e.g. with model_type "CaduceusModel").
        train_dataset, val_dataset: gReLU LabeledSeqDataset objects (or subclasses).
        checkpoint_path: resume training (optimizer state included) from this checkpoint.
        validate_first: run one validation pass before training, as gReLU does (skipped when resuming).
        **overrides: train_params entries for this run (precision="bf16-mixed", max_steps=100, lr=...);
            they are written into ``model.train_params`` so the checkpoint records them.

    Returns:
        The Lightning Trainer after fitting.
    """
    import grelu

    _check_labeled(train_dataset, "training")
    _check_labeled(val_dataset, "validation")
    _settings(model.train_params, overrides)  # validates the override names before anything changes
    model.train_params.update(overrides)
    trainer = build_trainer(model.train_params)
    train_loader = model.make_train_loader(train_dataset)
    val_loader = model.make_test_loader(val_dataset)
    if checkpoint_path is None and validate_first:
        trainer.validate(model=model, dataloaders=val_loader)
        model.val_metrics.reset()

    # Data parameters travel in the checkpoint (gReLU reads data_params["train"]["seq_len"], tasks).
    model.data_params["tasks"] = train_dataset.tasks.reset_index(names="name").to_dict(orient="list")
    model.data_params["train"] = dict(model._get_dataset_attrs(train_dataset))
    model.data_params["val"] = dict(model._get_dataset_attrs(val_dataset))
    model.train_params["grelu_version"] = grelu.__version__

    fit(trainer, model, train_loader, val_loader, ckpt_path=checkpoint_path)
    return trainer


def fit(trainer, model, train_loader, val_loader=None, ckpt_path=None, corrupt_hint: str | None = None) -> None:
    """``trainer.fit``, the way every training run of the package calls it.

    Under the run's float32 matmul precision (:func:`training_precision`), and, when resuming from
    ``ckpt_path``: a truncated or corrupt file is one clear error (with ``corrupt_hint``, how to
    resume instead) before Lightning reads it, and it is read with ``weights_only=False``, since
    gReLU checkpoints hold numpy arrays (``performance``) that weights-only loading refuses.
    """
    if ckpt_path is not None:
        from .checkpoint_files import DEFAULT_HINT, read_checkpoint

        read_checkpoint(ckpt_path, hint=corrupt_hint or DEFAULT_HINT)
    with float32_matmul_precision(training_precision(model.train_params)):
        trainer.fit(model, train_loader, val_loader, ckpt_path=ckpt_path,
                    weights_only=False if ckpt_path is not None else None)


__all__ = [
    "TRAINER_DEFAULTS",
    "PrintValidationMetrics",
    "RunFolderCSVLogger",
    "SaveOnInterrupt",
    "ValidateOnLastStep",
    "build_callbacks",
    "build_logger",
    "build_trainer",
    "fit",
    "fsdp_block_classes",
    "resolve_devices",
    "resolve_strategy",
    "run_folder_checkpoint",
    "run_folder_logger",
    "train_on_dataset",
    "training_precision",
]
