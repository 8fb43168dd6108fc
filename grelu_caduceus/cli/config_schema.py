"""Structured configs of ``grelu-caduceus train``: the keys, types and values each group accepts.

A composed config has four sections, each checked against a dataclass picked by a discriminator:

* ``task``    by ``task.name``     -> MLMTaskConfig, BinaryTaskConfig, MulticlassTaskConfig, RegressionTaskConfig
* ``data``    by ``data.kind``     -> GenomeWindowsData, BundledTaskData, TableData, FastaBedData, BigWigData
* ``trainer``                      -> TrainerConfig
* ``model``   by ``model.model_type``: a dataclass made from that gReLU model's constructor, so every
  model registered on ``grelu.model.models`` is checked against its real signature, plus the value
  rules of ``MODEL_VALUE_RULES``.

OmegaConf rejects unknown keys and values of the wrong type; each dataclass's ``__post_init__``
(run by ``OmegaConf.to_object``) checks values. :func:`validate` turns every failure into one
:class:`ConfigError` that names the key, the problem and the valid choices.
"""

from __future__ import annotations

import dataclasses
import inspect
import types
import typing
from dataclasses import dataclass, field, make_dataclass
from functools import lru_cache
from typing import Any, List, Optional

from omegaconf import MISSING, DictConfig, OmegaConf
from omegaconf.errors import ConfigKeyError, InterpolationResolutionError, OmegaConfBaseException, ValidationError

from . import UserError

SECTIONS = ("model", "task", "data", "trainer")
TOP_LEVEL_KEYS = SECTIONS + ("seed",)


class ConfigError(UserError):
    """A composed config that breaks the schema (unknown key, wrong type or value, missing value)."""


def _require(condition: bool, message: str) -> None:
    """Raise ValueError(message) unless condition; messages start with the field name."""
    if not condition:
        raise ValueError(message)


def _one_of(name: str, value, choices) -> None:
    names = ", ".join("null" if c is None else str(c) for c in choices)
    _require(value in choices, f"{name}={value!r} is not valid; choose one of: {names}")


def _positive(name: str, value) -> None:
    _require(value is None or value > 0, f"{name} must be > 0, got {value}")


def _fraction(name: str, value, upper_inclusive: bool = True) -> None:
    ok = value is None or (0.0 <= value <= 1.0 if upper_inclusive else 0.0 <= value < 1.0)
    _require(ok, f"{name} must be between 0 and 1, got {value}")


def _batches_or_fraction(name: str, value) -> None:
    ok = value is None or (isinstance(value, int) and not isinstance(value, bool) and value > 0) or \
        (isinstance(value, float) and 0.0 < value <= 1.0)
    _require(ok, f"{name} must be null, a number of batches (int > 0) or a fraction of an epoch "
                 f"(0 < float <= 1), got {value!r}")


# --------------------------------------------------------------------------- task
@dataclass
class MLMTaskConfig:
    """Masked-LM pretraining (grelu_caduceus.tasks.mlm); fields become MLM train_params."""

    name: str = "mlm"
    lr: float = 1e-3
    weight_decay: float = 0.1
    betas: List[float] = field(default_factory=lambda: [0.9, 0.95])
    warmup_steps: int = 100
    min_lr_ratio: float = 0.1
    mask_prob: float = 0.15
    replace_mask: float = 0.8
    replace_random: float = 0.1
    rc_aug: Optional[bool] = None
    class_weights: Optional[List[float]] = None
    batch_size: int = 16

    def __post_init__(self):
        _positive("lr", self.lr)
        _require(self.weight_decay >= 0, f"weight_decay must be >= 0, got {self.weight_decay}")
        _require(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas),
                 f"betas must be two numbers in [0, 1), got {list(self.betas)}")
        _require(self.warmup_steps >= 0, f"warmup_steps must be >= 0, got {self.warmup_steps}")
        _fraction("min_lr_ratio", self.min_lr_ratio)
        _require(0 < self.mask_prob < 1, f"mask_prob must be between 0 and 1, got {self.mask_prob}")
        _fraction("replace_mask", self.replace_mask)
        _fraction("replace_random", self.replace_random)
        _require(self.replace_mask + self.replace_random <= 1,
                 f"replace_mask + replace_random must be <= 1, got {self.replace_mask + self.replace_random}")
        _require(self.class_weights is None or len(self.class_weights) == 4,
                 f"class_weights needs 4 values (A, C, G, T), got {self.class_weights}")
        _positive("batch_size", self.batch_size)


