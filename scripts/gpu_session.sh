#!/usr/bin/env bash
# One-command GPU session: run the GPU benchmark suite (benchmarks/gpu_suite.py) and leave its CSVs
# where they are collected.
#
# With the device tool (one call, under its 10-minute limit), from the repository root:
#     bash scripts/gpu_session.sh            # writes to $OUT when set, else benchmarks/results/gpu
# then, back on the development machine, copy the returned files into benchmarks/results/gpu/ and
# commit them (the gpu-fast-path check reads benchmarks/results/gpu/scan.csv).
#
# Environment knobs:
#     OUT / OUT_DIR   where the CSVs, environment.json and the log go (OUT_DIR wins)
#     BUDGET_S        seconds for all benchmark sections (default 450; start-up and compilation
#                     come on top, the whole run is cut at KILL_AFTER_S)
#     KILL_AFTER_S    hard wall-clock limit of the suite (default 570); CSVs are written row by row,
#                     so a cut run still returns what it measured
#     SECTIONS        comma-separated subset of parity,scan,bandwidth,tuning,scaling
#     PYTHON          interpreter that has PyTorch with CUDA (default: .venv/bin/python if it sees a
#                     GPU, else python3)
# Wheels for packages the GPU image lacks (e.g. grelu for the Enformer rows) can travel in .whl/
# (ignored by git, named in the tool's carry); they are installed into /tmp/site, nothing is fetched.
set -uo pipefail
cd "$(dirname "$0")/.."

OUT_DIR=${OUT_DIR:-${OUT:-benchmarks/results/gpu}}
mkdir -p "$OUT_DIR"
export PYTHONUNBUFFERED=1

PY=${PYTHON:-}
if [ -z "$PY" ]; then
  if [ -x .venv/bin/python ] && .venv/bin/python -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; then
    PY=.venv/bin/python
  else
    PY=python3
  fi
fi

SITE=""
if compgen -G ".whl/*.whl" > /dev/null; then
  echo "installing carried wheels: $(ls .whl | tr '\n' ' ')"
  "$PY" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl \
    && SITE=/tmp/site || echo "wheel install failed; going on without them"
fi
export PYTHONPATH="$PWD${SITE:+:$SITE}${PYTHONPATH:+:$PYTHONPATH}"

nvidia-smi -L 2>/dev/null || echo "nvidia-smi not available"
"$PY" - <<'PY'
import torch
print("python torch", torch.__version__, "cuda", torch.version.cuda, "gpu", torch.cuda.is_available() and torch.cuda.get_device_name())
try:
    import triton
    print("triton", triton.__version__)
except ImportError:
    print("triton missing: the Triton rows will be absent")
PY

args=(benchmarks/gpu_suite.py --out "$OUT_DIR" --budget-s "${BUDGET_S:-450}")
[ -n "${SECTIONS:-}" ] && args+=(--sections "$SECTIONS")
timeout --signal=INT --kill-after=15 "${KILL_AFTER_S:-570}" "$PY" "${args[@]}" 2>&1 | tee "$OUT_DIR/gpu_suite.log"
status=${PIPESTATUS[0]}

echo "suite exit status $status; files in $OUT_DIR:"
ls -l "$OUT_DIR"
if [ "$(cd "$OUT_DIR" && pwd)" != "$(pwd)/benchmarks/results/gpu" ]; then
  echo "next: copy $OUT_DIR/*.csv $OUT_DIR/environment.json $OUT_DIR/gpu_suite.log into benchmarks/results/gpu/ and commit"
fi
exit "$status"
