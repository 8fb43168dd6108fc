"""Caduceus core options: the scan-backend environment variable, dtype casting, fused_add_norm,
Mamba/ssm_cfg option checking and gradient checkpointing."""

import json

import pytest
import torch
from helpers import rel_err, write_checkpoint
from spec_reference import forward as spec_forward

import grelu_caduceus.core.caduceus as caduceus_module
import grelu_caduceus.core.scan as scan_module
from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM, Mamba, load_pretrained, save_pretrained
from grelu_caduceus.core.scan import resolve_backend, selective_scan

COMP = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15])
ENV = "GRELU_CADUCEUS_SCAN"


def random_ids(g, batch=2, length=61):
    return torch.randint(7, 12, (batch, length), generator=g)


def scan_inputs(dtype=torch.float32, batch=1, dim=4, L=9, N=3):
    g = torch.Generator().manual_seed(0)
    u, delta = torch.randn(batch, dim, L, generator=g), torch.randn(batch, dim, L, generator=g)
    A = -torch.rand(dim, N, generator=g) - 0.1
    B, C = torch.randn(batch, N, L, generator=g), torch.randn(batch, N, L, generator=g)
    return [t.to(dtype) for t in (u, delta, A, B, C)]


# 1. GRELU_CADUCEUS_SCAN decides what "auto" means.


def test_env_var_decides_what_auto_means(monkeypatch):
    monkeypatch.setenv(ENV, "reference")
    assert resolve_backend("auto", "cpu") == "reference"
    assert resolve_backend(None, "cpu") == "reference"
    assert resolve_backend("torch", "cpu") == "torch"  # an explicit backend still wins
    monkeypatch.setenv(ENV, "auto")
    assert resolve_backend("auto", "cpu") == scan_module.available_backends("cpu")[0]
    monkeypatch.delenv(ENV)
    assert resolve_backend("auto", "cpu") == scan_module.available_backends("cpu")[0]


