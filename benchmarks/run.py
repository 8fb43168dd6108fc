#!/usr/bin/env python
"""Benchmarks: Caduceus vs HyenaDNA vs Enformer.

    .venv/bin/python benchmarks/run.py scaling [--quick] [--device cpu|cuda|auto] [--out DIR]
    .venv/bin/python benchmarks/run.py long_range [--quick] [--out DIR] [--seeds 0 1 2] [--tasks ...] [--contexts ...]
    .venv/bin/python benchmarks/run.py long_range --pretrained caduceus=NAME hyenadna=NAME enformer=NAME [--probe|--finetune]
    .venv/bin/python benchmarks/run.py glrb --task T --data DIR --model M
    .venv/bin/python benchmarks/run.py dnalongbench --task T --data DIR --model M
    .venv/bin/python benchmarks/run.py gpu [ARGS ...]        # benchmarks/gpu_suite.py:main(ARGS)
    .venv/bin/python benchmarks/run.py pretraining [--experiments ntp mlm_tying mlm_rc lm] [--seeds 0 1 2]
                                                   [--only EXPERIMENT/VARIANT/SEED] [--out DIR]
    .venv/bin/python benchmarks/run.py downstream [--models ...] [--inits ...] [--tasks ...] [--seeds ...] [--quick]
                                                  [--export-only] [--out DIR]
    .venv/bin/python benchmarks/run.py report [--results DIR]  # README tables + plots from the CSVs

Suites:
  scaling     forward and forward+backward time and peak memory against sequence length at a
              matched parameter budget (plus Enformer at its published size) -> OUT/scaling.csv
  long_range  tasks whose label depends on distal sequence (synthetic distance / bi-directionality /
              RC probes, real ATAC / CTCF windows with growing context), every model trained with
              the same equal-steps and equal-wall-time budgets and 3 seeds -> OUT/long_range.csv
              (+ long_range_curves.csv, long_range_meta.json); resumable: finished runs are skipped.
              With --pretrained: released checkpoints, probed or fine-tuned on the same cells
              -> OUT/long_range_pretrained.csv (column mode: pretrained_probe / pretrained_finetune)
  glrb        Genomics Long-Range Benchmark task from a local copy: embedding probe, the paper's metric
  dnalongbench  DNALongBench enhancer-target gene / eQTL task from a local copy: embedding probe, AUROC
              (both: benchmarks/suites.py) -> OUT/suites.csv
  gpu         the GPU suite (scan kernels, bandwidth, GPU scaling), see benchmarks/gpu_suite.py
  pretraining the paper's pre-training ablations at small scale (ntp, mlm_tying, mlm_rc) and the
              pretrained LMs of the downstream study (lm), on hg19 chr20 -> OUT/pretraining.csv
              (+ pretraining_curves.csv, pretraining_baselines.csv, pretraining_meta.json);
              resumable (benchmarks/pretraining.py)
  downstream  the pretrained LMs against the same architectures from scratch (trained, fine-tuned, linear
              probe) on the real long-range tasks -> OUT/downstream.csv (+ downstream_meta.json,
              downstream.png); resumable (benchmarks/downstream.py)
  report      regenerate benchmarks/README.md tables and the PNG plots from benchmarks/results/

OUT defaults to benchmarks/results/.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

# OpenMP worker threads (torch's and the numba scan kernels') otherwise spin while waiting; on a
# machine with more busy threads than cores the spinning threads starve the one doing the work
# (measured here: Caduceus forward at 1 kb 3.7 s with spinning vs 0.07 s with passive waits).
# Must be set before torch or numba start their thread pools.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run from a checkout without installing the package
    sys.path.insert(0, str(REPO))

RESULTS = REPO / "benchmarks" / "results"


def log(message: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {message}", flush=True)


def _threads(n):
    import torch

    if n:
        torch.set_num_threads(n)


def cmd_scaling(args) -> int:
    from benchmarks.scaling import run_scaling

    _threads(args.threads)
    path = run_scaling(args.out, quick=args.quick, device=args.device, models=args.models, lengths=args.lengths, log=log)
    log(f"wrote {path}")
    return 0


def cmd_long_range(args) -> int:
    from benchmarks.long_range import run_long_range

    _threads(args.threads)
    if args.pretrained:
        from benchmarks.pretrained import parse_pretrained, run_pretrained

        if args.models:
            raise ValueError("--models does not go with --pretrained: the families come from --pretrained.")
        mode = "pretrained_finetune" if args.finetune else "pretrained_probe"
        path = run_pretrained(args.out, parse_pretrained(args.pretrained), mode=mode, quick=args.quick,
                              seeds=args.seeds, tasks=args.tasks, contexts=args.contexts, data_dir=args.data_dir,
                              log=log, trust_pickle=args.trust_pickle)
        log(f"wrote {path}")
        return 0
    if args.finetune or args.probe:
        raise ValueError("--probe / --finetune need --pretrained caduceus=NAME hyenadna=NAME enformer=NAME.")
    path = run_long_range(args.out, quick=args.quick, seeds=args.seeds, tasks=args.tasks, models=args.models,
                          contexts=args.contexts, data_dir=args.data_dir, log=log)
    log(f"wrote {path}")
    return 0


def cmd_suite(args) -> int:
    from benchmarks.suites import load_dnalongbench, load_glrb, run_suite

    _threads(args.threads)
    if args.suite == "glrb":
        data = load_glrb(args.task, args.data, sequence_length=args.sequence_length, genome=args.genome)
    else:
        data = load_dnalongbench(args.task, args.data, cell_type=args.cell_type, sequence_length=args.sequence_length)
    run_suite(data, args.model, out_dir=args.out, pool_len=args.pool_len, max_train=args.max_train,
              max_test=args.max_test, seed=args.seed, batch_size=args.batch_size, trust_pickle=args.trust_pickle,
              log=log)
    log(f"appended to {args.out / 'suites.csv'}")
    return 0


def cmd_gpu(argv) -> int:
    suite = REPO / "benchmarks" / "gpu_suite.py"
    if not suite.exists():
        print(f"error: {suite} is missing: the GPU suite is not in this checkout.", file=sys.stderr)
        return 1
    from benchmarks import gpu_suite

    return gpu_suite.main(argv) or 0


def cmd_pretraining(args) -> int:
    from benchmarks.pretraining import run_pretraining

    path = run_pretraining(args.out, experiments=args.experiments, seeds=args.seeds, only=args.only,
                           threads=args.threads, data_dir=args.data_dir, log=log)
    log(f"wrote {path}")
    return 0


def cmd_downstream(args) -> int:
    from benchmarks.downstream import downstream_tables, export_pretrained_lms, plot_downstream, run_downstream

    if args.export_only:
        export_pretrained_lms(args.out, models=args.models, log=log)
        return 0
    path = run_downstream(args.out, quick=args.quick, tasks=args.tasks, models=args.models, inits=args.inits,
                          seeds=args.seeds, threads=args.threads, data_dir=args.data_dir, lms_dir=args.lms, log=log)
    log(f"wrote {path} and {plot_downstream(args.out)}")
    print(downstream_tables(args.out))
    return 0


def cmd_report(args) -> int:
    from benchmarks.report import main as report_main

    return report_main(["--results", str(args.results)] + (["--readme", str(args.readme)] if args.readme else []))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="suite", required=True)

    s = sub.add_parser("scaling", help="time and memory against sequence length")
    s.add_argument("--quick", action="store_true", help="short CPU sweep (1k..131k, ~5 min on 2 cores)")
    s.add_argument("--device", default="cpu", choices=["cpu", "cuda", "auto"])
    s.add_argument("--out", type=Path, default=RESULTS, help="output folder (default benchmarks/results)")
    s.add_argument("--models", nargs="+", help="subset of: caduceus hyenadna enformer enformer_published")
    s.add_argument("--lengths", nargs="+", type=int, help="override the sequence lengths")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    s.set_defaults(func=cmd_scaling)

    s = sub.add_parser("long_range", help="train and evaluate on long-range tasks")
    s.add_argument("--quick", action="store_true", help="smoke test: tiny data, few steps (< 1 min)")
    s.add_argument("--out", type=Path, default=RESULTS, help="output folder (default benchmarks/results)")
    s.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0 1 2)")
    s.add_argument("--tasks", nargs="+", help="tasks (default: the grid, long_range.GRID_TASKS; also motif_rc)")
    s.add_argument("--contexts", nargs="+", type=int, help="context lengths (default: 160 288 544)")
    s.add_argument("--models", nargs="+", help="subset of: caduceus hyenadna enformer")
    s.add_argument("--data-dir", type=Path, default=None,
                   help="cache folder of benchmarks/data/prepare.py (default data_cache/ or $GRELU_CADUCEUS_DATA)")
    s.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
    s.add_argument("--pretrained", nargs="+", metavar="FAMILY=NAME",
                   help="released checkpoints (hub names or local folders/files), e.g. caduceus=NAME "
                        "hyenadna=NAME enformer=NAME: probe or fine-tune them on the grid's tasks "
                        "-> OUT/long_range_pretrained.csv (benchmarks/pretrained.py)")
    how = s.add_mutually_exclusive_group()
    how.add_argument("--probe", action="store_true",
                     help="with --pretrained: logistic-regression probe on frozen pooled embeddings (default)")
    how.add_argument("--finetune", action="store_true",
                     help="with --pretrained: fine-tune trunk + linear head with the grid's budgets")
    s.add_argument("--trust-pickle", action="store_true",
                   help="with --pretrained: allow checkpoint files that need full unpickling (trusted files only)")
    s.set_defaults(func=cmd_long_range)

    for name, what in (("glrb", "Genomics Long-Range Benchmark (InstaDeepAI/genomics-long-range-benchmark)"),
                       ("dnalongbench", "DNALongBench (enhancer-target gene, eQTL)")):
        s = sub.add_parser(name, help=f"embedding probe on a task of the {what}, from a local copy")
        s.add_argument("--task", required=True, help="task name (see benchmarks/suites.py)")
        s.add_argument("--data", type=Path, required=True, help="the local copy (see benchmarks/suites.py)")
        s.add_argument("--model", required=True, help="FAMILY=NAME or NAME: a released checkpoint (hub name or path)")
        s.add_argument("--sequence-length", type=int, default=None,
                       help="bp per window (default: the benchmark's own, 100-450 kb)")
        s.add_argument("--pool-len", type=int, default=None, help="average the central bp only (default: all)")
        s.add_argument("--max-train", type=int, default=None, help="subsample the training split")
        s.add_argument("--max-test", type=int, default=None, help="subsample the test split")
        s.add_argument("--seed", type=int, default=0)
        s.add_argument("--batch-size", type=int, default=8)
        s.add_argument("--trust-pickle", action="store_true", help="allow checkpoints that need full unpickling")
        s.add_argument("--threads", type=int, default=0, help="torch CPU threads (default: torch's choice)")
        s.add_argument("--out", type=Path, default=RESULTS, help="folder of suites.csv (default benchmarks/results)")
        if name == "glrb":
            s.add_argument("--genome", type=Path, default=None,
                           help="reference FASTA (default: hg38/hg19.fa[.gz] in DATA, DATA/downloads, DATA/reference_genome)")
        else:
            s.add_argument("--cell-type", default=None, help="eqtl_prediction: the GTEx tissue of the config file")
        s.set_defaults(func=cmd_suite)

    s = sub.add_parser("pretraining", help="the paper's pre-training ablations and the pretrained LMs")
    s.add_argument("--experiments", nargs="+", help="ntp mlm_tying mlm_rc lm (default: the three ablations)")
    s.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0 1 2)")
    s.add_argument("--only", help="one run, EXPERIMENT/VARIANT/SEED (e.g. mlm_rc/caduceus_ps/0)")
    s.add_argument("--out", type=Path, default=RESULTS, help="output folder (default benchmarks/results)")
    s.add_argument("--data-dir", type=Path, default=None,
                   help="cache folder of benchmarks/data/prepare.py (default data_cache/ or $GRELU_CADUCEUS_DATA)")
    s.add_argument("--threads", type=int, default=2,
                   help="torch CPU threads (default 2; rows are identical only at the same count)")
    s.set_defaults(func=cmd_pretraining)

    s = sub.add_parser("downstream", help="pretrained LMs vs from scratch on the real long-range tasks")
    s.add_argument("--models", nargs="+", help="subset of: caduceus_ps caduceus_ph hyenadna")
    s.add_argument("--inits", nargs="+", help="subset of: scratch finetune probe")
    s.add_argument("--tasks", nargs="+", help="subset of: atac_gm12878 ctcf_hg19 rnaseq_dm3")
    s.add_argument("--seeds", nargs="+", type=int, help="seeds (default: 0 1 2)")
    s.add_argument("--quick", action="store_true", help="smoke test: bundled windows at 96 bp, 2 steps, 1 seed")
    s.add_argument("--export-only", action="store_true",
                   help="only write OUT/pretrained_lms/ from OUT/pretraining_runs/lm/*/0/weights.pt")
    s.add_argument("--out", type=Path, default=RESULTS, help="output folder (default benchmarks/results)")
    s.add_argument("--lms", type=Path, default=None,
                   help="folder holding pretrained_lms/ and pretraining_runs/ (default: OUT)")
    s.add_argument("--data-dir", type=Path, default=None,
                   help="cache folder of benchmarks/data/prepare.py (default data_cache/ or $GRELU_CADUCEUS_DATA)")
    s.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    s.set_defaults(func=cmd_downstream)

    s = sub.add_parser("report", help="README tables and plots from the CSVs")
    s.add_argument("--results", type=Path, default=RESULTS)
    s.add_argument("--readme", type=Path, default=None, help="README to update (default benchmarks/README.md)")
    s.set_defaults(func=cmd_report)

    sub.add_parser("gpu", help="the GPU suite (arguments are passed on to benchmarks/gpu_suite.py)")
    return p


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "gpu":  # everything after "gpu" belongs to the GPU suite's own parser
        return cmd_gpu(argv[1:])
    args = parser().parse_args(argv)
    try:
        return args.func(args)
    except ValueError as err:  # a wrong model / task / length: say which and what is allowed
        print(f"error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
