"""`grelu-caduceus embed`: one pooled embedding per BED interval, written to an .npz.

    grelu-caduceus embed --model kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16 \\
        --fasta hg38.fa --bed peaks.bed --out peaks.npz [--window 1024] [--context 0] [--pool mean]

The .npz holds ``embeddings`` (N, H) float32 and the interval columns (chrom, start, end, and
pool_start/pool_end: the region pooled), plus ``model`` and ``strands`` (how strands were combined).
"""

import argparse
from pathlib import Path

from . import UserError


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grelu-caduceus embed",
        description="Pooled embeddings of genomic intervals from Caduceus (folder or hub name), HyenaDNA "
        "(released folder or hub name) or a gReLU checkpoint of our models.",
    )
    parser.add_argument("--model", required=True, help="Caduceus/HyenaDNA folder or hub name, or a gReLU .ckpt")
    parser.add_argument("--fasta", required=True, help="genome FASTA (plain or bgzip)")
    parser.add_argument("--bed", required=True, help="intervals (BED: chrom, start, end; 0-based)")
    parser.add_argument("--out", required=True, help="output .npz")
    parser.add_argument("--window", type=int, default=None,
                        help="pool over a window of this many bp centred on each interval (default: the interval)")
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
    args = build_parser().parse_args(argv)
    from ..core.hub import is_hub_name
    from ..embed import embed_intervals, load_embedder, save_embeddings

    for flag, path in (("--model", args.model), ("--fasta", args.fasta), ("--bed", args.bed)):
        if not Path(path).exists() and not (flag == "--model" and is_hub_name(path)):
            raise UserError(f"{flag} {path} does not exist.")
    try:
        embedder = load_embedder(args.model, rc_average=args.rc_average, trust_pickle=args.trust_pickle,
                                 revision=args.revision, device=args.device)
        table, embeddings = embed_intervals(embedder, args.fasta, args.bed, window=args.window,
                                            context=args.context, pool=args.pool, batch_size=args.batch_size,
                                            progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as err:
        if isinstance(err, UserError):
            raise
        raise UserError(str(err)) from err
    out = save_embeddings(args.out, table, embeddings, model=args.model, strands=embedder.description,
                          pool=args.pool)
    print(f"embedded {len(table)} interval(s), {embeddings.shape[1]} features each ({embedder.description}) -> {out}")
    return 0
