"""Zero-shot variant-effect scores from a Caduceus masked language model.

For a single-base substitution at 1-based ``pos``, a window of ``window`` bp centred on the variant
is read from the genome, the variant base is replaced by [MASK], and the model's distribution over
A, C, G, T at that site gives

    llr = log p(alt | context) - log p(ref | context)

(negative: the model finds the alternate allele less likely than the reference). With
``rc_average`` the same is computed on the reverse-complement strand (the site mirrored, the
alleles complemented) and the two are averaged; for RC-equivariant Caduceus-PS both strands agree
exactly, for Caduceus-Ph this is post-hoc conjoining. Optionally ``embedding_distance`` is the
Euclidean distance between the window-averaged embeddings of the reference and alternate sequences.

Variants are a gReLU-style table (columns chrom, pos (1-based), ref, alt) or a VCF file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from .checkpoint_files import checkpoint_model_params, load_lightning_checkpoint
from .core import CaduceusForMaskedLM, load_pretrained
from .core.tokens import A_ID, MASK_ID, combine_ps_halves, conjoin, rc_ids, strings_to_ids
from .data.genome import FastaGenome, WindowTally
from .data.variants import (VARIANT_COLUMNS, VariantInputError, genome_ref_alleles, read_variants, read_vcf,
                            reference_matches)

BASES = "ACGT"


class ReferenceMismatchError(ValueError):
    """The ``ref`` allele of one or more variants differs from the genome at that position."""


# --------------------------------------------------------------------------- reference check
def _as_genome(genome) -> FastaGenome:
    return genome if isinstance(genome, FastaGenome) else FastaGenome(genome)


def check_reference(variants: pd.DataFrame, genome, on_mismatch: str = "error") -> pd.DataFrame:
    """Compare each variant's ``ref`` allele with the genome.

    Args:
        variants: table with chrom, pos (1-based), ref.
        genome: FASTA path or FastaGenome.
        on_mismatch: "error" raises ReferenceMismatchError naming the first mismatches; "warn" warns
            and keeps them (their scores are set to NaN by the scorers); "drop" warns and removes them.

    Returns:
        The variants with a boolean column ``ref_match``.
    """
    if on_mismatch not in ("error", "warn", "drop"):
        raise ValueError(f"on_mismatch must be 'error', 'warn' or 'drop', got {on_mismatch!r}.")
    genome = _as_genome(genome)
    variants = variants.copy()
    for chrom in variants.chrom.unique():
        genome.check_chrom(chrom)
    bad_pos = variants[(variants.pos < 1) | (variants.pos > variants.chrom.map(genome.sizes))]
    if len(bad_pos):
        r = bad_pos.iloc[0]
        raise VariantInputError(
            f"{len(bad_pos)} variant(s) lie outside their chromosome, e.g. {r.chrom}:{r.pos} (length "
            f"{genome.sizes[r.chrom]}). Positions are 1-based; check the assembly (hg19 vs hg38)."
        )
    variants["ref_match"] = reference_matches(variants, genome)
    bad = variants[~variants.ref_match]
    if len(bad):
        examples = "; ".join(f"{r.chrom}:{r.pos} ref {r.ref} but genome has {g}"
                             for r, g in zip(bad.head(3).itertuples(), genome_ref_alleles(bad.head(3), genome)))
        message = (f"{len(bad)} of {len(variants)} variant(s) have a ref allele that differs from the genome "
                   f"({examples}). Check that the genome is the variants' assembly and that pos is 1-based.")
        if on_mismatch == "error":
            # (in Python: on_mismatch="warn" or "drop")
            raise ReferenceMismatchError(message + " To score the others anyway, add --on-mismatch warn (NaN "
                                                   "scores for these) or --on-mismatch drop.")
        warnings.warn(message + (" They are dropped." if on_mismatch == "drop" else " Their scores are NaN."))
        if on_mismatch == "drop":
            variants = variants[variants.ref_match].reset_index(drop=True)
    return variants


# --------------------------------------------------------------------------- context windows
def _variant_tally(table: pd.DataFrame, window: int, rows=None) -> WindowTally:
    """Counts, over the variants' context windows, the letter rule's fix-ups (see data.genome.WindowTally).

    Window i is that of variant ``rows[i]`` of ``table`` (default: variant i), named by its row (1-based)."""
    def describe(i: int) -> str:
        row = int(rows[i]) if rows is not None else i
        return f"variant {row + 1} ({table.chrom.iat[row]}:{table.pos.iat[row]})"

    return WindowTally(f"vep: {window} bp context windows", describe)


def _read_window(genome: FastaGenome, tally: WindowTally, row: int, chrom: str, start: int, length: int) -> str:
    """The window [start, start + length) of variant ``row`` through the letter rule: IUPAC codes read as N,
    bases past the chromosome's ends padded with N, both counted in ``tally``."""
    padded = start < 0 or start + length > genome.sizes[chrom]
    return tally.clean(genome.fetch(chrom, start, start + length), int(row), padded=padded)


