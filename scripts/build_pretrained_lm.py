#!/usr/bin/env python
"""Rebuild the pretrained masked LM shipped in grelu_caduceus/data/bundled/caduceus_ps_chr20/.

    .venv/bin/python scripts/build_pretrained_lm.py [--results benchmarks/results] [--check]

1. Pretrains (or resumes, or skips when its row is in RESULTS/pretraining.csv) the benchmark run
   ``benchmarks/pretraining.py`` experiment ``lm``, variant ``caduceus_ps``, seed 0: a
   Caduceus-PS masked LM (d_model 64, 4 layers) on hg19 chr20's train blocks; about 25 minutes
   of 2 CPU cores.
2. Writes its final weights (RESULTS/pretraining_runs/lm/caduceus_ps/0/weights.pt) as an
   HF-format folder (config.json + model.safetensors, ``grelu_caduceus.save_pretrained``).
3. Fits the k-mer context counts (k = 5 bases either side) of the same training DNA into
   kmer_context_k5.npz beside them: the baselines the demo compares the model with.
4. Records data, recipe, steps, tokens, training time, CPU and every file's sha256 under
   ``pretrained.caduceus_ps_chr20`` in grelu_caduceus/data/bundled/MANIFEST.json.

``--check`` only verifies the shipped files' sha256 against the manifest.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grelu_caduceus.data.bundled import BUNDLED_DIR, PRETRAINED_LM, PRETRAINED_LM_COUNTS  # noqa: E402
from grelu_caduceus.data.sources import sha256_of  # noqa: E402

RUN = ("lm", "caduceus_ps", 0)  # benchmarks/pretraining.py experiment, variant, seed
FILES = ("config.json", "model.safetensors", PRETRAINED_LM_COUNTS)


def finished_row(results: Path) -> dict | None:
    """The run's row of RESULTS/pretraining.csv, or None if it has not finished."""
    path = results / "pretraining.csv"
    if not path.exists():
        return None
    with open(path, newline="") as f:
        rows = [r for r in csv.DictReader(f) if (r["experiment"], r["variant"], int(r["seed"])) == RUN]
    return rows[-1] if rows else None


def training_record(row: dict, meta: dict) -> dict:
    """What the run did, from its pretraining.csv row, pretraining_meta.json and the benchmark's recipe."""
    from benchmarks.pretraining import EXPERIMENTS, protocol_of

    experiment, variant, seed = RUN
    arm, protocol = EXPERIMENTS[experiment][variant], protocol_of(experiment)
    assert int(row["steps"]) == protocol.steps and int(row["tokens"]) == protocol.tokens, "row and recipe disagree"
    return {
        "benchmark": f"benchmarks/pretraining.py, experiment {experiment}, variant {variant}, seed {seed}",
        "objective": "masked LM: 15% of positions chosen, 80% [MASK] / 10% random base / 10% kept",
        "steps": protocol.steps,
        "batch_size": protocol.batch_size,
        "seq_len": protocol.seq_len,
        "tokens": protocol.tokens,
        "optimizer": f"AdamW, betas {list(protocol.betas)}, weight decay {protocol.weight_decay} "
                     "(none on biases, norms, A_log and D)",
        "lr": arm.lr,
        "schedule": f"linear warm-up over {protocol.warmup_frac:.0%} of the steps, then cosine decay to {protocol.min_lr}",
        "gradient_clip": protocol.clip,
        "rc_augmentation": arm.rc_aug,
        "precision": "float32",
        "train_seconds": float(row["train_s"]),
        "threads": int(row["threads"]),
        "cpu": meta.get("cpu"),
        "torch": meta.get("torch"),
        # the benchmark's held-out scores (its own fixed masks; all chosen positions, and the [MASK]ed
        # ones where its CSV has them)
        **{key: float(row[key]) if "positions" not in key else int(row[key])
           for key in ("heldout_loss", "heldout_accuracy", "heldout_positions", "heldout_mask_loss",
                       "heldout_mask_accuracy", "heldout_mask_positions") if row.get(key)},
    }


def data_record(genome) -> dict:
    from benchmarks.data.prepare import ITEMS, PACKAGES
    from benchmarks.pretraining import BLOCK, CHROM, EDGE_MARGIN, HELDOUT
    from grelu_caduceus.data import demo_genome_offset, demo_genome_regions

    val = demo_genome_regions("val").iloc[0]
    demo_val = (demo_genome_offset() + int(val.start), demo_genome_offset() + int(val.end))
    assert tuple(HELDOUT) == demo_val, f"held-out {HELDOUT} is not the demo genome's val region {demo_val}"
    source = ITEMS["hg19_chr20"].files[0]
    package = PACKAGES[source.package]
    intervals = genome.train_intervals()
    return {
        "assembly": "hg19 (GRCh37)",
        "chrom": CHROM,
        "source": f"{package.describe()} ({package.filename}), {source.inside}",
        "source_sha256": source.sha256,
        "train_rule": f"the {BLOCK:,} bp blocks with block % 5 in (0, 1, 2) (the bundled tasks' train blocks), "
                      f"minus {EDGE_MARGIN:,} bp (EDGE_MARGIN) beside every val/test block; windows without N",
        "train_intervals": [f"{CHROM}:{a}-{b}" for a, b in intervals],
        "train_acgt_bases": int((genome.train_bases() < 4).sum()),
        "heldout": f"{CHROM}:{HELDOUT[0]}-{HELDOUT[1]} (a task-val block, the demo genome's val region; never "
                   "trained on)",
    }


