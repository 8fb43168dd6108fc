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
}


def register(models_module) -> None:
    """Set every class of MODEL_CLASSES on gReLU's models module."""
    for name, module_name in MODEL_CLASSES.items():
        if not hasattr(models_module, name) or getattr(models_module, name).__module__ == module_name:
            setattr(models_module, name, getattr(importlib.import_module(module_name), name))


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
