"""HyenaDNA (Nguyen et al., NeurIPS 2023), implemented in plain torch (no gReLU/Lightning imports).

Used in this project as a baseline against Caduceus; ``load_pretrained`` reads the released
checkpoints (LongSafari's layouts, from a folder or a hub name). See ``grelu_caduceus.models.hyenadna`` for the
gReLU model class built on it.
"""

from grelu_caduceus.hyena.config import HyenaDNAConfig
from grelu_caduceus.hyena.filter import (
    ExponentialModulation,
    ImplicitFilter,
    PositionalFeatures,
    Sine,
    fft_causal_conv,
)
from grelu_caduceus.hyena.model import HyenaBlock, HyenaDNABackbone
from grelu_caduceus.hyena.operator import HyenaOperator
from grelu_caduceus.hyena.presets import HYENADNA_PRESETS, hyenadna_config, preset_sizes
from grelu_caduceus.hyena.pretrained import PretrainedHyenaDNA, load_pretrained, save_pretrained

__all__ = [
    "HyenaDNAConfig",
    "HyenaDNABackbone",
    "HyenaBlock",
    "HyenaOperator",
    "ImplicitFilter",
    "PositionalFeatures",
    "ExponentialModulation",
    "Sine",
    "fft_causal_conv",
    "HYENADNA_PRESETS",
    "hyenadna_config",
    "preset_sizes",
    "PretrainedHyenaDNA",
    "load_pretrained",
    "save_pretrained",
]
