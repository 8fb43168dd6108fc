"""`import grelu_caduceus` makes our models visible to gReLU, whatever the import order."""

import subprocess
import sys

import pytest

ORDERS = {
    "plugin first": "import grelu_caduceus, grelu.model.models as m",
    "gReLU first": "import grelu.model.models as m, grelu_caduceus",
    "model module first": "import grelu_caduceus; from grelu_caduceus.models.hyenadna import HyenaDNAModel; "
                          "from grelu_caduceus.models.caduceus import CaduceusModel; import grelu.model.models as m",
    "Caduceus module first": "from grelu_caduceus.models.caduceus import CaduceusModel; import grelu.model.models as m",
    "HyenaDNA module without the package": "import grelu_caduceus.models.hyenadna, grelu.model.models as m",
    "vep first": "import grelu_caduceus.vep, grelu.lightning, grelu.model.models as m",
}


@pytest.mark.parametrize("order", list(ORDERS))
def test_models_registered_in_any_import_order(order):
    code = ORDERS[order] + (
        "\nfor name in ('CaduceusModel', 'CaduceusPretrainedModel', 'HyenaDNAModel'):"
        "\n    assert hasattr(m, name) and getattr(m, name).__name__ == name, name"
        "\nassert not hasattr(m, 'NoSuchModel')"
        "\nprint('ok')"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr[-2000:]


def test_core_import_does_not_import_grelu():
    code = "import sys, grelu_caduceus.core; print('grelu' in sys.modules, 'pytorch_lightning' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "False False", out.stderr[-2000:]


def test_a_model_module_that_imports_grelu_is_registered_once_it_is_defined():
    # grelu_caduceus.models.caduceus imports gReLU before it defines its classes: while it is still
    # being imported they stay lazy; the modules that are complete are registered at once (in vars()).
    code = ("import sys, grelu_caduceus\n"
            "import grelu_caduceus.models.caduceus\n"
            "import grelu.model.models as m\n"
            "eager = sorted(k for k in ('HyenaDNAModel', 'HyenaDNAPretrainedModel') if k in vars(m))\n"
            "lazy_then = m.CaduceusModel is sys.modules['grelu_caduceus.models.caduceus'].CaduceusModel\n"
            "print(eager, lazy_then, 'CaduceusModel' in vars(m))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.stdout.strip() == "['HyenaDNAModel', 'HyenaDNAPretrainedModel'] True True", out.stderr[-2000:]
