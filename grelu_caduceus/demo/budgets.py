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


def resolve_budget(budget: str | DemoBudget) -> DemoBudget:
    """A budget by name (a key of BUDGETS) or as given; clear error for an unknown name."""
    from ..errors import UserError

    if isinstance(budget, DemoBudget):
        return budget
    if budget not in BUDGETS:
        raise UserError(f"unknown budget {budget!r}; choose one of {', '.join(BUDGETS)}.")
    return BUDGETS[budget]


__all__ = ["BUDGETS", "DemoBudget", "FINETUNE_TASKS", "FinetuneTask", "resolve_budget"]
