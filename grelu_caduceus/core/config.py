"""CaduceusConfig: the fields of the released config.json, with their defaults."""

import dataclasses
import inspect
import json
import math
import typing
from dataclasses import dataclass, field
from pathlib import Path

from .mamba import MAMBA_OPTIONS, Mamba, unknown_options_message
from .tokens import COMPLEMENT, VOCAB_SIZE

MODEL_TYPE = "caduceus"
_MAMBA_PARAMETERS = inspect.signature(Mamba.__init__).parameters
# ssm_cfg always holds the mixer sizes (d_inner derives from expand); Mamba's signature has their defaults.
_SSM_DEFAULTS = {k: _MAMBA_PARAMETERS[k].default for k in ("d_state", "d_conv", "expand", "dt_rank")}
# ssm_cfg keys: Mamba's options (the released configs also carry use_fast_path) and mamba-ssm v2's
# mixer selector "layer", which may only name the Mamba1 mixer Caduceus uses. The scan backend is a
# runtime choice (set_scan_backend), not part of a config.
SSM_LAYERS = ("Mamba1",)
SSM_CFG_KEYS = tuple(k for k in MAMBA_OPTIONS if k != "scan_backend") + ("layer",)
# The options of ssm_cfg a model's user chooses, given flat next to the other fields ("layer" has one
# valid value and use_fast_path is ignored).
SSM_OPTIONS = tuple(k for k in SSM_CFG_KEYS if k not in ("layer", "use_fast_path"))
BIDIRECTIONAL_STRATEGIES = ("add", "ew_multiply")
# Fields fixed by the tokenizer or describing the file, not chosen for an architecture; ssm_cfg is
# chosen through SSM_OPTIONS.
_NOT_CHOSEN = ("vocab_size", "ssm_cfg", "pad_vocab_size_multiple", "initializer_cfg", "complement_map",
               "model_type", "architectures", "extra")


