"""The Caduceus paper's supervised variant-effect protocol: frozen embeddings + a linear probe,
AUROC by distance to the nearest TSS.

    from grelu_caduceus.vep_probe import run_vep_probe
    report = run_vep_probe("kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16",
                           "eqtl_labelled.tsv", "hg38.fa", "out/", tss="tss.bed",
                           window=16384, pool_window=1536)

As in the Caduceus authors' ``vep_embeddings.py`` / ``vep_svm.ipynb`` (and ``finetuning_glrb``):

- each variant's window (``window`` bp centred on it) is embedded with the reference and with the
  alternate base, and the model's features are averaged over the central ``pool_window`` bp
  (1536 in the paper); the feature vector is ``concat(ref, alt)``, plus the integer-coded tissue
  when the table has a ``tissue`` column;
- strands (``strands="paper"``): Caduceus-PS features are strand symmetric already (the paper
  conjoins them at train and test time, which is the same thing); Caduceus-Ph is trained on the
  forward strand and conjoined (forward and reverse-complement features averaged) at test time;
  HyenaDNA and Enformer read the forward strand only;
- the split is by chromosome (``test_chroms``; or a ``split`` column with train/test), and a
  probe is fitted and tested separately within each distance-to-TSS bucket (0-30 kb, 30-100 kb,
  100 kb+), plus once on all variants (row ``all``).

Where we differ, on purpose: the probe is a standardised logistic regression (or linear / RBF SVM)
whose C is chosen by cross-validation on the training split (the notebook picks C by test AUROC),
and AUROC is computed from its continuous decision scores (the notebook scores hard 0/1
predictions, which understates AUROC).

Outputs in ``out_dir``: ``auroc.csv`` and ``auroc.md`` (one row per bucket), ``predictions.tsv``
(test variants with bucket, label and score) and ``embeddings.npz`` (see ``embed --variants``).
"""

from __future__ import annotations

import gzip
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from .embed import EmbedError, load_embedder
from .variant_embed import embed_variants, save_variant_embeddings

BUCKETS = ((0, 30_000, "0-30kb"), (30_000, 100_000, "30-100kb"), (100_000, np.inf, "100kb+"))
CLASSIFIERS = ("logistic", "linear-svm", "rbf-svm")
STRANDS = ("paper", "forward", "conjoined")
DEFAULT_CS = (0.001, 0.01, 0.1, 1.0, 10.0)


class ProbeError(EmbedError):
    """Inputs the probe cannot use (labels, TSS, split); the message says why."""


# --------------------------------------------------------------------------- TSS distance
def read_tss(path) -> dict[str, np.ndarray]:
    """TSS positions (0-based) per chromosome from a BED: ``start``, or ``end - 1`` on the - strand
    (column 6). A one-base BED of TSSs, or gene/transcript intervals with strand, both work."""
    path = Path(path)
    if not path.is_file():
        raise ProbeError(f"TSS file not found: {path}.")
    opener = gzip.open if path.name.endswith(".gz") else open
    sites: dict[str, list[int]] = {}
    with opener(path, "rt") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip() or line.startswith(("#", "track", "browser")):
                continue
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 2 or not fields[1].strip().isdigit():
                if line_no == 1 or not sites:
                    continue  # a header line
                raise ProbeError(f"{path}:{line_no}: expected BED chrom, start[, end, name, score, strand].")
            start = int(fields[1])
            minus = len(fields) >= 6 and fields[5].strip() == "-" and len(fields) >= 3
            sites.setdefault(fields[0], []).append(int(fields[2]) - 1 if minus else start)
    if not sites:
        raise ProbeError(f"{path} holds no TSS lines.")
    return {chrom: np.sort(np.asarray(v, np.int64)) for chrom, v in sites.items()}


def distance_to_tss(table: pd.DataFrame, tss: dict[str, np.ndarray]) -> np.ndarray:
    """bp from each variant (1-based pos) to the nearest TSS on its chromosome (NaN: none there)."""
    out = np.full(len(table), np.nan)
    pos0 = table["pos"].to_numpy(np.int64) - 1
    chroms = table["chrom"].to_numpy()
    for chrom in np.unique(chroms):
        sites = tss.get(chrom)
        if sites is None or len(sites) == 0:
            continue
        rows = np.flatnonzero(chroms == chrom)
        idx = np.searchsorted(sites, pos0[rows])
        left = sites[np.clip(idx - 1, 0, len(sites) - 1)]
        right = sites[np.clip(idx, 0, len(sites) - 1)]
        out[rows] = np.minimum(np.abs(pos0[rows] - left), np.abs(pos0[rows] - right))
    return out


