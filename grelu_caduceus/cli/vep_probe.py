"""`grelu-caduceus vep-probe`: the Caduceus paper's supervised VEP protocol in one command.

    grelu-caduceus vep-probe --model kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16 \\
        --variants eqtl_labelled.tsv --fasta hg38.fa --tss tss.bed --out probe/ \\
        [--window 16384] [--pool-window 1536] [--test-chroms chr9,chr10] [--classifier logistic]

Embeds the ref and alt windows of each labelled SNV (any model `embed` takes: Caduceus, HyenaDNA,
a gReLU checkpoint, Genentech/enformer-model), fits a linear probe on the training chromosomes
within each distance-to-TSS bucket (0-30 kb, 30-100 kb, 100 kb+) and writes the test AUROC to
probe/auroc.csv and probe/auroc.md (plus predictions.tsv and embeddings.npz).
"""

import argparse
import warnings
from pathlib import Path

from . import UserError, add_fasta_option, parse_args, print_caught_warnings, reraise_as_user_error


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grelu-caduceus vep-probe",
        description="Supervised variant-effect probe on frozen embeddings (the Caduceus paper's protocol): "
        "concat(ref, alt) window embeddings, a linear probe trained on held-in chromosomes, test AUROC by "
        "distance to the nearest TSS.",
    )
    parser.add_argument("--model", required=True, help="Caduceus/HyenaDNA folder or hub name, a gReLU .ckpt, "
                        "Genentech/enformer-model or a local human_state_dict.h5")
    parser.add_argument("--variants", required=True, help="TSV/CSV with chrom, pos (1-based), ref, alt and a 0/1 "
                        "label column (optional: tissue, split = train/test)")
    add_fasta_option(parser, "FASTA of the variants' assembly (plain or bgzip)")
    tss = parser.add_mutually_exclusive_group(required=True)
    tss.add_argument("--tss", help="BED of TSSs (start; end - 1 on the - strand when column 6 is the strand)")
    tss.add_argument("--tss-column", help="column of the variants table holding the distance to the nearest TSS")
    parser.add_argument("--out", required=True, help="output folder")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--tissue-column", default="tissue", help="used as a feature when present (as in the "
                        "paper); 'none' to ignore")
    parser.add_argument("--test-chroms", default="chr9,chr10",
                        help="held-out chromosomes, comma-separated (default chr9,chr10; ignored when the table "
                        "has a split column)")
    parser.add_argument("--window", type=int, default=1536, help="bp the model reads around each variant")
    parser.add_argument("--pool-window", type=int, default=1536, help="bp averaged around the variant (paper: 1536)")
    parser.add_argument("--classifier", choices=("logistic", "linear-svm", "rbf-svm"), default="logistic")
    parser.add_argument("--C", default="0.001,0.01,0.1,1,10", help="inverse regularisation strengths tried, "
                        "chosen by 3-fold CV on the training split")
    parser.add_argument("--strands", choices=("paper", "forward", "conjoined"), default="paper",
                        help="paper: PS symmetric, Ph forward to train and conjoined to test, others forward")
    parser.add_argument("--on-mismatch", choices=("error", "warn", "drop"), default="error")
    parser.add_argument("--revision", default=None, help="hub revision for a hub name")
    parser.add_argument("--trust-pickle", action="store_true", help="allow weight files that need full unpickling")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    return parser


def main(argv=None) -> int:
    args = parse_args(build_parser(), argv)
    from ..core.hub import is_hub_name
    from ..devices import check_device

    check_device(args.device, "--device")
    from ..enformer import is_enformer_reference
    from ..vep_probe import run_vep_probe

    for flag, path in (("--model", args.model), ("--variants", args.variants), ("--fasta", args.fasta),
                       ("--tss", args.tss)):
        if path is None or Path(path).exists() or (flag == "--model" and (is_hub_name(path)
                                                                          or is_enformer_reference(path))):
            continue
        raise UserError(f"{flag} {path} does not exist.")
    try:
        Cs = [float(c) for c in args.C.split(",") if c.strip()]
    except ValueError:
        raise UserError(f"--C takes comma-separated numbers, got {args.C!r}.") from None
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            report = run_vep_probe(
                args.model, args.variants, args.fasta, args.out, tss=args.tss, tss_column=args.tss_column,
                label_column=args.label_column,
                tissue_column=None if args.tissue_column.lower() == "none" else args.tissue_column,
                test_chroms=[c.strip() for c in args.test_chroms.split(",") if c.strip()], window=args.window,
                pool_window=args.pool_window, classifier=args.classifier, Cs=Cs, strands=args.strands,
                on_mismatch=args.on_mismatch, batch_size=args.batch_size, device=args.device, seed=args.seed,
                progress=not args.no_progress, trust_pickle=args.trust_pickle, revision=args.revision)
    except (ValueError, FileNotFoundError) as err:
        reraise_as_user_error(err)
    print_caught_warnings("vep-probe", caught)
    for row in report.metrics.itertuples():
        auroc = f"{row.auroc:.3f}" if row.auroc == row.auroc else f"n/a ({row.note})"
        print(f"  {row.bucket:>9}: AUROC {auroc}  (train {row.n_train}, test {row.n_test})")
    print(f"vep-probe -> {report.files['auroc.md']}, {report.files['auroc.csv']}")
    return 0
