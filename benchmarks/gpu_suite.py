"""GPU benchmark suite: selective-scan parity and speed, memory-bandwidth floor, training scaling.

One process, time-boxed so that the whole run fits in one 10-minute GPU command:

- parity: Triton (and mamba-ssm when importable) against the float64 reference, output and every
  gradient, float32 and bfloat16, a few shapes                                  -> parity.csv
- scan: forward and forward+backward time of the torch / triton / mamba_ssm backends at 1k..1M
  positions (batch 1, d_inner 512, d_state 16: the Caduceus 7.7M mixer), CUDA-event timing after
  warm-up, with the error of each timed output against float64                   -> scan.csv
- bandwidth: copy bandwidth of a large clone, and each scan's time over the time its compulsory
  memory traffic would take at that bandwidth (L 131,072, batch 8)              -> bandwidth.csv
- tuning: Triton tile sizes at 131,072 positions, for choosing defaults          -> tuning.csv
- scaling: training steps (forward, backward, AdamW) and inference forwards of Caduceus-PS 7.7M,
  HyenaDNA and a matched-size Enformer over sequence lengths                     -> scaling.csv

Every CSV is rewritten after each row, so a run cut short still leaves its measurements. Errors
(out of memory included) are recorded in the rows' ``note`` column and the run goes on.

Usage:
    python benchmarks/gpu_suite.py --out DIR [--budget-s 480] [--sections scan,parity,...]
    python benchmarks/gpu_suite.py --out DIR --dry-run     # tiny sizes on CPU (Triton interpreter)
or from the benchmarks runner: ``python benchmarks/run.py gpu --out DIR`` (calls :func:`main`).
"""

import argparse
import csv
import gc
import importlib
import importlib.util
import json
import math
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

SECTIONS = ("parity", "scan", "bandwidth", "tuning", "scaling")
# Share of the total budget each section may use (the rest is start-up and compilation slack).
SECTION_SHARE = {"parity": 0.12, "scan": 0.33, "bandwidth": 0.07, "tuning": 0.08, "scaling": 0.36}
SCAN_COLUMNS = ["device", "backend", "seq_len", "dtype", "ms", "rel_err",
                "mode", "batch", "d_inner", "d_state", "layout", "reps", "note"]
SCALING_COLUMNS = ["model", "seq_len", "params", "mode", "ms", "peak_mem_mb", "device",
                   "batch", "dtype", "scan_backend", "grad_checkpointing", "note"]


def log(message):
    print(f"[gpu_suite {time.strftime('%H:%M:%S')}] {message}", flush=True)


class Deadline:
    """Seconds left for a section; ``ok(cost)`` says whether something of that cost still fits."""

    def __init__(self, seconds):
        self.end = time.monotonic() + seconds

    def left(self):
        return self.end - time.monotonic()

    def ok(self, cost_s=0.0):
        return self.left() > cost_s


