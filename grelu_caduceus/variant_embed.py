"""Reference and alternate embeddings of a window around each single-base variant.

    from grelu_caduceus.variant_embed import embed_variants
    result = embed_variants("kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16",
                            "calls.vcf.gz", "hg38.fa", window=16384, pool_window=1536)
    result.table, result.ref, result.alt      # (N rows), (N, H), (N, H)

The model reads ``window`` bp centred on the variant (the variant base at index ``window // 2``;
bases beyond the chromosome are N), once with the reference base and once with the alternate
base. Its per-position features are averaged (or max-pooled) over the central ``pool_window`` bp
(default: the whole window) with the same pooling as :func:`grelu_caduceus.embed.embed_intervals`.
This is the Caduceus authors' VEP embedding (their ``vep_embeddings.py``: 1536 bp averaged around
the SNP inside a longer context).

Variants are read with :func:`grelu_caduceus.vep.read_variants` (VCF or a chrom/pos/ref/alt table),
and their ref alleles checked against the genome with :func:`grelu_caduceus.vep.check_reference`.
Only single-base A/C/G/T substitutions are embedded; others are skipped with one counted warning
(or refused, ``indels="error"``).

Strands: by default as in :func:`grelu_caduceus.embed.load_embedder` (Caduceus-PS is strand
symmetric; Ph is conjoined; others read the forward strand). With ``both_strands=True`` the
forward-strand features and the reverse-complement-strand features (flipped back along the
length) are pooled separately into ``ref``/``alt`` and ``ref_rc``/``alt_rc``, which is what the
paper's probe needs to conjoin at train and/or test time.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np
import pandas as pd
import torch

from .core.tokens import rc_onehot
from .data.genome import FastaGenome, one_hot_encode
from .embed import EmbedError, Embedder, _pool, load_embedder
from .vep import _is_snv, check_reference, read_variants


@dataclass
class VariantEmbeddings:
    """Result of :func:`embed_variants`.

    Attributes:
        table: the embedded variants (chrom, pos, ref, alt and any other input columns, plus
            ``ref_match``, ``window_start`` (0-based start of the window read) and
            ``pool_start``/``pool_end`` (0-based, the region pooled)).
        ref, alt: (N, H) float32 pooled features of the reference and alternate windows (rows of
            variants kept despite a ref mismatch, ``on_mismatch="warn"``, are NaN).
        ref_rc, alt_rc: the same for the reverse-complement strand (``both_strands=True`` only).
        description: how strands were combined.
        n_skipped: variants skipped because they are not single-base substitutions.
    """

    table: pd.DataFrame
    ref: np.ndarray
    alt: np.ndarray
    ref_rc: np.ndarray | None
    alt_rc: np.ndarray | None
    description: str
    n_skipped: int = 0


def snv_table(variants, genome: FastaGenome, on_mismatch: str = "error", indels: str = "skip"):
    """Read and check variants; keep the SNVs. Returns (table with ``ref_match``, n_skipped)."""
    if indels not in ("skip", "error"):
        raise EmbedError(f"indels must be 'skip' or 'error', got {indels!r}.")
    table = read_variants(variants)
    if len(table) == 0:
        raise EmbedError("The variants file has no variants.")
    is_snv = np.array([_is_snv(r, a) for r, a in zip(table.ref, table.alt)], bool)
    n_other = int((~is_snv).sum())
    if n_other:
        examples = ", ".join(f"{r.chrom}:{r.pos} {r.ref}>{r.alt}" for r in table[~is_snv].head(3).itertuples())
        if indels == "error":
            raise EmbedError(f"{n_other} of {len(table)} variant(s) are not single-base A/C/G/T substitutions "
                             f"(e.g. {examples}); embeddings are defined for SNVs only. Remove them, or skip them "
                             "with --indels skip.")
        warnings.warn(f"{n_other} of {len(table)} variant(s) are not single-base A/C/G/T substitutions (indels, "
                      f"symbolic alleles or ref == alt, e.g. {examples}); they are skipped.")
        table = table[is_snv].reset_index(drop=True)
        if len(table) == 0:
            raise EmbedError("No single-base substitutions left to embed.")
    table = check_reference(table, genome, on_mismatch)
    return table, n_other


def variant_windows(table: pd.DataFrame, window: int, pool_window: int | None = None) -> pd.DataFrame:
    """``window_start`` and the pooled ``pool_start``/``pool_end`` (0-based) of each variant's window."""
    if int(window) < 1:
        raise EmbedError(f"window must be a positive number of bases, got {window}.")
    pool_window = int(window) if pool_window is None else int(pool_window)
    if not 1 <= pool_window <= window:
        raise EmbedError(f"pool window must be between 1 and the window ({window} bp), got {pool_window}.")
    start = table["pos"].to_numpy(np.int64) - 1 - int(window) // 2
    lo = (int(window) - pool_window) // 2  # pooled: [lo, window - lo) of the window
    return pd.DataFrame({"window_start": start, "pool_start": start + lo, "pool_end": start + int(window) - lo})


