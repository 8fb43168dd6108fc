"""Causal depthwise convolution + SiLU, the short convolution inside the Mamba mixer."""

import torch.nn.functional as F

from .scan import _importable


def causal_conv1d(x, weight, bias=None, activation="silu", reverse=False, out=None):
    """Causal depthwise convolution on channels-last input.

    Args:
        x: (B, L, D). weight: (D, 1, K). bias: (D,) or None. activation: "silu" or None.
        reverse: the convolution of the reversed sequence, ``flip(conv(flip(x)))`` along L
            (anti-causal: ``x[t + K - 1 - k]`` in place of ``x[t - K + 1 + k]``). The CPU kernel and
            the PyTorch fallback compute it without flipped copies.
        out: (B, L, D) buffer the CPU kernel may write the result into without autograd (the
            returned tensor is then ``out``); the other paths ignore it.
    Returns:
        (B, L, D) with ``out[t] = act(bias + sum_k weight[:, 0, k] * x[t - K + 1 + k])``.
    """
    if x.device.type == "cpu" and _importable("numba"):
        from .scan.cpu import causal_conv1d_cpu

        return causal_conv1d_cpu(x, weight, bias, activation, reverse=reverse, out=out)
    if x.device.type == "cuda" and _importable("causal_conv1d"):
        from causal_conv1d import causal_conv1d_fn

        xt = x.transpose(1, 2)
        out = causal_conv1d_fn(xt.flip(-1) if reverse else xt, weight.squeeze(1), bias, activation)
        return (out.flip(-1) if reverse else out).transpose(1, 2)
    K, L = weight.shape[-1], x.shape[1]
    if reverse:  # cross-correlation with the reversed kernel, keeping the outputs that look ahead
        out = F.conv1d(x.transpose(1, 2), weight.flip(-1), bias, padding=K - 1, groups=weight.shape[0])[..., K - 1:]
    else:
        out = F.conv1d(x.transpose(1, 2), weight, bias, padding=K - 1, groups=weight.shape[0])[..., :L]
    out = F.silu(out) if activation == "silu" else out
    return out.transpose(1, 2)
