"""Model parameters are written once, in the backbone configs: every CaduceusConfig field a user
chooses (and every Mamba option of its ssm_cfg) reaches the backbone through CaduceusModel, the masked
LM and ``grelu-caduceus train`` (task=mlm and a labelled task); HyenaDNAConfig's fields likewise reach
HyenaDNAModel; keys a model cannot use are refused in one line rather than dropped."""

import dataclasses

import pytest
import torch

from grelu_caduceus.cli.config_schema import ConfigError
from grelu_caduceus.cli.train import build_lightning_model, load_config
from grelu_caduceus.core.config import BACKBONE_PARAMS, CaduceusConfig, backbone_defaults
from grelu_caduceus.hyena.config import BACKBONE_FIELDS as HYENA_FIELDS
from grelu_caduceus.hyena.config import HyenaDNAConfig
from grelu_caduceus.models.caduceus import CaduceusModel
from grelu_caduceus.models.hyenadna import HyenaDNAModel
from grelu_caduceus.tasks.mlm import build_mlm_model

SMALL = dict(d_model=16, n_layer=1)
# Valid non-default values of the string options (numbers and flags are derived from the default).
OTHER_CHOICE = {"bidirectional_strategy": "ew_multiply", "dt_init": "constant", "dt_rank": 3}


def other_value(name, default):
    """A valid value for ``name`` that differs from its default."""
    if name in OTHER_CHOICE:
        return OTHER_CHOICE[name]
    if isinstance(default, bool):
        return not default
    if name in SMALL:
        return SMALL[name] + 8
    if isinstance(default, int):
        return default + 1
    return default * 2


def test_every_chosen_field_is_a_parameter():
    # The parameters cover CaduceusConfig's fields apart from those the tokenizer or file fix.
    fields = {f.name for f in dataclasses.fields(CaduceusConfig)}
    assert {"rms_norm", "fused_add_norm", "norm_epsilon", "residual_in_fp32", "rcps"} <= set(BACKBONE_PARAMS)
    assert {"dt_min", "dt_max", "conv_bias", "d_state"} <= set(BACKBONE_PARAMS) - fields


@pytest.mark.parametrize("name", BACKBONE_PARAMS)
def test_backbone_parameter_reaches_every_caduceus_builder(name):
    value = other_value(name, backbone_defaults()[name])
    params = {**SMALL, name: value}
    # the config and back
    assert CaduceusConfig.from_params(params).params()[name] == value
    # the supervised gReLU model
    assert CaduceusModel(n_tasks=1, **params).embedding.backbone.config.params()[name] == value
    # the masked LM
    assert build_mlm_model(params).config.params()[name] == value
    # the command line, both tasks (values as a user types them)
    typed = str(value).lower() if isinstance(value, bool) else value
    overrides = [f"model.{k}={typed if k == name else v}" for k, v in params.items()]
    mlm = build_lightning_model(load_config(["task=mlm", "data=demo_genome", *overrides]))
    assert mlm.model.config.params()[name] == value
    supervised = build_lightning_model(load_config(overrides), n_tasks=1)
    assert supervised.model.embedding.backbone.config.params()[name] == value


def test_rms_norm_false_trains_with_layer_norm():
    lm = build_lightning_model(load_config(["task=mlm", "data=demo_genome", "model.d_model=16", "model.n_layer=2",
                                            "model.rms_norm=false"]))
    norms = [layer.norm for layer in lm.model.backbone.layers] + [lm.model.backbone.norm_f]
    assert all(isinstance(n, torch.nn.LayerNorm) for n in norms)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 32), generator=torch.Generator().manual_seed(0)), 4)
    loss, _, n = lm.masked_loss(lm._ids(x.float().transpose(1, 2)), generator=torch.Generator().manual_seed(1))
    loss.backward()
    assert n > 0 and torch.isfinite(loss) and lm.model.backbone.norm_f.bias.grad is not None


@pytest.mark.parametrize("override, named", [
    ("model.final_pool_func=max", "model.final_pool_func"),
    ("model.crop_len=2", "model.crop_len"),
    ("model.dtype=bfloat16", "model.dtype"),
])
def test_mlm_refuses_head_options_it_cannot_use(override, named):
    with pytest.raises(ConfigError, match=f"task=mlm does not use {named} .*remove it; task=mlm uses .*rms_norm"):
        load_config(["task=mlm", "data=demo_genome", override])


