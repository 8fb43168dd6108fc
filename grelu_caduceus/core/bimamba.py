"""BiMamba: a forward and a reverse Mamba mixer over the same sequence, combined."""

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
    """

    def __init__(self, d_model, bidirectional=True, strategy="add", weight_tie=True, **mamba_kwargs):
        super().__init__()
        self.bidirectional, self.strategy = bidirectional, strategy
        self.mamba_fwd = Mamba(d_model, **mamba_kwargs)
        if bidirectional:
            self.mamba_rev = Mamba(d_model, **mamba_kwargs)
            if weight_tie:
                self.mamba_rev.in_proj = self.mamba_fwd.in_proj
                self.mamba_rev.out_proj = self.mamba_fwd.out_proj

    def forward(self, hidden):
        out = self.mamba_fwd(hidden)
        if not self.bidirectional:
            return out
        out_rev = self.mamba_rev(hidden.flip(1)).flip(1)
        return out + out_rev if self.strategy == "add" else out * out_rev
