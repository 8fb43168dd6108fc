"""Scaling suite: time and peak memory of one forward / forward+backward pass against sequence length.

Caduceus, HyenaDNA and Enformer are built at a matched parameter budget (about 200k parameters,
:data:`MATCHED`), plus gReLU's Enformer at its published size (``enformer_published``, 230M).
Each model sees one random one-hot sequence (batch 1) of every length of the sweep; a length is
skipped, with every longer one, once the trend of the shorter lengths predicts that it would pass
the time or memory cap (quadratic attention reaches the caps long before the linear models).

Rows of ``OUT/scaling.csv``: ``model, seq_len, params, mode, ms, peak_mem_mb, device`` where mode is
``fwd`` (eval mode, no autograd) or ``fwd_bwd`` (train mode, forward, mean-output backward), ms is
the median wall time of the timed repeats, and peak_mem_mb the memory the call needed above what
was held before it (weights and input excluded): on CPU the rise of the process's peak resident
set (Linux ``VmHWM`` after resetting it), on CUDA ``torch.cuda.max_memory_allocated``.
"""

from __future__ import annotations

import csv
import ctypes
import gc
import json
import math
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from benchmarks.hardware import hardware_meta

# ---------------------------------------------------------------------------------------------
# The models of both suites (scaling and long_range), as gReLU model_params.
# ---------------------------------------------------------------------------------------------

# About 200k parameters each with one output track (counted with the head): the budget of the
# long-range suite, small enough to train on two CPU cores. Caduceus is the RC-equivariant PS
# variant without post-hoc conjoining. gReLU's EnformerModel cannot be made this small (its conv
# tower rounds widths to multiples of 128 and its relative positions need channels / n_heads
# divisible by 6, so 384 channels is its floor, > 1M parameters); the matched Enformer is the
# same architecture assembled from gReLU's Enformer blocks with a finer width rounding
# (CompactEnformerModel), with a lighter feed-forward dropout (0.1 instead of 0.4, which is meant
# for the 230M model trained for days).
MATCHED = {
    "caduceus": dict(model_type="CaduceusModel", d_model=64, n_layer=5, rcps=True, conjoin=False),
    "hyenadna": dict(model_type="HyenaDNAModel", d_model=64, n_layer=3),
    "enformer": dict(model_type="CompactEnformerModel", n_conv=5, channels=96, n_transformers=1, n_heads=2,
                     key_len=16, ff_dropout=0.1),
}
# gReLU's EnformerModel defaults are the published architecture (Avsec et al. 2021), 230M parameters.
PUBLISHED = {"enformer_published": dict(model_type="EnformerModel")}
MODEL_SPECS = MATCHED | PUBLISHED


class CompactConvTower(nn.Module):
    """gReLU's EnformerConvTower with widths rounded to multiples of ``divisible_by`` (not 128).

    A stem (conv k15 + residual pointwise conv, attention pooling by 2), then ``n_conv - 1`` blocks
    (conv k5 + residual pointwise conv, attention pooling by 2) widening from channels/2 to channels.
    Input (N, 4, L); output (N, channels, L / 2**n_conv).
    """

    def __init__(self, n_conv: int, channels: int, divisible_by: int = 16):
        super().__init__()
        from enformer_pytorch.modeling_enformer import exponential_linspace_int
        from grelu.model.blocks import ConvBlock

        if n_conv < 3:
            raise ValueError(f"n_conv must be >= 3 (stem + at least two widening blocks), got {n_conv}.")
        if channels % (2 * divisible_by):
            raise ValueError(f"channels must be a multiple of {2 * divisible_by}, got {channels}.")
        half = channels // 2
        filters = [half] + exponential_linspace_int(half, channels, num=n_conv - 1, divisible_by=divisible_by)

        def pooled_residual(width):
            return ConvBlock(width, width, kernel_size=1, act_func="gelu_enformer", residual=True, order="NACDR",
                             pool_func="attn", pool_size=2)

        self.blocks = nn.ModuleList([nn.Sequential(nn.Conv1d(4, half, 15, padding="same"), pooled_residual(half))])
        for i in range(1, n_conv):
            conv = ConvBlock(filters[i - 1], filters[i], kernel_size=5, act_func="gelu_enformer", residual=False,
                             order="NACDR")
            self.blocks.append(nn.Sequential(conv, pooled_residual(filters[i])))

    def forward(self, x):
        for block in self.blocks:
            x = block(x)
        return x


