"""``grelu-caduceus predict``: predictions for the intervals of a BED file with a trained checkpoint.

    grelu-caduceus predict --model model.ckpt --fasta genome.fa --bed peaks.bed --out preds.tsv

The work is :func:`grelu_caduceus.predict.predict_intervals`; this module parses the options and
writes the TSV.
"""

import argparse
from pathlib import Path

from . import UserError, add_fasta_option, parse_args

# --conjoin's words -> predict_intervals' / export_kipoi's conjoin argument (inference.CONJOIN_CHOICES)
CONJOIN_WORDS = {"auto": "auto", "yes": True, "true": True, "no": False, "false": False}


def conjoin_arg(value: str):
    """argparse type of ``--conjoin`` (also used by ``export-kipoi``): auto, yes/true or no/false."""
    if value.lower() not in CONJOIN_WORDS:
        raise argparse.ArgumentTypeError(f"use auto, yes or no (got {value!r})")
    return CONJOIN_WORDS[value.lower()]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grelu-caduceus predict",
        description="Predict the intervals of a BED file with a trained grelu-caduceus model; writes a TSV "
        "with one row per interval (chrom, start, end, the BED name if any, window_start, window_end, one column "
        "per output).",
    )
    parser.add_argument("--model", required=True, help="gReLU checkpoint (.ckpt), a training run folder (its "
                        "best.ckpt, else last.ckpt), or an export-kipoi folder")
    add_fasta_option(parser, "genome FASTA (plain or bgzip .fa.gz)")
    parser.add_argument("--bed", required=True, help="intervals, BED (0-based, end-exclusive)")
    parser.add_argument("--out", required=True, help="output TSV path")
    parser.add_argument("--seq-len", type=int, default=None,
                        help="window length (default: the model's training length)")
    parser.add_argument("--conjoin", type=conjoin_arg, default="auto",
                        help="auto (default: conjoin Caduceus-Ph), yes or no")
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu, cuda, cuda:1, ...")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    """``grelu-caduceus predict --model CKPT --fasta FA --bed BED --out TSV``."""
    args = parse_args(build_parser(), argv)
    from ..data.genome import GenomeDataError
    from ..devices import check_device

    check_device(args.device, "--device")
    from ..predict import PredictError, predict_intervals

    try:
        table = predict_intervals(args.model, args.fasta, args.bed, seq_len=args.seq_len, conjoin=args.conjoin,
                                  batch_size=args.batch_size, device=args.device, progress=not args.no_progress)
    except (PredictError, GenomeDataError) as err:
        raise UserError(str(err)) from err
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, sep="\t", index=False)
    n_outputs = len(table.columns) - list(table.columns).index("window_end") - 1
    print(f"wrote {len(table)} prediction{'s' if len(table) != 1 else ''} "
          f"({n_outputs} output{'s' if n_outputs != 1 else ''} per interval) to {out}")
    return 0
