"""Predictions for the intervals of a BED file with a trained model: ``grelu-caduceus predict``.

This is our own prediction path, for users of gReLU checkpoints; the Kipoi model written by
``grelu-caduceus export-kipoi`` runs the same code (same windows, same one-hot, same forward pass),
so both give the same numbers.

* Windows: each interval is resized around its centre to the model's sequence length exactly as
  kipoiseq's ``resize_interval(anchor="center")`` does: ``centre = (start + end) // 2``,
  ``window = [centre - L // 2, centre - L // 2 + L)``. An interval that lies wholly or partly
  outside its chromosome is an error naming its row; a window that runs past an end only because
  it was resized is padded with N, and a warning counts such windows.
* Letters (the rule of :func:`grelu_caduceus.data.genome.clean_sequence`): IUPAC ambiguity codes
  (R, Y, K, M, S, W, B, D, H, V, either case) are read as N, with a warning that counts them; all-N
  windows are kept, with a warning that counts them (their predictions are finite); any other
  character is an error.
* One-hot: (4, L) float32, rows A, C, G, T; N is an all-zero column, which is what our models were
  trained on (kipoiseq writes 0.25 in each row instead).
* Caduceus-Ph models are conjoined by default (the trunk averages the features of the sequence and
  of its reverse complement), so their predictions are reverse-complement invariant, like PS ones.

Example::

    from grelu_caduceus.predict import predict_intervals
    table = predict_intervals("model.ckpt", "genome.fa", "peaks.bed")   # one row per interval

    grelu-caduceus predict --model model.ckpt --fasta genome.fa --bed peaks.bed --out preds.tsv
"""

from __future__ import annotations

import os

import numpy as np
import pandas as pd
import torch

from .inference import (  # noqa: F401  (the loading and output helpers, importable from here as before)
    CONJOIN_CHOICES,
    PredictError,
    caduceus_trunk,
    load_model,
    output_labels,
    predict_onehot,
    set_conjoin,
    task_names,
    training_seq_len,
)
from .data.genome import (
    FastaGenome,
    IntervalSource,
    WindowTally,
    check_intervals_in_bounds,
    clean_sequence,
    one_hot_encode,
    padded_windows,
    read_intervals,
)

# --------------------------------------------------------------------------- windows
def centred_windows(intervals: pd.DataFrame, seq_len: int) -> pd.DataFrame:
    """Resize intervals around their centres to ``seq_len`` bp (kipoiseq's anchor="center" rule).

    Args:
        intervals: DataFrame with chrom, start, end (0-based, end-exclusive).
        seq_len: window length.

    Returns:
        DataFrame with chrom, start, end of the windows (same row order).
    """
    if seq_len is None or int(seq_len) < 1:
        raise PredictError(f"seq_len must be a positive number of bases, got {seq_len}.")
    from .data.intervals import centred_windows as centred

    return centred(intervals, int(seq_len))


