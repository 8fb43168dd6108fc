"""The pure-PyTorch selective scan against the float64 reference: outputs and all gradients."""

import pytest
import torch

from grelu_caduceus.core.scan import selective_scan
from grelu_caduceus.core.scan.reference import selective_scan_reference
from grelu_caduceus.core.scan.torch_scan import selective_scan_torch

GRAD_NAMES = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")


def make_inputs(batch, dim, L, N, dtype=torch.float32, D=True, z=True, bias=True, softplus=True, seed=0):
    """Random scan arguments in the layout of ``selective_scan`` (a dict, absent options as None)."""
    g = torch.Generator().manual_seed(seed)

    def randn(*shape, scale=1.0):
        return (torch.randn(*shape, generator=g) * scale).to(dtype)

    if softplus:
        delta = randn(batch, dim, L, scale=0.5) - 1.0
    else:  # already a positive step size
        delta = (torch.rand(batch, dim, L, generator=g) * 0.3 + 0.01).to(dtype)
    return dict(
        u=randn(batch, dim, L),
        delta=delta.to(dtype),
        A=(-(torch.rand(dim, N, generator=g) * 4 + 0.1)).to(dtype),
        B=randn(batch, N, L),
        C=randn(batch, N, L),
        D=randn(dim) if D else None,
        z=randn(batch, dim, L) if z else None,
        delta_bias=randn(dim, scale=0.5) if bias else None,
        delta_softplus=softplus,
    )


def flipped_reference(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False):
    """The reversed scan by its definition, ``flip(scan(flip(inputs)))`` along L, in float64."""
    f = [t.flip(-1) if t is not None else None for t in (u, delta, B, C, z)]
    return selective_scan_reference(f[0], f[1], A, f[2], f[3], D, f[4], delta_bias, delta_softplus).flip(-1)


def relative_errors(scan, inputs, seed=1):
    """{'y': err, 'du': err, ...}: ||x - ref|| / ||ref|| for the output and every gradient.

    With ``reverse=True`` in ``inputs`` the reference is :func:`flipped_reference` (not the
    reference's own reverse flag), so a backend's reverse direction is checked against the definition.
    """
    tensors = {k: v for k, v in inputs.items() if torch.is_tensor(v)}
    leaves = {k: v.detach().clone().requires_grad_(True) for k, v in tensors.items()}
    y = scan(**{**inputs, **leaves})
    dy = torch.randn(y.shape, generator=torch.Generator().manual_seed(seed)).to(y.dtype)
    grads = torch.autograd.grad(y, list(leaves.values()), dy)

    ref_leaves = {k: v.detach().double().requires_grad_(True) for k, v in tensors.items()}
    options = {k: v for k, v in inputs.items() if k != "reverse"}
    reference = flipped_reference if inputs.get("reverse") else selective_scan_reference
    y_ref = reference(**{**options, **ref_leaves})
    ref_grads = torch.autograd.grad(y_ref, list(ref_leaves.values()), dy.double())

    def rel(a, b):
        return ((a.double() - b).norm() / b.norm()).item()

    errors = {"y": rel(y, y_ref)}
    for name, grad, ref in zip(leaves, grads, ref_grads):
        errors["d" + name] = rel(grad, ref)
    return errors