@dataclass
class _LabelledTaskConfig:
    """A gReLU LightningModel task; fields become gReLU train_params (name -> "task")."""

    name: str = MISSING
    loss: str = MISSING
    lr: float = 1e-3
    optimizer: str = "adam"
    batch_size: int = 64
    early_stopping: bool = False
    patience: int = 5
    monitor: str = "val_loss"
    mode: str = "min"

    LOSSES = ()

    def __post_init__(self):
        _one_of("loss", self.loss, self.LOSSES)
        _positive("lr", self.lr)
        _one_of("optimizer", self.optimizer, ("adam", "sgd"))
        _positive("batch_size", self.batch_size)
        _positive("patience", self.patience)
        _one_of("mode", self.mode, ("min", "max"))


@dataclass
class BinaryTaskConfig(_LabelledTaskConfig):
    name: str = "binary"
    loss: str = "bce"
    pos_weight: Optional[List[float]] = None

    LOSSES = ("bce",)


@dataclass
class MulticlassTaskConfig(_LabelledTaskConfig):
    name: str = "multiclass"
    loss: str = "ce"
    class_weights: Optional[List[float]] = None

    LOSSES = ("ce",)


@dataclass
class RegressionTaskConfig(_LabelledTaskConfig):
    name: str = "regression"
    loss: str = "mse"
    total_weight: Optional[float] = None

    LOSSES = ("mse", "poisson", "poisson_multinomial")


TASK_SCHEMAS = {"mlm": MLMTaskConfig, "binary": BinaryTaskConfig, "multiclass": MulticlassTaskConfig,
                "regression": RegressionTaskConfig}


# --------------------------------------------------------------------------- trainer
PRECISIONS = ("32-true", "32", "bf16-mixed", "16-mixed", "bf16-true", "16-true", "64-true", "64",
              "transformer-engine", "transformer-engine-float16")


