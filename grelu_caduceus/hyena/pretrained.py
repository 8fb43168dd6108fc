"""Released HyenaDNA checkpoints (LongSafari on the Hugging Face hub) in our torch HyenaDNA.

Two layouts are read, from a local folder or a hub name (``LongSafari/hyenadna-small-32k-seqlen``):

* the original release: ``config.json`` (d_model, n_layer, d_inner, vocab_size,
  pad_vocab_size_multiple, residual_in_fp32, checkpoint_mixer / checkpoint_mlp, and ``layer`` with
  emb_dim, filter_order, short_filter_order, l_max, modulate, w, lr, wd, lr_pos_emb) and
  ``weights.ckpt``, a Lightning checkpoint whose ``state_dict`` keys start with ``model.backbone.``
  (``.mixer.layer.`` / ``.mlp.layer.`` when the model was trained with checkpoint_mixer /
  checkpoint_mlp);
* the transformers port (``*-seqlen-hf``): ``config.json`` with max_seq_len, hyena_order,
  activation_freq, num_inner_mlps ... and ``model.safetensors`` / ``pytorch_model.bin`` with keys
  under ``hyena.backbone.``.

Both give a :class:`PretrainedHyenaDNA` whose ``backbone(input_ids)`` returns the final normalised
hidden states (B, L, d_model), as the original implementation does: the implicit filters are those of
the config's ``l_max`` cut to the input length, and the positional features ``z``, ``t`` and the
decay rates come from the checkpoint.

:func:`save_pretrained` writes one of our backbones in the transformers-port layout. A backbone
trained here need not have the released architecture options (shared sine, stored positions, decay
shift 0.05); those it differs in are written to config.json under the names of our config
(``EXTRA_OPTIONS``), which the port's config does not have, and read back from there.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import torch
from torch import nn

from ..core.checkpoint import CheckpointError
from ..core.hub import read_weight_file, resolve_checkpoint_folder
from .config import HyenaDNAConfig
from .model import HyenaDNABackbone

WEIGHT_FILES = ("model.safetensors", "pytorch_model.bin", "weights.ckpt")
# HyenaDNAConfig options the transformers port's config.json has no key for (the port implies the
# released values, HyenaDNAConfig.released); save_pretrained writes them under these names.
EXTRA_OPTIONS = ("modulate", "modulation_shift", "stored_positions", "train_positions", "shared_sine")
PORT_PREFIX = "hyena.backbone."


class PretrainedHyenaDNA(nn.Module):
    """A released HyenaDNA backbone: ``model(input_ids)`` = ``model.backbone(input_ids)`` -> (B, L, d_model).

    Token ids are the character tokenizer's ([CLS]=0 ... [UNK]=6, A=7, C=8, G=9, T=10, N=11), the same
    as grelu_caduceus'. ``released_config`` is the config.json as read.
    """

    def __init__(self, backbone: HyenaDNABackbone, released_config: dict):
        super().__init__()
        self.backbone = backbone
        self.config = backbone.config
        self.released_config = released_config

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        return self.backbone(input_ids)


def _padded_vocab(vocab_size: int, multiple: int) -> int:
    multiple = max(int(multiple or 1), 1)
    return vocab_size + (-vocab_size) % multiple


def config_from_released(cfg: dict) -> HyenaDNAConfig:
    """Our HyenaDNAConfig for a released config.json (original or ``-hf`` layout)."""
    try:
        if "layer" in cfg:  # original release
            layer = cfg["layer"]
            name = layer.get("_name_", "hyena")
            if name != "hyena" or cfg.get("attn_layer_idx"):
                raise CheckpointError(f"Only Hyena layers are supported; this config has layer {name!r} / attention "
                                      f"layers {cfg.get('attn_layer_idx')}.")
            sizes = dict(
                l_max=int(layer["l_max"]),
                order=int(layer.get("order", 2)),
                filter_order=int(layer.get("filter_order", 64)),
                emb_dim=int(layer.get("emb_dim", 3)),
                short_filter_order=int(layer.get("short_filter_order", 3)),
                sin_freq=float(layer.get("w", 1)),
                num_inner_mlps=int(layer.get("num_inner_mlps", 2)),
                modulate=bool(layer.get("modulate", True)),
                train_positions=float(layer.get("lr_pos_emb", 1e-5)) != 0.0,
                hyena_dropout=float(layer.get("dropout", 0.0)),
                filter_dropout=float(layer.get("filter_dropout", 0.0)),
            )
        else:  # transformers port
            sizes = dict(
                l_max=int(cfg["max_seq_len"]),
                order=int(cfg.get("hyena_order", 2)),
                filter_order=int(cfg.get("filter_order", 64)),
                emb_dim=int(cfg.get("emb_dim", 3)),
                short_filter_order=int(cfg.get("short_filter_order", 3)),
                sin_freq=float(cfg.get("activation_freq", 1)),
                num_inner_mlps=int(cfg.get("num_inner_mlps", 2)),
                train_positions=True,
                hyena_dropout=float(cfg.get("hyena_dropout", 0.0)),
                filter_dropout=float(cfg.get("hyena_filter_dropout", 0.0)),
            )
            sizes |= {k: type(getattr(HyenaDNAConfig, k))(cfg[k]) for k in EXTRA_OPTIONS if k in cfg}
        d_model = int(cfg["d_model"])
        return HyenaDNAConfig.released(
            d_model=d_model,
            n_layer=int(cfg["n_layer"]),
            d_inner=int(cfg.get("d_inner") or 4 * d_model),
            vocab_size=_padded_vocab(int(cfg.get("vocab_size", 12)), cfg.get("pad_vocab_size_multiple", 1)),
            embed_dropout=float(cfg.get("embed_dropout", 0.1)),
            resid_dropout=float(cfg.get("resid_dropout", 0.0)),
            layer_norm_eps=float(cfg.get("layer_norm_epsilon", 1e-5)),
            residual_in_fp32=bool(cfg.get("residual_in_fp32", True)),
            **sizes,
        )
    except KeyError as err:
        raise CheckpointError(f"HyenaDNA config.json lacks {err}: is this a released HyenaDNA config?") from err


# released name (after ``...backbone.``, ``.layer`` wrappers removed) -> ours
_RENAMES = [
    (r"^embeddings\.word_embeddings\.weight$", "embeddings.weight"),
    (r"^ln_f\.", "norm_f."),
    (r"^(layers\.\d+)\.mlp\.fc1\.", r"\1.mlp.0."),
    (r"^(layers\.\d+)\.mlp\.fc2\.", r"\1.mlp.2."),
    (r"^(layers\.\d+\.mixer)\.filter_fn\.bias$", r"\1.long_filter.bias"),
    (r"^(layers\.\d+\.mixer)\.filter_fn\.pos_emb\.", r"\1.long_filter.positions."),
    (r"^(layers\.\d+\.mixer)\.filter_fn\.implicit_filter\.", r"\1.long_filter.mlp."),
    (r"^(layers\.\d+\.mixer)\.filter_fn\.modulation\.deltas$", r"\1.long_filter.modulation.decay_rates"),
]


# ours -> the released name (after ``backbone.``): _RENAMES backwards (save_pretrained)
_RENAMES_BACK = [
    (r"^embeddings\.weight$", "embeddings.word_embeddings.weight"),
    (r"^norm_f\.", "ln_f."),
    (r"^(layers\.\d+)\.mlp\.0\.", r"\1.mlp.fc1."),
    (r"^(layers\.\d+)\.mlp\.2\.", r"\1.mlp.fc2."),
    (r"^(layers\.\d+\.mixer)\.long_filter\.bias$", r"\1.filter_fn.bias"),
    (r"^(layers\.\d+\.mixer)\.long_filter\.positions\.", r"\1.filter_fn.pos_emb."),
    (r"^(layers\.\d+\.mixer)\.long_filter\.mlp\.", r"\1.filter_fn.implicit_filter."),
    (r"^(layers\.\d+\.mixer)\.long_filter\.modulation\.decay_rates$", r"\1.filter_fn.modulation.deltas"),
]


def convert_state_dict(state: dict, backbone: HyenaDNABackbone) -> dict:
    """Released backbone tensors -> our state dict (names and shapes), checked against ``backbone``.

    Accepts keys with any prefix ending in ``backbone.`` (``model.backbone.`` of the Lightning
    checkpoints, ``hyena.backbone.`` of the transformers port) and the ``.mixer.layer.`` /
    ``.mlp.layer.`` names of models trained with activation checkpointing. Heads are ignored.
    """
    expected = backbone.state_dict()
    out, unknown = {}, []
    for key, value in state.items():
        if "backbone." not in key:
            continue  # heads (decoder, lm_head) are not part of the backbone
        name = key.split("backbone.", 1)[1]
        name = re.sub(r"\.(mixer|mlp)\.layer\.", r".\1.", name)
        for pattern, repl in _RENAMES:
            name = re.sub(pattern, repl, name)
        if name not in expected:
            unknown.append(key)
            continue
        out[name] = value.reshape(expected[name].shape) if value.numel() == expected[name].numel() else value
    # The transformers port's safetensors store a shared tensor (the one sine frequency) once.
    for name in expected:
        if name not in out and name.endswith(".freq"):
            prefix = name.rsplit(".", 2)[0] + "."
            stored = [k for k in out if k.startswith(prefix) and k.endswith(".freq")]
            if stored:
                out[name] = out[stored[0]]
    missing = sorted(set(expected) - set(out))
    bad = [f"{k} {tuple(out[k].shape)} vs {tuple(expected[k].shape)}" for k in out if out[k].shape != expected[k].shape]
    if unknown or missing or bad:
        parts = ([f"unknown tensors {', '.join(unknown[:6])}"] if unknown else []) + (
            [f"missing tensors {', '.join(missing[:6])}"] if missing else []) + (
            [f"shapes differ: {', '.join(bad[:6])}"] if bad else [])
        raise CheckpointError("HyenaDNA checkpoint does not fit its config: " + "; ".join(parts))
    return out


def read_released_state(folder: Path, trust_pickle: bool = False) -> dict:
    """The tensors of a released folder's weights (safetensors preferred; a Lightning state_dict unwrapped)."""
    for name in WEIGHT_FILES:
        f = folder / name
        if f.is_file():
            state = read_weight_file(f, trust_pickle=trust_pickle)
            return state.get("state_dict", state) if isinstance(state, dict) else state
    raise CheckpointError(f"No HyenaDNA weights in {folder}: expected one of {', '.join(WEIGHT_FILES)}.")


