"""BiMamba: a forward and a reverse Mamba mixer over the same sequence, combined."""

import torch
import torch.nn.functional as F
from torch import nn

from .mamba import Mamba


class BiMamba(nn.Module):
    """Bi-directional Mamba: ``mamba_fwd(u)`` combined with ``flip(mamba_rev(flip(u)))``.

    Args:
        d_model: width of the input and output.
        bidirectional: if False, only ``mamba_fwd`` runs (a causal model).
        strategy: "add" or "ew_multiply" (element-wise product) to combine the two directions.
        weight_tie: ``mamba_rev`` shares ``in_proj`` and ``out_proj`` with ``mamba_fwd``.
        **mamba_kwargs: options of :class:`Mamba`.

    Shapes: (B, L, d_model) -> (B, L, d_model).

    The computation exploits the structure rather than following the formula literally (same
    numbers to float rounding, same gradients): in_proj and out_proj act per position, so they
    commute with the length flip, and ``mamba_rev`` runs over ``in_proj(u)`` with its convolution and
    scan reversed in place (:meth:`Mamba.mix` with ``reverse=True``). With tied weights in_proj runs
    once for both directions, and with "add" out_proj too: ``out_proj(y_f) + out_proj(y_r) ==
    out_proj(y_f + y_r)``. With the numba, PyTorch and Triton kernels no flipped copy of any
    activation is made (mamba-ssm's scan and the causal_conv1d CUDA package have no direction flag and
    get flipped copies).
    """

    computes_rc = True  # forward(hidden, rc=True), used by RCPSMixer

    def __init__(self, d_model, bidirectional=True, strategy="add", weight_tie=True, **mamba_kwargs):
        super().__init__()
        self.bidirectional, self.strategy = bidirectional, strategy
        self.mamba_fwd = Mamba(d_model, **mamba_kwargs)
        if bidirectional:
            self.mamba_rev = Mamba(d_model, **mamba_kwargs)
            if weight_tie:
                self.mamba_rev.in_proj = self.mamba_fwd.in_proj
                self.mamba_rev.out_proj = self.mamba_fwd.out_proj

    def forward(self, hidden, rc=False, out=None, scratch=None):
        """hidden (B, L, d_model) -> (B, L, d_model).

        ``rc=True`` returns ``rc(self(rc(hidden)))`` with ``rc(t) = t.flip(length, channels)`` (the
        RC strand of Caduceus-PS) without flipping any activation: the channel flips fold into
        in_proj's columns and out_proj's rows, and the length flip swaps the two mixers'
        directions (``mamba_fwd`` runs reversed, ``mamba_rev`` forward).

        ``out`` (B, L, d_model), optional, without autograd only: the result is written into it
        (a strided view, e.g. one half of RCPSMixer's output, is fine) and returned. ``scratch``
        (an :class:`InferenceScratch`), optional, without autograd only: the in_proj, convolution
        and scan outputs go into its buffers, which the next call (the other strand, the next
        layer) reuses.
        """
        if out is not None or scratch is not None:
            if torch.is_grad_enabled():
                raise ValueError("BiMamba(out=..., scratch=...) is for inference without autograd (torch.no_grad()).")
            if out is None:
                out = hidden.new_empty(hidden.shape)
            return self._forward_into(hidden, rc, out, scratch)
        fwd = self.mamba_fwd
        # x and z as two products (not one split in two): the backward pass then needs no
        # concatenation of their gradients.
        xz_f = _project_in(fwd.in_proj, hidden, rc, split=True)
        y_f = fwd.mix(xz_f, reverse=rc)
        if not self.bidirectional:
            return _project_out(fwd.out_proj, y_f, rc)
        rev = self.mamba_rev
        xz_r = xz_f if rev.in_proj is fwd.in_proj else _project_in(rev.in_proj, hidden, rc, split=True)
        if self.strategy == "add" and rev.out_proj is fwd.out_proj:
            y = rev.mix(xz_r, reverse=not rc, add_to=y_f)  # y_f + y_r (in place without autograd)
            out = _project_out(fwd.out_proj, y, rc)
            bias = fwd.out_proj.bias  # out_proj(y_f) + out_proj(y_r) has it twice
            return out if bias is None else out + (bias.flip(0) if rc else bias)
        y_r = rev.mix(xz_r, reverse=not rc)
        out_f, out_r = _project_out(fwd.out_proj, y_f, rc), _project_out(rev.out_proj, y_r, rc)
        return out_f + out_r if self.strategy == "add" else out_f * out_r


    forward._takes_scratch = True

    def _forward_into(self, hidden, rc, out, scratch):
        fwd, rev = self.mamba_fwd, getattr(self, "mamba_rev", None)
        if not (self.bidirectional and self.strategy == "add" and rev.in_proj is fwd.in_proj
                and rev.out_proj is fwd.out_proj):
            return out.copy_(self(hidden, rc=rc))
        scratch = scratch if scratch is not None else InferenceScratch()
        lead, like = hidden.shape[:-1], dict(dtype=hidden.dtype, device=hidden.device)
        xz = scratch.get("xz", (*lead, 2 * fwd.d_inner), **like)
        weight = fwd.in_proj.weight.flip(1) if rc else fwd.in_proj.weight
        torch.mm(hidden.reshape(-1, hidden.shape[-1]), weight.t(), out=xz.view(-1, xz.shape[-1]))
        if fwd.in_proj.bias is not None:
            xz.add_(fwd.in_proj.bias)
        y_f = fwd.mix(xz, reverse=rc, conv_out=scratch.get("conv_f", (*lead, fwd.d_inner), **like))
        y = rev.mix(xz, reverse=not rc, add_to=y_f, conv_out=scratch.get("conv_r", (*lead, fwd.d_inner), **like))
        weight = fwd.out_proj.weight.flip(0) if rc else fwd.out_proj.weight
        torch.mm(y.reshape(-1, y.shape[-1]), weight.t(), out=out.view(-1, out.shape[-1]))
        bias = fwd.out_proj.bias
        if bias is not None:  # twice: out_proj(y_f) + out_proj(y_r)
            b = bias.flip(0) if rc else bias
            out.add_(b).add_(b)
        return out


