"""Masked-language-model pretraining of Caduceus as a gReLU LightningModel (task "mlm").

Batches are gReLU one-hot tensors (B, 4, L) (e.g. from ``GenomeWindowDataset``), or (x, y) pairs
whose y is ignored. 15% of the non-N positions are chosen; of those 80% become [MASK], 10% a random
base and 10% stay; the loss is the cross-entropy at the chosen positions only (never on N).
"""

import math

import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from grelu.lightning import LightningModel
from torch import nn

from ..core import CaduceusConfig, CaduceusForMaskedLM, load_pretrained
from ..core.config import BACKBONE_PARAMS
from ..core.mamba import unknown_options_message
from ..core.tokens import A_ID, MASK_ID, N_ID, T_ID, onehot_to_ids, rc_ids
from ..training import SaveOnInterrupt, fit, run_folder_checkpoint, run_folder_logger

IGNORE = -100
# validation batch i is masked with a generator seeded VAL_MASK_SEED + i: the same masks every time
VAL_MASK_SEED = 10_000

DEFAULT_MLM_TRAIN_PARAMS = dict(
    task="mlm",
    lr=1e-3,
    weight_decay=0.1,
    betas=(0.9, 0.95),
    warmup_steps=100,
    max_steps=1000,
    min_lr_ratio=0.1,
    mask_prob=0.15,
    replace_mask=0.8,
    replace_random=0.1,
    rc_aug=False,
    class_weights=None,
    batch_size=16,
    num_workers=0,
)

# model_params of the masked LM besides the architecture (CaduceusConfig's BACKBONE_PARAMS): how it runs.
RUN_KEYS = ("gradient_checkpointing", "gradient_checkpointing_stride", "scan_backend")
# Every model_params key build_mlm_model uses.
MLM_MODEL_KEYS = ("model_type", "pretrained_path", "backbone_config", *BACKBONE_PARAMS, *RUN_KEYS)


def _rand(shape, generator, device):
    """Uniform [0, 1) numbers; drawn on CPU when a (CPU) generator is given, for reproducibility."""
    if generator is None:
        return torch.rand(shape, device=device)
    return torch.rand(shape, generator=generator).to(device)


def mask_tokens(ids, mask_prob=0.15, replace_mask=0.8, replace_random=0.1, generator=None):
    """BERT-style masking of token ids (B, L).

    Returns (inputs, labels): labels hold the original id at the chosen positions and IGNORE
    elsewhere; N positions (and special tokens) are never chosen.
    """
    eligible = (ids >= A_ID) & (ids <= T_ID)
    chosen = eligible & (_rand(ids.shape, generator, ids.device) < mask_prob)
    labels = torch.where(chosen, ids, torch.full_like(ids, IGNORE))
    action = _rand(ids.shape, generator, ids.device)
    inputs = ids.clone()
    inputs[chosen & (action < replace_mask)] = MASK_ID
    to_random = chosen & (action >= replace_mask) & (action < replace_mask + replace_random)
    random_bases = (A_ID + _rand(ids.shape, generator, ids.device) * 4).long().clamp(max=T_ID)
    inputs[to_random] = random_bases[to_random]
    return inputs, labels


def build_mlm_model(model_params: dict) -> CaduceusForMaskedLM:
    """A CaduceusForMaskedLM from gReLU-style model_params: the architecture (every entry of
    ``core.config.BACKBONE_PARAMS``) or ``pretrained_path`` (an HF-format folder or hub name), and
    ``RUN_KEYS``. Any other key is refused with a ValueError naming the valid ones. ``backbone_config``
    (a CaduceusConfig dict, recorded by checkpoints of a model started from ``pretrained_path``)
    builds the architecture alone, untrained, for a state dict to fill."""
    unknown = set(model_params) - set(MLM_MODEL_KEYS)
    if unknown:
        raise ValueError(unknown_options_message("The masked LM", unknown, MLM_MODEL_KEYS))
    architecture = {k: v for k, v in model_params.items() if k in BACKBONE_PARAMS}
    if model_params.get("backbone_config") is not None:
        model = CaduceusForMaskedLM(CaduceusConfig.from_dict(model_params["backbone_config"]))
    elif model_params.get("pretrained_path"):
        if architecture:
            raise ValueError(f"The masked LM got pretrained_path and architecture parameters "
                             f"{', '.join(sorted(architecture))}: the pretrained folder fixes the architecture; "
                             "give one or the other.")
        model = load_pretrained(model_params["pretrained_path"]).train()
    else:
        model = CaduceusForMaskedLM(CaduceusConfig.from_params(architecture, owner="The masked LM"))
    stride = model_params.get("gradient_checkpointing_stride", 1)
    model.backbone.gradient_checkpointing_stride = stride  # a bad stride fails even when off
    if model_params.get("gradient_checkpointing", False):
        model.gradient_checkpointing_enable(stride=stride)
    model.set_scan_backend(model_params.get("scan_backend", "auto"))
    return model


