"""BiMamba and RCPSMixer compute the literal formulas, through a shortcut: shared in_proj/out_proj,
reverse-direction kernels and weight-folded RC flips. Compared here with slow implementations of the
formulas themselves (flipped copies, one Mamba call per direction), in outputs and every gradient,
for every combination of strategy, weight tying, RCPS and fused_add_norm, and the RC equivariance
of the result."""

import itertools

import pytest
import torch
from helpers import rel_err

from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM
from grelu_caduceus.core.bimamba import BiMamba
from grelu_caduceus.core.rcps import RCPSMixer


def literal_bimamba_forward(self, hidden):
    """``mamba_fwd(u) (+ or *) flip(mamba_rev(flip(u)))``, as the architecture states it."""
    out = self.mamba_fwd(hidden)
    if not self.bidirectional:
        return out
    out_rev = self.mamba_rev(hidden.flip(1)).flip(1)
    return out + out_rev if self.strategy == "add" else out * out_rev


def literal_rcps_forward(self, x):
    """``[M(a), rc(M(rc(b)))]`` with flipped copies."""
    a, b = x.chunk(2, dim=-1)
    return torch.cat([self.submodule(a), self.submodule(b.flip(1, 2)).flip(1, 2)], dim=-1)


def run(model, onehot):
    """Output and the gradients of every parameter and of the one-hot input, for a fixed cotangent."""
    x = onehot.clone().requires_grad_(True)
    out = model.backbone(x)
    cotangent = torch.randn(out.shape, generator=torch.Generator().manual_seed(3), dtype=out.dtype)
    params = [p for p in model.parameters() if p.requires_grad]
    grads = torch.autograd.grad(out, [x, *params], cotangent)
    return out.detach(), grads


def make_model(strategy, weight_tie, rcps, fused_add_norm, dtype, bias=False, d_model=16):
    torch.manual_seed(0)
    config = CaduceusConfig(d_model=d_model, n_layer=2, rcps=rcps, fused_add_norm=fused_add_norm,
                            bidirectional_strategy=strategy, bidirectional_weight_tie=weight_tie,
                            ssm_cfg=dict(d_state=8, bias=bias))
    model = CaduceusForMaskedLM(config).to(dtype)
    with torch.no_grad():  # away from the initialisation's symmetric values (A, D, zero biases)
        for name, p in model.named_parameters():
            p.add_(torch.randn(p.shape, dtype=dtype) * (0.2 if "A_log" in name or name.endswith("D") else 0.05))
    return model


def onehot_input(L, seed=1, dtype=torch.float64):
    ids = torch.randint(0, 4, (2, L), generator=torch.Generator().manual_seed(seed))
    return torch.nn.functional.one_hot(ids, 4).transpose(1, 2).to(dtype)


COMBINATIONS = list(itertools.product(["add", "ew_multiply"], [True, False], [True, False], [True, False]))


@pytest.mark.parametrize("strategy, weight_tie, rcps, fused_add_norm", COMBINATIONS)
def test_shortcut_equals_literal_formula_float64(monkeypatch, strategy, weight_tie, rcps, fused_add_norm):
    """float64 (the exact 'torch' scan and the PyTorch convolution): equal to float64 rounding."""
    model = make_model(strategy, weight_tie, rcps, fused_add_norm, torch.float64)
    x = onehot_input(37)
    out, grads = run(model, x)
    monkeypatch.setattr(BiMamba, "forward", literal_bimamba_forward)
    monkeypatch.setattr(RCPSMixer, "forward", literal_rcps_forward)
    ref_out, ref_grads = run(model, x)
    assert rel_err(out, ref_out) < 1e-12
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert rel_err(g, r) < 1e-10, i


@pytest.mark.parametrize("strategy, weight_tie, rcps", list(itertools.product(["add", "ew_multiply"], [True, False],
                                                                               [True, False])))
