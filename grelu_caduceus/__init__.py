"""grelu-caduceus: the Caduceus DNA language model as a gReLU plugin.

Importing this package makes ``CaduceusModel``, ``CaduceusPretrainedModel`` and ``HyenaDNAModel``
available to gReLU (``LightningModel(model_params={"model_type": "CaduceusModel", ...})``); the
torch-only core lives in ``grelu_caduceus.core``.
"""

import os
import sys

# The CPU scan kernels (numba) and torch keep separate OpenMP thread pools and hand work to each other
# many times per training step; with OpenMP's default busy-waiting, idle threads of one pool starve
# the other's (a 2-core training step: 1.0 s on one thread, 0.62 s on two with passive waiting, 3.8 s
# on two with busy waiting). The setting only takes effect before torch starts; a user's own value wins.
if "torch" not in sys.modules:
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

from . import _registration  # noqa: E402
from .core import CaduceusConfig, CaduceusForMaskedLM, load_pretrained, save_pretrained  # noqa: E402

_registration.install()

__version__ = "0.1.0"
__all__ = ["CaduceusConfig", "CaduceusForMaskedLM", "load_pretrained", "save_pretrained"]
