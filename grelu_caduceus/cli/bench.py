"""``grelu-caduceus bench SUITE ...``: the benchmark suites of ``benchmarks/run.py``.

The benchmarks (and their data scripts) live in the source repository, not in the installed
package: this command forwards to ``benchmarks/run.py`` of the checkout the package was installed
from (an editable install), and explains what to do when there is none. The suites, their help and
their options are run.py's own parser's (so a suite added there appears here without edits), shown
under the name ``grelu-caduceus bench``.
"""

import contextlib
import importlib.util
import sys
from pathlib import Path

from . import UserError

REPO = Path(__file__).resolve().parents[2]
RUNNER = REPO / "benchmarks" / "run.py"
PROG = "grelu-caduceus bench"
RUNNER_COMMAND = ".venv/bin/python benchmarks/run.py"  # how run.py's docstring spells its own command line


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


@contextlib.contextmanager
def _program_name(name: str):
    """argparse names a parser (and its sub-parsers) after sys.argv[0] unless told otherwise."""
    saved = sys.argv[0] if sys.argv else None
    if sys.argv:
        sys.argv[0] = name
    else:
        sys.argv.append(name)
    try:
        yield
    finally:
        if saved is None:
            sys.argv.pop(0)
        else:
            sys.argv[0] = saved


def bench_parser(runner, make_parser=None):
    """run.py's parser (``make_parser``, default ``runner.parser``) as ``grelu-caduceus bench``: its
    usage lines and description name this command."""
    with _program_name(PROG):
        parser = (make_parser or runner.parser)()
    parser.prog = PROG
    if parser.description:
        parser.description = parser.description.replace(RUNNER_COMMAND, PROG)
    return parser


def suite_names(runner) -> list[str]:
    """The suites (sub-commands) of run.py's parser, in its order."""
    import argparse

    parser = bench_parser(runner)
    for action in parser._actions:  # argparse keeps sub-parsers in its (stable) _SubParsersAction
        if isinstance(action, argparse._SubParsersAction):
            return list(action.choices)
    return []


def main(argv: list[str]) -> int:
    runner = load_runner()
    original = runner.parser
    runner.parser = lambda: bench_parser(runner, original)  # run.py's main() parses with it
    try:
        with _program_name(f"{PROG} gpu" if argv[:1] == ["gpu"] else PROG):  # the GPU suite's own parser
            return int(runner.main(list(argv)) or 0)
    except SystemExit as stop:  # argparse: --help (0) or a usage error (2, message already printed)
        if isinstance(stop.code, str):
            print(stop.code, file=sys.stderr)
            return 1
        return int(stop.code or 0)