def test_shortcut_equals_literal_formula_float32_cpu_kernels(monkeypatch, strategy, weight_tie, rcps):
    """float32 through the compiled CPU scan and convolution (both directions, L over a chunk)."""
    pytest.importorskip("numba")
    model = make_model(strategy, weight_tie, rcps, True, torch.float32, d_model=24)
    x = onehot_input(300, dtype=torch.float32)
    out, grads = run(model, x)
    monkeypatch.setattr(BiMamba, "forward", literal_bimamba_forward)
    monkeypatch.setattr(RCPSMixer, "forward", literal_rcps_forward)
    ref_out, ref_grads = run(model, x)
    assert rel_err(out, ref_out) < 1e-5
    for i, (g, r) in enumerate(zip(grads, ref_grads)):
        assert rel_err(g, r) < 1e-4, i


def test_out_proj_bias_counted_once_per_direction(monkeypatch):
    """With biased projections (bias=True) the single shared out_proj adds the bias twice, as the
    two out_proj calls of the formula do."""
    model = make_model("add", True, True, True, torch.float64, bias=True)
    x = onehot_input(20)
    out, grads = run(model, x)
    monkeypatch.setattr(BiMamba, "forward", literal_bimamba_forward)
    monkeypatch.setattr(RCPSMixer, "forward", literal_rcps_forward)
    ref_out, ref_grads = run(model, x)
    assert rel_err(out, ref_out) < 1e-12
    for g, r in zip(grads, ref_grads):
        assert rel_err(g, r) < 1e-10


@pytest.mark.parametrize("rcps", [True, False])
def test_bimamba_rc_argument_is_the_reverse_complement_conjugate(rcps):
    """BiMamba(h, rc=True) == rc(BiMamba(rc(h))) for one mixer, also when not bidirectional."""
    for bidirectional in (True, False):
        torch.manual_seed(0)
        mixer = BiMamba(12, bidirectional=bidirectional, d_state=4).double()
        h = torch.randn(2, 25, 12, dtype=torch.float64)
        assert rel_err(mixer(h, rc=True), mixer(h.flip(1, 2)).flip(1, 2)) < 1e-12


@pytest.mark.parametrize("strategy, weight_tie", list(itertools.product(["add", "ew_multiply"], [True, False])))
def test_ps_model_stays_rc_equivariant(strategy, weight_tie):
    model = make_model(strategy, weight_tie, True, True, torch.float64).eval()
    x = onehot_input(50)
    with torch.no_grad():
        out = model.backbone(x)
        out_rc = model.backbone(x.flip(1, 2))
    assert rel_err(out_rc, out.flip(1, 2)) < 1e-6  # the CPU convolution computes in float32


@pytest.mark.parametrize("strategy, weight_tie, rcps, fused_add_norm, bias",
                         [c + (False,) for c in COMBINATIONS] + [("add", True, True, True, True),
                                                                  ("add", True, False, True, True)])
def test_inference_path_equals_literal_formula(monkeypatch, strategy, weight_tie, rcps, fused_add_norm, bias):
    """Without autograd the CPU path takes its inference shortcuts (the reverse scan adding into the
    forward direction's output, the one-pass PS add + RMSNorm, dt_proj inside the scan, each RC
    strand's out_proj writing its half of the output): equal to
    the literal formula in float64 to float32 rounding (batch 2, L not a multiple of any block)."""
    pytest.importorskip("numba")
    model = make_model(strategy, weight_tie, rcps, fused_add_norm, torch.float32, bias=bias, d_model=24).eval()
    x = onehot_input(301, dtype=torch.float32)
    with torch.no_grad():
        out = model.backbone(x)
    model64 = make_model(strategy, weight_tie, rcps, fused_add_norm, torch.float64, bias=bias, d_model=24).eval()
    model64.load_state_dict({k: v.double() for k, v in model.state_dict().items()})
    monkeypatch.setattr(BiMamba, "forward", literal_bimamba_forward)
    monkeypatch.setattr(RCPSMixer, "forward", literal_rcps_forward)
    with torch.no_grad():
        ref = model64.backbone(x.double())
    assert out.dtype == torch.float32 and rel_err(out, ref) < 1e-5
