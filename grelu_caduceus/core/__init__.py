"""Torch-only Caduceus: config, mixers, RC-equivariant modules, backbone, masked LM, checkpoint I/O.

Imports neither gReLU nor Lightning.
"""

from .bimamba import BiMamba
from .caduceus import CaduceusBackbone, CaduceusForMaskedLM, set_scan_backend
from .checkpoint import load_pretrained, save_pretrained
from .config import CaduceusConfig
from .mamba import Mamba
from .scan import available_backends, selective_scan

__all__ = [
    "BiMamba",
    "CaduceusBackbone",
    "CaduceusConfig",
    "CaduceusForMaskedLM",
    "Mamba",
    "available_backends",
    "load_pretrained",
    "save_pretrained",
    "selective_scan",
    "set_scan_backend",
]