def compact_enformer_trunk(n_conv, channels, n_transformers, n_heads, key_len, attn_dropout, pos_dropout,
                           ff_dropout, crop_len=0) -> nn.Module:
    """gReLU's EnformerTrunk (its own forward: conv tower, transformers, pointwise conv, GELU) at any width.

    Input (N, 4, L); output (N, 2 * channels, L / 2**n_conv - 2 * crop_len).
    """
    from grelu.model.blocks import ConvBlock
    from grelu.model.layers import Activation, Crop
    from grelu.model.trunks.enformer import EnformerTransformerTower, EnformerTrunk

    if (channels // n_heads) % 6:
        raise ValueError(f"channels / n_heads must be divisible by 6 (relative position features), got "
                         f"{channels} / {n_heads}.")

    class CompactEnformerTrunk(EnformerTrunk):
        def __init__(self):
            nn.Module.__init__(self)  # EnformerTrunk.__init__ would build the 128-rounded tower
            self.conv_tower = CompactConvTower(n_conv, channels)
            self.transformer_tower = EnformerTransformerTower(
                in_channels=channels, n_blocks=n_transformers, n_heads=n_heads, key_len=key_len,
                attn_dropout=attn_dropout, pos_dropout=pos_dropout, ff_dropout=ff_dropout)
            # gReLU passes ff_dropout // 8 (0 for any dropout < 8) here; keep that behaviour.
            self.pointwise_conv = ConvBlock(channels, 2 * channels, kernel_size=1, act_func="gelu_enformer",
                                            dropout=ff_dropout // 8, order="NACDR")
            self.act = Activation("gelu_enformer")
            self.crop = Crop(crop_len)

    return CompactEnformerTrunk()


def compact_enformer_model(n_tasks, n_conv=5, channels=96, n_transformers=1, n_heads=2, key_len=16,
                           attn_dropout=0.05, pos_dropout=0.01, ff_dropout=0.1, crop_len=0, final_pool_func="avg"):
    """A gReLU BaseModel: compact Enformer trunk + gReLU ConvHead (as in gReLU's EnformerModel).

    Input (N, 4, L) with L divisible by 2**n_conv; output (N, n_tasks, 1) (pooled). crop_len counts
    pooled positions (of 2**n_conv bp), as in gReLU's EnformerModel.
    """
    from grelu.model.heads import ConvHead
    from grelu.model.models import BaseModel

    trunk = compact_enformer_trunk(n_conv, channels, n_transformers, n_heads, key_len, attn_dropout, pos_dropout,
                                   ff_dropout, crop_len)
    head = ConvHead(n_tasks=n_tasks, in_channels=2 * channels, norm=False, pool_func=final_pool_func)
    return BaseModel(embedding=trunk, head=head)


def length_multiple(name: str) -> int:
    """Input lengths of model ``name`` must be a multiple of this (Enformer pools by 2 per conv block)."""
    spec = MODEL_SPECS[name]
    return 2 ** spec.get("n_conv", 7) if "Enformer" in spec["model_type"] else 1


def model_params(name: str, seq_len: int, n_tasks: int = 1, readout_len: int | None = None) -> dict:
    """Model type and constructor arguments of benchmark model ``name`` for inputs of ``seq_len``.

    Args:
        readout_len: None pools the output over the whole sequence; an int crops the output to the
            central ``readout_len`` bp before pooling, so the prediction is read at the centre
            (long-range tasks: more context can only add information, never dilute the site).

    HyenaDNA's implicit filters are defined up to ``l_max``, so it is built for exactly seq_len
    (its parameter count does not depend on it).
    """
    if name not in MODEL_SPECS:
        raise ValueError(f"Unknown benchmark model {name!r}; choose from {', '.join(MODEL_SPECS)}.")
    multiple = length_multiple(name)
    if seq_len % multiple:
        raise ValueError(f"{name} needs a sequence length divisible by {multiple}, got {seq_len}.")
    params = dict(MODEL_SPECS[name], n_tasks=n_tasks)
    if params["model_type"] == "HyenaDNAModel":
        params["l_max"] = seq_len
    if readout_len is not None:
        crop_bp = (seq_len - readout_len) // 2
        if not 0 < readout_len <= seq_len or (seq_len - readout_len) % (2 * multiple):
            raise ValueError(f"{name}: readout_len={readout_len} must leave an equal crop on both sides of "
                             f"{seq_len} bp that is a multiple of {multiple} bp.")
        params["crop_len"] = crop_bp // multiple  # Enformer crops pooled positions, the others bp
    return params


def build_model(name: str, seq_len: int, n_tasks: int = 1, device="cpu",
                readout_len: int | None = None) -> nn.Module:
    """A fresh gReLU model (random weights from the current torch seed); output (N, n_tasks, 1)."""
    import grelu.model.models  # first, so that importing grelu_caduceus registers on it

    import grelu_caduceus  # noqa: F401  (registers CaduceusModel / HyenaDNAModel)

    params = model_params(name, seq_len, n_tasks, readout_len)
    model_type = params.pop("model_type")
    if model_type == "CompactEnformerModel":
        return compact_enformer_model(**params).to(device)
    return getattr(grelu.model.models, model_type)(**params).to(device)


def count_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------
# Measuring one call.
# ---------------------------------------------------------------------------------------------


class PeakMemory:
    """Peak memory above the starting level of one block of code, in MiB.

    CUDA: ``torch.cuda.max_memory_allocated``. CPU: the kernel's peak resident set size (VmHWM),
    reset through /proc/self/clear_refs at the start (Linux); freed heap is first handed back to
    the system (malloc_trim) so that reusing it counts as new memory. NaN where unsupported.
    """

    def __init__(self, device: torch.device):
        self.device = torch.device(device)
        self.peak_mb = math.nan

    def __enter__(self):
        gc.collect()
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._start = torch.cuda.memory_allocated(self.device)
        else:
            _malloc_trim()
            self._start = _proc_status_kb("VmRSS")
            self._supported = _reset_peak_rss()
        return self

    def __exit__(self, *exc):
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)
            self.peak_mb = (torch.cuda.max_memory_allocated(self.device) - self._start) / 2**20
        elif self._supported and self._start is not None:
            self.peak_mb = max(0.0, (_proc_status_kb("VmHWM") - self._start) / 1024)
        return False


def _proc_status_kb(field: str):
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")  # 5: reset the peak RSS to the current RSS (Linux >= 4.0)
        return True
    except OSError:
        return False


def _malloc_trim():
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass


def _sync(device: torch.device):
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def run_once(model: torch.nn.Module, x: torch.Tensor, mode: str) -> None:
    """One forward (``fwd``: eval, no autograd) or forward+backward (``fwd_bwd``) pass on x (N, 4, L)."""
    if mode == "fwd":
        model.eval()
        with torch.no_grad():
            model(x)
    elif mode == "fwd_bwd":
        model.train()
        model(x).float().mean().backward()
        model.zero_grad(set_to_none=True)
    else:
        raise ValueError(f"mode must be 'fwd' or 'fwd_bwd', got {mode!r}.")


@dataclass
class Measurement:
    ms: float
    peak_mem_mb: float


def measure(model, x, mode, repeats: int, max_seconds: float) -> Measurement:
    """Warm up once (compilation, allocator), then time up to ``repeats`` calls (median, ms).

    The first timed call also gives the peak memory. Fewer repeats are made when one call is slow,
    so that the repeats together stay under ``max_seconds``.
    """
    device = x.device
    start = time.perf_counter()
    run_once(model, x, mode)
    _sync(device)
    warm_seconds = time.perf_counter() - start
    repeats = max(1, min(repeats, int(max_seconds / max(warm_seconds, 1e-6))))
    times = []
    for i in range(repeats):
        with PeakMemory(device) as memory:
            start = time.perf_counter()
            run_once(model, x, mode)
            _sync(device)
            times.append(time.perf_counter() - start)
        if i == 0:
            peak = memory.peak_mb
    times.sort()
    return Measurement(ms=1000 * times[len(times) // 2], peak_mem_mb=peak)


def predict_next(history: list[tuple[int, float]], seq_len: int, default_exponent: float = 2.0) -> float:
    """Extrapolate a cost (time or memory) measured at shorter lengths to ``seq_len``.

    A power law through the last two points (exponent clamped to [1, 2.5]); from one point, the
    pessimistic ``default_exponent`` (quadratic).
    """
    (l_last, c_last) = history[-1]
    if len(history) >= 2:
        (l_prev, c_prev) = history[-2]
        exponent = math.log(max(c_last, 1e-9) / max(c_prev, 1e-9)) / math.log(l_last / l_prev)
        exponent = min(2.5, max(1.0, exponent))
    else:
        exponent = default_exponent
    return c_last * (seq_len / l_last) ** exponent


# ---------------------------------------------------------------------------------------------
# The sweep.
# ---------------------------------------------------------------------------------------------

COLUMNS = ["model", "seq_len", "params", "mode", "ms", "peak_mem_mb", "device"]
QUICK_LENGTHS = [1024, 4096, 16384, 65536, 131072]
FULL_CPU_LENGTHS = [1024 * 2**k for k in range(8)]  # 1k .. 131k
GPU_LENGTHS = [1024 * 2**k for k in range(11)]  # 1k .. 1M


@dataclass
class SweepSettings:
    """Lengths, repeats and the caps that stop a model's sweep.

    max_call_seconds: skip a length whose predicted single-call time exceeds this.
    max_mem_mb: skip a length whose predicted peak memory exceeds this.
    repeats: timed calls per point (after one warm-up).
    """

    lengths: list[int]
    repeats: int = 3
    max_call_seconds: float = 60.0
    max_mem_mb: float = 8000.0


def default_settings(quick: bool, device: torch.device) -> SweepSettings:
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return SweepSettings(GPU_LENGTHS, repeats=5, max_call_seconds=20.0, max_mem_mb=0.8 * free / 2**20)
    available_mb = (_proc_status_kb_meminfo("MemAvailable") or 8_000_000) / 1024
    mem_cap = min(8000.0, 0.5 * available_mb)
    if quick:
        return SweepSettings(QUICK_LENGTHS, repeats=2, max_call_seconds=12.0, max_mem_mb=mem_cap)
    return SweepSettings(FULL_CPU_LENGTHS, repeats=3, max_call_seconds=60.0, max_mem_mb=mem_cap)


def _proc_status_kb_meminfo(field: str):
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith(field + ":"):
                    return int(line.split()[1])
    except OSError:
        pass
    return None


def device_label(device: torch.device) -> str:
    """``cpu (N threads)`` or the CUDA device's name, for the CSV's device column."""
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"cpu ({torch.get_num_threads()} threads)"


def _is_out_of_memory(err: BaseException) -> bool:
    text = str(err).lower()
    return isinstance(err, torch.cuda.OutOfMemoryError) or "out of memory" in text or "can't allocate" in text


def sweep_model(name, settings: SweepSettings, device, modes=("fwd", "fwd_bwd"), log=print, seed=0):
    """Rows (dicts of COLUMNS) for one model over the settings' lengths, for each mode."""
    rows = []
    lengths = [L for L in settings.lengths if L % length_multiple(name) == 0]
    built = {}  # model_params -> model: rebuilt only when the parameters depend on the length (HyenaDNA)
    for mode in modes:
        times, memories = [], []
        for seq_len in lengths:
            if times:
                # From a single point assume L^1.5: quadratic is too pessimistic for the linear models.
                t_pred = predict_next(times, seq_len, default_exponent=1.5)
                m_pred = predict_next(memories, seq_len, default_exponent=1.5) if memories else 0.0
                if t_pred > settings.max_call_seconds or m_pred > settings.max_mem_mb:
                    log(f"  {name} {mode}: stop before {seq_len} bp (predicted {t_pred:.1f} s, {m_pred:.0f} MB; "
                        f"caps {settings.max_call_seconds:.0f} s, {settings.max_mem_mb:.0f} MB)")
                    break
            key = repr(model_params(name, seq_len))
            if key not in built:
                built.clear()
                torch.manual_seed(seed)
                built[key] = build_model(name, seq_len, device=device)
            model = built[key]
            x = torch.nn.functional.one_hot(torch.randint(0, 4, (1, seq_len)), 4).transpose(1, 2).float().to(device)
            try:
                m = measure(model, x, mode, settings.repeats, settings.max_call_seconds)
            except (RuntimeError, MemoryError) as err:
                if not (_is_out_of_memory(err) or isinstance(err, MemoryError)):
                    raise
                log(f"  {name} {mode} {seq_len} bp: out of memory, stopping this model")
                break
            finally:
                del x
            row = dict(model=name, seq_len=seq_len, params=count_params(model), mode=mode, ms=round(m.ms, 3),
                       peak_mem_mb=round(m.peak_mem_mb, 1), device=device_label(device))
            rows.append(row)
            log(f"  {name:18s} {mode:7s} {seq_len:8d} bp {m.ms:10.1f} ms {m.peak_mem_mb:9.1f} MB")
            times.append((seq_len, m.ms / 1000))
            if not math.isnan(m.peak_mem_mb):
                memories.append((seq_len, max(m.peak_mem_mb, 1.0)))
    return rows


def run_scaling(out_dir, quick=False, device="cpu", models=None, lengths=None, log=print) -> Path:
    """Run the sweep for every model and write ``out_dir/scaling.csv`` (rewritten after each model).

    Args:
        out_dir: output folder (created).
        quick: the short CPU sweep (1k, 4k, 16k, 65k, 131k; tighter caps).
        device: "cpu", "cuda" or "auto" (CUDA when available).
        models: names from MODEL_SPECS (default: all).
        lengths: override the sweep's lengths.
    """
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("--device cuda was asked for but torch sees no CUDA device; use --device cpu.")
    settings = default_settings(quick, device)
    if lengths:
        settings.lengths = sorted(lengths)
    models = list(models or MODEL_SPECS)
    unknown = [m for m in models if m not in MODEL_SPECS]
    if unknown:
        raise ValueError(f"Unknown model(s) {unknown}; choose from {', '.join(MODEL_SPECS)}.")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "scaling.csv"
    log(f"scaling: {device_label(device)}, lengths {settings.lengths}, caps {settings.max_call_seconds:.0f} s "
        f"and {settings.max_mem_mb:.0f} MB per call -> {path}")
    meta = dict(hardware_meta(), device=device_label(device), quick=quick, lengths=settings.lengths)
    (out_dir / "scaling_meta.json").write_text(json.dumps(meta, indent=1) + "\n")
    rows = []
    for name in models:
        rows += sweep_model(name, settings, device, log=log)
        write_csv(path, rows)
    return path


def write_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
