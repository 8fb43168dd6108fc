"""Hyena's implicit long convolution filters and the FFT causal convolution that applies them.

A Hyena filter is not stored tap by tap: a small MLP with sine activations maps features of each
position t to the filter value at t, and an exponential decay window shapes it. The number of
parameters therefore does not grow with the context, and a filter can be produced for any length
up to ``l_max``. Positions are normalised by ``l_max`` (not by the input length), so the tap at
position t is the same whatever the length of the input: a model trained on long inputs computes
the same function on a shorter prefix.
"""

import math

import torch
from torch import nn


def fft_causal_conv(u: torch.Tensor, k: torch.Tensor, bias: torch.Tensor | None = None) -> torch.Tensor:
    """Causal convolution of each channel of ``u`` with its own filter, through the FFT.

    ``y[..., c, t] = sum_{s <= t} k[c, s] * u[..., c, t - s]  +  bias[c] * u[..., c, t]``

    Both signals are zero-padded to 2L, so the circular convolution computed by the FFT holds the
    linear one in its first L outputs (no wrap-around). Half-precision inputs are computed in float32
    (FFTs of non-power-of-two sizes are not available in half precision) and cast back.

    Args:
        u: signal, (..., C, L).
        k: filters, (C, L') with L' >= L (only the first L taps matter), or broadcastable to u.
        bias: per-channel skip weight ("D" term), (C,), or None.

    Returns:
        (..., C, L), dtype of ``u``.
    """
    L = u.shape[-1]
    if k.shape[-1] < L:
        raise ValueError(f"Filter has {k.shape[-1]} taps but the signal has length {L}: generate the filter for L.")
    out_dtype = u.dtype
    compute_dtype = torch.promote_types(torch.promote_types(u.dtype, k.dtype), torch.float32)
    n_fft = 2 * L
    u_f = torch.fft.rfft(u.to(compute_dtype), n=n_fft)
    k_f = torch.fft.rfft(k[..., :L].to(compute_dtype), n=n_fft)
    y = torch.fft.irfft(u_f * k_f, n=n_fft)[..., :L]
    if bias is not None:
        y = y + u.to(compute_dtype) * bias.to(compute_dtype).unsqueeze(-1)
    return y.to(out_dtype)


