"""``grelu-caduceus bench SUITE ...``: the benchmark suites of ``benchmarks/run.py``.

The benchmarks (and their data scripts) live in the source repository, not in the installed
package: this command forwards to ``benchmarks/run.py`` of the checkout the package was installed
from (an editable install), and explains what to do when there is none.
"""

import importlib.util
import sys
from pathlib import Path

from . import UserError

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "benchmarks" / "run.py"


def load_runner(path: Path = RUNNER):
    """The ``benchmarks/run.py`` module of the checkout, imported with the repository on sys.path."""
    if not path.is_file():
        raise UserError(
            f"the benchmarks are not part of the installed package ({path} does not exist): clone the "
            "grelu-caduceus repository, install it with `pip install -e .` and run `grelu-caduceus bench` "
            "(or `python benchmarks/run.py`) from the checkout."
        )
    if str(path.parents[1]) not in sys.path:  # run.py imports the `benchmarks` package of the repo
        sys.path.insert(0, str(path.parents[1]))
    spec = importlib.util.spec_from_file_location("grelu_caduceus_benchmarks_run", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(argv: list[str]) -> int:
    runner = load_runner()
    try:
        return int(runner.main(list(argv)) or 0)
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2, message already printed)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            return 1
        return int(stop.code or 0)