@dataclass
class TrainerConfig:
    """Hardware, precision, length and checkpointing of a run (Lightning Trainer arguments)."""

    accelerator: str = "cpu"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "32-true"
    matmul_precision: Optional[str] = None  # null | high | medium: TF32 matmuls while training on CUDA
    max_steps: int = -1
    max_epochs: Optional[int] = 10
    val_check_interval: Any = None  # int: batches; float in (0, 1]: fraction of an epoch
    limit_val_batches: Any = None
    clip: float = 0.0
    accumulate_grad_batches: int = 1
    num_workers: int = 0
    logger: Optional[str] = "csv"
    checkpoint_every: Optional[int] = 500
    save_best: bool = True
    resume: Optional[str] = "auto"
    progress_bar: bool = True
    log_every_n_steps: int = 10

    def __post_init__(self):
        _one_of("accelerator", self.accelerator, ("cpu", "gpu", "cuda", "mps", "tpu", "auto"))
        devices_ok = (isinstance(self.devices, int) and (self.devices > 0 or self.devices == -1)) or \
            self.devices == "auto" or (isinstance(self.devices, (list, tuple)) and len(self.devices) > 0
                                       and all(isinstance(d, int) and d >= 0 for d in self.devices))
        _require(devices_ok,
                 f"devices must be a count (-1: all), 'auto' or a list of GPU indices, got {self.devices!r}")
        _require(self.accelerator != "cpu" or self.devices in (1, "auto") or self.strategy.startswith("ddp"),
                 f"devices={self.devices!r} with accelerator=cpu: use trainer=gpu or trainer=ddp for several GPUs "
                 "(several CPU processes need strategy=ddp)")
        _positive("num_nodes", self.num_nodes)
        _one_of("precision", str(self.precision), PRECISIONS)
        if self.matmul_precision is not None:
            _one_of("matmul_precision", self.matmul_precision, ("highest", "high", "medium"))
        _require(self.max_steps == -1 or self.max_steps > 0,
                 f"max_steps must be > 0 or -1 (no limit), got {self.max_steps}")
        _require(self.max_epochs is None or self.max_epochs > 0 or self.max_epochs == -1,
                 f"max_epochs must be > 0, -1 or null, got {self.max_epochs}")
        _require(self.max_steps > 0 or (self.max_epochs or -1) > 0,
                 "max_steps and max_epochs are both unlimited: set trainer.max_steps or trainer.max_epochs")
        _batches_or_fraction("val_check_interval", self.val_check_interval)
        _batches_or_fraction("limit_val_batches", self.limit_val_batches)
        _require(self.clip >= 0, f"clip must be >= 0, got {self.clip}")
        _positive("accumulate_grad_batches", self.accumulate_grad_batches)
        _require(self.num_workers >= 0, f"num_workers must be >= 0, got {self.num_workers}")
        _one_of("logger", self.logger, ("csv", "wandb", None))
        _positive("checkpoint_every", self.checkpoint_every)
        _positive("log_every_n_steps", self.log_every_n_steps)


# --------------------------------------------------------------------------- data
def _augmentation(data) -> None:
    _require(data.max_shift >= 0, f"max_shift must be >= 0, got {data.max_shift}")


@dataclass
class GenomeWindowsData:
    """Unlabelled windows of a genome for task=mlm (grelu_caduceus.data.GenomeWindowDataset)."""

    kind: str = "genome_windows"
    fasta: Optional[str] = None
    splits: Any = None
    chroms: Optional[List[str]] = None
    seq_len: int = 1024
    train_windows: int = 4096
    val_windows: int = 64
    max_n_frac: Optional[float] = 0.1
    rc_prob: float = 0.0
    max_shift: int = 0

    def __post_init__(self):
        _require(self.fasta is not None or self.splits is None,
                 "splits needs fasta: the bundled demo genome brings its own train/val regions")
        _require(self.splits is None or isinstance(self.splits, (str, dict)),
                 f"splits must be a BED path with a split column or a mapping like {{val: [chr10], test: [chr8]}}, "
                 f"got {self.splits!r}")
        _positive("seq_len", self.seq_len)
        _positive("train_windows", self.train_windows)
        _positive("val_windows", self.val_windows)
        _fraction("max_n_frac", self.max_n_frac)
        _fraction("rc_prob", self.rc_prob)
        _augmentation(self)


@dataclass
class _LabelledData:
    kind: str = MISSING
    seq_len: Optional[int] = None
    rc_aug: bool = False
    max_shift: int = 0

    def __post_init__(self):
        _positive("seq_len", self.seq_len)
        _augmentation(self)


@dataclass
class BundledTaskData(_LabelledData):
    """A real labelled task shipped with the package (grelu_caduceus.data.load_task)."""

    kind: str = "bundled_task"
    name: str = "ctcf"
    seq_len: Optional[int] = 200

    def __post_init__(self):
        from ..data.bundled import TASKS

        super().__post_init__()
        _one_of("name", self.name, TASKS)
        _require(self.seq_len in (None, 200), f"seq_len of the bundled tasks is 200, got {self.seq_len}")


@dataclass
class TableData(_LabelledData):
    """A .tsv/.csv table of sequences and labels."""

    kind: str = "table"
    path: str = MISSING
    seq_column: str = "seq"
    label_columns: List[str] = field(default_factory=lambda: ["label"])
    split_column: str = "split"

    def __post_init__(self):
        super().__post_init__()
        _require(len(self.label_columns) > 0, "label_columns must name at least one column")


