"""Kipoi dataloader of a grelu-caduceus export (written by `grelu-caduceus export-kipoi`).

The code is grelu_caduceus.kipoi.dataloader in the installed grelu-caduceus; this class only sets
the default window length to this model's input length (weights/model.json seq_len).
"""

from grelu_caduceus.kipoi.dataloader import CaduceusIntervalDl as _IntervalDl

SEQ_LEN = 200


class CaduceusIntervalDl(_IntervalDl):
    def __init__(self, intervals_file, fasta_file, seq_len=SEQ_LEN):
        super().__init__(intervals_file, fasta_file, seq_len)