def test_env_var_reaches_the_scan_of_a_model(monkeypatch):
    """A model whose mixers say "auto" (the default) runs the backend the variable names."""
    calls = []
    real = scan_module.selective_scan_reference

    def spy(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(scan_module, "selective_scan_reference", spy)
    mixer = Mamba(8).eval()
    assert mixer.scan_backend == "auto"
    x = torch.randn(1, 5, 8)
    with torch.no_grad():
        expected = mixer(x)
        assert not calls
        monkeypatch.setenv(ENV, "reference")
        assert rel_err(mixer(x), expected) < 1e-5
    assert len(calls) == 1
    mixer.scan_backend = "torch"  # explicit, so the variable no longer applies
    with torch.no_grad():
        mixer(x)
    assert len(calls) == 1


def test_float64_under_auto_stays_exact(monkeypatch):
    monkeypatch.setenv(ENV, "cpu")  # a float32 kernel: float64 inputs keep the exact torch loop
    assert resolve_backend("auto", "cpu", torch.float64) == "torch"
    assert resolve_backend("auto", "cpu", torch.float32) == "cpu"
    monkeypatch.setenv(ENV, "reference")
    assert resolve_backend("auto", "cpu", torch.float64) == "reference"
    y = selective_scan(*scan_inputs(torch.float64))
    assert y.dtype == torch.float64


@pytest.mark.parametrize("value", ["numba", "Torch", "fast"])
def test_bad_env_var_is_a_clear_error(monkeypatch, value):
    monkeypatch.setenv(ENV, value)
    choices = "auto, mamba_ssm, triton, cpu, torch, reference"
    with pytest.raises(ValueError, match=rf"GRELU_CADUCEUS_SCAN='{value}'.*{choices}"):
        selective_scan(*scan_inputs())
    with pytest.raises(ValueError, match="GRELU_CADUCEUS_SCAN"):  # also for float64 inputs
        selective_scan(*scan_inputs(torch.float64))
    assert resolve_backend("torch", "cpu") == "torch"  # an explicit backend does not read it


# 2. load_pretrained(dtype=...) keeps A_log and D in float32.


def test_load_pretrained_bf16_keeps_a_log_and_d_float32(tmp_path, rng):
    write_checkpoint(tmp_path, d_model=16, n_layer=2, rcps=True)
    model = load_pretrained(tmp_path, dtype=torch.bfloat16)
    dtypes = {name: p.dtype for name, p in model.named_parameters()}
    ssm = {n for n in dtypes if n.endswith((".A_log", ".D"))}
    assert len(ssm) == 2 * 2 * 2  # layers x (mamba_fwd, mamba_rev) x (A_log, D)
    assert all(dtypes[n] == torch.float32 for n in ssm)
    assert all(dtypes[n] == torch.bfloat16 for n in set(dtypes) - ssm)
    ids = random_ids(rng)
    with torch.no_grad():
        logits = model(ids)
        reference = load_pretrained(tmp_path)(ids)
    assert torch.isfinite(logits).all()
    assert rel_err(logits, reference) < 5e-2
    double = load_pretrained(tmp_path, dtype=torch.float64)
    assert all(p.dtype == torch.float64 for p in double.parameters())  # never less precise than the rest


# 3. fused_add_norm false: the released unfused path (halves in place), against the float64 spec.


@pytest.mark.parametrize("rcps", [False, True])
@pytest.mark.parametrize("fused_add_norm", [True, False])
def test_fused_add_norm_matches_spec(tmp_path, rng, rcps, fused_add_norm):
    sd, cfg = write_checkpoint(tmp_path, d_model=24, n_layer=3, rcps=rcps, fused_add_norm=fused_add_norm)
    model = load_pretrained(tmp_path)
    assert model.config.fused_add_norm is fused_add_norm
    ids = random_ids(rng)
    with torch.no_grad():
        logits, hidden = model(ids, return_hidden=True)
    ref_logits, ref_hidden = spec_forward(sd, cfg, ids)
    assert rel_err(logits, ref_logits) < 1e-5
    assert rel_err(hidden, ref_hidden) < 1e-5


def test_unfused_ps_differs_from_fused_and_is_equivariant(tmp_path, rng):
    """Same weights, the two settings: different models, both RC-equivariant; the norms sit under
    the released unfused code's state-dict names."""
    sd, cfg = write_checkpoint(tmp_path, d_model=24, n_layer=3, rcps=True, fused_add_norm=False)
    ids = random_ids(rng)
    unfused, _ = spec_forward(sd, cfg, ids)
    swapped, _ = spec_forward(sd, cfg, ids, block_half_order="other")
    assert rel_err(swapped, unfused) > 1e-2
    model = load_pretrained(tmp_path)
    keys = set(model.state_dict())
    assert "caduceus.backbone.layers.0.norm.submodule.weight" in keys
    assert "caduceus.backbone.norm_f.submodule.weight" in keys
    with torch.no_grad():
        logits = model(ids)
        logits_rc = model(COMP[ids.flip(1)])
    assert rel_err(logits, unfused) < 1e-5
    assert rel_err(logits_rc, logits.flip(1)[..., COMP]) < 1e-5
    save_pretrained(model, tmp_path / "again")
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "again")(ids), logits)


def test_unfused_block_normalises_in_the_norms_dtype():
    """As mamba-ssm's unfused path: the float32 residual sum is cast to the (bf16) norm's dtype first."""
    config = CaduceusConfig(d_model=8, n_layer=1, fused_add_norm=False, residual_in_fp32=True)
    block = caduceus_module.Block(config).to(torch.bfloat16)
    seen = []
    block.norm.register_forward_pre_hook(lambda module, args: seen.append(args[0].dtype))
    hidden = torch.randn(1, 5, 8, dtype=torch.bfloat16)
    with torch.no_grad():
        _, residual = block(hidden, torch.randn(1, 5, 8))
    assert seen == [torch.bfloat16] and residual.dtype == torch.float32


