"""`grelu-caduceus vep`: score variants zero-shot with a masked LM, or with a fine-tuned gReLU model.

    grelu-caduceus vep --model mlm.ckpt --variants calls.vcf.gz --fasta hg19.fa.gz --out scores.tsv
    grelu-caduceus vep --finetuned --model ctcf.ckpt --variants calls.vcf --fasta hg19.fa --out scores.tsv
"""

import argparse
import warnings
from pathlib import Path

from . import UserError, add_fasta_option, parse_args, print_caught_warnings


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grelu-caduceus vep",
        description="Score single-base variants. Zero-shot (default): llr = log p(alt) - log p(ref) of a "
        "Caduceus masked LM at the masked variant site, averaged over both strands. --finetuned: alt - ref "
        "predictions of a fine-tuned gReLU model (gReLU's predict_variant_effects).",
    )
    parser.add_argument("--model", required=True, help="masked-LM .ckpt, HF-format folder or hub name (zero-shot), "
                        "or a fine-tuned gReLU .ckpt (with --finetuned); also a training run folder (its best.ckpt, "
                        "else last.ckpt)")
    parser.add_argument("--variants", required=True, help="VCF (.vcf/.vcf.gz) or a TSV/CSV with chrom, pos "
                        "(1-based), ref, alt columns")
    add_fasta_option(parser, "FASTA of the variants' assembly (plain or bgzip)")
    parser.add_argument("--out", required=True, help="output TSV")
    parser.add_argument("--finetuned", action="store_true", help="score with a fine-tuned gReLU model")
    parser.add_argument("--window", type=int, default=None, help="context in bp (zero-shot default 1024; "
                        "fine-tuned default: the checkpoint's training length)")
    parser.add_argument("--no-rc", action="store_true", help="do not average with the reverse-complement strand")
    parser.add_argument("--embedding-distance", action="store_true", help="also report the ref/alt embedding "
                        "distance (zero-shot)")
    parser.add_argument("--on-mismatch", choices=("error", "warn", "drop"), default="error",
                        help="variants whose ref differs from the genome: stop (default), keep with NaN "
                        "scores, or drop")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    from ..data.genome import GenomeDataError
    from ..devices import check_device, lightning_devices

    check_device(args.device, "--device")
    from ..vep import ReferenceMismatchError, VariantInputError, score_variants_finetuned, score_variants_zero_shot

    from ..core.hub import is_hub_name

    for flag, path in (("--model", args.model), ("--variants", args.variants), ("--fasta", args.fasta)):
        if not Path(path).exists() and not (flag == "--model" and is_hub_name(path)):
            raise UserError(f"{flag} {path} does not exist.")
    if args.embedding_distance and args.finetuned:
        raise UserError("--embedding-distance applies to zero-shot scoring only; drop it or --finetuned.")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            if args.finetuned:
                devices = lightning_devices(args.device, "--device")
                table = score_variants_finetuned(args.model, args.variants, args.fasta, seq_len=args.window,
                                                 rc_average=not args.no_rc, batch_size=args.batch_size,
                                                 devices=devices, on_mismatch=args.on_mismatch,
                                                 progress=not args.no_progress)
            else:
                table = score_variants_zero_shot(args.model, args.variants, args.fasta, window=args.window or 1024,
                                                 rc_average=not args.no_rc,
                                                 embedding_distance=args.embedding_distance,
                                                 batch_size=args.batch_size, device=args.device,
                                                 on_mismatch=args.on_mismatch, progress=not args.no_progress)
    except (ReferenceMismatchError, VariantInputError, GenomeDataError, FileNotFoundError) as err:
        raise UserError(str(err)) from err
    except ValueError as err:
        if "checkpoint" in str(err) or "seq_len" in str(err):
            raise UserError(str(err)) from err
        raise
    print_caught_warnings("vep", caught)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(out, sep="\t", index=False)
    print(f"scored {len(table)} variant(s) -> {out}")
    return 0
