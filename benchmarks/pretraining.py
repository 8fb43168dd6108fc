"""Pre-training study: the paper's three ablations at small scale, and language models that pay.

Schiff et al. (2024, Figure 3, section 5.1) compare pre-training losses at equal model size:

* ``ntp``: next-token loss, Mamba (one direction) against HyenaDNA;
* ``mlm_tying``: masked-LM loss, a BiMamba whose two directions share in_proj/out_proj at depth 2k
  against an untied BiMamba at depth k (the untied one's width is chosen so the parameter counts
  agree within 5%);
* ``mlm_rc``: masked-LM loss, RC-equivariant Caduceus-PS against the same BiMamba without
  equivariance (trained with RC augmentation, as the paper's baselines are).

``lm`` is not an ablation: it pretrains the three models the downstream comparison starts from
(Caduceus-PS and Caduceus-Ph with masked-LM loss, HyenaDNA with next-token loss), longer, on the
same data and recipe (``PROTOCOLS``). The Caduceus-PS one is the model the package ships
(``scripts/build_pretrained_lm.py``).

Data: hg19 chr20 (``benchmarks/data/prepare.py hg19_chr20``). Runs train only on the 1 Mb blocks
that the bundled downstream tasks use for training (block % 5 in 0, 1, 2: ``TRAIN_BLOCK``), minus
``EDGE_MARGIN`` bp beside every val/test block, so no pretraining window reaches a downstream
validation or test site even with 16 kb of context. Every window is drawn anew from that region
at random (seeded by run seed and step) and has no N. The held-out set is every non-overlapping
window of the 1 Mb block chr20:43-44 Mb (a downstream val block, and the demo's held-out region),
with its masks drawn once from ``HELDOUT_MASK_SEED``: the same positions are scored for every run
and for the k-mer baselines beside them.

The paper's recipe, scaled down (every change is listed in ``RECIPE_CHANGES``): AdamW with betas
(0.9, 0.95) and weight decay 0.1, linear warm-up over 10% of the steps then cosine decay to
1e-4, gradient clipping 1.0, learning rate 8e-3 for the Mamba models and 6e-4 for HyenaDNA, 15%
masking split 80/10/10, RC augmentation with p = 0.5 for every model except Caduceus-PS.

Outputs (in OUT, default benchmarks/results/):

* ``pretraining.csv``: one row per finished run (``COLUMNS``).
* ``pretraining_curves.csv``: held-out loss (on every ``CURVE_STRIDE``-th held-out window) along
  each run, the learning curves.
* ``pretraining_baselines.csv``: the k-mer context models' loss and accuracy on the same
  held-out positions (masked-LM and next-token), fitted on the same training region.
* ``pretraining_meta.json``: CPU model, threads, torch, the recipe.
* ``pretraining_runs/``: per-run training state (resume after an interruption) and, for ``lm``,
  the final weights.

Resumable: a run whose row is in the CSV is skipped; an interrupted run continues from its last
saved state (every ``SAVE_EVERY`` steps). Batches and masks are functions of (seed, step), so a
resumed run is the run an uninterrupted one would be. ``--only EXPERIMENT/VARIANT/SEED`` runs one
row alone; on the same CPU kind and thread count it is identical.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from benchmarks.hardware import hardware_meta
from benchmarks.long_range import _read_rows, append_rows

# --- data -------------------------------------------------------------------------------------
CHROM = "chr20"
BLOCK = 1_000_000  # the bundled tasks' split blocks (scripts/build_bundled_data.py SPLIT_BLOCK)
HELDOUT = (43_000_000, 44_000_000)  # a task-val block; the demo's held-out region
EDGE_MARGIN = 16_384  # bp kept clear beside every val/test block
HELDOUT_MASK_SEED = 20_240_301
CURVE_STRIDE = 8  # learning curves score every 8th held-out window


def is_train_block(block: int) -> bool:
    """The bundled tasks' split rule: block % 5 == 3 is val, == 4 test, the rest train."""
    return block % 5 not in (3, 4)


