"""Reading checkpoint files (torch.save / Lightning ``.ckpt``): the one place where a missing, empty,
truncated or corrupt file becomes a clear one-line error instead of ``OSError: [Errno 22]``,
``UnpicklingError`` or a miniz ``RuntimeError`` from deep inside torch.

A torch zip checkpoint is checked whole first (its zip directory and every member's CRC-32, which
torch itself does not check, so damaged weights would otherwise load silently). Every reader of a
checkpoint in this package goes through :func:`read_checkpoint`: with no
``load`` it returns the checkpoint's dict (``torch.load``); with ``load`` (for example
``functools.partial(LightningModel.load_from_checkpoint, map_location="cpu", weights_only=False)``)
it returns what that returns, and only read failures are translated, so a readable checkpoint that
does not fit its model still says so in its own words.

Example::

    from grelu_caduceus.checkpoint_files import read_checkpoint
    ckpt = read_checkpoint("run/checkpoints/last.ckpt", hint="or pass trainer.resume=null")
"""

from __future__ import annotations

import errno
import os
import pickle
import zipfile
from pathlib import Path
from typing import Callable

from .errors import UserError

DEFAULT_HINT = ("use a complete checkpoint such as RUN/checkpoints/last.ckpt, best.ckpt or step*.ckpt "
                "(a run stopped while saving can leave a partial file)")


class CheckpointFileError(UserError, ValueError):
    """A checkpoint file that cannot be read (missing, empty, truncated or corrupt); names the file and the fix."""


def _load_dict(path: str):
    import torch

    return torch.load(path, map_location="cpu", weights_only=False)


def _is_read_failure(err: BaseException) -> bool:
    """Whether ``err`` from torch / Lightning means the bytes of the file are bad (not that a good
    checkpoint does not fit its model)."""
    if isinstance(err, (pickle.UnpicklingError, EOFError, zipfile.BadZipFile)):
        return True
    if isinstance(err, OSError) and err.errno == errno.EINVAL and not err.filename:
        return True  # torch's reader on a cut-off zip: "[Errno 22] Invalid argument"
    if isinstance(err, RuntimeError):
        text = str(err)
        return "PytorchStreamReader" in text or "archive is corrupted" in text or "zip archive" in text
    return False