@dataclass
class FastaBedData(_LabelledData):
    """Labelled genomic intervals; sequences from a FASTA."""

    kind: str = "fasta_bed"
    fasta: str = MISSING
    intervals: str = MISSING
    label_columns: List[str] = field(default_factory=lambda: ["label"])
    split_column: str = "split"
    val_chroms: List[str] = field(default_factory=list)
    test_chroms: List[str] = field(default_factory=list)

    def __post_init__(self):
        super().__post_init__()
        _require(len(self.label_columns) > 0, "label_columns must name at least one column")


@dataclass
class BigWigData(_LabelledData):
    """Coverage of bigWig files over genomic intervals; sequences from a FASTA."""

    kind: str = "bigwig"
    fasta: str = MISSING
    intervals: str = MISSING
    bigwigs: List[str] = MISSING
    split_column: str = "split"
    val_chroms: List[str] = field(default_factory=list)
    test_chroms: List[str] = field(default_factory=list)
    seq_len: Optional[int] = 2048
    label_len: Optional[int] = None
    bin_size: int = 128
    label_aggfunc: str = "mean"

    def __post_init__(self):
        super().__post_init__()
        _require(self.seq_len is not None, "seq_len must be set for bigWig data")
        _require(len(self.bigwigs) > 0, "bigwigs must list at least one bigWig file")
        _positive("label_len", self.label_len)
        _positive("bin_size", self.bin_size)
        label_len = self.label_len or self.seq_len
        _require(label_len % self.bin_size == 0,
                 f"bin_size={self.bin_size} must divide label_len={label_len} (label_len null means seq_len)")
        _one_of("label_aggfunc", self.label_aggfunc, ("mean", "sum", "max", "min"))


DATA_SCHEMAS = {"genome_windows": GenomeWindowsData, "bundled_task": BundledTaskData, "table": TableData,
                "fasta_bed": FastaBedData, "bigwig": BigWigData}


# --------------------------------------------------------------------------- model
# Model sections are checked against the constructor of model.model_type. Parameters that are
# filled at run time from the data may be null in configs.
FILLED_FROM_DATA = {"n_tasks": "the number of tasks of the data", "seq_len": "data.seq_len", "l_max": "data.seq_len"}
# Placement belongs to the trainer; dtype by name only where the class resolves names.
# backbone_config is what a checkpoint records to rebuild a pretrained model's architecture (untrained:
# its weights come from the checkpoint), not a setting.
EXCLUDED_PARAMS = {"self", "device", "backbone_config"}
DTYPE_BY_NAME = {"CaduceusModel", "CaduceusPretrainedModel"}


def _pool_choices():
    from ..models.common import POOL_FUNCS

    return POOL_FUNCS


def _dtype_choices():
    from ..models.common import DTYPES

    return tuple(DTYPES)


def _strategy_choices():
    from ..core.config import BIDIRECTIONAL_STRATEGIES

    return BIDIRECTIONAL_STRATEGIES


def _dt_inits():
    from ..core.mamba import DT_INITS

    return DT_INITS


def _scan_backends():
    from ..core.scan import BACKENDS

    return BACKENDS


def _hyena_presets():
    from ..hyena.presets import HYENADNA_PRESETS

    return (None, *HYENADNA_PRESETS)