# --- recipe -----------------------------------------------------------------------------------
RECIPE_CHANGES = (
    "hg19 chr20 train blocks (about 36 Mb) instead of the hg38 Basenji train split",
    "8 or 16 sequences of 1,024 bp per step (8,192 or 16,384 tokens) instead of 2^20 tokens",
    "5.2M tokens per ablation run and 16.8M per pretrained LM instead of about 10B",
    "d_model 32-64 and 2-4 layers (40k-165k parameters) instead of d_model 118-256 and 4-16 layers",
    "float32 on CPU instead of fp16 on GPUs",
    "one learning rate per model family (the paper's) instead of a sweep",
)


@dataclass(frozen=True)
class Arm:
    """One variant: the model and how it is trained.

    family: "caduceus" (CaduceusForMaskedLM; bidirectional=False makes it a causal Mamba) or
    "hyenadna" (HyenaDNABackbone with its tied LM head). objective: "mlm" or "ntp".
    """

    family: str
    objective: str
    d_model: int
    n_layer: int
    lr: float
    rcps: bool = False
    bidirectional: bool = True
    weight_tie: bool = True
    rc_aug: bool = True

    def build(self) -> torch.nn.Module:
        if self.family == "hyenadna":
            from grelu_caduceus.hyena.config import HyenaDNAConfig
            from grelu_caduceus.hyena.model import HyenaDNABackbone

            # dropout 0: the paper's pretraining uses none for HyenaDNA either (embed_dropout 0.1 is
            # the fine-tuning default of our config)
            return HyenaDNABackbone(HyenaDNAConfig(d_model=self.d_model, n_layer=self.n_layer, lm_head=True,
                                                   embed_dropout=0.0, l_max=PROTOCOLS["ablation"].seq_len))
        from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM

        return CaduceusForMaskedLM(CaduceusConfig(d_model=self.d_model, n_layer=self.n_layer, rcps=self.rcps,
                                                  bidirectional=self.bidirectional,
                                                  bidirectional_weight_tie=self.weight_tie))


def logits_of(model: torch.nn.Module, arm: Arm, ids: torch.Tensor) -> torch.Tensor:
    """(B, L, V) float logits."""
    if arm.family == "hyenadna":
        return model(ids, return_logits=True).float()
    return model(ids)


@dataclass(frozen=True)
class Protocol:
    seq_len: int
    batch_size: int
    steps: int
    warmup_frac: float = 0.1
    min_lr: float = 1e-4
    weight_decay: float = 0.1
    betas: tuple = (0.9, 0.95)
    clip: float = 1.0
    eval_every: int = 64

    @property
    def tokens(self) -> int:
        return self.seq_len * self.batch_size * self.steps


MAMBA_LR, HYENA_LR = 8e-3, 6e-4  # the paper's
PROTOCOLS = {
    "ablation": Protocol(seq_len=1024, batch_size=8, steps=640),
    "lm": Protocol(seq_len=1024, batch_size=16, steps=1024),
}
WHY_THESE_TOKENS = {
    "ablation": "5.2M tokens a run is just above the least the study asks for (5M): the 18 runs (15 trained, "
                "one pair being the same model) then take about an hour of 2 CPU cores",
    "lm": "16.8M tokens (each run's train_s column gives its time) is where the masked LM is "
          "clearly ahead of the k-mer models while the three LMs still fit one session",
}

EXPERIMENTS: dict[str, dict[str, Arm]] = {
    "ntp": {
        "mamba": Arm("caduceus", "ntp", d_model=48, n_layer=4, lr=MAMBA_LR, bidirectional=False),
        "hyenadna": Arm("hyenadna", "ntp", d_model=48, n_layer=2, lr=HYENA_LR),
    },
    "mlm_tying": {
        "tied": Arm("caduceus", "mlm", d_model=32, n_layer=4, lr=MAMBA_LR),
        "untied": Arm("caduceus", "mlm", d_model=38, n_layer=2, lr=MAMBA_LR, weight_tie=False),
    },
    "mlm_rc": {
        "caduceus_ps": Arm("caduceus", "mlm", d_model=32, n_layer=4, lr=MAMBA_LR, rcps=True, rc_aug=False),
        "bimamba": Arm("caduceus", "mlm", d_model=32, n_layer=4, lr=MAMBA_LR),
    },
    "lm": {
        "caduceus_ps": Arm("caduceus", "mlm", d_model=64, n_layer=4, lr=MAMBA_LR, rcps=True, rc_aug=False),
        "caduceus_ph": Arm("caduceus", "mlm", d_model=64, n_layer=4, lr=MAMBA_LR),
        "hyenadna": Arm("hyenadna", "ntp", d_model=48, n_layer=4, lr=HYENA_LR),
    },
}
ABLATIONS = ("ntp", "mlm_tying", "mlm_rc")
SEEDS = (0, 1, 2)
SAVE_EVERY = 64