def bucket_of(distance: np.ndarray) -> np.ndarray:
    """The paper's distance-to-TSS bucket names (0-30kb, 30-100kb, 100kb+); '' for NaN."""
    names = np.full(len(distance), "", dtype=object)
    for lo, hi, name in BUCKETS:
        names[(distance >= lo) & (distance < hi)] = name
    return names


# --------------------------------------------------------------------------- split, labels
def _chrom_key(chrom: str) -> str:
    chrom = str(chrom)
    return chrom[3:].lower() if chrom.lower().startswith("chr") else chrom.lower()


def chromosome_split(table: pd.DataFrame, test_chroms) -> np.ndarray:
    """'train' / 'test' per variant: the table's ``split`` column if it has one, else by chromosome
    (``chr9`` and ``9`` name the same chromosome)."""
    if "split" in table.columns:
        split = table["split"].astype(str).str.lower().to_numpy()
        bad = sorted(set(split) - {"train", "test"})
        if bad:
            raise ProbeError(f"The split column may hold only 'train' and 'test', found {bad}.")
        return split
    test = {_chrom_key(c) for c in test_chroms}
    return np.where([_chrom_key(c) in test for c in table["chrom"]], "test", "train")


def _labels(table: pd.DataFrame, column: str) -> np.ndarray:
    if column not in table.columns:
        raise ProbeError(f"The variants table has no label column {column!r} (columns: {list(table.columns)}); "
                         "give 0/1 labels there or name the column with --label-column.")
    values = pd.to_numeric(table[column].replace({True: 1, False: 0}), errors="coerce").to_numpy()
    if np.isnan(values).any() or not set(np.unique(values)) <= {0, 1}:
        raise ProbeError(f"Labels in column {column!r} must be 0 or 1; found {sorted(set(table[column]))[:5]}.")
    return values.astype(np.int64)


# --------------------------------------------------------------------------- probe
def _classifier(kind: str, C: float, seed: int):
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler
    from sklearn.svm import SVC, LinearSVC

    if kind == "logistic":
        clf = LogisticRegression(C=C, max_iter=5000)
    elif kind == "linear-svm":
        clf = LinearSVC(C=C, max_iter=20000, random_state=seed)
    elif kind == "rbf-svm":
        clf = SVC(C=C, random_state=seed)
    else:
        raise ProbeError(f"classifier must be one of {CLASSIFIERS}, got {kind!r}.")
    return make_pipeline(StandardScaler(), clf)


def fit_probe(X: np.ndarray, y: np.ndarray, kind: str = "logistic", Cs=DEFAULT_CS, seed: int = 0, folds: int = 3):
    """Fit the probe; C by stratified ``folds``-fold cross-validated AUROC on (X, y). Returns (model, C)."""
    from sklearn.metrics import roc_auc_score
    from sklearn.model_selection import StratifiedKFold

    Cs = list(Cs)
    n_minor = int(min(np.bincount(y, minlength=2)))
    if len(Cs) > 1 and n_minor >= folds:
        scores = []
        splitter = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
        for C in Cs:
            fold_scores = []
            for tr, va in splitter.split(X, y):
                model = _classifier(kind, C, seed).fit(X[tr], y[tr])
                fold_scores.append(roc_auc_score(y[va], model.decision_function(X[va])))
            scores.append(np.mean(fold_scores))
        C = Cs[int(np.argmax(scores))]
    else:
        C = 1.0 if 1.0 in Cs or not Cs else Cs[0]
    return _classifier(kind, C, seed).fit(X, y), C


def _features(ref, alt, tissue):
    parts = [ref, alt] + ([tissue[:, None]] if tissue is not None else [])
    return np.concatenate(parts, axis=1).astype(np.float64)


@dataclass
class ProbeReport:
    """Result of :func:`run_vep_probe`: ``metrics`` (one row per bucket, as in auroc.csv), the
    ``predictions`` on the test split, and the files written."""

    metrics: pd.DataFrame
    predictions: pd.DataFrame
    files: dict


