"""The inference layer: loading a trained model (a gReLU checkpoint of ours or an exported folder),
conjoining, task names and output labels, and the forward pass on one-hot batches.

:mod:`grelu_caduceus.predict`, :mod:`grelu_caduceus.kipoi.export`, the Kipoi shims and the command
line all load and run models through these functions, so they give the same numbers.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint_files import (DEFAULT_HINT, CheckpointFileError, checkpoint_model_params, load_lightning_checkpoint,
                               read_checkpoint, resolve_run_folder)

CONJOIN_CHOICES = ("auto", True, False)
# The folder layout written by ``grelu-caduceus export-kipoi`` (see grelu_caduceus.kipoi.export)
FORMAT = "grelu-caduceus-kipoi/1"
SPEC_FILE = "model.json"
WEIGHTS_FILE = "model.safetensors"
BACKBONE_DIR = "backbone"


class PredictError(ValueError):
    """A user mistake in a prediction request (missing model, wrong intervals, ...)."""


# --------------------------------------------------------------------------- exported folders
class ExportError(ValueError):
    """A user mistake when exporting (bad checkpoint, existing folder, example files ...)."""


def _weights_dir(folder: Path) -> Path:
    for candidate in (folder / "weights", folder):
        if (candidate / SPEC_FILE).is_file():
            return candidate
    raise ExportError(
        f"{folder} is neither an exported model (no weights/{SPEC_FILE}, as written by export-kipoi) nor a "
        "training run folder (no checkpoints/best.ckpt or last.ckpt): give a .ckpt file as --model, or a "
        "run folder such as runs/NAME (hydra.run.dir of `grelu-caduceus train`)."
    )


def read_spec(folder: str | os.PathLike) -> dict:
    """The parsed ``weights/model.json`` of an exported folder (or of the weights folder itself)."""
    spec = json.loads((_weights_dir(Path(folder)) / SPEC_FILE).read_text())
    if spec.get("format") != FORMAT:
        raise ExportError(f"{folder}: unsupported export format {spec.get('format')!r} (this version reads {FORMAT}).")
    return spec


def load_exported(folder: str | os.PathLike):
    """Rebuild the LightningModel of an exported folder, in eval mode.

    Args:
        folder: the export folder (or its ``weights/`` sub-folder).

    Returns:
        ``grelu.lightning.LightningModel`` with the exported weights; ``data_params`` holds the task
        names and the sequence length, so :mod:`grelu_caduceus.predict` treats it like a checkpoint.
    """
    import grelu_caduceus  # noqa: F401  (registers our model classes with gReLU)
    from grelu.lightning import LightningModel
    from safetensors.torch import load_file

    from .core.checkpoint import load_state_dict_tied

    weights = _weights_dir(Path(folder).expanduser().resolve())
    spec = read_spec(weights)
    model_params = dict(spec["model_params"])
    relative_backbone = model_params.get("pretrained_path")
    if relative_backbone is not None:
        model_params["pretrained_path"] = str(weights / relative_backbone)
    lm = LightningModel(model_params=model_params, train_params=dict(spec["train_params"]))
    load_state_dict_tied(lm.model, load_file(str(weights / WEIGHTS_FILE)), strict=True)
    if relative_backbone is not None:
        lm.model_params["pretrained_path"] = relative_backbone  # keep the folder relocatable
    lm.data_params = {"tasks": {"name": list(spec["tasks"])}, "train": {"seq_len": spec["seq_len"]}}
    if "conjoin" in model_params:
        set_conjoin(lm, bool(model_params["conjoin"]))
    return lm.eval()


# --------------------------------------------------------------------------- checkpoints
def load_model(model: str | os.PathLike, conjoin="auto", device: str = "cpu"):
    """A trained model, in eval mode, as a gReLU LightningModel.

    Args:
        model: a gReLU checkpoint (.ckpt) of one of our models, a training run folder (``RUN/`` or
            ``RUN/checkpoints/``: its best.ckpt, else last.ckpt, with a warning naming it), or a folder
            written by ``grelu-caduceus export-kipoi`` (or its ``weights/`` sub-folder).
        conjoin: "auto" (conjoin Caduceus-Ph, leave PS and other models as they are), True
            (conjoin a Caduceus model), False (no conjoining) or None (as the checkpoint stores it).
        device: torch device for the weights.

    Returns:
        ``grelu.lightning.LightningModel``; ``model(x)`` maps one-hot (N, 4, L) to
        post-activation predictions (N, n_tasks, L_out).
    """
    from .devices import check_device

    device = check_device(device)
    path = resolve_run_folder(model)
    if path.is_dir():
        lm = load_exported(path)
        if conjoin not in ("auto", None):  # an export already fixed its conjoining: "auto" keeps it
            set_conjoin(lm, conjoin)
    elif path.is_file():
        lm = _load_checkpoint(path)
        if conjoin is not None:
            set_conjoin(lm, conjoin)
    else:
        raise PredictError(
            f"Model {path} not found: give a gReLU checkpoint (.ckpt) trained with grelu-caduceus or a "
            "folder written by `grelu-caduceus export-kipoi`."
        )
    return lm.to(device).eval()


def load_checkpoint(path: str | os.PathLike, masked_lm: bool | None = None, *, map_location="cpu",
                    hint: str = DEFAULT_HINT, **kwargs):
    """A Lightning checkpoint written by grelu-caduceus or gReLU, through
    :func:`grelu_caduceus.checkpoint_files.load_lightning_checkpoint`.

    Args:
        path: the .ckpt file.
        masked_lm: load as an ``MLMLightningModel`` (True) or a gReLU ``LightningModel`` (False); None
            decides by the model_type the checkpoint records (CaduceusForMaskedLM: masked LM).
        map_location, hint, **kwargs: as in ``load_lightning_checkpoint``.
    """
    if masked_lm is None:
        masked_lm = checkpoint_model_params(path, hint=hint).get("model_type") == "CaduceusForMaskedLM"
    lightning_class = None
    if masked_lm:
        from .tasks.mlm import MLMLightningModel as lightning_class
    return load_lightning_checkpoint(path, lightning_class, map_location=map_location, hint=hint, **kwargs)


def not_a_predictor(path, zero_shot_hint: str = "") -> str:
    """The message for a masked-LM checkpoint given where a predictor is needed (in Python, fine-tune
    it with model_type CaduceusPretrainedModel and pretrained_path set to it)."""
    return (f"{path} is a masked-LM (pretraining) checkpoint, not a predictor: {zero_shot_hint}fine-tune it on a "
            f"labelled task first, e.g. `grelu-caduceus train experiment=finetune model.pretrained_path={path}`.")


def load_predictor_checkpoint(path, zero_shot_hint: str = ""):
    """A gReLU LightningModel from a predictor checkpoint (.ckpt); a masked-LM checkpoint is a
    PredictError saying so (``zero_shot_hint``: what else to do with it, e.g. "score it zero-shot ... or ")."""
    path = Path(path)
    if checkpoint_model_params(path).get("model_type") == "CaduceusForMaskedLM":
        raise PredictError(not_a_predictor(path, zero_shot_hint))
    try:
        lm = load_lightning_checkpoint(path)
    except CheckpointFileError:
        raise
    except Exception as err:
        raise PredictError(f"Cannot load {path} as a gReLU model checkpoint: {_why_not_loadable(path, err)}") from err
    if lm.model_params.get("model_type") == "CaduceusForMaskedLM" or lm.train_params.get("task") == "mlm":
        raise PredictError(not_a_predictor(path, zero_shot_hint))
    return lm


_load_checkpoint = load_predictor_checkpoint


def _why_not_loadable(path: Path, err: Exception) -> str:
    """A readable reason for a failed load (only called on the error path: reads the file again)."""
    try:
        raw = read_checkpoint(path)
    except Exception as load_err:
        return f"it is not a readable PyTorch checkpoint ({type(load_err).__name__}: {load_err})."
    params = (raw.get("hyper_parameters") or {}) if isinstance(raw, dict) else {}
    if "model_params" not in params:
        return "it has no model_params in its hyper-parameters (was it written by a gReLU LightningModel?)."
    return f"{type(err).__name__}: {err}"


def caduceus_trunk(lm):
    """The CaduceusTrunk of a LightningModel, or None for other architectures."""
    from .models.caduceus import CaduceusTrunk

    trunk = getattr(lm.model, "embedding", None)
    return trunk if isinstance(trunk, CaduceusTrunk) else None


def set_conjoin(lm, conjoin="auto") -> bool:
    """Switch post-hoc conjoining of a loaded model; returns whether it is now conjoined.

    "auto" turns it on for Caduceus-Ph (RC-averaged predictions) and leaves PS models (already
    strand-symmetric) and other architectures unchanged; True/False set it (Caduceus, HyenaDNA).
    """
    if conjoin not in CONJOIN_CHOICES:
        raise PredictError(f"conjoin must be 'auto', True or False, got {conjoin!r}.")
    trunk = caduceus_trunk(lm)
    if trunk is None:
        # Other architectures with their own switch (HyenaDNAModel.conjoin) follow explicit requests.
        if isinstance(getattr(lm.model, "conjoin", None), bool):
            if conjoin != "auto":
                lm.model.conjoin = lm.model_params["conjoin"] = bool(conjoin)
            return lm.model.conjoin
        if conjoin is True:
            raise PredictError(
                f"conjoin=True is not available for {lm.model_params.get('model_type')}: it applies to Caduceus "
                "(and HyenaDNA) models."
            )
        return False
    if conjoin == "auto":
        conjoin = trunk.conjoin or not trunk.backbone.config.rcps
    trunk.conjoin = bool(conjoin)
    lm.model_params["conjoin"] = bool(conjoin)
    return trunk.conjoin


def task_names(lm) -> list[str]:
    """Names of the model's output tracks (from the training data; task_0, ... when unknown)."""
    n_tasks = int(lm.model.head.n_tasks)
    names = list((getattr(lm, "data_params", None) or {}).get("tasks", {}).get("name", []))
    if len(names) != n_tasks:
        names = [f"task_{i}" for i in range(n_tasks)]
    return [str(n) for n in names]