COLUMNS = ["experiment", "variant", "seed", "params", "tokens", "steps", "objective", "heldout_loss",
           "heldout_accuracy", "heldout_positions", "heldout_mask_loss", "heldout_mask_accuracy",
           "heldout_mask_positions", "d_model", "n_layer", "lr", "rc_aug", "train_s", "threads"]
BASELINE_COLUMNS = ["objective", "baseline", "context", "heldout_loss", "heldout_accuracy", "heldout_positions",
                    "heldout_mask_loss", "heldout_mask_accuracy", "heldout_mask_positions"]
CURVE_COLUMNS = ["experiment", "variant", "seed", "step", "tokens", "heldout_loss", "lr"]


def protocol_of(experiment: str) -> Protocol:
    return PROTOCOLS["lm" if experiment == "lm" else "ablation"]


# ----------------------------------------------------------------------------------------------
# Data
# ----------------------------------------------------------------------------------------------


class Chr20:
    """A chromosome as base codes (A 0, C 1, G 2, T 3, other 4) with its training region and held-out
    windows: by default hg19 chr20 with the study's blocks (``Chr20.load``); tests pass a small one."""

    def __init__(self, codes: np.ndarray, block: int = BLOCK, heldout: tuple[int, int] = HELDOUT,
                 edge_margin: int = EDGE_MARGIN):
        self.codes, self.block, self.heldout, self.edge_margin = codes, block, heldout, edge_margin
        self.n_before = np.concatenate([[0], np.cumsum(self.codes >= 4, dtype=np.int32)])  # N count before each position
        held_block = heldout[0] // block
        if is_train_block(held_block) or heldout[1] > (held_block + 1) * block:
            raise ValueError(f"the held-out region {heldout} must lie in one val/test block")

    @classmethod
    def load(cls, data_dir=None, log=print) -> "Chr20":
        """hg19 chr20 from ``benchmarks/data/prepare.py hg19_chr20`` (codes cached beside the FASTA)."""
        from benchmarks.data.prepare import prepare
        from grelu_caduceus.data import FastaGenome

        fasta = prepare(["hg19_chr20"], cache_dir=data_dir, log=log)["hg19_chr20"]["fasta"]
        cache = Path(fasta).with_suffix(".codes.npy")
        if cache.exists():
            return cls(np.load(cache))
        from benchmarks.long_range import encode

        genome = FastaGenome(fasta)
        codes = encode(genome.fetch(CHROM, 0, genome.sizes[CHROM]))
        np.save(cache, codes)
        return cls(codes)

    def train_intervals(self) -> list[tuple[int, int]]:
        """[start, end) pieces that pretraining windows may cover: the train blocks, less
        ``edge_margin`` bp beside every val/test block."""
        size, block, margin, pieces = len(self.codes), self.block, self.edge_margin, []
        for b in range(math.ceil(size / block)):
            if not is_train_block(b):
                continue
            start = b * block + (margin if b > 0 and not is_train_block(b - 1) else 0)
            end = min(size, (b + 1) * block) - (margin if not is_train_block(b + 1) else 0)
            if pieces and pieces[-1][1] == b * block and start == b * block:
                pieces[-1] = (pieces[-1][0], end)
            elif end > start:
                pieces.append((start, end))
        return pieces

    def has_n(self, starts: np.ndarray, length: int) -> np.ndarray:
        return self.n_before[starts + length] - self.n_before[starts] > 0

    def train_bases(self) -> np.ndarray:
        """The training region's codes, pieces joined by one N (for the k-mer baselines)."""
        parts = []
        for a, b in self.train_intervals():
            parts += [self.codes[a:b], np.array([4], np.uint8)]
        return np.concatenate(parts)

    def heldout_windows(self, length: int) -> np.ndarray:
        """(n, length) codes: every non-overlapping window of the held-out block without N."""
        starts = np.arange(self.heldout[0], self.heldout[1] - length + 1, length)
        starts = starts[~self.has_n(starts, length)]
        return self.codes[starts[:, None] + np.arange(length)]