class MLMLightningModel(LightningModel):
    """gReLU LightningModel for masked-LM pretraining of Caduceus.

    model_params: model_type "CaduceusForMaskedLM", then CaduceusConfig fields (d_model, n_layer,
    rcps, ...; d_state, d_conv, expand) or ``pretrained_path`` (an HF-format folder).
    train_params: see DEFAULT_MLM_TRAIN_PARAMS (AdamW with linear warm-up then cosine decay to
    ``min_lr_ratio * lr`` at ``max_steps``; ``rc_aug`` reverse-complements half of each batch, as for
    Caduceus-Ph; ``class_weights`` weights the loss per target base A,C,G,T).

    Logged metrics: {train,val}_loss (cross-entropy), {train,val}_accuracy (on every chosen site),
    val_mask_accuracy (on the sites replaced by [MASK] only), val_perplexity.
    """

    def __init__(self, model_params: dict, train_params: dict = {}):
        train_params = {**DEFAULT_MLM_TRAIN_PARAMS, **train_params, "task": "mlm"}
        model_params = {"model_type": "CaduceusForMaskedLM", **model_params}
        super().__init__(model_params=model_params, train_params=train_params)

    # --- gReLU hooks -------------------------------------------------------------------------
    def build_model(self) -> None:
        self.model = build_mlm_model(self.model_params)

    def on_save_checkpoint(self, checkpoint: dict) -> None:
        super().on_save_checkpoint(checkpoint)
        if self.model_params.get("pretrained_path") and checkpoint.get("hyper_parameters"):
            # the checkpoint reloads without the pretrained folder: the architecture from its config,
            # the weights from the state dict (new dicts: the hyper-parameters alias model_params)
            hparams = checkpoint["hyper_parameters"]
            checkpoint["hyper_parameters"] = {**hparams, "model_params": {
                **hparams["model_params"], "backbone_config": self.model.config.to_dict()}}

    def initialize_loss(self) -> None:
        weights = self.train_params.get("class_weights")
        if weights is not None:
            if len(weights) != 4:
                raise ValueError(f"class_weights needs 4 values (A, C, G, T), got {weights}.")
            full = torch.ones(self.model.config.padded_vocab_size)
            full[A_ID : T_ID + 1] = torch.tensor(weights, dtype=torch.float32)
            self.register_buffer("class_weight", full, persistent=False)
        else:
            self.class_weight = None

    def initialize_activation(self) -> None:
        self.activation = nn.Identity()

    def initialize_metrics(self) -> None:
        self.val_sums = torch.zeros(5, dtype=torch.float64)  # loss * n, correct, n, at [MASK]: correct, n

    # --- forward / steps -----------------------------------------------------------------------
    def forward(self, x, logits: bool = True):
        """x: one-hot (B, 4|5, L) or token ids (B, L) -> logits (B, L, V)."""
        return self.model(x)

    def _ids(self, batch):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return x if not x.is_floating_point() else onehot_to_ids(x)

    def masked_loss(self, ids, generator=None, mask_token_counts: bool = False):
        """Masks ``ids``, runs the model; returns (loss, n_correct, n_chosen).

        The chosen sites include those left unchanged or given a random base (BERT's 10% + 10%);
        ``mask_token_counts`` also returns (n_correct, n) over the sites replaced by [MASK] alone,
        the sites on which context-only baselines are compared."""
        if self.train_params["rc_aug"] and self.training:
            flip = torch.rand(ids.shape[0], device=ids.device) < 0.5
            comp = self.model.complement_index().to(ids.device)
            ids = torch.where(flip[:, None], rc_ids(ids, comp), ids)
        p = self.train_params
        inputs, labels = mask_tokens(ids, p["mask_prob"], p["replace_mask"], p["replace_random"], generator)
        logits = self.model(inputs)
        n = (labels != IGNORE).sum()
        if n == 0:
            # Nothing to predict (e.g. an all-N batch): cross_entropy would return NaN; a zero loss
            # keeps the graph, gives zero gradients and keeps logged means finite.
            loss = logits.sum() * 0.0
        else:
            loss = F.cross_entropy(logits.flatten(0, 1).float(), labels.flatten(), weight=self.class_weight,
                                   ignore_index=IGNORE)
        hits = logits.argmax(-1) == labels
        correct = (hits & (labels != IGNORE)).sum()
        if mask_token_counts:
            at_mask = (inputs == MASK_ID) & (labels != IGNORE)
            return loss, correct, n, (hits & at_mask).sum(), at_mask.sum()
        return loss, correct, n

    def training_step(self, batch, batch_idx):
        loss, correct, n = self.masked_loss(self._ids(batch))
        bs = self._ids(batch).shape[0]
        self.log("train_loss", loss, prog_bar=True, batch_size=bs)
        self.log("train_accuracy", correct / n.clamp(min=1), batch_size=bs)
        self.log("lr", self.trainer.optimizers[0].param_groups[0]["lr"], batch_size=bs)
        return loss

    def validation_step(self, batch, batch_idx):
        # A fixed mask per batch index makes validation numbers comparable across epochs and runs.
        g = torch.Generator().manual_seed(VAL_MASK_SEED + batch_idx)
        loss, correct, n, correct_at_mask, n_at_mask = self.masked_loss(self._ids(batch), generator=g,
                                                                        mask_token_counts=True)
        self.val_sums += torch.tensor([loss.item() * n.item(), correct.item(), n.item(), correct_at_mask.item(),
                                       n_at_mask.item()], dtype=torch.float64)
        return loss

    def on_validation_epoch_start(self):
        self.val_sums = torch.zeros(5, dtype=torch.float64)

    def on_validation_epoch_end(self):
        total_loss, correct, n, correct_at_mask, n_at_mask = self.val_sums.tolist()
        n = max(n, 1.0)
        loss = total_loss / n
        self.log("val_loss", loss, prog_bar=True, sync_dist=True)
        self.log("val_accuracy", correct / n, prog_bar=True, sync_dist=True)
        self.log("val_mask_accuracy", correct_at_mask / max(n_at_mask, 1.0), sync_dist=True)
        self.log("val_perplexity", math.exp(min(loss, 50.0)), sync_dist=True)

    def test_step(self, batch, batch_idx):
        return self.validation_step(batch, batch_idx)

    def predict_step(self, batch, batch_idx, dataloader_idx=0):
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        return self.model(x)

    # --- optimisation ----------------------------------------------------------------------------
    def configure_optimizers(self):
        p = self.train_params
        decay, no_decay = [], []
        for name, param in self.model.named_parameters():
            if not param.requires_grad:
                continue
            skip = getattr(param, "_no_weight_decay", False) or param.ndim < 2 or "norm" in name
            (no_decay if skip else decay).append(param)
        optimizer = torch.optim.AdamW(
            [{"params": decay, "weight_decay": p["weight_decay"]}, {"params": no_decay, "weight_decay": 0.0}],
            lr=p["lr"], betas=tuple(p["betas"]),
        )
        schedule = warmup_cosine(p["warmup_steps"], p["max_steps"], p["min_lr_ratio"])
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, schedule)
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def warmup_cosine(warmup_steps: int, max_steps: int, min_ratio: float = 0.1):
    """LR multiplier: linear warm-up to 1, then cosine decay to ``min_ratio`` at ``max_steps``."""

    def factor(step):
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        progress = min(1.0, (step - warmup_steps) / max(1, max_steps - warmup_steps))
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return factor


