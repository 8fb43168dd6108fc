"""Triton selective scan (forward and backward) for CUDA GPUs.

Computes the same thing as :func:`~grelu_caduceus.core.scan.reference.selective_scan_reference`:
per batch b, channel d, state n, position t,

    dt[t]  = softplus(delta[t] + delta_bias)              (bias and softplus optional)
    h[t]   = exp(dt[t] * A[d, n]) * h[t-1] + dt[t] * u[t] * B[n, t]
    y[t]   = (sum_n C[n, t] * h[t] + D[d] * u[t]) * silu(z[t])   (D and z optional)

Work is split along the sequence into chunks of ``block_l`` positions so that batch 1 at long L
still fills the GPU. Forward, three launches:

1. ``_fwd_chunk_end_state``: every (batch, channel block, chunk) program computes the state its
   chunk would end in when started from zero, and the chunk's summed step size (its total decay
   is ``exp(A * sum dt)``). Closed form from suffix sums; no scan needed.
2. ``_fwd_chunk_carry``: one program per (batch, channel block) runs the recurrence across chunk
   boundaries (itself an associative scan over tiles of chunks) and stores the state entering
   each chunk. These (batch, n_chunks, d_inner, d_state) states are all that is kept for backward.
3. ``_fwd_chunk_output``: every chunk scans its positions (``tl.associative_scan``) from its
   correct entering state and writes y with the D skip and the z gate fused in.

With ``reverse=True`` the recurrence runs from the last position to the first
(``h[t] = exp(dt[t] A) h[t+1] + ...``): every kernel works on steps s and reads and writes position
L - 1 - s, so the chunks, carries and adjoints above are the same code in step order.

Backward mirrors this in reverse for the adjoint ``g[t] = dL/dh[t]``: chunk-local adjoints
(``_bwd_chunk_start_adjoint``), a right-to-left carry (``_bwd_chunk_carry``), then
``_bwd_chunk_grads`` recomputes h and g inside each chunk and writes du, ddelta, dz and
per-program partial sums for dA, dD, ddelta_bias, dB and dC, which are summed afterwards in a fixed
order (deterministic, no atomics). Nothing of shape (batch, d_inner, L, d_state) is ever stored.

All state and accumulation is float32; inputs may be float32, float16 or bfloat16 and outputs and
gradients come back in each input's dtype.

The module imports without Triton (``HAVE_TRITON`` is then False). To run the kernels on a machine
without a GPU, set ``TRITON_INTERPRET=1`` before Triton is first imported in the process (Lightning
imports it too), which makes them run in Triton's CPU interpreter on CPU tensors; ``INTERPRETED``
tells which mode this import got. The tests and the benchmark's ``--dry-run`` do this in a
subprocess.
"""

import os
from dataclasses import dataclass

import torch

try:
    import triton
    import triton.language as tl

    HAVE_TRITON = True
except ImportError:  # the dispatcher only imports this module on CUDA; stay importable anyway
    triton = None
    tl = None
    HAVE_TRITON = False

from .torch_scan import _check_shapes


def _interpreter_on():
    """Whether Triton builds kernels for its CPU interpreter (``TRITON_INTERPRET``), for old and new Triton."""
    knobs = getattr(triton, "knobs", None)
    if knobs is not None:
        return bool(knobs.runtime.interpret)
    return os.environ.get("TRITON_INTERPRET", "0").lower() in ("1", "true", "on", "yes")


INTERPRETED = bool(HAVE_TRITON and _interpreter_on())

# Chunks of the cross-chunk carry scan handled per step of its sequential loop.
_CARRY_BLOCK = 32
# Aim for at least this many programs in the backward launch (H100 has 132 SMs).
_TARGET_PROGRAMS = 1024
# Cap on the extra (groups, batch, d_state, L) float32 buffers for dB/dC partial sums.
_MAX_PARTIAL_BYTES = 256 * 2**20


def _next_pow2(n):
    return 1 << max(0, (int(n) - 1).bit_length())


@dataclass(frozen=True)
class TileConfig:
    """Tile sizes and warps of the per-chunk kernels.

    A program holds (block_d, n_pad, block_l) float32 tiles in registers. The forward kernels keep
    about 4096 elements per tile, the backward kernel (more live tiles) about 2048; 8 warps then
    keep both under ~180 registers per thread for d_state 16 (sm_90, Triton 3.9).
    """

    block_l: int  # positions per chunk (shared by forward and backward)
    fwd_d: int  # channels per forward program
    bwd_d: int  # channels per backward program
    n_pad: int  # d_state padded to a power of two
    fwd_warps: int
    bwd_warps: int