class WindowSampler:
    """Random training windows: batch ``step`` of run ``seed`` is a function of (seed, step) alone."""

    def __init__(self, genome: Chr20, length: int):
        self.genome, self.length = genome, length
        pieces = [(a, b - length + 1) for a, b in genome.train_intervals() if b - a >= length]
        self.starts = np.array([a for a, _ in pieces])
        self.sizes = np.array([b - a for a, b in pieces])
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)])

    @property
    def n_positions(self) -> int:
        return int(self.offsets[-1])

    def batch(self, seed: int, step: int, batch_size: int, rc_aug: bool) -> np.ndarray:
        rng = np.random.default_rng([seed, step, 7])
        out = []
        while len(out) < batch_size:
            u = rng.integers(0, self.n_positions, size=batch_size)
            piece = np.searchsorted(self.offsets, u, side="right") - 1
            starts = self.starts[piece] + (u - self.offsets[piece])
            out += [s for s in starts[~self.genome.has_n(starts, self.length)]]
        starts = np.array(out[:batch_size])
        codes = self.genome.codes[starts[:, None] + np.arange(self.length)]
        if rc_aug:  # p = 0.5 per sequence
            flip = rng.random(batch_size) < 0.5
            codes[flip] = np.where(codes[flip] < 4, 3 - codes[flip], 4)[:, ::-1]
        return codes


def codes_to_ids(codes: np.ndarray) -> torch.Tensor:
    from grelu_caduceus.core.tokens import A_ID, N_ID

    codes = torch.from_numpy(np.ascontiguousarray(codes)).long()
    return torch.where(codes < 4, codes + A_ID, torch.full_like(codes, N_ID))


