"""`grelu-caduceus embed`: one pooled embedding per BED interval, written to an .npz.

    grelu-caduceus embed --model kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16 \\
        --fasta hg38.fa --bed peaks.bed --out peaks.npz [--window 1024] [--context 0] [--pool mean]

The .npz holds ``embeddings`` (N, H) float32 and the interval columns (chrom, start, end, and
pool_start/pool_end: the region pooled), plus ``model`` and ``strands`` (how strands were combined).

Variant mode: reference and alternate embeddings of a window centred on each SNV:

    grelu-caduceus embed --model M --variants calls.vcf.gz --fasta hg38.fa --out variants.npz \\
        [--window 1024] [--pool-window 1536] [--on-mismatch error|warn|drop] [--indels skip|error]

writes ``ref_embeddings`` and ``alt_embeddings`` (N, H) plus chrom, pos, ref, alt (and the other
variant columns), window_start and pool_start/pool_end.
"""

import argparse
import warnings
from pathlib import Path

from . import UserError, add_fasta_option, parse_args, print_caught_warnings, reraise_as_user_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grelu-caduceus embed",
        description="Pooled embeddings of genomic intervals from Caduceus (folder or hub name), HyenaDNA "
        "(released folder or hub name) or a gReLU checkpoint of our models.",
    )
    parser.add_argument("--model", required=True, help="Caduceus/HyenaDNA folder or hub name, a gReLU .ckpt, "
                        "or a training run folder (its best.ckpt, else last.ckpt)")
    add_fasta_option(parser, "genome FASTA (plain or bgzip)")
    inputs = parser.add_mutually_exclusive_group(required=True)
    inputs.add_argument("--bed", help="intervals (BED: chrom, start, end; 0-based)")
    inputs.add_argument("--variants", help="variant mode: VCF (.vcf/.vcf.gz) or a TSV/CSV with chrom, pos "
                        "(1-based), ref, alt; writes ref_embeddings and alt_embeddings")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--window", type=int, default=None,
                        help="pool over a window of this many bp centred on each interval (default: the "
                        "interval); variant mode: bp the model reads around each variant (default 1024)")
    parser.add_argument("--pool-window", type=int, default=None,
                        help="variant mode: bp pooled around the variant (default: the whole window; the paper "
                        "uses 1536 inside a longer window)")
    parser.add_argument("--on-mismatch", choices=("error", "warn", "drop"), default="error",
                        help="variant mode: ref alleles that differ from the genome: stop naming them (default), "
                        "keep with NaN embeddings, or drop")
    parser.add_argument("--indels", choices=("skip", "error"), default="skip",
                        help="variant mode: non-SNVs are skipped with a counted warning (default) or refused")
    parser.add_argument("--context", type=int, default=0,
                        help="bp of extra sequence each side that the model sees but that is not pooled")
    parser.add_argument("--pool", choices=("mean", "max"), default="mean")
    strands = parser.add_mutually_exclusive_group()
    strands.add_argument("--rc-average", dest="rc_average", action="store_true", default=None,
                         help="average with the reverse-complement pass (default: for Caduceus-Ph and "
                         "models trained conjoined)")
    strands.add_argument("--no-rc-average", dest="rc_average", action="store_false")
    parser.add_argument("--revision", default=None, help="hub revision (branch, tag or commit) for a hub name")
    parser.add_argument("--trust-pickle", action="store_true",
                        help="allow weight files that need full unpickling (only for files you trust)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    from ..core.hub import is_hub_name
    from ..devices import check_device

    check_device(args.device, "--device")
    from ..embed import embed_intervals, load_embedder, save_embeddings

    for flag, path in (("--model", args.model), ("--fasta", args.fasta), ("--bed", args.bed),
                       ("--variants", args.variants)):
        if path is not None and not Path(path).exists() and not (flag == "--model" and is_hub_name(path)):
            raise UserError(f"{flag} {path} does not exist.")
    if args.variants is not None:
        return _variants_main(args)
    if args.pool_window is not None:
        raise UserError("--pool-window applies to variant mode (--variants); for intervals use --window/--context.")
    try:
        embedder = load_embedder(args.model, rc_average=args.rc_average, trust_pickle=args.trust_pickle,
                                 revision=args.revision, device=args.device)
        table, embeddings = embed_intervals(embedder, args.fasta, args.bed, window=args.window,
                                            context=args.context, pool=args.pool, batch_size=args.batch_size,
                                            progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        reraise_as_user_error(err)
    out = save_embeddings(args.out, table, embeddings, model=args.model, strands=embedder.description,
                          pool=args.pool)
    print(f"embedded {len(table)} interval(s), {embeddings.shape[1]} features each ({embedder.description}) -> {out}")
    return 0


def _variants_main(args) -> int:
    from ..embed import load_embedder
    from ..variant_embed import embed_variants, save_variant_embeddings

    if args.context:
        raise UserError("--context applies to intervals; in variant mode --window is what the model reads and "
                        "--pool-window what is pooled.")
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            embedder = load_embedder(args.model, rc_average=args.rc_average, trust_pickle=args.trust_pickle,
                                     revision=args.revision, device=args.device)
            result = embed_variants(embedder, args.variants, args.fasta, window=args.window or 1024,
                                    pool_window=args.pool_window, pool=args.pool, on_mismatch=args.on_mismatch,
                                    indels=args.indels, batch_size=args.batch_size, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        reraise_as_user_error(err)
    print_caught_warnings("embed", caught)
    out = save_variant_embeddings(args.out, result, model=args.model, strands=result.description, pool=args.pool)
    print(f"embedded {len(result.table)} variant(s) (ref and alt), {result.ref.shape[1]} features each "
          f"({result.description}) -> {out}")
    return 0
