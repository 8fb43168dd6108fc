"""HyenaDNA: a causal stack of pre-norm Hyena blocks over single-nucleotide tokens."""

import math

import torch
from torch import nn
from torch.utils.checkpoint import checkpoint

from grelu_caduceus.core.tokens import A_ID, N_ID
from grelu_caduceus.hyena.config import HyenaDNAConfig
from grelu_caduceus.hyena.operator import HyenaOperator


class HyenaBlock(nn.Module):
    """Pre-norm residual block: ``h += mixer(LN(h))``, then ``h += MLP(LN(h))`` (MLP: d -> d_inner -> d, GELU)."""

    def __init__(self, config: HyenaDNAConfig):
        super().__init__()
        d = config.d_model
        self.norm1 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mixer = HyenaOperator(
            d,
            config.l_max,
            order=config.order,
            filter_order=config.filter_order,
            emb_dim=config.emb_dim,
            short_filter_order=config.short_filter_order,
            sin_freq=config.sin_freq,
            dropout=config.hyena_dropout,
            filter_dropout=config.filter_dropout,
            n_inner=config.num_inner_mlps,
            modulate=config.modulate,
            modulation_shift=config.modulation_shift,
            stored_positions=config.stored_positions,
            train_positions=config.train_positions,
            shared_sine=config.shared_sine,
        )
        self.norm2 = nn.LayerNorm(d, eps=config.layer_norm_eps)
        self.mlp = nn.Sequential(
            nn.Linear(d, config.d_inner), nn.GELU(approximate="tanh"), nn.Linear(config.d_inner, d)
        )
        self.dropout = nn.Dropout(config.resid_dropout)
        self.residual_in_fp32 = config.residual_in_fp32

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        """hidden: (B, L, d_model) -> (B, L, d_model) (at least float32 with residual_in_fp32)."""
        if self.residual_in_fp32 and hidden.dtype in (torch.float16, torch.bfloat16):
            hidden = hidden.float()
        dtype = self.norm1.weight.dtype
        hidden = hidden + self.dropout(self.mixer(self.norm1(hidden.to(dtype))))
        return hidden + self.dropout(self.mlp(self.norm2(hidden.to(dtype))))


class HyenaDNABackbone(nn.Module):
    """Token embedding -> n_layer HyenaBlocks -> final LayerNorm (+ optional tied LM head).

    Inputs are token ids (B, L) in the project's vocabulary ([CLS]=0 ... A=7 C=8 G=9 T=10 N=11), or
    embeddings (B, L, d_model) for callers that build them themselves (e.g. from a one-hot input, see
    ``embed_onehot``). The output at position t depends only on inputs at positions <= t.
    """

    def __init__(self, config: HyenaDNAConfig | None = None, **kwargs):
        super().__init__()
        if config is not None and kwargs:
            raise TypeError("Pass either a HyenaDNAConfig or keyword sizes, not both.")
        self.config = config if config is not None else HyenaDNAConfig(**kwargs)
        cfg = self.config
        self.embeddings = nn.Embedding(cfg.vocab_size, cfg.d_model)
        self.embed_dropout = nn.Dropout(cfg.embed_dropout)
        self.layers = nn.ModuleList(HyenaBlock(cfg) for _ in range(cfg.n_layer))
        self.norm_f = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.lm_head = nn.Linear(cfg.d_model, cfg.vocab_size, bias=False) if cfg.lm_head else None
        self.reset_parameters()
        if self.lm_head is not None:
            self.lm_head.weight = self.embeddings.weight

    def reset_parameters(self):
        """Initialisation for training from scratch.

        Embedding, MLPs and the Hyena output projection: N(0, initializer_range) with zero biases
        (GPT-2 style), and the last projection of each residual branch scaled by 1/sqrt(2 n_layer) so
        the residual stream does not grow with depth.
        Hyena input projection and implicit-filter MLPs keep PyTorch's fan-in scaled default. The
        operator multiplies three projections of its input; at std 0.02 each carries ~0.1 of signal
        and their product ~1e-3, and training from scratch stalls (a 6-mer presence task in 64 bp
        stayed at chance for 300 steps, against 97% held-out accuracy in 150 steps with this init).
        """
        std = self.config.initializer_range
        nn.init.normal_(self.embeddings.weight, std=std)
        for block in self.layers:
            for linear in (block.mixer.out_proj, block.mlp[0], block.mlp[2]):
                nn.init.normal_(linear.weight, std=std)
                nn.init.zeros_(linear.bias)
            for residual_out in (block.mixer.out_proj, block.mlp[2]):
                residual_out.weight.data.div_(math.sqrt(2 * self.config.n_layer))

    def embed_onehot(self, x: torch.Tensor) -> torch.Tensor:
        """gReLU one-hot (B, 4, L) (A,C,G,T rows; all-zero column = N) -> embeddings (B, L, d_model).

        Written as matrix products (``x^T E[A:T] + (1 - sum_c x_c) E[N]``) so gradients flow back to the
        one-hot input. For a one-hot column ``1 - sum_c x_c`` is exactly the "column is N" indicator;
        keeping it linear also makes a scaled input ``a * x`` interpolate between the all-N and the
        actual sequence (the zero baseline of integrated gradients means "all N").
        """
        if x.dim() != 3 or x.shape[1] != 4:
            raise ValueError(f"Expected a one-hot tensor of shape (batch, 4, length), got {tuple(x.shape)}.")
        weight = self.embeddings.weight
        x = x.to(weight.dtype)
        acgt = torch.einsum("bcl,cd->bld", x, weight[A_ID : A_ID + 4])
        is_n = (1 - x.sum(dim=1)).unsqueeze(-1)  # (B, L, 1)
        return acgt + is_n * weight[N_ID]

    def forward(
        self,
        input_ids: torch.Tensor | None = None,
        inputs_embeds: torch.Tensor | None = None,
        return_logits: bool = False,
    ) -> torch.Tensor:
        """Hidden states (B, L, d_model), or LM logits (B, L, vocab_size) when ``return_logits``.

        Args:
            input_ids: token ids (B, L), long.
            inputs_embeds: embeddings (B, L, d_model), instead of input_ids.
            return_logits: apply the LM head (needs ``config.lm_head=True``).
        """
        if (input_ids is None) == (inputs_embeds is None):
            raise ValueError("Pass exactly one of input_ids (B, L) or inputs_embeds (B, L, d_model).")
        hidden = self.embeddings(input_ids) if input_ids is not None else inputs_embeds
        if hidden.shape[1] > self.config.l_max:
            raise ValueError(
                f"Input length {hidden.shape[1]} exceeds l_max={self.config.l_max}: use a larger l_max "
                "(or a longer preset) or shorter sequences."
            )
        hidden = self.embed_dropout(hidden)
        use_checkpoint = self.config.gradient_checkpointing and self.training and torch.is_grad_enabled()
        for block in self.layers:
            hidden = checkpoint(block, hidden, use_reentrant=False) if use_checkpoint else block(hidden)
        hidden = self.norm_f(hidden.to(self.norm_f.weight.dtype))
        if return_logits:
            if self.lm_head is None:
                raise ValueError("This backbone has no LM head: build it with HyenaDNAConfig(lm_head=True).")
            return self.lm_head(hidden)
        return hidden