def heldout_masks(ids: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed masked-LM inputs and labels of the held-out windows."""
    from grelu_caduceus.tasks.mlm import mask_tokens

    return mask_tokens(ids, generator=torch.Generator().manual_seed(HELDOUT_MASK_SEED))


def objective_inputs(objective: str, ids: torch.Tensor, generator=None) -> tuple[torch.Tensor, torch.Tensor]:
    """(inputs, labels) with IGNORE where nothing is scored; next-token labels are shifted by one
    (the last position scores nothing)."""
    from grelu_caduceus.tasks.mlm import IGNORE, mask_tokens

    if objective == "mlm":
        return mask_tokens(ids, generator=generator)
    labels = torch.full_like(ids, IGNORE)
    labels[:, :-1] = ids[:, 1:]
    return ids, labels


# ----------------------------------------------------------------------------------------------
# Training
# ----------------------------------------------------------------------------------------------


@contextmanager
def torch_threads(n: int | None):
    """Scoped torch (and so numba's) thread count."""
    old = torch.get_num_threads()
    try:
        if n:
            torch.set_num_threads(n)
        yield
    finally:
        torch.set_num_threads(old)


def lr_factor(step: int, protocol: Protocol, lr: float) -> float:
    warmup = max(1, int(protocol.warmup_frac * protocol.steps))
    if step < warmup:
        return (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, protocol.steps - warmup))
    floor = min(1.0, protocol.min_lr / lr)
    return floor + (1 - floor) * 0.5 * (1 + math.cos(math.pi * progress))


def optimizer_for(model: torch.nn.Module, arm: Arm, protocol: Protocol):
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        skip = getattr(p, "_no_weight_decay", False) or p.ndim < 2 or "norm" in name
        (no_decay if skip else decay).append(p)
    groups = [{"params": decay, "weight_decay": protocol.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    opt = torch.optim.AdamW(groups, lr=arm.lr, betas=protocol.betas)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: lr_factor(s, protocol, arm.lr))
    return opt, sched


@torch.no_grad()
def heldout_scores(model, arm: Arm, inputs: torch.Tensor, labels: torch.Tensor, batch: int = 32) -> dict:
    """Mean cross-entropy and accuracy over the scored held-out positions (``loss``, ``accuracy``,
    ``positions``) and, for masked-LM inputs, over the [MASK]ed positions alone (``mask_loss``,
    ``mask_accuracy``): there the model, like a k-mer context model, cannot see the base it predicts
    (at the 10% of chosen positions left unchanged it can)."""
    from grelu_caduceus.core.tokens import MASK_ID
    from grelu_caduceus.tasks.mlm import IGNORE

    model.eval()
    sums = dict(loss=0.0, correct=0, count=0, mask_loss=0.0, mask_correct=0, mask_count=0)
    for i in range(0, len(inputs), batch):
        logits = logits_of(model, arm, inputs[i:i + batch])
        y, x = labels[i:i + batch], inputs[i:i + batch]
        for prefix, keep in (("", y != IGNORE), ("mask_", (y != IGNORE) & (x == MASK_ID))):
            lg, target = logits[keep], y[keep]
            sums[prefix + "loss"] += F.cross_entropy(lg, target, reduction="sum").item()
            sums[prefix + "correct"] += (lg.argmax(-1) == target).sum().item()
            sums[prefix + "count"] += int(keep.sum())
    model.train()
    out = dict(loss=sums["loss"] / sums["count"], accuracy=sums["correct"] / sums["count"], positions=sums["count"])
    if sums["mask_count"]:
        out.update(mask_loss=sums["mask_loss"] / sums["mask_count"],
                   mask_accuracy=sums["mask_correct"] / sums["mask_count"], mask_positions=sums["mask_count"])
    return out


def _atomic_save(obj, path: Path) -> None:
    tmp = path.with_suffix(".tmp")
    torch.save(obj, tmp)
    os.replace(tmp, path)


def run_dir(out: Path, experiment: str, variant: str, seed: int) -> Path:
    return out / "pretraining_runs" / experiment / variant / str(seed)


def train_one(experiment: str, variant: str, seed: int, genome: Chr20, heldout: dict, out: Path,
              threads: int | None = None, log=print) -> tuple[dict, list[dict]]:
    """Train one run (resuming from its saved state) -> (row, curve rows)."""
    from grelu_caduceus.tasks.mlm import IGNORE

    arm, protocol = EXPERIMENTS[experiment][variant], protocol_of(experiment)
    folder = run_dir(out, experiment, variant, seed)
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / "state.pt"
    with torch_threads(threads), torch.random.fork_rng():
        torch.manual_seed(seed)
        model = arm.build()
        opt, sched = optimizer_for(model, arm, protocol)
        start, curve, train_s = 0, [], 0.0
        if state_path.exists():
            state = torch.load(state_path, weights_only=False)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["opt"])
            sched.load_state_dict(state["sched"])
            start, curve, train_s = state["step"], state["curve"], state["train_s"]
            log(f"  resuming {experiment}/{variant}/{seed} at step {start}")
        sampler = WindowSampler(genome, protocol.seq_len)
        x_eval, y_eval = heldout[arm.objective]
        curve_x, curve_y = x_eval[::CURVE_STRIDE], y_eval[::CURVE_STRIDE]
        model.train()
        t_last = time.perf_counter()
        for step in range(start, protocol.steps):
            if step % protocol.eval_every == 0 and not any(c["step"] == step for c in curve):
                t0 = time.perf_counter()
                loss = heldout_scores(model, arm, curve_x, curve_y)["loss"]
                curve.append(dict(step=step, tokens=step * protocol.batch_size * protocol.seq_len,
                                  heldout_loss=round(loss, 6), lr=sched.get_last_lr()[0]))
                t_last += time.perf_counter() - t0  # evaluation is not training time
            ids = codes_to_ids(sampler.batch(seed, step, protocol.batch_size, arm.rc_aug))
            inputs, labels = objective_inputs(arm.objective, ids, torch.Generator().manual_seed(seed * 1_000_003 + step))
            logits = logits_of(model, arm, inputs)
            loss = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1), ignore_index=IGNORE)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), protocol.clip)
            opt.step()
            sched.step()
            if not math.isfinite(loss.item()):
                raise FloatingPointError(f"{experiment}/{variant}/{seed}: loss {loss.item()} at step {step}")
            if (step + 1) % SAVE_EVERY == 0 or step + 1 == protocol.steps:
                now = time.perf_counter()
                train_s += now - t_last
                _atomic_save(dict(model=model.state_dict(), opt=opt.state_dict(), sched=sched.state_dict(),
                                  step=step + 1, curve=curve, train_s=train_s), state_path)
                t_last = time.perf_counter()
                log(f"  {experiment}/{variant}/{seed}: step {step + 1}/{protocol.steps}, train loss {loss.item():.4f}, "
                    f"{train_s:.0f} s")
        scores = heldout_scores(model, arm, x_eval, y_eval)
        curve.append(dict(step=protocol.steps, tokens=protocol.tokens, heldout_loss=round(scores["loss"], 6),
                          lr=sched.get_last_lr()[0]))
        if experiment == "lm":
            torch.save(model.state_dict(), folder / "weights.pt")
        row = dict(experiment=experiment, variant=variant, seed=seed, params=sum(p.numel() for p in model.parameters()),
                   tokens=protocol.tokens, steps=protocol.steps, objective=arm.objective,
                   heldout_loss=round(scores["loss"], 6), heldout_accuracy=round(scores["accuracy"], 6),
                   heldout_positions=scores["positions"],
                   **{f"heldout_{k}": round(v, 6) if isinstance(v, float) else v
                      for k, v in scores.items() if k.startswith("mask_")},
                   d_model=arm.d_model, n_layer=arm.n_layer, lr=arm.lr, rc_aug=arm.rc_aug, train_s=round(train_s, 1),
                   threads=torch.get_num_threads())
    curves = [dict(experiment=experiment, variant=variant, seed=seed, **c) for c in curve]
    return row, curves


