"""Enformer's published weights as an embedding model, through gReLU's own ``EnformerPretrainedModel``.

Accepted wherever ``embed`` / ``vep-probe`` take a model:

- ``Genentech/enformer-model`` (also ``enformer``): gReLU's ``EnformerPretrainedModel``, which fetches
  ``human_state_dict.h5`` from that Hugging Face repository with ``hf_hub_download`` (so a cached
  copy works offline, with ``HF_HUB_OFFLINE=1``);
- a local copy of that file (``.../human_state_dict.h5``, a torch state dict despite its suffix),
  read with ``weights_only=True`` into the same architecture;
- any gReLU LightningModel checkpoint of an Enformer (``model_type: EnformerModel`` or
  ``EnformerPretrainedModel``), like every other gReLU checkpoint (its trunk, ``model.embedding``).

The embedding is the trunk's output: 3072 channels per 128-bp bin, uncropped (``crop_len=0``), so a
pooled window maps to the bins it covers.
"""

from __future__ import annotations

import os
from pathlib import Path

import torch

from .errors import UserError

REPO_ID = "Genentech/enformer-model"
FILENAME = "human_state_dict.h5"
NAMES = ("enformer", REPO_ID)
HOW_TO_GET = (f"Fetch the weights once with `huggingface-cli download {REPO_ID} {FILENAME}` (then they load "
              f"offline from the Hugging Face cache), or pass the downloaded {FILENAME} as --model.")


class EnformerWeightsError(UserError, ValueError):
    """Enformer's published weights are not available; the message says how to get them."""


def is_enformer_reference(model) -> bool:
    """True for the names above or a path to a ``human_state_dict.h5``-style file (an ``.h5`` state dict)."""
    if not isinstance(model, (str, os.PathLike)):
        return False
    text = os.fspath(model)
    if text in NAMES or text.lower() == "enformer":
        return True
    return Path(text).suffix == ".h5" and Path(text).is_file()


def _architecture():
    """The published Enformer (gReLU's EnformerModel with EnformerPretrainedModel's settings, uncropped)."""
    from grelu.model.models import EnformerModel

    return EnformerModel(crop_len=0, n_tasks=5313, channels=1536, n_transformers=11, n_heads=8, key_len=64,
                         attn_dropout=0.05, pos_dropout=0.01, ff_dropout=0.4, final_act_func=None,
                         final_pool_func=None)


def load_enformer(model) -> torch.nn.Module:
    """A gReLU model (``.embedding`` = Enformer trunk, published weights) from a name or a local file."""
    text = os.fspath(model)
    if text in NAMES or text.lower() == "enformer":
        from grelu.model.models import EnformerPretrainedModel
        from grelu.resources import download_model

        try:  # fetch (or find in the cache) first: gReLU builds the 250M-parameter model before downloading
            download_model(repo_id=REPO_ID, filename=FILENAME)
        except Exception as err:  # noqa: BLE001 - offline, uncached, or no network: one actionable message
            raise EnformerWeightsError(f"Could not get Enformer's published weights from {REPO_ID} "
                                       f"({type(err).__name__}). {HOW_TO_GET}") from err
        return EnformerPretrainedModel(n_tasks=1, crop_len=0)
    path = Path(text)
    if not path.is_file():
        raise EnformerWeightsError(f"{path} does not exist. {HOW_TO_GET}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise EnformerWeightsError(f"{path} is not a torch state dict of Enformer ({type(err).__name__}: {err}). "
                                   f"{HOW_TO_GET}") from err
    net = _architecture()
    try:
        net.load_state_dict(state)
    except RuntimeError as err:
        first = str(err).splitlines()[0]
        raise EnformerWeightsError(f"{path} does not hold Enformer's published weights ({first}). "
                                   f"{HOW_TO_GET}") from err
    return net


__all__ = ["EnformerWeightsError", "HOW_TO_GET", "is_enformer_reference", "load_enformer"]
