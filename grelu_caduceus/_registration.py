"""Registers our architectures on ``grelu.model.models`` without importing gReLU eagerly.

gReLU finds a model class with ``getattr(grelu.model.models, model_type)`` and has no plugin
registry, so the classes must be set on that module. Importing gReLU takes seconds, so instead of
importing it here we register the classes the moment ``grelu.model.models`` is imported (at once,
if it already is).
"""

import importlib
import importlib.abc
import sys

TARGET = "grelu.model.models"
# class name on grelu.model.models -> module of ours that defines it
MODEL_CLASSES = {
    "CaduceusModel": "grelu_caduceus.models.caduceus",
    "CaduceusPretrainedModel": "grelu_caduceus.models.caduceus",
    "HyenaDNAModel": "grelu_caduceus.models.hyenadna",
    "HyenaDNAPretrainedModel": "grelu_caduceus.models.hyenadna",
}


def register(models_module) -> None:
    """Make every class of MODEL_CLASSES an attribute of gReLU's models module.

    Resolved lazily through the module's ``__getattr__`` (PEP 562), which gReLU's ``hasattr``/
    ``getattr`` lookups go through: importing our model modules here could re-enter one that is
    itself importing gReLU.
    """
    if getattr(models_module, "_grelu_caduceus_registered", False):
        return
    previous = models_module.__dict__.get("__getattr__")

    def __getattr__(name):
        if name in MODEL_CLASSES:
            cls = getattr(importlib.import_module(MODEL_CLASSES[name]), name)
            setattr(models_module, name, cls)
            return cls
        if previous is not None:
            return previous(name)
        raise AttributeError(f"module {models_module.__name__!r} has no attribute {name!r}")

    models_module.__getattr__ = __getattr__
    models_module._grelu_caduceus_registered = True
    # Resolve now where that is safe, so the classes also show in vars()/dir(); a module of ours that
    # is still being imported (it is what imported gReLU) stays lazy until first use.
    for name, module_name in MODEL_CLASSES.items():
        loading = sys.modules.get(module_name)
        if loading is None or not getattr(getattr(loading, "__spec__", None), "_initializing", False):
            getattr(models_module, name)


class _Loader(importlib.abc.Loader):
    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        register(module)


class _RegisterWhenImported(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name != TARGET:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = _Loader(spec.loader)
                return spec
        return None


def install() -> None:
    if TARGET in sys.modules:
        register(sys.modules[TARGET])
    elif not any(isinstance(f, _RegisterWhenImported) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenImported())