# ----------------------------------------------------------------------------------------------
# k-mer baselines on the same held-out positions
# ----------------------------------------------------------------------------------------------

MLM_KS = (1, 2, 3, 4, 5)
NTP_ORDERS = (1, 2, 4, 6, 8, 10)


def mlm_kmer_scores(train: np.ndarray, inputs: torch.Tensor, labels: torch.Tensor, k: int, alpha: float = 0.5) -> dict:
    """Scores of the k-bases-either-side context model on the masked-LM positions (as
    :func:`heldout_scores`): neighbours the model cannot read ([MASK], N) are summed out of the
    counts; add-alpha smoothing."""
    from grelu_caduceus.core.tokens import MASK_ID
    from grelu_caduceus.demo.baselines import KmerContextModel, ids_to_bases
    from grelu_caduceus.tasks.mlm import IGNORE

    model = KmerContextModel(k).fit(train)
    rows, cols = torch.nonzero(labels != IGNORE, as_tuple=True)
    target = ids_to_bases(labels[rows, cols])
    probs = model.predict_proba(ids_to_bases(inputs), rows.numpy(), cols.numpy(), alpha=alpha)
    nll = -np.log(probs[np.arange(len(target)), target])
    hit = probs.argmax(1) == target
    masked = (inputs[rows, cols] == MASK_ID).numpy()
    return dict(loss=float(nll.mean()), accuracy=float(hit.mean()), positions=len(target),
                mask_loss=float(nll[masked].mean()), mask_accuracy=float(hit[masked].mean()),
                mask_positions=int(masked.sum()))


