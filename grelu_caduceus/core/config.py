"""CaduceusConfig: the fields of the released config.json, with their defaults."""

import dataclasses
import json
import math
from dataclasses import dataclass, field
from pathlib import Path

from .mamba import MAMBA_OPTIONS, unknown_options_message
from .tokens import COMPLEMENT, VOCAB_SIZE

MODEL_TYPE = "caduceus"
_SSM_DEFAULTS = dict(d_state=16, d_conv=4, expand=2, dt_rank="auto")
# ssm_cfg keys: Mamba's options (the released configs also carry use_fast_path) and mamba-ssm v2's
# mixer selector "layer", which may only name the Mamba1 mixer Caduceus uses. The scan backend is a
# runtime choice (set_scan_backend), not part of a config.
SSM_LAYERS = ("Mamba1",)
SSM_CFG_KEYS = tuple(k for k in MAMBA_OPTIONS if k != "scan_backend") + ("layer",)


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
        if self.bidirectional_strategy not in ("add", "ew_multiply"):
            raise ValueError(
                f"bidirectional_strategy must be 'add' or 'ew_multiply', got {self.bidirectional_strategy!r}."
            )
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
