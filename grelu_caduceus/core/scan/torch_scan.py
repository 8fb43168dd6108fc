"""Pure-PyTorch selective scan: runs on any device, differentiable, memory-bounded.

The recurrence is stepped sequentially over positions. To keep memory at O(batch * d_inner * d_state)
per position *of one chunk* rather than of the whole sequence, positions are processed in chunks:
the per-position decays ``exp(delta * A)`` and inputs ``delta * u * B`` are built for one chunk at a
time, and when gradients are needed each chunk runs under activation checkpointing, so autograd keeps
only the chunk-boundary states (batch, d_inner, d_state) and recomputes the inside of a chunk during
the backward pass. Nothing of shape (batch, d_inner, L, d_state) is ever held for the full length.

This is the portable fallback and the baseline that the Triton kernel is measured against.
"""

import torch
import torch.nn.functional as F
from torch.utils.checkpoint import checkpoint

DEFAULT_CHUNK = 128


def _compute_dtype(*tensors):
    """float64 when any input is float64 (useful as an on-device reference), else float32."""
    return torch.float64 if any(t is not None and t.dtype == torch.float64 for t in tensors) else torch.float32


def _scan_chunk(h, u, dt, A, B, C, reverse=False):
    """Scan one chunk from the state ``h`` (from its last position to its first if ``reverse``).

    Args:
        h: (batch, d_inner, d_state) state before the chunk's first position.
        u, dt: (batch, d_inner, T) input and (bias-added, softplus-ed) step sizes.
        A: (d_inner, d_state).
        B, C: (batch, d_state, T).

    Returns:
        y: (batch, d_inner, T) the state read-out ``sum_n C h`` (no skip, no gate);
        h: (batch, d_inner, d_state) state after the chunk's last position (first if ``reverse``).
    """
    # (batch, d_inner, T, d_state): bounded by the chunk length, not by L.
    decay = torch.exp(dt.unsqueeze(-1) * A[:, None, :])
    drive = (dt * u).unsqueeze(-1) * B.transpose(1, 2).unsqueeze(1)
    T = u.shape[-1]
    states = [None] * T
    for t in (range(T - 1, -1, -1) if reverse else range(T)):
        h = torch.addcmul(drive[:, :, t], decay[:, :, t], h)
        states[t] = h
    states = torch.stack(states, dim=2)  # (batch, d_inner, T, d_state)
    y = torch.einsum("bdtn,bnt->bdt", states, C)
    return y, h


def selective_scan_torch(
    u,
    delta,
    A,
    B,
    C,
    D=None,
    z=None,
    delta_bias=None,
    delta_softplus=False,
    reverse=False,
    chunk_size=DEFAULT_CHUNK,
):
    """Mamba's selective scan (real diagonal A) in plain PyTorch.

    Args:
        u: (batch, d_inner, L) input.
        delta: (batch, d_inner, L) step sizes before ``delta_bias`` and softplus.
        A: (d_inner, d_state), negative for a stable scan.
        B, C: (batch, d_state, L).
        D: (d_inner,) skip weight, optional.
        z: (batch, d_inner, L) gate, optional: the output is ``y * silu(z)``.
        delta_bias: (d_inner,) added to delta before the softplus, optional.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        reverse: scan from the last position to the first (``flip(scan(flip(inputs)))``, no copies).
        chunk_size: positions per chunk (memory/recompute granularity).

    Returns:
        (batch, d_inner, L) tensor in u's dtype. Computed in float32 (float64 if any input is
        float64); differentiable with respect to every tensor argument.
    """
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    # Under mixed precision the einsum below would otherwise run in bfloat16/float16.
    with torch.autocast(device_type=u.device.type, enabled=False):
        return _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size, reverse)


def _scan(u, delta, A, B, C, D, z, delta_bias, delta_softplus, chunk_size, reverse):
    out_dtype = u.dtype
    work = _compute_dtype(u, delta, A, B, C, D, z, delta_bias)
    u_w, dt, A_w, B_w, C_w = (t.to(work) for t in (u, delta, A, B, C))
    if delta_bias is not None:
        dt = dt + delta_bias.to(work)[None, :, None]
    if delta_softplus:
        dt = F.softplus(dt)

    batch, d_inner, L = u.shape
    h = u_w.new_zeros(batch, d_inner, A.shape[1])
    needs_grad = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (u, delta, A, B, C, D, z, delta_bias)
    )
    starts = list(range(0, L, chunk_size))
    outputs = [None] * len(starts)
    for i in (reversed(range(len(starts))) if reverse else range(len(starts))):
        part = slice(starts[i], min(starts[i] + chunk_size, L))
        args = (h, u_w[..., part], dt[..., part], A_w, B_w[..., part], C_w[..., part], reverse)
        if needs_grad:
            # Only the boundary state is kept; the chunk is recomputed in backward.
            y, h = checkpoint(_scan_chunk, *args, use_reentrant=False)
        else:
            y, h = _scan_chunk(*args)
        outputs[i] = y
    y = torch.cat(outputs, dim=-1)
    if D is not None:
        y = y + D.to(work)[None, :, None] * u_w
    if z is not None:
        y = y * F.silu(z.to(work))
    return y.to(out_dtype)


def _check_shapes(u, delta, A, B, C, D, z, delta_bias):
    """Raise a ValueError naming the offending argument when shapes do not fit together."""
    if u.dim() != 3:
        raise ValueError(f"u must be (batch, d_inner, L); got shape {tuple(u.shape)}.")
    batch, d_inner, L = u.shape
    if delta.shape != u.shape:
        raise ValueError(f"delta must have u's shape {tuple(u.shape)}; got {tuple(delta.shape)}.")
    if A.dim() != 2 or A.shape[0] != d_inner:
        raise ValueError(f"A must be (d_inner={d_inner}, d_state); got {tuple(A.shape)}.")
    d_state = A.shape[1]
    for name, t in (("B", B), ("C", C)):
        if t.shape != (batch, d_state, L):
            raise ValueError(
                f"{name} must be (batch, d_state, L) = {(batch, d_state, L)}; got {tuple(t.shape)}. "
                "Only input-dependent B/C without groups are supported."
            )
    if z is not None and z.shape != u.shape:
        raise ValueError(f"z must have u's shape {tuple(u.shape)}; got {tuple(z.shape)}.")
    for name, t in (("D", D), ("delta_bias", delta_bias)):
        if t is not None and t.shape != (d_inner,):
            raise ValueError(f"{name} must be (d_inner,) = ({d_inner},); got {tuple(t.shape)}.")