def ntp_markov_scores(train: np.ndarray, ids: torch.Tensor, order: int, alpha: float = 0.5):
    """(cross-entropy, accuracy) of an order-``order`` Markov chain (add-alpha) on every next-token
    position of the held-out windows; the first positions of a window use the context they have."""
    from grelu_caduceus.demo.baselines import ids_to_bases

    bases = ids_to_bases(ids)
    n, L = bases.shape
    losses, hits = np.zeros((n, L - 1)), np.zeros((n, L - 1), bool)
    for j in range(order + 1):  # context length j (positions t with t < order use j = t)
        counts = _markov_counts(train, j) + alpha
        probs = counts / counts.sum(-1, keepdims=True)
        ts = np.arange(1, L) if j == order else np.array([j]) if j >= 1 else np.array([], int)
        ts = ts[ts >= j] if j == order else ts
        if len(ts) == 0:
            continue
        code = np.zeros((n, len(ts)), np.int64)
        for back in range(j, 0, -1):
            code = code * 4 + bases[:, ts - back]
        p = probs[code]  # (n, len(ts), 4)
        target = bases[:, ts]
        losses[:, ts - 1] = -np.log(np.take_along_axis(p, target[..., None], -1)[..., 0])
        hits[:, ts - 1] = p.argmax(-1) == target
    return dict(loss=float(losses.mean()), accuracy=float(hits.mean()), positions=losses.size)


def _markov_counts(train: np.ndarray, j: int) -> np.ndarray:
    L = len(train)
    ok = np.ones(L - j, bool)
    code = np.zeros(L - j, np.int64)
    for back in range(j, 0, -1):
        prev = train[j - back:L - back]
        ok &= prev < 4
        code = code * 4 + np.minimum(prev, 3)
    nxt = train[j:]
    ok &= nxt < 4
    return np.bincount(code[ok] * 4 + nxt[ok], minlength=4 ** (j + 1)).reshape(4 ** j, 4).astype(np.float64)


def baseline_rows(genome: Chr20, heldout_ids: torch.Tensor, heldout: dict, log=print) -> list[dict]:
    train = genome.train_bases()
    rows = []
    x, y = heldout["mlm"]
    for k in MLM_KS:
        scores = mlm_kmer_scores(train, x, y, k)
        rows.append(dict(objective="mlm", baseline=f"kmer_context_k{k}", context=f"{k} bases each side",
                         **{f"heldout_{n}": round(v, 6) if isinstance(v, float) else v for n, v in scores.items()}))
        log(f"  baseline mlm k={k}: loss {scores['loss']:.4f}, accuracy on [MASK] {scores['mask_accuracy']:.4f}")
    for order in NTP_ORDERS:
        scores = ntp_markov_scores(train, heldout_ids, order)
        rows.append(dict(objective="ntp", baseline=f"markov_order{order}", context=f"{order} previous bases",
                         **{f"heldout_{n}": round(v, 6) if isinstance(v, float) else v for n, v in scores.items()}))
        log(f"  baseline ntp order {order}: loss {scores['loss']:.4f}, accuracy {scores['accuracy']:.4f}")
    return rows


# ----------------------------------------------------------------------------------------------
# The grid
# ----------------------------------------------------------------------------------------------


def _finished_twin(csv_path: Path, experiment: str, variant: str, seed: int) -> tuple[str, str] | None:
    """A finished (experiment, variant) with the same Arm and Protocol as this one, at this seed.
    (mlm_tying/tied and mlm_rc/bimamba are one model: it is trained once.)"""
    arm, protocol = EXPERIMENTS[experiment][variant], protocol_of(experiment)
    for r in _read_rows(csv_path):
        e, v = r["experiment"], r["variant"]
        if int(r["seed"]) == seed and (e, v) != (experiment, variant) and e in EXPERIMENTS and \
                EXPERIMENTS[e].get(v) == arm and protocol_of(e) == protocol:
            return e, v
    return None


def _copy_run(csv_path: Path, curve_path: Path, twin: tuple[str, str], name: tuple[str, str], seed: int):
    rename = dict(experiment=name[0], variant=name[1])
    row = next(r for r in _read_rows(csv_path) if (r["experiment"], r["variant"], int(r["seed"])) == (*twin, seed))
    curve = [r for r in _read_rows(curve_path) if (r["experiment"], r["variant"], int(r["seed"])) == (*twin, seed)]
    return {**row, **rename, "heldout_loss": float(row["heldout_loss"]), "heldout_accuracy": float(row["heldout_accuracy"])}, \
        [{**c, **rename} for c in curve]


