"""Kipoi: the export that writes a Kipoi model folder, and the code the folder runs.

* :mod:`.export`: ``export_kipoi`` (``grelu-caduceus export-kipoi``) writes the folder (no Kipoi needed).

Kipoi loads a folder's ``model.py`` and ``dataloader.py`` by file path; in an export both are thin
shims that import the classes defined here, so the code is installed, imported and tested like the
rest of the package:

* :mod:`.inputs`: what ``predict_on_batch`` does to a one-hot batch (no Kipoi needed);
* :mod:`.model`: ``CaduceusKipoiModel`` (a ``kipoi.model.BaseModel``), loads the folder's weights/;
* :mod:`.dataloader`: ``CaduceusIntervalDl`` (a ``kipoi.data.Dataset``), FASTA + BED -> one-hot windows.

``model`` and ``dataloader`` import Kipoi (``pip install 'grelu-caduceus[kipoi]'``); import them
from their modules.
"""

from .inputs import predict_batch, zero_uniform_columns

__all__ = ["predict_batch", "zero_uniform_columns"]
