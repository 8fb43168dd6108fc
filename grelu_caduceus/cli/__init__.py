"""`grelu-caduceus` command line: one sub-command per job, each implemented by a module's main(argv).

    grelu-caduceus demo --out DIR              the end-to-end demo on bundled real DNA
    grelu-caduceus train model=caduceus ...    Hydra-composed training (see configs/)
    grelu-caduceus predict ...                 predictions for a FASTA + BED
    grelu-caduceus vep ...                     variant-effect scores (zero-shot MLM or fine-tuned)
    grelu-caduceus export-kipoi ...            write a Kipoi model folder from a checkpoint
    grelu-caduceus bench SUITE ...             benchmarks (scaling, long_range, gpu)
"""

import contextlib
import importlib
import sys
import warnings

# command -> (module, one-line help); each module defines main(argv: list[str]) -> int | None
COMMANDS = {
    "demo": ("grelu_caduceus.demo", "pretrain + fine-tune + interpret on bundled real human DNA"),
    "train": ("grelu_caduceus.cli.train", "train a model from Hydra configs: model=... task=... data=..."),
    "predict": ("grelu_caduceus.cli.predict", "predict a FASTA + BED with a trained checkpoint"),
    "vep": ("grelu_caduceus.cli.vep", "score variants (VCF or table): zero-shot MLM or fine-tuned model"),
    "export-kipoi": ("grelu_caduceus.cli.export_kipoi", "write a Kipoi model folder from a checkpoint"),
    "bench": ("grelu_caduceus.cli.bench", "run a benchmark suite (scaling, long_range, gpu)"),
}


from ..errors import InputWarning, UserError  # noqa: F401  (re-exported: the CLI's modules raise it)


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


def usage() -> str:
    lines = ["usage: grelu-caduceus COMMAND [ARGS]", "", "commands:"]
    lines += [f"  {name:<14}{help_}" for name, (_, help_) in COMMANDS.items()]
    lines += ["", "Run `grelu-caduceus COMMAND --help` for a command's options."]
    return "\n".join(lines)


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage())
        return 0
    command, rest = argv[0], argv[1:]
    if command not in COMMANDS:
        print(f"grelu-caduceus: unknown command {command!r}; choose one of: {', '.join(COMMANDS)}.", file=sys.stderr)
        return 2
    module = importlib.import_module(COMMANDS[command][0])
    try:
        with one_line_input_warnings(command):
            return int(module.main(rest) or 0)
    except UserError as err:
        print(f"grelu-caduceus {command}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"grelu-caduceus {command}: interrupted (checkpoints written so far are kept).", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