class Table:
    """Rows of one CSV, rewritten in full after every added row (a killed run keeps its rows)."""

    def __init__(self, path, columns):
        self.path, self.columns, self.rows = Path(path), list(columns), []

    def add(self, **row):
        for key in row:
            if key not in self.columns:
                self.columns.append(key)
        self.rows.append(row)
        with open(self.path, "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=self.columns, restval="")
            writer.writeheader()
            for r in self.rows:
                writer.writerow({k: _fmt(v) for k, v in r.items()})
        return row


def _fmt(value):
    if isinstance(value, float):
        return "" if math.isnan(value) else f"{value:.6g}"
    return value


# ----------------------------------------------------------------------------------------------
# Measuring


def synchronize(device):
    if torch.device(device).type == "cuda":
        torch.cuda.synchronize()


DRY_RUN = False  # set by main(): one untimed-quality call per measurement, to keep dry runs short


def time_ms(fn, device, warmup=1, min_total_s=0.25, max_reps=30):
    """Median milliseconds of ``fn()`` after ``warmup`` calls; CUDA events on GPU.

    Repeats until ``min_total_s`` of measured time or ``max_reps`` calls. Returns (ms, reps).
    """
    if DRY_RUN:
        warmup, min_total_s, max_reps = 0, 0.0, 1
    for _ in range(warmup):
        fn()
    synchronize(device)
    cuda = torch.device(device).type == "cuda"
    times = []
    while len(times) < max_reps and (sum(times) < min_total_s * 1e3 or not times):
        if cuda:
            start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            start.record()
            fn()
            end.record()
            end.synchronize()
            times.append(start.elapsed_time(end))
        else:
            t0 = time.perf_counter()
            fn()
            times.append((time.perf_counter() - t0) * 1e3)
    times.sort()
    return times[len(times) // 2], len(times)


def is_oom(error):
    return isinstance(error, torch.cuda.OutOfMemoryError) or "out of memory" in str(error).lower()


def free_memory():
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def relative_error(value, reference):
    """||value - reference|| / ||reference|| in float64; inf (not NaN, which summaries skip) when
    ``value`` holds a non-finite element, e.g. one a kernel never wrote."""
    value, reference = value.double(), reference.double()
    if not torch.isfinite(value).all():
        return float("inf")
    return ((value - reference).norm() / reference.norm().clamp_min(1e-300)).item()


def poison_allocator(device, numel=2**28):
    """Fill memory the CUDA caching allocator will hand out next with NaN, so outputs a kernel
    leaves unwritten show up as non-finite instead of as stale zeros."""
    if torch.device(device).type == "cuda":
        try:
            torch.full((numel,), float("nan"), device=device)
        except torch.cuda.OutOfMemoryError:
            pass


# ----------------------------------------------------------------------------------------------
# Scan inputs and backends


def scan_inputs(batch, d_inner, L, d_state, device, seed=0):
    """Scan arguments with a trained-Mamba-like value range, float32, in (batch, d_inner, L) layout.

    A = -(1..d_state) per channel (S4D-real init), delta = a small projection plus a bias whose
    softplus is log-uniform in [1e-3, 1e-1] (Mamba's dt init), D = 1, z and B/C unit normal.
    """
    # Generated on the device: at 1M positions the CPU would take seconds per tensor.
    g = torch.Generator(device=device).manual_seed(seed)
    kw = dict(generator=g, device=device)
    dt = torch.exp(torch.rand(d_inner, **kw) * (math.log(0.1) - math.log(1e-3)) + math.log(1e-3))
    return dict(
        u=torch.randn(batch, d_inner, L, **kw),
        delta=torch.randn(batch, d_inner, L, **kw) * 0.5,
        A=-torch.arange(1, d_state + 1, dtype=torch.float32, device=device).repeat(d_inner, 1),
        B=torch.randn(batch, d_state, L, **kw),
        C=torch.randn(batch, d_state, L, **kw),
        D=torch.ones(d_inner, device=device),
        z=torch.randn(batch, d_inner, L, **kw),
        delta_bias=dt + torch.log(-torch.expm1(-dt)),
    )


ACTIVATIONS = ("u", "delta", "B", "C", "z")  # cast to the run dtype; A, D, delta_bias stay float32


def cast_inputs(inputs, dtype):
    return {k: (v.to(dtype) if k in ACTIVATIONS else v) for k, v in inputs.items()}


def mixer_layout(inputs):
    """The same values as the Mamba mixer lays them out: (batch, L, channels) buffers seen through
    transposes, z a half of a wider projection, B and C slices of another."""
    u, delta, B, C, z = (inputs[k] for k in ("u", "delta", "B", "C", "z"))
    u_z = torch.cat([u.transpose(1, 2), z.transpose(1, 2)], dim=-1)
    proj = torch.cat([delta.transpose(1, 2), B.transpose(1, 2), C.transpose(1, 2)], dim=-1)
    d, n = u.shape[1], B.shape[1]
    out = dict(inputs)
    out["u"] = u.transpose(1, 2).contiguous().transpose(1, 2)
    out["z"] = u_z[..., d:].transpose(1, 2)
    out["delta"], out["B"], out["C"] = (t.transpose(1, 2) for t in proj.split([d, n, n], dim=-1))
    return out


def scan_backends(device):
    """{name: callable(u, delta, A, B, C, D, z, delta_bias, delta_softplus)} usable on ``device``."""
    from grelu_caduceus.core.scan.torch_scan import selective_scan_torch

    found = {"torch": selective_scan_torch}
    if importlib.util.find_spec("triton") is not None:
        from grelu_caduceus.core.scan import triton_scan

        if triton_scan.HAVE_TRITON and (torch.device(device).type == "cuda" or triton_scan.INTERPRETED):
            found["triton"] = triton_scan.selective_scan_triton
    if torch.device(device).type == "cuda":
        try:
            from mamba_ssm.ops.selective_scan_interface import selective_scan_fn

            found["mamba_ssm"] = selective_scan_fn
        except Exception as error:  # not installed, or built for another torch
            log(f"mamba_ssm not usable: {type(error).__name__}: {error}")
    return found


def call_scan(fn, inputs):
    return fn(inputs["u"], inputs["delta"], inputs["A"], inputs["B"], inputs["C"], inputs["D"],
              inputs["z"], inputs["delta_bias"], True)


def forward_backward(fn, inputs, dy):
    """Gradients of <scan(inputs), dy> for every input tensor, in a fixed key order."""
    leaves = {k: v.detach().requires_grad_(True) for k, v in inputs.items()}
    y = call_scan(fn, leaves)
    return y, torch.autograd.grad(y, list(leaves.values()), dy)


class Reference:
    """float64 outputs (and gradients) for given inputs, cached per (inputs, dtype)."""

    def __init__(self):
        from grelu_caduceus.core.scan.torch_scan import selective_scan_torch

        self.fn, self.cache = selective_scan_torch, {}

    def output(self, key, inputs):
        if ("y",) + key not in self.cache:
            with torch.no_grad():
                self.cache[("y",) + key] = call_scan(self.fn, {k: v.double() for k, v in inputs.items()})
        return self.cache[("y",) + key]

    def gradients(self, key, inputs, dy):
        if ("g",) + key not in self.cache:
            self.cache[("g",) + key] = forward_backward(self.fn, {k: v.double() for k, v in inputs.items()},
                                                        dy.double())
        return self.cache[("g",) + key]


# ----------------------------------------------------------------------------------------------
# Sections


def run_parity(out, device, device_name, deadline, dry_run):
    """Every gradient of every backend vs the float64 reference implementation."""
    from grelu_caduceus.core.scan.reference import selective_scan_reference

    table = Table(out / "parity.csv", ["device", "backend", "dtype", "batch", "d_inner", "seq_len", "d_state",
                                       "quantity", "rel_err", "note"])
    # The Caduceus shape first: its compiled kernels (all sizes multiples of 16) are the ones the
    # timing sections reuse; then lengths that are not, and d_state 64.
    shapes = [(1, 4, 70, 16)] if dry_run else [
        (1, 512, 2048, 16), (2, 64, 1000, 16), (2, 32, 513, 64), (1, 128, 4099, 16)]
    names = ["u", "delta", "A", "B", "C", "D", "z", "delta_bias"]
    backends = {k: v for k, v in scan_backends(device).items() if k != "torch"}
    for batch, d_inner, L, d_state in shapes:
        base = scan_inputs(batch, d_inner, L, d_state, device, seed=L)
        for dtype in (torch.float32, torch.bfloat16):
            inputs = cast_inputs(base, dtype)
            dy = torch.randn(batch, d_inner, L, device=device, generator=None).to(dtype)
            if not deadline.ok(5):
                log("parity: out of time")
                return table
            ref_leaves = {k: v.double().requires_grad_(True) for k, v in inputs.items()}
            y_ref = selective_scan_reference(ref_leaves["u"], ref_leaves["delta"], ref_leaves["A"],
                                             ref_leaves["B"], ref_leaves["C"], ref_leaves["D"],
                                             ref_leaves["z"], ref_leaves["delta_bias"], True)
            ref_grads = torch.autograd.grad(y_ref, list(ref_leaves.values()), dy.double())
            for backend, fn in backends.items():
                common = dict(device=device_name, backend=backend, dtype=str(dtype).replace("torch.", ""),
                              batch=batch, d_inner=d_inner, seq_len=L, d_state=d_state)
                try:
                    poison_allocator(device)
                    y, grads = forward_backward(fn, inputs, dy)
                except Exception as error:
                    table.add(**common, quantity="all", rel_err=float("nan"), note=_short(error))
                    continue
                table.add(**common, quantity="y", rel_err=relative_error(y, y_ref))
                for name, grad, ref in zip(names, grads, ref_grads):
                    table.add(**common, quantity="d" + name, rel_err=relative_error(grad, ref))
            log(f"parity: {batch}x{d_inner}x{L} N={d_state} {dtype} done")
    return table


def run_scan_timing(out, device, device_name, deadline, dry_run):
    """Forward and forward+backward times of each backend over sequence lengths."""
    table = Table(out / "scan.csv", SCAN_COLUMNS)
    backends = scan_backends(device)
    d_inner, d_state, batch = (4, 16, 1) if dry_run else (512, 16, 1)
    key_len = 128 if dry_run else 131072
    lengths = [64, 128] if dry_run else [1024, 4096, 16384, 65536, 131072, 262144, 1048576]
    torch_fwd_max = 128 if dry_run else 131072  # the pure-PyTorch loop is far too slow beyond
    torch_bwd_max = 128 if dry_run else 16384
    reference = Reference()
    inputs_cache = {}

    def inputs_for(L):
        """Inputs and the output gradient for length L (one length cached at a time)."""
        if L not in inputs_cache:
            inputs_cache.clear()
            free_memory()
            inputs = scan_inputs(batch, d_inner, L, d_state, device, seed=L)
            dy = torch.randn(inputs["u"].shape, device=device,
                             generator=torch.Generator(device=device).manual_seed(L + 1))
            inputs_cache[L] = (inputs, dy)
        return inputs_cache[L]

    def measure(backend, L, dtype, mode, layout="contiguous"):
        fn = backends[backend]
        common = dict(device=device_name, backend=backend, seq_len=L, dtype=str(dtype).replace("torch.", ""),
                      mode=mode, batch=batch, d_inner=d_inner, d_state=d_state, layout=layout)
        try:
            base, dy = inputs_for(L)
            dy = dy.to(dtype)
            inputs = cast_inputs(base, dtype)
            if layout == "mixer":
                inputs = mixer_layout(inputs)
            slow = backend == "torch" and L >= 16384
            reps = dict(warmup=1, min_total_s=0.0, max_reps=1) if slow else dict(warmup=2)
            if mode == "fwd":
                with torch.no_grad():
                    ms, n = time_ms(lambda: call_scan(fn, inputs), device, **reps)
                    y = call_scan(fn, inputs)
                err = relative_error(y, reference.output((L, common["dtype"]), inputs)) \
                    if L <= key_len else float("nan")
            else:
                ms, n = time_ms(lambda: forward_backward(fn, inputs, dy), device, **reps)
                err = float("nan")
                if L <= (128 if dry_run else 16384):
                    y, grads = forward_backward(fn, inputs, dy)
                    y_ref, ref_grads = reference.gradients((L, common["dtype"]), inputs, dy)
                    err = max([relative_error(y, y_ref)] + [relative_error(g, r) for g, r in zip(grads, ref_grads)])
            row = table.add(**common, ms=ms, rel_err=err, reps=n)
            log(f"scan: {backend:9s} {mode:7s} {common['dtype']:8s} L={L:>8d} {layout:10s} {ms:10.3f} ms  "
                f"rel_err {err:.1e}")
            return row
        except Exception as error:
            free_memory()
            log(f"scan: {backend} {mode} L={L} failed: {_short(error)}")
            return table.add(**common, ms=float("nan"), rel_err=float("nan"), note=_short(error))

    plan = []  # the rows the checks need first, then the sweep
    if "triton" in backends:
        plan += [("triton", key_len, torch.float32, "fwd"), ("triton", key_len, torch.float32, "fwd+bwd")]
    plan += [("torch", key_len, torch.float32, "fwd")]
    fast = [b for b in ("triton", "mamba_ssm") if b in backends]
    for L in lengths:
        for backend in fast:
            for dtype in (torch.float32, torch.bfloat16):
                for mode in ("fwd", "fwd+bwd"):
                    if (backend, L, dtype, mode) not in plan:
                        plan.append((backend, L, dtype, mode))
    for L in lengths:
        if L <= torch_fwd_max and ("torch", L, torch.float32, "fwd") not in plan:
            plan.append(("torch", L, torch.float32, "fwd"))
        if L <= torch_bwd_max:
            plan.append(("torch", L, torch.float32, "fwd+bwd"))
    if not dry_run:
        plan.append(("torch", key_len, torch.float32, "fwd+bwd"))

    last_ms = {}
    for backend, L, dtype, mode in plan:
        # Skip what would not fit: estimate from the last time of this backend/mode, linear in L.
        prev = last_ms.get((backend, mode))
        estimate = 0.0 if prev is None else prev[1] * (L / prev[0]) * 4 / 1e3
        if not deadline.ok(estimate + 2):
            log(f"scan: skipping {backend} {mode} L={L} (estimated {estimate:.0f} s, {deadline.left():.0f} s left)")
            continue
        row = measure(backend, L, dtype, mode)
        if row.get("ms") == row.get("ms"):  # not NaN
            last_ms[(backend, mode)] = (L, row["ms"])
    if "triton" in backends and deadline.ok(5):
        for mode in ("fwd", "fwd+bwd"):
            measure("triton", key_len, torch.bfloat16, mode, layout="mixer")
    return table


def _copy_bandwidth(numel, device):
    """(ms, GB/s) of cloning a float32 tensor of ``numel`` elements, counting bytes read and written."""
    x = torch.empty(numel, device=device).normal_()
    ms, _ = time_ms(x.clone, device, warmup=2, min_total_s=0.2)
    return ms, 2 * x.numel() * x.element_size() / (ms / 1e3) / 1e9


def run_bandwidth(out, device, device_name, deadline, dry_run):
    """Copy bandwidth, and each scan's time over its compulsory-traffic time at that bandwidth."""
    table = Table(out / "bandwidth.csv", ["device", "backend", "mode", "dtype", "batch", "seq_len", "d_inner",
                                          "d_state", "ms", "bytes", "copy_gbps", "floor_ms", "ratio", "note"])
    numel = 2**20 if dry_run else 2**28  # 1 GiB of float32 on the GPU
    ms, copy_gbps = _copy_bandwidth(numel, device)
    table.add(device=device_name, backend="copy", mode="clone", dtype="float32", ms=ms,
              bytes=2 * numel * 4, copy_gbps=copy_gbps)
    log(f"bandwidth: clone {copy_gbps:.0f} GB/s")

    batch, L, d_inner, d_state = (1, 128, 4, 16) if dry_run else (8, 131072, 512, 16)
    backends = {k: v for k, v in scan_backends(device).items() if k != "torch"}
    base = scan_inputs(batch, d_inner, L, d_state, device)
    for backend, fn in backends.items():
        for dtype in (torch.float32,) if dry_run else (torch.float32, torch.bfloat16):
            if not deadline.ok(5):
                return table
            size = torch.tensor([], dtype=dtype).element_size()
            act, bc = batch * d_inner * L * size, batch * d_state * L * size
            # Forward: read u, delta, z, B, C, write y. Backward: read u, delta, z, dy, B, C, write
            # du, ddelta, dz, dB, dC. States never need to leave the chip.
            traffic = {"fwd": 4 * act + 2 * bc, "fwd+bwd": (4 * act + 2 * bc) + (7 * act + 4 * bc)}
            inputs = cast_inputs(base, dtype)
            dy = torch.randn_like(base["u"]).to(dtype)
            runs = {"fwd": lambda fn=fn, inputs=inputs: call_scan(fn, inputs),
                    "fwd+bwd": lambda fn=fn, inputs=inputs, dy=dy: forward_backward(fn, inputs, dy)}
            for mode, run in runs.items():
                common = dict(device=device_name, backend=backend, mode=mode, dtype=str(dtype).replace("torch.", ""),
                              batch=batch, seq_len=L, d_inner=d_inner, d_state=d_state, copy_gbps=copy_gbps,
                              bytes=traffic[mode])
                try:
                    with torch.set_grad_enabled(mode != "fwd"):
                        ms, _ = time_ms(run, device, warmup=2, min_total_s=0.2, max_reps=10)
                    floor_ms = traffic[mode] / (copy_gbps * 1e9) * 1e3
                    table.add(**common, ms=ms, floor_ms=floor_ms, ratio=ms / floor_ms)
                    log(f"bandwidth: {backend} {mode} {dtype}: {ms:.2f} ms = {ms / floor_ms:.1f}x the traffic floor")
                except Exception as error:
                    free_memory()
                    table.add(**common, ms=float("nan"), note=_short(error))
    return table


def run_tuning(out, device, device_name, deadline, dry_run):
    """Triton tile sizes at the Caduceus shape; the defaults are the first row."""
    from grelu_caduceus.core.scan import triton_scan

    table = Table(out / "tuning.csv", ["device", "block_l", "block_d", "num_warps", "fwd_ms", "fwd_bwd_ms", "note"])
    if not (triton_scan.HAVE_TRITON and (torch.device(device).type == "cuda" or triton_scan.INTERPRETED)):
        return table
    L = 128 if dry_run else 131072
    configs = [(None, None, None), (64, 4, 8), (128, 1, 4), (256, 1, 8), (128, 4, 8), (64, 2, 4)]
    if dry_run:
        configs = configs[1:2]
    inputs = cast_inputs(scan_inputs(1, 4 if dry_run else 512, L, 16, device), torch.bfloat16)
    dy = torch.randn_like(inputs["u"])
    for block_l, block_d, warps in configs:
        if not deadline.ok(8):
            break

        def fn(*args, block_l=block_l, block_d=block_d, warps=warps):
            return triton_scan.selective_scan_triton(*args, block_l=block_l, block_d=block_d, num_warps=warps)

        cfg = triton_scan.launch_config(16, block_l, block_d, warps)
        row = dict(device=device_name, block_l=cfg.block_l, block_d=f"{cfg.fwd_d}/{cfg.bwd_d}",
                   num_warps=f"{cfg.fwd_warps}/{cfg.bwd_warps}")
        try:
            with torch.no_grad():
                fwd, _ = time_ms(lambda: call_scan(fn, inputs), device, warmup=2, max_reps=20)
            both, _ = time_ms(lambda: forward_backward(fn, inputs, dy), device, warmup=2, max_reps=20)
            table.add(**row, fwd_ms=fwd, fwd_bwd_ms=both)
            log(f"tuning: {row} fwd {fwd:.3f} ms, fwd+bwd {both:.3f} ms")
        except Exception as error:
            free_memory()
            table.add(**row, note=_short(error))
    return table


def _caduceus(d_model, n_layer):
    from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM

    return CaduceusForMaskedLM(CaduceusConfig(d_model=d_model, n_layer=n_layer, rcps=True))


def _hyenadna(d_model, n_layer, L):
    from grelu_caduceus.hyena import HyenaDNABackbone, HyenaDNAConfig

    return HyenaDNABackbone(HyenaDNAConfig(d_model=d_model, n_layer=n_layer, l_max=L))


def _enformer(channels, n_transformers):
    from grelu.model.models import EnformerModel

    return EnformerModel(n_tasks=1, channels=channels, n_transformers=n_transformers)


MODELS = ("caduceus", "hyenadna", "enformer")


def run_scaling(out, device, device_name, deadline, dry_run, models=MODELS):
    """Training steps and inference forwards of each model over sequence lengths (batch 1)."""
    table = Table(out / "scaling.csv", SCALING_COLUMNS)
    cuda = torch.device(device).type == "cuda"
    lengths = [256] if dry_run else [1024, 4096, 16384, 65536, 131072, 262144, 524288, 1048576]
    # Enformer's tower needs channels divisible by 128 and its attention by 6 * heads: 384 is the
    # smallest that builds; 3 transformer layers bring it to about Caduceus's 7.7M parameters.
    sizes = dict(caduceus=(16, 2), hyenadna=(16, 2), enformer=(384, 1)) if dry_run else dict(
        caduceus=(256, 16), hyenadna=(256, 8), enformer=(384, 3))
    builders = {
        "caduceus": lambda L: _caduceus(*sizes["caduceus"]),
        "hyenadna": lambda L: _hyenadna(*sizes["hyenadna"], L),
        "enformer": lambda L: _enformer(*sizes["enformer"]),
    }
    builders = {name: build for name, build in builders.items() if name in models}
    dtype = torch.bfloat16 if cuda else torch.float32

    def batch_for(model_name, L):
        if model_name == "enformer":
            return torch.nn.functional.one_hot(torch.randint(0, 4, (1, L)), 4).float().transpose(1, 2).to(device)
        return torch.randint(7, 11, (1, L), device=device)

    def loss_of(model_name, model, x):
        if model_name == "caduceus":
            logits = model(x)
            return torch.nn.functional.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), x.reshape(-1))
        return model(x).float().square().mean()

    for i, (model_name, build) in enumerate(builders.items()):
        model_deadline = Deadline(deadline.left() / (len(builders) - i))  # unspent time passes on
        try:
            probe = build(lengths[0])
        except Exception as error:
            log(f"scaling: {model_name} unavailable ({_short(error)}); skipped")
            table.add(model=model_name, seq_len=0, params=0, mode="train", ms=float("nan"), device=device_name,
                      note=f"unavailable: {_short(error)}")
            continue
        params = sum(p.numel() for p in probe.parameters())
        scan_backend = ""
        if model_name == "caduceus":
            from grelu_caduceus.core.scan import resolve_backend

            scan_backend = resolve_backend("auto", device)
        del probe
        stop = {"train": False, "fwd": False}
        last = {}
        for L in lengths:
            for mode in ("train", "fwd"):
                if stop[mode]:
                    continue
                prev = last.get(mode)
                estimate = 0.0 if prev is None else prev[1] * (L / prev[0]) * 5 / 1e3
                if not model_deadline.ok(estimate + 3):
                    stop[mode] = True
                    log(f"scaling: {model_name} {mode} stops before L={L} (time)")
                    continue
                row = _scaling_step(model_name, build, batch_for, loss_of, L, mode, device, dtype, cuda)
                table.add(model=model_name, seq_len=L, params=params, device=device_name, batch=1,
                          dtype=str(dtype).replace("torch.", ""), scan_backend=scan_backend, **row)
                log(f"scaling: {model_name} {mode} L={L}: {row.get('ms', float('nan')):.1f} ms, "
                    f"{row.get('peak_mem_mb', float('nan')):.0f} MB {row.get('note', '')}")
                if row["ms"] != row["ms"]:  # NaN: failed (out of memory or other)
                    stop[mode] = True
                else:
                    last[mode] = (L, row["ms"])
    return table