def load_pretrained(path_or_name, revision=None, cache_dir=None, local_files_only=None, trust_pickle=False,
                    device=None, dtype=None) -> PretrainedHyenaDNA:
    """A released HyenaDNA model from a folder or a hub name, in eval mode.

    Args:
        path_or_name: a folder in either released layout, or a hub name such as
            ``LongSafari/hyenadna-tiny-1k-seqlen`` (``hyenadna-tiny-1k-seqlen`` also works).
        revision, cache_dir, local_files_only: for a hub name (see ``core.hub.resolve_checkpoint_folder``).
        trust_pickle: allow a weights.ckpt / .bin that needs full unpickling. The released Lightning
            checkpoints may store training hyper-parameters as Python objects; without this they are
            read with ``torch.load(weights_only=True)`` and refused if that fails.
        device, dtype: where and in which dtype to place the weights.
    """
    folder = resolve_checkpoint_folder(path_or_name, revision=revision, cache_dir=cache_dir,
                                       local_files_only=local_files_only)
    config_file = folder / "config.json"
    if not config_file.is_file():
        raise CheckpointError(f"No config.json in {folder}: is this a released HyenaDNA folder?")
    released = json.loads(config_file.read_text())
    config = config_from_released(released)
    backbone = HyenaDNABackbone(config)
    backbone.load_state_dict(convert_state_dict(read_released_state(folder, trust_pickle), backbone))
    model = PretrainedHyenaDNA(backbone, released)
    return model.to(device=device, dtype=dtype).eval() if dtype else model.to(device=device).eval()


