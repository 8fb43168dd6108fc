"""``grelu-caduceus export-kipoi``: write a Kipoi model folder from a trained checkpoint.

A thin wrapper: the options and the work are in :func:`grelu_caduceus.kipoi_export.main`
(``grelu-caduceus export-kipoi --help``).
"""

from . import UserError


def main(argv: list[str]) -> int:
    try:
        from ..kipoi_export import main as export_main
    except ModuleNotFoundError as err:
        if err.name != "grelu_caduceus.kipoi_export":
            raise
        raise UserError("Kipoi export is not available in this installation "
                        "(grelu_caduceus.kipoi_export is missing)") from err
    return export_main(argv)