@torch.no_grad()
def embed_variants(model, variants, genome, window: int = 1024, pool_window: int | None = None, pool: str = "mean",
                   rc_average: bool | None = None, both_strands: bool = False, on_mismatch: str = "error",
                   indels: str = "skip", batch_size: int = 8, device=None, progress: bool = True,
                   trust_pickle: bool = False, revision: str | None = None) -> VariantEmbeddings:
    """Pooled embeddings of the reference and alternate windows of each SNV.

    Args:
        model: see :func:`grelu_caduceus.embed.load_embedder` (or an Embedder).
        variants: VCF / table path or DataFrame (chrom, pos 1-based, ref, alt), see ``vep.read_variants``.
        genome: FASTA path (plain or bgzip) or FastaGenome of the variants' assembly.
        window: bp the model reads, centred on the variant.
        pool_window: bp pooled, centred on the variant (default: the window; if ``window -
            pool_window`` is odd one more base is pooled, to stay centred).
        pool: "mean" or "max".
        rc_average: conjoin with the reverse-complement pass (see load_embedder); ignored with
            ``both_strands``.
        both_strands: also return the reverse-complement strand's pooled features separately.
        on_mismatch: ref alleles that differ from the genome: "error" (names the rows), "warn" (kept,
            NaN embeddings) or "drop" (see ``vep.check_reference``).
        indels: non-SNVs: "skip" (one counted warning) or "error".
        batch_size: variants per forward pass (each pass reads ref and alt windows).
        device, trust_pickle, revision: see load_embedder.
        progress: show a progress bar.
    """
    from tqdm.auto import tqdm

    if pool not in ("mean", "max"):
        raise EmbedError(f"pool must be 'mean' or 'max', got {pool!r}.")
    if isinstance(model, Embedder):
        embedder = model
    else:
        embedder = load_embedder(model, False if both_strands else rc_average, trust_pickle, revision, device)
    if embedder.max_len is not None and window > embedder.max_len:
        raise EmbedError(f"A window of {window} bp exceeds the model's longest input ({embedder.max_len} bp): "
                         "use a smaller --window.")
    if window % embedder.bin_size:
        suggestion = max(window // embedder.bin_size, 1) * embedder.bin_size
        raise EmbedError(f"The model bins its output in {embedder.bin_size}-bp steps: give a window that is a "
                         f"multiple of {embedder.bin_size} bp (e.g. {suggestion}), so the variant sits at a fixed "
                         "place in its bin.")
    if embedder.module is not None:
        device = next(embedder.module.parameters()).device
    genome = genome if isinstance(genome, FastaGenome) else FastaGenome(genome)
    table, n_skipped = snv_table(variants, genome, on_mismatch, indels)
    windows = variant_windows(table, window, pool_window)
    lo = int(windows.pool_start.iloc[0] - windows.window_start.iloc[0])
    n, centre = len(table), window // 2
    shape = (n, embedder.hidden_size)
    ref = np.full(shape, np.nan, np.float32)
    alt = np.full(shape, np.nan, np.float32)
    ref_rc = np.full(shape, np.nan, np.float32) if both_strands else None
    alt_rc = np.full(shape, np.nan, np.float32) if both_strands else None
    rows = np.flatnonzero(table.ref_match.to_numpy())
    bar = tqdm(total=len(rows), desc="embed variants", unit="variant", disable=not progress)
    for first in range(0, len(rows), batch_size):
        chunk = rows[first:first + batch_size]
        ref_x, alt_x = [], []
        for j in chunk:
            seq = genome.fetch(table.chrom.iloc[j], int(windows.window_start.iloc[j]),
                               int(windows.window_start.iloc[j]) + window)
            ref_x.append(one_hot_encode(seq))
            alt_x.append(one_hot_encode(seq[:centre] + table.alt.iloc[j] + seq[centre + 1:]))
        x = torch.stack(ref_x + alt_x).to(device)
        pooled = _pool(embedder.features(x), window, lo, pool).cpu().numpy()
        ref[chunk], alt[chunk] = pooled[:len(chunk)], pooled[len(chunk):]
        if both_strands:
            if embedder.strand_symmetric:
                rc_pooled = pooled
            else:
                rc_pooled = _pool(embedder.features(rc_onehot(x)).flip(1), window, lo, pool).cpu().numpy()
            ref_rc[chunk], alt_rc[chunk] = rc_pooled[:len(chunk)], rc_pooled[len(chunk):]
        bar.update(len(chunk))
    bar.close()
    table = pd.concat([table.reset_index(drop=True), windows], axis=1)
    if both_strands:
        description = ("strand symmetric (" + embedder.description + ")" if embedder.strand_symmetric
                       else "forward and reverse-complement strands pooled separately")
    else:
        description = embedder.description
    return VariantEmbeddings(table, ref, alt, ref_rc, alt_rc, description, n_skipped)


def save_variant_embeddings(path, result: VariantEmbeddings, **metadata):
    """Write ``ref_embeddings``, ``alt_embeddings`` (and ``*_rc_embeddings``) plus the variant columns to .npz."""
    from pathlib import Path

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"ref_embeddings": result.ref, "alt_embeddings": result.alt}
    if result.ref_rc is not None:
        arrays.update(ref_rc_embeddings=result.ref_rc, alt_rc_embeddings=result.alt_rc)
    for column in result.table.columns:
        values = result.table[column].to_numpy()
        arrays[column] = values.astype(str) if values.dtype == object else values
    arrays.update({k: np.asarray(str(v)) for k, v in metadata.items()})
    with open(path, "wb") as f:
        np.savez(f, **arrays)
    return path


__all__ = ["VariantEmbeddings", "embed_variants", "save_variant_embeddings", "snv_table", "variant_windows"]
