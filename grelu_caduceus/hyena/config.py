"""Configuration of a HyenaDNA network."""

from dataclasses import asdict, dataclass, fields


@dataclass
class HyenaDNAConfig:
    """Sizes and options of a HyenaDNA backbone (defaults: the published tiny-1k model).

    Attributes:
        d_model: width of the residual stream.
        n_layer: number of Hyena blocks.
        l_max: longest input (in tokens) the implicit filters are defined for.
        d_inner: hidden width of each block's MLP (default 4 * d_model).
        order: Hyena operator order (gates + long convolutions; 2 in HyenaDNA).
        filter_order: hidden width of the implicit-filter MLP.
        emb_dim: number of positional features fed to the filter MLP (odd, >= 3).
        short_filter_order: kernel size of the short depthwise causal convolution.
        sin_freq: initial frequency of the filter MLP's sine activations.
        vocab_size: rows of the token embedding table (12 tokens padded to 16).
        embed_dropout, resid_dropout: dropout after the embedding and on each residual branch.
        hyena_dropout, filter_dropout: dropout inside the Hyena operator and on generated filters.
        layer_norm_eps: LayerNorm epsilon.
        initializer_range: std of the normal initialisation of linear and embedding weights.
        lm_head: add a language-model head (tied to the embedding) to the backbone.
        gradient_checkpointing: recompute each block in the backward pass (saves activation memory).
        num_inner_mlps: hidden Linear + Sine layers of the implicit-filter MLP after the first.
        modulate: apply the exponential decay window to the implicit filters.
        modulation_shift: constant added to the decay window (0.05 in the released models).
        stored_positions: keep the filters' positional features (z, t) and decay rates in the state
            dict, at l_max, as the released checkpoints do.
        train_positions: with stored_positions, make z a parameter (released with lr_pos_emb > 0).
        shared_sine: one sine activation (one frequency vector) for the whole filter MLP, as released.
        residual_in_fp32: keep the residual stream in float32 under low-precision weights.

    ``HyenaDNAConfig.released(...)`` gives the options of the published checkpoints (see
    ``grelu_caduceus.hyena.pretrained``).
    """

    d_model: int = 128
    n_layer: int = 2
    l_max: int = 1024
    d_inner: int | None = None
    order: int = 2
    filter_order: int = 64
    emb_dim: int = 5
    short_filter_order: int = 3
    sin_freq: float = 10.0
    vocab_size: int = 16
    embed_dropout: float = 0.1
    resid_dropout: float = 0.0
    hyena_dropout: float = 0.0
    filter_dropout: float = 0.0
    layer_norm_eps: float = 1e-5
    initializer_range: float = 0.02
    lm_head: bool = False
    gradient_checkpointing: bool = False
    num_inner_mlps: int = 2
    modulate: bool = True
    modulation_shift: float = 0.0
    stored_positions: bool = False
    train_positions: bool = False
    shared_sine: bool = False
    residual_in_fp32: bool = False

    @classmethod
    def released(cls, **sizes) -> "HyenaDNAConfig":
        """A config with the architecture options of the released HyenaDNA checkpoints."""
        options = dict(modulation_shift=0.05, stored_positions=True, shared_sine=True, residual_in_fp32=True)
        return cls(**(options | sizes))

    def __post_init__(self):
        if self.d_inner is None:
            self.d_inner = 4 * self.d_model
        for name in ("d_model", "n_layer", "l_max", "d_inner", "filter_order", "vocab_size"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"HyenaDNAConfig.{name} must be a positive integer, got {getattr(self, name)}.")
        if self.vocab_size < 12:
            raise ValueError(f"vocab_size must cover the 12 character tokens (ids 0..11), got {self.vocab_size}.")

    def to_dict(self) -> dict:
        return asdict(self)


# The fields a model's user chooses (vocab_size is the tokenizer's; a gReLU trunk has no LM head).
BACKBONE_FIELDS = tuple(f.name for f in fields(HyenaDNAConfig) if f.name not in ("vocab_size", "lm_head"))
