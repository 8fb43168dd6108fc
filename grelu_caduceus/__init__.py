"""grelu-caduceus: the Caduceus DNA language model as a gReLU plugin."""

from .core import CaduceusConfig, CaduceusForMaskedLM, load_pretrained, save_pretrained

__version__ = "0.1.0"
__all__ = ["CaduceusConfig", "CaduceusForMaskedLM", "load_pretrained", "save_pretrained"]
