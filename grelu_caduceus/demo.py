"""`grelu-caduceus demo`: the end-to-end job on bundled real human DNA (hg19 chr20:40-44 Mb).

1. Pretrain a small RC-equivariant Caduceus-PS masked LM on the train region (first 3 Mb) and
   validate it on the held-out last 1 Mb.
2. Compare its masked accuracy with simple baselines fitted on the train region and scored on the
   same held-out windows, the same masks and the same corrupted inputs: the most frequent base and
   k-mer context models (k bases on each side, k = 1..4).
3. Fine-tune the pretrained backbone (``CaduceusPretrainedModel``) on a bundled labelled task
   (default: GM12878 ATAC-seq peaks, 200 bp windows vs GC-matched background; train/val/test by
   1 Mb blocks of chr20) and, when the budget allows, a from-scratch ``CaduceusModel`` for comparison.
4. Attributions (input x gradient) of held-out positive windows, drawn as sequence logos.
5. ``metrics.json``, ``report.md`` and PNG plots in the output folder.

Every stage records its result under ``OUT/stages``; running again with the same ``--out`` reuses
finished stages and resumes an interrupted pretraining or fine-tuning from its last checkpoint.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from .checkpoint_files import read_checkpoint
from .core.tokens import A_ID, MASK_ID, T_ID, onehot_to_ids

# a partial checkpoint left by a run stopped while saving: how to go on
DEMO_HINT = "delete it (or the demo's --out folder) and run the demo again to redo that stage"
MLM_VAL_MASK_SEED = 10_000  # MLMLightningModel.validation_step masks batch i with seed 10_000 + i


# =========================================================================== fine-tuning tasks
@dataclass(frozen=True)
class FinetuneTask:
    """A bundled labelled task (``grelu_caduceus.data.load_task``) and how the report names it."""

    name: str
    title: str  # e.g. "GM12878 ATAC-seq peaks"
    positive: str  # one positive window, e.g. "ATAC peak"


FINETUNE_TASKS = {
    "atac": FinetuneTask("atac", "GM12878 ATAC-seq peaks", "ATAC peak"),
    "ctcf": FinetuneTask("ctcf", "CTCF binding sites", "CTCF site"),
}


# =========================================================================== budgets
@dataclass(frozen=True)
class DemoBudget:
    """Sizes of one demo run. ``default`` takes ~11 minutes on 2 idle CPU cores."""

    name: str
    # masked-LM pretraining
    d_model: int
    n_layer: int
    seq_len: int
    batch_size: int
    max_steps: int
    lr: float
    warmup_steps: int
    val_windows: int  # held-out windows of seq_len bp, spread evenly over the val region (training-time val)
    eval_windows: int | None  # non-overlapping held-out windows for the reported accuracy (None: whole region)
    val_every: int  # steps between validations during pretraining
    # fine-tuning on a bundled task (see FINETUNE_TASKS)
    finetune_task: str
    finetune_epochs: int
    finetune_lr: float
    finetune_pool: str  # "max" or "avg" over positions
    finetune_batch_size: int
    finetune_train_size: int | None  # None: all training sequences
    finetune_val_every: int  # steps between validations
    finetune_monitor_size: int  # class-balanced val subset watched during fine-tuning
    eval_size: int | None  # sequences of val/test for the reported AUROCs (None: all)
    scratch_comparison: bool
    # interpretation
    n_attributions: int


BUDGETS = {
    "quick": DemoBudget("quick", d_model=32, n_layer=1, seq_len=256, batch_size=8, max_steps=12, lr=3e-3,
                        warmup_steps=3, val_windows=8, eval_windows=16, val_every=6, finetune_epochs=1, finetune_lr=1e-3,
                        finetune_task="atac", finetune_pool="avg", finetune_batch_size=32, finetune_train_size=256, finetune_val_every=4,
                        finetune_monitor_size=64, eval_size=128,
                        scratch_comparison=False, n_attributions=2),
    "default": DemoBudget("default", d_model=64, n_layer=2, seq_len=512, batch_size=16, max_steps=800, lr=3e-3,
                          warmup_steps=40, val_windows=128, eval_windows=None, val_every=200, finetune_epochs=16, finetune_lr=3e-3,
                          finetune_task="atac", finetune_pool="avg", finetune_batch_size=64, finetune_train_size=None, finetune_val_every=18,
                          finetune_monitor_size=400, eval_size=None,
                          scratch_comparison=False, n_attributions=4),
    "full": DemoBudget("full", d_model=128, n_layer=4, seq_len=1024, batch_size=16, max_steps=4000, lr=2e-3,
                       warmup_steps=200, val_windows=128, eval_windows=None, val_every=500, finetune_epochs=4, finetune_lr=5e-4,
                       finetune_task="atac", finetune_pool="avg", finetune_batch_size=32, finetune_train_size=None, finetune_val_every=100,
                       finetune_monitor_size=1000, eval_size=None,
                       scratch_comparison=True, n_attributions=8),
}


def log(message: str) -> None:
    print(f"[demo {time.strftime('%H:%M:%S')}] {message}", flush=True)


@contextlib.contextmanager
def compute_threads(device: str):
    """Use one compute thread on CPU unless OpenMP threads wait passively; yields a description.

    torch's OpenMP pool and the numba scan's pool alternate many times per step; with busy-waiting
    idle threads (OpenMP's default) they starve each other. The ``grelu-caduceus`` command sets
    OMP_WAIT_POLICY=PASSIVE for its own process before torch starts (2 cores, the default
    pretraining step: 1.0 s on one thread, 0.62 s on two with passive waiting, 3.8 s on two with
    busy waiting). The caller's thread counts are restored on exit.
    """
    if device != "cpu":
        yield "GPU"
        return
    if os.environ.get("OMP_WAIT_POLICY", "").upper() == "PASSIVE":
        yield f"{torch.get_num_threads()} threads"
        return
    try:
        import numba
    except ImportError:
        numba = None
    saved = torch.get_num_threads(), numba.get_num_threads() if numba else None
    torch.set_num_threads(1)
    if numba:
        numba.set_num_threads(1)
    try:
        yield "1 thread (set OMP_WAIT_POLICY=PASSIVE before starting to use more)"
    finally:
        torch.set_num_threads(saved[0])
        if numba:
            numba.set_num_threads(saved[1])


class StepProgress:
    """A Lightning callback printing "name: step i/N  loss ...  elapsed / eta" lines every ``every``
    seconds, for logs where an interactive progress bar does not show (built lazily, see make())."""

    @staticmethod
    def make(name: str, total_steps: int, every: float = 30.0):
        import pytorch_lightning as pl

        class _Progress(pl.Callback):
            def __init__(self):
                self.start, self.last = None, 0.0

            def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
                now = time.perf_counter()
                if self.start is None:
                    self.start, self.first_step = now, trainer.global_step
                    return
                if now - self.last < every and trainer.global_step < total_steps:
                    return
                self.last = now
                done = trainer.global_step - self.first_step
                rate = done / max(now - self.start, 1e-9)
                eta = (total_steps - trainer.global_step) / max(rate, 1e-9)
                metrics = {k: float(v) for k, v in trainer.callback_metrics.items() if k in
                           ("train_loss", "train_loss_step", "val_loss", "val_accuracy", "val_auroc")}
                shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
                log(f"      {name}: step {trainer.global_step}/{total_steps}  {shown}  "
                    f"({rate:.2f} steps/s, eta {eta:.0f} s)")

        return _Progress()


# =========================================================================== baselines
def ids_to_bases(ids) -> np.ndarray:
    """Token ids (any shape) -> int64 base codes 0..3 for A, C, G, T and 4 for anything else
    (N, [MASK], special tokens)."""
    ids = torch.as_tensor(ids)
    bases = torch.where((ids >= A_ID) & (ids <= T_ID), ids - A_ID, torch.full_like(ids, 4))
    return bases.cpu().numpy().astype(np.int64)


class MostFrequentBase:
    """Predicts the base most frequent in the training sequence, everywhere."""

    name = "most_frequent_base"

    def fit(self, bases: np.ndarray) -> "MostFrequentBase":
        self.best = int(np.bincount(bases[bases < 4], minlength=4).argmax())
        return self

    def predict(self, inputs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.best, dtype=np.int64)


class KmerContextModel:
    """Predicts a base from the k bases on each side, by counts over the training sequence.

    ``predict`` sees the same corrupted input as the language model: a neighbour that is [MASK]
    or N is unknown and is summed out of the count table (the Bayes-optimal use of the counts);
    a neighbour replaced by a random base is taken as it reads, as the model must.
    """

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        self.k = k
        self.name = f"kmer_context_k{k}"
        self._tables: dict[int, np.ndarray] = {}

    @property
    def offsets(self) -> list[int]:
        return list(range(-self.k, 0)) + list(range(1, self.k + 1))

    def fit(self, bases: np.ndarray) -> "KmerContextModel":
        """bases: int codes (L,), 4 = N. Counts of (context, centre) over every clean window."""
        k, L = self.k, len(bases)
        centre = bases[k : L - k]
        ok = centre < 4
        code = np.zeros(L - 2 * k, np.int64)
        for off in self.offsets:
            neighbour = bases[k + off : L - k + off]
            ok &= neighbour < 4
            code = code * 4 + np.minimum(neighbour, 3)
        counts = np.bincount(code[ok] * 4 + centre[ok], minlength=4 ** (2 * k + 1)).astype(np.float64)
        # A tiny prior breaks ties (unseen contexts) towards the overall most frequent base.
        prior = np.bincount(bases[bases < 4], minlength=4) / max(1, int((bases < 4).sum()))
        self.counts = counts.reshape((4,) * (2 * k) + (4,)) + 1e-6 * prior
        self._tables = {}
        return self

    def _argmax_table(self, unknown_pattern: int) -> np.ndarray:
        """Most likely centre base for every context, with the unknown neighbours summed out."""
        if unknown_pattern not in self._tables:
            axes = tuple(i for i in range(2 * self.k) if unknown_pattern >> i & 1)
            self._tables[unknown_pattern] = self.counts.sum(axis=axes, keepdims=True).argmax(-1)
        return self._tables[unknown_pattern]

    def predict(self, inputs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """inputs: base codes (B, L) as the model saw them (4 = unknown); rows, cols: the sites."""
        L = inputs.shape[1]
        neighbours = np.stack([np.where((cols + off >= 0) & (cols + off < L),
                                        inputs[rows, np.clip(cols + off, 0, L - 1)], 4) for off in self.offsets], 1)
        unknown = neighbours >= 4  # (n, 2k)
        pattern = (unknown * (1 << np.arange(2 * self.k))).sum(1)
        prediction = np.empty(len(rows), np.int64)
        for p in np.unique(pattern):
            sel = pattern == p
            index = tuple(np.where(unknown[sel, i], 0, neighbours[sel, i]) for i in range(2 * self.k))
            prediction[sel] = self._argmax_table(int(p))[index].reshape(-1)
        return prediction


# =========================================================================== masked evaluation
@dataclass
class MaskedEvalSet:
    """Held-out windows with fixed masks: exactly the masks of MLMLightningModel's validation.

    ids, inputs: (n, L) token ids before / after masking; labels: (n, L), -100 where not chosen.
    """

    ids: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def build(cls, ids: torch.Tensor, batch_size: int, mask_prob=0.15, replace_mask=0.8, replace_random=0.1):
        from .tasks.mlm import mask_tokens

        inputs, labels = [], []
        for batch_idx, start in enumerate(range(0, len(ids), batch_size)):
            g = torch.Generator().manual_seed(MLM_VAL_MASK_SEED + batch_idx)
            x, y = mask_tokens(ids[start : start + batch_size], mask_prob, replace_mask, replace_random, g)
            inputs.append(x)
            labels.append(y)
        return cls(ids, torch.cat(inputs), torch.cat(labels))

    def sites(self, hidden_only: bool) -> tuple[np.ndarray, np.ndarray]:
        """(rows, cols) of the scored positions: the [MASK]ed ones (hidden_only) or all chosen."""
        chosen = self.labels >= 0
        if hidden_only:
            chosen &= self.inputs == MASK_ID
        rows, cols = np.nonzero(chosen.numpy())
        return rows, cols

    def targets(self, rows, cols) -> np.ndarray:
        return ids_to_bases(self.labels[rows, cols])


@torch.no_grad()
def model_predictions(model, inputs: torch.Tensor, batch_size: int, device) -> np.ndarray:
    """Argmax base (0..3) of a masked LM over A,C,G,T at every position: (n, L) int64."""
    model.eval()
    out = []
    for start in range(0, len(inputs), batch_size):
        logits = model(inputs[start : start + batch_size].to(device))
        out.append(logits[..., A_ID : T_ID + 1].argmax(-1).cpu())
    return torch.cat(out).numpy().astype(np.int64)


def evaluate_masked(model, eval_set: MaskedEvalSet, baselines: list, batch_size: int, device) -> dict:
    """Accuracies of the model and of each baseline on the same sites and the same inputs.

    Headline numbers are over [MASK]ed sites (the hidden bases). ``*_all_chosen`` numbers are over
    all chosen sites (also the 10% kept and 10% random ones, as in the training-time metric); there
    the baselines copy the site's own input base when it shows one, as the model can.
    """
    predictions = model_predictions(model, eval_set.inputs, batch_size, device)
    seen = ids_to_bases(eval_set.inputs)
    clean = ids_to_bases(eval_set.ids)
    result = {"baselines": {}, "baselines_all_chosen": {}, "baselines_clean_context": {}}
    for hidden_only, suffix in ((True, ""), (False, "_all_chosen")):
        rows, cols = eval_set.sites(hidden_only)
        y = eval_set.targets(rows, cols)
        result["n_sites" + suffix] = int(len(y))
        result["model_accuracy" + suffix] = float((predictions[rows, cols] == y).mean())
        for baseline in baselines:
            pred = baseline.predict(seen, rows, cols)
            if not hidden_only:
                shown = seen[rows, cols] < 4
                pred = np.where(shown, seen[rows, cols], pred)
            result["baselines" + suffix][baseline.name] = float((pred == y).mean())
    rows, cols = eval_set.sites(True)
    y = eval_set.targets(rows, cols)
    for baseline in baselines:  # for reference only: neighbours the model never sees uncorrupted
        result["baselines_clean_context"][baseline.name] = float((baseline.predict(clean, rows, cols) == y).mean())
    best = max(result["baselines"], key=result["baselines"].get)
    result["best_baseline"], result["best_baseline_accuracy"] = best, result["baselines"][best]
    best_model = next(bl for bl in baselines if bl.name == best)
    model_right = predictions[rows, cols] == y
    baseline_right = best_model.predict(seen, rows, cols) == y
    result["difference"] = float(model_right.mean() - baseline_right.mean())
    result["difference_ci95"] = paired_bootstrap_ci(model_right, baseline_right, rows, len(eval_set.ids))
    return result


def paired_bootstrap_ci(a_right: np.ndarray, b_right: np.ndarray, groups: np.ndarray, n_groups: int,
                        n_boot: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% interval of accuracy(a) - accuracy(b) over the same sites, resampling whole windows.

    a_right, b_right: (n,) bool, site correct; groups: (n,) window index of each site. Windows are
    resampled rather than sites because neighbouring sites are correlated.
    """
    diff = np.bincount(groups, weights=a_right.astype(np.float64) - b_right, minlength=n_groups)
    count = np.bincount(groups, minlength=n_groups).astype(np.float64)
    pick = np.random.default_rng(seed).integers(0, n_groups, (n_boot, n_groups))
    boot = diff[pick].sum(1) / np.maximum(count[pick].sum(1), 1)
    lo, hi = np.percentile(boot, [2.5, 97.5])
    return float(lo), float(hi)


# =========================================================================== the demo
class DemoRun:
    """One demo run in ``out_dir``; each stage method is idempotent (see the module docstring)."""

    def __init__(self, out_dir, device="auto", budget="default", seed=0):
        from .errors import UserError

        if isinstance(budget, str):
            if budget not in BUDGETS:
                raise UserError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}.")
            budget = BUDGETS[budget]
        self.budget = budget
        self.out = Path(out_dir).expanduser().absolute()
        self.device = resolve_device(device)
        self.seed = int(seed)
        self.stage_dir = self.out / "stages"
        self.stage_dir.mkdir(parents=True, exist_ok=True)
        self._check_same_settings()
        self.timings: dict[str, float] = {}

    # ---- bookkeeping
    def _check_same_settings(self):
        from .errors import UserError

        settings = {"budget": asdict(self.budget), "seed": self.seed}
        path = self.out / "demo_settings.json"
        if path.exists():
            previous = json.loads(path.read_text())
            if previous != settings:
                raise UserError(
                    f"{self.out} holds a demo run with other settings (budget {previous['budget']['name']!r}, seed "
                    f"{previous['seed']}); its checkpoints cannot be reused. Use another --out folder, or the same "
                    "budget and seed to resume it."
                )
        else:
            path.write_text(json.dumps(settings, indent=2))

    def _stage(self, name: str, fn):
        """Run ``fn`` unless the stage already finished; returns (and stores) its result dict."""
        path = self.stage_dir / f"{name}.json"
        if path.exists():
            log(f"{name}: already done, reusing {path.relative_to(self.out)}")
            return json.loads(path.read_text())
        start = time.perf_counter()
        result = fn()
        result["seconds"] = round(time.perf_counter() - start, 1)
        path.write_text(json.dumps(result, indent=2))
        return result

    @property
    def lightning_devices(self):
        """Lightning's devices for self.device: "cpu", 1 (the first GPU) or [N] for cuda:N."""
        if self.device == "cpu":
            return "cpu"
        return [int(self.device.split(":")[1])] if ":" in self.device else 1

    # ---- data
    def genome_ids(self, split: str) -> torch.Tensor:
        """Token ids of the demo genome's train or val region, (L,)."""
        from .core.tokens import strings_to_ids
        from .data import FastaGenome, demo_genome_fasta, demo_genome_regions

        region = demo_genome_regions(split).iloc[0]
        genome = FastaGenome(demo_genome_fasta())
        return strings_to_ids([genome.fetch(region.chrom, int(region.start), int(region.end))])[0]

    def mlm_datasets(self):
        """Random training windows of the train region; evenly spread windows of the val region."""
        from .data import GenomeWindowDataset, demo_genome_fasta, demo_genome_regions

        b = self.budget
        fasta = demo_genome_fasta()
        train = GenomeWindowDataset(fasta, b.seq_len, regions=demo_genome_regions("train"),
                                    n_random=b.max_steps * b.batch_size, max_n_frac=0.1)
        val_region = demo_genome_regions("val")
        span = int(val_region.end[0] - val_region.start[0])
        stride = max(b.seq_len, (span - b.seq_len) // max(1, b.val_windows - 1))
        val = GenomeWindowDataset(fasta, b.seq_len, regions=val_region, stride=stride, max_n_frac=0.1)
        if len(val) > b.val_windows:
            val = torch.utils.data.Subset(val, range(b.val_windows))
        return train, val

    def eval_windows(self) -> torch.Tensor:
        """One-hot (n, 4, seq_len) non-overlapping windows of the val region for the reported accuracy."""
        from .data import GenomeWindowDataset, demo_genome_fasta, demo_genome_regions

        b = self.budget
        windows = GenomeWindowDataset(demo_genome_fasta(), b.seq_len, regions=demo_genome_regions("val"),
                                      stride=b.seq_len, max_n_frac=0.1)
        n = len(windows) if b.eval_windows is None else min(b.eval_windows, len(windows))
        return torch.stack([windows[i] for i in range(n)])

    # ---- stage 1: pretraining
    @property
    def pretrain_dir(self) -> Path:
        return self.out / "pretrain"

    @property
    def mlm_checkpoint(self) -> Path:
        return self.pretrain_dir / "checkpoints" / "final.ckpt"

    def mlm_train_params(self) -> dict:
        b = self.budget
        return dict(lr=b.lr, warmup_steps=b.warmup_steps, max_steps=b.max_steps, batch_size=b.batch_size,
                    val_check_interval=b.val_every, checkpoint_every=b.val_every, clip=1.0, logger="csv",
                    devices=self.lightning_devices, seed=self.seed, log_every_n_steps=5, save_best=False,
                    progress_bar=sys.stderr.isatty())

    def pretrain(self) -> dict:
        def run():
            from .tasks.mlm import MLMLightningModel, train_mlm

            b = self.budget
            log(f"[1/5] pretraining a Caduceus-PS masked LM (d_model {b.d_model}, {b.n_layer} layers, {b.seq_len} bp "
                f"windows, batch {b.batch_size}, {b.max_steps} steps) on the demo genome's train region, device "
                f"{self.device}")
            train, val = self.mlm_datasets()
            model = MLMLightningModel(dict(d_model=b.d_model, n_layer=b.n_layer, rcps=True), self.mlm_train_params())
            trainer = train_mlm(model, train, val, self.pretrain_dir, resume="auto",
                                extra_callbacks=[StepProgress.make("pretrain", b.max_steps)],
                                resume_hint="run the same demo command again")
            trainer.save_checkpoint(self.mlm_checkpoint, weights_only=False)
            return {"checkpoint": str(self.mlm_checkpoint), "steps": int(trainer.global_step),
                    "parameters": int(sum(p.numel() for p in model.model.parameters()))}

        return self._stage("pretrain", run)

    # ---- stage 2: masked accuracy vs baselines
    def evaluate_mlm(self, pretrain: dict) -> dict:
        def run():
            from .tasks.mlm import MLMLightningModel

            b = self.budget
            log("[2/5] masked accuracy on the held-out region vs baselines (same windows, masks and inputs)")
            windows = self.eval_windows()
            eval_set = MaskedEvalSet.build(onehot_to_ids(windows), b.batch_size)
            train_bases = ids_to_bases(self.genome_ids("train"))
            baselines = [MostFrequentBase().fit(train_bases)] + [KmerContextModel(k).fit(train_bases) for k in (1, 2, 3, 4)]
            model = read_checkpoint(pretrain["checkpoint"], lambda p: MLMLightningModel.load_from_checkpoint(
                p, map_location="cpu", weights_only=False), hint=DEMO_HINT).model.to(self.device)
            result = evaluate_masked(model, eval_set, baselines, b.batch_size, self.device)
            lo, hi = result["difference_ci95"]
            log(f"      model {result['model_accuracy']:.4f} vs best baseline {result['best_baseline']} "
                f"{result['best_baseline_accuracy']:.4f} on {result['n_sites']} masked sites of {len(windows)} windows "
                f"(difference {result['difference']:+.4f}, 95% CI {lo:+.4f} to {hi:+.4f})")
            result["n_windows"] = len(windows)
            return result

        return self._stage("mlm_eval", run)

    # ---- stage 3: fine-tuning on a bundled task
    @property
    def task(self) -> FinetuneTask:
        return FINETUNE_TASKS[self.budget.finetune_task]

    def finetune(self, name: str, pretrained_checkpoint: str | None) -> dict:
        """Fine-tune on the bundled task from the masked-LM checkpoint (or from scratch if None);
        choose between the last and the best-on-validation checkpoints by validation AUROC."""

        def run():
            import pytorch_lightning as pl
            from grelu.lightning import LightningModel

            from .training import SaveOnInterrupt, build_trainer, fit, run_folder_logger

            b = self.budget
            what = "from the pretrained masked LM" if pretrained_checkpoint else "from scratch (comparison)"
            log(f"[3/5] fine-tuning Caduceus on {self.task.title} vs GC-matched background {what}")
            pl.seed_everything(self.seed, workers=True)
            train = self.task_dataset("train", b.finetune_train_size)
            val_monitor = self.task_dataset("val", b.finetune_monitor_size)
            if pretrained_checkpoint:
                model_params = {"model_type": "CaduceusPretrainedModel", "n_tasks": 1,
                                "pretrained_path": str(pretrained_checkpoint), "final_pool_func": b.finetune_pool}
            else:
                model_params = {"model_type": "CaduceusModel", "n_tasks": 1, "d_model": b.d_model,
                                "n_layer": b.n_layer, "rcps": True, "final_pool_func": b.finetune_pool}
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
                callbacks=[SaveOnInterrupt(ckpt_dir, "run the same demo command again"),
                           StepProgress.make(name, total_steps)],
                logger=run_folder_logger("csv", self.out / name, resuming=last.exists()),
                num_sanity_val_steps=0, enable_model_summary=False, log_every_n_steps=5,
                enable_progress_bar=sys.stderr.isatty(),
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
            log(f"      {name}: val AUROC {val_auroc:.4f} (checkpoint {chosen}), test AUROC {test_auroc:.4f}")
            return {"checkpoint": str(candidates[chosen]), "chosen": chosen, "val_auroc": val_auroc,
                    "monitor_auroc": monitor, "test_auroc": test_auroc, "steps": int(trainer.global_step),
                    "train_sequences": len(train), "model_type": model_params["model_type"]}

        return self._stage(name, run)

    def task_split(self, split: str, limit: int | None = None) -> tuple[list[str], np.ndarray]:
        """Sequences and labels of one split of the task; ``limit`` keeps a class-balanced random subset."""
        from .data import load_task

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
        from grelu.lightning import LightningModel

        lm = read_checkpoint(path, lambda p: LightningModel.load_from_checkpoint(p, map_location="cpu",
                                                                                weights_only=False), hint=DEMO_HINT)
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

    # ---- stage 4: attributions
    def attributions(self, finetune: dict) -> dict:
        def run():
            import matplotlib

            matplotlib.use("Agg")
            import matplotlib.pyplot as plt
            from grelu.interpret.score import get_attributions
            from grelu.visualize import plot_attributions

            log(f"[4/5] input x gradient attributions of held-out {self.task.positive}s (sequence logos)")
            model = self.load_finetuned(finetune["checkpoint"])
            seqs, _ = self.task_split("test", self.budget.eval_size)
            probs, labels = np.load(Path(finetune["checkpoint"]).parent.parent / "test_probabilities.npy")
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


def resolve_device(device: str) -> str:
    """"auto" -> "cuda" when a GPU is visible, else "cpu"; clear error for an unusable choice."""
    from .errors import UserError

    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UserError(f"--device {device} asked for a GPU but torch sees none; use --device cpu or auto.")
    if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
        raise UserError(f"unknown device {device!r}; use auto, cpu, cuda or cuda:N.")
    return device


# =========================================================================== plots and report
def read_csv_log(path: Path):
    """A Lightning CSVLogger metrics.csv as a DataFrame (None if missing)."""
    import pandas as pd

    return pd.read_csv(path) if path.exists() else None


def _series(frame, column):
    if frame is None or column not in frame:
        return None
    rows = frame[["step", column]].dropna()
    return rows if len(rows) else None


def plot_mlm_curves(out: Path, mlm_eval: dict) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frame = read_csv_log(out / "pretrain" / "logs" / "metrics.csv")
    if frame is None:
        return None
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(11, 3.6))
    for column, label in (("train_loss", "train"), ("val_loss", "held-out")):
        rows = _series(frame, column)
        if rows is not None:
            ax_loss.plot(rows.step, rows[column], marker="o" if column == "val_loss" else None, label=label)
    ax_loss.set(xlabel="step", ylabel="masked cross-entropy (nats)", title="Masked-LM loss")
    ax_loss.legend()
    # like with like: the baselines are scored on [MASK]ed sites, so is the curve (the chosen sites
    # that keep their base or get a random one are easier and would lift it)
    rows = _series(frame, "val_mask_accuracy")
    if rows is not None:
        ax_acc.plot(rows.step, rows.val_mask_accuracy, marker="o", label="Caduceus-PS during training")
    ax_acc.axhline(mlm_eval["model_accuracy"], color="C0", ls=":", label="final model, [MASK]ed sites")
    for name, acc in mlm_eval["baselines"].items():
        ax_acc.axhline(acc, color="grey", lw=0.8, ls="--")
        ax_acc.text(0.0, acc, f" {name}", fontsize=7, va="bottom", color="grey", transform=ax_acc.get_yaxis_transform())
    ax_acc.set(xlabel="step", ylabel="accuracy", title="Held-out masked accuracy vs baselines ([MASK]ed sites)")
    ax_acc.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(out / "mlm_curves.png", dpi=110)
    plt.close(fig)
    return "mlm_curves.png"


