"""``grelu-caduceus predict``: predictions for the intervals of a BED file with a trained checkpoint.

A thin wrapper: the options and the work are in :func:`grelu_caduceus.predict.main`
(``grelu-caduceus predict --help``).
"""

from . import UserError


def main(argv: list[str]) -> int:
    try:
        from ..predict import main as predict_main
    except ModuleNotFoundError as err:
        if err.name != "grelu_caduceus.predict":
            raise
        raise UserError("prediction is not available in this installation (grelu_caduceus.predict is missing); "
                        "use gReLU's LightningModel.predict_on_dataset on a loaded checkpoint meanwhile") from err
    return predict_main(argv)
