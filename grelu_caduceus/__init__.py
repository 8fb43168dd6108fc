"""grelu-caduceus: the Caduceus DNA language model as a gReLU plugin.

Importing this package makes ``CaduceusModel``, ``CaduceusPretrainedModel`` and ``HyenaDNAModel``
available to gReLU (``LightningModel(model_params={"model_type": "CaduceusModel", ...})``); the
torch-only core lives in ``grelu_caduceus.core``.
"""

from . import _registration
from .core import CaduceusConfig, CaduceusForMaskedLM, load_pretrained, save_pretrained

_registration.install()

__version__ = "0.1.0"
__all__ = ["CaduceusConfig", "CaduceusForMaskedLM", "load_pretrained", "save_pretrained"]
