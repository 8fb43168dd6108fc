"""Reverse-complement parameter sharing (RCPS): the modules that make Caduceus-PS RC-equivariant.

The PS stream has 2d channels, [a, b]: a for the forward strand, b for the reverse complement.
With rc(t) = t.flip(length, channels) for a (B, L, d) tensor, RC([a, b]) = [rc(b), rc(a)], and every
module here satisfies module(RC(input)) == RC(module(input)).
"""

import torch
from torch import nn

from .bimamba import takes_scratch
from .tokens import complement_index, complement_onehot_channels, embed_onehot


def rc_half(t: torch.Tensor) -> torch.Tensor:
    """rc of a (B, L, d) half of the stream: flip length and channels."""
    return t.flip(-2, -1)


def flipped_norm(norm: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """``rc(norm(rc(x)))`` without flipping along length: a per-position norm commutes with the
    length flip, and reversing channels before and after equals using the reversed weight."""
    bias = getattr(norm, "bias", None)
    if bias is not None:
        return norm(x, weight=norm.weight.flip(0), bias=bias.flip(0))
    return norm(x, weight=norm.weight.flip(0))


class RCPSEmbedding(nn.Module):
    """``[E(x), rc(E(rc(x)))]`` = ``[E(x), flip_channels(E(complement(x)))]``.

    Input token ids (B, L) or one-hot (B, 4|5, L); output (B, L, 2d).
    """

    def __init__(self, vocab_size, d_model, complement_map, device=None, dtype=None):
        super().__init__()
        self.embedding = nn.Embedding(vocab_size, d_model, device=device, dtype=dtype)
        self.register_buffer("complement_map", complement_index(vocab_size, complement_map).to(device))

    def forward(self, x):
        if x.is_floating_point():
            fwd = embed_onehot(x, self.embedding.weight)
            rc = embed_onehot(complement_onehot_channels(x), self.embedding.weight)
        else:
            fwd = self.embedding(x)
            rc = self.embedding(self.complement_map[x])
        return torch.cat([fwd, rc.flip(-1)], dim=-1)


class RCPSMixer(nn.Module):
    """``[M(a), rc(M(rc(b)))]`` with one shared mixer M.

    Input/output (B, L, 2d). ``submodule`` is the name used by the released checkpoints. A mixer
    whose forward takes ``rc=True`` (:class:`~grelu_caduceus.core.bimamba.BiMamba`) computes
    ``rc(M(rc(b)))`` itself, folding the flips into its weights and scan directions; any other
    mixer runs on flipped copies (once on a doubled batch when gradients are needed).
    """

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    def forward(self, x, scratch=None):
        """``scratch``: an ``InferenceScratch`` for the mixer (inference without autograd only)."""
        a, b = x.chunk(2, dim=-1)
        if getattr(self.submodule, "computes_rc", False):
            if not torch.is_grad_enabled():  # inference: each strand writes its half, no cat
                out = torch.empty(x.shape, dtype=x.dtype, device=x.device)
                d = a.shape[-1]
                kw = {"scratch": scratch} if scratch is not None and takes_scratch(self.submodule) else {}
                self.submodule(a, out=out[..., :d], **kw)
                self.submodule(b, rc=True, out=out[..., d:], **kw)
                return out
            return torch.cat([self.submodule(a), self.submodule(b, rc=True)], dim=-1)
        if torch.is_grad_enabled():
            out_a, out_b = self.submodule(torch.cat([a, rc_half(b)], dim=0)).chunk(2, dim=0)
        else:  # inference: one strand at a time halves the peak memory at long context
            out_a, out_b = self.submodule(a), self.submodule(rc_half(b))
        return torch.cat([out_a, rc_half(out_b)], dim=-1)

    forward._takes_scratch = True


class RCPSNorm(nn.Module):
    """``[n(a), rc(n(rc(b)))]``: a per-half norm that keeps the halves in place.

    The norm of Caduceus-PS blocks and final norm when ``fused_add_norm`` is False, as in the released
    code's unfused path. It holds the norm as ``submodule``, so the state-dict keys are the released
    ones for that setting (``norm.submodule.weight``, ``norm_f.submodule.weight``).
    Input/output (B, L, 2d).
    """

    def __init__(self, submodule: nn.Module):
        super().__init__()
        self.submodule = submodule

    @property
    def weight(self) -> nn.Parameter:
        return self.submodule.weight

    def forward(self, x):
        a, b = x.chunk(2, dim=-1)
        return torch.cat([self.submodule(a), flipped_norm(self.submodule, b)], dim=-1)


class RCPSLMHead(nn.Module):
    """Tied LM head on the PS stream: ``logits = a W^T + flip_channels(b) W[complement]^T``.

    Scores the RC half with the complemented tokens' rows, so that logits are RC-equivariant with a
    complemented token axis. Input (B, L, 2d) -> logits (B, L, V).
    """

    def __init__(self, weight: nn.Parameter, complement_map):
        super().__init__()
        self.lm_head = nn.Module()
        self.lm_head.weight = weight  # tied to the embedding
        self.register_buffer("complement_map", complement_index(weight.shape[0], complement_map).to(weight.device))

    def forward(self, hidden):
        a, b = hidden.chunk(2, dim=-1)
        W = self.lm_head.weight
        return a @ W.t() + b.flip(-1) @ W[self.complement_map].t()
