"""gReLU's LabeledSeqDataset over genome windows read on demand, for the FASTA-backed training tables.

gReLU's LabeledSeqDataset holds every sequence in memory, index-encoded and padded by
``max_seq_shift`` on each side; here ``seqs`` is a :class:`WindowIndices` that reads the same
encoding from the FASTA when an item asks for it (through a
:class:`grelu_caduceus.data.GenomeWindowDataset` of the table's windows), so memory holds only the
labels. Everything else is gReLU's own code: its ``__init__`` sets the attributes that training and
checkpoints read (seq_len, n_tasks, tasks, rc, max_seq_shift, ...), its ``__getitem__`` applies its
Augmenter (random shift and reverse complement, the label reversed with it) and one-hot encodes.

The one difference from an in-memory table of the same windows: a shift shows the genome's bases
beyond the window (as gReLU's datasets of intervals do), not N padding.
"""

from __future__ import annotations

import numpy as np
from grelu.data.dataset import LabeledSeqDataset

from .genome import GenomeWindowDataset, index_encode


class WindowIndices:
    """The windows ``rows`` of ``windows``, widened by ``flank`` bp on each side, as gReLU index
    encodings (int8, A/C/G/T 0-3, N and IUPAC codes 4), read when indexed: ``seqs[i]`` is an array
    (length seq_len + 2 * flank), ``seqs[a:b]`` a stacked (n, length) array."""

    def __init__(self, windows: GenomeWindowDataset, rows: np.ndarray, flank: int = 0):
        self.windows, self.rows, self.flank = windows, np.asarray(rows, np.int64), int(flank)

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i):
        if isinstance(i, slice):
            return np.stack([self[j] for j in range(*i.indices(len(self)))])
        return index_encode(self.windows.read(int(self.rows[i]), self.flank))


class GenomeLabeledSeqDataset(LabeledSeqDataset):
    """A LabeledSeqDataset whose sequences are the windows ``rows`` of ``windows``, read lazily.

    Args:
        windows: the table's windows (one item per row, ``GenomeWindowDataset(intervals=...)``).
        rows: which of them, in order (e.g. the train rows).
        labels: (len(rows), T, L) float32.
        tasks: task names.
        rc, max_seq_shift, augment_mode: gReLU's augmentation (LabeledSeqDataset's arguments).
    """

    def __init__(self, windows: GenomeWindowDataset, rows, labels: np.ndarray, tasks, rc: bool = False,
                 max_seq_shift: int = 0, augment_mode: str = "random"):
        self._windows, self._rows = windows, np.asarray(rows, np.int64)
        super().__init__(self._rows, labels=labels, tasks=list(tasks), seq_len=windows.seq_len, rc=rc,
                         max_seq_shift=max_seq_shift, augment_mode=augment_mode)

    def _load_seqs(self, seqs) -> None:
        # LabeledSeqDataset.__init__ would resize and encode every sequence here; read them on demand.
        self.intervals = None
        self.seqs = WindowIndices(self._windows, self._rows, flank=self.max_seq_shift)