def output_labels(lm, n_bins: int) -> list[str]:
    """Column labels of flattened predictions: task names, or ``task/bin_i`` for unpooled outputs."""
    names = task_names(lm)
    if n_bins == 1:
        return names
    return [f"{name}/bin_{b}" for name in names for b in range(n_bins)]


def training_seq_len(lm) -> int | None:
    """Sequence length the model was trained on (gReLU's data_params), or None when unknown."""
    train = (getattr(lm, "data_params", None) or {}).get("train", {}) or {}
    seq_len = train.get("seq_len")
    return int(seq_len) if seq_len else None


@torch.no_grad()
def predict_onehot(lm, x) -> np.ndarray:
    """Predictions for a batch of one-hot sequences, flattened per sequence.

    Args:
        lm: a LightningModel in eval mode (see :func:`load_model`).
        x: (B, 4, L) one-hot, numpy or torch, rows A, C, G, T, N as all-zero columns.

    Returns:
        float32 array (B, n_tasks * L_out), task-major (the order of :func:`output_labels`).
    """
    x = x.float() if torch.is_tensor(x) else torch.from_numpy(np.asarray(x, dtype=np.float32))
    if x.ndim != 3 or x.shape[1] != 4:
        raise PredictError(f"Expected one-hot input of shape (batch, 4, length), got {tuple(x.shape)}.")
    device = next(lm.parameters()).device
    out = lm(x.to(device))  # post-activation, (B, T, L_out)
    return out.float().reshape(out.shape[0], -1).cpu().numpy()