def build(results: Path, out_dir: Path, data_dir=None, threads: int = 2, log=print) -> dict:
    import torch

    from benchmarks.pretraining import EXPERIMENTS, Chr20, run_dir, run_pretraining
    from grelu_caduceus import save_pretrained
    from grelu_caduceus.demo.baselines import KmerContextModel

    experiment, variant, seed = RUN
    if finished_row(results) is None:
        run_pretraining(results, only=f"{experiment}/{variant}/{seed}", threads=threads, data_dir=data_dir, log=log)
    else:
        log(f"{experiment}/{variant}/{seed}: finished run found in {results / 'pretraining.csv'}")
    row = finished_row(results)
    meta = json.loads((results / "pretraining_meta.json").read_text())
    weights = run_dir(results, experiment, variant, seed) / "weights.pt"
    model = EXPERIMENTS[experiment][variant].build()
    model.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
    params = sum(p.numel() for p in model.parameters())
    assert params == int(row["params"]), f"{weights} has {params} parameters, the run's row {row['params']}"
    folder = out_dir / PRETRAINED_LM
    save_pretrained(model, folder)
    log(f"wrote {folder} ({params:,} parameters)")

    genome = Chr20(data_dir, log=log)
    counts = KmerContextModel(5).fit(genome.train_bases())
    counts.save(folder / PRETRAINED_LM_COUNTS)
    log(f"wrote {folder / PRETRAINED_LM_COUNTS} (largest count {int(counts.counts_table().max()):,})")

    config = model.config
    entry = {
        "description": "Caduceus-PS masked LM pretrained on hg19 chr20's train blocks, HF-format folder "
                       "(grelu_caduceus.load_pretrained); rebuild with scripts/build_pretrained_lm.py",
        "model": {"class": "CaduceusForMaskedLM", "d_model": config.d_model, "n_layer": config.n_layer,
                  "rcps": config.rcps, "parameters": params},
        "data": data_record(genome),
        "training": training_record(row, meta),
        "baselines": {
            "file": PRETRAINED_LM_COUNTS,
            "model": "KmerContextModel(5).fit(the training pieces' bases joined by N): counts of (5 bases "
                     "either side, centre base); lower k summed out of it (KmerContextModel.with_k)",
            "dtype": str(_stored_dtype(folder / PRETRAINED_LM_COUNTS)),
            "largest_count": int(counts.counts_table().max()),
            "counted_positions": int(counts.counts_table().sum()),
        },
        "files": {name: {"sha256": sha256_of(folder / name), "bytes": (folder / name).stat().st_size}
                  for name in FILES},
    }
    manifest_path = out_dir / "MANIFEST.json"
    manifest = json.loads(manifest_path.read_text())
    manifest.setdefault("pretrained", {})[PRETRAINED_LM] = entry
    manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"recorded {PRETRAINED_LM} in {manifest_path}")
    return entry


def _stored_dtype(path: Path):
    import numpy as np

    with np.load(path) as stored:
        return stored["counts"].dtype


def check(out_dir: Path) -> list[str]:
    """Problems of the shipped files against the manifest ([] when every sha256 matches)."""
    entry = json.loads((out_dir / "MANIFEST.json").read_text()).get("pretrained", {}).get(PRETRAINED_LM)
    if entry is None:
        return [f"MANIFEST.json has no pretrained.{PRETRAINED_LM} entry"]
    problems = []
    for name in FILES:
        path = out_dir / PRETRAINED_LM / name
        recorded = entry["files"].get(name, {}).get("sha256")
        if not path.is_file():
            problems.append(f"{path} is missing")
        elif recorded is None:
            problems.append(f"{name} has no sha256 in the manifest")
        elif sha256_of(path) != recorded:
            problems.append(f"{path} does not match the manifest's sha256")
    return problems


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--results", type=Path, default=REPO / "benchmarks" / "results",
                        help="benchmark results folder: pretraining.csv, pretraining_meta.json, pretraining_runs/")
    parser.add_argument("--out", type=Path, default=BUNDLED_DIR, help="bundled data folder (holds MANIFEST.json)")
    parser.add_argument("--data-dir", type=Path, default=None,
                        help="data cache of benchmarks/data/prepare.py (default data_cache/ or $GRELU_CADUCEUS_DATA)")
    parser.add_argument("--threads", type=int, default=2, help="torch threads of the pretraining run")
    parser.add_argument("--check", action="store_true", help="verify the shipped files' sha256 against the manifest")
    args = parser.parse_args(argv)
    if args.check:
        problems = check(args.out)
        print("shipped pretrained model matches the manifest" if not problems else "; ".join(problems))
        return 1 if problems else 0
    build(args.results, args.out, args.data_dir, args.threads)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
