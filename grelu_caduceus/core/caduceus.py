"""Caduceus backbone and masked LM, Ph (``rcps=False``) and RC-equivariant PS (``rcps=True``).

Module and parameter names follow the released checkpoints, so that ``state_dict()`` keys match them
(see ``docs/architecture.md``, the model contract). Shapes: B batch, L length, d = d_model,
H = hidden channels (d, or 2d for PS), V = padded vocabulary (16).
"""

import math
import numbers
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.checkpoint import checkpoint

from .bimamba import BiMamba, InferenceScratch, takes_scratch
from .config import CaduceusConfig
from .rcps import RCPSEmbedding, RCPSLMHead, RCPSMixer, RCPSNorm, flipped_norm
from .scan import _importable
from .tokens import complement_index, embed_onehot

DEFAULT_CHECKPOINT_KWARGS = {"use_reentrant": False}


class RMSNorm(nn.Module):
    """Root-mean-square norm over the last axis, weight only (computed in float32)."""

    def __init__(self, d, eps=1e-5, device=None, dtype=None):
        super().__init__()
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(d, device=device, dtype=dtype))

    def forward(self, x, weight=None):
        w = self.weight if weight is None else weight
        xf = x.float()
        return (xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + self.eps) * w.float()).to(x.dtype)


class LayerNorm(nn.LayerNorm):
    """LayerNorm whose forward accepts a replacement weight (for the RC strand's flipped weight)."""

    def forward(self, x, weight=None, bias=None):
        w = self.weight if weight is None else weight
        b = self.bias if bias is None else bias
        return F.layer_norm(x.float(), self.normalized_shape, w.float(), b.float(), self.eps).to(x.dtype)


class Embeddings(nn.Module):
    """Token (or one-hot) embedding. Input ids (B, L) or one-hot (B, 4|5, L) -> (B, L, H)."""

    def __init__(self, config: CaduceusConfig, device=None, dtype=None):
        super().__init__()
        V, d = config.padded_vocab_size, config.d_model
        if config.rcps:
            self.word_embeddings = RCPSEmbedding(V, d, config.complement_map, device=device, dtype=dtype)
        else:
            self.word_embeddings = nn.Embedding(V, d, device=device, dtype=dtype)

    def forward(self, x):
        if isinstance(self.word_embeddings, RCPSEmbedding):
            return self.word_embeddings(x)
        if x.is_floating_point():
            return embed_onehot(x, self.word_embeddings.weight)
        return self.word_embeddings(x)


class Block(nn.Module):
    """Pre-norm residual block, "add then norm": (hidden, residual) -> (mixer(norm(h + r)), h + r).

    For PS, the 2d-channel stream is split in halves [s1, s2]. With ``fused_add_norm`` (the released
    checkpoints' setting) the block normalises the second half as the forward strand and the first
    as the RC strand, and the carried residual becomes [s2, s1]: the halves trade places at every
    block. With ``fused_add_norm=False`` it follows the released code's unfused path: the halves stay
    in place, ``normed = [n(s1), rc(n(rc(s2)))]`` and residual [s1, s2] (see ``RCPSNorm``). Unfused
    blocks, Ph or PS, normalise the sum cast to the norm's dtype, as mamba-ssm's unfused Block does.
    """

    def __init__(self, config: CaduceusConfig, device=None, dtype=None):
        super().__init__()
        kw = dict(device=device, dtype=dtype)
        self.rcps = config.rcps
        self.residual_in_fp32 = config.residual_in_fp32
        self.fused_add_norm = config.fused_add_norm
        self.norm = _make_norm(config, **kw)
        bimamba = BiMamba(
            config.d_model,
            bidirectional=config.bidirectional,
            strategy=config.bidirectional_strategy,
            weight_tie=config.bidirectional_weight_tie,
            **config.mamba_options,
            **kw,
        )
        self.mixer = RCPSMixer(bimamba) if config.rcps else bimamba

    def forward(self, hidden, residual=None, scratch=None):
        """hidden, residual: (B, L, H) -> (hidden, residual), both (B, L, H).

        ``scratch``: an ``InferenceScratch`` whose buffers the mixer reuses (inference only; the
        backbone passes one per call)."""
        mix = partial(self.mixer, scratch=scratch) if scratch is not None and takes_scratch(self.mixer) else self.mixer
        if _fused_ps_norm_applies(self.norm, hidden, residual) and self.fused_add_norm and self.rcps:
            from .scan.cpu import ps_add_rms_norm  # one pass, no autograd: see _fused_ps_norm_applies

            normed, residual = ps_add_rms_norm(hidden, residual, self.norm.weight, self.norm.eps, swap=True)
            return mix(normed), residual
        summed = hidden if residual is None else hidden.to(residual.dtype) + residual
        if not self.fused_add_norm:  # halves in place for PS (RCPSNorm)
            normed, residual = self.norm(summed.to(self.norm.weight.dtype)), summed
        elif self.rcps:
            s1, s2 = summed.chunk(2, dim=-1)
            normed = torch.cat([self.norm(s2), flipped_norm(self.norm, s1)], dim=-1)
            residual = torch.cat([s2, s1], dim=-1)
        else:
            normed, residual = self.norm(summed), summed
        if self.residual_in_fp32:
            residual = residual.float()
        return mix(normed.to(hidden.dtype)), residual


