"""Workarounds for gReLU 1.1.0 bugs that users of our models run into.

Each function does what the gReLU function of the same name means to do, and says which bug it
avoids:

* :func:`predict_variant_effects` -- gReLU's ``check_reference=True`` raises ``TypeError: 'bool'
  object is not callable`` (the argument shadows the function ``check_reference``).
* :func:`reference_mismatches` -- the reference-allele check itself, as a list (gReLU only warns).
* :func:`marginalize_patterns` -- gReLU's default ``n_shuffles=0`` crashes (empty dataset); here 0
  inserts the patterns into the given sequences unshuffled.
* :func:`set_task` / :func:`change_head` / :func:`tune_on_dataset` -- gReLU's ``tune_on_dataset``
  keeps the old loss and activation when the task changes (a regression head trained with BCE and
  read through a sigmoid), ignores ``final_act_func``, replaces the pooling with none unless
  ``final_pool_func`` is given, builds the new head in float32 on CPU whatever the model's dtype
  and device, and does not record a frozen backbone in model_params.
* :func:`predict_on_dataset` -- gReLU's ``make_predict_loader`` leaves ``dataset.predict = True``
  on a LabeledSeqDataset, so the same dataset later yields no labels in training or testing.
* :func:`load_checkpoint` -- ``load_from_checkpoint`` needs ``weights_only=False`` with
  torch >= 2.6 and our classes registered on ``grelu.model.models`` first.
* :func:`scope_matmul_precision` -- ``LightningModel.train_on_dataset``, ``tune_on_dataset``,
  ``predict_on_dataset``, ``test_on_dataset`` and ``embed_on_dataset`` call
  ``torch.set_float32_matmul_precision("medium")`` process-wide and never restore it; on CPUs with
  AMX that makes every later float32 matmul of the process bfloat16. Installed when gReLU's
  lightning module is imported (see ``_registration``), it scopes the setting to each call.
* :func:`record_checkpoint_params` -- a checkpoint rebuilds its model from model_params alone, so a
  model built from a pretrained folder needs that folder again to reload; installed with the above,
  it records the backbone config in the checkpoint.
"""

from __future__ import annotations

import functools
import inspect
import types
import warnings
from typing import Optional

import pandas as pd
import torch

_KEEP = "keep"


# --- variants --------------------------------------------------------------------------------------


def reference_mismatches(variants: pd.DataFrame, genome, null_string: str = "-") -> list:
    """Index labels of the variants whose ``ref`` allele differs from the genome.

    The package's one reference check (:func:`grelu_caduceus.data.variants.reference_matches`):
    ``pos`` is 1-based at the ref allele's first base (VCF's convention; for single-base refs also
    gReLU's), case ignored; a ``ref`` of ``null_string``, "-" or "." (an insertion) is never a mismatch.

    Args:
        variants: DataFrame with columns chrom, pos, ref (and alt).
        genome: path of a FASTA file or a genomepy genome name (as gReLU's ``genome`` arguments).
    """
    from .data.variants import reference_matches

    checked = variants[variants.ref != null_string]
    return [idx for idx, ok in zip(checked.index, reference_matches(checked, _fasta_genome(genome))) if not ok]


def _fasta_genome(genome):
    """A FastaGenome for a FASTA path, or for a genomepy genome name through gReLU."""
    from pathlib import Path

    from .data.genome import FastaGenome

    if isinstance(genome, FastaGenome):
        return genome
    if not Path(str(genome)).expanduser().is_file():
        from grelu.io.genome import get_genome

        genome = get_genome(str(genome)).genome_file
    return FastaGenome(genome)


def predict_variant_effects(variants: pd.DataFrame, model, check_reference=False, genome="hg38", **kwargs):
    """``grelu.variant.predict_variant_effects`` with a reference check that works.

    Args:
        variants, model, genome, **kwargs: as for gReLU's ``predict_variant_effects`` (devices,
            seq_len, batch_size, num_workers, rc, max_seq_shift, compare_func, return_ad,
            prediction_transform).
        check_reference: False; True or "warn" to warn about variants whose ref allele is not the
            genome's; "raise" to raise a ValueError instead.

    Returns:
        What gReLU returns: an AnnData (return_ad=True) or an array (B, T, L) of effects (or
        (B, 2, T, L) predictions when compare_func is None).
    """
    from grelu.variant import predict_variant_effects as grelu_predict_variant_effects

    if check_reference not in (False, True, "warn", "raise"):
        raise ValueError(f"check_reference must be False, True, 'warn' or 'raise', got {check_reference!r}.")
    if check_reference:
        bad = reference_mismatches(variants, genome)
        if bad:
            message = (f"{len(bad)} variant(s) have a ref allele that differs from the genome at index "
                       f"{bad[:20]}{' ...' if len(bad) > 20 else ''}: check the genome build and that pos is 1-based.")
            if check_reference == "raise":
                raise ValueError(message)
            warnings.warn(message)
    return grelu_predict_variant_effects(variants, model, genome=genome, check_reference=False, **kwargs)


