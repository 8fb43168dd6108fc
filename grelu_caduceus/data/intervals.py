"""The one centre-resize rule, for intervals and for sequences.

kipoiseq's ``resize_interval(anchor="center")`` rule: an interval [start, end) resized to L bp is
``[c - L // 2, c - L // 2 + L)`` with ``c = (start + end) // 2``. A sequence is resized as the
interval [0, len(seq)) it spans: trimmed to the window, with N for window bases outside it.
"""

import numpy as np
import pandas as pd


def centred_starts(starts, ends, length: int):
    """Start of the ``length``-bp window centred on each interval [starts, ends) (int or int64 array)."""
    if isinstance(starts, (int, np.integer)) and isinstance(ends, (int, np.integer)):
        return (int(starts) + int(ends)) // 2 - int(length) // 2
    return (np.asarray(starts, dtype=np.int64) + np.asarray(ends, dtype=np.int64)) // 2 - int(length) // 2


def centred_windows(intervals: pd.DataFrame, length: int) -> pd.DataFrame:
    """The ``length``-bp windows (chrom, start, end) centred on the intervals (chrom, start, end), in
    row order."""
    start = centred_starts(intervals["start"].to_numpy(np.int64), intervals["end"].to_numpy(np.int64), length)
    return pd.DataFrame({"chrom": intervals["chrom"].to_numpy(), "start": start, "end": start + int(length)})


def centre_resize_sequence(seq: str, length: int, pad: str = "N") -> str:
    """``seq`` trimmed or padded with ``pad`` to ``length`` around its centre, by the interval rule."""
    start = centred_starts(0, len(seq), length)
    end = start + int(length)
    return pad * max(0, -start) + seq[max(0, start):min(len(seq), end)] + pad * max(0, end - len(seq))
