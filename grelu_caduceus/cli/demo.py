"""``grelu-caduceus demo``: the end-to-end job on bundled real human DNA (see :mod:`grelu_caduceus.demo`)."""

from __future__ import annotations

import argparse

from . import UserError


def build_parser() -> argparse.ArgumentParser:
    from ..demo import BUDGETS

    parser = argparse.ArgumentParser(
        prog="grelu-caduceus demo",
        description="Score the shipped pretrained Caduceus-PS masked LM against k-mer baselines on held-out human "
        "DNA (hg19 chr20:43-44 Mb), fine-tune it on a real labelled task (GM12878 ATAC-seq peaks) beside the same "
        "architecture trained from scratch, run a short masked-LM pretraining of its own on bundled DNA, and plot "
        "attributions. Re-running with the same --out resumes and reuses finished stages.",
    )
    parser.add_argument("--out", required=True, help="output folder (metrics.json, report.md, plots, checkpoints)")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="a smoke run of a minute or two with tiny sizes (tests)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default=None,
                        help="run size: quick, default (under 10 min on 2 CPU cores: the README's main job) or "
                        "full (GPU)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--pretrained", default=None, metavar="FOLDER",
                        help="the pretrained model: an HF-format Caduceus folder with the k-mer counts of its training "
                        "DNA (kmer_context_k5.npz); default the shipped caduceus_ps_chr20")
    return parser


def main(argv=None) -> int:
    """``grelu-caduceus demo --out DIR [--quick | --budget NAME] [--device D] [--seed S] [--pretrained FOLDER]``; the
    stage messages go to stdout, the training progress bars to stderr."""
    from ..demo import run_demo
    from ..demo.console import console_messages

    args = build_parser().parse_args(argv)
    if args.quick and args.budget not in (None, "quick"):
        raise UserError(f"--quick and --budget {args.budget} disagree: give one of them.")
    budget = "quick" if args.quick else (args.budget or "default")
    with console_messages():
        run_demo(args.out, device=args.device, budget=budget, seed=args.seed, pretrained=args.pretrained)
    return 0