# --- simulation ------------------------------------------------------------------------------------------


def marginalize_patterns(model, patterns, seqs, genome=None, devices="cpu", num_workers=1, batch_size=64,
                         n_shuffles: int = 0, seed=None, prediction_transform=None, rc: bool = False,
                         compare_func=None):
    """``grelu.interpret.simulate.marginalize_patterns`` that also works with ``n_shuffles=0``.

    gReLU's default ``n_shuffles=0`` builds an empty dataset and crashes in ``torch.concat``. Here 0
    means: insert each pattern (centred, replacing bases, as gReLU does) into the given sequences
    themselves, without shuffling; n_shuffles > 0 calls gReLU unchanged.

    Returns:
        As gReLU: (before, after) predictions of shapes (B, S, 1, T, L) and (B, S, P, T, L), or
        compare_func(after, before) of shape (B, S, P, T, L); S = 1 when n_shuffles = 0.
    """
    from grelu.data.dataset import SeqDataset
    from grelu.interpret.simulate import marginalize_patterns as grelu_marginalize_patterns
    from grelu.sequence.format import convert_input_type
    from grelu.sequence.mutate import mutate
    from grelu.utils import get_compare_func, make_list

    if n_shuffles:
        return grelu_marginalize_patterns(model, patterns, seqs, genome=genome, devices=devices,
                                          num_workers=num_workers, batch_size=batch_size, n_shuffles=n_shuffles,
                                          seed=seed, prediction_transform=prediction_transform, rc=rc,
                                          compare_func=compare_func)
    patterns = make_list(patterns)
    backgrounds = make_list(convert_input_type(seqs, "strings", genome=genome))
    variants = [seq for bg in backgrounds for seq in [bg] + [mutate(bg, p, input_type="strings") for p in patterns]]
    model.add_transform(prediction_transform)
    try:
        preds = model.predict_on_dataset(SeqDataset(variants, rc=rc), devices=devices, num_workers=num_workers,
                                         batch_size=batch_size, augment_aggfunc="mean")  # (B * (P + 1), T, L)
    finally:
        model.reset_transform()
    preds = preds.reshape(len(backgrounds), 1, len(patterns) + 1, *preds.shape[1:])
    before, after = preds[:, :, [0]], preds[:, :, 1:]
    if compare_func is None:
        return before, after
    return get_compare_func(compare_func)(after, before)


# --- task and head changes ---------------------------------------------------------------------------


def set_task(model, task: str, loss: Optional[str] = None) -> None:
    """Switch a LightningModel to another task: loss, activation and metrics are rebuilt.

    Args:
        model: a grelu.lightning.LightningModel.
        task: "binary", "multiclass" or "regression".
        loss: the loss name ("bce", "mse", "poisson", "poisson_multinomial"); None: the task's
            usual one (bce for binary, mse for regression, cross-entropy for multiclass).
    """
    default_loss = {"binary": "bce", "regression": "mse", "multiclass": "ce"}
    if task not in default_loss:
        raise ValueError(f"task must be 'binary', 'multiclass' or 'regression', got {task!r}.")
    model.train_params["task"] = task
    model.train_params["loss"] = (loss or default_loss[task]).lower()
    # The old activation may be a registered module (nn.Identity, nn.Softmax) that a plain function
    # (torch.sigmoid) cannot replace by assignment, so remove it first.
    for name in ("activation", "loss"):
        if hasattr(model, name):
            delattr(model, name)
    model.initialize_loss()
    model.initialize_activation()
    model.initialize_metrics()


