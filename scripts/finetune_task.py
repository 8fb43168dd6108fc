"""Train a small Caduceus-PS classifier on a bundled real task, with a shuffled-label control.

Both runs use gReLU's LightningModel (model_type "CaduceusModel") trained through
grelu_caduceus.training.train_on_dataset on one bundled hg19 chr20 task (train split): CTCF sites
or GM12878 ATAC-seq peaks vs GC-matched background windows,
keep the checkpoint with the best validation AUROC, and report AUROC / average precision on the
held-out test split. The control is the same run with the training labels permuted, so its test
AUROC should be ~0.5; the gap is what the model learned from sequence.

Writes benchmarks/results/finetune_TASK.json and benchmarks/results/finetune_TASK.md.

    python scripts/finetune_task.py --task ctcf     # defaults: ~5 minutes on 2 CPU cores
    python scripts/finetune_task.py --task atac
    python scripts/finetune_task.py --max-steps 40 --out /tmp/smoke   # quick smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import tempfile
import time
import warnings
from pathlib import Path

# torch's and numba's OpenMP pools alternate many times per step; spinning idle threads starve the
# working one on a small machine (must be set before torch is imported)
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402
import torch  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


TITLES = {"ctcf": "CTCF sites", "atac": "GM12878 ATAC-seq peaks"}


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--task", default="ctcf", choices=["ctcf", "atac"], help="bundled task")
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--seq-len", type=int, default=200, help="central bases of each 200 bp window the model sees")
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", type=float, default=5e-3)
    p.add_argument("--max-steps", type=int, default=300, help="training steps per run")
    p.add_argument("--max-minutes", type=float, default=2.2, help="wall-time cap per run (training only)")
    p.add_argument("--val-every", type=int, default=50, help="validate every n training steps")
    p.add_argument("--pool", default="avg", choices=["avg", "max"])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--skip-control", action="store_true", help="train only the real-label model")
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results"), help="folder for finetune_TASK.json/.md")
    return p.parse_args(argv)


def datasets(task: str, seq_len: int, shuffle_train_labels: bool, seed: int):
    from grelu.data.dataset import LabeledSeqDataset

    from grelu_caduceus.data.bundled import load_task

    out = {}
    for split in ("train", "val", "test"):
        seqs, labels = load_task(task, split)
        if split == "train" and shuffle_train_labels:
            labels = np.random.default_rng(seed + 1).permutation(labels)
        out[split] = LabeledSeqDataset(seqs, labels=labels.reshape(-1, 1, 1), tasks=[task], seq_len=seq_len)
    return out


def test_metrics(model, dataset, batch_size: int) -> dict:
    from sklearn.metrics import average_precision_score, roc_auc_score

    from grelu_caduceus.grelu_compat import predict_on_dataset

    preds = predict_on_dataset(model, dataset, devices="cpu", num_workers=0, batch_size=batch_size).ravel()
    labels = dataset.labels.ravel()
    return {"auroc": float(roc_auc_score(labels, preds)), "avg_precision": float(average_precision_score(labels, preds))}


def run(args, shuffled: bool, work_dir: str) -> dict:
    """Train one model; returns its metrics, steps and timings."""
    import pytorch_lightning as pl
    from grelu.lightning import LightningModel
    from pytorch_lightning.callbacks import ModelCheckpoint

    from grelu_caduceus.checkpoint_files import read_checkpoint
    from grelu_caduceus.grelu_compat import load_checkpoint
    from grelu_caduceus.training import train_on_dataset

    pl.seed_everything(args.seed, workers=True)
    data = datasets(args.task, args.seq_len, shuffled, args.seed)
    model = LightningModel(
        model_params={"model_type": "CaduceusModel", "n_tasks": 1, "d_model": args.d_model, "n_layer": args.n_layer,
                      "rcps": True, "final_pool_func": args.pool},
        train_params={"task": "binary", "loss": "bce", "lr": args.lr, "batch_size": args.batch_size,
                      "num_workers": 0, "devices": "cpu"},
    )
    # the CSV logger makes gReLU log val_auroc, which picks the checkpoint
    best = ModelCheckpoint(dirpath=work_dir, filename="best", monitor="val_auroc", mode="max", save_top_k=1)
    start, cpu_start = time.time(), time.process_time()
    trainer = train_on_dataset(
        model, data["train"], data["val"], validate_first=False,
        seed=args.seed, max_steps=args.max_steps, max_epochs=-1, val_check_interval=args.val_every,
        max_time={"seconds": int(args.max_minutes * 60)}, checkpoint=False, callbacks=[best], logger="csv",
        save_dir=work_dir, name="shuffled" if shuffled else "real", enable_progress_bar=False,
        num_sanity_val_steps=0, log_every_n_steps=10,
    )
    train_seconds = time.time() - start
    chosen, chosen_step = model.eval(), int(trainer.global_step)
    chosen_val = test_metrics(model, data["val"], batch_size=4 * args.batch_size)["auroc"]
    if best.best_model_path and float(best.best_model_score) > chosen_val:
        chosen = load_checkpoint(best.best_model_path)
        chosen_val = float(best.best_model_score)
        chosen_step = int(read_checkpoint(best.best_model_path)["global_step"])
    metrics = test_metrics(chosen, data["test"], batch_size=4 * args.batch_size)
    return {
        "shuffled_train_labels": shuffled,
        "steps": int(trainer.global_step),
        "epochs": round(trainer.global_step * args.batch_size / len(data["train"]), 2),
        "best_val_auroc": chosen_val,
        "chosen_step": chosen_step,
        "test": metrics,
        "train_wall_seconds": round(train_seconds, 1),
        "total_wall_seconds": round(time.time() - start, 1),
        "cpu_seconds": round(time.process_time() - cpu_start, 1),
        "n_params": int(sum(p.numel() for p in model.model.parameters())),
    }


def hardware() -> dict:
    cpu = platform.processor() or "unknown"
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "visible_cores": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "load_average_at_start": [round(x, 2) for x in os.getloadavg()], "torch": torch.__version__,
            "python": platform.python_version()}


def reproduce_flags(args: dict) -> str:
    """Command-line flags that give these settings (the output folder left out)."""
    flags = []
    for key, value in args.items():
        if key == "out" or value is False:
            continue
        flag = "--" + key.replace("_", "-")
        flags.append(flag if value is True else f"{flag} {value}")
    return " ".join(flags)


def write_markdown(path: Path, result: dict) -> None:
    a = result["args"]
    rows = [("Caduceus-PS, real labels", result["real"])]
    if result.get("shuffled"):
        rows.append(("same, shuffled training labels", result["shuffled"]))
    lines = [
        f"# Fine-tuning a small Caduceus on the bundled {TITLES[a['task']]} task",
        "",
        f"Caduceus-PS (d_model {a['d_model']}, {a['n_layer']} layers, {result['real']['n_params']:,} parameters, "
        f"{a['pool']} pooling) trained from scratch with gReLU's LightningModel on hg19 chr20 {TITLES[a['task']]} vs "
        f"GC-matched background ({a['seq_len']} bp windows; train / val / test split by 1 Mb blocks). "
        f"Adam lr {a['lr']}, batch {a['batch_size']}, at most {a['max_steps']} steps or {a['max_minutes']} min per "
        f"run; the checkpoint with the best validation AUROC (checked every {a['val_every']} steps) is tested.",
        "",
        "| model | steps (epochs) | best val AUROC | test AUROC | test avg. precision | train time |",
        "|---|---|---|---|---|---|",
    ]
    for name, r in rows:
        lines.append(f"| {name} | {r['steps']} ({r['epochs']}) | {r['best_val_auroc']:.3f} | {r['test']['auroc']:.3f} "
                     f"| {r['test']['avg_precision']:.3f} | {r['train_wall_seconds']:.0f} s |")
    from grelu_caduceus.data import task_baseline

    reference = task_baseline(a["task"])
    if reference:
        lines += ["", f"Reference (bundled manifest): {reference['model']}, val AUROC {reference['val_auroc']:.3f}, "
                  f"test AUROC {reference['test_auroc']:.3f}."]
    h = result["hardware"]
    lines += [
        "",
        f"Hardware: {h['cpu']}, {h['torch_threads']} torch threads ({h['visible_cores']} visible cores), "
        f"load average at start {h['load_average_at_start']}; torch {h['torch']}, Python {h['python']}. "
        f"Seed {a['seed']}. Total wall time {result['total_wall_seconds']:.0f} s.",
        "",
        f"Reproduce: `python scripts/finetune_task.py {reproduce_flags(a)}`.",
        "",
    ]
    path.write_text("\n".join(lines))


def main(argv=None):
    """Run the script; the thread count and warning filters it sets are restored on return."""
    args = parse_args(argv)
    threads = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", ".*does not have many workers.*")
            warnings.filterwarnings("ignore", ".*LeafSpec.*")
            return _main(args)
    finally:
        torch.set_num_threads(threads)


def _main(args):
    import grelu_caduceus  # noqa: F401  (registers CaduceusModel with gReLU)

    start = time.time()
    result = {"args": vars(args), "hardware": hardware()}
    with tempfile.TemporaryDirectory() as work:
        result["real"] = run(args, shuffled=False, work_dir=os.path.join(work, "real"))
        print("real labels:", json.dumps(result["real"]), flush=True)
        if not args.skip_control:
            result["shuffled"] = run(args, shuffled=True, work_dir=os.path.join(work, "shuffled"))
            print("shuffled labels:", json.dumps(result["shuffled"]), flush=True)
    result["total_wall_seconds"] = round(time.time() - start, 1)
    result["hardware"]["load_average_at_end"] = [round(x, 2) for x in os.getloadavg()]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stem = out / f"finetune_{args.task}"
    stem.with_suffix(".json").write_text(json.dumps(result, indent=2) + "\n")
    write_markdown(stem.with_suffix(".md"), result)
    print(f"wrote {stem}.json and {stem}.md")
    return result


if __name__ == "__main__":
    main()