# parameter -> check(name, value); applied to any model that has the parameter
MODEL_VALUE_RULES = {
    "final_pool_func": lambda n, v: _one_of(n, v, _pool_choices()),
    "bidirectional_strategy": lambda n, v: _one_of(n, v, _strategy_choices()),
    "dt_init": lambda n, v: _one_of(n, v, _dt_inits()),
    "scan_backend": lambda n, v: _one_of(n, v, _scan_backends()),
    "dtype": lambda n, v: _one_of(n, v, _dtype_choices()),
    "preset": lambda n, v: _one_of(n, v, _hyena_presets()),
    "crop_len": lambda n, v: _require(v == "auto" or (isinstance(v, int) and v >= 0),
                                      f"{n} must be an integer >= 0 (or 'auto' where the model allows it), got {v!r}"),
}
for _name in ("n_tasks", "d_model", "n_layer", "d_state", "d_conv", "expand", "l_max", "seq_len", "bin_size",
              "channels", "stem_channels", "init_channels", "channel_init", "n_conv", "n_heads", "key_len",
              "value_len", "kernel_size", "stem_kernel_size", "order", "filter_order", "short_filter_order",
              "n_layers", "n_gru", "emb_dim"):
    MODEL_VALUE_RULES[_name] = _positive
for _name in ("dropout", "attn_dropout", "pos_dropout", "ff_dropout"):
    MODEL_VALUE_RULES[_name] = lambda n, v: _fraction(n, v, upper_inclusive=False)


def _check_enformer(params) -> None:
    # enformer_pytorch's relative positions need channels / n_heads divisible by 6, and its conv
    # tower interpolates filter counts between n_conv - 1 blocks.
    _require(params.n_conv >= 3, f"n_conv must be >= 3 for EnformerModel, got {params.n_conv}")
    _require(params.channels % params.n_heads == 0 and (params.channels // params.n_heads) % 6 == 0,
             f"channels / n_heads must be a multiple of 6 for EnformerModel (e.g. 1536 / 8), got "
             f"{params.channels} / {params.n_heads}")


MODEL_CHECKS = {"EnformerModel": _check_enformer}


def available_model_types() -> list[str]:
    """Names of the model classes gReLU can build (``grelu.model.models``, ours included)."""
    import grelu_caduceus  # noqa: F401  (registers our classes on grelu.model.models)
    import grelu.model.models as models
    from grelu_caduceus._registration import MODEL_CLASSES

    for name in MODEL_CLASSES:  # resolve any class still registered lazily
        getattr(models, name)
    return sorted(name for name, obj in vars(models).items()
                  if inspect.isclass(obj) and issubclass(obj, models.BaseModel) and obj is not models.BaseModel)


def model_class(model_type: str):
    """The gReLU model class named ``model_type``; ConfigError listing the valid names otherwise."""
    import grelu_caduceus  # noqa: F401
    import grelu.model.models as models

    valid = available_model_types()
    if model_type not in valid:
        raise ConfigError(f"model.model_type={model_type!r} is not a gReLU model; choose one of: {', '.join(valid)}")
    return getattr(models, model_type)


def _schema_type(param: inspect.Parameter):
    """Type for the structured config of one constructor parameter (Any where OmegaConf cannot say)."""
    annotation, default = param.annotation, param.default
    if annotation is inspect.Parameter.empty:
        if default is None or default is inspect.Parameter.empty:
            return Any
        return bool if isinstance(default, bool) else Optional[type(default)]
    if isinstance(annotation, str):  # postponed annotations: not worth evaluating
        return Any
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(annotation) if a is not type(None)]
        if len(args) == 1 and args[0] in (int, float, bool, str):
            return Optional[args[0]]
        return Any
    if annotation in (int, float, bool, str):
        return annotation
    if origin in (list, List) and typing.get_args(annotation) in ((int,), (float,), (str,)):
        return annotation
    return Any


def _check_model_values(self) -> None:
    for name, rule in MODEL_VALUE_RULES.items():
        if hasattr(self, name):
            rule(name, getattr(self, name))
    check = MODEL_CHECKS.get(self.model_type)
    if check is not None:
        check(self)