def _variant_dataset(table: pd.DataFrame, rows: np.ndarray, genome: FastaGenome, seq_len: int, rc: bool):
    """gReLU's VariantDataset of the variants ``rows`` of ``table``, with its windows read by our FASTA
    reader: the same windows, alleles and augmentation, but IUPAC codes read as N and windows past a
    chromosome end padded with N (gReLU would stop with KeyError or ValueError), each counted in one
    warning."""
    from grelu.data.dataset import VariantDataset
    from grelu.sequence.format import strings_to_indices
    from grelu.sequence.utils import resize
    from grelu.variant import variants_to_intervals

    class GenomeVariantDataset(VariantDataset):
        def _load_seqs(self, variants: pd.DataFrame) -> None:
            self.intervals = variants_to_intervals(variants, seq_len=self.seq_len)
            self.padded_seq_len = self.seq_len + (2 * self.max_seq_shift)
            windows = resize(self.intervals, seq_len=self.padded_seq_len)
            tally = _variant_tally(table, self.padded_seq_len, rows)
            seqs = [_read_window(genome, tally, row, c, int(s), self.padded_seq_len)
                    for row, (c, s) in enumerate(windows[["chrom", "start"]].itertuples(index=False))]
            tally.warn(self.padded_seq_len, stacklevel=5)
            self.seqs = strings_to_indices(seqs)

    return GenomeVariantDataset(table.iloc[rows][VARIANT_COLUMNS].reset_index(drop=True), seq_len=seq_len, rc=rc)


# --------------------------------------------------------------------------- model loading
def load_masked_lm(model) -> CaduceusForMaskedLM:
    """A CaduceusForMaskedLM from a model object, an MLMLightningModel, a masked-LM .ckpt, a masked-LM
    training run folder (its best.ckpt, else last.ckpt) or an HF-format folder (config.json + weights).
    A fine-tuned predictor's checkpoint is a ValueError: score it with :func:`score_variants_finetuned`."""
    if isinstance(model, CaduceusForMaskedLM):
        return model
    inner = getattr(model, "model", None)
    if isinstance(inner, CaduceusForMaskedLM):  # MLMLightningModel
        return inner
    if isinstance(model, (str, os.PathLike)):
        from .checkpoint_files import resolve_run_folder

        path = resolve_run_folder(model)  # a training run folder: its best.ckpt (else last.ckpt)
        if path.is_file() and path.suffix == ".ckpt":
            model_type = checkpoint_model_params(path).get("model_type")
            if model_type != "CaduceusForMaskedLM":
                raise ValueError(
                    f"{path} is a checkpoint of a {model_type!r} model, not a Caduceus masked LM: zero-shot "
                    "scores need the masked-LM head. For a fine-tuned model add --finetuned."
                )
            from .tasks.mlm import MLMLightningModel

            return load_lightning_checkpoint(path, MLMLightningModel).model
        from .core.hub import is_hub_name

        if path.is_dir() or is_hub_name(str(model)):
            return load_pretrained(path if path.is_dir() else str(model))
        raise FileNotFoundError(
            f"Model {path} not found: give a masked-LM .ckpt (from `grelu-caduceus demo` or "
            "`grelu-caduceus train task=mlm`) or an HF-format Caduceus folder."
        )
    raise TypeError(f"Cannot use a {type(model).__name__} as a masked LM: pass a CaduceusForMaskedLM, an "
                    "MLMLightningModel or a path.")


# --------------------------------------------------------------------------- scoring
def _is_snv(ref: str, alt: str) -> bool:
    return len(ref) == 1 and len(alt) == 1 and ref in BASES and alt in BASES and ref != alt


def _strand_features(model: CaduceusForMaskedLM, ids: torch.Tensor) -> torch.Tensor:
    """Backbone features (B, L, d) with PS halves combined so both strands give flipped features."""
    hidden = model.backbone(ids)
    return combine_ps_halves(hidden) if model.config.rcps else hidden


