"""``grelu-caduceus export-kipoi``: write a Kipoi model folder from a trained checkpoint.

    grelu-caduceus export-kipoi --model model.ckpt --out kipoi_model [--example-fasta FA --example-bed BED]

The work is :func:`grelu_caduceus.kipoi.export.export_kipoi`; this module parses the options.
"""

import argparse

from . import UserError
from .predict import conjoin_arg


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grelu-caduceus export-kipoi",
        description="Write a Kipoi model folder (model.yaml, model.py, dataloader, weights, example files) "
        "for a trained grelu-caduceus checkpoint.",
    )
    parser.add_argument("--model", "--checkpoint", dest="checkpoint", required=True,
                        help="gReLU checkpoint (.ckpt) of one of our models, or a training run folder (its "
                        "best.ckpt, else last.ckpt)")
    parser.add_argument("--out", required=True, help="output folder (new or empty, unless --overwrite)")
    parser.add_argument("--example-fasta", default=None, help="example FASTA (default: real hg19 chr20 slice)")
    parser.add_argument("--example-bed", default=None, help="example BED (with --example-fasta)")
    parser.add_argument("--seq-len", type=int, default=None, help="input length (default: training length)")
    parser.add_argument("--conjoin", type=conjoin_arg, default="auto",
                        help="auto (default: conjoin Caduceus-Ph), yes or no")
    parser.add_argument("--description", default=None, help="text added to the model's info.doc")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing export in --out")
    return parser


def main(argv=None) -> int:
    """``grelu-caduceus export-kipoi --model CKPT --out DIR [--example-fasta FA --example-bed BED]``."""
    args = build_parser().parse_args(argv)
    from ..data.genome import GenomeDataError
    from ..inference import ExportError, PredictError
    from ..kipoi.export import export_kipoi

    try:
        out = export_kipoi(args.checkpoint, args.out, args.example_fasta, args.example_bed, seq_len=args.seq_len,
                           conjoin=args.conjoin, overwrite=args.overwrite, description=args.description)
    except (ExportError, PredictError, GenomeDataError) as err:
        raise UserError(str(err)) from err
    print(f"wrote Kipoi model folder {out}; test it with: cd {out.parent} && kipoi test {out.name} --source dir")
    return 0