CASES = {
    "fp32_n16_all_options_ragged_chunks": (dict(batch=2, dim=8, L=150, N=16), dict(chunk_size=64)),
    "fp32_n64_skip_only": (dict(batch=2, dim=6, L=70, N=64, z=False, bias=False, softplus=False), {}),
    "fp32_n12_gate_no_skip": (dict(batch=1, dim=5, L=33, N=12, D=False), dict(chunk_size=8)),
    "fp32_n16_reverse_ragged_chunks": (dict(batch=2, dim=8, L=150, N=16), dict(chunk_size=64, reverse=True)),
    "fp32_n64_reverse_skip_only": (
        dict(batch=2, dim=6, L=70, N=64, z=False, bias=False, softplus=False), dict(chunk_size=16, reverse=True)),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_float32_matches_reference(case):
    shape, options = CASES[case]
    options = dict(options)
    inputs = {**make_inputs(**shape), "reverse": options.pop("reverse", False)}
    errors = relative_errors(lambda **kw: selective_scan_torch(**kw, **options), inputs)
    bad = {k: v for k, v in errors.items() if not v <= 1e-5}
    assert not bad, f"relative errors above 1e-5: {bad}"


def test_bfloat16_matches_reference():
    errors = relative_errors(selective_scan_torch, make_inputs(2, 8, 100, 16, dtype=torch.bfloat16))
    bad = {k: v for k, v in errors.items() if not v <= 1e-2}
    assert not bad, f"relative errors above 1e-2: {bad}"


def test_float64_inputs_are_computed_in_float64():
    inputs = make_inputs(2, 4, 50, 16, dtype=torch.float64)
    errors = relative_errors(lambda **kw: selective_scan_torch(**kw, chunk_size=16), inputs)
    assert max(errors.values()) < 1e-12, errors


def test_no_grad_path_and_dispatcher_agree_with_grad_path():
    inputs = make_inputs(2, 8, 90, 16)
    with torch.no_grad():
        y_plain = selective_scan_torch(**inputs, chunk_size=32)
    leaf = inputs["u"].clone().requires_grad_(True)
    y_ckpt = selective_scan_torch(**{**inputs, "u": leaf}, chunk_size=32)
    y_dispatch = selective_scan(**inputs, backend="torch")
    torch.testing.assert_close(y_ckpt.detach(), y_plain, rtol=0, atol=0)
    torch.testing.assert_close(y_dispatch, y_plain, rtol=1e-6, atol=1e-6)


def _saved_elements(N, batch=1, dim=16, L=512, chunk=64):
    """Elements in the distinct storages autograd keeps for one differentiable scan call,
    not counting the caller's own input tensors."""
    inputs = make_inputs(batch, dim, L, N)
    leaves = {k: v.requires_grad_(True) for k, v in inputs.items() if torch.is_tensor(v)}
    input_storages = {v.untyped_storage().data_ptr() for v in leaves.values()}
    storages = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in input_storages:
            storages[storage.data_ptr()] = storage.nbytes() // t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        y = selective_scan_torch(**{**inputs, **leaves}, chunk_size=chunk)
    y.sum().backward()
    assert all(torch.isfinite(leaf.grad).all() for leaf in leaves.values())
    return sum(storages.values())


def test_autograd_keeps_only_chunk_boundary_states():
    """Going from d_state 16 to 64 may grow what autograd keeps by the chunk-boundary states
    (1/64 of a state history here), never by a (batch, d_inner, L, d_state) state history."""
    batch, dim, L = 1, 16, 512
    growth = _saved_elements(64) - _saved_elements(16)
    history_growth = batch * dim * L * (64 - 16)
    assert growth < 0.05 * history_growth, f"saved tensors grew by {growth} elements (history: {history_growth})"


@pytest.mark.parametrize(
    "change, message",
    [
        (dict(B=torch.zeros(2, 16, 51)), "B must be"),
        (dict(A=torch.zeros(7, 16)), "A must be"),
        (dict(D=torch.zeros(3)), "D must be"),
        (dict(z=torch.zeros(2, 8, 10)), "z must have"),
        (dict(u=torch.zeros(8, 50)), "u must be"),
    ],
)
def test_shape_mistakes_are_named(change, message):
    inputs = {**make_inputs(2, 8, 50, 16), **change}
    with pytest.raises(ValueError, match=message):
        selective_scan_torch(**inputs)


def test_autocast_does_not_lower_the_scan_precision():
    inputs = make_inputs(1, 4, 64, 16)
    expected = selective_scan_torch(**inputs)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        y = selective_scan_torch(**inputs)
    assert y.dtype == torch.float32
    torch.testing.assert_close(y, expected, rtol=0, atol=0)


@pytest.mark.parametrize("backend", ["reference", "torch"])
def test_reverse_in_float64_matches_flipped_scan(backend):
    """Both float64 backends: the reverse flag equals flip(scan(flip(inputs))) to float64 rounding,
    in the output and every gradient."""
    inputs = {**make_inputs(2, 4, 50, 16, dtype=torch.float64), "reverse": True}
    errors = relative_errors(lambda **kw: selective_scan(**kw, backend=backend), inputs)
    assert max(errors.values()) < 1e-12, errors


def test_reverse_gradcheck():
    """torch.autograd.gradcheck of the reversed torch scan (float64, finite differences)."""
    inputs = make_inputs(1, 2, 9, 3, dtype=torch.float64)
    names = ("u", "delta", "A", "B", "C", "D", "z", "delta_bias")
    leaves = tuple(inputs[k].clone().requires_grad_(True) for k in names)

    def scan(*tensors):
        return selective_scan_torch(*tensors, delta_softplus=True, reverse=True, chunk_size=4)

    assert torch.autograd.gradcheck(scan, leaves)
