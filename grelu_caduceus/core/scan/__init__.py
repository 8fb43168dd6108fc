"""Selective-scan backends behind one function.

Every backend computes the same thing as :func:`selective_scan_reference` and takes the same
arguments as mamba-ssm's ``selective_scan_fn``. ``backend="auto"`` picks, in order: mamba-ssm's CUDA
kernel (if importable and the tensors are on CUDA), the Triton kernel (CUDA), the compiled numba
kernel (CPU), and the pure-PyTorch loop (anything else). The environment variable
``GRELU_CADUCEUS_SCAN`` (one of ``BACKENDS``) overrides what "auto" picks; a backend named explicitly
in code still wins over it.
"""

import functools
import importlib.util
import os

import torch
import torch.nn.functional as F

from .reference import selective_scan_reference

BACKENDS = ("auto", "mamba_ssm", "triton", "cpu", "torch", "reference")
EXACT_BACKENDS = ("torch", "reference")  # compute in float64 when given float64
ENV_VAR = "GRELU_CADUCEUS_SCAN"


@functools.lru_cache(maxsize=None)
def _importable(name):
    return importlib.util.find_spec(name) is not None


def available_backends(device="cpu"):
    """Backends that can run on ``device`` here, fastest first."""
    device = torch.device(device)
    found = []
    if device.type == "cuda":
        if _importable("mamba_ssm") and _importable("selective_scan_cuda"):
            found.append("mamba_ssm")
        if _importable("triton"):
            found.append("triton")
    if device.type == "cpu" and _importable("numba"):
        found.append("cpu")
    found += ["torch", "reference"]
    return found


def resolve_backend(backend, device, dtype=None):
    """Turn ``"auto"`` (or None) into a concrete backend; any other backend is returned unchanged.

    "auto" means the ``GRELU_CADUCEUS_SCAN`` environment variable when it is set (and not "auto"),
    else the fastest of ``available_backends(device)``. float64 inputs ask for exactness: under
    "auto" they use the float64-capable "torch" backend, or "reference" if the variable names it
    (the compiled kernels compute in float32).

    Args:
        backend: one of ``BACKENDS``, or None (= "auto").
        device: device of the scan's tensors.
        dtype: dtype of the scan's input ``u``, optional.

    Raises:
        ValueError: ``backend`` or the environment variable is not one of ``BACKENDS``.
    """
    backend = backend or "auto"
    if backend not in BACKENDS:
        raise ValueError(f"Unknown scan backend {backend!r}; choose one of {', '.join(BACKENDS)}.")
    if backend != "auto":
        return backend
    env = os.environ.get(ENV_VAR, "").strip()
    if env and env not in BACKENDS:
        raise ValueError(f"{ENV_VAR}={env!r} is not a scan backend; set it to one of {', '.join(BACKENDS)}.")
    if dtype == torch.float64:
        return env if env in EXACT_BACKENDS else "torch"
    if env and env != "auto":
        return env
    return available_backends(device)[0]


def selective_scan(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, backend="auto", reverse=False,
    delta_proj=None, add_to=None, overwrite_u=False,
):
    """Mamba's selective scan with a real diagonal A.

    Args:
        u: (batch, d_inner, L) input.
        delta: (batch, d_inner, L) step sizes (before ``delta_bias`` and softplus).
        A: (d_inner, d_state) real, negative.
        B, C: (batch, d_state, L).
        D: (d_inner,) skip weight, optional.
        z: (batch, d_inner, L) gate, optional: ``y * silu(z)``.
        delta_bias: (d_inner,) added before the softplus, optional.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        backend: one of ``BACKENDS``; "auto" as described in :func:`resolve_backend`.
        reverse: run the recurrence from the last position to the first; equals
            ``flip(scan(flip(u), flip(delta), ...))`` along L, computed without flipped copies
            (mamba-ssm's kernel has no such flag: it gets flipped copies).
        delta_proj: (d_inner, R), optional: then ``delta`` is (batch, R, L) and the step sizes are
            ``delta_proj @ delta`` (Mamba's dt_proj without its bias). The "cpu" backend computes
            the product inside its kernels, so the (batch, d_inner, L) step sizes are never stored;
            the other backends form them first.
        add_to: (batch, d_inner, L), optional: return ``add_to + scan(...)``. The "cpu" backend
            adds in place into ``add_to`` when no autograd graph is recorded (the caller must not
            use ``add_to`` otherwise afterwards); the others add out of place.
        overwrite_u: the caller no longer needs ``u``: the "cpu" backend may then write the output
            into u's memory when no autograd graph is recorded (the others ignore it).

    Returns:
        (batch, d_inner, L) tensor in u's dtype.
    """
    backend = resolve_backend(backend, u.device, u.dtype)
    if backend == "cpu":
        from .cpu import selective_scan_cpu

        return selective_scan_cpu(u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse=reverse,
                                  delta_proj=delta_proj, add_to=add_to, overwrite_u=overwrite_u)
    if delta_proj is not None:
        delta = F.linear(delta.transpose(1, 2), delta_proj).transpose(1, 2)
    y = _scan_unfused(backend, u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse)
    return y if add_to is None else add_to + y


def _scan_unfused(backend, u, delta, A, B, C, D, z, delta_bias, delta_softplus, reverse):
    args = (u, delta, A, B, C, D, z, delta_bias, delta_softplus)
    if backend == "reference":
        return selective_scan_reference(*args, reverse=reverse)
    if backend == "torch":
        from .torch_scan import selective_scan_torch

        return selective_scan_torch(*args, reverse=reverse)
    if backend == "triton":
        from .triton_scan import selective_scan_triton

        return selective_scan_triton(*args, reverse=reverse)
    from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

    if reverse:
        flipped = [t.flip(-1) if t is not None and t.dim() == 3 else t for t in args[:7]]
        return selective_scan_fn(*flipped, *args[7:]).flip(-1)
    return selective_scan_fn(*args)


__all__ = ["selective_scan", "selective_scan_reference", "available_backends", "BACKENDS"]
