"""Causal depthwise convolution + SiLU, the short convolution inside the Mamba mixer."""

import torch.nn.functional as F

from .scan import _importable


def causal_conv1d(x, weight, bias=None, activation="silu"):
    """Causal depthwise convolution on channels-last input.

    Args:
        x: (B, L, D). weight: (D, 1, K). bias: (D,) or None. activation: "silu" or None.
    Returns:
        (B, L, D) with ``out[t] = act(bias + sum_k weight[:, 0, k] * x[t - K + 1 + k])``.
    """
    if x.device.type == "cpu" and _importable("numba"):
        from .scan.cpu import causal_conv1d_cpu

        return causal_conv1d_cpu(x, weight, bias, activation)
    if x.device.type == "cuda" and _importable("causal_conv1d"):
        from causal_conv1d import causal_conv1d_fn

        return causal_conv1d_fn(x.transpose(1, 2), weight.squeeze(1), bias, activation).transpose(1, 2)
    K, L = weight.shape[-1], x.shape[1]
    out = F.conv1d(x.transpose(1, 2), weight, bias, padding=K - 1, groups=weight.shape[0])[..., :L]
    out = F.silu(out) if activation == "silu" else out
    return out.transpose(1, 2)