@lru_cache(maxsize=None)
def model_schema(model_type: str) -> type:
    """A dataclass with one field per constructor parameter of ``model_type`` (plus model_type)."""
    cls = model_class(model_type)
    fields_ = [("model_type", str, field(default=model_type))]
    for name, param in inspect.signature(cls.__init__).parameters.items():
        if name in EXCLUDED_PARAMS or param.kind in (param.VAR_POSITIONAL, param.VAR_KEYWORD):
            continue
        if name == "dtype" and model_type not in DTYPE_BY_NAME:
            continue
        typ = _schema_type(param)
        if name in FILLED_FROM_DATA:
            typ = Optional[int]
            default = None if param.default is inspect.Parameter.empty else param.default
        elif param.default is inspect.Parameter.empty:
            default = MISSING
        else:
            default = param.default
        if isinstance(default, (list, dict)):
            fields_.append((name, typ, field(default_factory=lambda d=default: type(d)(d))))
        else:
            fields_.append((name, typ, field(default=default)))
    return make_dataclass(f"{model_type}Params", fields_, namespace={"__post_init__": _check_model_values})


# --------------------------------------------------------------------------- validation
MLM_MODEL_TYPES = ("CaduceusModel", "CaduceusPretrainedModel")


@dataclass
class ValidatedConfig:
    """The checked sections of a composed config: ``model`` is a plain dict of gReLU model_params
    (nulls for values filled from the data), the others are schema dataclass instances."""

    model: dict
    task: Any
    data: Any
    trainer: TrainerConfig
    seed: Optional[int]


def _schema_for(section: str, node: dict):
    if section == "trainer":
        return TrainerConfig
    key, table = {"task": ("name", TASK_SCHEMAS), "data": ("kind", DATA_SCHEMAS)}.get(section, ("model_type", None))
    if not isinstance(node, dict) or key not in node:
        raise ConfigError(f"{section}.{key} is not set: pick a config, e.g. {section}=... (see --help)")
    if table is None:
        return model_schema(node[key])
    if node[key] not in table:
        raise ConfigError(f"{section}.{key}={node[key]!r} is not valid; choose one of: {', '.join(table)}")
    return table[node[key]]


def _key_error(section: str, schema: type, err: ConfigKeyError) -> ConfigError:
    import difflib

    key = str(err.full_key or err.key)
    close = difflib.get_close_matches(key.rpartition(".")[2], list(schema.__dataclass_fields__), n=1)
    hint = f" (did you mean {close[0]}?)" if close else ""
    valid = ", ".join(schema.__dataclass_fields__)
    return ConfigError(f"{section}.{key} is not a known key; valid keys of {section}: {valid}{hint}")


def _type_error(section: str, err: ValidationError) -> ConfigError:
    # err.msg reads like "Value 'abc' of type 'str' could not be converted to Integer"
    return ConfigError(f"{section}.{err.full_key or err.key}: {_first_line(err.msg)}")


def check_section(section: str, node: dict, complete: bool = True):
    """One section (a plain dict) checked against its schema.

    Returns the schema instance, or None when ``complete`` is False and required values are
    missing (``???``), in which case value rules are skipped.
    """
    schema = _schema_for(section, node)
    try:
        merged = OmegaConf.merge(OmegaConf.structured(schema), node)
    except ConfigKeyError as err:
        raise _key_error(section, schema, err) from None
    except ValidationError as err:
        raise _type_error(section, err) from None
    missing = sorted(OmegaConf.missing_keys(merged))
    if missing:
        if complete:
            keys = ", ".join(f"{section}.{k}" for k in missing)
            raise ConfigError(f"{keys} {'is' if len(missing) == 1 else 'are'} required: add "
                              + " ".join(f"{section}.{k}=..." for k in missing) + " to the command line")
        return None
    try:
        return OmegaConf.to_object(merged)
    except ValueError as err:
        raise ConfigError(f"{section}.{err}") from None
    except OmegaConfBaseException as err:
        raise ConfigError(f"{section}: {_first_line(err)}") from None