def _scaling_step(model_name, build, batch_for, loss_of, L, mode, device, dtype, cuda):
    """One timed configuration; a training step that runs out of memory is retried with gradient
    checkpointing (Caduceus, HyenaDNA). Errors become the row's note."""
    attempts = [False, True] if (mode == "train" and model_name in ("caduceus", "hyenadna")) else [False]
    note = ""
    for checkpointing in attempts:
        free_memory()
        try:
            ms, peak = _time_model(model_name, build, batch_for, loss_of, L, mode, device, dtype, cuda, checkpointing)
            return dict(mode=mode, ms=ms, peak_mem_mb=peak, grad_checkpointing=checkpointing, note=note)
        except Exception as error:
            note = ("OOM" if is_oom(error) else _short(error)) + ("; " if note else "") + note
            if not is_oom(error):
                break
        finally:
            free_memory()
    return dict(mode=mode, ms=float("nan"), peak_mem_mb=float("nan"), grad_checkpointing=checkpointing, note=note)


def _time_model(model_name, build, batch_for, loss_of, L, mode, device, dtype, cuda, checkpointing):
    """(ms per step, peak MB) of a training step (AdamW) or an inference forward, autocast on GPU."""
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    model = build(L).to(device)
    if checkpointing:
        _enable_checkpointing(model)
    x = batch_for(model_name, L)
    autocast = torch.autocast(device_type=torch.device(device).type, dtype=dtype, enabled=cuda)
    if mode == "train":
        model.train()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-4)

        def step():
            opt.zero_grad(set_to_none=True)
            with autocast:
                loss = loss_of(model_name, model, x)
            loss.backward()
            opt.step()
    else:
        model.eval()

        def step():
            with torch.no_grad(), autocast:
                model(x)

    ms, _ = time_ms(step, device, warmup=1, min_total_s=0.5, max_reps=5)
    return ms, (torch.cuda.max_memory_allocated() / 2**20 if cuda else float("nan"))