def plot_finetune_curves(out: Path, names: list[str], task_title: str) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    frames = {name: read_csv_log(out / name / "logs" / "metrics.csv") for name in names}
    if all(f is None for f in frames.values()):
        return None
    fig, (ax_loss, ax_auc) = plt.subplots(1, 2, figsize=(11, 3.6))
    for i, (name, frame) in enumerate(frames.items()):
        for column, style in (("train_loss_step", "-"), ("val_loss", "o-")):
            rows = _series(frame, column)
            if rows is not None:
                ax_loss.plot(rows.step, rows[column], style, color=f"C{i}", alpha=0.5 if style == "-" else 1,
                             label=f"{name} {'train' if style == '-' else 'val'}")
        rows = _series(frame, "val_auroc")
        if rows is not None:
            ax_auc.plot(rows.step, rows.val_auroc, "o-", color=f"C{i}", label=name)
    ax_loss.set(xlabel="step", ylabel="binary cross-entropy", title=f"fine-tuning loss ({task_title})")
    ax_loss.legend(fontsize=7)
    ax_auc.axhline(0.75, color="grey", ls="--", lw=0.8)
    ax_auc.set(xlabel="step", ylabel="AUROC (val subset)", title="validation AUROC")
    ax_auc.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "finetune_curves.png", dpi=110)
    plt.close(fig)
    return "finetune_curves.png"