def launch_config(d_state, block_l=None, block_d=None, num_warps=None):
    """Default :class:`TileConfig` for ``d_state``; any of the three sizes can be overridden."""
    n_pad = max(2, _next_pow2(d_state))
    if block_l is None:  # keep a backward tile at 2048 elements: 128 positions for d_state 16
        block_l = max(32, min(128, 2048 // n_pad))
    if block_l < 2 or block_l & (block_l - 1):
        raise ValueError(f"block_l must be a power of two >= 2; got {block_l}.")
    if block_d is not None and block_d & (block_d - 1):
        raise ValueError(f"block_d must be a power of two; got {block_d}.")
    fwd_d = block_d or _next_pow2(max(1, 4096 // (n_pad * block_l)))
    bwd_d = block_d or _next_pow2(max(1, 2048 // (n_pad * block_l)))

    def warps(tile_elements):
        return num_warps or (8 if tile_elements >= 2048 else 4)

    return TileConfig(block_l, fwd_d, bwd_d, n_pad, warps(fwd_d * n_pad * block_l), warps(bwd_d * n_pad * block_l))


if HAVE_TRITON:

    @triton.jit
    def _linear_combine(a_left, b_left, a_right, b_right):
        """Compose two steps of ``h -> a * h + b``: left first, then right."""
        return a_left * a_right, b_left * a_right + b_right

    @triton.jit
    def _softplus(x):
        """log(1 + exp(x)) without overflow; log1p via Goldberg's trick for accuracy."""
        e = tl.exp(-tl.abs(x))
        one_plus = 1.0 + e
        log1p = tl.where(one_plus == 1.0, e, tl.log(one_plus) * e / (one_plus - 1.0))
        return tl.maximum(x, 0.0) + log1p

    @triton.jit
    def _sigmoid(x):
        return 1.0 / (1.0 + tl.exp(-x))

    @triton.jit
    def _load_bias(bias_ptr, d, d_ok, HAS_BIAS: tl.constexpr, BLOCK_D: tl.constexpr):
        """(block_d,) delta bias in float32, zeros when there is none."""
        if HAS_BIAS:
            bias = tl.load(bias_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
        else:
            bias = tl.zeros((BLOCK_D,), dtype=tl.float32)
        return bias

    @triton.jit
    def _position(t, L, REVERSE: tl.constexpr):
        """Position of step t: t itself, or L - 1 - t for a scan that runs from the end (REVERSE)."""
        if REVERSE:
            pos = L - 1 - t
        else:
            pos = t
        return pos

    @triton.jit
    def _offsets(b, rows, t, stride_b, stride_row, stride_l):
        """(rows, block_l) element offsets of a (batch, rows, L) tensor with any strides."""
        return b * stride_b + rows[:, None].to(tl.int64) * stride_row + t[None, :].to(tl.int64) * stride_l

    @triton.jit
    def _load_dt(delta_ptr, offs, mask, bias, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr):
        """(block_d, block_l) step sizes in float32 and the pre-softplus values; 0 where masked."""
        raw = tl.load(delta_ptr + offs, mask=mask, other=0.0).to(tl.float32)
        if HAS_BIAS:
            raw = raw + bias[:, None]
        if SOFTPLUS:
            dt = _softplus(raw)
        else:
            dt = raw
        return tl.where(mask, dt, 0.0), raw

    @triton.jit
    def _fwd_chunk_end_state(
        u_ptr, delta_ptr, A_ptr, B_ptr, bias_ptr, end_state_ptr, dt_sum_ptr,
        DIM, N, L, N_CHUNKS,
        su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sB_b, sB_n, sB_l,
        HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr,
        BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Per chunk: end state from a zero start, (batch, chunk, d, n); and sum of dt, (batch, chunk, d)."""
        d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
        chunk = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        n = tl.arange(0, N_PAD)
        t = chunk * BLOCK_L + tl.arange(0, BLOCK_L)  # steps; positions tp (reversed if REVERSE)
        tp = _position(t, L, REVERSE)
        d_ok, n_ok, t_ok = d < DIM, n < N, t < L
        dn_ok = d_ok[:, None] & n_ok[None, :]
        dt_mask = d_ok[:, None] & t_ok[None, :]

        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
        bias = _load_bias(bias_ptr, d, d_ok, HAS_BIAS, BLOCK_D)
        dt, _ = _load_dt(delta_ptr, _offsets(b, d, tp, sdt_b, sdt_d, sdt_l), dt_mask, bias, HAS_BIAS, SOFTPLUS)
        u = tl.load(u_ptr + _offsets(b, d, tp, su_b, su_d, su_l), mask=dt_mask, other=0.0).to(tl.float32)
        Bm = tl.load(B_ptr + _offsets(b, n, tp, sB_b, sB_n, sB_l), mask=n_ok[:, None] & t_ok[None, :],
                     other=0.0).to(tl.float32)

        # Decay from just after position t to the chunk end: exp(A * sum_{s > t} dt[s]).
        after = tl.cumsum(dt, axis=1, reverse=True) - dt
        weight = tl.exp(A[:, :, None] * after[:, None, :])
        drive = (dt * u)[:, None, :] * Bm[None, :, :]
        end_state = tl.sum(weight * drive, axis=2)

        row = b * N_CHUNKS + chunk
        tl.store(end_state_ptr + (row * DIM + d[:, None]) * N + n[None, :], end_state, mask=dn_ok)
        tl.store(dt_sum_ptr + row * DIM + d, tl.sum(dt, axis=1), mask=d_ok)

    @triton.jit
    def _fwd_chunk_carry(
        A_ptr, end_state_ptr, dt_sum_ptr, start_state_ptr,
        DIM, N, N_CHUNKS,
        BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        """State entering every chunk: s[0] = 0, s[c+1] = exp(A * dt_sum[c]) * s[c] + end_state[c]."""
        b = tl.program_id(1).to(tl.int64)
        d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, N_PAD)
        d_ok, n_ok = d < DIM, n < N
        dn_ok = d_ok[:, None] & n_ok[None, :]
        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
        last = (tl.arange(0, BLOCK_C) == BLOCK_C - 1)[None, None, :]

        carry = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
        tl.store(start_state_ptr + (b * N_CHUNKS * DIM + d[:, None]) * N + n[None, :], carry, mask=dn_ok)
        for c0 in range(0, N_CHUNKS, BLOCK_C):
            c = c0 + tl.arange(0, BLOCK_C)
            c_ok = c < N_CHUNKS
            row = b * N_CHUNKS + c  # (BLOCK_C,)
            mask3 = dn_ok[:, :, None] & c_ok[None, None, :]
            offs3 = (row[None, None, :] * DIM + d[:, None, None]) * N + n[None, :, None]
            end_state = tl.load(end_state_ptr + offs3, mask=mask3, other=0.0)
            dt_sum = tl.load(dt_sum_ptr + row[None, :] * DIM + d[:, None],
                             mask=d_ok[:, None] & c_ok[None, :], other=0.0)
            decay = tl.exp(A[:, :, None] * dt_sum[:, None, :])  # 1 for masked chunks
            decay_prod, state = tl.associative_scan((decay, end_state), 2, _linear_combine)
            state = state + decay_prod * carry[:, :, None]
            # state[c] is the state after chunk c, i.e. the one entering chunk c + 1.
            next_ok = dn_ok[:, :, None] & ((c + 1) < N_CHUNKS)[None, None, :]
            tl.store(start_state_ptr + offs3 + DIM * N, state, mask=next_ok)
            carry = tl.sum(tl.where(last, state, 0.0), axis=2)

    @triton.jit
    def _fwd_chunk_output(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, start_state_ptr, y_ptr,
        DIM, N, L, N_CHUNKS,
        su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
        sy_b, sy_d, sy_l,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr,
        BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """y for one (channel block, chunk, batch), scanning from the chunk's entering state."""
        d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
        chunk = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        n = tl.arange(0, N_PAD)
        t = chunk * BLOCK_L + tl.arange(0, BLOCK_L)  # steps; positions tp (reversed if REVERSE)
        tp = _position(t, L, REVERSE)
        d_ok, n_ok, t_ok = d < DIM, n < N, t < L
        dn_ok = d_ok[:, None] & n_ok[None, :]
        dt_mask = d_ok[:, None] & t_ok[None, :]
        nt_mask = n_ok[:, None] & t_ok[None, :]

        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
        bias = _load_bias(bias_ptr, d, d_ok, HAS_BIAS, BLOCK_D)
        dt, _ = _load_dt(delta_ptr, _offsets(b, d, tp, sdt_b, sdt_d, sdt_l), dt_mask, bias, HAS_BIAS, SOFTPLUS)
        u = tl.load(u_ptr + _offsets(b, d, tp, su_b, su_d, su_l), mask=dt_mask, other=0.0).to(tl.float32)
        Bm = tl.load(B_ptr + _offsets(b, n, tp, sB_b, sB_n, sB_l), mask=nt_mask, other=0.0).to(tl.float32)
        Cm = tl.load(C_ptr + _offsets(b, n, tp, sC_b, sC_n, sC_l), mask=nt_mask, other=0.0).to(tl.float32)
        h0 = tl.load(start_state_ptr + ((b * N_CHUNKS + chunk) * DIM + d[:, None]) * N + n[None, :],
                     mask=dn_ok, other=0.0)

        decay = tl.exp(A[:, :, None] * dt[:, None, :])
        drive = (dt * u)[:, None, :] * Bm[None, :, :]
        decay_prod, h = tl.associative_scan((decay, drive), 2, _linear_combine)
        h = h + decay_prod * h0[:, :, None]
        y = tl.sum(h * Cm[None, :, :], axis=1)
        if HAS_D:
            y = y + tl.load(D_ptr + d, mask=d_ok, other=0.0).to(tl.float32)[:, None] * u
        if HAS_Z:
            zv = tl.load(z_ptr + _offsets(b, d, tp, sz_b, sz_d, sz_l), mask=dt_mask, other=0.0).to(tl.float32)
            y = y * zv * _sigmoid(zv)
        tl.store(y_ptr + _offsets(b, d, tp, sy_b, sy_d, sy_l), y.to(y_ptr.dtype.element_ty), mask=dt_mask)

    @triton.jit
    def _bwd_chunk_start_adjoint(
        delta_ptr, A_ptr, C_ptr, z_ptr, bias_ptr, dy_ptr, start_adjoint_ptr,
        DIM, N, L, N_CHUNKS,
        sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, sC_b, sC_n, sC_l, sdy_b, sdy_d, sdy_l,
        HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr,
        BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """Per chunk, with no adjoint flowing in from the right: the adjoint that leaves the chunk
        through its first position, sum_t exp(A * sum_{s <= t} dt[s]) * C[t] * dy_ssm[t]."""
        d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
        chunk = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        n = tl.arange(0, N_PAD)
        t = chunk * BLOCK_L + tl.arange(0, BLOCK_L)  # steps; positions tp (reversed if REVERSE)
        tp = _position(t, L, REVERSE)
        d_ok, n_ok, t_ok = d < DIM, n < N, t < L
        dn_ok = d_ok[:, None] & n_ok[None, :]
        dt_mask = d_ok[:, None] & t_ok[None, :]

        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
        bias = _load_bias(bias_ptr, d, d_ok, HAS_BIAS, BLOCK_D)
        dt, _ = _load_dt(delta_ptr, _offsets(b, d, tp, sdt_b, sdt_d, sdt_l), dt_mask, bias, HAS_BIAS, SOFTPLUS)
        dy = tl.load(dy_ptr + _offsets(b, d, tp, sdy_b, sdy_d, sdy_l), mask=dt_mask, other=0.0).to(tl.float32)
        if HAS_Z:
            zv = tl.load(z_ptr + _offsets(b, d, tp, sz_b, sz_d, sz_l), mask=dt_mask, other=0.0).to(tl.float32)
            dy = dy * zv * _sigmoid(zv)
        Cm = tl.load(C_ptr + _offsets(b, n, tp, sC_b, sC_n, sC_l), mask=n_ok[:, None] & t_ok[None, :],
                     other=0.0).to(tl.float32)

        weight = tl.exp(A[:, :, None] * tl.cumsum(dt, axis=1)[:, None, :])
        adjoint = tl.sum(weight * Cm[None, :, :] * dy[:, None, :], axis=2)
        row = b * N_CHUNKS + chunk
        tl.store(start_adjoint_ptr + (row * DIM + d[:, None]) * N + n[None, :], adjoint, mask=dn_ok)

    @triton.jit
    def _bwd_chunk_carry(
        A_ptr, start_adjoint_ptr, dt_sum_ptr, end_adjoint_ptr,
        DIM, N, N_CHUNKS,
        BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, BLOCK_C: tl.constexpr,
    ):
        """Adjoint entering every chunk from the right: r[last] = 0,
        r[c-1] = exp(A * dt_sum[c]) * r[c] + start_adjoint[c]."""
        b = tl.program_id(1).to(tl.int64)
        d = tl.program_id(0) * BLOCK_D + tl.arange(0, BLOCK_D)
        n = tl.arange(0, N_PAD)
        d_ok, n_ok = d < DIM, n < N
        dn_ok = d_ok[:, None] & n_ok[None, :]
        A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
        first = (tl.arange(0, BLOCK_C) == 0)[None, None, :]

        carry = tl.zeros((BLOCK_D, N_PAD), dtype=tl.float32)
        last_row = b * N_CHUNKS + N_CHUNKS - 1
        tl.store(end_adjoint_ptr + (last_row * DIM + d[:, None]) * N + n[None, :], carry, mask=dn_ok)
        n_blocks = tl.cdiv(N_CHUNKS, BLOCK_C)
        for i in range(0, n_blocks):
            c = (n_blocks - 1 - i) * BLOCK_C + tl.arange(0, BLOCK_C)
            c_ok = c < N_CHUNKS
            row = b * N_CHUNKS + c
            mask3 = dn_ok[:, :, None] & c_ok[None, None, :]
            offs3 = (row[None, None, :] * DIM + d[:, None, None]) * N + n[None, :, None]
            start_adjoint = tl.load(start_adjoint_ptr + offs3, mask=mask3, other=0.0)
            dt_sum = tl.load(dt_sum_ptr + row[None, :] * DIM + d[:, None],
                             mask=d_ok[:, None] & c_ok[None, :], other=0.0)
            decay = tl.exp(A[:, :, None] * dt_sum[:, None, :])
            decay_prod, adjoint = tl.associative_scan((decay, start_adjoint), 2, _linear_combine, reverse=True)
            adjoint = adjoint + decay_prod * carry[:, :, None]
            # adjoint[c] leaves chunk c to the left, i.e. it enters chunk c - 1 from the right.
            prev_ok = dn_ok[:, :, None] & (c >= 1)[None, None, :] & c_ok[None, None, :]
            tl.store(end_adjoint_ptr + offs3 - DIM * N, adjoint, mask=prev_ok)
            carry = tl.sum(tl.where(first, adjoint, 0.0), axis=2)

    @triton.jit
    def _bwd_chunk_grads(
        u_ptr, delta_ptr, A_ptr, B_ptr, C_ptr, D_ptr, z_ptr, bias_ptr, dy_ptr,
        start_state_ptr, end_adjoint_ptr,
        du_ptr, ddelta_ptr, dz_ptr, dA_part_ptr, dD_part_ptr, dbias_part_ptr, dB_part_ptr, dC_part_ptr,
        DIM, N, L, N_CHUNKS, N_GROUPS, BATCH,
        su_b, su_d, su_l, sdt_b, sdt_d, sdt_l, sz_b, sz_d, sz_l, sB_b, sB_n, sB_l, sC_b, sC_n, sC_l,
        sdy_b, sdy_d, sdy_l, sdu_b, sdu_d, sdu_l, sddt_b, sddt_d, sddt_l, sdz_b, sdz_d, sdz_l,
        HAS_D: tl.constexpr, HAS_Z: tl.constexpr, HAS_BIAS: tl.constexpr, SOFTPLUS: tl.constexpr, REVERSE: tl.constexpr,
        BLOCK_D: tl.constexpr, N_PAD: tl.constexpr, BLOCK_L: tl.constexpr,
    ):
        """All gradients for one (batch, chunk) and the channel blocks of one group.

        Recomputes h inside the chunk from its entering state, runs the adjoint backwards from the
        adjoint entering at the right, and reduces dB/dC over this group's channels in registers.
        """
        group = tl.program_id(0)
        chunk = tl.program_id(1)
        b = tl.program_id(2).to(tl.int64)
        n = tl.arange(0, N_PAD)
        t = chunk * BLOCK_L + tl.arange(0, BLOCK_L)  # steps; positions tp (reversed if REVERSE)
        tp = _position(t, L, REVERSE)
        n_ok, t_ok = n < N, t < L
        nt_mask = n_ok[:, None] & t_ok[None, :]
        # dt at t + 1 inside this chunk gives the decay the adjoint picks up stepping from t + 1 to t.
        t_next_ok = ((t + 1) < L) & (tl.arange(0, BLOCK_L) < BLOCK_L - 1)
        Bm = tl.load(B_ptr + _offsets(b, n, tp, sB_b, sB_n, sB_l), mask=nt_mask, other=0.0).to(tl.float32)
        Cm = tl.load(C_ptr + _offsets(b, n, tp, sC_b, sC_n, sC_l), mask=nt_mask, other=0.0).to(tl.float32)
        dB_acc = tl.zeros((N_PAD, BLOCK_L), dtype=tl.float32)
        dC_acc = tl.zeros((N_PAD, BLOCK_L), dtype=tl.float32)
        row = b * N_CHUNKS + chunk

        n_dblocks = tl.cdiv(DIM, BLOCK_D)
        for blk in range(group, n_dblocks, N_GROUPS):
            d = blk * BLOCK_D + tl.arange(0, BLOCK_D)
            d_ok = d < DIM
            dn_ok = d_ok[:, None] & n_ok[None, :]
            dt_mask = d_ok[:, None] & t_ok[None, :]
            A = tl.load(A_ptr + d[:, None] * N + n[None, :], mask=dn_ok, other=0.0).to(tl.float32)
            bias = _load_bias(bias_ptr, d, d_ok, HAS_BIAS, BLOCK_D)
            dt_offs = _offsets(b, d, tp, sdt_b, sdt_d, sdt_l)
            dt, dt_raw = _load_dt(delta_ptr, dt_offs, dt_mask, bias, HAS_BIAS, SOFTPLUS)
            next_offs = _offsets(b, d, _position(t + 1, L, REVERSE), sdt_b, sdt_d, sdt_l)
            dt_next, _ = _load_dt(delta_ptr, next_offs, d_ok[:, None] & t_next_ok[None, :], bias,
                                  HAS_BIAS, SOFTPLUS)
            u = tl.load(u_ptr + _offsets(b, d, tp, su_b, su_d, su_l), mask=dt_mask, other=0.0).to(tl.float32)
            dy = tl.load(dy_ptr + _offsets(b, d, tp, sdy_b, sdy_d, sdy_l), mask=dt_mask, other=0.0).to(tl.float32)
            state_offs = (row * DIM + d[:, None]) * N + n[None, :]
            h0 = tl.load(start_state_ptr + state_offs, mask=dn_ok, other=0.0)
            g_in = tl.load(end_adjoint_ptr + state_offs, mask=dn_ok, other=0.0)

            # Forward recompute of the states in this chunk.
            u_B = u[:, None, :] * Bm[None, :, :]
            decay_prod, h = tl.associative_scan(
                (tl.exp(A[:, :, None] * dt[:, None, :]), dt[:, None, :] * u_B), 2, _linear_combine)
            h = h + decay_prod * h0[:, :, None]

            # Gate and skip.
            if HAS_D:
                Dv = tl.load(D_ptr + d, mask=d_ok, other=0.0).to(tl.float32)
            if HAS_Z:
                zv = tl.load(z_ptr + _offsets(b, d, tp, sz_b, sz_d, sz_l), mask=dt_mask, other=0.0).to(tl.float32)
                sig = _sigmoid(zv)
                y_pre = tl.sum(h * Cm[None, :, :], axis=1)
                if HAS_D:
                    y_pre = y_pre + Dv[:, None] * u
                dz = dy * y_pre * sig * (1.0 + zv * (1.0 - sig))
                tl.store(dz_ptr + _offsets(b, d, tp, sdz_b, sdz_d, sdz_l), dz.to(dz_ptr.dtype.element_ty),
                         mask=dt_mask)
                dy = dy * zv * sig

            # Adjoint: g[t] = C[t] dy[t] + exp(A dt[t+1]) g[t+1], entering with g_in at the chunk end.
            decay_next = tl.exp(A[:, :, None] * dt_next[:, None, :])
            decay_prod, g = tl.associative_scan(
                (decay_next, Cm[None, :, :] * dy[:, None, :]), 2, _linear_combine, reverse=True)
            g = g + decay_prod * g_in[:, :, None]

            g_dt = g * dt[:, None, :]
            decayed_prev = h - dt[:, None, :] * u_B  # exp(A dt[t]) * h[t-1]
            ddt = tl.sum(g * (u_B + A[:, :, None] * decayed_prev), axis=1)
            du = tl.sum(g_dt * Bm[None, :, :], axis=1)
            if HAS_D:
                du = du + Dv[:, None] * dy
                tl.store(dD_part_ptr + row * DIM + d, tl.sum(dy * u, axis=1), mask=d_ok)
            if SOFTPLUS:
                ddt = ddt * _sigmoid(dt_raw)
            ddt = tl.where(dt_mask, ddt, 0.0)
            tl.store(du_ptr + _offsets(b, d, tp, sdu_b, sdu_d, sdu_l), du.to(du_ptr.dtype.element_ty), mask=dt_mask)
            tl.store(ddelta_ptr + _offsets(b, d, tp, sddt_b, sddt_d, sddt_l), ddt.to(ddelta_ptr.dtype.element_ty),
                     mask=dt_mask)
            if HAS_BIAS:
                tl.store(dbias_part_ptr + row * DIM + d, tl.sum(ddt, axis=1), mask=d_ok)
            tl.store(dA_part_ptr + state_offs, tl.sum(g_dt * decayed_prev, axis=2), mask=dn_ok)
            dB_acc += tl.sum(g_dt * u[:, None, :], axis=0)
            dC_acc += tl.sum(h * dy[:, None, :], axis=0)

        part_offs = (group * BATCH + b) * N * L + n[:, None] * L + tp[None, :]
        tl.store(dB_part_ptr + part_offs, dB_acc, mask=nt_mask)
        tl.store(dC_part_ptr + part_offs, dC_acc, mask=nt_mask)


def _like(t):
    """An empty tensor shaped like t whose memory order follows t's strides (so a transposed
    channels-last input gets a transposed channels-last output), without t's gaps if it has any."""
    order = sorted(range(t.dim()), key=lambda i: -t.stride(i))  # outermost dimension first
    out = torch.empty([t.shape[i] for i in order], dtype=t.dtype, device=t.device)
    return out.permute([order.index(i) for i in range(t.dim())])


def _strides(t, fallback):
    return (t if t is not None else fallback).stride()


def _forward(u, delta, A, B, C, D, z, delta_bias, softplus, reverse, cfg):
    """Launch the three forward kernels; returns y, the chunk-entering states and the chunk dt sums."""
    batch, dim, L = u.shape
    N = A.shape[1]
    n_chunks = triton.cdiv(L, cfg.block_l)
    f32 = dict(device=u.device, dtype=torch.float32)
    end_state = torch.empty(batch, n_chunks, dim, N, **f32)
    dt_sum = torch.empty(batch, n_chunks, dim, **f32)
    start_state = torch.empty(batch, n_chunks, dim, N, **f32)
    y = _like(u)
    flags = dict(HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus), REVERSE=bool(reverse))
    sizes = dict(BLOCK_D=cfg.fwd_d, N_PAD=cfg.n_pad, BLOCK_L=cfg.block_l, num_warps=cfg.fwd_warps)
    bias = delta_bias if delta_bias is not None else A
    grid = (triton.cdiv(dim, cfg.fwd_d), n_chunks, batch)
    _fwd_chunk_end_state[grid](
        u, delta, A, B, bias, end_state, dt_sum, dim, N, L, n_chunks,
        *u.stride(), *delta.stride(), *B.stride(), **sizes, **flags)
    carry_d = max(1, 512 // (cfg.n_pad * _CARRY_BLOCK))
    _fwd_chunk_carry[(triton.cdiv(dim, carry_d), batch)](
        A, end_state, dt_sum, start_state, dim, N, n_chunks,
        BLOCK_D=carry_d, N_PAD=cfg.n_pad, BLOCK_C=_CARRY_BLOCK, num_warps=4)
    del end_state
    _fwd_chunk_output[grid](
        u, delta, A, B, C, D if D is not None else A, z if z is not None else u, bias, start_state, y,
        dim, N, L, n_chunks,
        *u.stride(), *delta.stride(), *_strides(z, u), *B.stride(), *C.stride(), *y.stride(),
        HAS_D=D is not None, HAS_Z=z is not None, **sizes, **flags)
    return y, start_state, dt_sum


def _backward_groups(batch, n_chunks, dim, bwd_d, N, L):
    """How many channel groups share the backward launch: enough programs to fill the GPU,
    without the (groups, batch, N, L) partial dB/dC buffers growing past _MAX_PARTIAL_BYTES."""
    n_dblocks = triton.cdiv(dim, bwd_d)
    groups = max(1, min(n_dblocks, triton.cdiv(_TARGET_PROGRAMS, batch * n_chunks)))
    per_group = 2 * batch * N * L * 4
    return max(1, min(groups, _MAX_PARTIAL_BYTES // max(per_group, 1)))


def _backward(dy, u, delta, A, B, C, D, z, delta_bias, softplus, reverse, start_state, dt_sum, cfg):
    """Launch the three backward kernels; returns the gradients in argument order (None where absent)."""
    batch, dim, L = u.shape
    N = A.shape[1]
    n_chunks = start_state.shape[1]
    f32 = dict(device=u.device, dtype=torch.float32)
    flags = dict(HAS_BIAS=delta_bias is not None, SOFTPLUS=bool(softplus), REVERSE=bool(reverse))
    bias = delta_bias if delta_bias is not None else A
    z_arg = z if z is not None else u

    start_adjoint = torch.empty(batch, n_chunks, dim, N, **f32)
    _bwd_chunk_start_adjoint[(triton.cdiv(dim, cfg.fwd_d), n_chunks, batch)](
        delta, A, C, z_arg, bias, dy, start_adjoint, dim, N, L, n_chunks,
        *delta.stride(), *_strides(z, u), *C.stride(), *dy.stride(),
        HAS_Z=z is not None, BLOCK_D=cfg.fwd_d, N_PAD=cfg.n_pad, BLOCK_L=cfg.block_l,
        num_warps=cfg.fwd_warps, **flags)
    end_adjoint = torch.empty_like(start_adjoint)
    carry_d = max(1, 512 // (cfg.n_pad * _CARRY_BLOCK))
    _bwd_chunk_carry[(triton.cdiv(dim, carry_d), batch)](
        A, start_adjoint, dt_sum, end_adjoint, dim, N, n_chunks,
        BLOCK_D=carry_d, N_PAD=cfg.n_pad, BLOCK_C=_CARRY_BLOCK, num_warps=4)
    del start_adjoint

    groups = _backward_groups(batch, n_chunks, dim, cfg.bwd_d, N, L)
    du, ddelta = _like(u), _like(delta)
    dz = _like(z) if z is not None else None
    rows = batch * n_chunks
    dA_part = torch.empty(rows, dim, N, **f32)
    dD_part = torch.empty(rows, dim, **f32) if D is not None else None
    dbias_part = torch.empty(rows, dim, **f32) if delta_bias is not None else None
    dB_part = torch.empty(groups, batch, N, L, **f32)
    dC_part = torch.empty(groups, batch, N, L, **f32)
    _bwd_chunk_grads[(groups, n_chunks, batch)](
        u, delta, A, B, C, D if D is not None else A, z_arg, bias, dy,
        start_state, end_adjoint,
        du, ddelta, dz if dz is not None else du, dA_part,
        dD_part if dD_part is not None else dA_part, dbias_part if dbias_part is not None else dA_part,
        dB_part, dC_part,
        dim, N, L, n_chunks, groups, batch,
        *u.stride(), *delta.stride(), *_strides(z, u), *B.stride(), *C.stride(),
        *dy.stride(), *du.stride(), *ddelta.stride(), *_strides(dz, du),
        HAS_D=D is not None, HAS_Z=z is not None, BLOCK_D=cfg.bwd_d, N_PAD=cfg.n_pad, BLOCK_L=cfg.block_l,
        num_warps=cfg.bwd_warps, **flags)

    # Fixed-order sums of the per-program partials: deterministic, no atomics.
    dA = dA_part.sum(0).to(A.dtype)
    dD = dD_part.sum(0).to(D.dtype) if D is not None else None
    dbias = dbias_part.sum(0).to(delta_bias.dtype) if delta_bias is not None else None
    dB = dB_part.sum(0).to(B.dtype)
    dC = dC_part.sum(0).to(C.dtype)
    return du, ddelta, dA, dB, dC, dD, dz, dbias


class _SelectiveScanTriton(torch.autograd.Function):
    """autograd wrapper: keeps the inputs plus (batch, n_chunks, d_inner, d_state) chunk states."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, delta_bias, softplus, reverse, cfg):
        y, start_state, dt_sum = _forward(u, delta, A, B, C, D, z, delta_bias, softplus, reverse, cfg)
        ctx.save_for_backward(u, delta, A, B, C, D, z, delta_bias, start_state, dt_sum)
        ctx.softplus, ctx.reverse, ctx.cfg = softplus, reverse, cfg
        return y

    @staticmethod
    def backward(ctx, dy):
        u, delta, A, B, C, D, z, delta_bias, start_state, dt_sum = ctx.saved_tensors
        grads = _backward(dy, u, delta, A, B, C, D, z, delta_bias, ctx.softplus, ctx.reverse,
                          start_state, dt_sum, ctx.cfg)
        return (*grads, None, None, None)


def selective_scan_triton(
    u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False, *,
    block_l=None, block_d=None, num_warps=None,
):
    """Mamba's selective scan with real diagonal A, as Triton kernels (forward and backward).

    Args:
        u: (batch, d_inner, L) input (float32, float16 or bfloat16).
        delta: (batch, d_inner, L) step sizes before ``delta_bias`` and softplus.
        A: (d_inner, d_state), d_state up to 64 (other sizes work; larger ones spill registers).
        B, C: (batch, d_state, L).
        D: (d_inner,) skip weight, optional.
        z: (batch, d_inner, L) gate, optional: output is ``y * silu(z)``.
        delta_bias: (d_inner,) added before the softplus, optional.
        delta_softplus: apply softplus to ``delta + delta_bias``.
        reverse: scan from the last position to the first (``flip(scan(flip(inputs)))``): the kernels
            walk chunks of steps and read/write position L - 1 - step; nothing is copied.
        block_l: positions per chunk (power of two); default by d_state.
        block_d: channels per program; default by d_state (tests use small tiles).
        num_warps: warps of the per-chunk kernels; default by tile size.

    Returns:
        (batch, d_inner, L) tensor in u's dtype; differentiable in every tensor argument.
    """
    if not HAVE_TRITON:
        raise ImportError("The Triton scan needs the 'triton' package: pip install triton (Linux + CUDA).")
    _check_shapes(u, delta, A, B, C, D, z, delta_bias)
    if torch.float64 in {t.dtype for t in (u, delta, A, B, C)}:
        raise TypeError("The Triton scan computes in float32; use backend='torch' or 'reference' for float64.")
    if u.device.type != "cuda" and not INTERPRETED:
        raise RuntimeError(
            f"The Triton scan runs on CUDA tensors; got {u.device}. Use backend='torch' or 'cpu' here, "
            "or set TRITON_INTERPRET=1 before triton is first imported to run Triton's (slow) CPU "
            "interpreter."
        )
    # Activations are read in place with any strides (e.g. the transposed channels-last views the
    # Mamba mixer passes); only the small parameters are made contiguous.
    A, D, delta_bias = (t.contiguous() if t is not None else None for t in (A, D, delta_bias))
    cfg = launch_config(A.shape[1], block_l, block_d, num_warps)
    if triton.cdiv(u.shape[-1], cfg.block_l) > 65535 or u.shape[0] > 65535:
        raise ValueError(
            f"L={u.shape[-1]} makes more than 65535 chunks of block_l={cfg.block_l} (or the batch is over "
            "65535), beyond a CUDA grid dimension: pass a larger block_l or split the batch."
        )
    return _SelectiveScanTriton.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), bool(reverse), cfg)


def _vectorize_interpreter_scans():
    """Make the interpreter's generic ``tl.associative_scan`` step along the scan axis with whole
    slices instead of calling the combine function once per element (same order of operations,
    same results, ~1000x fewer Python calls). Only touches Triton's CPU interpreter."""
    try:
        import numpy as np
        from triton.runtime.interpreter import ScanOps
    except ImportError:
        return
    if getattr(ScanOps, "_grelu_caduceus_vectorized", False):
        return

    def generic_scan(self, inputs):
        data = [np.moveaxis(x.handle.data, self.axis, 0) for x in inputs]
        outs = [np.empty_like(x) for x in data]
        acc = None
        for i in range(data[0].shape[0]):
            cur = tuple(self.to_tensor(np.ascontiguousarray(x[i]), inp.dtype) for x, inp in zip(data, inputs))
            if acc is None:
                acc = cur
            else:
                ret = self.combine_fn.fn(*acc, *cur)
                acc = ret if isinstance(ret, tuple) else (ret,)
            for out, value in zip(outs, acc):
                out[i] = np.reshape(value.handle.data, out[i].shape)
        return [self.to_tensor(np.moveaxis(out, 0, self.axis), inp.dtype) for out, inp in zip(outs, inputs)]

    ScanOps.generic_scan = generic_scan
    ScanOps._grelu_caduceus_vectorized = True


if INTERPRETED:
    _vectorize_interpreter_scans()

__all__ = ["selective_scan_triton", "launch_config", "TileConfig", "HAVE_TRITON", "INTERPRETED"]
