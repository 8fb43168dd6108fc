"""Plain float64 selective scan: the ground truth that every backend is tested against.

Written for clarity, not speed: it loops over positions in Python. Use it only in tests.
"""

import torch
import torch.nn.functional as F


def selective_scan_reference(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False
):
    """Selective scan of Mamba with a real diagonal A, computed in float64.

    Args:
        u: input, (batch, d_inner, L).
        delta: step sizes before bias/softplus, (batch, d_inner, L).
        A: state matrix diagonal, (d_inner, d_state); negative for a stable scan.
        B: input projection per position, (batch, d_state, L).
        C: output projection per position, (batch, d_state, L).
        D: skip weight, (d_inner,), optional.
        z: gate, (batch, d_inner, L), optional: output is multiplied by silu(z).
        delta_bias: (d_inner,), added to delta before the softplus.
        delta_softplus: apply softplus to delta (+ bias).
        reverse: run the recurrence from the last position to the first,
            ``h[t] = exp(dt[t] A) h[t+1] + dt[t] B[t] u[t]``, i.e. ``flip(scan(flip(inputs)))``.

    Returns:
        y: (batch, d_inner, L) in u's dtype. Differentiable (through float64 autograd).
    """
    dtype = u.dtype
    u, delta, A, B, C = (t.double() for t in (u, delta, A, B, C))
    if delta_bias is not None:
        delta = delta + delta_bias.double()[None, :, None]
    if delta_softplus:
        delta = F.softplus(delta)
    batch, d_inner, L = u.shape
    h = u.new_zeros(batch, d_inner, A.shape[1])
    ys = [None] * L
    for t in (range(L - 1, -1, -1) if reverse else range(L)):
        decay = torch.exp(delta[:, :, t, None] * A)  # (batch, d_inner, d_state)
        h = decay * h + (delta[:, :, t] * u[:, :, t])[..., None] * B[:, None, :, t]
        ys[t] = (h * C[:, None, :, t]).sum(-1)
    y = torch.stack(ys, dim=-1)
    if D is not None:
        y = y + D.double()[None, :, None] * u
    if z is not None:
        y = y * F.silu(z.double())
    return y.to(dtype)