# 4. Unknown Mamba options and ssm_cfg keys are refused, with a close match.


def test_unknown_mamba_options_are_refused():
    with pytest.raises(TypeError, match=r"'dt_mn' \(did you mean 'dt_min'\?\).*valid options: d_state"):
        Mamba(16, dt_mn=0.01)
    with pytest.raises(TypeError, match="'flavour'"):
        Mamba(16, flavour=1)
    with pytest.raises(ValueError, match=r"dt_init 'rand' \(did you mean 'random'\?\).*'random', 'constant'"):
        Mamba(16, dt_init="rand")
    constant = Mamba(16, dt_init="constant", use_fast_path=False)  # both real options
    assert torch.all(constant.dt_proj.weight == constant.dt_proj.weight.flatten()[0])


def test_ssm_cfg_keys_are_checked():
    with pytest.raises(ValueError, match=r"ssm_cfg.*'d_stat' \(did you mean 'd_state'\?\).*use_fast_path"):
        CaduceusConfig(ssm_cfg={"d_stat": 8})
    with pytest.raises(ValueError, match="layer='Mamba2'.*'Mamba1'"):
        CaduceusConfig(ssm_cfg={"layer": "Mamba2"})
    config = CaduceusConfig(d_model=16, n_layer=1, ssm_cfg={"layer": "Mamba1", "d_state": 8})
    assert CaduceusForMaskedLM(config).backbone.layers[0].mixer.mamba_fwd.d_state == 8


def test_released_ssm_cfg_loads(tmp_path, rng):
    """The released config.json's full ssm_cfg, use_fast_path included, loads; a typo in it does not."""
    write_checkpoint(tmp_path, d_model=16, n_layer=2, rcps=True)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["ssm_cfg"] = {"bias": False, "conv_bias": True, "d_conv": 4, "d_state": 16, "dt_init": "random",
                      "dt_init_floor": 0.0001, "dt_max": 0.1, "dt_min": 0.001, "dt_rank": "auto", "dt_scale": 1.0,
                      "expand": 2, "use_fast_path": True}
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with torch.no_grad():
        assert torch.isfinite(load_pretrained(tmp_path)(random_ids(rng))).all()
    cfg["ssm_cfg"]["d_conf"] = 4
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(ValueError, match="'d_conf' \\(did you mean 'd_conv'\\?\\)"):
        load_pretrained(tmp_path)


# 5. Gradient checkpointing: HF-style enable/disable, use_reentrant, stride.


def _grads(model, ids):
    model.zero_grad()
    model(ids).logsumexp(-1).sum().backward()
    return torch.cat([p.grad.flatten() for p in model.parameters()])


@pytest.fixture
def ps_model():
    torch.manual_seed(0)
    return CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=4, rcps=True)).train()


def test_checkpointing_gives_the_same_gradients(ps_model, rng):
    ids = random_ids(rng, length=40)
    reference = _grads(ps_model, ids)
    cases = [({"use_reentrant": False}, 1), ({"use_reentrant": True}, 1), (None, 2), ({"use_reentrant": True}, 3)]
    for kwargs, stride in cases:
        ps_model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs, stride=stride)
        assert ps_model.is_gradient_checkpointing
        assert rel_err(_grads(ps_model, ids), reference) < 1e-6, (kwargs, stride)
    ps_model.gradient_checkpointing_disable()
    assert not ps_model.is_gradient_checkpointing
    assert rel_err(_grads(ps_model, ids), reference) < 1e-6


