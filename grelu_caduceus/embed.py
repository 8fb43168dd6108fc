"""Sequence embeddings: one pooled vector per genomic interval, from Caduceus, HyenaDNA or a gReLU model.

    from grelu_caduceus.embed import embed_intervals
    table, embeddings = embed_intervals("kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16",
                                        "hg38.fa", "peaks.bed", window=1024)

The model sees each interval (or a window of ``window`` bp centred on it), optionally with
``context`` bp of extra sequence on both sides, and its per-position hidden states over the
interval/window (not the context) are averaged (or max-pooled) into one vector.

Strands, as in the Caduceus paper: a Caduceus-PS backbone's hidden states are two halves whose
second half is the reverse-complement stream with its channels reversed; the embedding is the
forward half plus the channel-flipped second half, averaged (``(a + flip(b)) / 2``), so an
interval and its reverse complement get the same pooled vector. Caduceus-Ph (and, on request,
any other model) is conjoined post hoc: the features of the reverse complement, flipped back along
the length, are averaged with those of the forward strand.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd
import torch

from .core.tokens import combine_ps_halves, conjoin
from .data.genome import (FastaGenome, GenomeDataError, WindowTally, check_intervals_in_bounds, one_hot_encode,
                          read_intervals)
from .data.intervals import centred_starts
from .errors import UserError


class EmbedError(UserError, ValueError):
    """Inputs that cannot be embedded (bad model, intervals or options); the message says why."""


@dataclass
class Embedder:
    """Per-position features of a one-hot batch.

    Attributes:
        features: (N, 4, L) one-hot -> (N, L_out, H) features; L_out is L for the language models and
            may be shorter (binned) for gReLU models, whose positions are then mapped proportionally.
        hidden_size: H.
        family: "caduceus", "hyenadna" or "grelu".
        description: how strands are combined (for the output's metadata).
        max_len: longest input the model takes (None: any).
        module: the torch module behind ``features`` (for its device; None for plain functions).
        strand_symmetric: ``features`` of a sequence and of its reverse complement (flipped back
            along the length) agree by construction (Caduceus-PS), so a second strand pass adds nothing.
        bin_size: bp per output position of a binned gReLU trunk (128 for Enformer; 1: per base).
    """

    features: Callable[[torch.Tensor], torch.Tensor]
    hidden_size: int
    family: str
    description: str
    max_len: int | None = None
    module: torch.nn.Module | None = None
    strand_symmetric: bool = False
    bin_size: int = 1


# --------------------------------------------------------------------------- models
def _conjoined(fn, on: bool):
    if not on:
        return fn
    return lambda x: conjoin(fn, x)


def caduceus_embedder(backbone, rc_average: bool | None = None) -> Embedder:
    """Features of a CaduceusBackbone: PS halves combined the paper's way; Ph conjoined by default."""
    rcps = bool(backbone.config.rcps)
    conjoin = (not rcps) if rc_average is None else bool(rc_average) and not rcps

    def features(x):
        h = backbone(x.to(backbone.norm_f.weight.dtype))
        return combine_ps_halves(h) if rcps else h

    how = "PS: (forward half + channel-flipped RC half) / 2" if rcps else (
        "Ph: conjoined with the reverse-complement pass" if conjoin else "Ph: forward strand only")
    return Embedder(_conjoined(features, conjoin), backbone.config.d_model, "caduceus", how, None, backbone,
                    strand_symmetric=rcps)


def hyena_embedder(backbone, rc_average: bool | None = None) -> Embedder:
    """Final normalised hidden states of a HyenaDNA backbone (causal: forward strand unless rc_average)."""

    def features(x):
        return backbone(inputs_embeds=backbone.embed_onehot(x))

    how = "conjoined with the reverse-complement pass" if rc_average else "forward strand only"
    return Embedder(_conjoined(features, bool(rc_average)), backbone.config.d_model, "hyenadna", how,
                    backbone.config.l_max, backbone)


def grelu_embedder(lm, rc_average: bool | None = None) -> Embedder:
    """The trunk (``model.embedding``) of a gReLU LightningModel of ours or of gReLU's own models."""
    from .models.caduceus import CaduceusTrunk
    from .models.hyenadna import HyenaDNATrunk

    model = getattr(lm, "model", lm)
    trunk = getattr(model, "embedding", None)
    if isinstance(trunk, CaduceusTrunk):
        conjoin = trunk.conjoin if rc_average is None else rc_average
        return caduceus_embedder(trunk.backbone, rc_average=conjoin)
    if isinstance(trunk, HyenaDNATrunk):
        conjoin = getattr(model, "conjoin", False) if rc_average is None else rc_average
        return hyena_embedder(trunk.backbone, rc_average=conjoin)
    if trunk is None:
        raise EmbedError(f"{type(model).__name__} has no trunk (model.embedding) to take embeddings from.")

    def features(x):
        return trunk(x).transpose(1, 2)

    probe = features(torch.zeros(1, 4, 256, device=next(trunk.parameters()).device))
    how = "conjoined with the reverse-complement pass" if rc_average else "forward strand only"
    n_out = int(probe.shape[1])
    bin_size = 256 // n_out if n_out and 256 % n_out == 0 else 1
    return Embedder(_conjoined(features, bool(rc_average)), int(probe.shape[-1]), "grelu", how, None, trunk,
                    bin_size=bin_size)


def load_embedder(model, rc_average: bool | None = None, trust_pickle: bool = False, revision: str | None = None,
                  device=None) -> Embedder:
    """An Embedder for a model object or a path/hub name.

    Args:
        model: a Caduceus HF-format folder or hub name; a HyenaDNA released folder or hub name
            (LongSafari layout or ``*-hf``); a gReLU checkpoint (.ckpt) of one of our models (a masked
            LM or a fine-tuned predictor) or of gReLU's own (e.g. an Enformer); Enformer's published
            weights (``Genentech/enformer-model`` or a local ``human_state_dict.h5``, see
            ``grelu_caduceus.enformer``); or a model object (CaduceusForMaskedLM, a backbone, a
            gReLU LightningModel).
        rc_average: conjoin with the reverse-complement pass (default: Caduceus-Ph and models trained
            conjoined yes, others no; PS is strand-symmetric by construction).
        trust_pickle: allow weight files that need full unpickling (see ``core.hub.read_weight_file``).
        revision: hub revision, for a hub name.
        device: torch device.
    """
    if device is not None:
        from .devices import check_device

        device = check_device(device)
    embedder = _load(model, rc_average, trust_pickle, revision)
    if embedder.module is not None:
        embedder.module.eval()
        if device is not None:
            embedder.module.to(device)
    return embedder


def _load(model, rc_average, trust_pickle, revision) -> Embedder:
    from .core import CaduceusBackbone, CaduceusForMaskedLM
    from .hyena import HyenaDNABackbone

    if isinstance(model, CaduceusForMaskedLM):
        return caduceus_embedder(model.backbone, rc_average)
    if isinstance(model, CaduceusBackbone):
        return caduceus_embedder(model, rc_average)
    if isinstance(model, HyenaDNABackbone):
        return hyena_embedder(model, rc_average)
    if isinstance(model, torch.nn.Module):
        inner = getattr(model, "model", None)
        if isinstance(inner, CaduceusForMaskedLM):  # MLMLightningModel
            return caduceus_embedder(inner.backbone, rc_average)
        if hasattr(inner, "backbone") and isinstance(inner.backbone, HyenaDNABackbone):
            return hyena_embedder(inner.backbone, rc_average)
        return grelu_embedder(model, rc_average)
    if not isinstance(model, (str, os.PathLike)):
        raise EmbedError(f"Cannot take embeddings from a {type(model).__name__}: pass a model or a path/hub name.")
    from .enformer import is_enformer_reference, load_enformer

    if is_enformer_reference(model):  # Genentech/enformer-model or a local human_state_dict.h5
        return grelu_embedder(load_enformer(model), rc_average)
    from .checkpoint_files import resolve_run_folder

    path = resolve_run_folder(model)  # a training run folder: its best.ckpt (else last.ckpt)
    if path.is_file():
        return _load_checkpoint_file(path, rc_average)
    from .core.hub import resolve_checkpoint_folder

    folder = resolve_checkpoint_folder(str(model), revision=revision)
    if folder.is_file():
        return _load_checkpoint_file(folder, rc_average)
    if _is_hyena_folder(folder):
        from .hyena.pretrained import load_pretrained as load_hyena

        return hyena_embedder(load_hyena(folder, trust_pickle=trust_pickle).backbone, rc_average)
    from .core import load_pretrained

    return caduceus_embedder(load_pretrained(folder, trust_pickle=trust_pickle).backbone, rc_average)


def _is_hyena_folder(folder: Path) -> bool:
    import json

    config = folder / "config.json"
    if not config.is_file():
        return (folder / "weights.ckpt").is_file()
    try:
        cfg = json.loads(config.read_text())
    except (OSError, ValueError):
        return False
    return "hyena" in str(cfg.get("model_type", "")).lower() or "layer" in cfg or (folder / "weights.ckpt").is_file()


def _load_checkpoint_file(path: Path, rc_average) -> Embedder:
    if path.suffix != ".ckpt":
        raise EmbedError(f"{path} is a file but not a gReLU checkpoint (.ckpt): give a .ckpt, a model folder "
                         "(config.json + weights) or a hub name.")
    from .checkpoint_files import checkpoint_model_params
    from .inference import load_checkpoint

    params = checkpoint_model_params(path)
    if not params:
        raise EmbedError(f"{path} has no model_params: is it a checkpoint written by gReLU / grelu-caduceus?")
    masked_lm = params.get("model_type") == "CaduceusForMaskedLM"
    lm = load_checkpoint(path, masked_lm=masked_lm)
    return caduceus_embedder(lm.model.backbone, rc_average) if masked_lm else grelu_embedder(lm, rc_average)


# --------------------------------------------------------------------------- intervals
def embedding_windows(intervals: pd.DataFrame, window: int | None = None, context: int = 0) -> pd.DataFrame:
    """Where each interval is read and pooled.

    Returns a frame with ``pool_start``/``pool_end`` (the interval, or the centred ``window``) and
    ``read_start``/``read_end`` (the pooled region with ``context`` bp more on each side).
    """
    if context < 0:
        raise EmbedError(f"context must be >= 0 bp, got {context}.")
    start = intervals["start"].to_numpy(np.int64)
    end = intervals["end"].to_numpy(np.int64)
    if (end <= start).any():
        row = intervals[end <= start].iloc[0]
        raise EmbedError(f"Interval {row.chrom}:{row.start}-{row.end} is empty: BED end must be larger than start.")
    if window is not None:
        if int(window) < 1:
            raise EmbedError(f"window must be a positive number of bases, got {window}.")
        start = centred_starts(start, end, int(window))
        end = start + int(window)
    return pd.DataFrame({"pool_start": start, "pool_end": end, "read_start": start - context,
                         "read_end": end + context})


def _pool(features: torch.Tensor, length: int, context: int, pool: str) -> torch.Tensor:
    """Pool (N, L_out, H) features over the input positions [context, length - context)."""
    n_out = features.shape[1]
    lo = (context * n_out) // length
    hi = max(lo + 1, -((-(length - context) * n_out) // length))
    region = features[:, lo:hi].float()
    return region.mean(1) if pool == "mean" else region.amax(1)


@torch.no_grad()
def embed_intervals(model, fasta, intervals, window: int | None = None, context: int = 0, pool: str = "mean",
                    rc_average: bool | None = None, batch_size: int = 8, device=None, progress: bool = True,
                    trust_pickle: bool = False, revision: str | None = None):
    """One embedding per interval.

    Args:
        model: see :func:`load_embedder` (or an Embedder).
        fasta: FASTA path (plain or bgzip) or FastaGenome.
        intervals: BED path or DataFrame with chrom, start, end (0-based, end-exclusive).
        window: pool over a window of this many bp centred on each interval instead of the interval.
        context: bp of extra sequence on each side that the model sees but that is not pooled.
        pool: "mean" or "max" over positions.
        rc_average, trust_pickle, revision, device: see :func:`load_embedder`.
        batch_size: windows per forward pass (windows of equal length are batched together).
        progress: show a progress bar.

    Returns:
        (table, embeddings): the intervals (chrom, start, end, and the BED name when there is one) with the
        pooled region (``pool_start``, ``pool_end``), and a
        float32 array (N, H).
    """
    from tqdm.auto import tqdm

    if pool not in ("mean", "max"):
        raise EmbedError(f"pool must be 'mean' or 'max', got {pool!r}.")
    embedder = model if isinstance(model, Embedder) else load_embedder(model, rc_average, trust_pickle, revision,
                                                                       device)
    if embedder.module is not None:
        device = next(embedder.module.parameters()).device
    genome = fasta if isinstance(fasta, FastaGenome) else FastaGenome(fasta)
    table = read_intervals(intervals, "intervals", keep_name=True)  # an empty BED is a GenomeDataError
    # predict's interval rule (data.genome): a known chromosome, end > start, wholly inside it
    source = "intervals" if isinstance(intervals, pd.DataFrame) else f"intervals file {intervals}"
    check_intervals_in_bounds(table, genome, source)
    windows = embedding_windows(table, window, context)
    lengths = (windows.read_end - windows.read_start).to_numpy()
    if embedder.max_len is not None and lengths.max() > embedder.max_len:
        raise EmbedError(f"Windows of up to {lengths.max()} bp exceed the model's longest input "
                         f"({embedder.max_len} bp): use a smaller --window/--context.")
    out = np.zeros((len(table), embedder.hidden_size), dtype=np.float32)
    order = np.argsort(lengths, kind="stable")
    # a window that runs past a chromosome end (only through --window / --context) is padded with N,
    # and one warning counts such windows, as in predict; letters go through the same rule
    read_start = windows.read_start.to_numpy(np.int64)
    padded = (read_start < 0) | (windows.read_end.to_numpy(np.int64) > table.chrom.map(genome.sizes).to_numpy(np.int64))

    def describe(j: int) -> str:
        return (f"row {j + 1}: {table.chrom.iat[j]}:{table.start.iat[j]}-{table.end.iat[j]}, read "
                f"{read_start[j]}-{windows.read_end.iat[j]}")

    tally = WindowTally(source, describe)
    bar = tqdm(total=len(table), desc="embed", unit="interval", disable=not progress)
    i = 0
    while i < len(order):
        same = order[i:][lengths[order[i:]] == lengths[order[i]]][:batch_size]
        x = torch.stack([one_hot_encode(tally.clean(genome.fetch(table.chrom.iloc[j], int(read_start[j]),
                                                                 int(windows.read_end.iloc[j])), int(j),
                                                    padded=bool(padded[j]))) for j in same])
        feats = embedder.features(x.to(device))
        out[same] = _pool(feats, x.shape[-1], context, pool).cpu().numpy()
        bar.update(len(same))
        i += len(same)
    bar.close()
    for rows in tally.rows.values():  # windows were read shortest first: name the first rows in BED order
        rows.sort()
    tally.warn(int(lengths[0]) if len(set(lengths.tolist())) == 1 else None)
    table = table.copy()
    table["pool_start"], table["pool_end"] = windows.pool_start.to_numpy(), windows.pool_end.to_numpy()
    return table, out


@torch.no_grad()
def embed_onehot(embedder: Embedder, x: torch.Tensor, pool_len: int | None = None, pool: str = "mean",
                 batch_size: int = 8) -> np.ndarray:
    """Pooled embeddings (N, H) of one-hot sequences already in memory, as :func:`embed_intervals` pools them.

    Args:
        embedder: from :func:`load_embedder`.
        x: float (N, 4, L) one-hot (N: an all-zero column).
        pool_len: average over the central ``pool_len`` bp (None: the whole sequence); the flanks
            are context the model sees but that is not pooled.
        pool: "mean" or "max".
        batch_size: sequences per forward pass.

    A binned gReLU trunk (Enformer: 128 bp) gets the sequence padded with N on both sides to a
    multiple of its bin size; the pooled region is mapped onto its bins proportionally.
    """
    if pool not in ("mean", "max"):
        raise EmbedError(f"pool must be 'mean' or 'max', got {pool!r}.")
    length = int(x.shape[-1])
    pool_len = length if pool_len is None else int(pool_len)
    if not 0 < pool_len <= length:
        raise EmbedError(f"pool_len must be between 1 and the sequence length {length}, got {pool_len}.")
    if embedder.max_len is not None and length > embedder.max_len:
        raise EmbedError(f"Sequences of {length} bp exceed the model's longest input ({embedder.max_len} bp).")
    bin_size = max(1, int(embedder.bin_size))
    pad = (-length) % bin_size if bin_size > 1 else 0
    left = pad // 2
    context = left + (length - pool_len) // 2
    device = next(embedder.module.parameters()).device if embedder.module is not None else x.device
    out = []
    for i in range(0, len(x), batch_size):
        xb = x[i:i + batch_size].float()
        if pad:
            xb = torch.nn.functional.pad(xb, (left, pad - left))
        feats = embedder.features(xb.to(device))
        out.append(_pool(feats, length + pad, context, pool).cpu())
    if not out:
        return np.zeros((0, embedder.hidden_size), dtype=np.float32)
    return torch.cat(out).numpy().astype(np.float32)


def save_embeddings(path, table: pd.DataFrame, embeddings: np.ndarray, **metadata) -> Path:
    """Write ``embeddings`` (N, H) and the table's columns (plain arrays, no pickles) to an .npz."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {"embeddings": embeddings}
    for column in table.columns:
        values = table[column].to_numpy()
        arrays[column] = values.astype(str) if values.dtype == object else values
    arrays.update({k: np.asarray(str(v)) for k, v in metadata.items()})
    with open(path, "wb") as f:  # a file handle: numpy would add ".npz" to any other name
        np.savez(f, **arrays)
    return path


__all__ = ["EmbedError", "Embedder", "embed_intervals", "embed_onehot", "embedding_windows", "load_embedder", "save_embeddings",
           "GenomeDataError"]