def run_vep_probe(model, variants, genome, out_dir, tss=None, tss_column: str | None = None,
                  label_column: str = "label", tissue_column: str | None = "tissue",
                  test_chroms=("chr9", "chr10"), window: int = 1536, pool_window: int | None = 1536,
                  classifier: str = "logistic", Cs=DEFAULT_CS, strands: str = "paper", on_mismatch: str = "error",
                  batch_size: int = 8, device=None, seed: int = 0, progress: bool = True,
                  trust_pickle: bool = False, revision: str | None = None) -> ProbeReport:
    """Embed labelled SNVs, fit a linear probe on the training chromosomes, report test AUROC by
    distance-to-TSS bucket. See the module docstring for the protocol.

    Args:
        model: anything :func:`grelu_caduceus.embed.load_embedder` takes (Caduceus / HyenaDNA folder
            or hub name, a gReLU checkpoint, ``Genentech/enformer-model``, a model object).
        variants: table (TSV/CSV/DataFrame) with chrom, pos (1-based), ref, alt and a 0/1 label column
            (a VCF has no labels).
        genome: FASTA of the variants' assembly.
        out_dir: folder for auroc.csv, auroc.md, predictions.tsv, embeddings.npz.
        tss: BED of TSSs (see :func:`read_tss`), or ``tss_column``: a column with the distance in bp.
        label_column, tissue_column: column names (the tissue column is used if present).
        test_chroms: held-out chromosomes (ignored when the table has a ``split`` column).
        window, pool_window: bp read around each variant, bp averaged (the paper: 1536).
        classifier: "logistic", "linear-svm" or "rbf-svm" (the notebook's SVC).
        Cs: inverse regularisation strengths tried (cross-validated on the training split).
        strands: "paper" (see above), "forward" or "conjoined" (both strands averaged, train and test).
        on_mismatch: see ``vep.check_reference``.
    """
    if (tss is None) == (tss_column is None):
        raise ProbeError("Give the distance to the nearest TSS either as a TSS BED (--tss) or as a column of "
                         "the variants table (--tss-column), not both.")
    if strands not in STRANDS:
        raise ProbeError(f"strands must be one of {STRANDS}, got {strands!r}.")
    if classifier not in CLASSIFIERS:
        raise ProbeError(f"classifier must be one of {CLASSIFIERS}, got {classifier!r}.")
    try:
        import sklearn  # noqa: F401
    except ImportError as err:
        raise ProbeError("vep-probe needs scikit-learn: pip install scikit-learn.") from err
    from .vep import read_variants

    table = read_variants(variants)
    has_split = "split" in table.columns
    _labels(table, label_column)  # fail on bad labels before embedding anything
    if tss_column is not None and tss_column not in table.columns:
        raise ProbeError(f"The variants table has no column {tss_column!r} (columns: {list(table.columns)}).")

    embedder = load_embedder(model, rc_average=False, trust_pickle=trust_pickle, revision=revision, device=device)
    ph_like = embedder.family == "caduceus" and not embedder.strand_symmetric
    need_rc = not embedder.strand_symmetric and (strands == "conjoined" or (strands == "paper" and ph_like))
    result = embed_variants(embedder, table, genome, window=window, pool_window=pool_window, both_strands=need_rc,
                            on_mismatch=on_mismatch, batch_size=batch_size, progress=progress)
    kept = result.table
    finite = np.isfinite(result.ref).all(1) & np.isfinite(result.alt).all(1)
    y = _labels(kept, label_column)
    distance = (pd.to_numeric(kept[tss_column], errors="coerce").to_numpy(float) if tss_column is not None
                else distance_to_tss(kept, read_tss(tss)))
    no_tss = int((~np.isfinite(distance) & finite).sum())
    if no_tss:
        warnings.warn(f"{no_tss} variant(s) have no distance to a TSS (no TSS on their chromosome, or an empty "
                      f"{tss_column or 'distance'} value); they are left out.")
    usable = finite & np.isfinite(distance)
    split = chromosome_split(kept, test_chroms)
    bucket = bucket_of(distance)
    tissue = None
    if tissue_column and tissue_column in kept.columns:
        codes = {name: i for i, name in enumerate(sorted(kept[tissue_column].astype(str).unique()))}
        tissue = kept[tissue_column].astype(str).map(codes).to_numpy(np.float64)

    ref_test, alt_test = result.ref, result.alt
    how = {"paper": "as in the paper", "forward": "forward strand", "conjoined": "both strands averaged"}[strands]
    if result.ref_rc is not None:
        conj_ref, conj_alt = (result.ref + result.ref_rc) / 2, (result.alt + result.alt_rc) / 2
        ref_test, alt_test = conj_ref, conj_alt
        ref_train, alt_train = (conj_ref, conj_alt) if strands == "conjoined" else (result.ref, result.alt)
        if strands == "paper":
            how = "Caduceus-Ph: forward strand to train, conjoined to test (as in the paper)"
    else:
        ref_train, alt_train = result.ref, result.alt
        if strands == "paper":
            how = ("strand symmetric (Caduceus-PS), as in the paper" if embedder.strand_symmetric
                   else "forward strand (as in the paper for HyenaDNA / Enformer)")
    X_train_all = _features(ref_train, alt_train, tissue)
    X_test_all = _features(ref_test, alt_test, tissue)

    from sklearn.metrics import roc_auc_score

    rows, scores = [], np.full(len(kept), np.nan)
    for name in [b[2] for b in BUCKETS] + ["all"]:
        in_bucket = usable & ((bucket == name) if name != "all" else True)
        tr, te = np.flatnonzero(in_bucket & (split == "train")), np.flatnonzero(in_bucket & (split == "test"))
        row = {"bucket": name, "n_train": len(tr), "n_test": len(te), "n_test_positive": int(y[te].sum()),
               "C": np.nan, "auroc": np.nan, "note": ""}
        if len(np.unique(y[tr])) < 2:
            row["note"] = "training split lacks one class"
        elif len(np.unique(y[te])) < 2:
            row["note"] = "test split lacks one class"
        else:
            probe, row["C"] = fit_probe(X_train_all[tr], y[tr], classifier, Cs, seed)
            s = probe.decision_function(X_test_all[te])
            row["auroc"] = float(roc_auc_score(y[te], s))
            if name != "all":
                scores[te] = s
        rows.append(row)
    metrics = pd.DataFrame(rows)

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    is_test = usable & (split == "test")
    predictions = kept.loc[is_test, [c for c in ("chrom", "pos", "ref", "alt", "id") if c in kept.columns]].copy()
    predictions["label"], predictions["distance_to_tss"] = y[is_test], distance[is_test]
    predictions["bucket"], predictions["score"] = bucket[is_test], scores[is_test]
    files = {"auroc.csv": out_dir / "auroc.csv", "auroc.md": out_dir / "auroc.md",
             "predictions.tsv": out_dir / "predictions.tsv", "embeddings.npz": out_dir / "embeddings.npz"}
    metrics.to_csv(files["auroc.csv"], index=False)
    predictions.to_csv(files["predictions.tsv"], sep="\t", index=False)
    kept = kept.assign(label=y, distance_to_tss=distance, bucket=bucket.astype(str), split=split)
    result.table = kept
    save_variant_embeddings(files["embeddings.npz"], result, model=str(model), strands=how)
    test_names = "the table's split column" if has_split else ", ".join(test_chroms)
    lines = [f"# VEP probe: {model}", "",
             f"- windows: {window} bp read, {pool_window or window} bp averaged around each SNV; features "
             f"concat(ref, alt){' + tissue' if tissue is not None else ''}",
             f"- strands: {how}",
             f"- probe: standardised {classifier}, C by 3-fold CV on the training split, per bucket",
             f"- test: {test_names}; train: the other chromosomes", "",
             "| distance to TSS | n train | n test (positive) | C | AUROC |", "|---|---|---|---|---|"]
    for r in rows:
        auroc = f"{r['auroc']:.3f}" if np.isfinite(r["auroc"]) else f"n/a ({r['note']})"
        c = f"{r['C']:g}" if np.isfinite(r["C"]) else "-"
        lines.append(f"| {r['bucket']} | {r['n_train']} | {r['n_test']} ({r['n_test_positive']}) | {c} | {auroc} |")
    files["auroc.md"].write_text("\n".join(lines) + "\n")
    return ProbeReport(metrics, predictions, files)


__all__ = ["BUCKETS", "ProbeError", "ProbeReport", "bucket_of", "chromosome_split", "distance_to_tss", "fit_probe",
           "read_tss", "run_vep_probe"]