def test_checkpointing_calls_checkpoint_on_every_kth_layer_with_the_kwargs(ps_model, rng, monkeypatch):
    calls = []
    real = caduceus_module.checkpoint

    def counting(function, *args, **kwargs):
        calls.append((function, kwargs))
        return real(function, *args, **kwargs)

    monkeypatch.setattr(caduceus_module, "checkpoint", counting)
    layers = list(ps_model.backbone.layers)
    ids = random_ids(rng, length=20)

    def checkpointed_layers():
        calls.clear()
        ps_model(ids).sum().backward()
        return [layers.index(function) for function, _ in calls]

    assert checkpointed_layers() == []  # off by default
    ps_model.gradient_checkpointing_enable()
    assert checkpointed_layers() == [0, 1, 2, 3]
    assert all(kwargs == {"use_reentrant": False} for _, kwargs in calls)
    ps_model.gradient_checkpointing_enable({"use_reentrant": True, "preserve_rng_state": False}, stride=2)
    assert checkpointed_layers() == [0, 2]
    assert all(kwargs == {"use_reentrant": True, "preserve_rng_state": False} for _, kwargs in calls)
    ps_model.backbone.gradient_checkpointing_stride = 3
    assert checkpointed_layers() == [0, 3]
    ps_model.eval()  # evaluation never recomputes
    assert checkpointed_layers() == []
    ps_model.train()
    ps_model.gradient_checkpointing_disable()
    assert checkpointed_layers() == []


@pytest.mark.parametrize("stride", [0, -2, 1.5, 2.0, True, False, "2", None])
def test_bad_checkpointing_stride_is_refused(ps_model, stride):
    with pytest.raises(ValueError, match="gradient_checkpointing_stride must be a positive integer"):
        ps_model.gradient_checkpointing_enable(stride=stride)
    assert not ps_model.is_gradient_checkpointing and ps_model.backbone.gradient_checkpointing_stride == 1
    with pytest.raises(ValueError, match="positive integer"):
        ps_model.backbone.gradient_checkpointing_stride = stride


def test_old_boolean_enable_call_is_refused(ps_model):
    """gradient_checkpointing_enable(False) must not silently switch checkpointing on."""
    with pytest.raises(TypeError, match="gradient_checkpointing_disable"):
        ps_model.gradient_checkpointing_enable(False)
    assert not ps_model.is_gradient_checkpointing


def test_grelu_models_pass_checkpointing_options_through(tmp_path):
    pytest.importorskip("grelu")
    from grelu_caduceus.models.caduceus import CaduceusModel, CaduceusPretrainedModel
    from grelu_caduceus.tasks.mlm import build_mlm_model

    model = CaduceusModel(n_tasks=1, d_model=16, n_layer=3, gradient_checkpointing=True,
                          gradient_checkpointing_stride=2)
    backbone = model.embedding.backbone
    assert backbone.gradient_checkpointing and backbone.gradient_checkpointing_stride == 2
    assert not CaduceusModel(n_tasks=1, d_model=16, n_layer=1).embedding.backbone.gradient_checkpointing
    with pytest.raises(ValueError, match="positive integer"):
        CaduceusModel(n_tasks=1, d_model=16, n_layer=1, gradient_checkpointing_stride=0)
    write_checkpoint(tmp_path, d_model=16, n_layer=2)
    pretrained = CaduceusPretrainedModel(n_tasks=1, pretrained_path=str(tmp_path), gradient_checkpointing=True,
                                         dtype="bfloat16")
    assert pretrained.embedding.backbone.gradient_checkpointing
    ssm_dtypes = {p.dtype for n, p in pretrained.embedding.named_parameters() if n.endswith((".A_log", ".D"))}
    assert ssm_dtypes == {torch.float32}
    mlm = build_mlm_model({"d_model": 16, "n_layer": 2, "gradient_checkpointing": True,
                           "gradient_checkpointing_stride": 2})
    assert mlm.is_gradient_checkpointing and mlm.backbone.gradient_checkpointing_stride == 2
    assert not build_mlm_model({"d_model": 16, "n_layer": 2}).is_gradient_checkpointing