def _enable_checkpointing(model):
    if hasattr(model, "gradient_checkpointing_enable"):
        model.gradient_checkpointing_enable()
    elif hasattr(model, "config") and hasattr(model.config, "gradient_checkpointing"):
        model.config.gradient_checkpointing = True


def _short(error):
    text = f"{type(error).__name__}: {error}".replace("\n", " ")
    return text[:200]


# ----------------------------------------------------------------------------------------------
# Driver


def environment(device):
    info = dict(python=platform.python_version(), torch=torch.__version__, device=str(device),
                cuda=torch.version.cuda, time=time.strftime("%Y-%m-%d %H:%M:%S"))
    if torch.device(device).type == "cuda":
        info["gpu"] = torch.cuda.get_device_name()
        info["gpu_memory_gb"] = round(torch.cuda.get_device_properties(0).total_memory / 2**30, 1)
    for package in ("triton", "mamba_ssm", "causal_conv1d", "grelu"):
        spec = importlib.util.find_spec(package)
        if spec is not None:
            try:
                info[package] = importlib.import_module(package).__version__
            except Exception as error:
                info[package] = f"present but failed to import: {_short(error)}"
    return info


def summarize(out):
    """Print the headline numbers from the CSVs in ``out``."""
    lines = ["", "=" * 78, "GPU suite summary", "=" * 78]
    scan = _read(out / "scan.csv")
    if scan:
        lengths = sorted({int(r["seq_len"]) for r in scan})
        header = " ".join(f"{L:>9d}" for L in lengths)
        lines.append(f"{'backend':10s} {'mode':8s} {'dtype':9s} {'layout':10s} {header}")
        groups = {}
        for r in scan:
            key = (r["backend"], r["mode"], r["dtype"], r.get("layout", ""))
            groups.setdefault(key, {})[int(r["seq_len"])] = r["ms"]
        for key, by_len in sorted(groups.items()):
            cells = " ".join(f"{_num(by_len.get(L)):>9s}" for L in lengths)
            lines.append(f"{key[0]:10s} {key[1]:8s} {key[2]:9s} {key[3]:10s} {cells}")
        lines.append("(ms per call)")
        torch_lengths = [int(r["seq_len"]) for r in scan if r["backend"] == "torch" and r["ms"]]
        if torch_lengths:
            key_len = max(torch_lengths)

            def fastest(backend):
                return min((float(r["ms"]) for r in scan if r["backend"] == backend and r["ms"]
                            and int(r["seq_len"]) == key_len and r["mode"] == "fwd" and r["dtype"] == "float32"),
                           default=float("nan"))

            lines.append(f"forward speed-up of triton over torch at {key_len}: "
                         f"{fastest('torch') / fastest('triton'):.1f}x")
        errs = [_float(r["rel_err"]) for r in scan if r["backend"] == "triton" and r["dtype"] == "float32"]
        if any(e == e for e in errs):
            lines.append(f"triton float32 max rel err over timed rows: {max(e for e in errs if e == e):.1e}")
    parity = _read(out / "parity.csv")
    for backend in sorted({r["backend"] for r in parity}):
        for dtype in ("float32", "bfloat16"):
            errs = [_float(r["rel_err"]) for r in parity if r["backend"] == backend and r["dtype"] == dtype]
            errs = [e for e in errs if e == e]
            if errs:
                lines.append(f"parity {backend} {dtype}: max rel err {max(errs):.1e} over {len(errs)} values")
    for r in _read(out / "bandwidth.csv"):
        if r.get("ratio"):
            lines.append(f"bandwidth floor: {r['backend']} {r['mode']} {r['dtype']}: {float(r['ms']):.2f} ms "
                         f"= {float(r['ratio']):.1f}x the traffic floor ({float(r['copy_gbps']):.0f} GB/s copy)")
    for r in _read(out / "scaling.csv"):
        lines.append(f"scaling: {r['model']:9s} {r['mode']:5s} L={r['seq_len']:>8s} {_num(r['ms']):>9s} ms "
                     f"{_num(r['peak_mem_mb']):>8s} MB {r.get('note', '')}")
    print("\n".join(lines), flush=True)