def takes_scratch(module) -> bool:
    """Whether ``module``'s forward takes ``scratch=`` (marked with ``_takes_scratch``; a forward
    replaced on the class, e.g. by a test, is not)."""
    return getattr(type(module).forward, "_takes_scratch", False)


class InferenceScratch:
    """Named buffers that consecutive inference calls reuse: one per backbone call (released with
    it), so that the large per-layer temporaries are allocated (and faulted in) once, not per layer.
    ``get`` returns the buffer of that name, a new one if the shape, dtype or device differ; its
    contents are whatever the previous user left."""

    def __init__(self):
        self._buffers = {}

    def get(self, name, shape, dtype, device):
        t = self._buffers.get(name)
        if t is None or t.shape != tuple(shape) or t.dtype != dtype or t.device != torch.device(device):
            t = self._buffers[name] = torch.empty(shape, dtype=dtype, device=device)
        return t


def _project_in(linear: nn.Linear, hidden, rc, split=False):
    """``linear(hidden)``, or ``linear(flip_channels(hidden))`` if rc, as a product with the
    column-reversed weight. ``split``: the two halves of the output channels as a pair (x, z) of
    separate products."""
    weight = linear.weight.flip(1) if rc else linear.weight
    if not split:
        return F.linear(hidden, weight, linear.bias) if rc else linear(hidden)
    half = weight.shape[0] // 2
    bias = linear.bias
    return (F.linear(hidden, weight[:half], None if bias is None else bias[:half]),
            F.linear(hidden, weight[half:], None if bias is None else bias[half:]))


def _project_out(linear: nn.Linear, y, rc):
    """``linear(y)``, or ``flip_channels(linear(y))`` if rc, with the row-reversed weight (and bias)."""
    if not rc:
        return linear(y)
    bias = linear.bias.flip(0) if linear.bias is not None else None
    return F.linear(y, linear.weight.flip(0), bias)