def _first_line(err) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def validate(cfg: DictConfig, complete: bool = True) -> ValidatedConfig | None:
    """Check a composed ``train`` config; ConfigError on the first problem.

    Args:
        cfg: the composed config (without the ``hydra`` node).
        complete: require every ``???`` value to be set (False for ``--cfg``, which only shows
            the config).

    Returns:
        A ValidatedConfig, or None when ``complete`` is False and values are still missing.
    """
    try:
        plain = OmegaConf.to_container(cfg, resolve=True, throw_on_missing=False)
    except InterpolationResolutionError as err:
        raise ConfigError(f"cannot resolve an interpolation: {_first_line(err)}") from None
    plain.pop("hydra", None)
    unknown = sorted(set(plain) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise ConfigError(f"unknown top-level key(s) {', '.join(unknown)}; valid: {', '.join(TOP_LEVEL_KEYS)}")
    for section in SECTIONS:
        if section not in plain:
            raise ConfigError(f"no {section} config: choose one with {section}=NAME (see --help)")
    checked = {section: check_section(section, plain[section], complete) for section in SECTIONS}
    seed = plain.get("seed")
    if seed is not None and not isinstance(seed, int):
        raise ConfigError(f"seed must be an integer or null, got {seed!r}")
    _check_combination(plain)
    if any(value is None for value in checked.values()):
        return None
    model = {k: v for k, v in plain["model"].items()}
    return ValidatedConfig(model=model, task=checked["task"], data=checked["data"], trainer=checked["trainer"],
                           seed=seed)


def mlm_model_params(model: dict) -> dict:
    """The masked LM's model_params from a model section written for CaduceusModel or
    CaduceusPretrainedModel: every key the masked LM uses (``tasks.mlm.MLM_MODEL_KEYS``).

    A key it cannot use (a head option such as final_pool_func, or n_layers of a pretrained model) is
    refused with a ConfigError when it is set to anything but its default, rather than dropped.
    """
    from ..tasks.mlm import MLM_MODEL_KEYS

    model_type = model["model_type"]
    defaults = {f.name: f.default if f.default_factory is dataclasses.MISSING else f.default_factory()
                for f in dataclasses.fields(model_schema(model_type))}
    used = set(MLM_MODEL_KEYS) - {"model_type", "backbone_config"}
    if model_type != "CaduceusPretrainedModel":
        used.discard("pretrained_path")
    unused = sorted(k for k, v in model.items() if k not in used | {"model_type"} and v != defaults.get(k))
    if unused:
        raise ConfigError(f"task=mlm does not use model.{unused[0]} (set to {model[unused[0]]!r}; it configures "
                          f"the supervised {model_type}): remove it; task=mlm uses model.{{{', '.join(sorted(used))}}}")
    return {k: v for k, v in model.items() if k in used}


def _check_combination(plain: dict) -> None:
    """Rules that join sections: which tasks go with which models and data."""
    task, kind = plain["task"]["name"], plain["data"]["kind"]
    model_type = plain["model"]["model_type"]
    if task == "mlm":
        if model_type not in MLM_MODEL_TYPES:
            raise ConfigError(f"task=mlm pretrains Caduceus; model.model_type={model_type} has no masked-LM "
                              "objective here: use model=caduceus, caduceus_ph or caduceus_pretrained")
        mlm_model_params(plain["model"])
        if kind != "genome_windows":
            raise ConfigError(f"task=mlm needs unlabelled genome windows, not data.kind={kind}: use "
                              "data=demo_genome or data=genome")
    elif kind == "genome_windows":
        raise ConfigError(f"task={task} needs labelled data; data.kind=genome_windows is for task=mlm: use "
                          "data=ctcf, atac, table, fasta_bed or bigwig")
    if task == "multiclass" and len(plain["data"].get("label_columns", [None])) != 1:
        raise ConfigError("task=multiclass reads the classes from one label column: set "
                          "data.label_columns=[COLUMN]")