class PositionalFeatures(nn.Module):
    """Fixed features of sequence position fed to the filter MLP.

    For position i (0-based) the features are the normalised position ``t = i / (l_max - 1)`` and, for
    ``bands = (emb_dim - 1) // 2`` frequencies f_b spread over [~0, bands - 1], the real and imaginary
    parts of the complex exponential ``exp(-2j * pi * f_b * i / l_max)``.

    By default nothing is stored: the features are computed for the requested length at each call.
    With ``stored`` (the layout of the released HyenaDNA checkpoints) the features of all l_max
    positions are kept in the state dict as ``z`` (l_max, emb_dim) and ``t`` (l_max, 1) and the first
    L rows are used; ``z`` is then a parameter when ``trainable`` (the original trains it with a tiny
    learning rate, so a released checkpoint's ``z`` is the one to use) and a buffer otherwise.
    """

    def __init__(self, emb_dim: int, l_max: int, stored: bool = False, trainable: bool = False):
        super().__init__()
        if emb_dim < 3 or emb_dim % 2 == 0:
            raise ValueError(
                f"emb_dim must be odd and >= 3 (1 position feature + cos/sin pairs), got {emb_dim}: try emb_dim=5."
            )
        self.emb_dim = emb_dim
        self.l_max = l_max
        self.stored = stored
        bands = (emb_dim - 1) // 2
        # A tiny first frequency instead of 0 keeps that band non-constant at long range.
        self.register_buffer("frequencies", torch.linspace(1e-4, bands - 1, bands), persistent=False)
        if stored:
            t, z = self._compute(l_max)
            self.register_buffer("t", t)
            if trainable:
                self.z = nn.Parameter(z)
            else:
                self.register_buffer("z", z)

    def _compute(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        positions = torch.arange(seq_len, device=self.frequencies.device, dtype=torch.float32)
        t = (positions / max(self.l_max - 1, 1)).unsqueeze(-1)
        angles = (2 * math.pi / self.l_max) * positions.unsqueeze(-1) * self.frequencies
        features = torch.cat([t, torch.cos(angles), -torch.sin(angles)], dim=-1)
        return t, features

    def forward(self, seq_len: int) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (t, features): normalised positions (L, 1) and features (L, emb_dim)."""
        if self.stored:
            return self.t[:seq_len], self.z[:seq_len]
        return self._compute(seq_len)


class ExponentialModulation(nn.Module):
    """Multiply each filter channel by a decaying window ``exp(-t * |delta_c|) + shift``.

    The decay rates are fixed and spread across channels so that, at normalised position t, some
    channels have decayed to ``target`` by ``t = fast_decay_pct`` and the slowest only by
    ``t = slow_decay_pct``: a mix of short- and long-range filters at initialisation. The released
    HyenaDNA models use ``shift=0.05`` (every tap keeps at least 5% of the MLP's value) and store the
    rates in the state dict (``stored``); ``modulate=False`` leaves the filters as they are.
    """

    def __init__(self, channels: int, fast_decay_pct: float = 0.3, slow_decay_pct: float = 1.5, target: float = 1e-2,
                 shift: float = 0.0, stored: bool = False, modulate: bool = True):
        super().__init__()
        rate_slow = abs(math.log(target)) / slow_decay_pct
        rate_fast = abs(math.log(target)) / fast_decay_pct
        self.shift = float(shift)
        self.modulate = modulate
        self.register_buffer("decay_rates", torch.linspace(rate_slow, rate_fast, channels), persistent=stored)

    def forward(self, t: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
        """t: (L, 1) normalised positions; h: (L, channels) raw filters. Returns (L, channels)."""
        if not self.modulate:
            return h
        window = torch.exp(-t * self.decay_rates.abs())
        return h * (window + self.shift) if self.shift else h * window


class Sine(nn.Module):
    """``sin(freq * x)`` with a learned frequency per feature (initialised to ``init_freq``)."""

    def __init__(self, dim: int, init_freq: float = 1.0, learn_freq: bool = True):
        super().__init__()
        freq = torch.full((dim,), float(init_freq))
        if learn_freq:
            self.freq = nn.Parameter(freq)
        else:
            self.register_buffer("freq", freq)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.sin(self.freq * x)


class ImplicitFilter(nn.Module):
    """Generates ``n_filters`` long filters of width ``channels`` from positional features.

    MLP: Linear(emb_dim, filter_order) -> Sine -> [Linear(filter_order, filter_order) -> Sine] x n_inner
    -> Linear(filter_order, n_filters * channels, no bias), then exponential decay modulation.
    Also holds the per-channel skip weights ("D" / bias of the long convolution), (n_filters, channels).

    The released HyenaDNA checkpoints need ``modulation_shift=0.05``, ``stored_positions=True`` (their
    positional features and decay rates are in the state dict; ``train_positions`` when their ``z`` is
    a parameter) and ``shared_sine=True`` (one sine activation, one learned frequency vector, for the
    whole MLP).
    """

    def __init__(
        self,
        channels: int,
        l_max: int,
        n_filters: int = 1,
        emb_dim: int = 5,
        filter_order: int = 64,
        n_inner: int = 2,
        sin_freq: float = 10.0,
        modulate: bool = True,
        dropout: float = 0.0,
        modulation_shift: float = 0.0,
        stored_positions: bool = False,
        train_positions: bool = False,
        shared_sine: bool = False,
    ):
        super().__init__()
        self.channels = channels
        self.n_filters = n_filters
        self.l_max = l_max
        self.positions = PositionalFeatures(emb_dim, l_max, stored=stored_positions, trainable=train_positions)
        shared = Sine(filter_order, sin_freq) if shared_sine else None  # the original reuses one module
        layers = [nn.Linear(emb_dim, filter_order), shared or Sine(filter_order, sin_freq)]
        for _ in range(n_inner):
            layers += [nn.Linear(filter_order, filter_order), shared or Sine(filter_order, sin_freq)]
        layers.append(nn.Linear(filter_order, n_filters * channels, bias=False))
        self.mlp = nn.Sequential(*layers)
        # Built even when not modulating: the released checkpoints store its decay rates either way.
        self.modulation = ExponentialModulation(n_filters * channels, shift=modulation_shift, stored=stored_positions,
                                                modulate=modulate)
        self.dropout = nn.Dropout(dropout)
        self.bias = nn.Parameter(torch.randn(n_filters, channels))

    def forward(self, seq_len: int) -> torch.Tensor:
        """Filters for a length-``seq_len`` input, (n_filters, channels, seq_len), in the parameters' dtype."""
        if seq_len > self.l_max:
            raise ValueError(
                f"Input length {seq_len} exceeds the model's l_max={self.l_max}: build the model with a larger "
                "l_max (or a longer preset), or use shorter sequences."
            )
        t, features = self.positions(seq_len)
        # Filters are computed in the parameters' dtype even under autocast: sin() of low-precision
        # arguments would add noise to every tap, and the FFT convolution runs in float32 anyway.
        with torch.autocast(device_type=t.device.type, enabled=False):
            h = self.mlp(features.to(self.mlp[0].weight.dtype))  # (L, n_filters * channels)
            if self.modulation is not None:
                h = self.modulation(t.to(h.dtype), h)
        h = self.dropout(h)
        return h.transpose(0, 1).reshape(self.n_filters, self.channels, seq_len)