__all__ = ["MLMLightningModel", "mask_tokens", "build_mlm_model", "warmup_cosine", "IGNORE", "N_ID", "VAL_MASK_SEED"]


def build_mlm_trainer(train_params: dict, out_dir, extra_callbacks=(), resuming: bool = False,
                      resume_hint: str | None = None, **overrides) -> pl.Trainer:
    """The project's Trainer (:func:`grelu_caduceus.training.build_trainer`) for masked-LM pretraining,
    with the run-folder layout: checkpoints/{step*,last,best}.ckpt and logs/metrics.csv.

    Args:
        train_params: MLM train_params (max_steps, val_check_interval, clip, accumulate_grad_batches,
            precision, strategy, devices, seed, checkpoint_every, save_best, logger, progress_bar ...).
        out_dir: the run folder.
        extra_callbacks: added to the checkpoint callbacks (a ``callbacks`` override replaces them).
        resuming: keep the earlier rows of logs/metrics.csv.
        resume_hint: printed after Ctrl-C, to say how to resume.
        **overrides: Trainer settings of build_trainer (max_steps, num_nodes, limit_val_batches, ...);
            any other pl.Trainer argument is passed to Lightning as it is.
    """
    from pathlib import Path

    from ..training import TRAINER_DEFAULTS, build_trainer

    p = train_params
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    best = False
    if p.get("save_best", True):
        best = dict(dirpath=str(ckpt_dir), filename="best", monitor="val_loss", mode="min", save_top_k=1,
                    enable_version_counter=False)
    settings = dict(
        checkpoint=best,
        callbacks=[
            run_folder_checkpoint(ckpt_dir, filename="step{step}", save_last=True,
                                  every_n_train_steps=p.get("checkpoint_every", 500), save_top_k=-1),
            SaveOnInterrupt(ckpt_dir, resume_hint or "call train_mlm again with resume='auto'"),
            *extra_callbacks,
        ],
        logger=run_folder_logger(p.get("logger"), out_dir, resuming=resuming,
                                 wandb_project=p.get("wandb_project", "grelu-caduceus")),
        save_dir=str(out_dir),
        # pretraining runs by steps: no epoch limit, frequent logging, no sanity pass or summary
        max_epochs=p.get("max_epochs", -1),
        log_every_n_steps=p.get("log_every_n_steps", 10),
        enable_progress_bar=p.get("progress_bar", True),
        num_sanity_val_steps=0,
        enable_model_summary=False,
    )
    lightning_only = {k: v for k, v in overrides.items() if k not in TRAINER_DEFAULTS}
    settings.update({k: v for k, v in overrides.items() if k in TRAINER_DEFAULTS})
    if lightning_only:
        settings["trainer_kwargs"] = {**(settings.get("trainer_kwargs") or {}), **lightning_only}
    return build_trainer(p, **settings)


