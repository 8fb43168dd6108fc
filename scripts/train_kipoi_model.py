"""Train the small Caduceus-PS model shipped in kipoi_model/ and export it as a Kipoi model folder.

The model is a gReLU ``LightningModel`` around our ``CaduceusModel`` (RC-equivariant PS, pooled
binary head), trained on the bundled CTCF task (``grelu_caduceus.data.bundled.load_task("ctcf")``:
200 bp windows of hg19 chr20, CTCF sites vs GC-matched background, split by 1 Mb blocks). The
checkpoint with the best validation loss is exported with ``grelu_caduceus.kipoi.export.export_kipoi``,
with real example files from the validation region (hg19 chr20:43.3-43.4 Mb), so no example window
was seen in training. CPU only. The committed kipoi_model/ came from the defaults (seed 0): training
took 49 min of wall time on a 2-core machine shared with other jobs (load average about 12), so
well under that on idle cores; the best epoch (4 of 4) has validation AUROC 0.728 and test AUROC 0.700
(the bundled 4-mer logistic-regression baseline: 0.681).

    .venv/bin/python scripts/train_kipoi_model.py                 # writes kipoi_model/
    .venv/bin/python scripts/train_kipoi_model.py --out /tmp/km --epochs 1 --max-train 256 --max-val 128  # smoke run
    .venv/bin/python scripts/train_kipoi_model.py --checkpoint CKPT  # re-export a trained checkpoint
"""

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def parse_args(argv):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default=str(ROOT / "kipoi_model"), help="Kipoi model folder to (over)write")
    p.add_argument("--epochs", type=int, default=4)
    p.add_argument("--d-model", type=int, default=32)
    p.add_argument("--n-layer", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=3e-3)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-train", type=int, default=None, help="use only this many training windows (smoke runs)")
    p.add_argument("--max-val", type=int, default=None, help="use only this many validation windows (smoke runs)")
    p.add_argument("--work-dir", default=None, help="where Lightning writes checkpoints (default: a temp folder)")
    p.add_argument("--checkpoint", default=None, help="skip training: evaluate and export this checkpoint")
    return p.parse_args(argv)


def labelled_dataset(split, limit=None):
    from grelu.data.dataset import LabeledSeqDataset

    from grelu_caduceus.data.bundled import load_task

    seqs, labels = load_task("ctcf", split)
    if limit is not None:
        seqs, labels = seqs[:limit], labels[:limit]
    return LabeledSeqDataset(seqs, labels.reshape(-1, 1, 1), tasks=["ctcf"])


def main(argv=None) -> int:
    args = parse_args(sys.argv[1:] if argv is None else argv)
    import pytorch_lightning as pl
    import torch

    import grelu_caduceus  # noqa: F401  (registers CaduceusModel with gReLU)
    from grelu.lightning import LightningModel

    from grelu_caduceus.checkpoint_files import read_checkpoint
    from grelu_caduceus.data.bundled import manifest
    from grelu_caduceus.grelu_compat import load_checkpoint
    from grelu_caduceus.kipoi.export import export_kipoi

    pl.seed_everything(args.seed, workers=True)
    torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
    val = labelled_dataset("val", args.max_val)
    minutes = None
    if args.checkpoint:
        best = args.checkpoint
    else:
        work = Path(args.work_dir or tempfile.mkdtemp(prefix="kipoi_train_"))
        train = labelled_dataset("train", args.max_train)
        model_params = dict(model_type="CaduceusModel", n_tasks=1, d_model=args.d_model, n_layer=args.n_layer,
                            rcps=True, final_pool_func="avg")
        train_params = dict(task="binary", loss="bce", lr=args.lr, batch_size=args.batch_size,
                            max_epochs=args.epochs, devices="cpu", num_workers=0, logger="csv", save_dir=str(work),
                            checkpoint=True)
        lm = LightningModel(model_params=model_params, train_params=train_params)
        started = time.time()
        trainer = lm.train_on_dataset(train, val)
        minutes = round((time.time() - started) / 60, 1)
        best = trainer.checkpoint_callback.best_model_path  # lowest validation loss

    best_lm = load_checkpoint(best)
    scores = {}
    for split, dataset in (("val", val), ("test", labelled_dataset("test", args.max_val))):
        metrics = best_lm.test_on_dataset(dataset, devices="cpu", batch_size=args.batch_size, num_workers=0)
        # gReLU names them test_*; rename them after the split they were measured on.
        scores[split] = {k.replace("test_", ""): round(float(v), 4) for k, v in metrics.iloc[0].items()}
        scores[split]["n_windows"] = len(dataset)
    trained = best_lm.train_params
    n_params = sum(p.numel() for p in best_lm.model.parameters())
    n_train = (best_lm.data_params.get("train") or {}).get("n_seqs", "?")
    epoch = read_checkpoint(best)["epoch"] + 1
    baseline = manifest()["files"]["ctcf_chr20.tsv.gz"]["baseline"]
    description = (
        f"Caduceus-PS classifier of CTCF binding sites (bundled CTCF task: 200 bp windows of hg19 chr20, "
        f"CTCF sites vs GC-matched background), {n_params:,} parameters, trained from scratch with "
        f"scripts/train_kipoi_model.py: {n_train} training windows, batch {trained['batch_size']}, "
        f"lr {trained['lr']}, checkpoint of epoch {epoch} of {trained['max_epochs']} (lowest validation loss). "
        f"Validation split (1 Mb blocks with block % 5 == 3; used to pick the epoch): AUROC "
        f"{scores['val'].get('auroc')}, accuracy {scores['val'].get('accuracy')}. Test split (block % 5 == 4, "
        f"{scores['test']['n_windows']} windows, never seen): AUROC {scores['test'].get('auroc')}, accuracy "
        f"{scores['test'].get('accuracy')}; the bundled {baseline['model']} baseline reaches test AUROC "
        f"{baseline['test_auroc']}. "
        "A small demonstration model, not a production CTCF predictor."
    )
    out = export_kipoi(best, args.out, overwrite=True, description=description)
    print(json.dumps({"checkpoint": str(best), "out": str(out), "scores": scores, "train_minutes": minutes,
                      "n_params": n_params}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
