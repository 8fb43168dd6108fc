"""Compiled CPU kernels (numba): the selective scan and the causal depthwise convolution + SiLU.

Both work in channels-last layout, (batch, L, d_inner), the layout the mixer's linear layers produce,
so no transposes are needed and the innermost loop runs over a block of ``LANES`` contiguous channels:
it vectorises without horizontal reductions. The scan state (d_state x LANES floats) stays in cache
and is never written out for the whole sequence: the forward pass stores it only at chunk boundaries
(every ``CHUNK`` positions) when gradients are needed, and the backward pass recomputes each chunk
from its boundary state and runs the adjoint recurrence in reverse.

The bias and softplus of the step size, the D skip and the z gate are fused into both kernels, so a
training step runs no separate elementwise passes for them. ``reverse`` runs either kernel from the
last position to the first in place (the reverse direction of BiMamba), without flipped copies.

exp() is a vectorisable polynomial (relative error ~1e-7): LLVM cannot vectorise libm's exp without
a vector math library, and it is the inner loop's main cost. (Intel's SVML, pip package ``icc_rt``,
would not help: the llvmlite wheels on PyPI are built without SVML support,
``llvmlite.binding.has_svml`` is False.)
"""

import numba as nb
import numpy as np
import torch
import torch.nn.functional as F
from llvmlite import ir
from numba import types
from numba.extending import intrinsic

CHUNK = 128
LANES = 16
_JIT = dict(nogil=True, fastmath=True, cache=True)
_ONE = np.float32(1.0)


