import os
import sys

# The test process is one of our entry points: like the CLI, it asks OpenMP for passive waiting
# before torch starts (torch's and numba's pools otherwise starve each other on 2 cores).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import pytest  # noqa: E402
import torch  # noqa: E402

sys.path.insert(0, os.path.dirname(__file__))
torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))


@pytest.fixture
def rng():
    return torch.Generator().manual_seed(0)


@pytest.fixture(autouse=True)
def torch_seeded():
    """Every test starts from the same torch random state, whatever ran before it (pytest-randomly
    runs the tests in a new order each time and reseeds Python's and numpy's generators likewise)."""
    torch.manual_seed(0)


@pytest.fixture(autouse=True)
def process_settings_unchanged(request):
    """Fail any test after which float32 matmul precision or the thread count differ: a leaked
    "medium" precision makes later float32 results bfloat16 on CPUs with AMX, so later tests would
    pass or fail by their order and by the CPU."""
    from grelu_caduceus.core.precision import precision_state

    before = precision_state(), torch.get_num_threads()
    yield
    after = precision_state(), torch.get_num_threads()
    if after != before:
        from grelu_caduceus.core.precision import restore_precision_state

        restore_precision_state(before[0])
        torch.set_num_threads(before[1])
        pytest.fail(f"{request.node.nodeid} changed process settings: (precision, threads) {before} -> {after}")


@pytest.fixture(scope="module")
def ps_folder(tmp_path_factory):
    """A small released-format Caduceus-PS folder (random weights), one per test module."""
    from helpers import write_checkpoint

    folder = tmp_path_factory.mktemp("ps")
    write_checkpoint(folder, d_model=16, n_layer=2, rcps=True)
    return folder


@pytest.fixture(scope="module")
def ph_folder(tmp_path_factory):
    """A small released-format Caduceus-Ph folder (random weights, another seed than ps_folder)."""
    from helpers import write_checkpoint

    folder = tmp_path_factory.mktemp("ph")
    write_checkpoint(folder, d_model=16, n_layer=2, rcps=False, seed=1)
    return folder


def shipped_pretrained_lm():
    """The shipped pretrained model's folder, or None while it is not built (scripts/build_pretrained_lm.py)."""
    from grelu_caduceus.data.bundled import BUNDLED_DIR, PRETRAINED_LM

    folder = BUNDLED_DIR / PRETRAINED_LM
    return folder if folder.is_dir() else None


def pytest_report_header(config):
    if shipped_pretrained_lm() is None:
        return ("grelu_caduceus/data/bundled/caduceus_ps_chr20 is not built: the demo's tests run on an untrained "
                "stand-in and the shipped-model tests skip (the package ships it: run scripts/build_pretrained_lm.py)")
    return None


@pytest.fixture(scope="session")
def demo_pretrained_folder(tmp_path_factory):
    """The pretrained model the demo's tests run: the shipped one, or an untrained stand-in of the same
    layout while the shipped one is not built (see pytest_report_header)."""
    from helpers import write_demo_pretrained

    return shipped_pretrained_lm() or write_demo_pretrained(tmp_path_factory.mktemp("pretrained") / "stand_in")