def write_report(out: Path, metrics: dict, figures: dict) -> Path:
    m = metrics
    lines = [
        "# grelu-caduceus demo",
        "",
        f"Budget `{m['budget']}`, device `{m['device']}`, seed {m['seed']}, total {m['seconds_total']:.0f} s.",
        "",
        "## 1. Masked-LM pretraining (Caduceus-PS) on hg19 chr20:40-43 Mb, held-out 43-44 Mb",
        "",
        f"Model: d_model {m['mlm_d_model']}, {m['mlm_n_layer']} layers, {m['mlm_parameters']:,} parameters, "
        f"{m['mlm_steps']} steps of {m['mlm_batch_size']} x {m['mlm_seq_len']} bp windows (lr {m['mlm_lr']}).",
        "",
        "Accuracy at the held-out [MASK]ed sites (15% of positions chosen, 80/10/10 masking, fixed masks). The "
        "baselines are fitted on the train region and see exactly the model's input: masked neighbours are "
        "unknown (summed out of the k-mer counts).",
        "",
        "| predictor | accuracy ([MASK]ed sites) | all chosen sites |",
        "|---|---|---|",
        f"| **Caduceus-PS masked LM** | **{m['mlm_val_accuracy']:.4f}** | {m['mlm_val_accuracy_all_chosen']:.4f} |",
    ]
    for name, acc in m["mlm_baseline_accuracies"].items():
        lines.append(f"| {name} | {acc:.4f} | {m['mlm_baseline_accuracies_all_chosen'][name]:.4f} |")
    verdict = "beats" if m["mlm_val_accuracy"] > m["mlm_baseline_accuracy"] else "does NOT beat"
    lines += [
        "",
        f"The masked LM {verdict} the best baseline ({m['mlm_best_baseline']}, {m['mlm_baseline_accuracy']:.4f}) "
        f"on {m['mlm_val_sites']:,} [MASK]ed sites of {m['mlm_val_windows']:,} non-overlapping held-out windows: "
        f"difference {m['mlm_difference_vs_baseline']:+.4f}, 95% interval {m['mlm_difference_ci95'][0]:+.4f} to "
        f"{m['mlm_difference_ci95'][1]:+.4f} (paired bootstrap over windows). "
        "For reference, k-mer models given the *uncorrupted* "
        "neighbours (information the model never has): "
        + ", ".join(f"{k} {v:.4f}" for k, v in m["mlm_baseline_accuracies_clean_context"].items()) + ".",
        "",
    ]
    if figures.get("mlm"):
        lines += [f"![masked-LM curves]({figures['mlm']})", ""]
    lines += [
        f"## 2. Fine-tuning on {m['finetune_task_title']} (bundled, hg19 chr20)",
        "",
        f"200 bp windows centred on {m['finetune_task_title']} vs GC-matched background; train/val/test by 1 Mb "
        "blocks. The reported checkpoint is chosen on validation AUROC, so the test AUROC is the unbiased one.",
        "",
        "| model | val AUROC | test AUROC | steps |",
        "|---|---|---|---|",
    ]
    for name, r in m["finetune_runs"].items():
        lines.append(f"| {name} ({r['model_type']}) | {r['val_auroc']:.4f} | {r['test_auroc']:.4f} | {r['steps']} |")
    reference = m.get("finetune_task_reference")
    if reference:
        lines += ["", f"Reference: {reference['model']} (bundled manifest) reaches val AUROC "
                  f"{reference['val_auroc']:.3f}, test {reference['test_auroc']:.3f}.", ""]
    if figures.get("finetune"):
        lines += [f"![fine-tuning curves]({figures['finetune']})", ""]
    lines += [f"## 3. Attributions (input x gradient) of the most confident held-out {m['finetune_task_positive']}s", ""]
    for name in figures.get("attributions", []):
        lines += [f"![attribution logo]({name})", ""]
    lines += ["## Timings (s)", "", "| stage | seconds |", "|---|---|"]
    lines += [f"| {k} | {v:.1f} |" for k, v in m["stage_seconds"].items()]
    path = out / "report.md"
    path.write_text("\n".join(lines) + "\n")
    return path