@intrinsic
def _int32_bits_as_float32(typingctx, bits):
    sig = types.float32(types.int32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@nb.njit(inline="always", **_JIT)
def _exp(x):
    """float32 exp(x) for x <= 88 as 2^k * p(r), r = x - k ln2 in [-ln2/2, ln2/2], degree-7 Taylor."""
    x = max(x, np.float32(-87.0))
    k = np.floor(x * np.float32(1.4426950408889634) + np.float32(0.5))
    r = x - k * np.float32(0.693145751953125) - k * np.float32(1.428606765330187e-06)
    p = np.float32(1.0 / 5040.0)
    p = p * r + np.float32(1.0 / 720.0)
    p = p * r + np.float32(1.0 / 120.0)
    p = p * r + np.float32(1.0 / 24.0)
    p = p * r + np.float32(1.0 / 6.0)
    p = p * r + np.float32(0.5)
    p = p * r + _ONE
    p = p * r + _ONE
    return p * _int32_bits_as_float32(np.int32((np.int32(k) + 127) << 23))


@nb.njit(inline="always", **_JIT)
def _sigmoid(x):
    return _ONE / (_ONE + _exp(-x))


@nb.njit(inline="always", **_JIT)
def _softplus(x):
    """log(1 + e^x) = max(x, 0) + log1p(t), t = e^-|x| in (0, 1]; log1p(t) = 2 atanh(t / (2 + t)) as a
    series in s = t / (2 + t) <= 1/3 (relative error < 1e-8, no cancellation for small t)."""
    t = _exp(-abs(x))
    s = t / (np.float32(2.0) + t)
    s2 = s * s
    p = np.float32(1.0 / 15.0)
    p = p * s2 + np.float32(1.0 / 13.0)
    p = p * s2 + np.float32(1.0 / 11.0)
    p = p * s2 + np.float32(1.0 / 9.0)
    p = p * s2 + np.float32(1.0 / 7.0)
    p = p * s2 + np.float32(1.0 / 5.0)
    p = p * s2 + np.float32(1.0 / 3.0)
    p = p * s2 + _ONE
    return max(x, np.float32(0.0)) + np.float32(2.0) * s * p


# ----------------------------------------------------------------------------------------------
# Selective scan. Arrays: u, delta, z, y: (B, L, D) channels-last (z may be a strided channel slice);
# At: (N, D); Bm, Cm: (B, L, N); states: (B, n_chunks, N, D). The step size is
# dt = softplus(delta + bias) (just delta + bias without softplus), computed inside the kernels.
# ``reverse`` runs the recurrence from position L-1 to 0: the kernels walk "steps" s = 0 .. L-1 and
# read and write position t = L-1-s, so a reversed scan needs no flipped copies. Chunks of CHUNK
# steps (for the saved states) are counted in step order.
# ----------------------------------------------------------------------------------------------


@nb.njit(inline="always", **_JIT)
def _step_size(raw, softplus):
    return _softplus(raw) if softplus else raw


@nb.njit(inline="always", **_JIT)
def _project_dt(dtrow, wk, out):
    """out[j] = sum_r dtrow[r] * wk[r, j]: one position's step sizes (before the bias) from the
    low-rank projection (Mamba's dt_proj weight, transposed to (R, LANES) for these channels)."""
    out[:] = 0.0
    for r in range(wk.shape[0]):
        dr = dtrow[r]
        for j in range(LANES):
            out[j] += dr * wk[r, j]


@nb.njit(parallel=True, **_JIT)
def _scan_fwd(u, delta, dtl, Wt, lowrank, At, Bm, Cm, offs, Dskip, z, bias, softplus, has_z, save_states, reverse,
              accumulate, group, y, states):
    """A task owns ``group`` consecutive blocks of LANES channels and steps them together, position
    by position: each step then reads and writes group * LANES contiguous channels of a row, which
    the hardware prefetchers follow (one block per task, 64 bytes per 2 KB row at d_inner 512, ran
    at memory latency, 2-4x slower)."""
    n_batch, L, nd = u.shape
    N = At.shape[0]
    n_blocks = (nd + LANES - 1) // LANES
    n_groups = (n_blocks + group - 1) // group
    R = Wt.shape[0]
    for task in nb.prange(n_batch * n_groups):
        b = task // n_groups
        k0 = (task % n_groups) * group
        nk = min(n_blocks, k0 + group) - k0
        h = np.zeros((nk, N, LANES), dtype=np.float32)
        a = np.empty((nk, N, LANES), dtype=np.float32)
        wl = np.empty((nk, R, LANES), dtype=np.float32)  # the low-rank step-size projection
        dlane = np.empty((nk, LANES), dtype=np.float32)  # zeros when there is no D
        blane = np.empty((nk, LANES), dtype=np.float32)  # zeros when there is no bias
        for k in range(nk):
            c0 = (k0 + k) * LANES
            a[k] = At[:, c0 : c0 + LANES]
            if lowrank:
                wl[k] = Wt[:, c0 : c0 + LANES]
            dlane[k] = Dskip[c0 : c0 + LANES]
            blane[k] = bias[c0 : c0 + LANES]
            if save_states:
                states[b, 0, :, c0 : c0 + LANES] = 0.0
        dtv = np.empty(LANES, dtype=np.float32)
        dtu = np.empty(LANES, dtype=np.float32)
        acc = np.empty(LANES, dtype=np.float32)
        for s in range(L):
            t = L - 1 - s if reverse else s
            brow = Bm[b, t, offs[0] : offs[0] + N]
            crow = Cm[b, t, offs[1] : offs[1] + N]
            dtrow = dtl[b, t, offs[2] : offs[2] + R]
            for k in range(nk):
                c0 = (k0 + k) * LANES
                hk = h[k]
                ak = a[k]
                urow = u[b, t, c0 : c0 + LANES]
                if lowrank:
                    _project_dt(dtrow, wl[k], dtv)
                else:
                    dtv[:] = delta[b, t, c0 : c0 + LANES]
                for j in range(LANES):
                    dtv[j] = _step_size(dtv[j] + blane[k, j], softplus)
                for j in range(LANES):
                    dtu[j] = dtv[j] * urow[j]
                    acc[j] = dlane[k, j] * urow[j]
                for n in range(N):
                    bn = brow[n]
                    cn = crow[n]
                    for j in range(LANES):
                        hk[n, j] = _exp(dtv[j] * ak[n, j]) * hk[n, j] + dtu[j] * bn
                        acc[j] += hk[n, j] * cn
                yrow = y[b, t, c0 : c0 + LANES]
                if has_z:
                    zrow = z[b, t, c0 : c0 + LANES]
                    for j in range(LANES):
                        acc[j] = acc[j] * zrow[j] * _sigmoid(zrow[j])
                if accumulate:
                    for j in range(LANES):
                        yrow[j] += acc[j]
                else:
                    for j in range(LANES):
                        yrow[j] = acc[j]
            if save_states and (s + 1) % CHUNK == 0 and s + 1 < L:
                for k in range(nk):
                    c0 = (k0 + k) * LANES
                    states[b, (s + 1) // CHUNK, :, c0 : c0 + LANES] = h[k]


def _fwd_group(n_batch, n_blocks, d_state):
    """Channel blocks per forward task: enough tasks for the threads, with the task's states and A
    (2 * 4 * d_state * LANES bytes per block) within 32 KB of L1: 16 blocks at d_state 16."""
    tasks_per_batch = max(1, -(-nb.get_num_threads() // n_batch))
    fits = max(1, FWD_STATE_BYTES // (8 * d_state * LANES))
    return max(1, min(fits, -(-n_blocks // tasks_per_batch)))


FWD_STATE_BYTES = 32 * 1024


@nb.njit(parallel=True, **_JIT)
def _scan_bwd(u, delta, dtl, Wt, lowrank, At, Bm, Cm, offs, Dskip, z, bias, softplus, has_z, reverse, states, dout,
              du_out, ddelta, ddt_part, dWt, dAt, dB_part, dC_part, dD, dz, dbias, n_groups, group):
    """Adjoint of _scan_fwd, with the bias, softplus, D skip and z gate fused in.

    Channels are split into ``n_groups`` contiguous groups, one task each, so per-channel gradients
    (dA, dD, dbias) need no atomics; dB and dC, which sum over channels, go to the group's own
    partial buffer (n_groups, B, L, N), summed by the caller; each group writes every entry of its
    partial buffers (so they need no zeroing). Inside a group, ``group`` blocks of LANES channels are
    stepped together (contiguous reads and writes per step, as in _scan_fwd). Each chunk's states
    are recomputed from the state saved at its start and kept (CHUNK + 1 states per block, in L2);
    the decays are recomputed where they are needed rather than stored (storing them measured
    slower: the adjoint pass is then bound by L2 traffic)."""
    n_batch, L, nd = u.shape
    N = At.shape[0]
    n_blocks = (nd + LANES - 1) // LANES
    per = (n_blocks + n_groups - 1) // n_groups
    n_chunks = (L + CHUNK - 1) // CHUNK
    R = Wt.shape[0]
    for g in nb.prange(n_groups):
        hs = np.empty((group, CHUNK + 1, N, LANES), dtype=np.float32)  # states inside one chunk
        dts = np.empty((group, CHUNK, LANES), dtype=np.float32)  # step sizes inside one chunk
        raws = np.empty((group, CHUNK, LANES), dtype=np.float32)  # ... before the softplus
        wl = np.empty((group, R, LANES), dtype=np.float32)
        dwl = np.empty((group, R, LANES), dtype=np.float32)
        gdv = np.empty(LANES, dtype=np.float32)
        vb = np.empty((N, LANES), dtype=np.float32)  # per-lane partial sums of dB, dC, d dtl
        vc = np.empty((N, LANES), dtype=np.float32)
        vr = np.empty((R, LANES), dtype=np.float32)
        ypre = np.empty((group, CHUNK, LANES), dtype=np.float32)  # ungated outputs inside one chunk
        dh = np.empty((group, N, LANES), dtype=np.float32)
        da = np.empty((group, N, LANES), dtype=np.float32)
        a = np.empty((group, N, LANES), dtype=np.float32)
        dlane = np.empty((group, LANES), dtype=np.float32)  # zeros when there is no D
        blane = np.empty((group, LANES), dtype=np.float32)  # zeros when there is no bias
        ddlane = np.empty((group, LANES), dtype=np.float32)
        dblane = np.empty((group, LANES), dtype=np.float32)
        uv = np.empty(LANES, dtype=np.float32)
        dtu = np.empty(LANES, dtype=np.float32)
        acc = np.empty(LANES, dtype=np.float32)
        gy = np.empty(LANES, dtype=np.float32)
        gdt = np.empty(LANES, dtype=np.float32)
        gdtu = np.empty(LANES, dtype=np.float32)
        g_end = min(n_blocks, (g + 1) * per)
        if g * per >= g_end:  # an empty group (more groups than blocks would need): zero partials
            dB_part[g] = 0.0
            dC_part[g] = 0.0
            if lowrank:
                ddt_part[g] = 0.0
        for k0 in range(g * per, g_end, group):
            first = k0 == g * per
            nk = min(g_end, k0 + group) - k0
            for k in range(nk):
                c0 = (k0 + k) * LANES
                a[k] = At[:, c0 : c0 + LANES]
                dlane[k] = Dskip[c0 : c0 + LANES]
                blane[k] = bias[c0 : c0 + LANES]
                if lowrank:
                    wl[k] = Wt[:, c0 : c0 + LANES]
            da[:] = 0.0
            dwl[:] = 0.0
            ddlane[:] = 0.0
            dblane[:] = 0.0
            for b in range(n_batch):
                dh[:] = 0.0
                for ch in range(n_chunks - 1, -1, -1):
                    s0 = ch * CHUNK
                    s1 = min(L, s0 + CHUNK)
                    for k in range(nk):
                        c0 = (k0 + k) * LANES
                        hs[k, 0] = states[b, ch, :, c0 : c0 + LANES]
                    for s in range(s0, s1):  # recompute this chunk's step sizes and states
                        i = s - s0
                        t = L - 1 - s if reverse else s
                        brow = Bm[b, t, offs[0] : offs[0] + N]
                        crow = Cm[b, t, offs[1] : offs[1] + N]
                        dtrow = dtl[b, t, offs[2] : offs[2] + R]
                        for k in range(nk):
                            c0 = (k0 + k) * LANES
                            hk = hs[k]
                            ak = a[k]
                            dtk = dts[k]
                            rawk = raws[k, i]
                            urow = u[b, t, c0 : c0 + LANES]
                            if lowrank:
                                _project_dt(dtrow, wl[k], rawk)
                            else:
                                rawk[:] = delta[b, t, c0 : c0 + LANES]
                            for j in range(LANES):
                                rawk[j] += blane[k, j]
                                dtk[i, j] = _step_size(rawk[j], softplus)
                            for j in range(LANES):
                                dtu[j] = dtk[i, j] * urow[j]
                                acc[j] = dlane[k, j] * urow[j]
                            for n in range(N):
                                bn = brow[n]
                                cn = crow[n]
                                for j in range(LANES):
                                    hn = _exp(dtk[i, j] * ak[n, j]) * hk[i, n, j] + dtu[j] * bn
                                    hk[i + 1, n, j] = hn
                                    acc[j] += hn * cn
                            for j in range(LANES):
                                ypre[k, i, j] = acc[j]
                    for s in range(s1 - 1, s0 - 1, -1):
                        i = s - s0
                        t = L - 1 - s if reverse else s
                        brow = Bm[b, t, offs[0] : offs[0] + N]
                        crow = Cm[b, t, offs[1] : offs[1] + N]
                        vb[:] = 0.0
                        vc[:] = 0.0
                        vr[:] = 0.0
                        for k in range(nk):
                            c0 = (k0 + k) * LANES
                            hk = hs[k]
                            ak = a[k]
                            dtk = dts[k]
                            dhk = dh[k]
                            dak = da[k]
                            urow = u[b, t, c0 : c0 + LANES]
                            gorow = dout[b, t, c0 : c0 + LANES]
                            for j in range(LANES):
                                uv[j] = urow[j]
                                gy[j] = gorow[j]
                            if has_z:
                                zrow = z[b, t, c0 : c0 + LANES]
                                dzrow = dz[b, t, c0 : c0 + LANES]
                                for j in range(LANES):
                                    zj = zrow[j]
                                    sg = _sigmoid(zj)
                                    dzrow[j] = gy[j] * ypre[k, i, j] * sg * (_ONE + zj * (_ONE - sg))
                                    gy[j] = gy[j] * zj * sg
                            for j in range(LANES):
                                ddlane[k, j] += gy[j] * uv[j]
                                dtu[j] = dtk[i, j] * uv[j]
                                gdt[j] = 0.0
                                gdtu[j] = 0.0
                            for n in range(N):
                                bn = brow[n]
                                cn = crow[n]
                                for j in range(LANES):
                                    d = _exp(dtk[i, j] * ak[n, j])
                                    vc[n, j] += gy[j] * hk[i + 1, n, j]
                                    dhn = dhk[n, j] + gy[j] * cn
                                    g_dec = dhn * hk[i, n, j] * d
                                    gdt[j] += g_dec * ak[n, j]
                                    dak[n, j] += g_dec * dtk[i, j]
                                    gdtu[j] += dhn * bn
                                    vb[n, j] += dhn * dtu[j]
                                    dhk[n, j] = dhn * d
                            durow = du_out[b, t, c0 : c0 + LANES]
                            for j in range(LANES):
                                gd = gdt[j] + gdtu[j] * uv[j]
                                if softplus:  # d softplus(x) / dx = sigmoid(x)
                                    gd *= _sigmoid(raws[k, i, j])
                                gdv[j] = gd
                                dblane[k, j] += gd
                                durow[j] = dlane[k, j] * gy[j] + gdtu[j] * dtk[i, j]
                            if lowrank:  # d dtl[r] = sum_c gd[c] W[c, r]; d W[c, r] += gd[c] dtl[r]
                                dtrow = dtl[b, t, offs[2] : offs[2] + R]
                                wk = wl[k]
                                dwk = dwl[k]
                                for r in range(R):
                                    dr = dtrow[r]
                                    for j in range(LANES):
                                        vr[r, j] += gdv[j] * wk[r, j]
                                        dwk[r, j] += gdv[j] * dr
                            else:
                                ddelta[b, t, c0 : c0 + LANES] = gdv
                        # The sums over channels (dB, dC, d dtl): lane vectors summed over the
                        # blocks above, reduced across lanes once per position.
                        for n in range(N):
                            sb_ = np.float32(0.0)
                            sc_ = np.float32(0.0)
                            for j in range(LANES):
                                sb_ += vb[n, j]
                                sc_ += vc[n, j]
                            if first:
                                dB_part[g, b, t, n] = sb_
                                dC_part[g, b, t, n] = sc_
                            else:
                                dB_part[g, b, t, n] += sb_
                                dC_part[g, b, t, n] += sc_
                        if lowrank:
                            for r in range(R):
                                sr_ = np.float32(0.0)
                                for j in range(LANES):
                                    sr_ += vr[r, j]
                                if first:
                                    ddt_part[g, b, t, r] = sr_
                                else:
                                    ddt_part[g, b, t, r] += sr_
            for k in range(nk):
                c0 = (k0 + k) * LANES
                dAt[:, c0 : c0 + LANES] = da[k]
                if lowrank:
                    dWt[:, c0 : c0 + LANES] = dwl[k]
                dD[c0 : c0 + LANES] = ddlane[k]
                dbias[c0 : c0 + LANES] = dblane[k]


BWD_STATE_BYTES = 1024 * 1024  # the backward's recomputed states per task, within L2


def _bwd_group(n_blocks_per_group, d_state):
    """Channel blocks stepped together in the backward pass: a chunk's states (4 * d_state * LANES
    bytes per position and block) within about BWD_STATE_BYTES (8 blocks at d_state 16)."""
    fits = max(1, BWD_STATE_BYTES // (CHUNK * 4 * d_state * LANES))
    return max(1, min(fits, n_blocks_per_group))


def _n_groups(n_blocks):
    """Backward tasks: one channel group per thread. Fewer, wider groups amortise the per-position
    reductions over channels (dB, dC) over more blocks and halve the partial buffers (2 groups per
    thread measured 15% slower for a forward + backward scan at L 65536, d_inner 128)."""
    return max(1, min(n_blocks, nb.get_num_threads()))


def _channels_last(t, pad):
    """(B, C, L) tensor -> contiguous float32 (B, L, C + pad) tensor (no copy if already so and pad=0)."""
    t = t.detach().transpose(1, 2).to(torch.float32)
    return F.pad(t, (0, pad)) if pad else t.contiguous()


def _channels_last_view(t, pad):
    """(B, C, L) tensor -> float32 (B, L, C + pad) tensor whose channels are contiguous; a transposed
    channel slice of a wider tensor (the mixer's z) is used in place."""
    v = t.detach().transpose(1, 2)
    if v.dtype == torch.float32 and v.stride(-1) == 1 and not pad:
        return v
    return _channels_last(t, pad)


def _pad_last(t, pad):
    t = t.detach().to(torch.float32)
    return F.pad(t, (0, pad)) if pad else t.contiguous()


def _none():
    """A placeholder operand for an absent array. Made per call, never a module-level tensor: one made
    at import would be an inference tensor if this module were first imported under
    torch.inference_mode (e.g. from Lightning's validation), and autograd refuses to save those."""
    return torch.zeros(1, 1, 1)


def _fwd_operands(u, delta, A, B, C, D, z, bias, delta_proj):
    """The kernels' float32 channels-last operands (channels zero-padded to a multiple of LANES)."""
    batch, d_inner, L = u.shape
    pad = -d_inner % LANES
    ul = _channels_last(u, pad)
    # B, C and the low-rank step sizes are read in place where they are channel slices of one
    # (B, L, W) tensor (the mixer's x_proj output); offs holds their first channels.
    if delta_proj is None:
        dl, (dtl, r_off), Wt = _channels_last(delta, pad), (_none(), 0), torch.zeros(1, 1)
    else:  # delta is (B, R, L): the low-rank step sizes, projected to d_inner inside the kernel
        dl, (dtl, r_off), Wt = _none(), _wider_parent(delta.transpose(1, 2)), _pad_last(delta_proj.t(), pad)
    (Bl, b_off), (Cl, c_off) = _wider_parent(B.transpose(1, 2)), _wider_parent(C.transpose(1, 2))
    offs = torch.tensor([b_off, c_off, r_off], dtype=torch.int64)
    At = _pad_last(A.t(), pad)
    Dt = _pad_last(D, pad) if D is not None else torch.zeros(d_inner + pad)
    bt = _pad_last(bias, pad) if bias is not None else torch.zeros(d_inner + pad)
    zl = _channels_last_view(z, pad) if z is not None else _none()
    return [ul, dl, dtl, Wt, At, Bl, Cl, offs, Dt, zl, bt]


def _run_fwd(ops, softplus, has_z, lowrank, reverse, save, y, accumulate=False):
    ul, dl, dtl, Wt, At, Bl, Cl, offs, Dt, zl, bt = ops
    batch, L, d_pad = ul.shape
    N = At.shape[0]
    states = torch.empty(batch, (L + CHUNK - 1) // CHUNK if save else 1, N, d_pad)
    _scan_fwd(ul.numpy(), dl.numpy(), dtl.numpy(), Wt.numpy(), lowrank, At.numpy(), Bl.numpy(), Cl.numpy(),
              offs.numpy(), Dt.numpy(), zl.numpy(), bt.numpy(), softplus, has_z, save, reverse, accumulate,
              _fwd_group(batch, d_pad // LANES, N), y.numpy(), states.numpy())
    return states


class _CpuScan(torch.autograd.Function):
    """The whole scan in the kernels, forward and backward: delta bias, softplus, D skip and z gate
    fused, and with ``delta_proj`` the step-size projection too. Channels are zero-padded to a
    multiple of LANES (padded lanes have zero input and no effect)."""

    @staticmethod
    def forward(ctx, u, delta, A, B, C, D, z, bias, softplus, reverse, delta_proj):
        batch, d_inner, L = u.shape
        ops = _fwd_operands(u, delta, A, B, C, D, z, bias, delta_proj)
        save = any(ctx.needs_input_grad)
        y = torch.empty(ops[0].shape)
        lowrank = delta_proj is not None
        states = _run_fwd(ops, softplus, z is not None, lowrank, reverse, save, y)
        if save:
            ctx.save_for_backward(*ops, states)
            ctx.flags = (softplus, z is not None, reverse, lowrank)
            ctx.dtypes = tuple(None if t is None else t.dtype for t in (u, delta, A, B, C, D, z, bias))
            ctx.proj_dtype = None if delta_proj is None else delta_proj.dtype
        return y[..., :d_inner].transpose(1, 2).to(u.dtype)

    @staticmethod
    def backward(ctx, dout):
        ul, dl, dtl, Wt, At, Bl, Cl, offs, Dt, zl, bt, states = ctx.saved_tensors
        softplus, has_z, reverse, lowrank = ctx.flags
        batch, L, d_pad = ul.shape
        d_inner = dout.shape[1]
        N = At.shape[0]
        G = _n_groups(d_pad // LANES)
        du = torch.empty_like(ul)
        ddelta = _none() if lowrank else torch.empty_like(dl)
        ddt = torch.empty(G, batch, L, Wt.shape[0]) if lowrank else torch.zeros(1, 1, 1, 1)
        dWt = torch.zeros_like(Wt)
        dz = torch.empty_like(ul) if has_z else _none()
        dAt, dD, dbias = torch.zeros_like(At), torch.zeros(d_pad), torch.zeros(d_pad)
        dB, dC = torch.empty(G, batch, L, N), torch.empty(G, batch, L, N)  # the kernel writes every entry
        _scan_bwd(ul.numpy(), dl.numpy(), dtl.numpy(), Wt.numpy(), lowrank, At.numpy(), Bl.numpy(), Cl.numpy(),
                  offs.numpy(), Dt.numpy(), zl.numpy(), bt.numpy(), softplus, has_z, reverse, states.numpy(),
                  _channels_last(dout, d_pad - d_inner).numpy(),
                  du.numpy(), ddelta.numpy(), ddt.numpy(), dWt.numpy(), dAt.numpy(), dB.numpy(), dC.numpy(),
                  dD.numpy(), dz.numpy(), dbias.numpy(), G, _bwd_group(-(-(d_pad // LANES) // G), N))
        c = slice(0, d_inner)
        grads = [du[..., c].transpose(1, 2),
                 ddt.sum(0).transpose(1, 2) if lowrank else ddelta[..., c].transpose(1, 2), dAt[:, c].t(),
                 dB.sum(0).transpose(1, 2), dC.sum(0).transpose(1, 2), dD[c],
                 dz[..., c].transpose(1, 2) if has_z else None, dbias[c]]
        grads = [None if dtype is None else g.to(dtype) for g, dtype in zip(grads, ctx.dtypes)]
        dproj = dWt[:, c].t().to(ctx.proj_dtype) if lowrank and ctx.needs_input_grad[10] else None
        return (*grads, None, None, dproj)


def _accumulable(out, u):
    """``out`` is a float32 (B, d_inner, L) channels-last tensor the kernel can add into in place."""
    v = out.transpose(1, 2)
    return (out.dtype == torch.float32 and out.shape == u.shape and v.is_contiguous()
            and u.shape[1] % LANES == 0)


def selective_scan_cpu(u, delta, A, B, C, D=None, z=None, delta_bias=None, delta_softplus=False, reverse=False,
                       delta_proj=None, add_to=None, overwrite_u=False):
    """Compiled CPU selective scan; arguments and shapes as ``grelu_caduceus.core.scan.selective_scan``.

    Bias, softplus, D skip and z gate are fused into the kernels, in the forward and the backward
    pass. ``reverse=True`` scans from the last position to the first without flipped copies.
    ``delta_proj`` (d_inner, R): ``delta`` is (batch, R, L) and the step sizes are
    ``delta_proj @ delta``, computed inside the kernels (Mamba's dt_proj; the (batch, d_inner, L)
    step sizes are never stored). ``add_to``: returns ``add_to + scan(...)``; without autograd the
    sum is written into ``add_to`` in place (it must not be used otherwise afterwards).
    ``overwrite_u``: without autograd (and without ``add_to``) the output may be written into u's
    memory (each position's input is read before its output is written); u is then lost.
    Fastest when u, delta, z are channels-last views (``u.transpose(1, 2).is_contiguous()``); the
    output is returned as such a view.
    """
    if u.device.type != "cpu":
        raise ValueError("The 'cpu' scan backend needs CPU tensors; use backend='auto' on other devices.")
    args = (u, delta, A, B, C, D, z, delta_bias, delta_proj)
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in args + (add_to,))
    target = None
    if not tracked and u.dtype == torch.float32:  # in place, into add_to or into u
        if add_to is not None and _accumulable(add_to, u):
            target = add_to
        elif add_to is None and overwrite_u and _accumulable(u, u):
            target = u  # its channels-last operand is u's own memory (no copy)
    if target is not None:
        _run_fwd(_fwd_operands(*args), bool(delta_softplus), z is not None, delta_proj is not None, bool(reverse),
                 False, target.detach().transpose(1, 2), accumulate=target is add_to)
        return target
    y = _CpuScan.apply(u, delta, A, B, C, D, z, delta_bias, bool(delta_softplus), bool(reverse), delta_proj)
    return y if add_to is None else add_to + y


# ----------------------------------------------------------------------------------------------
# Causal depthwise convolution + SiLU, channels-last: x, out: (B, L, D); wT: (K, D); bias: (D,).
# ``reverse``: anti-causal (``flip(conv(flip(x)))``), computed in place like the scan: the kernels walk
# steps s and read/write position L-1-s.
# ----------------------------------------------------------------------------------------------
T_BLOCK = 512


@nb.njit(inline="always", **_JIT)
def _conv_row(x, c_off, wT, bias, b, t, acc, reverse):
    """acc[:] = bias + sum_k wT[k] * x[b, t - K + 1 + k, c_off:] (pre-activation of output step t;
    steps are positions, or positions counted from the end if ``reverse``).

    x may be wider than the convolution (channels c_off .. c_off + D are used), so the mixer's
    in_proj output is read in place."""
    K = wT.shape[0]
    L = x.shape[1]
    acc[:] = bias
    for k in range(K):
        s = t - K + 1 + k
        if s >= 0:
            xrow = x[b, L - 1 - s if reverse else s, c_off : c_off + acc.shape[0]]
            wrow = wT[k]
            for c in range(acc.shape[0]):
                acc[c] += wrow[c] * xrow[c]


@nb.njit(parallel=True, **_JIT)
def _conv_silu_fwd(x, c_off, wT, bias, apply_silu, reverse, out):
    n_batch, L, nd = out.shape
    n_tb = (L + T_BLOCK - 1) // T_BLOCK
    for task in nb.prange(n_batch * n_tb):
        b, t0 = task // n_tb, (task % n_tb) * T_BLOCK
        acc = np.empty(nd, dtype=np.float32)
        for t in range(t0, min(L, t0 + T_BLOCK)):
            _conv_row(x, c_off, wT, bias, b, t, acc, reverse)
            orow = out[b, L - 1 - t if reverse else t]
            if apply_silu:
                for c in range(nd):
                    orow[c] = acc[c] * _sigmoid(acc[c])
            else:
                orow[:] = acc


@nb.njit(parallel=True, **_JIT)
def _conv_silu_bwd(x, c_off, wT, bias, apply_silu, reverse, gout, gx, gw_part, gb_part):
    """gw_part (tasks, K, D) and gb_part (tasks, D): per-task partial sums, reduced by the caller."""
    n_batch, L, nd = gx.shape
    K = wT.shape[0]
    n_tb = (L + T_BLOCK - 1) // T_BLOCK
    for task in nb.prange(n_batch * n_tb):
        b, t0 = task // n_tb, (task % n_tb) * T_BLOCK
        t1 = min(L, t0 + T_BLOCK)
        gpre = np.zeros((t1 - t0 + K - 1, nd), dtype=np.float32)  # also the K-1 positions after t1
        acc = np.empty(nd, dtype=np.float32)
        for t in range(t0, min(L, t1 + K - 1)):
            grow = gout[b, L - 1 - t if reverse else t]
            prow = gpre[t - t0]
            if apply_silu:
                _conv_row(x, c_off, wT, bias, b, t, acc, reverse)
                for c in range(nd):
                    sg = _sigmoid(acc[c])
                    prow[c] = grow[c] * sg * (_ONE + acc[c] * (_ONE - sg))
            else:
                prow[:] = grow
        gw = gw_part[task]
        gb = gb_part[task]
        for t in range(t0, t1):
            prow = gpre[t - t0]
            for c in range(nd):
                gb[c] += prow[c]
            for k in range(K):
                s = t - K + 1 + k
                if s >= 0:
                    xrow = x[b, L - 1 - s if reverse else s, c_off : c_off + nd]
                    for c in range(nd):
                        gw[k, c] += prow[c] * xrow[c]
            gxrow = gx[b, L - 1 - t if reverse else t]
            gxrow[:] = 0.0
            for m in range(K):  # output t + m used x[t] with weight K - 1 - m
                wrow = wT[K - 1 - m]
                qrow = gpre[t - t0 + m]
                for c in range(nd):
                    gxrow[c] += wrow[c] * qrow[c]


def _wider_parent(x):
    """For a channel slice x (B, L, D) of a contiguous (B, L, W) tensor, return (parent, offset) so
    the kernel can read it in place; else (contiguous copy, 0)."""
    x = x.detach()
    B, L, D = x.shape
    sb, sl, sc = x.stride()
    if x.dtype == torch.float32 and sc == 1 and sl >= D and sb == L * sl:
        c_off = x.storage_offset() % sl
        start = x.storage_offset() - c_off
        if c_off + D <= sl and start + B * sb <= x.untyped_storage().nbytes() // x.element_size():
            return torch.as_strided(x, (B, L, sl), (sb, sl, 1), start), c_off
    return x.to(torch.float32).contiguous(), 0


class _CpuConv(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, weight, bias, apply_silu, reverse=False):
        parent, c_off = _wider_parent(x)
        wT = weight.detach().reshape(weight.shape[0], -1).t().float().contiguous()  # (K, D)
        b = bias.detach().float().contiguous() if bias is not None else torch.zeros(wT.shape[1])
        out = torch.empty(x.shape, dtype=torch.float32)
        _conv_silu_fwd(parent.numpy(), c_off, wT.numpy(), b.numpy(), apply_silu, reverse, out.numpy())
        ctx.save_for_backward(parent, wT, b)
        ctx.c_off, ctx.apply_silu, ctx.reverse = c_off, apply_silu, reverse
        ctx.has_bias, ctx.wshape, ctx.dtype = bias is not None, weight.shape, x.dtype
        return out.to(x.dtype)

    @staticmethod
    def backward(ctx, gout):
        parent, wT, b = ctx.saved_tensors
        n_batch, L, nd = gout.shape
        tasks = n_batch * ((L + T_BLOCK - 1) // T_BLOCK)
        gx = torch.empty(gout.shape, dtype=torch.float32)
        gw, gb = torch.zeros(tasks, *wT.shape), torch.zeros(tasks, nd)
        _conv_silu_bwd(parent.numpy(), ctx.c_off, wT.numpy(), b.numpy(), ctx.apply_silu, ctx.reverse,
                       gout.float().contiguous().numpy(), gx.numpy(), gw.numpy(), gb.numpy())
        gweight = gw.sum(0).t().reshape(ctx.wshape)
        return gx.to(ctx.dtype), gweight, gb.sum(0) if ctx.has_bias else None, None, None


def causal_conv1d_cpu(x, weight, bias=None, activation="silu", reverse=False, out=None):
    """Causal depthwise convolution (+ SiLU) on channels-last input.

    Args:
        x: (B, L, D). weight: (D, 1, K) or (D, K). bias: (D,) or None. activation: "silu" or None.
        reverse: anti-causal, ``flip(conv(flip(x)))`` along L: ``x[t + K - 1 - k]`` instead of
            ``x[t - K + 1 + k]``, computed without flipped copies.
        out: a contiguous float32 (B, L, D) tensor not overlapping x, optional: without autograd
            the result is written into it (a buffer reused across calls is not faulted in again).
    Returns:
        (B, L, D): ``out[t] = act(bias + sum_k weight[:, k] * x[t - K + 1 + k])``.
    """
    tracked = torch.is_grad_enabled() and any(t is not None and t.requires_grad for t in (x, weight, bias))
    if (out is not None and not tracked and out.dtype == torch.float32 and x.dtype == torch.float32
            and out.shape == x.shape and out.is_contiguous()):
        parent, c_off = _wider_parent(x)
        wT = weight.detach().reshape(weight.shape[0], -1).t().float().contiguous()
        b = bias.detach().float().contiguous() if bias is not None else torch.zeros(wT.shape[1])
        _conv_silu_fwd(parent.numpy(), c_off, wT.numpy(), b.numpy(), activation == "silu", bool(reverse), out.numpy())
        return out
    return _CpuConv.apply(x, weight, bias, activation == "silu", bool(reverse))


# ----------------------------------------------------------------------------------------------
# Residual add + RMSNorm of the Caduceus-PS stream (inference): one pass over (B, L, 2d) rows.
# ----------------------------------------------------------------------------------------------
ROW_BLOCK = 256


@nb.njit(inline="always", **_JIT)
def _rms_scale(row, lo, d, eps):
    """1 / sqrt(mean(row[lo:lo+d]^2) + eps); the scalar in float64 (the sum is float32, as torch's)."""
    ss = np.float32(0.0)
    for c in range(lo, lo + d):
        ss += row[c] * row[c]
    return np.float32(1.0 / np.sqrt(np.float64(ss) / d + eps))


@nb.njit(parallel=True, **_JIT)
def _ps_add_rms_norm(hidden, residual, has_residual, w, eps, swap, normed, res_out, write_res):
    """Rows s = hidden (+ residual), halves [s1, s2] of d channels each. With ``swap`` (a block):
    normed = [n(s2), rc(n(rc(s1)))], res_out = [s2, s1]; without (the final norm):
    normed = [n(s1), rc(n(rc(s2)))]. n(x) = x / rms(x) * w; rc(n(rc(x))) uses the reversed weight."""
    n_batch, L, H = hidden.shape
    d = H // 2
    n_rb = (L + ROW_BLOCK - 1) // ROW_BLOCK
    wr = w[::-1].copy()
    for task in nb.prange(n_batch * n_rb):
        b, t0 = task // n_rb, (task % n_rb) * ROW_BLOCK
        s = np.empty(H, dtype=np.float32)
        for t in range(t0, min(L, t0 + ROW_BLOCK)):
            hrow = hidden[b, t]
            if has_residual:
                rrow = residual[b, t]
                for c in range(H):
                    s[c] = hrow[c] + rrow[c]
            else:
                s[:] = hrow
            first = d if swap else 0  # the half normalised as the forward strand
            second = 0 if swap else d
            r1 = _rms_scale(s, first, d, eps)
            r2 = _rms_scale(s, second, d, eps)
            orow = normed[b, t]
            for c in range(d):
                orow[c] = s[first + c] * r1 * w[c]
            for c in range(d):
                orow[d + c] = s[second + c] * r2 * wr[c]
            if write_res:
                qrow = res_out[b, t]
                for c in range(d):
                    qrow[c] = s[first + c]
                for c in range(d):
                    qrow[d + c] = s[second + c]


@nb.njit(parallel=True, **_JIT)
def _ps_rms_norm_bwd(res_out, w, eps, swap, g_normed, g_res, has_g_res, g_sum, gw_part):
    """Adjoint of _ps_add_rms_norm from its saved ``res_out`` (the sum, halves in output order):
    per half x with weight v, y = x r v, r = (mean(x^2) + eps)^-1/2, so
    dx = r (g v) - x (r^3 / d) sum(g v x) and dv += g x r. g_sum (B, L, H): the gradient of the sum
    in the input's channel order; gw_part (tasks, d): per-task weight gradients (the second half's
    weight is reversed, so its gradient is added reversed)."""
    n_batch, L, H = res_out.shape
    d = H // 2
    n_rb = (L + ROW_BLOCK - 1) // ROW_BLOCK
    wr = w[::-1].copy()
    for task in nb.prange(n_batch * n_rb):
        b, t0 = task // n_rb, (task % n_rb) * ROW_BLOCK
        gw = gw_part[task]
        for t in range(t0, min(L, t0 + ROW_BLOCK)):
            q = res_out[b, t]
            gn = g_normed[b, t]
            gs = g_sum[b, t]
            for half in range(2):
                lo = half * d
                v = w if half == 0 else wr
                r = _rms_scale(q, lo, d, eps)
                dot = np.float32(0.0)
                for c in range(d):
                    dot += gn[lo + c] * v[c] * q[lo + c]
                k = r * r * r * dot / np.float32(d)
                # output half `half` came from input channels `dst` (halves swapped in res_out)
                dst = (d - lo) if swap else lo
                for c in range(d):
                    gx = r * gn[lo + c] * v[c] - q[lo + c] * k
                    if has_g_res:
                        gx += g_res[b, t, lo + c]
                    gs[dst + c] = gx
                if half == 0:
                    for c in range(d):
                        gw[c] += gn[lo + c] * q[lo + c] * r
                else:
                    for c in range(d):
                        gw[d - 1 - c] += gn[lo + c] * q[lo + c] * r


class _PSAddRMSNorm(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden, residual, weight, eps, swap):
        h = hidden.detach().contiguous()
        res = residual.detach().contiguous() if residual is not None else h
        normed, res_out = torch.empty(h.shape), torch.empty(h.shape)
        _ps_add_rms_norm(h.numpy(), res.numpy(), residual is not None, weight.detach().contiguous().numpy(),
                         float(eps), bool(swap), normed.numpy(), res_out.numpy(), True)
        ctx.save_for_backward(res_out, weight)
        ctx.eps, ctx.swap, ctx.has_residual = float(eps), bool(swap), residual is not None
        return normed, res_out

    @staticmethod
    def backward(ctx, g_normed, g_res):
        res_out, weight = ctx.saved_tensors
        n_batch, L, H = res_out.shape
        tasks = n_batch * ((L + ROW_BLOCK - 1) // ROW_BLOCK)
        g_sum = torch.empty(res_out.shape)
        gw = torch.zeros(tasks, H // 2)
        if g_normed is None:
            g_normed = torch.zeros(res_out.shape)
        g_res_arr = g_res.float().contiguous() if g_res is not None else _none()
        _ps_rms_norm_bwd(res_out.numpy(), weight.detach().contiguous().numpy(), ctx.eps, ctx.swap,
                         g_normed.float().contiguous().numpy(), g_res_arr.numpy(), g_res is not None,
                         g_sum.numpy(), gw.numpy())
        return g_sum, g_sum if ctx.has_residual else None, gw.sum(0), None, None


def ps_add_rms_norm(hidden, residual, weight, eps, swap):
    """Add + RMSNorm of the PS stream in one compiled pass, float32 (B, L, 2d) CPU tensors.

    Computes ``s = hidden + residual`` (``hidden`` if residual is None), halves ``[s1, s2]``, and with
    swap (a block, see ``Block``) returns ``(normed, new_residual)`` = ``([n(s2), rc(n(rc(s1)))],
    [s2, s1])``; without (the final norm) ``normed = [n(s1), rc(n(rc(s2)))]`` alone, where
    n(x) = x / rms(x) * weight and rc(n(rc(x))) uses the reversed weight. Differentiable (a
    compiled backward); without autograd no graph state is kept.
    """
    tracked = torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in (hidden, residual, weight))
    if tracked:
        normed, res_out = _PSAddRMSNorm.apply(hidden, residual, weight, eps, swap)
        return (normed, res_out) if swap else normed
    return _ps_add_rms_norm_nograd(hidden, residual, weight, eps, swap)


def _ps_add_rms_norm_nograd(hidden, residual, weight, eps, swap):
    """Inference (no autograd) add + RMSNorm of the PS stream, float32 (B, L, 2d) tensors.

    Returns ``(normed, new_residual)`` with swap (a block: the halves trade places, see ``Block``),
    or ``normed`` alone without (the final norm).
    """
    hidden = hidden.detach().contiguous()
    res = residual.detach().contiguous() if residual is not None else hidden
    normed = torch.empty(hidden.shape, dtype=torch.float32)
    res_out = torch.empty(hidden.shape, dtype=torch.float32) if swap else normed
    _ps_add_rms_norm(hidden.numpy(), res.numpy(), residual is not None, weight.detach().float().contiguous().numpy(),
                     float(eps), bool(swap), normed.numpy(), res_out.numpy(), bool(swap))
    return (normed, res_out) if swap else normed
