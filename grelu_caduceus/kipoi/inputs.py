"""What a Kipoi model's ``predict_on_batch`` does to a one-hot batch; needs no Kipoi."""

from __future__ import annotations

import numpy as np

from ..inference import ExportError, predict_onehot


def zero_uniform_columns(x: np.ndarray) -> np.ndarray:
    """Turn kipoiseq's N columns (0.25 in each of A, C, G, T) into our all-zero N columns.

    Args:
        x: (B, 4, L) one-hot batch.

    Returns:
        a float32 copy with every column whose four entries are all 0.25 set to zero.
    """
    x = np.array(x, dtype=np.float32, copy=True)
    x[np.broadcast_to(np.all(x == 0.25, axis=1, keepdims=True), x.shape)] = 0.0
    return x


def predict_batch(lm, x) -> np.ndarray:
    """What the Kipoi model's predict_on_batch returns: (B, n_outputs) float32 for one-hot (B, 4, L).

    Accepts N both as all-zero columns (our dataloader) and as 0.25 columns (kipoiseq's SeqIntervalDl).
    """
    x = np.asarray(x)
    if x.ndim != 3 or x.shape[1] != 4:
        raise ExportError(
            f"Expected one-hot input of shape (batch, 4, length) with rows A, C, G, T, got {x.shape}. With "
            "kipoiseq's SeqIntervalDl set alphabet_axis: 0."
        )
    return predict_onehot(lm, zero_uniform_columns(x))