class IntervalWindows(torch.utils.data.Dataset):
    """One-hot windows around the intervals of a BED file: items are float32 tensors (4, seq_len).

    Args:
        fasta: FASTA path (plain or bgzip); its index is built beside it or in a cache folder.
        intervals: BED path (BED3 or more columns; extra columns are ignored) or a DataFrame with
            chrom, start, end.
        seq_len: window length; None keeps the intervals' own length (they must then all be equal).

    Attributes:
        intervals: the input intervals (chrom, start, end), one row per item.
        windows: the resized windows (chrom, start, end) that are read.
    """

    def __init__(self, fasta: str | os.PathLike, intervals: IntervalSource, seq_len: int | None = None):
        self.genome = FastaGenome(fasta)
        self.intervals = read_intervals(intervals, "intervals", keep_name=True)  # an empty BED: GenomeDataError
        source = "intervals" if isinstance(intervals, pd.DataFrame) else f"intervals file {intervals}"
        # the one interval rule (embed and Kipoi's dataloader follow it too): known chromosomes, end > start,
        # wholly inside the chromosome; every kind of bad row in one GenomeDataError
        check_intervals_in_bounds(self.intervals, self.genome, source)
        if seq_len is None:
            lengths = sorted(set((self.intervals["end"] - self.intervals["start"]).tolist()))
            if len(lengths) > 1:
                raise PredictError(
                    f"The intervals have different lengths ({lengths[0]}-{lengths[-1]} bp) and no sequence "
                    "length was given: add --seq-len N to resize them around their centres to N bp."
                )
            seq_len = lengths[0]
        self.seq_len = int(seq_len)
        self.windows = centred_windows(self.intervals, self.seq_len)
        self.tally = self._scan(source)

    def _scan(self, source: str) -> WindowTally:
        """Read every window once through the letter rule (data.genome.clean_sequence): a non-DNA
        character stops here, and one warning per kind counts the windows padded with N past a
        chromosome end, those holding IUPAC codes (read as N) and the all-N ones."""
        padded = padded_windows(self.windows["chrom"].to_numpy(), self.windows["start"].to_numpy(), self.seq_len,
                                self.genome.sizes)
        tally = WindowTally(source, self._describe)
        for i in range(len(self.windows)):
            tally.clean(self.genome.fetch(*self.window(i)), i, padded=bool(padded[i]))
        tally.warn(self.seq_len, stacklevel=4)
        return tally

    def _describe(self, index: int) -> str:
        chrom, start, end = self.window(index)
        row = self.intervals.iloc[index]
        return f"row {index + 1}: {row['chrom']}:{row['start']}-{row['end']}, window {start}-{end}"

    def __len__(self) -> int:
        return len(self.windows)

    def window(self, index: int) -> tuple[str, int, int]:
        """(chrom, start, end) of the window read for item ``index``."""
        row = self.windows.iloc[index]
        return str(row["chrom"]), int(row["start"]), int(row["end"])

    def __getitem__(self, index: int) -> torch.Tensor:
        """float32 one-hot (4, seq_len): rows A, C, G, T; N, IUPAC codes and bases outside the chromosome all zero."""
        sequence, _, _ = clean_sequence(self.genome.fetch(*self.window(index)), f"window {index + 1}")
        return one_hot_encode(sequence)


# --------------------------------------------------------------------------- intervals -> table
def predict_intervals(
    checkpoint: str | os.PathLike,
    fasta: str | os.PathLike,
    bed: IntervalSource,
    seq_len: int | None = None,
    conjoin="auto",
    batch_size: int = 64,
    device: str = "cpu",
    progress: bool = True,
) -> pd.DataFrame:
    """Predict every interval of a BED file with a trained model.

    Args:
        checkpoint: gReLU checkpoint (.ckpt) or exported Kipoi folder (see :func:`load_model`).
        fasta: genome FASTA (plain or bgzip).
        bed: BED file (0-based, end-exclusive; extra columns ignored) or DataFrame chrom/start/end.
        seq_len: window length; default the model's training length, else the intervals' length.
        conjoin: "auto" (Caduceus-Ph conjoined), True or False; see :func:`set_conjoin`.
        batch_size: sequences per forward pass.
        device: "cpu", "cuda", ...
        progress: show a progress bar (intervals) when there is more than one batch.

    Returns:
        DataFrame, one row per interval in BED order: chrom, start, end (the input interval), name
        (the BED's 4th column, when it has one), window_start, window_end (the window the model saw), then one float column per output
        (:func:`output_labels`: task names, ``task/bin_i`` for per-bin models).
    """
    if int(batch_size) < 1:
        raise PredictError(f"batch_size must be >= 1, got {batch_size}.")
    lm = load_model(checkpoint, conjoin=conjoin, device=device)
    windows = IntervalWindows(fasta, bed, seq_len if seq_len is not None else training_seq_len(lm))
    loader = torch.utils.data.DataLoader(windows, batch_size=int(batch_size), shuffle=False)
    from tqdm.auto import tqdm

    with tqdm(total=len(windows), desc="predict", unit="interval", disable=not progress or len(loader) < 2) as bar:
        preds = []
        for x in loader:
            preds.append(predict_onehot(lm, x))
            bar.update(len(x))
    preds = np.concatenate(preds)
    n_bins = preds.shape[1] // int(lm.model.head.n_tasks)
    table = pd.DataFrame({
        "chrom": windows.intervals["chrom"].to_numpy(),
        "start": windows.intervals["start"].to_numpy(),
        "end": windows.intervals["end"].to_numpy(),
        **({"name": windows.intervals["name"].to_numpy()} if "name" in windows.intervals else {}),
        "window_start": windows.windows["start"].to_numpy(),
        "window_end": windows.windows["end"].to_numpy(),
    })
    return pd.concat([table, pd.DataFrame(preds, columns=output_labels(lm, n_bins))], axis=1)

