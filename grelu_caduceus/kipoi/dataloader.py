"""The Kipoi dataloader of an export: FASTA + BED -> one-hot (4, L) windows.

Each interval is resized around its centre to ``seq_len`` bp (kipoiseq's anchor="center" rule);
rows are A, C, G, T; N, IUPAC ambiguity codes (read as N) and bases past a chromosome end are
all-zero columns, as the model expects. An interval outside its chromosome is an error naming its
row; windows padded with N, IUPAC codes and all-N windows are counted in warnings (the rules of
:class:`grelu_caduceus.predict.IntervalWindows`, which ``grelu-caduceus predict`` follows too).

The export's dataloader.py subclasses :class:`CaduceusIntervalDl` only to default ``seq_len`` to
its model's input length (Kipoi matches the class's arguments against dataloader.yaml).
"""

from __future__ import annotations

from kipoi.data import Dataset
from kipoi.metadata import GenomicRanges

from ..predict import IntervalWindows


class CaduceusIntervalDl(Dataset):
    """One item per BED interval: ``{"inputs": (4, seq_len) float32, "metadata": {"ranges": window}}``."""

    def __init__(self, intervals_file, fasta_file, seq_len):
        self.windows = IntervalWindows(fasta_file, intervals_file, int(seq_len))

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, idx):
        chrom, start, end = self.windows.window(idx)
        return {
            "inputs": self.windows[idx].numpy(),
            "metadata": {"ranges": GenomicRanges(chrom, start, end, str(idx), "*")},
        }