@dataclass
class CaduceusConfig:
    """Hyper-parameters of a Caduceus masked LM, named as in the released config.json.

    ``ssm_cfg`` holds the Mamba mixer's options (d_state, d_conv, expand, dt_rank, dt_min, dt_max, ...;
    ``SSM_CFG_KEYS``); an unknown key is refused with a ValueError naming it.
    Keys of a loaded config.json that are not fields here are kept in ``extra`` and written back.
    """

    d_model: int = 256
    n_layer: int = 4
    vocab_size: int = VOCAB_SIZE
    ssm_cfg: dict = field(default_factory=dict)
    rms_norm: bool = True
    residual_in_fp32: bool = True
    fused_add_norm: bool = True
    pad_vocab_size_multiple: int = 8
    norm_epsilon: float = 1e-5
    initializer_cfg: dict | None = None
    bidirectional: bool = True
    bidirectional_strategy: str = "add"
    bidirectional_weight_tie: bool = True
    rcps: bool = False
    complement_map: dict | None = None
    model_type: str = MODEL_TYPE
    architectures: list = field(default_factory=lambda: ["CaduceusForMaskedLM"])
    extra: dict = field(default_factory=dict)

    def __post_init__(self):
        self.ssm_cfg = {**_SSM_DEFAULTS, **(self.ssm_cfg or {})}
        unknown = set(self.ssm_cfg) - set(SSM_CFG_KEYS)
        if unknown:
            raise ValueError(unknown_options_message("ssm_cfg", unknown, SSM_CFG_KEYS))
        if self.ssm_cfg.get("layer", SSM_LAYERS[0]) not in SSM_LAYERS:
            raise ValueError(f"ssm_cfg layer={self.ssm_cfg['layer']!r} is not supported: Caduceus uses "
                             f"the {SSM_LAYERS[0]!r} mixer.")
        if self.complement_map is None:
            self.complement_map = dict(COMPLEMENT)
        self.complement_map = {int(k): int(v) for k, v in self.complement_map.items()}
        if self.bidirectional_strategy not in BIDIRECTIONAL_STRATEGIES:
            raise ValueError(f"bidirectional_strategy must be one of {', '.join(map(repr, BIDIRECTIONAL_STRATEGIES))}, "
                             f"got {self.bidirectional_strategy!r}.")
        if self.d_model < 1 or self.n_layer < 1:
            raise ValueError(f"d_model and n_layer must be positive, got {self.d_model} and {self.n_layer}.")

    @property
    def padded_vocab_size(self) -> int:
        m = self.pad_vocab_size_multiple
        return math.ceil(self.vocab_size / m) * m

    @property
    def d_inner(self) -> int:
        return self.ssm_cfg["expand"] * self.d_model

    @property
    def mamba_options(self) -> dict:
        """Keyword arguments of every Mamba mixer: ``ssm_cfg`` without the mixer selector "layer"."""
        return {k: v for k, v in self.ssm_cfg.items() if k != "layer"}

    @property
    def hidden_size(self) -> int:
        """Channels of the backbone output: 2 * d_model for RC-equivariant models."""
        return 2 * self.d_model if self.rcps else self.d_model

    @classmethod
    def from_dict(cls, d: dict) -> "CaduceusConfig":
        names = {f.name for f in dataclasses.fields(cls)} - {"extra"}
        known = {k: v for k, v in d.items() if k in names}
        extra = {k: v for k, v in d.items() if k not in names and k != "extra"}
        return cls(**known, extra={**d.get("extra", {}), **extra})

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        extra = d.pop("extra")
        d["complement_map"] = {str(k): v for k, v in d["complement_map"].items()}
        return {**extra, **d}

    @classmethod
    def from_params(cls, params: dict, owner: str = "CaduceusConfig") -> "CaduceusConfig":
        """A config from flat architecture parameters (``BACKBONE_PARAMS``: fields and ssm_cfg options).

        Raises:
            ValueError: a parameter that is not one of BACKBONE_PARAMS (named, with the valid ones).
        """
        unknown = set(params) - set(BACKBONE_PARAMS)
        if unknown:
            raise ValueError(unknown_options_message(owner, unknown, BACKBONE_PARAMS))
        return cls(**{k: v for k, v in params.items() if k in BACKBONE_FIELDS},
                   ssm_cfg={k: v for k, v in params.items() if k in SSM_OPTIONS})

    def params(self) -> dict:
        """The flat architecture parameters of this config (inverse of ``from_params``)."""
        defaults = backbone_defaults()
        return {**{k: getattr(self, k) for k in BACKBONE_FIELDS},
                **{k: self.ssm_cfg.get(k, defaults[k]) for k in SSM_OPTIONS}}

    @classmethod
    def from_json_file(cls, path) -> "CaduceusConfig":
        with open(path) as f:
            d = json.load(f)
        if d.get("model_type", MODEL_TYPE) != MODEL_TYPE:
            raise ValueError(
                f"{path} describes a {d['model_type']!r} model, not a Caduceus model "
                f"(model_type must be {MODEL_TYPE!r}). Point to a Caduceus checkpoint folder."
            )
        return cls.from_dict(d)

    def to_json_file(self, path) -> None:
        Path(path).write_text(json.dumps(self.to_dict(), indent=2) + "\n")


BACKBONE_FIELDS = tuple(f.name for f in dataclasses.fields(CaduceusConfig) if f.name not in _NOT_CHOSEN)
BACKBONE_PARAMS = BACKBONE_FIELDS + SSM_OPTIONS


def backbone_parameters(**defaults) -> list[inspect.Parameter]:
    """Keyword-only parameters, one per ``BACKBONE_PARAMS`` entry, for a signature that takes them flat.

    Types and defaults come from CaduceusConfig's fields and Mamba's signature; ``defaults``
    overrides some defaults (e.g. a model class that starts from another width).
    """
    fields = {f.name: f for f in dataclasses.fields(CaduceusConfig)}
    params = []
    for name, default in (backbone_defaults() | defaults).items():
        annotation = fields[name].type if name in fields else _MAMBA_PARAMETERS[name].annotation
        if annotation is inspect.Parameter.empty:
            annotation = typing.Any
        params.append(inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=default, annotation=annotation))
    return params


def backbone_defaults() -> dict:
    """The default of every ``BACKBONE_PARAMS`` entry."""
    fields = {f.name: f.default for f in dataclasses.fields(CaduceusConfig)}
    return {**{k: fields[k] for k in BACKBONE_FIELDS},
            **{k: _SSM_DEFAULTS.get(k, _MAMBA_PARAMETERS[k].default) for k in SSM_OPTIONS}}
