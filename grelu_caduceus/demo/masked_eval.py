"""Masked accuracy of the language model and of the baselines on the same sites and inputs.

A :class:`MaskedEvalSet` holds held-out windows masked exactly as ``MLMLightningModel``'s
validation masks them (batch i with the generator seed ``VAL_MASK_SEED + i``), so the numbers here
and the training-time validation curve can be compared on the same windows; every predictor, the
model and each baseline, is scored on the same (row, column) sites of the same corrupted input.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from ..core.tokens import A_ID, MASK_ID, T_ID
from .baselines import ids_to_bases


@dataclass
class MaskedEvalSet:
    """Held-out windows with fixed masks: exactly the masks of MLMLightningModel's validation.

    ids, inputs: (n, L) token ids before / after masking; labels: (n, L), -100 where not chosen.
    """

    ids: torch.Tensor
    inputs: torch.Tensor
    labels: torch.Tensor

    @classmethod
    def build(cls, ids: torch.Tensor, batch_size: int, mask_params: dict | None = None) -> "MaskedEvalSet":
        """Mask ``ids`` (n, L) as validation does, in batches of ``batch_size`` (the validation loader's).

        Args:
            mask_params: the model's train_params (mask_prob, replace_mask, replace_random);
                default the MLM defaults.
        """
        from ..tasks.mlm import DEFAULT_MLM_TRAIN_PARAMS, VAL_MASK_SEED, mask_tokens

        p = {**DEFAULT_MLM_TRAIN_PARAMS, **(mask_params or {})}
        inputs, labels = [], []
        for batch_idx, start in enumerate(range(0, len(ids), batch_size)):
            g = torch.Generator().manual_seed(VAL_MASK_SEED + batch_idx)
            x, y = mask_tokens(ids[start : start + batch_size], p["mask_prob"], p["replace_mask"],
                               p["replace_random"], g)
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
    result = {"n_windows": int(len(eval_set.ids)), "baselines": {}, "baselines_all_chosen": {},
              "baselines_clean_context": {}}
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


__all__ = ["MaskedEvalSet", "evaluate_masked", "model_predictions", "paired_bootstrap_ci"]
