"""Context-only baselines of the masked-accuracy comparison, fitted on the bases of a model's training DNA.

Both predict a base code 0..3 (A, C, G, T) at given sites of a (B, L) array of base codes, where 4
is anything the predictor cannot read (N, [MASK], special tokens), i.e. the model's own input.

A k-mer context model is its count table; :meth:`KmerContextModel.save` stores it (the shipped
pretrained model's baselines, ``kmer_context_k5.npz`` beside its weights) and
:func:`baselines_from_counts` rebuilds every baseline of lower k from one stored table.
"""

from __future__ import annotations

from pathlib import Path

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

    @classmethod
    def from_counts(cls, base_counts) -> "MostFrequentBase":
        """From the counts of A, C, G, T (shape (4,))."""
        model = cls()
        model.best = int(np.argmax(base_counts))
        return model

    def predict(self, inputs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        return np.full(len(rows), self.best, dtype=np.int64)


class KmerContextModel:
    """Predicts a base from the k bases on each side, by counts over the training sequence.

    ``predict`` sees the same corrupted input as the language model: a neighbour that is [MASK]
    or N is unknown and is summed out of the count table (the Bayes-optimal use of the counts);
    a neighbour replaced by a random base is taken as it reads, as the model must.

    The count table (:meth:`counts_table`) has shape ``(4,) * (2k + 1)``: one axis per neighbour,
    offsets -k..-1 then 1..k, then the centre base; it counts every training position whose 2k
    neighbours and centre are all A, C, G or T.
    """

    def __init__(self, k: int):
        if k < 1:
            raise ValueError(f"k must be >= 1, got {k}.")
        self.k = k
        self.name = f"kmer_context_k{k}"

    @property
    def offsets(self) -> list[int]:
        return list(range(-self.k, 0)) + list(range(1, self.k + 1))

    def fit(self, bases: np.ndarray) -> "KmerContextModel":
        """bases: int codes (L,), 4 = N. Counts of (context, centre) over every clean window."""
        k, L = self.k, len(bases)
        centre = bases[k : L - k]
        ok = centre < 4
        code = np.zeros(max(0, L - 2 * k), np.int64)
        for off in self.offsets:
            neighbour = bases[k + off : L - k + off]
            ok &= neighbour < 4
            code = code * 4 + np.minimum(neighbour, 3)
        counts = np.bincount(code[ok] * 4 + centre[ok], minlength=4 ** (2 * k + 1))
        return self._set_counts(counts.reshape((4,) * (2 * k + 1)))

    @classmethod
    def from_counts(cls, counts) -> "KmerContextModel":
        """The model of a count table (see the class docstring; any integer dtype), e.g. one that
        :meth:`counts_table` returned or :meth:`load` read; k is read from its shape."""
        counts = np.asarray(counts)
        if counts.ndim < 3 or counts.ndim % 2 == 0 or set(counts.shape) != {4}:
            raise ValueError(f"a k-mer context count table has shape (4,) * (2k + 1), got {counts.shape}.")
        return cls((counts.ndim - 1) // 2)._set_counts(counts)

    def _set_counts(self, counts: np.ndarray) -> "KmerContextModel":
        self._counts = counts.astype(np.int64)
        centre = self.centre_counts()
        self._prior = centre / max(1, int(centre.sum()))
        # Ties (unseen contexts) go to the overall most frequent centre base (then to the first):
        # predict takes the argmax of 4 * count + rank, rank 3 for the most frequent base.
        self._tie_break = np.empty(4, np.int64)
        self._tie_break[np.argsort(-centre, kind="stable")] = np.arange(3, -1, -1)
        return self

    def counts_table(self) -> np.ndarray:
        """The integer count table (int64, shape (4,) * (2k + 1))."""
        return self._counts

    def centre_counts(self) -> np.ndarray:
        """Counts of A, C, G, T at the counted positions, shape (4,)."""
        return self._counts.reshape(-1, 4).sum(0)

    def with_k(self, k: int) -> "KmerContextModel":
        """The model with k bases either side (k <= self.k), by summing out the outer neighbours.

        This differs from fitting k directly only at the edges of the training pieces (next to an N
        or an end): a centre within self.k of an edge has no clean self.k-context, so this table does
        not count it, while a direct fit with the smaller k may.
        """
        if not 1 <= k <= self.k:
            raise ValueError(f"k must be between 1 and {self.k}, got {k}.")
        drop = self.k - k  # outer neighbours on each side: axes 0..drop-1 and the last drop before the centre
        axes = tuple(range(drop)) + tuple(range(2 * self.k - drop, 2 * self.k))
        return KmerContextModel.from_counts(self._counts.sum(axis=axes))

    def save(self, path) -> Path:
        """Write the count table compactly, in the smallest unsigned dtype that holds it, as an
        ``np.savez_compressed`` file (array ``counts``) with a fixed timestamp, so that equal counts
        give equal bytes."""
        import zipfile

        path = Path(path)
        counts = self._counts.astype(np.min_scalar_type(int(self._counts.max())))
        entry = zipfile.ZipInfo("counts.npy", date_time=(1980, 1, 1, 0, 0, 0))
        entry.compress_type = zipfile.ZIP_DEFLATED
        with zipfile.ZipFile(path, "w", compresslevel=9) as archive, archive.open(entry, "w", force_zip64=True) as f:
            np.lib.format.write_array(f, counts, allow_pickle=False)
        return path

    @classmethod
    def load(cls, path) -> "KmerContextModel":
        """The model of a count table written by :meth:`save`."""
        with np.load(path) as stored:
            return cls.from_counts(stored["counts"])

    def _site_counts(self, neighbours: np.ndarray, pattern: int) -> np.ndarray:
        """(n, 4) counts of the centre bases at n sites that share one unknown-neighbour ``pattern``
        (bit i: neighbour i unknown, summed out); neighbours: (n, 2k) codes."""
        known = [i for i in range(2 * self.k) if not pattern >> i & 1]
        unknown = [i for i in range(2 * self.k) if pattern >> i & 1]
        n = len(neighbours)
        if not known:
            return np.broadcast_to(self.centre_counts(), (n, 4))
        index = tuple(neighbours[:, i] for i in known)
        if n * 4 ** len(unknown) <= self._counts.size // 4:
            # Few sites: gather each site's 4^u contexts rather than summing the whole table.
            table = self._counts.transpose(known + unknown + [2 * self.k])
            return table[index].reshape(n, -1, 4).sum(1)
        return self._counts.sum(axis=tuple(unknown))[index]

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
            sel = np.flatnonzero(pattern == p)
            contexts = 4 ** int(unknown[sel[0]].sum())  # contexts summed into each count
            counts = self._site_counts(np.where(unknown[sel], 0, neighbours[sel]), int(p))
            counts = counts + 1e-6 * contexts * self._prior + alpha
            probs[sel] = counts / counts.sum(1, keepdims=True)
        return probs

    def predict(self, inputs: np.ndarray, rows: np.ndarray, cols: np.ndarray) -> np.ndarray:
        """inputs: base codes (B, L) as the model saw them (4 = unknown); rows, cols: the sites."""
        neighbours, unknown, pattern = self._neighbours(inputs, rows, cols)
        prediction = np.empty(len(rows), np.int64)
        for p in np.unique(pattern):
            sel = np.flatnonzero(pattern == p)
            counts = self._site_counts(np.where(unknown[sel], 0, neighbours[sel]), int(p))
            prediction[sel] = (4 * counts + self._tie_break).argmax(1)
        return prediction


def fit_baselines(train_bases: np.ndarray, ks=(1, 2, 3, 4)) -> list:
    """The demo's baselines, fitted on base codes of the training DNA: the most frequent base and
    k-mer context models for each k."""
    return [MostFrequentBase().fit(train_bases)] + [KmerContextModel(k).fit(train_bases) for k in ks]


def baselines_from_counts(model: KmerContextModel) -> list:
    """The baselines of one stored count table: the most frequent (centre) base and the k-mer
    context models for k = 1..model.k, lower k summed out of it (see KmerContextModel.with_k)."""
    return [MostFrequentBase.from_counts(model.centre_counts())] + [model.with_k(k) for k in range(1, model.k + 1)]


__all__ = ["KmerContextModel", "MostFrequentBase", "baselines_from_counts", "fit_baselines", "ids_to_bases"]
