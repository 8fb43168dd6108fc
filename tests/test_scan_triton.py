"""The Triton selective scan against the float64 reference: outputs and all gradients.

On a machine with CUDA the kernels run on the GPU in this process. Without one they run in Triton's
CPU interpreter, which must be switched on before Triton is first imported (Lightning imports it
too), so the cases run in one subprocess started with TRITON_INTERPRET=1: this file is also that
subprocess's script (it prints the measured errors as JSON).
"""

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

sys.path.insert(0, str(Path(__file__).parent))
from test_scan_torch import make_inputs, relative_errors  # noqa: E402

# name: (input spec, selective_scan_triton options, module settings to override)
CASES = {
    "fp32_n16_all_options": (dict(batch=2, dim=8, L=300, N=16), dict(block_l=64, block_d=4), {}),
    "fp32_n64_skip_only_L70": (
        dict(batch=2, dim=8, L=70, N=64, z=False, bias=False, softplus=False), dict(block_l=32, block_d=8), {}),
    "fp32_n12_ragged_channels_gate": (dict(batch=2, dim=6, L=130, N=12, D=False), dict(block_l=32, block_d=4), {}),
    # 13 chunks carried 4 at a time; backward as one channel group looping over 4 channel blocks.
    "fp32_many_chunks_one_group": (
        dict(batch=1, dim=8, L=200, N=16), dict(block_l=16, block_d=2), dict(_CARRY_BLOCK=4, _TARGET_PROGRAMS=1)),
    "bf16_n16_all_options": (dict(batch=2, dim=8, L=150, N=16, dtype=torch.bfloat16), dict(block_l=64, block_d=8), {}),
    # Strided inputs as the Mamba mixer passes them (see as_mixer_views).
    "fp32_mixer_layout_views": (dict(batch=2, dim=8, L=100, N=16), dict(block_l=32, block_d=4, views=True), {}),
    # The reverse direction against flip(reference(flip(inputs))): ragged last chunk, many carried
    # chunks, one backward group, and the mixer's strided views.
    "fp32_reverse_n16_all_options": (dict(batch=2, dim=8, L=300, N=16), dict(block_l=64, block_d=4, reverse=True), {}),
    "fp32_reverse_many_chunks_one_group": (
        dict(batch=1, dim=8, L=200, N=16), dict(block_l=16, block_d=2, reverse=True),
        dict(_CARRY_BLOCK=4, _TARGET_PROGRAMS=1)),
    "fp32_reverse_n12_skip_only": (
        dict(batch=2, dim=6, L=70, N=12, z=False, bias=False, softplus=False),
        dict(block_l=32, block_d=4, reverse=True), {}),
    "fp32_reverse_mixer_layout_views": (
        dict(batch=2, dim=8, L=100, N=16), dict(block_l=32, block_d=4, views=True, reverse=True), {}),
}


def as_mixer_views(u, delta, B, C, z, **rest):
    """The same values laid out as in the Mamba mixer: channels-last activations seen through
    (batch, channels, L) transposes; z one half of a wider projection, B and C slices of another
    (so they have gaps). Differentiable, so gradients flow back to the original tensors."""
    u_z = torch.cat([u.transpose(1, 2), z.transpose(1, 2)], dim=-1)  # (batch, L, 2 * dim)
    u_view, z_view = (t.transpose(1, 2) for t in u_z.chunk(2, dim=-1))
    u_view = u_view.transpose(1, 2).contiguous().transpose(1, 2)  # dense, channels-last
    proj = torch.cat([delta.transpose(1, 2), B.transpose(1, 2), C.transpose(1, 2)], dim=-1)
    delta_view, B_view, C_view = (t.transpose(1, 2) for t in proj.split([u.shape[1], B.shape[1], C.shape[1]], -1))
    return dict(u=u_view, delta=delta_view, B=B_view, C=C_view, z=z_view, **rest)
TOLERANCE = {"fp32": 1e-5, "bf16": 1e-2}


def run_cases(device):
    """Errors for every case, plus checks of the dispatcher and of run-to-run determinism."""
    from grelu_caduceus.core.scan import selective_scan, triton_scan

    results = {}
    for name, (spec, options, settings) in CASES.items():
        saved = {key: getattr(triton_scan, key) for key in settings}
        for key, value in settings.items():
            setattr(triton_scan, key, value)
        try:
            inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in make_inputs(**spec).items()}
            options = dict(options)
            views = options.pop("views", False)
            inputs["reverse"] = options.pop("reverse", False)

            def scan(views=views, options=options, **kw):
                return triton_scan.selective_scan_triton(**(as_mixer_views(**kw) if views else kw), **options)

            results[name] = relative_errors(scan, inputs)
            if name == "fp32_many_chunks_one_group":
                results["determinism"] = _max_rerun_difference(scan, inputs)
        finally:
            for key, value in saved.items():
                setattr(triton_scan, key, value)
    inputs = {k: v.to(device) if torch.is_tensor(v) else v for k, v in make_inputs(1, 4, 40, 16).items()}
    results["dispatcher"] = (
        selective_scan(**inputs, backend="triton") - triton_scan.selective_scan_triton(**inputs)
    ).abs().max().item()
    return results