def parse_only(only: str) -> tuple[str, str, int]:
    parts = only.split("/")
    if len(parts) != 3 or parts[0] not in EXPERIMENTS or parts[1] not in EXPERIMENTS[parts[0]] or not parts[2].isdigit():
        choices = "; ".join(f"{e}: {', '.join(v)}" for e, v in EXPERIMENTS.items())
        raise ValueError(f"--only wants EXPERIMENT/VARIANT/SEED, got {only!r} (variants: {choices}).")
    return parts[0], parts[1], int(parts[2])


def planned_runs(experiments=None, seeds=None) -> list[tuple[str, str, int]]:
    experiments = list(experiments or ABLATIONS)
    for e in experiments:
        if e not in EXPERIMENTS:
            raise ValueError(f"unknown experiment {e!r}; choose from {', '.join(EXPERIMENTS)}.")
    return [(e, v, s) for s in (seeds or SEEDS) for e in experiments for v in EXPERIMENTS[e]]


def run_pretraining(out_dir, experiments=None, seeds=None, only=None, threads: int | None = 2, data_dir=None,
                    log=print, genome: Chr20 | None = None) -> Path:
    """Run the missing rows of the grid (or just ``only``) -> OUT/pretraining.csv.

    genome: the chromosome to use (default ``Chr20.load(data_dir)``, hg19 chr20)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    runs = [parse_only(only)] if only else planned_runs(experiments, seeds)
    csv_path, curve_path = out / "pretraining.csv", out / "pretraining_curves.csv"
    done = {(r["experiment"], r["variant"], int(r["seed"])) for r in _read_rows(csv_path)}
    todo = [r for r in runs if r not in done]
    log(f"pretraining: {len(runs) - len(todo)} of {len(runs)} runs done, {len(todo)} to go")
    if not todo and (out / "pretraining_baselines.csv").exists():
        return csv_path
    genome = genome if genome is not None else Chr20.load(data_dir, log=log)
    ids = codes_to_ids(genome.heldout_windows(PROTOCOLS["ablation"].seq_len))
    heldout = {"mlm": heldout_masks(ids), "ntp": objective_inputs("ntp", ids)}
    meta = dict(hardware_meta(), threads=threads, heldout=f"{CHROM}:{genome.heldout[0]}-{genome.heldout[1]}",
                heldout_windows=len(ids), protocols={k: asdict(v) for k, v in PROTOCOLS.items()},
                recipe_changes=list(RECIPE_CHANGES), why_these_tokens=WHY_THESE_TOKENS, edge_margin=EDGE_MARGIN)
    if not (only and (out / "pretraining_meta.json").exists()):  # one row alone keeps the grid's record
        (out / "pretraining_meta.json").write_text(json.dumps(meta, indent=2) + "\n")
    if not (out / "pretraining_baselines.csv").exists() and not only:
        rows = baseline_rows(genome, ids, heldout, log=log)
        append_rows(out / "pretraining_baselines.csv", BASELINE_COLUMNS, rows)
    t0 = time.perf_counter()
    for i, (e, v, s) in enumerate(todo):
        log(f"run {i + 1}/{len(todo)}: {e}/{v}/seed {s}")
        twin = _finished_twin(csv_path, e, v, s)
        if twin is not None:  # the same model, recipe and seed already ran under another name
            log(f"  the same run as {twin[0]}/{twin[1]}/seed {s}: its row is copied")
            row, curve = _copy_run(csv_path, curve_path, twin, (e, v), s)
        else:
            row, curve = train_one(e, v, s, genome, heldout, out, threads=threads, log=log)
        append_rows(csv_path, COLUMNS, [row])
        append_rows(curve_path, CURVE_COLUMNS, curve)
        elapsed = time.perf_counter() - t0
        log(f"  held-out loss {row['heldout_loss']:.4f} (accuracy {row['heldout_accuracy']:.4f}); "
            f"{elapsed / 60:.1f} min so far, ETA {elapsed / (i + 1) * (len(todo) - i - 1) / 60:.0f} min")
    return csv_path


__all__ = ["EXPERIMENTS", "PROTOCOLS", "ABLATIONS", "Arm", "Chr20", "baseline_rows", "codes_to_ids", "heldout_masks",
           "heldout_scores", "objective_inputs", "run_pretraining", "train_one"]