def read_checkpoint(path: str | os.PathLike, load: Callable[[str], object] | None = None, *,
                    hint: str = DEFAULT_HINT):
    """Read a checkpoint file, turning every failure to read its bytes into :class:`CheckpointFileError`.

    Args:
        path: the checkpoint file (.ckpt, .pt, ...).
        load: how to read it, called with the path as a string; default ``torch.load`` on CPU with
            ``weights_only=False`` (the checkpoint dict).
        hint: the fix to name in the message (what to use instead).

    Returns:
        What ``load`` returns (by default the checkpoint dict).

    Raises:
        CheckpointFileError: the file is missing, a folder, empty, truncated or corrupt. Other
            errors of ``load`` (a readable checkpoint of another model, ...) pass through.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise CheckpointFileError(f"checkpoint {path} does not exist: {hint}.")
    if path.is_dir():
        raise CheckpointFileError(f"checkpoint {path} is a folder, not a checkpoint file: {hint}.")
    try:
        with open(path, "rb") as f:
            head = f.read(4)
    except OSError as err:
        raise CheckpointFileError(f"cannot read checkpoint {path} ({err.strerror or err}): {hint}.") from err
    if not head:
        raise CheckpointFileError(f"checkpoint {path} is empty (0 bytes): {hint}.")
    if head.startswith(b"PK"):
        if not zipfile.is_zipfile(path):
            # torch.save writes a zip archive whose directory comes last: a cut-off file lacks it.
            raise CheckpointFileError(f"{path} is truncated or corrupt (its zip archive has no end record, so the "
                                      f"save was cut short): {hint}.")
        # torch does not check the CRC-32 of the members it reads: damaged tensor bytes would load silently.
        try:
            with zipfile.ZipFile(path) as archive:
                damaged = archive.testzip()
        except (zipfile.BadZipFile, OSError, EOFError) as err:
            raise CheckpointFileError(f"{path} is truncated or corrupt (cannot be read as a zip archive: {err}): "
                                      f"{hint}.") from err
        if damaged is not None:
            raise CheckpointFileError(f"{path} is truncated or corrupt (its member {damaged} fails its CRC check): "
                                      f"{hint}.")
    elif not head.startswith(b"\x80"):
        raise CheckpointFileError(f"{path} is not a PyTorch checkpoint (neither a torch zip archive nor a pickle; "
                                  f"cannot be unpickled): {hint}.")
    try:
        return (load or _load_dict)(str(path))
    except Exception as err:
        if _is_read_failure(err):
            raise CheckpointFileError(f"{path} is truncated or corrupt (cannot be unpickled: "
                                      f"{type(err).__name__}): {hint}.") from err
        raise


# the checkpoints a training run folder stands for, in order of preference (see run_folder_checkpoint)
RUN_CHECKPOINTS = ("best.ckpt", "last.ckpt")


def run_folder_checkpoint(folder: str | os.PathLike) -> Path | None:
    """The checkpoint a training run folder stands for, or None when ``folder`` is not one.

    A run folder (``RUN/``, holding ``checkpoints/``) or its ``checkpoints/`` folder stands for its
    ``best.ckpt`` (lowest validation loss), else its ``last.ckpt``. A folder holding other .ckpt files
    only is a :class:`CheckpointFileError` naming them. A folder with a config.json is a model folder
    (HF format, or a released HyenaDNA's config.json + weights.ckpt), not a run folder.
    """
    folder = Path(folder).expanduser()
    if (folder / "config.json").is_file():  # a model folder (HF format, or a LongSafari release with weights.ckpt)
        return None
    for ckpt_dir in (folder / "checkpoints", folder):
        if not ckpt_dir.is_dir():
            continue
        for name in RUN_CHECKPOINTS:
            if (ckpt_dir / name).is_file():
                return ckpt_dir / name
        others = sorted(ckpt_dir.glob("*.ckpt"))
        if others:
            shown = ", ".join(p.name for p in others[:4]) + (f" and {len(others) - 4} more" if len(others) > 4 else "")
            raise CheckpointFileError(f"{folder} holds checkpoints ({shown}) but no best.ckpt or last.ckpt: give "
                                      f"one of them as --model, e.g. --model {others[-1]}.")
    return None


def resolve_run_folder(path: str | os.PathLike) -> Path:
    """``path``, or the checkpoint file it stands for when it is a training run folder (see
    :func:`run_folder_checkpoint`); the choice is announced with an InputWarning."""
    import warnings

    from .errors import InputWarning

    path = Path(path).expanduser()
    if not path.is_dir():
        return path
    checkpoint = run_folder_checkpoint(path)
    if checkpoint is None:
        return path
    other = checkpoint.with_name(RUN_CHECKPOINTS[1] if checkpoint.name == RUN_CHECKPOINTS[0] else RUN_CHECKPOINTS[0])
    which = ("its best checkpoint (lowest validation loss)" if checkpoint.name == RUN_CHECKPOINTS[0]
             else "its last checkpoint (there is no best.ckpt)")
    alternative = f"; give --model {other} for the {'last' if other.name == 'last.ckpt' else 'best'} one" \
        if other.is_file() else ""
    warnings.warn(f"{path} is a training run folder: using {checkpoint}, {which}{alternative}.", InputWarning,
                  stacklevel=3)
    return checkpoint


def checkpoint_model_params(path: str | os.PathLike, *, hint: str = DEFAULT_HINT) -> dict:
    """The ``model_params`` a gReLU / grelu-caduceus Lightning checkpoint records ({} if none), read
    without loading its tensors into memory (memory-mapped)."""
    import torch

    def peek(p):
        try:
            return torch.load(p, map_location="cpu", weights_only=False, mmap=True)
        except RuntimeError as err:  # a legacy (non-zip) checkpoint cannot be memory-mapped
            if "mmap" not in str(err):
                raise
            return _load_dict(p)

    checkpoint = read_checkpoint(path, peek, hint=hint)
    params = (checkpoint.get("hyper_parameters") or {}).get("model_params") if isinstance(checkpoint, dict) else None
    return dict(params or {})


def load_lightning_checkpoint(path: str | os.PathLike, lightning_class=None, *, map_location="cpu",
                              hint: str = DEFAULT_HINT, **kwargs):
    """The one way this package loads a Lightning checkpoint (``load_from_checkpoint``).

    Registers our model classes on ``grelu.model.models`` first, passes ``weights_only=False`` (gReLU
    checkpoints hold numpy arrays and plain hyper-parameters, which torch >= 2.6 refuses by default),
    and turns read failures into :class:`CheckpointFileError` naming ``hint``.

    Args:
        path: the .ckpt file.
        lightning_class: the LightningModule class to load (default gReLU's ``LightningModel``; pass
            ``grelu_caduceus.tasks.mlm.MLMLightningModel`` for a masked-LM checkpoint).
        map_location: where the weights go.
        hint: the fix a read failure names.
        **kwargs: passed to ``load_from_checkpoint`` (e.g. ``strict``).

    Returns:
        The loaded LightningModule, in the mode Lightning leaves it (call ``.eval()`` to predict).
    """
    # Importing this package installed the registration hook; importing gReLU's models module runs it.
    import grelu.model.models  # noqa: F401

    if lightning_class is None:
        from grelu.lightning import LightningModel as lightning_class
    kwargs.setdefault("weights_only", False)
    return read_checkpoint(path, lambda p: lightning_class.load_from_checkpoint(p, map_location=map_location,
                                                                                 **kwargs), hint=hint)


__all__ = ["CheckpointFileError", "DEFAULT_HINT", "RUN_CHECKPOINTS", "checkpoint_model_params",
           "load_lightning_checkpoint", "read_checkpoint", "resolve_run_folder", "run_folder_checkpoint"]