# =========================================================================== entry points
def run_demo(out_dir, device: str = "auto", budget: str = "default", seed: int = 0) -> dict:
    """Run (or resume) the demo in ``out_dir``; returns the metrics written to ``out_dir/metrics.json``.

    Args:
        out_dir: output folder; re-running with the same folder reuses finished stages.
        device: "auto" (GPU when present), "cpu", "cuda" or "cuda:N".
        budget: "quick" (~1 minute smoke run), "default" (~11 minutes on 2 CPU cores) or "full"
            (a larger model and longer training, for a GPU), or a DemoBudget.
        seed: random seed of every stage.

    Returns:
        dict with at least mlm_val_accuracy, mlm_baseline_accuracy and finetune_val_auroc.
    """
    demo = DemoRun(out_dir, device, budget, seed)
    with compute_threads(demo.device) as threads:
        return _run_stages(demo, threads)


def _run_stages(demo: "DemoRun", threads: str) -> dict:
    from .data import task_baseline

    started = time.perf_counter()
    b = demo.budget
    log(f"writing to {demo.out} (budget {b.name}, device {demo.device}, {threads}, seed {demo.seed})")
    pretrain = demo.pretrain()
    mlm_eval = demo.evaluate_mlm(pretrain)
    runs = {"finetune_pretrained": demo.finetune("finetune_pretrained", pretrain["checkpoint"])}
    if b.scratch_comparison:
        runs["finetune_scratch"] = demo.finetune("finetune_scratch", None)
    attributions = demo.attributions(runs["finetune_pretrained"])
    log("[5/5] plots, metrics.json and report.md")
    figures = {"mlm": plot_mlm_curves(demo.out, mlm_eval), "finetune": plot_finetune_curves(demo.out, list(runs), demo.task.title),
               "attributions": attributions["figures"]}
    stage_seconds = {"pretrain": pretrain["seconds"], "mlm_eval": mlm_eval["seconds"],
                     **{k: v["seconds"] for k, v in runs.items()}, "attributions": attributions["seconds"]}
    tuned = runs["finetune_pretrained"]
    metrics = {
        "mlm_val_accuracy": mlm_eval["model_accuracy"],
        "mlm_baseline_accuracy": mlm_eval["best_baseline_accuracy"],
        "finetune_val_auroc": tuned["val_auroc"],
        "finetune_test_auroc": tuned["test_auroc"],
        "mlm_best_baseline": mlm_eval["best_baseline"],
        "mlm_baseline_accuracies": mlm_eval["baselines"],
        "mlm_val_accuracy_all_chosen": mlm_eval["model_accuracy_all_chosen"],
        "mlm_baseline_accuracies_all_chosen": mlm_eval["baselines_all_chosen"],
        "mlm_baseline_accuracies_clean_context": mlm_eval["baselines_clean_context"],
        "mlm_val_sites": mlm_eval["n_sites"],
        "mlm_val_windows": mlm_eval["n_windows"],
        "mlm_difference_vs_baseline": mlm_eval["difference"],
        "mlm_difference_ci95": mlm_eval["difference_ci95"],
        "mlm_steps": pretrain["steps"],
        "mlm_parameters": pretrain["parameters"],
        "mlm_d_model": b.d_model,
        "mlm_n_layer": b.n_layer,
        "mlm_seq_len": b.seq_len,
        "mlm_batch_size": b.batch_size,
        "mlm_lr": b.lr,
        "finetune_task": demo.task.name,
        "finetune_task_title": demo.task.title,
        "finetune_task_positive": demo.task.positive,
        "finetune_task_reference": task_baseline(demo.task.name),
        "finetune_runs": runs,
        "budget": b.name,
        "device": demo.device,
        "seed": demo.seed,
        "stage_seconds": stage_seconds,
        "seconds_total": round(time.perf_counter() - started, 1),
        "torch_threads": torch.get_num_threads(),
    }
    if "finetune_scratch" in runs:
        metrics["scratch_val_auroc"] = runs["finetune_scratch"]["val_auroc"]
        metrics["scratch_test_auroc"] = runs["finetune_scratch"]["test_auroc"]
    (demo.out / "metrics.json").write_text(json.dumps(metrics, indent=2))
    report = write_report(demo.out, metrics, figures)
    log(f"done in {metrics['seconds_total']:.0f} s: masked accuracy {metrics['mlm_val_accuracy']:.4f} vs best baseline "
        f"{metrics['mlm_baseline_accuracy']:.4f}; {demo.task.name} val AUROC {metrics['finetune_val_auroc']:.4f}, test "
        f"{metrics['finetune_test_auroc']:.4f}. Report: {report}")
    return metrics


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="grelu-caduceus demo",
        description="Pretrain a Caduceus-PS masked LM on bundled real human DNA, compare it with k-mer "
        "baselines, fine-tune it on a real labelled task (GM12878 ATAC-seq peaks) and plot attributions. Re-running with the same --out "
        "resumes and reuses finished stages.",
    )
    parser.add_argument("--out", required=True, help="output folder (metrics.json, report.md, plots, checkpoints)")
    parser.add_argument("--device", default="auto", help="auto (GPU when present), cpu, cuda or cuda:N")
    parser.add_argument("--quick", action="store_true", help="a ~1-minute smoke run with tiny sizes (tests)")
    parser.add_argument("--budget", choices=sorted(BUDGETS), default=None,
                        help="run size: quick, default (~11 min on 2 CPU cores) or full (GPU)")
    parser.add_argument("--seed", type=int, default=0)
    return parser


def main(argv=None) -> int:
    from .errors import UserError

    args = build_parser().parse_args(argv)
    if args.quick and args.budget not in (None, "quick"):
        raise UserError(f"--quick and --budget {args.budget} disagree: give one of them.")
    budget = "quick" if args.quick else (args.budget or "default")
    run_demo(args.out, device=args.device, budget=budget, seed=args.seed)
    return 0


__all__ = ["BUDGETS", "DemoBudget", "KmerContextModel", "MaskedEvalSet", "MostFrequentBase", "evaluate_masked",
           "main", "run_demo"]