def _float(value):
    try:
        return float(value)
    except (TypeError, ValueError):
        return float("nan")


def _read(path):
    if not Path(path).exists():
        return []
    with open(path) as f:
        return list(csv.DictReader(f))


def _num(value):
    try:
        return f"{float(value):.3g}"
    except (TypeError, ValueError):
        return "-"


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, type=Path, help="folder for the CSVs")
    parser.add_argument("--dry-run", action="store_true", help="tiny sizes on CPU (Triton interpreter)")
    parser.add_argument("--budget-s", type=float, default=480.0, help="wall-clock budget of all sections")
    parser.add_argument("--sections", default=",".join(SECTIONS), help=f"comma-separated subset of {SECTIONS}")
    parser.add_argument("--models", default=",".join(MODELS), help=f"models of the scaling section, of {MODELS}")
    parser.add_argument("--device", default=None, help="default: cuda if available (cpu for --dry-run)")
    args = parser.parse_args(argv)
    args.sections = [s for s in args.sections.split(",") if s]
    args.models = [m for m in args.models.split(",") if m]
    for given, known, what in ((args.sections, SECTIONS, "sections"), (args.models, MODELS, "models")):
        unknown = set(given) - set(known)
        if unknown:
            parser.error(f"unknown {what} {sorted(unknown)}; choose from {', '.join(known)}")
    return args


