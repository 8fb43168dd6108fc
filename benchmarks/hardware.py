"""The machine a benchmark ran on, recorded beside its CSV (``*_meta.json``) and printed in the report."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path


def cpu_model() -> str:
    """The CPU model name (lscpu, else /proc/cpuinfo, else platform)."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        for line in out.splitlines():
            if line.startswith("Model name:"):
                return line.split(":", 1)[1].strip()
    except (OSError, subprocess.SubprocessError):
        pass
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def hardware_meta() -> dict:
    """CPU model, torch threads, torch version and platform: the fields every ``*_meta.json`` starts with."""
    import torch  # here, so that the report (hardware_text) does not load torch

    return dict(cpu=cpu_model(), cores=torch.get_num_threads(), torch=torch.__version__, platform=platform.platform())


def hardware_text(meta: dict | None) -> str:
    """One sentence for the report, or "" without a record."""
    if not meta:
        return ""
    return f"Hardware: {meta.get('cpu', '?')}, {meta.get('cores', '?')} torch threads, torch {meta.get('torch', '?')}."
