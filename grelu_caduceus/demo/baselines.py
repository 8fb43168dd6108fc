"""Context-only baselines of the masked-accuracy comparison, fitted on the train region's bases.

Both predict a base code 0..3 (A, C, G, T) at given sites of a (B, L) array of base codes, where 4
is anything the predictor cannot read (N, [MASK], special tokens), i.e. the model's own input.
"""

from __future__ import annotations

import numpy as np
import torch

from ..core.tokens import A_ID, T_ID


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

    def _neighbours(self, inputs: np.ndarray, rows: np.ndarray, cols: np.ndarray):
        L = inputs.shape[1]
        neighbours = np.stack([np.where((cols + off >= 0) & (cols + off < L),
                                        inputs[rows, np.clip(cols + off, 0, L - 1)], 4) for off in self.offsets], 1)
        unknown = neighbours >= 4  # (n, 2k)
        pattern = (unknown * (1 << np.arange(2 * self.k))).sum(1)
        return neighbours, unknown, pattern

    def predict_proba(self, inputs: np.ndarray, rows: np.ndarray, cols: np.ndarray, alpha: float = 0.5) -> np.ndarray:
        """(n, 4) probabilities of A, C, G, T at the sites: the counts of the readable context (unknown
        neighbours summed out) plus ``alpha`` per base."""
        neighbours, unknown, pattern = self._neighbours(inputs, rows, cols)
        probs = np.empty((len(rows), 4))
        for p in np.unique(pattern):
            sel = pattern == p
            axes = tuple(i for i in range(2 * self.k) if p >> i & 1)
            table = self.counts.sum(axis=axes, keepdims=True) + alpha
            index = tuple(np.where(unknown[sel, i], 0, neighbours[sel, i]) for i in range(2 * self.k))
            counts = table[index].reshape(-1, 4)
            probs[sel] = counts / counts.sum(1, keepdims=True)
        return probs

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


def fit_baselines(train_bases: np.ndarray, ks=(1, 2, 3, 4)) -> list:
    """The demo's baselines, fitted on base codes of the train region: the most frequent base and
    k-mer context models for each k."""
    return [MostFrequentBase().fit(train_bases)] + [KmerContextModel(k).fit(train_bases) for k in ks]


__all__ = ["KmerContextModel", "MostFrequentBase", "fit_baselines", "ids_to_bases"]
