"""Published HyenaDNA sizes (Nguyen et al., 2023) as ready-made configurations.

Parameter counts of these architectures (without an LM head, which is tied to the embedding anyway):
tiny-1k ~0.44M, small-32k ~3.3M, medium-160k / medium-450k / large-1m ~6.6M. The three d256 8-layer
models share one architecture; only the context length their filters are defined over differs.
"""

from grelu_caduceus.hyena.config import HyenaDNAConfig

HYENADNA_PRESETS: dict[str, dict] = {
    "tiny-1k": dict(d_model=128, n_layer=2, l_max=1024),
    "small-32k": dict(d_model=256, n_layer=4, l_max=32_768),
    "medium-160k": dict(d_model=256, n_layer=8, l_max=160_000),
    "medium-450k": dict(d_model=256, n_layer=8, l_max=450_000),
    "large-1m": dict(d_model=256, n_layer=8, l_max=1_000_000),
}


def preset_sizes(name: str) -> dict:
    """The sizes (d_model, n_layer, l_max) of a published model, by name (e.g. "tiny-1k")."""
    key = name.lower().removeprefix("hyenadna-").removesuffix("-seqlen")
    if key not in HYENADNA_PRESETS:
        raise ValueError(f"Unknown HyenaDNA preset {name!r}; available presets: {', '.join(HYENADNA_PRESETS)}.")
    return dict(HYENADNA_PRESETS[key])


def hyenadna_config(preset: str, **overrides) -> HyenaDNAConfig:
    """A HyenaDNAConfig with the sizes of ``preset``; keyword arguments override any field."""
    return HyenaDNAConfig(**(preset_sizes(preset) | overrides))