def train_mlm(model: MLMLightningModel, train_dataset, val_dataset, out_dir, resume="auto", extra_callbacks=(),
              resume_hint: str | None = None,
              corrupt_hint: str = "resume from a complete checkpoint (e.g. checkpoints/step*.ckpt) or start afresh "
                                  "(resume=None)",
              **trainer_overrides):
    """Pretrain ``model`` on datasets of one-hot windows and write checkpoints under ``out_dir``.

    Args:
        model: an MLMLightningModel; its train_params hold batch_size, num_workers, max_steps,
            val_check_interval, clip, accumulate_grad_batches, precision, strategy, devices, seed,
            checkpoint_every (steps), logger ("csv" | "wandb" | None).
        train_dataset, val_dataset: torch datasets yielding (4, L) one-hot tensors.
        out_dir: checkpoints go to out_dir/checkpoints (last.ckpt and the best by val_loss), logs to
            out_dir/logs.
        resume: "auto" resumes from out_dir/checkpoints/last.ckpt if it exists; a path resumes from it;
            None starts afresh.
        extra_callbacks: Lightning callbacks added to the checkpoint callbacks (e.g. progress logging).
        resume_hint: what to print after Ctrl-C about resuming (the caller knows its own command).
        corrupt_hint: the fix named when the checkpoint to resume from is truncated or corrupt.
        trainer_overrides: passed to the Lightning Trainer.

    Returns:
        The Lightning Trainer after fitting.
    """
    from pathlib import Path

    from torch.utils.data import DataLoader

    p = model.train_params
    out_dir = Path(out_dir)
    ckpt_dir = out_dir / "checkpoints"
    ckpt_path = None
    if resume == "auto":
        last = ckpt_dir / "last.ckpt"
        ckpt_path = str(last) if last.exists() else None
    elif resume:
        ckpt_path = str(resume)
    trainer = build_mlm_trainer(p, out_dir, extra_callbacks=extra_callbacks, resuming=ckpt_path is not None,
                                resume_hint=resume_hint, **trainer_overrides)
    loader = dict(batch_size=p["batch_size"], num_workers=p["num_workers"],
                  persistent_workers=p["num_workers"] > 0)
    train_loader = DataLoader(train_dataset, shuffle=True, drop_last=len(train_dataset) > p["batch_size"], **loader)
    val_loader = DataLoader(val_dataset, shuffle=False, **loader) if val_dataset is not None else None
    fit(trainer, model, train_loader, val_loader, ckpt_path=ckpt_path, corrupt_hint=corrupt_hint)
    return trainer