def _max_rerun_difference(scan, inputs):
    """Largest difference between two identical forward+backward runs (0 when deterministic)."""
    runs = []
    for _ in range(2):
        leaves = {k: v.clone().requires_grad_(True) for k, v in inputs.items() if torch.is_tensor(v)}
        y = scan(**{**inputs, **leaves})
        grads = torch.autograd.grad(y, list(leaves.values()), torch.ones_like(y))
        runs.append([y.detach(), *grads])
    return max((a - b).abs().max().item() for a, b in zip(*runs))


@pytest.fixture(scope="module")
def results():
    pytest.importorskip("triton")
    if torch.cuda.is_available():
        return run_cases("cuda")
    env = dict(os.environ, TRITON_INTERPRET="1")
    done = subprocess.run([sys.executable, __file__, "interpret"], env=env, capture_output=True, text=True,
                          timeout=900)
    assert done.returncode == 0, f"interpreter run failed:\n{done.stderr[-4000:]}"
    return json.loads(done.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_float64_reference(results, case):
    tolerance = TOLERANCE[case[:4]]
    errors = results[case]
    assert set(errors) >= {"y", "du", "ddelta", "dA", "dB", "dC"}
    bad = {k: v for k, v in errors.items() if not v <= tolerance}
    assert not bad, f"relative errors above {tolerance}: {bad}"


def test_backward_is_deterministic(results):
    assert results["determinism"] == 0.0


def test_dispatcher_routes_to_triton(results):
    assert results["dispatcher"] == 0.0


def test_imports_and_explains_without_triton():
    """The module must import where triton is missing and say how to get it when called."""
    code = (
        "import sys; sys.modules['triton'] = None\n"
        "import torch\n"
        "from grelu_caduceus.core.scan import triton_scan\n"
        "assert not triton_scan.HAVE_TRITON\n"
        "x = torch.zeros(1, 2, 3)\n"
        "try:\n"
        "    triton_scan.selective_scan_triton(x, x, torch.zeros(2, 4), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3))\n"
        "except ImportError as e:\n"
        "    print(e)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "pip install triton" in done.stdout


def test_refuses_float64_with_a_pointer_to_other_backends():
    triton_scan = pytest.importorskip("grelu_caduceus.core.scan.triton_scan")
    if not triton_scan.HAVE_TRITON:
        pytest.skip("triton not installed")
    inputs = make_inputs(1, 2, 8, 4, dtype=torch.float64)
    with pytest.raises(TypeError, match="backend='torch'"):
        triton_scan.selective_scan_triton(**inputs)


def test_refuses_cpu_tensors_unless_interpreted():
    triton_scan = pytest.importorskip("grelu_caduceus.core.scan.triton_scan")
    if not triton_scan.HAVE_TRITON or triton_scan.INTERPRETED:
        pytest.skip("needs triton imported for the GPU")
    with pytest.raises(RuntimeError, match="TRITON_INTERPRET=1"):
        triton_scan.selective_scan_triton(**make_inputs(1, 2, 8, 4))


def compile_for_hopper():
    """Compile every kernel for sm_90 with Triton's bundled ptxas (no GPU needed).

    Returns {kernel/config: registers per thread}; raises if any kernel fails to compile, which the
    CPU interpreter would not notice (it does not type-check or lower the kernels).
    """
    import re

    import triton
    from triton.backends.compiler import GPUTarget

    from grelu_caduceus.core.scan import triton_scan as ts

    cuobjdump = Path(triton.__file__).parent / "backends" / "nvidia" / "bin" / "cuobjdump"
    flags = dict(HAS_D=True, HAS_Z=True, HAS_BIAS=True, SOFTPLUS=True, REVERSE=False)
    report = {}
    for d_state, io in ((16, "*bf16"), (16, "*fp32"), (64, "*fp32")):
        cfg = ts.launch_config(d_state)
        kernels = [
            (ts._fwd_chunk_end_state, dict(BLOCK_D=cfg.fwd_d, BLOCK_L=cfg.block_l), cfg.fwd_warps),
            (ts._fwd_chunk_output, dict(BLOCK_D=cfg.fwd_d, BLOCK_L=cfg.block_l), cfg.fwd_warps),
            (ts._bwd_chunk_start_adjoint, dict(BLOCK_D=cfg.fwd_d, BLOCK_L=cfg.block_l), cfg.fwd_warps),
            (ts._bwd_chunk_grads, dict(BLOCK_D=cfg.bwd_d, BLOCK_L=cfg.block_l), cfg.bwd_warps),
            (ts._fwd_chunk_carry, dict(BLOCK_D=1, BLOCK_C=ts._CARRY_BLOCK), 4),
            (ts._bwd_chunk_carry, dict(BLOCK_D=1, BLOCK_C=ts._CARRY_BLOCK), 4),
        ]
        for fn, sizes, warps in kernels:
            consts = {k: v for k, v in flags.items() if k in fn.arg_names}
            consts.update(sizes, N_PAD=cfg.n_pad)
            # Activations in the io dtype; states, partial sums and parameters in float32.
            io_names = {"u_ptr", "delta_ptr", "B_ptr", "C_ptr", "z_ptr", "dy_ptr", "y_ptr", "du_ptr",
                        "ddelta_ptr", "dz_ptr"}
            signature = {
                name: "constexpr" if name in consts else (io if name in io_names else "*fp32")
                if name.endswith("_ptr") else "i32"
                for name in fn.arg_names
            }
            source = triton.compiler.ASTSource(fn, signature, consts)
            kernel = triton.compile(source, target=GPUTarget("cuda", 90, 32), options=dict(num_warps=warps))
            cubin = Path(os.environ.get("TMPDIR", "/tmp")) / f"{fn.__name__}_{os.getpid()}.cubin"
            cubin.write_bytes(kernel.asm["cubin"])
            usage = subprocess.run([str(cuobjdump), "--dump-resource-usage", str(cubin)],
                                   capture_output=True, text=True).stdout
            cubin.unlink()
            regs = re.search(r"REG:(\d+)", usage)
            report[f"{fn.__name__}[N={d_state},{io}]"] = int(regs.group(1)) if regs else -1
    return report


def test_kernels_compile_for_hopper():
    """Lower every kernel to an sm_90 cubin in a clean process (without the interpreter)."""
    triton = pytest.importorskip("triton")
    try:
        from triton.backends.compiler import GPUTarget  # noqa: F401
    except ImportError:
        pytest.skip(f"triton {triton.__version__} has no GPUTarget compile API")
    env = {k: v for k, v in os.environ.items() if k != "TRITON_INTERPRET"}
    done = subprocess.run([sys.executable, __file__, "compile"], env=env, capture_output=True, text=True,
                          timeout=600)
    assert done.returncode == 0, f"compilation failed:\n{done.stderr[-4000:]}"
    registers = json.loads(done.stdout.strip().splitlines()[-1])
    assert len(registers) == 18 and all(r > 0 for r in registers.values()), registers


def test_gpu_suite_dry_run_end_to_end(tmp_path):
    """benchmarks/gpu_suite.py --dry-run: every section at tiny sizes on CPU (Triton interpreted),
    writing the CSVs the GPU session produces, so the suite cannot rot between GPU sessions."""
    import csv

    repo = Path(__file__).resolve().parents[1]
    command = [sys.executable, str(repo / "benchmarks" / "gpu_suite.py"), "--dry-run", "--out", str(tmp_path),
               "--models", "caduceus,hyenadna"]
    done = subprocess.run(command, cwd=repo, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, f"dry run failed:\n{done.stdout[-3000:]}\n{done.stderr[-3000:]}"

    def rows(name):
        with open(tmp_path / name) as f:
            return list(csv.DictReader(f))

    scan = rows("scan.csv")
    assert {"device", "backend", "seq_len", "dtype", "ms", "rel_err"} <= set(scan[0])
    backends = {r["backend"] for r in scan if r["ms"]}
    assert "torch" in backends
    timed_errors = [float(r["rel_err"]) for r in scan if r["rel_err"] and r["dtype"] == "float32"]
    assert timed_errors and max(timed_errors) <= 1e-5, scan
    if importlib.util.find_spec("triton") is not None:
        assert "triton" in backends
        parity = rows("parity.csv")
        assert {r["quantity"] for r in parity} >= {"y", "du", "ddelta", "dA", "dB", "dC", "dD", "dz", "ddelta_bias"}
        assert max(float(r["rel_err"]) for r in parity if r["dtype"] == "float32") <= 1e-5
        assert any(r["ratio"] for r in rows("bandwidth.csv"))
        assert any(r["fwd_ms"] for r in rows("tuning.csv"))
    scaling = rows("scaling.csv")
    assert {"model", "seq_len", "params", "mode", "ms", "peak_mem_mb", "device"} <= set(scaling[0])
    measured = {(r["model"], r["mode"]) for r in scaling if r["ms"]}
    assert {("caduceus", "train"), ("caduceus", "fwd"), ("hyenadna", "train")} <= measured, scaling


if __name__ == "__main__":
    if sys.argv[1:] == ["compile"]:
        print(json.dumps(compile_for_hopper()))
    else:
        from grelu_caduceus.core.scan import triton_scan as _module

        assert _module.INTERPRETED, "run with TRITON_INTERPRET=1 set"
        print(json.dumps(run_cases("cpu")))
