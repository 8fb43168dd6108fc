"""The demo's stages, each run once per output folder and recorded under ``OUT/stages``.

:class:`DemoRun` holds one run's folder, budget, device, seed and pretrained model (by default the
shipped Caduceus-PS, ``grelu_caduceus.data.pretrained_lm_folder()``); its stage methods return a
result dict that is stored as ``OUT/stages/NAME.json`` and reused when the demo runs again in the
same folder:

* ``mlm_eval``: the pretrained model's masked accuracy on the held-out region against baselines
  from the k-mer counts of its own training DNA (stored beside its weights);
* ``finetune_pretrained``, ``finetune_scratch``: fine-tuning it, and the same architecture from
  scratch, on a bundled labelled task, through :func:`grelu_caduceus.training.build_trainer` and
  :func:`grelu_caduceus.training.fit` (the trainer every training run of the project uses);
* ``own_pretrain``, ``own_mlm_eval``: a short masked-LM pretraining of the demo's own on the demo
  genome's train region (:func:`grelu_caduceus.tasks.mlm.train_mlm`), so that the whole training
  path runs, and its masked accuracy against baselines fitted on the same DNA;
* ``attributions``: input x gradient of the pretrained fine-tune.
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from ..checkpoint_files import load_lightning_checkpoint
from ..core.tokens import onehot_to_ids
from .baselines import KmerContextModel, baselines_from_counts, fit_baselines, ids_to_bases
from .budgets import FINETUNE_TASKS, FinetuneTask, resolve_budget
from .console import log, step_progress
from .masked_eval import MaskedEvalSet, evaluate_masked

# a partial checkpoint left by a run stopped while saving: how to go on
DEMO_HINT = "delete it (or the demo's --out folder) and run the demo again to redo that stage"
RESUME_HINT = "run the same demo command again"  # printed after Ctrl-C
EVAL_BATCH = 16  # held-out windows per masking batch (and forward pass) of the pretrained model's evaluation
# "[n/6]" of each stage's first message (the sixth step is run.py's report)
STEP = {"mlm_eval": 1, "finetune_pretrained": 2, "finetune_scratch": 3, "own_pretrain": 4, "own_mlm_eval": 4,
        "attributions": 5}
N_STEPS = 6


def step(name: str) -> str:
    return f"[{STEP[name]}/{N_STEPS}]"


class DemoRun:
    """One demo run in ``out_dir``; each stage method is idempotent (see the module docstring)."""

    def __init__(self, out_dir, device="auto", budget="default", seed=0, pretrained=None):
        self.budget = resolve_budget(budget)
        self.pretrained = resolve_pretrained(pretrained)
        self.out = Path(out_dir).expanduser().absolute()
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.stage_dir = self.out / "stages"
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self._check_same_settings()
        self.timings: dict[str, float] = {}

    # ---- bookkeeping
    def _check_same_settings(self):
        from ..data.sources import sha256_of
        from ..errors import UserError

        pretrained = {"folder": self.pretrained.name, "weights_sha256": sha256_of(pretrained_weights(self.pretrained))}
        settings = {"budget": asdict(self.budget), "seed": self.seed, "pretrained": pretrained}
        path = self.out / "demo_settings.json"
        if path.exists():
            previous = json.loads(path.read_text())
            if previous != settings:
                was = previous.get("pretrained") or {}
                other_weights = was != pretrained and was.get("folder") == pretrained["folder"]
                raise UserError(
                    f"{self.out} holds a demo run with other settings (budget {previous['budget']['name']!r}, seed "
                    f"{previous['seed']}, pretrained model {was.get('folder')!r}{', other weights' if other_weights else ''})"
                    "; its checkpoints cannot be reused. Use another --out folder, or the same settings to resume it."
                )
        else:
            path.write_text(json.dumps(settings, indent=2))

    def _stage(self, name: str, fn):
        """Run ``fn`` unless the stage already finished; returns (and stores) its result dict."""
        path = self.stage_dir / f"{name}.json"
        if path.exists():
            log.info("%s: already done, reusing %s", name, path.relative_to(self.out))
            return json.loads(path.read_text())
        start = time.perf_counter()
        result = fn()
        result["seconds"] = round(time.perf_counter() - start, 1)
        path.write_text(json.dumps(result, indent=2))
        return json.loads(path.read_text())  # as a rerun reads it (lists, not tuples)

    @property
    def lightning_devices(self):
        """Lightning's devices for self.device: "cpu", 1 (the first GPU) or [N] for cuda:N."""
        if self.device == "cpu":
            return "cpu"
        return [int(self.device.split(":")[1])] if ":" in self.device else 1

    # ---- data
    def own_mlm_datasets(self):
        """Random training windows of the train region; evenly spread windows of the val region."""
        from ..data import GenomeWindowDataset, demo_genome_fasta, demo_genome_regions

        b = self.budget
        fasta = demo_genome_fasta()
        train = GenomeWindowDataset(fasta, b.own_seq_len, regions=demo_genome_regions("train"),
                                    n_random=b.own_max_steps * b.own_batch_size, max_n_frac=0.1)
        val_region = demo_genome_regions("val")
        span = int(val_region.end[0] - val_region.start[0])
        stride = max(b.own_seq_len, (span - b.own_seq_len) // max(1, b.own_val_windows - 1))
        val = GenomeWindowDataset(fasta, b.own_seq_len, regions=val_region, stride=stride, max_n_frac=0.1)
        if len(val) > b.own_val_windows:
            val = torch.utils.data.Subset(val, range(b.own_val_windows))
        return train, val

    def heldout_windows(self, seq_len: int, limit: int | None) -> torch.Tensor:
        """One-hot (n, 4, seq_len): the first ``limit`` (None: all) non-overlapping windows of the
        demo genome's val region, the held-out hg19 chr20:43-44 Mb, for a reported accuracy."""
        from ..data import GenomeWindowDataset, demo_genome_fasta, demo_genome_regions

        windows = GenomeWindowDataset(demo_genome_fasta(), seq_len, regions=demo_genome_regions("val"),
                                      stride=seq_len, max_n_frac=0.1)
        n = len(windows) if limit is None else min(limit, len(windows))
        return torch.stack([windows[i] for i in range(n)])

    def relative(self, path) -> str:
        """``path`` as the stage records hold it: relative to the output folder, so that a run folder
        can be moved (or copied to another machine) and still resume, and its metrics.json names no
        absolute path of the machine it ran on."""
        return str(Path(path).absolute().relative_to(self.out))

    # ---- stage 1: the pretrained model's masked accuracy vs baselines
    def pretrained_summary(self) -> dict:
        """The pretrained model as the records name it: folder, architecture and, for the shipped
        model, MANIFEST.json's record of its training (None for another folder)."""
        from ..core import CaduceusConfig
        from ..data.bundled import BUNDLED_DIR, pretrained_lm_info

        config = CaduceusConfig.from_json_file(self.pretrained / "config.json")
        info = pretrained_lm_info(self.pretrained.name) if self.pretrained.parent == BUNDLED_DIR else None
        return {"folder": self.pretrained.name, "shipped": info is not None, "d_model": config.d_model,
                "n_layer": config.n_layer, "rcps": config.rcps, "training": info and info["training"]}

    def evaluate_pretrained(self) -> dict:
        """Masked accuracy of the pretrained model on non-overlapping held-out windows of
        ``eval_seq_len`` with fixed masks, and of the baselines of its stored k-mer counts (most
        frequent base, k = 1..5) on the same sites of the same inputs."""

        def run():
            from ..core import load_pretrained
            from ..data.bundled import PRETRAINED_LM_COUNTS

            b = self.budget
            summary = self.pretrained_summary()
            log.info(f"{step('mlm_eval')} masked accuracy of the pretrained Caduceus-PS ({summary['folder']}: d_model "
                     f"{summary['d_model']}, {summary['n_layer']} layers) on the held-out region, {b.eval_seq_len} bp "
                     "windows, vs baselines fitted on its training DNA (same windows, masks and inputs)")
            model = load_pretrained(self.pretrained, device=self.device)
            summary["parameters"] = int(sum(p.numel() for p in model.parameters()))
            baselines = baselines_from_counts(KmerContextModel.load(self.pretrained / PRETRAINED_LM_COUNTS))
            eval_set = MaskedEvalSet.build(onehot_to_ids(self.heldout_windows(b.eval_seq_len, b.eval_windows)), EVAL_BATCH)
            result = evaluate_masked(model, eval_set, baselines, EVAL_BATCH, self.device)
            log_accuracy(result)
            return {**result, "seq_len": b.eval_seq_len, "model": summary}

        return self._stage("mlm_eval", run)

    # ---- stages 2 and 3: fine-tuning on a bundled task
    @property
    def task(self) -> FinetuneTask:
        return FINETUNE_TASKS[self.budget.finetune_task]

    def finetune(self, name: str, from_pretrained: bool) -> dict:
        """Fine-tune on the bundled task from the pretrained model (CaduceusPretrainedModel) or, for
        comparison, the same architecture from scratch (CaduceusModel), with the same budget; choose
        between the best-on-validation and the final checkpoints by validation AUROC."""

        def run():
            import pytorch_lightning as pl
            from grelu.lightning import LightningModel

            from ..core import CaduceusConfig
            from ..training import SaveOnInterrupt, build_trainer, fit, run_folder_logger

            b = self.budget
            what = f"from the pretrained {self.pretrained.name}" if from_pretrained else "from scratch (same architecture)"
            log.info(f"{step(name)} fine-tuning Caduceus on {self.task.title} vs GC-matched background {what}")
            pl.seed_everything(self.seed, workers=True)
            train = self.task_dataset("train", b.finetune_train_size)
            val_monitor = self.task_dataset("val", b.finetune_monitor_size)
            if from_pretrained:
                model_params = {"model_type": "CaduceusPretrainedModel", "n_tasks": 1,
                                "pretrained_path": str(self.pretrained), "final_pool_func": b.finetune_pool}
            else:
                architecture = CaduceusConfig.from_json_file(self.pretrained / "config.json").params()
                model_params = {"model_type": "CaduceusModel", "n_tasks": 1, **architecture,
                                "final_pool_func": b.finetune_pool}
            train_params = {"task": "binary", "loss": "bce", "lr": b.finetune_lr, "batch_size": b.finetune_batch_size,
                            "num_workers": 0, "logger": "csv", "devices": self.lightning_devices,
                            "save_dir": str(self.out / name)}
            model = LightningModel(model_params=model_params, train_params=train_params)
            model.data_params = {"train": {"seq_len": 200}, "tasks": {"name": [self.task.name]}}
            ckpt_dir = self.out / name / "checkpoints"
            n_batches = math.ceil(len(train) / b.finetune_batch_size)
            total_steps = b.finetune_epochs * n_batches
            val_every = min(b.finetune_val_every, total_steps)
            last = ckpt_dir / "last.ckpt"
            trainer = build_trainer(
                {**train_params, "max_epochs": b.finetune_epochs, "val_check_interval": val_every, "clip": 1.0},
                checkpoint=dict(dirpath=str(ckpt_dir), filename="best", monitor="val_auroc", mode="max",
                                save_last=True, enable_version_counter=False),
                callbacks=[SaveOnInterrupt(ckpt_dir, RESUME_HINT),
                           step_progress(name, total_steps)],
                logger=run_folder_logger("csv", self.out / name, resuming=last.exists()),
                num_sanity_val_steps=0, enable_model_summary=False, log_every_n_steps=5,
                enable_progress_bar=False,
            )
            fit(trainer, model, model.make_train_loader(train), model.make_test_loader(val_monitor),
                ckpt_path=str(last) if last.exists() else None, corrupt_hint=DEMO_HINT)
            trainer.save_checkpoint(ckpt_dir / "final.ckpt", weights_only=False)
            # Model selection on the monitored val subset: the best validated checkpoint, or the final
            # weights if training ended after the last validation and they score higher.
            candidates, monitor = {}, {}
            callback = trainer.checkpoint_callback
            if callback.best_model_path and Path(callback.best_model_path).exists():
                candidates["best_on_val"] = Path(callback.best_model_path)
                monitor["best_on_val"] = float(callback.best_model_score)
            if trainer.global_step % val_every or not candidates:  # the final weights were not validated
                candidates["final"] = ckpt_dir / "final.ckpt"
                monitor["final"] = self.auroc(candidates["final"], val_monitor)[0]
            chosen = max(monitor, key=monitor.get)
            val_auroc, _, _ = self.auroc(candidates[chosen], self.task_dataset("val", b.eval_size))
            test_auroc, test_probs, test_labels = self.auroc(candidates[chosen], self.task_dataset("test", b.eval_size))
            np.save(self.out / name / "test_probabilities.npy", np.stack([test_probs, test_labels]))
            log.info(f"      {name}: val AUROC {val_auroc:.4f} (checkpoint {chosen}), test AUROC {test_auroc:.4f}")
            return {"checkpoint": self.relative(candidates[chosen]), "chosen": chosen, "val_auroc": val_auroc,
                    "monitor_auroc": monitor, "test_auroc": test_auroc, "steps": int(trainer.global_step),
                    "epochs": b.finetune_epochs, "train_sequences": len(train), "model_type": model_params["model_type"],
                    "initialised_from": self.pretrained.name if from_pretrained else "scratch"}

        return self._stage(name, run)

    def task_split(self, split: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        """Sequences and labels of one split of the task; ``limit`` keeps a class-balanced random subset."""
        from ..data import load_task

        seqs, labels = load_task(self.task.name, split)
        if limit is not None and limit < len(seqs):
            rng = np.random.default_rng(self.seed)
            keep = np.sort(np.concatenate([rng.choice(np.flatnonzero(labels == c), limit // 2, replace=False)
                                           for c in (0.0, 1.0)]))
            seqs, labels = [seqs[i] for i in keep], labels[keep]
        return seqs, labels

    def task_dataset(self, split: str, limit: int | None = None):
        """gReLU LabeledSeqDataset (labels (n, 1, 1)) of one split of the task, see task_split."""
        from grelu.data.dataset import LabeledSeqDataset

        seqs, labels = self.task_split(split, limit)
        return LabeledSeqDataset(seqs, labels=labels[:, None, None], tasks=[self.task.name])

    def load_finetuned(self, path):
        lm = load_lightning_checkpoint(path, hint=DEMO_HINT)
        return lm.to(self.device).eval()

    @torch.no_grad()
    def predict_probs(self, model, dataset) -> tuple[np.ndarray, np.ndarray]:
        """Predicted probabilities and labels, (n,) each, of a LabeledSeqDataset."""
        probs, labels = [], []
        for x, y in torch.utils.data.DataLoader(dataset, batch_size=128):
            probs.append(model(x.to(self.device)).reshape(-1).float().cpu())
            labels.append(y.reshape(-1))
        return torch.cat(probs).numpy(), torch.cat(labels).numpy()

    def auroc(self, checkpoint, dataset) -> tuple[float, np.ndarray, np.ndarray]:
        """(AUROC, probabilities, labels) of a fine-tuned checkpoint on a LabeledSeqDataset."""
        from sklearn.metrics import roc_auc_score

        probs, labels = self.predict_probs(self.load_finetuned(checkpoint), dataset)
        return float(roc_auc_score(labels, probs)), probs, labels

    # ---- stage 4: the demo's own short pretraining
    @property
    def own_pretrain_dir(self) -> Path:
        return self.out / "own_pretrain"

    @property
    def own_mlm_checkpoint(self) -> Path:
        return self.own_pretrain_dir / "checkpoints" / "final.ckpt"

    def own_mlm_train_params(self) -> dict:
        b = self.budget
        return dict(lr=b.own_lr, warmup_steps=b.own_warmup_steps, max_steps=b.own_max_steps,
                    batch_size=b.own_batch_size, val_check_interval=b.own_val_every,
                    checkpoint_every=b.own_val_every, clip=1.0, logger="csv", devices=self.lightning_devices,
                    seed=self.seed, log_every_n_steps=5, save_best=False,
                    progress_bar=False)  # step_progress draws the bar

    def own_pretrain(self) -> dict:
        def run():
            from ..tasks.mlm import MLMLightningModel, train_mlm

            b = self.budget
            layers = f"{b.own_n_layer} layer{'s' if b.own_n_layer > 1 else ''}"
            log.info(f"{step('own_pretrain')} a short pretraining of our own: Caduceus-PS masked LM (d_model "
                     f"{b.own_d_model}, {layers}, {b.own_seq_len} bp windows, batch {b.own_batch_size}, "
                     f"{b.own_max_steps} steps) on the demo genome's train region, device {self.device}")
            train, val = self.own_mlm_datasets()
            model = MLMLightningModel(dict(d_model=b.own_d_model, n_layer=b.own_n_layer, rcps=True),
                                      self.own_mlm_train_params())
            trainer = train_mlm(model, train, val, self.own_pretrain_dir, resume="auto",
                                extra_callbacks=[step_progress("own_pretrain", b.own_max_steps)],
                                resume_hint=RESUME_HINT)
            trainer.save_checkpoint(self.own_mlm_checkpoint, weights_only=False)
            return {"checkpoint": self.relative(self.own_mlm_checkpoint), "steps": int(trainer.global_step),
                    "parameters": int(sum(p.numel() for p in model.model.parameters()))}

        return self._stage("own_pretrain", run)

    def evaluate_own(self, own_pretrain: dict) -> dict:
        """Masked accuracy of the demo's own masked LM and of baselines fitted on the same train
        region (most frequent base, k = 1..4), each pair on the same sites:

        * the headline: non-overlapping held-out windows (``own_eval_windows``) with fixed masks;
        * ``training_val``: the windows and masks of the training-time validation, the sites of the
          ``val_mask_accuracy`` curve, so that the curve is drawn against baselines on its own sites.
        """

        def run():
            from ..tasks.mlm import MLMLightningModel

            b = self.budget
            log.info(f"{step('own_mlm_eval')} its masked accuracy on the held-out region vs baselines fitted on the "
                     "same train region")
            lm = load_lightning_checkpoint(self.out / own_pretrain["checkpoint"], MLMLightningModel, hint=DEMO_HINT)
            model = lm.model.to(self.device)
            baselines = fit_baselines(ids_to_bases(region_ids("train")))
            ids = onehot_to_ids(self.heldout_windows(b.own_seq_len, b.own_eval_windows))
            eval_set = MaskedEvalSet.build(ids, b.own_batch_size, lm.train_params)
            result = evaluate_masked(model, eval_set, baselines, b.own_batch_size, self.device)
            log_accuracy(result)
            _, val = self.own_mlm_datasets()
            val_ids = onehot_to_ids(torch.stack([val[i] for i in range(len(val))]))
            during = evaluate_masked(model, MaskedEvalSet.build(val_ids, b.own_batch_size, lm.train_params), baselines,
                                     b.own_batch_size, self.device)
            result["training_val"] = {k: during[k] for k in ("n_windows", "n_sites", "model_accuracy", "baselines")}
            return result

        return self._stage("own_mlm_eval", run)

    # ---- stage 5: attributions
    def attributions(self, finetune: dict) -> dict:
        def run():
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from grelu.interpret.score import get_attributions
            from grelu.visualize import plot_attributions

            log.info(f"{step('attributions')} input x gradient attributions of held-out {self.task.positive}s (sequence logos)")
            model = self.load_finetuned(self.out / finetune["checkpoint"])
            seqs, _ = self.task_split("test", self.budget.eval_size)
            probs, labels = np.load((self.out / finetune["checkpoint"]).parent.parent / "test_probabilities.npy")
            top = [int(i) for i in np.argsort(-np.where(labels == 1, probs, -np.inf))[: self.budget.n_attributions]]
            chosen = [seqs[i] for i in top]
            device = "cpu" if self.device == "cpu" else 0
            attrs = get_attributions(model, chosen, method="inputxgradient", device=device)  # (n, 4, 200)
            np.save(self.out / "attributions.npy", attrs)
            figures = []
            for rank, (index, attr) in enumerate(zip(top, attrs)):
                # Show the 60 bp around the strongest 20 bp stretch of |attribution|.
                strength = np.convolve(np.abs(attr).sum(0), np.ones(20), mode="valid")
                centre = int(np.argmax(strength)) + 10
                lo = int(np.clip(centre - 30, 0, attr.shape[1] - 60))
                logo = plot_attributions(attr, start_pos=lo, end_pos=lo + 60, figsize=(14, 2), ticks=10,
                                         highlight_centers=[centre], highlight_width=20)
                logo.ax.set_title(f"test {self.task.positive} #{index} (p = {probs[index]:.3f}), positions {lo}-{lo + 60} of 200")
                path = self.out / f"attribution_logo_{rank}.png"
                logo.fig.tight_layout()
                logo.fig.savefig(path, dpi=110)
                plt.close(logo.fig)
                figures.append(path.name)
            return {"method": "inputxgradient", "test_indices": top, "probabilities": [float(probs[i]) for i in top],
                    "figures": figures}

        return self._stage("attributions", run)


def region_ids(split: str) -> torch.Tensor:
    """Token ids of the demo genome's train or val region, (L,)."""
    from ..core.tokens import strings_to_ids
    from ..data import FastaGenome, demo_genome_fasta, demo_genome_regions

    region = demo_genome_regions(split).iloc[0]
    genome = FastaGenome(demo_genome_fasta())
    return strings_to_ids([genome.fetch(region.chrom, int(region.start), int(region.end))])[0]


def log_accuracy(result: dict) -> None:
    lo, hi = result["difference_ci95"]
    log.info(f"      model {result['model_accuracy']:.4f} vs best baseline {result['best_baseline']} "
             f"{result['best_baseline_accuracy']:.4f} on {result['n_sites']:,} masked sites of {result['n_windows']} "
             f"windows (difference {result['difference']:+.4f}, 95% CI {lo:+.4f} to {hi:+.4f})")


def pretrained_weights(folder: Path) -> Path:
    """The weight file of an HF-format folder (the first of core.checkpoint.WEIGHT_FILES present)."""
    from ..core.checkpoint import WEIGHT_FILES

    return next(folder / name for name in WEIGHT_FILES if (folder / name).is_file())


def resolve_pretrained(path) -> Path:
    """The pretrained model's folder: ``path``, or the shipped one when None; a clear error unless it
    has config.json, weights and the k-mer counts of its training DNA."""
    from ..core.checkpoint import WEIGHT_FILES
    from ..data.bundled import PRETRAINED_LM_COUNTS, pretrained_lm_folder
    from ..errors import UserError

    if path is None:
        try:
            return resolve_pretrained(pretrained_lm_folder())
        except FileNotFoundError as err:
            raise UserError(f"{err} Or give the demo --pretrained FOLDER.") from err
    folder = Path(path).expanduser().absolute()
    wants = f"an HF-format Caduceus folder (config.json, {' or '.join(WEIGHT_FILES)}) with the k-mer counts of its " \
            f"training DNA ({PRETRAINED_LM_COUNTS}, see scripts/build_pretrained_lm.py)"
    if not folder.is_dir():
        raise UserError(f"pretrained model {folder} is not a folder: give {wants}.")
    missing = [name for name in ("config.json", PRETRAINED_LM_COUNTS) if not (folder / name).is_file()]
    if not any((folder / name).is_file() for name in WEIGHT_FILES):
        missing.append(" or ".join(WEIGHT_FILES))
    if missing:
        raise UserError(f"pretrained model {folder} lacks {', '.join(missing)}: give {wants}.")
    return folder


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; clear error for an unusable choice."""
    from ..errors import UserError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for a GPU but torch sees none; use --device cpu or auto.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N.")
    return device


__all__ = ["DEMO_HINT", "DemoRun", "region_ids", "resolve_device", "resolve_pretrained"]
