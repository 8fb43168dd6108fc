"""Kipoi model class of a grelu-caduceus export (written by `grelu-caduceus export-kipoi`)."""

import os

from kipoi.model import BaseModel


class CaduceusKipoiModel(BaseModel):
    """Loads weights/ through grelu_caduceus; predict_on_batch: one-hot (B, 4, L) -> (B, n_outputs).

    N may be an all-zero column (this folder's dataloader) or 0.25 in each row (kipoiseq): both are
    treated as the all-zero N the model was trained with.
    """

    def __init__(self, weights="weights"):
        from grelu_caduceus.kipoi_export import load_exported

        self.model = load_exported(os.path.abspath(weights))

    def predict_on_batch(self, x):
        from grelu_caduceus.kipoi_export import predict_batch

        return predict_batch(self.model, x)
