"""The compiled CPU scan and convolution kernels against float64 references."""

import pytest
import torch
import torch.nn.functional as F
from helpers import rel_err

from grelu_caduceus.core.scan import available_backends, resolve_backend, selective_scan, selective_scan_reference
from grelu_caduceus.core.scan.cpu import CHUNK, LANES, causal_conv1d_cpu


def scan_inputs(g, batch, d_inner, L, N, channels_last=False):
    def r(*s, scale=1.0):
        return torch.randn(*s, generator=g) * scale

    u, delta, z = r(batch, d_inner, L), r(batch, d_inner, L, scale=0.5), r(batch, d_inner, L)
    if channels_last:  # the layout the Mamba mixer passes: transposed views of (B, L, D) tensors
        u, delta, z = (t.transpose(1, 2).contiguous().transpose(1, 2) for t in (u, delta, z))
    A = -(torch.rand(d_inner, N, generator=g) * 2 + 0.1)
    B, C = r(batch, N, L), r(batch, N, L)
    return dict(u=u, delta=delta, A=A, B=B, C=C, D=r(d_inner), z=z, delta_bias=r(d_inner, scale=0.3))


# The last: 12 channel blocks at d_state 64, so forward tasks and backward groups each hold several
# blocks, stepped together in sub-groups (see _fwd_group, _bwd_group).
SHAPES = [(2, 5, 300, 16), (1, 3, CHUNK * 2 + 7, 8), (2, LANES + 3, 70, 16), (1, 32, CHUNK, 4),
          (1, 11 * LANES + 14, CHUNK + 12, 64)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("optional", ["all", "none"])
def test_cpu_scan_matches_reference(rng, shape, optional):
    inp = scan_inputs(rng, *shape, channels_last=shape[1] == LANES + 3)
    if optional == "none":
        inp.update(D=None, z=None, delta_bias=None)
    leaves = {k: v.requires_grad_() for k, v in inp.items() if v is not None}
    y = selective_scan(**inp, delta_softplus=optional == "all", backend="cpu")
    y_ref = selective_scan_reference(**{k: v.double() if v is not None else None for k, v in inp.items()},
                                     delta_softplus=optional == "all")
    assert y.dtype == torch.float32 and y.shape == y_ref.shape
    assert rel_err(y, y_ref) < 1e-5
    g = torch.randn(y.shape, generator=rng)
    grads = torch.autograd.grad(y, list(leaves.values()), g)
    grads_ref = torch.autograd.grad(y_ref, list(leaves.values()), g.double())
    for name, a, b in zip(leaves, grads, grads_ref):
        assert rel_err(a, b) < 1e-5, name


def test_inference_path_fuses_gate_like_training_path(rng):
    inp = scan_inputs(rng, 1, 20, 150, 16, channels_last=True)
    with torch.no_grad():
        fused = selective_scan(**inp, delta_softplus=True, backend="cpu")
    unfused = selective_scan(**{k: v.requires_grad_() for k, v in inp.items()}, delta_softplus=True, backend="cpu")
    assert rel_err(fused, unfused.detach()) < 1e-6


def test_bfloat16_inputs(rng):
    inp = scan_inputs(rng, 1, 8, 100, 16)
    y = selective_scan(**{k: v.bfloat16() if k != "A" else v for k, v in inp.items()}, delta_softplus=True,
                       backend="cpu")
    y_ref = selective_scan_reference(**{k: v.bfloat16().double() if k != "A" else v.double() for k, v in inp.items()},
                                     delta_softplus=True)
    assert y.dtype == torch.bfloat16 and rel_err(y, y_ref) < 1e-2


@pytest.mark.parametrize("K", [4, 3])
def test_causal_conv_matches_conv1d(rng, K):
    x = torch.randn(2, 1100, 24, generator=rng, dtype=torch.float64)
    w = torch.randn(24, 1, K, generator=rng, dtype=torch.float64)
    b = torch.randn(24, generator=rng, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (x, w, b)]
    ref = F.silu(F.conv1d(leaves[0].transpose(1, 2), leaves[1], leaves[2], padding=K - 1, groups=24)[..., :1100])
    ref = ref.transpose(1, 2)
    got_leaves = [t.float().requires_grad_() for t in (x, w, b)]
    got = causal_conv1d_cpu(*got_leaves)
    assert rel_err(got, ref) < 1e-6
    g = torch.randn(ref.shape, generator=rng, dtype=torch.float64)
    for a, c in zip(torch.autograd.grad(got, got_leaves, g.float()), torch.autograd.grad(ref, leaves, g)):
        assert rel_err(a, c) < 1e-5


def test_backend_selection():
    assert available_backends("cpu")[0] == "cpu"
    assert resolve_backend("auto", torch.device("cpu")) == "cpu"
    with pytest.raises(ValueError, match="choose one of"):
        resolve_backend("cuda_magic", torch.device("cpu"))


def test_causal_conv_reads_channel_slices_in_place(rng):
    """The mixer passes x as the first half of in_proj's output: a strided channel slice."""
    xz = torch.randn(2, 300, 40, generator=rng)
    w, b = torch.randn(20, 1, 4, generator=rng), torch.randn(20, generator=rng)
    for x in (xz[..., :20], xz[..., 20:]):
        ref = F.silu(F.conv1d(x.transpose(1, 2), w, b, padding=3, groups=20)[..., :300]).transpose(1, 2)
        assert rel_err(causal_conv1d_cpu(x, w, b), ref) < 1e-6
        xg = x.clone().requires_grad_()
        go = torch.randn(ref.shape, generator=rng)
        (g_ref,) = torch.autograd.grad(F.silu(F.conv1d(xg.transpose(1, 2), w, b, padding=3, groups=20)[..., :300])
                                       .transpose(1, 2), xg, go)
        xs = xz.clone().requires_grad_()
        view = xs[..., :20] if x.storage_offset() == 0 else xs[..., 20:]
        (g,) = torch.autograd.grad(causal_conv1d_cpu(view, w, b), xs, go)
        part = g[..., :20] if x.storage_offset() == 0 else g[..., 20:]
        assert rel_err(part, g_ref) < 1e-6


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("optional", ["all", "none"])
def test_cpu_reverse_matches_flipped_reference(shape, optional):
    """reverse=True equals flip(scan(flip(inputs))) (float64 reference) in the output and every gradient."""
    from test_scan_torch import make_inputs, relative_errors

    batch, dim, L, N = shape
    flags = dict(D=False, z=False, bias=False, softplus=False) if optional == "none" else {}
    inputs = {**make_inputs(batch, dim, L, N, **flags), "reverse": True}
    errors = relative_errors(lambda **kw: selective_scan(**kw, backend="cpu"), inputs)
    bad = {k: v for k, v in errors.items() if not v <= 1e-5}
    assert not bad, f"relative errors above 1e-5: {bad}"


def test_cpu_reverse_inference_path(rng):
    inp = scan_inputs(rng, 1, 20, 150, 16, channels_last=True)
    with torch.no_grad():
        y = selective_scan(**inp, delta_softplus=True, backend="cpu", reverse=True)
    flipped = {k: v.flip(-1) if v.dim() == 3 else v for k, v in inp.items()}
    y_ref = selective_scan_reference(**{k: v.double() for k, v in flipped.items()}, delta_softplus=True).flip(-1)
    assert rel_err(y, y_ref) < 1e-5


@pytest.mark.parametrize("K", [4, 3])
@pytest.mark.parametrize("kernel", ["cpu", "torch"])
def test_reverse_conv_matches_flipped_conv(rng, K, kernel, monkeypatch):
    """causal_conv1d(reverse=True) == flip(conv(flip(x))) in outputs and gradients (x read in place)."""
    from grelu_caduceus.core import conv

    if kernel == "torch":
        monkeypatch.setattr(conv, "_importable", lambda name: False)
    xz = torch.randn(2, 1100, 48, generator=rng, dtype=torch.float64)
    w = torch.randn(24, 1, K, generator=rng, dtype=torch.float64)
    b = torch.randn(24, generator=rng, dtype=torch.float64)
    leaves = [t.clone().requires_grad_() for t in (xz, w, b)]
    x = leaves[0][..., 24:].flip(1)
    ref = F.silu(F.conv1d(x.transpose(1, 2), leaves[1], leaves[2], padding=K - 1, groups=24)[..., :1100])
    ref = ref.transpose(1, 2).flip(1)
    dtype = torch.float32 if kernel == "cpu" else torch.float64
    got_leaves = [t.detach().to(dtype).requires_grad_() for t in (xz, w, b)]
    got = conv.causal_conv1d(got_leaves[0][..., 24:], got_leaves[1], got_leaves[2], reverse=True)
    assert rel_err(got, ref) < 1e-6
    g = torch.randn(ref.shape, generator=rng, dtype=torch.float64)
    for a, c in zip(torch.autograd.grad(got, got_leaves, g.to(dtype)), torch.autograd.grad(ref, leaves, g)):
        assert rel_err(a, c) < 1e-5


# The step-size projection folded into the kernels (Mamba's dt_proj): delta is (B, R, L) and the
# step sizes are delta_proj @ delta. Odd lengths (not multiples of CHUNK), batch > 1, d_inner not a
# multiple of LANES, several channel blocks per task.
FOLDED_SHAPES = [(2, 5, 300, 16, 3), (1, LANES + 3, CHUNK * 2 + 7, 8, 1), (2, 2 * LANES, 150, 16, 4),
                 (1, 11 * LANES + 14, CHUNK + 12, 16, 16)]


@pytest.mark.parametrize("shape", FOLDED_SHAPES)
@pytest.mark.parametrize("optional", ["all", "none", "bias_no_softplus"])
@pytest.mark.parametrize("reverse", [False, True])
def test_cpu_scan_with_folded_delta_proj(rng, shape, optional, reverse):
    """Outputs and every gradient (dt_proj's weight and the low-rank input included) against the
    unfused formula in float64: scan(u, W @ dt, ...)."""
    batch, d_inner, L, N, R = shape
    inp = scan_inputs(rng, batch, d_inner, L, N, channels_last=True)
    xdbl = torch.randn(batch, L, R + 2 * N, generator=rng)  # the mixer's x_proj output, sliced in place
    inp.update(delta=xdbl[..., :R].transpose(1, 2), B=xdbl[..., R:R + N].transpose(1, 2),
               C=xdbl[..., R + N:].transpose(1, 2))
    W = torch.randn(d_inner, R, generator=rng) * R**-0.5
    if optional == "none":
        inp.update(D=None, z=None, delta_bias=None)
    if optional != "all":  # positive step sizes without the softplus (bias positive too)
        inp.update(delta=inp["delta"].abs() * 0.1)
        W = W.abs()
        if optional == "bias_no_softplus":
            inp["delta_bias"] = inp["delta_bias"].abs()
    softplus = optional == "all"
    leaves = {k: v.detach().clone().requires_grad_() for k, v in inp.items() if v is not None}
    Wl = W.clone().requires_grad_()
    y = selective_scan(**leaves, delta_softplus=softplus, backend="cpu", reverse=reverse, delta_proj=Wl)
    ref_in = {k: v.double() for k, v in leaves.items()}
    ref_in["delta"] = (ref_in["delta"].transpose(1, 2) @ Wl.double().t()).transpose(1, 2)
    y_ref = selective_scan_reference(**ref_in, delta_softplus=softplus, reverse=reverse)
    assert y.dtype == torch.float32 and y.shape == y_ref.shape
    assert rel_err(y, y_ref) < 1e-5
    g = torch.randn(y.shape, generator=rng)
    targets = list(leaves.values()) + [Wl]
    grads = torch.autograd.grad(y, targets, g)
    grads_ref = torch.autograd.grad(y_ref, targets, g.double())
    for name, a, b in zip(list(leaves) + ["delta_proj"], grads, grads_ref):
        assert a.shape == b.shape and rel_err(a, b) < 1e-5, name


@pytest.mark.parametrize("backend", ["cpu", "torch"])
@pytest.mark.parametrize("grad", [False, True])
def test_scan_add_to(rng, backend, grad):
    """add_to: the sum with a previous output, in place under no_grad (CPU), out of place otherwise;
    gradients reach both terms."""
    inp = scan_inputs(rng, 2, 2 * LANES, 140, 16, channels_last=True)
    W = torch.randn(2 * LANES, 4, generator=rng) * 0.5
    inp["delta"] = torch.randn(2, 140, 4, generator=rng).transpose(1, 2)
    with torch.no_grad():
        first = selective_scan(**inp, delta_softplus=True, backend="cpu", delta_proj=W)
        second = selective_scan(**inp, delta_softplus=True, backend="cpu", delta_proj=W, reverse=True)
    expect = first + second
    if not grad:
        with torch.no_grad():
            acc = first.clone()
            got = selective_scan(**inp, delta_softplus=True, backend=backend, delta_proj=W, reverse=True, add_to=acc)
        assert rel_err(got, expect) < 1e-5
        if backend == "cpu":
            assert got.data_ptr() == acc.data_ptr()
        return
    base = first.clone().requires_grad_()
    u = inp.pop("u").clone().requires_grad_()
    got = selective_scan(u, **inp, delta_softplus=True, backend=backend, delta_proj=W, reverse=True, add_to=base)
    assert rel_err(got, expect) < 1e-5
    g = torch.randn(got.shape, generator=rng)
    gb, gu = torch.autograd.grad(got, [base, u], g)
    assert torch.equal(gb, g)
    (gu_ref,) = torch.autograd.grad(selective_scan(u, **inp, delta_softplus=True, backend=backend, delta_proj=W,
                                                   reverse=True), u, g)
    assert rel_err(gu, gu_ref) < 1e-6


@pytest.mark.parametrize("swap", [True, False])
@pytest.mark.parametrize("with_residual", [True, False])
@pytest.mark.parametrize("grad", [True, False])
def test_ps_add_rms_norm_matches_formula(rng, swap, with_residual, grad):
    """The one-pass PS add + RMSNorm (a block's with swap, the final norm's without) against the
    formula in float64: output, new residual, and the gradients of hidden, residual and weight."""
    from grelu_caduceus.core.scan.cpu import ROW_BLOCK, ps_add_rms_norm

    d, eps = 20, 1e-5
    shape = (2, ROW_BLOCK + 37, 2 * d)
    h, r = torch.randn(shape, generator=rng), torch.randn(shape, generator=rng)
    w = 1 + 0.3 * torch.randn(d, generator=rng)

    def norm(x, v):
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * v

    def formula(h, r, w):
        s = h + r if r is not None else h
        s1, s2 = s.chunk(2, dim=-1)
        if swap:
            return torch.cat([norm(s2, w), norm(s1, w.flip(0))], -1), torch.cat([s2, s1], -1)
        return torch.cat([norm(s1, w), norm(s2, w.flip(0))], -1), None

    leaves = [h.clone().requires_grad_(grad), r.clone().requires_grad_(grad) if with_residual else None,
              w.clone().requires_grad_(grad)]
    ref_leaves = [t.double().detach().requires_grad_() if t is not None else None for t in leaves]
    with torch.set_grad_enabled(grad):
        got = ps_add_rms_norm(*leaves, eps, swap)
    got_n, got_r = got if swap else (got, None)
    ref_n, ref_r = formula(*ref_leaves)
    assert rel_err(got_n, ref_n) < 1e-6
    if swap:
        assert rel_err(got_r, ref_r) < 1e-7
    if not grad:
        return
    gn = torch.randn(shape, generator=rng)
    gr = torch.randn(shape, generator=rng)
    outs, ref_outs, cots = [got_n], [ref_n], [gn]
    if swap:
        outs, ref_outs, cots = outs + [got_r], ref_outs + [ref_r], cots + [gr]
    targets = [t for t in leaves if t is not None]
    ref_targets = [t for t in ref_leaves if t is not None]
    grads = torch.autograd.grad(outs, targets, cots)
    ref_grads = torch.autograd.grad(ref_outs, ref_targets, [c.double() for c in cots])
    for a, b in zip(grads, ref_grads):
        assert rel_err(a, b) < 1e-5


def test_training_after_first_use_under_inference_mode():
    """Lightning validates under torch.inference_mode before training; the scan module, first imported
    there, must not keep tensors that autograd then refuses to save (fresh process: a cold import)."""
    import subprocess
    import sys
    import textwrap

    code = textwrap.dedent("""
        import torch
        import grelu.model.models as models
        import grelu_caduceus  # noqa: F401
        model = models.CaduceusModel(n_tasks=1, d_model=32, n_layer=2, rcps=True, final_pool_func="avg",
                                     scan_backend="cpu")
        x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 64)), 4).float().transpose(1, 2)
        with torch.inference_mode():
            model(x)  # imports and first runs the CPU kernels
        model.train()
        model(x).sum().backward()
        assert all(p.grad is not None for p in model.parameters() if p.requires_grad)
        print("trained")
    """)
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600)
    assert run.returncode == 0 and "trained" in run.stdout, run.stderr[-2000:]
