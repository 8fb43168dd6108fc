"""The Hyena operator: data-controlled gating interleaved with implicit long causal convolutions."""

import torch
from torch import nn

from grelu_caduceus.hyena.filter import ImplicitFilter, fft_causal_conv


class HyenaOperator(nn.Module):
    """Hyena mixer of order N (Poli et al., 2023), used as the token mixer of HyenaDNA.

    For input u (B, L, d):
      1. project to (N + 1) * d channels and run a short depthwise *causal* convolution over them;
      2. split into gates x_0 .. x_{N-1} and a value v (each (B, d, L));
      3. for n = N-1 .. 1: ``v = long_conv_n(v * x_n)`` (implicit filter h_n plus skip bias D_n);
      4. ``y = out_proj(v * x_0)``.
    Every step only looks at positions <= t, so the operator is causal.
    """

    def __init__(
        self,
        d_model: int,
        l_max: int,
        order: int = 2,
        filter_order: int = 64,
        emb_dim: int = 5,
        short_filter_order: int = 3,
        sin_freq: float = 10.0,
        dropout: float = 0.0,
        filter_dropout: float = 0.0,
        **filter_options,
    ):
        """``filter_options``: further ImplicitFilter options (modulate, modulation_shift, n_inner,
        stored_positions, train_positions, shared_sine)."""
        super().__init__()
        if order < 2:
            raise ValueError(f"Hyena order must be >= 2 (one gate and one long convolution at least), got {order}.")
        if short_filter_order < 1:
            raise ValueError(f"short_filter_order must be >= 1, got {short_filter_order}.")
        self.d_model = d_model
        self.l_max = l_max
        self.order = order
        width = (order + 1) * d_model
        self.in_proj = nn.Linear(d_model, width)
        # Depthwise conv; padding both sides then keeping the first L outputs makes it causal.
        self.short_filter = nn.Conv1d(width, width, short_filter_order, groups=width, padding=short_filter_order - 1)
        self.long_filter = ImplicitFilter(
            d_model,
            l_max,
            n_filters=order - 1,
            emb_dim=emb_dim,
            filter_order=filter_order,
            sin_freq=sin_freq,
            dropout=filter_dropout,
            **filter_options,
        )
        self.dropout = nn.Dropout(dropout)
        self.out_proj = nn.Linear(d_model, d_model)

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        """u: (B, L, d_model) -> (B, L, d_model)."""
        L = u.shape[1]
        projected = self.in_proj(u).transpose(1, 2)  # (B, (order+1) d, L)
        projected = self.short_filter(projected)[..., :L]
        *gates, v = projected.split(self.d_model, dim=1)
        filters = self.long_filter(L)  # (order-1, d, L)
        for n, gate in enumerate(reversed(gates[1:])):
            v = self.dropout(v * gate)
            v = fft_causal_conv(v, filters[n], self.long_filter.bias[n])
        y = v * gates[0]
        return self.out_proj(y.transpose(1, 2))
