"""Released checkpoints by their Hugging Face hub names, and safe reading of their weight files.

Wherever a checkpoint folder is accepted, a hub name (``kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16``,
``LongSafari/hyenadna-small-32k-seqlen``) works too: :func:`resolve_checkpoint_folder` turns it into
a local folder of the Hugging Face cache, downloading only the config and weight files when the hub
can be reached. An existing local path always wins over a name.

Offline (``HF_HUB_OFFLINE=1`` or ``local_files_only=True``) only the cache is looked at; a name that
is not cached fails with one message that says how to fetch it or to give a local folder instead.

Weight files: safetensors are read as they are. Pickled files (``pytorch_model.bin``, Lightning's
``weights.ckpt``) are read with ``torch.load(weights_only=True)``, which only rebuilds tensors and
plain containers; a file that needs full unpickling (it stores arbitrary Python objects, whose
unpickling can run code) is refused unless the caller opts in with ``trust_pickle=True``.
"""

from __future__ import annotations

import os
import pickle
import re
from pathlib import Path

import torch

from .errors import HubCheckpointError, UnsafePickleError

# Files a model folder needs: configs and weights (no READMEs, tokenizers, images, optimizer states).
ALLOW_PATTERNS = (
    "config.json",
    "*.safetensors",
    "*.safetensors.index.json",
    "pytorch_model*.bin",
    "pytorch_model.bin.index.json",
    "weights.ckpt",
)

# Organisations of released models, so a bare released name (as the papers write them) also works.
KNOWN_ORGS = {"caduceus-": "kuleshov-group", "hyenadna-": "LongSafari"}

_REPO_ID = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")
_TRUE = {"1", "true", "yes", "on", "y", "t"}


def is_hub_name(path_or_name) -> bool:
    """True for a string that names a hub repository (``org/name`` or a known bare released name)
    and is not an existing local path."""
    if not isinstance(path_or_name, str) or Path(path_or_name).expanduser().exists():
        return False
    return _hub_repo_id(path_or_name) is not None


def _hub_repo_id(name: str) -> str | None:
    if name.startswith((".", "/", "~")) or "\\" in name:
        return None
    if _REPO_ID.match(name) and ".." not in name:
        return name
    for prefix, org in KNOWN_ORGS.items():
        if name.startswith(prefix) and "/" not in name:
            return f"{org}/{name}"
    return None


def _offline_from_env() -> bool:
    # Read at call time (huggingface_hub reads it once at import).
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in _TRUE


def resolve_checkpoint_folder(path_or_name, revision: str | None = None, cache_dir=None,
                              local_files_only: bool | None = None) -> Path:
    """A local folder for a checkpoint given as a local path or a hub name.

    Args:
        path_or_name: an existing local folder or file (returned as it is), or a hub repository id
            such as ``kuleshov-group/caduceus-ph_seqlen-1k_d_model-256_n_layer-4`` (a bare released
            name such as ``caduceus-ph_seqlen-1k_d_model-256_n_layer-4`` gets its organisation).
        revision: branch, tag or commit of the hub repository (default ``main``).
        cache_dir: Hugging Face cache folder (default: ``HF_HUB_CACHE`` / ``HF_HOME`` as huggingface_hub
            resolves them).
        local_files_only: only look in the cache; default: true when ``HF_HUB_OFFLINE`` is set.

    Raises:
        HubCheckpointError: the path does not exist and is not a hub name, or the name is not cached
            (offline) or cannot be fetched; the message says how to get the files.
    """
    path = Path(os.fspath(path_or_name)).expanduser()
    if path.exists():
        return path
    name = os.fspath(path_or_name)
    repo_id = _hub_repo_id(name) if isinstance(name, str) else None
    if repo_id is None:
        raise HubCheckpointError(
            f"Checkpoint {name} does not exist: give a local folder (config.json + weights) or a Hugging Face "
            "hub name such as kuleshov-group/caduceus-ph_seqlen-1k_d_model-256_n_layer-4."
        )
    offline = _offline_from_env() if local_files_only is None else bool(local_files_only)
    if cache_dir is None:
        cache_dir = os.environ.get("HF_HUB_CACHE") or None
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HFValidationError

    try:
        folder = snapshot_download(repo_id, revision=revision, cache_dir=cache_dir, local_files_only=offline,
                                   allow_patterns=list(ALLOW_PATTERNS))
    except HFValidationError as err:
        raise HubCheckpointError(f"{name} is neither a local folder nor a valid hub name ({err}).") from err
    except Exception as err:  # noqa: BLE001 - every hub failure gets the same actionable message
        at = f" at revision {revision}" if revision else ""
        why = "is not in the Hugging Face cache and offline mode is on" if offline else \
            f"could not be fetched from the Hugging Face hub ({type(err).__name__})"
        cache = f" (cache: {cache_dir})" if cache_dir else ""
        raise HubCheckpointError(
            f"Model {repo_id}{at} {why}{cache}. Download it where the hub can be reached with "
            f"`huggingface-cli download {repo_id}` (or `hf download {repo_id}`), then use it offline with "
            "HF_HUB_OFFLINE=1; or give the path of a local folder holding its config.json and weights."
        ) from err
    return Path(folder)


def read_weight_file(file, trust_pickle: bool = False) -> dict:
    """The tensors of one weight file: safetensors, or a pickled torch file read safely.

    Pickled files are read with ``torch.load(weights_only=True)``; one that holds other Python
    objects is refused unless ``trust_pickle`` (full unpickling can run arbitrary code from the file).
    """
    file = Path(file)
    if file.suffix == ".safetensors":
        from safetensors.torch import load_file

        return load_file(str(file))
    try:
        return torch.load(file, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        if not trust_pickle:
            raise UnsafePickleError(
                f"{file} stores Python objects besides tensors, which torch.load(weights_only=True) refuses to "
                "unpickle (unpickling such a file can run arbitrary code from it). If you trust where it came "
                "from, load it with trust_pickle=True (CLI: --trust-pickle); or convert it to safetensors. "
                f"Refused: {str(err).splitlines()[0][:200]}"
            ) from err
    return torch.load(file, map_location="cpu", weights_only=False)


__all__ = ["ALLOW_PATTERNS", "HubCheckpointError", "UnsafePickleError", "is_hub_name", "read_weight_file",
           "resolve_checkpoint_folder"]
