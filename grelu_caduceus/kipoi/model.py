"""The Kipoi model class of an export; the folder's model.py imports it (``defined_as: model.CaduceusKipoiModel``)."""

from __future__ import annotations

import os

from kipoi.model import BaseModel

from ..inference import load_exported
from .inputs import predict_batch


class CaduceusKipoiModel(BaseModel):
    """Loads an export's weights/ folder; predict_on_batch: one-hot (B, 4, L) -> (B, n_outputs).

    N may be an all-zero column (the export's dataloader) or 0.25 in each row (kipoiseq): both are
    treated as the all-zero N the model was trained with.

    Args:
        weights: the export's weights/ folder (Kipoi passes model.yaml's ``args.weights``, relative
            to the model folder it runs in).
    """

    def __init__(self, weights="weights"):
        self.model = load_exported(os.path.abspath(weights))

    def predict_on_batch(self, x):
        return predict_batch(self.model, x)