def test_mlm_refuses_unknown_and_conflicting_keys():
    with pytest.raises(ValueError, match="'rms_nrom' \\(did you mean 'rms_norm'\\?\\).*valid options: .*d_model"):
        build_mlm_model({"rms_nrom": False})
    with pytest.raises(ValueError, match="pretrained_path and architecture parameters d_model"):
        build_mlm_model({"pretrained_path": "somewhere", "d_model": 16})
    with pytest.raises(ValueError, match="CaduceusModel got unknown option\\(s\\) 'n_layers'"):
        CaduceusModel(n_tasks=1, n_layers=2)


@pytest.mark.parametrize("name", HYENA_FIELDS)
def test_hyenadna_field_reaches_the_model(name):
    defaults = {f.name: f.default for f in dataclasses.fields(HyenaDNAConfig)}
    value = {"d_inner": 24, "emb_dim": 7, "l_max": 64, "d_model": 8}.get(name) or other_value(name, defaults[name])
    params = {"d_model": 8, "n_layer": 1, "l_max": 32, name: value}
    model = HyenaDNAModel(1, **params)
    assert getattr(model.config, name) == value
    assert model(torch.zeros(1, 4, 16)).shape == (1, 1, 1)


def test_a_checkpoints_backbone_config_is_not_a_setting():
    with pytest.raises(ConfigError, match="model.backbone_config is not a known key"):
        load_config(["model=caduceus_pretrained", "model.pretrained_path=x", "model.backbone_config={}"])


# --------------------------------------------------------------------------- the model presets (conf/model/*.yaml)
OUR_MODEL_PRESETS = ("caduceus", "caduceus_ph", "caduceus_pretrained", "hyenadna", "hyenadna_pretrained")
# Values a preset sets on purpose to something other than its model's default, with the reason.
PRESET_OVERRIDES = {
    ("caduceus_ph", "rcps"): (False, "Caduceus-Ph is the preset without RC parameter sharing"),
    ("hyenadna", "l_max"): ("${data.seq_len}", "the filters are sized to the data's windows, not tiny-1k's 1024"),
}


def preset_section(name: str) -> dict:
    """A model preset as the command line composes it (its defaults list first), uninterpolated."""
    from omegaconf import OmegaConf

    from grelu_caduceus.cli.train import CONFIG_DIR

    raw = OmegaConf.to_container(OmegaConf.load(CONFIG_DIR / "model" / f"{name}.yaml"), resolve=False)
    merged = {}
    for parent in raw.pop("defaults", []):
        if parent != "_self_":
            merged |= preset_section(parent)
    return merged | raw


@pytest.mark.parametrize("name", OUR_MODEL_PRESETS)
def test_model_presets_document_every_parameter_at_its_default(name):
    from grelu_caduceus.cli.config_schema import model_schema

    section = preset_section(name)
    schema = {f.name: f for f in dataclasses.fields(model_schema(section["model_type"]))}
    keys = set(section) - {"model_type"}
    settable = set(schema) - {"model_type"}
    assert keys <= settable, f"{name}.yaml: not parameters of {section['model_type']}: {sorted(keys - settable)}"
    assert settable <= keys, f"{name}.yaml does not document {sorted(settable - keys)}"
    for key in sorted(keys):
        f = schema[key]
        default = f.default_factory() if f.default is dataclasses.MISSING else f.default
        expected = PRESET_OVERRIDES.get((name, key), (default,))[0]
        value = section[key]
        assert value == expected and type(value) is type(expected), f"{name}.yaml {key}: {value!r}, default {default!r}"


def test_preset_overrides_differ_from_the_defaults_they_override():
    from grelu_caduceus.cli.config_schema import model_schema

    for (name, key), (value, _reason) in PRESET_OVERRIDES.items():
        default = {f.name: f.default for f in dataclasses.fields(model_schema(preset_section(name)["model_type"]))}[key]
        assert value != default, (name, key)
