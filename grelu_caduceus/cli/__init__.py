"""`grelu-caduceus` command line: one sub-command per job, each implemented by a module's main(argv).

    grelu-caduceus demo --out DIR              the end-to-end demo on bundled real DNA
    grelu-caduceus train model=caduceus ...    Hydra-composed training (see configs/)
    grelu-caduceus predict ...                 predictions for a FASTA + BED
    grelu-caduceus vep ...                     variant-effect scores (zero-shot MLM or fine-tuned)
    grelu-caduceus embed ...                   pooled embeddings of BED intervals or variants (.npz)
    grelu-caduceus vep-probe ...               the paper's supervised VEP probe: AUROC by distance to TSS
    grelu-caduceus export-kipoi ...            write a Kipoi model folder from a checkpoint
    grelu-caduceus bench SUITE ...             the suites of benchmarks/run.py (scaling, long_range, ...)
"""

import contextlib
import importlib
import logging
import os
import re
import sys
import warnings

# command -> (module, one-line help); each module defines main(argv: list[str]) -> int | None
COMMANDS = {
    "demo": ("grelu_caduceus.cli.demo", "shipped LM vs baselines, fine-tune vs scratch, interpret (bundled real DNA)"),
    "train": ("grelu_caduceus.cli.train", "train a model from Hydra configs: model=... task=... data=..."),
    "predict": ("grelu_caduceus.cli.predict", "predict a FASTA + BED with a trained checkpoint"),
    "vep": ("grelu_caduceus.cli.vep", "score variants (VCF or table): zero-shot MLM or fine-tuned model"),
    "embed": ("grelu_caduceus.cli.embed", "pooled embeddings of BED intervals (Caduceus, HyenaDNA, gReLU models)"),
    "vep-probe": ("grelu_caduceus.cli.vep_probe", "supervised VEP probe on embeddings: AUROC by distance to TSS"),
    "export-kipoi": ("grelu_caduceus.cli.export_kipoi", "write a Kipoi model folder from a checkpoint"),
    "bench": ("grelu_caduceus.cli.bench", "run a benchmark suite of benchmarks/run.py"),  # + its suites, see usage()
}


from ..errors import InputWarning, UserError, is_user_error  # noqa: F401  (UserError re-exported: the CLI's modules raise it)


@contextlib.contextmanager
def one_line_input_warnings(command: str):
    """Print each InputWarning (what a policy did to odd input, and how often) as one line on stderr,
    like errors; other warnings keep Python's format."""
    shown = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if issubclass(category, InputWarning):
            print(f"grelu-caduceus {command}: warning: {message}", file=sys.stderr)
        else:
            shown(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = shown


def add_fasta_option(parser, help_: str) -> None:
    """The genome option of every command: ``--fasta FASTA`` (documented, required), also accepted as
    ``--genome`` (not listed, so one name is documented)."""
    import argparse

    parser.add_argument("--fasta", default=None, help=help_ + " (required)")
    parser.add_argument("--genome", dest="fasta", default=None, help=argparse.SUPPRESS)


def parse_args(parser, argv):
    """``parser.parse_args(argv)``, with the genome option of :func:`add_fasta_option` required."""
    args = parser.parse_args(argv)
    if getattr(args, "fasta", "") is None:
        parser.error("the following arguments are required: --fasta")
    return args


def print_caught_warnings(command: str, caught) -> None:
    """The UserWarnings a command recorded (``warnings.catch_warnings(record=True)``), each once, as
    one line on stderr in the format of :func:`one_line_input_warnings`."""
    seen = set()
    for warning in caught:
        text = str(warning.message)
        if issubclass(warning.category, UserWarning) and text not in seen:
            seen.add(text)
            print(f"grelu-caduceus {command}: warning: {text}", file=sys.stderr)


def bench_help() -> str:
    """The bench line of the command list, with the suites of benchmarks/run.py's own parser."""
    help_ = COMMANDS["bench"][1]
    try:
        from .bench import load_runner, suite_names

        names = suite_names(load_runner())
    except Exception:  # an installed package without the checkout's benchmarks/
        return help_ + " (in a source checkout)"
    return f"{help_}: {', '.join(names)}" if names else help_


def usage() -> str:
    lines = ["usage: grelu-caduceus COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<14}{bench_help() if name == 'bench' else help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `grelu-caduceus COMMAND --help` for a command's options."]
    return "\n".join(lines)


def use_passive_openmp_waiting() -> None:
    """For this command's own process: passive OpenMP waiting, unless the user set a policy.

    torch's and numba's OpenMP pools hand work to each other many times per step; busy-waiting
    threads of one starve the other (a 2-core training step: 0.62 s passive, 3.8 s busy). OpenMP
    reads the variable when torch loads it, so this only helps before the first ``import torch``.
    """
    if "torch" not in sys.modules:
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")


def reraise_as_user_error(err: Exception):
    """Inside ``except``: raise ``err`` as a UserError (one line on the console, no traceback),
    unless it already is one. For the ValueError / FileNotFoundError that library code raises on
    bad input."""
    if is_user_error(err):
        raise err
    raise UserError(str(err)) from err


# Lightning's console lines and warnings that are tips or deprecation notices about Lightning's own
# internals, not about the user's run (the run folder's messages and every error stay)
NOISE_LINES = (r"^(GPU|TPU|HPU|IPU) available", r"Tip:", r"^You are using a CUDA device",
               r"^`Trainer\(limit_\w+_batches=")
NOISE_WARNINGS = (r".*LeafSpec.*", r".*does not have many workers.*", r".*is smaller than the logging interval.*",
                  r".*Checkpoint directory .* exists and is not empty.*", r".*is deprecated.*",
                  r".*The '\w+_dataloader' does not have many workers.*")
LIGHTNING_LOGGERS = ("pytorch_lightning.utilities.rank_zero", "lightning.pytorch.utilities.rank_zero",
                     "lightning_fabric.utilities.rank_zero")


class _DropNoise(logging.Filter):
    pattern = re.compile("|".join(NOISE_LINES))

    def filter(self, record: logging.LogRecord) -> bool:
        return not self.pattern.search(record.getMessage())


@contextlib.contextmanager
def quiet_console():
    """Drop Lightning's tips and deprecation notices for the length of a command (then restored)."""
    drop = _DropNoise()
    loggers = [logging.getLogger(name) for name in LIGHTNING_LOGGERS]
    for logger in loggers:
        logger.addFilter(drop)
    try:
        with warnings.catch_warnings():
            for pattern in NOISE_WARNINGS:
                warnings.filterwarnings("ignore", message=pattern)
            yield
    finally:
        for logger in loggers:
            logger.removeFilter(drop)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a usage error, like argparse's: usage on stderr, status 2
        print(usage(), file=sys.stderr)
        return 2
    if argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"grelu-caduceus: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    use_passive_openmp_waiting()
    module = importlib.import_module(COMMANDS[command][0])
    try:
        with quiet_console(), one_line_input_warnings(command):
            return int(module.main(rest) or 0)
    except Exception as err:
        if not is_user_error(err):
            raise
        print(f"grelu-caduceus {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grelu-caduceus {command}: interrupted (checkpoints written so far are kept).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