def change_head(model, n_tasks: int, final_pool_func=_KEEP, final_act_func=None) -> None:
    """Replace the model's head with a new ``ConvHead`` (gReLU's ``change_head``, fixed).

    The new head takes the old head's dtype and device, keeps the old pooling unless
    ``final_pool_func`` is given (gReLU's default None would switch to per-position output), and
    ``final_act_func`` is used and recorded in model_params, so a reloaded checkpoint rebuilds the
    same head.
    """
    from grelu.model.heads import ConvHead

    old = model.model.head
    if final_pool_func == _KEEP:
        final_pool_func = model.model_params.get("final_pool_func", getattr(old, "pool_func", None))
    ref = next(old.parameters(), None)
    new = ConvHead(n_tasks=n_tasks, in_channels=old.in_channels, act_func=final_act_func,
                   pool_func=final_pool_func, norm=False)
    if ref is not None:
        new = new.to(device=ref.device, dtype=ref.dtype)
    model.model.head = new
    model.model_params.update(n_tasks=n_tasks, final_pool_func=final_pool_func, final_act_func=final_act_func)
    model.initialize_metrics()


def tune_on_dataset(model, train_dataset, val_dataset, task: Optional[str] = None, loss: Optional[str] = None,
                    final_act_func=None, final_pool_func=_KEEP, freeze_embedding: bool = False, **train_overrides):
    """Fine-tune on a new dataset with a new head, optionally for another task.

    Args:
        model: a LightningModel (e.g. a CaduceusModel trained on another task, or a
            CaduceusPretrainedModel).
        train_dataset, val_dataset: gReLU LabeledSeqDataset objects.
        task, loss: the new task and loss (see :func:`set_task`); None keeps the current ones.
        final_act_func, final_pool_func: of the new head (see :func:`change_head`); the pooling is
            kept by default.
        freeze_embedding: train the head only; for models with a ``freeze`` argument
            (CaduceusPretrainedModel) it is recorded so a reloaded checkpoint stays frozen.
        **train_overrides: train_params for this run (lr, max_epochs, max_steps, precision, ...),
            passed to :func:`grelu_caduceus.training.train_on_dataset`.

    Returns:
        The Lightning Trainer after fitting.
    """
    from .training import train_on_dataset

    model.base_data_params = model.data_params.copy()
    model.data_params = {}
    if task is not None or loss is not None:
        set_task(model, task or model.train_params["task"], loss)
    change_head(model, train_dataset.n_tasks, final_pool_func=final_pool_func, final_act_func=final_act_func)
    if freeze_embedding:
        model.model.embedding.requires_grad_(False)
        if "freeze" in inspect.signature(type(model.model)).parameters:
            model.model_params["freeze"] = True
    return train_on_dataset(model, train_dataset, val_dataset, **train_overrides)


# --- prediction and loading -----------------------------------------------------------------------------


def predict_on_dataset(model, dataset, **kwargs):
    """``model.predict_on_dataset(dataset, **kwargs)`` that leaves ``dataset.predict`` as it was, so
    a LabeledSeqDataset still yields (sequence, label) pairs for training and testing afterwards."""
    had_flag = hasattr(dataset, "predict")
    before = getattr(dataset, "predict", None)
    try:
        return model.predict_on_dataset(dataset, **kwargs)
    finally:
        if had_flag:
            dataset.predict = before


def load_checkpoint(path, map_location="cpu", **kwargs):
    """A gReLU LightningModel from a checkpoint of one of our models, in eval mode.

    Registers our classes with gReLU first and passes ``weights_only=False`` (gReLU checkpoints
    hold numpy arrays, which torch >= 2.6 refuses by default). A missing, truncated or corrupt file
    raises :class:`grelu_caduceus.checkpoint_files.CheckpointFileError` (see ``read_checkpoint``).
    """
    from .checkpoint_files import load_lightning_checkpoint

    return load_lightning_checkpoint(path, map_location=map_location, **kwargs).eval()


# --- float32 matmul precision ----------------------------------------------------------------------------

# LightningModel methods that set the precision, and whether they train
PRECISION_SETTING_METHODS = {"train_on_dataset": True, "tune_on_dataset": True, "predict_on_dataset": False,
                             "test_on_dataset": False, "embed_on_dataset": False}


class _TorchSeenByGrelu(types.ModuleType):
    """``torch`` as gReLU's lightning module sees it, except that its process-wide
    ``set_float32_matmul_precision("medium")`` calls do nothing: the method wrappers of
    :func:`scope_matmul_precision` decide the precision of each call and restore it afterwards."""

    def __init__(self):
        super().__init__("torch")

    def __getattr__(self, name):
        return getattr(torch, name)

    @staticmethod
    def set_float32_matmul_precision(precision):  # noqa: ARG004 (gReLU's request, decided per call)
        return None