@torch.no_grad()
def score_variants_zero_shot(
    model,
    variants,
    genome,
    window: int = 1024,
    rc_average: bool = True,
    embedding_distance: bool = False,
    batch_size: int = 16,
    device=None,
    on_mismatch: str = "error",
    progress: bool = True,
) -> pd.DataFrame:
    """Masked-marginal log-likelihood ratios of single-base substitutions.

    Args:
        model: CaduceusForMaskedLM, MLMLightningModel, masked-LM .ckpt path or HF-format folder.
        variants: DataFrame (chrom, pos 1-based, ref, alt) as in gReLU, or a VCF/table path.
        genome: FASTA path (plain or bgzip) or FastaGenome of the variants' assembly.
        window: context length in bp centred on the variant (bases beyond the chromosome are N).
        rc_average: average with the reverse-complement strand (site mirrored, alleles complemented).
        embedding_distance: also report the L2 distance between the window-averaged backbone
            embeddings of the reference and alternate sequences (column ``embedding_distance``).
        batch_size: windows per forward pass.
        device: torch device (default: the model's).
        on_mismatch: what to do with variants whose ref differs from the genome, see check_reference.
        progress: show a progress bar when there is more than one batch.

    Returns:
        The variants with columns ``ref_match``, ``llr`` (NaN for non-SNVs and mismatched refs),
        ``logp_ref``, ``logp_alt`` and optionally ``embedding_distance``.
    """
    if window < 1:
        raise ValueError(f"window must be a positive number of bases, got {window}.")
    from .devices import check_device

    device = check_device(device) if device is not None else None
    net = load_masked_lm(model)
    device = device if device is not None else next(net.parameters()).device
    was_training = net.training
    net.eval().to(device)
    genome = _as_genome(genome)
    table = check_reference(read_variants(variants), genome, on_mismatch)
    scorable = np.array([m and _is_snv(r, a) for m, r, a in zip(table.ref_match, table.ref, table.alt)], bool)
    n_other = int((table.ref_match & ~scorable).sum())
    if n_other:
        warnings.warn(f"{n_other} variant(s) are not single-base A/C/G/T substitutions (indels, symbolic or "
                      "ref == alt); masked-marginal scores are defined for SNVs only, so their llr is NaN.")
    n = len(table)
    logp_ref, logp_alt = np.full(n, np.nan), np.full(n, np.nan)
    distances = np.full(n, np.nan)
    centre = window // 2
    comp = net.complement_index().to(device)
    base_ids = torch.tensor([A_ID + i for i in range(4)], device=device)
    rows = np.flatnonzero(scorable)
    tally = _variant_tally(table, window)
    from tqdm.auto import tqdm

    batches = range(0, len(rows), batch_size)
    for first in tqdm(batches, desc=f"vep ({len(rows)} variants)", unit="batch",
                      disable=not progress or len(batches) < 2):
        chunk = table.iloc[rows[first : first + batch_size]]
        seqs = [_read_window(genome, tally, row, c, p - 1 - centre, window)
                for row, (c, p) in zip(rows[first : first + batch_size], chunk[["chrom", "pos"]].itertuples(index=False))]
        ref_ids = strings_to_ids(seqs).to(device)  # (b, window)
        masked = ref_ids.clone()
        masked[:, centre] = MASK_ID
        ref_idx = torch.tensor([BASES.index(r) for r in chunk.ref], device=device)
        alt_idx = torch.tensor([BASES.index(a) for a in chunk.alt], device=device)
        site_logp = torch.log_softmax(net(masked)[:, centre][:, base_ids].float(), -1)  # (b, 4) over A,C,G,T
        if rc_average:
            rc_logits = net(rc_ids(masked, comp))[:, window - 1 - centre][:, base_ids].float()
            # On the other strand base i reads as its complement 3 - i (A,C,G,T order).
            site_logp = (site_logp + torch.log_softmax(rc_logits, -1).flip(-1)) / 2
        arange = torch.arange(len(chunk), device=device)
        logp_ref[rows[first : first + batch_size]] = site_logp[arange, ref_idx].cpu().numpy()
        logp_alt[rows[first : first + batch_size]] = site_logp[arange, alt_idx].cpu().numpy()
        if embedding_distance:
            alt_ids = ref_ids.clone()
            alt_ids[:, centre] = A_ID + alt_idx
            both = torch.cat([ref_ids, alt_ids])
            if rc_average and not net.config.rcps:
                features = conjoin(lambda ids: _strand_features(net, ids), both, rc=lambda ids: rc_ids(ids, comp))
            else:
                features = _strand_features(net, both)
            pooled = features.float().mean(1)
            ref_emb, alt_emb = pooled.chunk(2)
            distances[rows[first : first + batch_size]] = (alt_emb - ref_emb).norm(dim=-1).cpu().numpy()
    net.train(was_training)
    tally.warn(window)
    table["logp_ref"], table["logp_alt"] = logp_ref, logp_alt
    table["llr"] = logp_alt - logp_ref
    if embedding_distance:
        table["embedding_distance"] = distances
    return table


