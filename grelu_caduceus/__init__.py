"""grelu-caduceus: the Caduceus DNA language model as a gReLU plugin.

Importing this package makes ``CaduceusModel``, ``CaduceusPretrainedModel`` and ``HyenaDNAModel``
available to gReLU (``LightningModel(model_params={"model_type": "CaduceusModel", ...})``); the
torch-only core lives in ``grelu_caduceus.core``.

Importing it changes no environment variable, thread setting or precision setting of the process.
On CPUs, the numba scan kernels and torch keep separate OpenMP thread pools; with OpenMP's default
busy waiting their idle threads starve each other (a 2-core training step: 0.62 s with passive
waiting, 3.8 s with busy waiting). The ``grelu-caduceus`` command and the benchmark scripts set
``OMP_WAIT_POLICY=PASSIVE`` for their own process; in your own programs, set it before Python starts
(``OMP_WAIT_POLICY=PASSIVE python train.py``) or before the first ``import torch``.
"""

from . import _registration

_registration.install()

__version__ = "0.1.0"
__all__ = ["CaduceusConfig", "CaduceusForMaskedLM", "load_pretrained", "save_pretrained"]


def __getattr__(name):
    # The core (and torch) load on first use, so that `import grelu_caduceus` stays cheap and an
    # entry point can still configure OpenMP before torch starts.
    if name in __all__:
        from . import core

        return getattr(core, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