def _fused_ps_norm_applies(norm, hidden, residual) -> bool:
    """Whether the PS residual add + RMSNorm can run as one compiled pass (``ps_add_rms_norm``, with
    a compiled backward): float32 CPU tensors, RMSNorm, numba available. It computes what the
    unfused formula does (sum, halves normalised, halves swapped for a block) with two outputs
    instead of about ten temporaries (and their backward passes)."""
    tensors = [hidden, norm.weight] + ([] if residual is None else [residual])
    if type(norm) is not RMSNorm or not _importable("numba"):
        return False
    return all(t.device.type == "cpu" and t.dtype == torch.float32 for t in tensors)


def _make_norm(config: CaduceusConfig, device=None, dtype=None) -> nn.Module:
    """The norm of a block or the final norm; wrapped in RCPSNorm for unfused PS (the released layout)."""
    norm_cls = RMSNorm if config.rms_norm else LayerNorm
    norm = norm_cls(config.d_model, eps=config.norm_epsilon, device=device, dtype=dtype)
    return RCPSNorm(norm) if config.rcps and not config.fused_add_norm else norm


class CaduceusBackbone(nn.Module):
    """Embedding, ``n_layer`` blocks and the final norm.

    forward(x): token ids (B, L) long, or one-hot (B, 4, L) float in A,C,G,T order (all-zero column =
    N; an optional 5th row marks MASK), differentiable w.r.t. the one-hot. Returns (B, L, H): the
    final normalised hidden states.

    Gradient checkpointing (off by default; see :meth:`gradient_checkpointing_enable`) recomputes
    layers in the backward pass instead of storing their activations, in training mode only.
    """

    def __init__(self, config: CaduceusConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.embeddings = Embeddings(config, device=device, dtype=dtype)
        self.layers = nn.ModuleList(Block(config, device=device, dtype=dtype) for _ in range(config.n_layer))
        self.norm_f = _make_norm(config, device=device, dtype=dtype)
        self.gradient_checkpointing = False
        self.gradient_checkpointing_kwargs = dict(DEFAULT_CHECKPOINT_KWARGS)
        self._gradient_checkpointing_stride = 1

    @property
    def gradient_checkpointing_stride(self) -> int:
        """Checkpoint every k-th layer (layers 0, k, 2k, ...); 1 checkpoints every layer."""
        return self._gradient_checkpointing_stride

    @gradient_checkpointing_stride.setter
    def gradient_checkpointing_stride(self, stride: int) -> None:
        # bool is an int subclass, but True/False as a stride is surely a mistaken call
        if isinstance(stride, bool) or not isinstance(stride, numbers.Integral) or stride < 1:
            raise ValueError(f"gradient_checkpointing_stride must be a positive integer (1 = every layer), "
                             f"got {stride!r}.")
        self._gradient_checkpointing_stride = int(stride)

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, stride: int = 1) -> None:
        """Recompute layers in the backward pass instead of storing their activations (training only).

        Args:
            gradient_checkpointing_kwargs: keyword arguments of ``torch.utils.checkpoint.checkpoint``,
                as in Hugging Face's method of the same name, e.g. ``{"use_reentrant": True}``. Missing
                keys default to ``{"use_reentrant": False}`` (PyTorch's recommendation; Hugging Face
                defaults to True, whose checkpointed layers get no gradients when no input needs one).
            stride: checkpoint every ``stride``-th layer (layers 0, stride, 2*stride, ...); the others
                keep their activations: less recomputation for more memory. 1 = every layer.

        Raises:
            TypeError: ``gradient_checkpointing_kwargs`` is not a dict (to switch off, call
                :meth:`gradient_checkpointing_disable`).
            ValueError: ``stride`` is not a positive integer.
        """
        if gradient_checkpointing_kwargs is not None and not isinstance(gradient_checkpointing_kwargs, dict):
            raise TypeError(
                f"gradient_checkpointing_kwargs must be a dict of torch.utils.checkpoint.checkpoint options "
                f"(e.g. {{'use_reentrant': False}}), got {gradient_checkpointing_kwargs!r}; "
                "to switch checkpointing off call gradient_checkpointing_disable()."
            )
        self.gradient_checkpointing_stride = stride
        self.gradient_checkpointing_kwargs = {**DEFAULT_CHECKPOINT_KWARGS, **(gradient_checkpointing_kwargs or {})}
        self.gradient_checkpointing = True

    def gradient_checkpointing_disable(self) -> None:
        """Store every layer's activations again (the default)."""
        self.gradient_checkpointing = False

    def forward(self, x, output_hidden_states=False):
        _check_input(x)
        hidden, residual = self.embeddings(x), None
        all_hidden = []
        recompute = self.gradient_checkpointing and self.training and torch.is_grad_enabled()
        # Inference: the mixers' large temporaries live in buffers shared by all layers of this call.
        scratch = {} if torch.is_grad_enabled() else {"scratch": InferenceScratch()}
        for i, layer in enumerate(self.layers):
            if output_hidden_states:
                all_hidden.append(hidden)
            if recompute and i % self.gradient_checkpointing_stride == 0:
                hidden, residual = checkpoint(layer, hidden, residual, **self.gradient_checkpointing_kwargs)
            else:
                hidden, residual = layer(hidden, residual, **scratch)
        if self.config.fused_add_norm and self.config.rcps and _fused_ps_norm_applies(self.norm_f, hidden, residual):
            from .scan.cpu import ps_add_rms_norm

            out = ps_add_rms_norm(hidden, residual, self.norm_f.weight, self.norm_f.eps, swap=False)
            return (out, all_hidden + [out]) if output_hidden_states else out
        summed = hidden if residual is None else hidden.to(residual.dtype) + residual
        if not self.config.fused_add_norm:  # unfused: the sum in the norm's dtype; PS halves in place
            out = self.norm_f(summed.to(self.norm_f.weight.dtype))
        elif self.config.rcps:
            s1, s2 = summed.chunk(2, dim=-1)
            out = torch.cat([self.norm_f(s1), flipped_norm(self.norm_f, s2)], dim=-1)
        else:
            out = self.norm_f(summed)
        out = out.to(hidden.dtype)
        return (out, all_hidden + [out]) if output_hidden_states else out


