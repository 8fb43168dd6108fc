"""Kipoi dataloader of a grelu-caduceus export: FASTA + BED -> one-hot (4, L) windows.

Each interval is resized around its centre to SEQ_LEN bp (kipoiseq's anchor="center" rule); rows
are A, C, G, T; N, IUPAC ambiguity codes (read as N) and bases past a chromosome end are all-zero
columns, as the model expects. An interval outside its chromosome is an error naming its row;
windows padded with N, IUPAC codes and all-N windows are counted in warnings (the rules of
grelu_caduceus.predict, which `grelu-caduceus predict` follows too).
"""

from kipoi.data import Dataset
from kipoi.metadata import GenomicRanges

SEQ_LEN = 200


class CaduceusIntervalDl(Dataset):
    def __init__(self, intervals_file, fasta_file, seq_len=SEQ_LEN):
        from grelu_caduceus.predict import IntervalWindows

        self.windows = IntervalWindows(fasta_file, intervals_file, int(seq_len))

    def __len__(self):
        return len(self.windows)

    def __getitem__(self, idx):
        chrom, start, end = self.windows.window(idx)
        return {
            "inputs": self.windows[idx].numpy(),
            "metadata": {"ranges": GenomicRanges(chrom, start, end, str(idx), "*")},
        }
