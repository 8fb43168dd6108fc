"""The demo's run sizes (``--budget``) and the bundled labelled tasks it can fine-tune on."""

from __future__ import annotations

from dataclasses import dataclass


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


@dataclass(frozen=True)
class DemoBudget:
    """Sizes of one demo run (see :mod:`grelu_caduceus.demo` for its stages).

    ``default`` is sized for 2 CPU cores: fine-tuning the shipped d_model 64 x 4-layer model costs
    about 1.5-3 s a step of 64 x 200 bp there, so each fine-tune gets 5 epochs (90 steps) at a
    learning rate that gets there in that time (3e-3; 1e-3 needed about 8 epochs for the same
    validation AUROC). The whole default run took 512 s on 2 AMD EPYC cores shared with another job.
    """

    name: str
    # 1. masked accuracy of the pretrained model on the held-out region
    eval_seq_len: int  # window length: the shipped model's training windows (MANIFEST: training.seq_len)
    eval_windows: int | None  # non-overlapping held-out windows (None: the whole region)
    # 2-3. fine-tuning the pretrained model and the same architecture from scratch on a bundled
    # task (see FINETUNE_TASKS), with the same budget and checkpoint selection
    finetune_task: str
    finetune_epochs: int
    finetune_lr: float
    finetune_pool: str  # "max" or "avg" over positions
    finetune_batch_size: int
    finetune_train_size: int | None  # None: all training sequences
    finetune_val_every: int  # steps between validations
    finetune_monitor_size: int  # class-balanced val subset watched during fine-tuning
    eval_size: int | None  # sequences of val/test for the reported AUROCs (None: all)
    # 4. a short masked-LM pretraining of the demo's own on the demo genome's train region
    own_d_model: int
    own_n_layer: int
    own_seq_len: int
    own_batch_size: int
    own_max_steps: int
    own_lr: float
    own_warmup_steps: int
    own_val_windows: int  # held-out windows spread evenly over the val region (training-time val)
    own_eval_windows: int | None  # non-overlapping held-out windows for its reported accuracy (None: whole region)
    own_val_every: int  # steps between validations
    # 5. interpretation
    n_attributions: int


BUDGETS = {
    "quick": DemoBudget("quick", eval_seq_len=1024, eval_windows=8,
                        finetune_task="atac", finetune_epochs=1, finetune_lr=1e-3, finetune_pool="avg",
                        finetune_batch_size=32, finetune_train_size=256, finetune_val_every=4,
                        finetune_monitor_size=64, eval_size=128,
                        own_d_model=32, own_n_layer=1, own_seq_len=256, own_batch_size=8, own_max_steps=12,
                        own_lr=3e-3, own_warmup_steps=3, own_val_windows=8, own_eval_windows=16, own_val_every=6,
                        n_attributions=2),
    "default": DemoBudget("default", eval_seq_len=1024, eval_windows=None,
                          finetune_task="atac", finetune_epochs=5, finetune_lr=3e-3, finetune_pool="avg",
                          finetune_batch_size=64, finetune_train_size=None, finetune_val_every=18,
                          finetune_monitor_size=400, eval_size=None,
                          own_d_model=32, own_n_layer=2, own_seq_len=512, own_batch_size=16, own_max_steps=150,
                          own_lr=3e-3, own_warmup_steps=15, own_val_windows=64, own_eval_windows=None,
                          own_val_every=50, n_attributions=4),
    "full": DemoBudget("full", eval_seq_len=1024, eval_windows=None,
                       finetune_task="atac", finetune_epochs=16, finetune_lr=1e-3, finetune_pool="avg",
                       finetune_batch_size=32, finetune_train_size=None, finetune_val_every=36,
                       finetune_monitor_size=1000, eval_size=None,
                       own_d_model=128, own_n_layer=4, own_seq_len=1024, own_batch_size=16, own_max_steps=4000,
                       own_lr=2e-3, own_warmup_steps=200, own_val_windows=128, own_eval_windows=None,
                       own_val_every=500, n_attributions=8),
}


def resolve_budget(budget: str | DemoBudget) -> DemoBudget:
    """A budget by name (a key of BUDGETS) or as given; clear error for an unknown name."""
    from ..errors import UserError

    if isinstance(budget, DemoBudget):
        return budget
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}.")
    return BUDGETS[budget]


__all__ = ["BUDGETS", "DemoBudget", "FINETUNE_TASKS", "FinetuneTask", "resolve_budget"]