class Caduceus(nn.Module):
    """Holds the backbone under the name used by the released checkpoints (``caduceus.backbone``)."""

    def __init__(self, config: CaduceusConfig, device=None, dtype=None):
        super().__init__()
        self.config = config
        self.backbone = CaduceusBackbone(config, device=device, dtype=dtype)

    def forward(self, x, output_hidden_states=False):
        return self.backbone(x, output_hidden_states=output_hidden_states)


class CaduceusForMaskedLM(nn.Module):
    """Caduceus with its tied masked-LM head.

    ``model(x)`` returns logits (B, L, V); ``model.backbone(x)`` the final hidden states (B, L, H).
    PS logits are RC-equivariant: ``model(rc(x)) == model(x).flip(1)[..., complement]``.
    """

    def __init__(self, config: CaduceusConfig, device=None, dtype=None, init_weights=True):
        super().__init__()
        self.config = config
        self.caduceus = Caduceus(config, device=device, dtype=dtype)
        emb = self.caduceus.backbone.embeddings.word_embeddings
        if config.rcps:
            self.lm_head = RCPSLMHead(emb.embedding.weight, config.complement_map)
        else:
            self.lm_head = nn.Linear(config.d_model, config.padded_vocab_size, bias=False, device=device, dtype=dtype)
            self.lm_head.weight = emb.weight  # tied, as in the released models
        if init_weights:
            self.apply(partial(init_weights_, n_layer=config.n_layer, **(config.initializer_cfg or {})))

    @property
    def backbone(self) -> CaduceusBackbone:
        return self.caduceus.backbone

    def forward(self, x, return_hidden=False):
        hidden = self.backbone(x)
        logits = self.lm_head(hidden).float()
        return (logits, hidden) if return_hidden else logits

    def complement_index(self) -> torch.Tensor:
        """(V,) long: the complement of every token id, for RC-ing logits along the token axis."""
        return complement_index(self.config.padded_vocab_size, self.config.complement_map)

    def set_scan_backend(self, backend: str) -> "CaduceusForMaskedLM":
        set_scan_backend(self, backend)
        return self

    def gradient_checkpointing_enable(self, gradient_checkpointing_kwargs: dict | None = None, stride: int = 1) -> None:
        """Checkpoint the backbone's layers; see :meth:`CaduceusBackbone.gradient_checkpointing_enable`."""
        self.backbone.gradient_checkpointing_enable(gradient_checkpointing_kwargs, stride=stride)

    def gradient_checkpointing_disable(self) -> None:
        self.backbone.gradient_checkpointing_disable()

    @property
    def is_gradient_checkpointing(self) -> bool:
        return self.backbone.gradient_checkpointing


