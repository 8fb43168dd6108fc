"""Kipoi model of a grelu-caduceus export (written by `grelu-caduceus export-kipoi`).

The code is grelu_caduceus.kipoi.model in the installed grelu-caduceus; weights/ holds this model.
"""

from grelu_caduceus.kipoi.model import CaduceusKipoiModel

__all__ = ["CaduceusKipoiModel"]