@torch.no_grad()
def _predict_variant_dataset(model, dataset, batch_size: int, devices="cpu", progress: bool = True) -> np.ndarray:
    """What gReLU's ``model.predict_on_dataset(dataset, augment_aggfunc="mean")`` returns for a
    VariantDataset, (n variants, 2 alleles, tasks, L_out), computed by a plain forward loop: without a
    Lightning Trainer, which would write ``./lightning_logs/`` in the current folder, warn about
    TensorBoard and show its own "Predicting" bar."""
    from einops import rearrange
    from tqdm.auto import tqdm

    device = torch.device("cpu") if devices in ("cpu", None) else torch.device("cuda", int(devices))
    was_training = model.training
    param = next(model.parameters(), None)
    home = param.device if param is not None else torch.device("cpu")
    model.eval().to(device)
    loader = torch.utils.data.DataLoader(dataset, batch_size=int(batch_size), shuffle=False, num_workers=0)
    try:
        preds = [model(x.to(device)).float().cpu()
                 for x in tqdm(loader, desc=f"vep ({dataset.n_seqs} variants)", unit="batch",
                               disable=not progress or len(loader) < 2)]
    finally:
        model.train(was_training).to(home)
    preds = rearrange(torch.cat(preds), "(b n a) t l -> b n a t l", n=dataset.n_augmented,
                      a=dataset.n_alleles).numpy()
    if dataset.rc and preds.shape[-1] > 1:  # reverse-complement passes: their bins run the other way
        preds[:, dataset.n_augmented // 2:] = np.flip(preds[:, dataset.n_augmented // 2:], axis=-1)
    return preds.mean(axis=1)


def score_variants_finetuned(
    model,
    variants,
    genome,
    seq_len: int | None = None,
    rc_average: bool = True,
    batch_size: int = 64,
    devices="cpu",
    on_mismatch: str = "error",
    progress: bool = True,
) -> pd.DataFrame:
    """Variant effects (alt - ref prediction per task) of a fine-tuned gReLU model, as gReLU's
    ``predict_variant_effects`` computes them (its VariantDataset: windows, alleles, strand averaging).

    Args:
        model: a gReLU LightningModel (e.g. a fine-tuned CaduceusModel), its .ckpt path, a training run
            folder (its best.ckpt, else last.ckpt) or an export-kipoi folder.
        variants: DataFrame (chrom, pos 1-based, ref, alt) or a VCF/table path.
        genome: FASTA path (plain or bgzip) or FastaGenome; windows are read by our reader: IUPAC codes
            read as N and windows past a chromosome end padded with N, each counted in a warning.
        seq_len: input length (default: the training sequence length stored in the checkpoint).
        rc_average: average over both strands.
        devices: gReLU devices ("cpu" or GPU index).
        on_mismatch: see check_reference.
        progress: show a progress bar when there is more than one batch.

    Returns:
        The variants with one column ``effect_<task>`` per task (NaN for mismatched refs).
    """
    if isinstance(model, (str, os.PathLike)):
        from .checkpoint_files import resolve_run_folder
        from .inference import PredictError, load_exported, load_predictor_checkpoint

        path = resolve_run_folder(model)  # a training run folder: its best.ckpt (else last.ckpt)
        if path.is_dir():
            model = load_exported(path)
        elif path.is_file():
            model = load_predictor_checkpoint(path, zero_shot_hint="score it zero-shot (vep without --finetuned), or ")
        else:
            raise PredictError(f"Fine-tuned model {path} not found: give a fine-tuned .ckpt, a training run folder or "
                               "an export-kipoi folder as --model.")
    genome = _as_genome(genome)
    table = check_reference(read_variants(variants), genome, on_mismatch)
    if seq_len is None:
        seq_len = model.data_params.get("train", {}).get("seq_len")
        if seq_len is None:
            raise ValueError("The checkpoint does not record its training sequence length: give it with "
                             "--window (in Python: seq_len).")
    keep = table.ref_match.to_numpy()
    n_tasks = model.model.head.n_tasks
    effects = np.full((len(table), n_tasks), np.nan)
    if keep.any():
        # What gReLU's predict_variant_effects does (compare_func="subtract"), on a VariantDataset whose
        # windows our FASTA reader reads through the letter rule (see _variant_dataset).
        dataset = _variant_dataset(table, np.flatnonzero(keep), genome, int(seq_len), rc_average)
        odds = _predict_variant_dataset(model, dataset, batch_size, devices, progress)  # (n, 2, tasks, L_out)
        effects[keep] = np.asarray(odds[:, 1] - odds[:, 0]).mean(-1)
    names = model.data_params.get("tasks", {}).get("name") or [str(i) for i in range(n_tasks)]
    for i, name in enumerate(names):
        table[f"effect_{name}"] = effects[:, i]
    return table


__all__ = [
    "ReferenceMismatchError",
    "VariantInputError",
    "check_reference",
    "load_masked_lm",
    "read_variants",
    "read_vcf",
    "score_variants_finetuned",
    "score_variants_zero_shot",
]