def port_config(config: HyenaDNAConfig) -> dict:
    """The transformers-port config.json of ``config`` (+ ``EXTRA_OPTIONS``); config_from_released inverts it."""
    return {
        "model_type": "hyenadna",
        "d_model": config.d_model,
        "n_layer": config.n_layer,
        "d_inner": config.d_inner,
        "vocab_size": config.vocab_size,
        "pad_vocab_size_multiple": 1,  # vocab_size is already the padded table size
        "max_seq_len": config.l_max,
        "emb_dim": config.emb_dim,
        "filter_order": config.filter_order,
        "short_filter_order": config.short_filter_order,
        "hyena_order": config.order,
        "num_inner_mlps": config.num_inner_mlps,
        "activation_freq": config.sin_freq,
        "train_freq": True,
        "embed_dropout": config.embed_dropout,
        "resid_dropout": config.resid_dropout,
        "hyena_dropout": config.hyena_dropout,
        "hyena_filter_dropout": config.filter_dropout,
        "layer_norm_epsilon": config.layer_norm_eps,
        "residual_in_fp32": config.residual_in_fp32,
        "initializer_range": config.initializer_range,
        "tie_word_embeddings": True,
        **{k: getattr(config, k) for k in EXTRA_OPTIONS},
    }


def save_pretrained(backbone: HyenaDNABackbone, folder) -> Path:
    """Write ``backbone`` as a transformers-port folder (config.json + model.safetensors) that
    :func:`load_pretrained` reads back to the same hidden states.

    Tensors go under ``hyena.backbone.`` with the released names; an LM head (tied to the
    embedding, as in the port) is written as ``lm_head.weight`` and is not part of what is loaded.
    Every tensor is stored under each of its names (safetensors keeps no shared storage).
    """
    from safetensors.torch import save_file

    if not isinstance(backbone, HyenaDNABackbone):
        raise TypeError(f"save_pretrained wants a HyenaDNABackbone, got {type(backbone).__name__}.")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for name, value in backbone.state_dict().items():
        value = value.detach().cpu().contiguous().clone()
        if name == "lm_head.weight":
            tensors[name] = value
            continue
        for pattern, repl in _RENAMES_BACK:
            name = re.sub(pattern, repl, name)
        tensors[PORT_PREFIX + name] = value
    save_file(tensors, str(folder / "model.safetensors"), metadata={"format": "pt"})
    (folder / "config.json").write_text(json.dumps(port_config(backbone.config), indent=2) + "\n")
    return folder


__all__ = ["EXTRA_OPTIONS", "PretrainedHyenaDNA", "config_from_released", "convert_state_dict", "load_pretrained",
           "port_config", "read_released_state", "save_pretrained"]
