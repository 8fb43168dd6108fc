"""Registers our architectures on ``grelu.model.models`` without importing gReLU eagerly.

gReLU finds a model class with ``getattr(grelu.model.models, model_type)`` and has no plugin
registry, so the classes must be set on that module. Importing gReLU takes seconds, so instead of
importing it here we register the classes the moment ``grelu.model.models`` is imported (at once,
if it already is). Likewise, when ``grelu.lightning`` is imported its LightningModel is made to
leave float32 matmul precision as the caller set it (``grelu_compat.scope_matmul_precision``) and
to record our pretrained models' backbone configs in its checkpoints
(``grelu_compat.record_checkpoint_params``).
"""

import importlib
import importlib.abc
import sys

TARGET = "grelu.model.models"
LIGHTNING = "grelu.lightning"
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
    # Resolve now where that is safe, so the classes also show in vars()/dir(): a module of ours not
    # imported yet is imported; one already in sys.modules gives its class if it defines it by now. A
    # module still being imported (it is what imported gReLU) has not reached its class statement
    # yet, so that class stays lazy until first use; nothing needs to know how far an import got.
    for name, module_name in MODEL_CLASSES.items():
        ours = sys.modules.get(module_name)
        if ours is None:
            getattr(models_module, name)
        elif name in vars(ours):
            setattr(models_module, name, vars(ours)[name])


def scope_lightning(lightning_module) -> None:
    from .grelu_compat import record_checkpoint_params, scope_matmul_precision

    scope_matmul_precision(lightning_module)
    record_checkpoint_params(lightning_module)


# module of gReLU -> what to do to it once it is imported
HOOKS = {TARGET: register, LIGHTNING: scope_lightning}


class _Loader(importlib.abc.Loader):
    def __init__(self, loader, hook):
        self.loader, self.hook = loader, hook

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        self.loader.exec_module(module)
        self.hook(module)


class _RegisterWhenImported(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path, target=None):
        if name not in HOOKS:
            return None
        for finder in sys.meta_path:
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                spec.loader = _Loader(spec.loader, HOOKS[name])
                return spec
        return None


def install() -> None:
    for name, hook in HOOKS.items():
        if name in sys.modules:
            hook(sys.modules[name])
    if not all(name in sys.modules for name in HOOKS) and not any(
            isinstance(f, _RegisterWhenImported) for f in sys.meta_path):
        sys.meta_path.insert(0, _RegisterWhenImported())
