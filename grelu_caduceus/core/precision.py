"""Float32 matmul precision as a scoped setting: whatever changes it inside a ``with`` block is undone.

``torch.set_float32_matmul_precision`` is process-wide. Its "high"/"medium" values allow TF32 on
NVIDIA GPUs, but they also reach oneDNN on the CPU: on CPUs with AMX, "medium" computes float32
matmuls in bfloat16 (relative error ~2e-3 instead of ~3e-7). A library that sets it once changes
every later float32 result of its caller's process, so here it is only ever set inside
:func:`float32_matmul_precision`, which restores the caller's state on exit.

Torch keeps two records of this setting: the legacy one (``get_float32_matmul_precision``) and, from
torch 2.9, one ``fp32_precision`` per backend and operator; both are saved and restored.
"""

from __future__ import annotations

import contextlib

import torch

PRECISIONS = ("highest", "high", "medium")

# (backend, operator) pairs that carry an fp32_precision in torch >= 2.9; "" is the backend itself
_BACKEND_SETTINGS = (
    ("", ""), ("cuda", "matmul"), ("cudnn", ""), ("cudnn", "conv"), ("cudnn", "rnn"),
    ("mkldnn", ""), ("mkldnn", "matmul"), ("mkldnn", "conv"), ("mkldnn", "rnn"),
)


def _setting_objects() -> list:
    found = []
    for backend, op in _BACKEND_SETTINGS:
        obj = torch.backends
        for part in (backend, op):
            obj = getattr(obj, part, None) if part else obj
        if obj is not None and hasattr(obj, "fp32_precision"):
            found.append(obj)
    return found


def precision_state() -> tuple:
    """The process's float32 precision settings: (legacy value or None, per-backend values)."""
    try:
        legacy = torch.get_float32_matmul_precision()
    except RuntimeError:  # the caller mixed the legacy and per-backend APIs: only the latter is readable
        legacy = None
    return legacy, tuple(obj.fp32_precision for obj in _setting_objects())


def restore_precision_state(state: tuple) -> None:
    """Put back what :func:`precision_state` returned."""
    legacy, backends = state
    if legacy is not None:
        torch.set_float32_matmul_precision(legacy)
    objects = _setting_objects()
    if tuple(obj.fp32_precision for obj in objects) != backends:
        for obj, value in zip(objects, backends):
            obj.fp32_precision = value


@contextlib.contextmanager
def float32_matmul_precision(precision: str | None = None):
    """Run a block with float32 matmul ``precision`` ("highest", "high", "medium"), or with the
    current setting if None; on exit every precision setting is as it was, whatever the block did.

    Example::

        with float32_matmul_precision("high"):  # TF32 on GPUs for this training run only
            trainer.fit(model)
    """
    if precision is not None and precision not in PRECISIONS:
        raise ValueError(f"float32 matmul precision must be one of {', '.join(PRECISIONS)} or None, "
                         f"got {precision!r}.")
    saved = precision_state()
    try:
        if precision is not None:
            torch.set_float32_matmul_precision(precision)
        yield
    finally:
        restore_precision_state(saved)


__all__ = ["PRECISIONS", "float32_matmul_precision", "precision_state", "restore_precision_state"]
