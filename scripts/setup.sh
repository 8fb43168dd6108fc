#!/usr/bin/env bash
# Create (or update) the project's virtual environment at .venv. Idempotent: re-runs only when
# pyproject.toml changed. Extras: GRELU_CADUCEUS_EXTRAS (default "kipoi,dev"; add "cuda" on GPUs).
set -euo pipefail
cd "$(dirname "$0")/.."
extras=${GRELU_CADUCEUS_EXTRAS:-kipoi,dev}
[ -x .venv/bin/python ] || "${PYTHON:-python3}" -m venv .venv
stamp=.venv/.grelu-caduceus-installed
want="$(sha256sum pyproject.toml | cut -c1-16) $extras"
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "Setting up .venv (extras: $extras) ..." >&2
  # PyTorch first, from a local wheelhouse if pip is configured with one (e.g. a CPU build, which
  # avoids downloading CUDA wheels on CPU machines); otherwise the usual index decides below.
  .venv/bin/python -c "import torch" 2>/dev/null \
    || .venv/bin/python -m pip install -q --no-index --no-deps torch 2>/dev/null || true
  .venv/bin/python -m pip install -q -e ".[$extras]"
  echo "$want" > "$stamp"
fi