def main(argv=None):
    args = parse_args(sys.argv[1:] if argv is None else argv)
    device = args.device or ("cpu" if args.dry_run or not torch.cuda.is_available() else "cuda")
    if torch.device(device).type != "cuda" and not args.dry_run:
        print("No CUDA device: this suite measures GPUs. Use --dry-run to exercise it on CPU.", file=sys.stderr)
        return 2
    if (torch.device(device).type == "cpu" and os.environ.get("TRITON_INTERPRET") != "1"
            and importlib.util.find_spec("triton") is not None):
        # Triton kernels only run on CPU in its interpreter, which must be on before triton is
        # first imported: run this suite again in a fresh process with it switched on.
        log("re-running in a subprocess with TRITON_INTERPRET=1 (Triton's CPU interpreter)")
        env = dict(os.environ, TRITON_INTERPRET="1")
        arguments = argv if argv is not None else sys.argv[1:]
        return subprocess.call([sys.executable, str(Path(__file__).resolve()), *arguments], env=env)

    global DRY_RUN
    DRY_RUN = args.dry_run
    if args.dry_run:  # tiny sizes: run every row whatever the machine's load, nothing is skipped for time
        args.budget_s = float("inf")
    args.out.mkdir(parents=True, exist_ok=True)
    device_name = torch.cuda.get_device_name() if torch.device(device).type == "cuda" else "cpu"
    info = environment(device)
    (args.out / "environment.json").write_text(json.dumps(info, indent=2))
    log(f"environment: {info}")
    start = time.monotonic()
    runners = dict(parity=run_parity, scan=run_scan_timing, bandwidth=run_bandwidth, tuning=run_tuning,
                   scaling=lambda *a: run_scaling(*a, models=args.models))
    failures = 0
    for name in args.sections:
        spent = time.monotonic() - start
        # A section may also use what earlier sections left unspent.
        remaining_share = sum(SECTION_SHARE[s] for s in args.sections[args.sections.index(name):])
        seconds = max(0.0, (args.budget_s - spent) * SECTION_SHARE[name] / remaining_share)
        log(f"section {name}: {seconds:.0f} s budget")
        try:
            runners[name](args.out, device, device_name, Deadline(seconds), args.dry_run)
        except Exception as error:
            failures += 1
            log(f"section {name} failed: {_short(error)}")
            import traceback

            traceback.print_exc()
        finally:
            free_memory()
    summarize(args.out)
    log(f"done in {time.monotonic() - start:.0f} s; CSVs in {args.out}")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