def set_scan_backend(module: nn.Module, backend: str) -> None:
    """Select the selective-scan backend of every Mamba mixer inside ``module``."""
    from .mamba import Mamba
    from .scan import BACKENDS

    if backend not in BACKENDS:
        raise ValueError(f"Unknown scan backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    for m in module.modules():
        if isinstance(m, Mamba):
            m.scan_backend = backend


def init_weights_(module, n_layer, initializer_range=0.02, rescale_prenorm_residual=True, n_residuals_per_layer=1):
    """Mamba/GPT-2 style initialisation for training from scratch (leaves the SSM's own init alone)."""
    if isinstance(module, nn.Linear):
        if module.bias is not None and not getattr(module.bias, "_no_reinit", False):
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.Embedding):
        nn.init.normal_(module.weight, std=initializer_range)
    if rescale_prenorm_residual:
        for name, p in module.named_parameters(recurse=False):
            if name == "weight" and getattr(module, "_is_out_proj", False):
                nn.init.kaiming_uniform_(p, a=math.sqrt(5))
                with torch.no_grad():
                    p /= math.sqrt(n_residuals_per_layer * n_layer)


def _check_input(x):
    ok_ids = not x.is_floating_point() and x.dim() == 2
    ok_onehot = x.is_floating_point() and x.dim() == 3 and x.shape[1] in (4, 5)
    if not (ok_ids or ok_onehot):
        raise ValueError(
            f"Caduceus takes token ids (batch, length) as integers or a one-hot (batch, 4, length) float "
            f"tensor; got shape {tuple(x.shape)} of dtype {x.dtype}."
        )