def _is_ours(model) -> bool:
    return type(getattr(model, "model", None)).__module__.startswith("grelu_caduceus.")


def _on_cuda(accelerator) -> bool:
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def call_precision(model, method: str, bound: inspect.BoundArguments) -> Optional[str]:
    """The float32 matmul precision for one call of a LightningModel method; None keeps the caller's.

    Reduced precision (TF32) only ever applies on CUDA. Our models use it only for training and only
    where ``train_params["matmul_precision"]`` asks ("high" or "medium"); gReLU's own models keep
    gReLU's choice ("medium", i.e. TF32) on CUDA, and none of them changes CPU precision.
    """
    training = PRECISION_SETTING_METHODS[method]
    if training:
        accelerator = model.parse_devices(model.train_params.get("devices", "cpu"))[0]
    elif method == "embed_on_dataset":
        device = bound.arguments.get("device", "cpu")
        accelerator = "cpu" if str(device) == "cpu" else "gpu"
    else:
        accelerator = model.parse_devices(bound.arguments.get("devices", "cpu"))[0]
    if not _on_cuda(accelerator):
        return None
    if _is_ours(model):
        return model.train_params.get("matmul_precision") if training else None
    return model.train_params.get("matmul_precision") or "medium"


def _precision_scoped(method_name: str, method):
    signature = inspect.signature(method)

    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        from .core.precision import float32_matmul_precision

        bound = signature.bind(self, *args, **kwargs)
        bound.apply_defaults()
        with float32_matmul_precision(call_precision(self, method_name, bound)):
            return method(self, *args, **kwargs)

    wrapper._grelu_caduceus_scoped = True
    return wrapper


def scope_matmul_precision(lightning_module) -> None:
    """Make gReLU's LightningModel leave float32 matmul precision as its caller set it.

    ``lightning_module`` is ``grelu.lightning``: its ``torch.set_float32_matmul_precision`` calls are
    dropped, and each method of :data:`PRECISION_SETTING_METHODS` runs under the precision
    :func:`call_precision` picks, restoring every precision setting on return. Idempotent.
    """
    if not isinstance(lightning_module.__dict__.get("torch"), _TorchSeenByGrelu):
        lightning_module.torch = _TorchSeenByGrelu()
    cls = lightning_module.LightningModel
    for name in PRECISION_SETTING_METHODS:
        method = cls.__dict__.get(name)
        if method is not None and not getattr(method, "_grelu_caduceus_scoped", False):
            setattr(cls, name, _precision_scoped(name, method))


# --- self-contained checkpoints ---------------------------------------------------------------------


def _recording_checkpoint_params(method):
    @functools.wraps(method)
    def on_save_checkpoint(self, checkpoint):
        method(self, checkpoint)
        extra = getattr(getattr(self, "model", None), "checkpoint_params", None)
        hparams = checkpoint.get("hyper_parameters")
        if callable(extra) and hparams is not None and "model_params" in hparams:
            # new dicts: the hyper-parameters in the checkpoint alias the live model_params
            checkpoint["hyper_parameters"] = {**hparams, "model_params": {**hparams["model_params"], **extra()}}

    on_save_checkpoint._grelu_caduceus_records = True
    return on_save_checkpoint


def record_checkpoint_params(lightning_module) -> None:
    """Make checkpoints of gReLU's LightningModel self-contained for our pretrained models.

    gReLU rebuilds a model from the model_params its checkpoint records, so a model built from a
    pretrained folder would read that folder again on every reload. A model class of ours that
    defines ``checkpoint_params()`` (CaduceusPretrainedModel, HyenaDNAPretrainedModel: the backbone
    config) has those entries added to the checkpoint's model_params (the live model_params stay as
    given); the weights come from the state dict. Idempotent.
    """
    cls = lightning_module.LightningModel
    method = cls.__dict__["on_save_checkpoint"]
    if not getattr(method, "_grelu_caduceus_records", False):
        cls.on_save_checkpoint = _recording_checkpoint_params(method)


__all__ = [
    "change_head",
    "load_checkpoint",
    "marginalize_patterns",
    "predict_on_dataset",
    "predict_variant_effects",
    "record_checkpoint_params",
    "reference_mismatches",
    "scope_matmul_precision",
    "set_task",
    "tune_on_dataset",
]
