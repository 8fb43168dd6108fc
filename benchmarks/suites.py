"""Standard long-range suites read from a local copy: the Genomics Long-Range Benchmark and DNALongBench.

    benchmarks/run.py glrb --task T --data DIR --model M [--sequence-length L] [--genome FASTA]
    benchmarks/run.py dnalongbench --task T --data DIR --model M [--cell-type C] [--sequence-length L]

``M`` is ``FAMILY=NAME`` or ``NAME`` (family: caduceus / hyenadna / enformer; NAME as in
``long_range --pretrained``). Every command embeds the task's sequences with the frozen model
(:func:`grelu_caduceus.embed.embed_onehot`, mean over the central ``--pool-len`` bp, default the
whole window), fits a probe on the training split and reports the test metric of the suite's paper;
a row is appended to ``OUT/suites.csv``.

Probes: classification uses :func:`grelu_caduceus.vep_probe.fit_probe` (standardised logistic
regression, C by 3-fold CV on the training split; per label for multi-label tasks, averaged);
regression a standardised ridge regression (alpha by CV), per target, Pearson r and R^2 averaged
over targets. Variant tasks use ``concat(ref, alt)`` embeddings (plus the integer-coded tissue for
GLRB's eQTL task), as in ``vep_probe``.

What the files look like, and where that comes from
---------------------------------------------------

**Genomics Long-Range Benchmark** (InstaDeepAI/genomics-long-range-benchmark, a Hugging Face
dataset; the brief's "InstaDeep/..." is the same repository). Read from its loading script
``genomics-long-range-benchmark.py`` (the ``*Handler`` classes and ``pad_sequence``; seen in a public
copy of that script, found with the code search) and the dataset card (README.md on the hub: task
names, sample outputs, train/test counts). DIR is a local copy of the repository
(``huggingface-cli download InstaDeepAI/genomics-long-range-benchmark --repo-type dataset
--local-dir DIR``) plus the reference FASTA that the script downloads itself from UCSC
(``hg38.fa`` / ``hg19.fa``, looked for in DIR, DIR/downloads, DIR/reference_genome, or --genome).
All coordinates in the CSVs are 1-based; every CSV has a ``split`` column.

* ``variant_effect_causal_eqtl``: ``variant_effect_causal_eqtl/All_Tissues.csv`` with CHROM, POS,
  ALT, label, tissue, distance_to_nearest_TSS; hg38. Window of ``sequence_length`` (default 100 kb)
  centred on POS-1; the ALT base is written at index ``sequence_length // 2``.
* ``bulk_rna_expression``: ``bulk_rna_expression/gene_coordinates.csv`` (chrom,
  CAGE_representative_TSS, strand, split) and ``rna_expression_values.csv`` (one row per gene, in
  the same order: the script reads ``labels_df.loc[idx]``); hg19; window centred on the TSS,
  reverse-complemented on the - strand.
* ``cage_prediction``: ``cage_prediction/sequences_coordinates.csv`` (chrom, start, stop, split,
  npy_idx) and ``cage_prediction/targets_subset/targets-{train,valid,test}-{lo}-{hi}.npz`` holding
  ``target-{split}-{npy_idx}.npy`` arrays of shape (1, 896, 50) (896 bins of 128 bp, 50 CAGE tracks);
  hg38; windows of 114,688 bp; shorter windows crop the bins symmetrically.
* ``chromatin_features_histone_marks`` / ``chromatin_features_dna_accessibility``:
  ``chromatin_features/histones_and_dnase.csv`` (CHROM, POS = centre of the 200 bp bin, HISTONES and
  DNASE = lists of 0/1 written as text); hg19.
* ``regulatory_element_promoter`` / ``regulatory_element_enhancer``:
  ``regulatory_elements/{promoter,enhancer}_dataset.csv`` (CHROM, START, STOP, label); hg38; window
  padded symmetrically around START-1..STOP-1.

Windows reaching past a chromosome end are dropped, as the script's ``pad_sequence`` does.

**DNALongBench** (github.com/ericli0419/DNALongBench, ``dnalongbench/utils.py``: ``load_data``,
``parse_config``, ``parse_EPI``, ``parse_eQTL``; metrics from Table 2 of the paper, Nature
Communications 2025: AUROC for both classification tasks). DIR is the data root of its download:

* ``enhancer_target_gene_prediction``: ``enhancer_target_gene/config/CRISPRi_EPI_K562_hg19.config``,
  lines ``key value type`` naming ``genome_fa``, ``EPI_file``, ``enhancer_tabix_file``,
  ``seq_len_cutoff`` (450,000), ``tss_flank_upstream/downstream`` and
  ``region_flank_upstream/downstream`` (paths relative to ``enhancer_target_gene/``). ``EPI_file`` is a
  TSV with gene_chrom, gene_start, gene_end, region_chrom, region_start, region_end, gene_id,
  gene_strand, region_id, target (positive / negative), subset (train / valid / test). The sequence
  spans the flanked region and the flanked TSS; other elements of the tabix BED between them are
  masked with N; it is reverse-complemented when the gene lies downstream of the region, then padded
  with N (or cut) to ``seq_len_cutoff``.
* ``eqtl_prediction``: ``eQTL/config/gtex_hg38.{CELL_TYPE}.config`` (``eQTL_file``,
  ``eQTL_tabix_file``, same keys), the same TSV plus allele1 (reference) and allele2 (alternative);
  region_start/region_end are the variant's interval. Reference and alternative sequences, as above.

The other DNALongBench tasks (contact maps, regulatory sequence activity, transcription initiation)
are stored as TFRecords / bigWigs and are not read here.

GLRB's metrics (the dataset card names none) are those of the fine-tuning scripts in the Caduceus
repository, written for this benchmark (github.com/kuleshov-group/caduceus, ``finetuning_glrb/``:
``finetune_variant_effect_causal_eqtl.py``, ``finetune_bulk_rna.py``, ``finetune_cage.py``,
``finetune_chromatin.py``, ``finetune_regulatory_elements.py``), see :data:`GLRB_TASKS`:
causal eQTL AUROC (also AUPRC); bulk RNA R^2 (sklearn ``r2_score``, averaged over tissues); CAGE R^2
of log(1 + x) of prediction and target (averaged over tracks); chromatin features AUROC over all
(sequence, label) pairs pooled (micro; the macro mean over labels is reported too); promoter and
enhancer AUPRC (area under the precision-recall curve, trapezoidal, as ``sklearn.metrics.auc(recall,
precision)``; the scripts log AUROC for the enhancer task only, reported here too). Differences
kept on purpose: the scripts score thresholded predictions (0/1), which turns AUROC into balanced
accuracy; here the probe's scores are ranked (the usual definition). For CAGE the probe predicts each
track's mean over the pooled bins (the benchmark scores every bin, which needs a per-position head).
The
expression CSV's non-numeric columns (if any) are ignored. The tabix BED is read whole with gzip (no
tabix library). Windows whose length differs from ``sequence_length`` by the script's rounding are
padded with N at the end.
"""

from __future__ import annotations

import ast
import gzip
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from grelu_caduceus.errors import UserError


class SuiteDataError(UserError, ValueError):
    """A suite's local copy lacks a file or holds something unexpected; the message says which."""


# --------------------------------------------------------------------------- the task data
@dataclass
class SuiteTask:
    """Windows and labels of one task.

    table: one row per example with chrom, start, end (0-based window), split (train / valid / test)
        and rc (reverse-complement the window); variant tasks also var_offset, ref, alt (the variant
        inside the window); DNALongBench tasks may have ``mask`` (list of (start, end) inside the
        window read as N).
    labels: (n,) or (n, k). kind: "binary", "multilabel" or "regression". metric: the paper's.
    seq_len: every sequence is padded with N at the end (or cut) to this length.
    """

    suite: str
    task: str
    table: pd.DataFrame
    labels: np.ndarray
    kind: str
    metric: str
    genome: object
    seq_len: int
    variant: bool = False
    extra: np.ndarray | None = None  # per-example covariates appended to the features (tissue code)
    notes: list = field(default_factory=list)

    def sequence(self, i: int, allele: str = "ref") -> str:
        row = self.table.iloc[i]
        seq = self.genome.fetch(row.chrom, int(row.start), int(row.end)).upper()
        for a, b in (row["mask"] if "mask" in self.table.columns and isinstance(row["mask"], list) else []):
            seq = seq[:a] + "N" * (b - a) + seq[b:]
        if allele == "alt":
            off = int(row.var_offset)
            seq = seq[:off] + str(row.alt) + seq[off + len(str(row.ref)):]
        if row.rc:
            seq = seq.translate(str.maketrans("ACGTN", "TGCAN"))[::-1]
        return (seq + "N" * self.seq_len)[:self.seq_len]

    def onehot(self, rows, allele: str = "ref") -> torch.Tensor:
        from grelu_caduceus.data.genome import one_hot_encode

        return torch.stack([one_hot_encode(self.sequence(int(i), allele)) for i in rows])


def _need(path: Path, what: str, fix: str) -> Path:
    if not path.is_file():
        raise SuiteDataError(f"{path} not found: {what} is missing from the local copy. {fix}")
    return path


def _read_csv(path: Path, columns, what: str) -> pd.DataFrame:
    table = pd.read_csv(path)
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise SuiteDataError(f"{path} lacks column(s) {missing} that {what} needs (it has {list(table.columns)}).")
    return table


def _genome(data_dir: Path, assembly: str, genome, task: str):
    from grelu_caduceus.data.genome import FastaGenome

    if genome is not None:
        path = Path(genome)
        if not path.is_file():
            raise SuiteDataError(f"--genome {path} does not exist.")
        return FastaGenome(path)
    tried = [data_dir / sub / f"{assembly}{ext}" for sub in ("", "downloads", "reference_genome")
             for ext in (".fa", ".fa.gz")]
    for path in tried:
        if path.is_file():
            return FastaGenome(path)
    raise SuiteDataError(f"{data_dir} has no {assembly} FASTA (looked for {assembly}.fa[.gz] in it, downloads/ and "
                         f"reference_genome/): GLRB task {task} reads {assembly} (UCSC {assembly}.fa.gz, as the "
                         "dataset's script downloads it); put it there or pass --genome.")


def _check_chroms(genome, chroms) -> None:
    for chrom in pd.unique(chroms):
        genome.check_chrom(str(chrom))


def _in_bounds(genome, chroms, start, end) -> np.ndarray:
    sizes = np.array([genome.sizes[str(c)] for c in chroms])
    return (start >= 0) & (end < sizes)  # pad_sequence: start < 0 or end >= len(chrom) -> dropped


# --------------------------------------------------------------------------- GLRB
GLRB_REPO = "InstaDeepAI/genomics-long-range-benchmark"
GLRB_TASKS = {
    "variant_effect_causal_eqtl": dict(files=["variant_effect_causal_eqtl/All_Tissues.csv"], assembly="hg38",
                                       kind="binary", metric="auroc", length=100_000),
    "bulk_rna_expression": dict(files=["bulk_rna_expression/gene_coordinates.csv",
                                       "bulk_rna_expression/rna_expression_values.csv"], assembly="hg19",
                                kind="regression", metric="r2", length=100_000),
    "cage_prediction": dict(files=["cage_prediction/sequences_coordinates.csv"], assembly="hg38", kind="regression",
                            metric="r2_log1p", length=114_688),
    "chromatin_features_histone_marks": dict(files=["chromatin_features/histones_and_dnase.csv"], assembly="hg19",
                                             kind="multilabel", metric="auroc_micro", length=100_000,
                                             column="HISTONES"),
    "chromatin_features_dna_accessibility": dict(files=["chromatin_features/histones_and_dnase.csv"],
                                                 assembly="hg19", kind="multilabel", metric="auroc_micro",
                                                 length=100_000, column="DNASE"),
    "regulatory_element_promoter": dict(files=["regulatory_elements/promoter_dataset.csv"], assembly="hg38",
                                        kind="binary", metric="auprc", length=100_000),
    "regulatory_element_enhancer": dict(files=["regulatory_elements/enhancer_dataset.csv"], assembly="hg38",
                                        kind="binary", metric="auprc", length=100_000),
}
CAGE_FULL, CAGE_BIN = 114_688, 128


def _split(values) -> np.ndarray:
    split = pd.Series(values).astype(str).str.lower().replace({"validation": "valid", "val": "valid"})
    return split.to_numpy()


def _centred(pos0: np.ndarray, length: int):
    return pos0 - length // 2, pos0 + length // 2 + length % 2


def _padded(start0: np.ndarray, end0: np.ndarray, length: int):
    pad = (length - (end0 - start0)) // 2
    return start0 - pad, end0 + pad + length % 2


def load_glrb(task: str, data_dir, sequence_length: int | None = None, genome=None) -> SuiteTask:
    """One GLRB task from a local copy of the dataset repository (see the module docstring)."""
    if task not in GLRB_TASKS:
        raise SuiteDataError(f"Unknown GLRB task {task!r}; choose from {', '.join(GLRB_TASKS)}.")
    spec = GLRB_TASKS[task]
    data_dir = Path(data_dir)
    if not data_dir.is_dir():
        raise SuiteDataError(f"--data {data_dir} is not a folder (a local copy of {GLRB_REPO}).")
    folder = spec["files"][0].split("/")[0]
    fix = (f"Fetch it with `huggingface-cli download {GLRB_REPO} --repo-type dataset --include '{folder}/*' "
           f"--local-dir {data_dir}`.")
    paths = [_need(data_dir / f, f"GLRB's {task} file {f}", fix) for f in spec["files"]]
    L = int(sequence_length or spec["length"])
    fasta = _genome(data_dir, spec["assembly"], genome, task)
    extra, variant, labels = None, False, None
    if task == "variant_effect_causal_eqtl":
        t = _read_csv(paths[0], ["CHROM", "POS", "ALT", "label", "split"], task)
        start, end = _centred(t.POS.to_numpy(np.int64) - 1, L)
        table = pd.DataFrame(dict(chrom=t.CHROM.astype(str), start=start, end=end, split=_split(t.split), rc=False,
                                  var_offset=L // 2, ref=t.REF if "REF" in t else "N", alt=t.ALT.astype(str)))
        labels = t.label.to_numpy(np.int64)
        if "tissue" in t.columns:
            codes = {name: i for i, name in enumerate(sorted(t.tissue.astype(str).unique()))}
            extra = t.tissue.astype(str).map(codes).to_numpy(np.float64)[:, None]
        variant = True
    elif task == "bulk_rna_expression":
        t = _read_csv(paths[0], ["chrom", "CAGE_representative_TSS", "strand", "split"], task)
        values = pd.read_csv(paths[1]).select_dtypes("number")
        if len(values) != len(t):
            raise SuiteDataError(f"{paths[1]} has {len(values)} rows but {paths[0]} has {len(t)} genes; they must "
                                 "match row for row.")
        start, end = _centred(t.CAGE_representative_TSS.to_numpy(np.int64) - 1, L)
        table = pd.DataFrame(dict(chrom=t.chrom.astype(str), start=start, end=end, split=_split(t.split),
                                  rc=(t.strand == "-").to_numpy()))
        labels = values.to_numpy(np.float64)
    elif task == "cage_prediction":
        t = _read_csv(paths[0], ["chrom", "start", "stop", "split", "npy_idx"], task)
        start, end = _padded(t.start.to_numpy(np.int64) - 1, t.stop.to_numpy(np.int64) - 1, L)
        split = _split(t.split)
        table = pd.DataFrame(dict(chrom=t.chrom.astype(str), start=start, end=end, split=split, rc=False))
        labels = _cage_targets(data_dir / "cage_prediction" / "targets_subset", split, t.npy_idx.to_numpy(), L, fix)
    elif task.startswith("chromatin_features"):
        t = _read_csv(paths[0], ["CHROM", "POS", spec["column"], "split"], task)
        start, end = _centred(t.POS.to_numpy(np.int64) - 1, L)
        table = pd.DataFrame(dict(chrom=t.CHROM.astype(str), start=start, end=end, split=_split(t.split), rc=False))
        labels = np.array([ast.literal_eval(str(v)) for v in t[spec["column"]]], dtype=np.int64)
    else:  # regulatory elements
        t = _read_csv(paths[0], ["CHROM", "START", "STOP", "label", "split"], task)
        start, end = _padded(t.START.to_numpy(np.int64) - 1, t.STOP.to_numpy(np.int64) - 1, L)
        table = pd.DataFrame(dict(chrom=t.CHROM.astype(str), start=start, end=end, split=_split(t.split), rc=False))
        labels = t.label.to_numpy(np.int64)
    _check_chroms(fasta, table.chrom)
    keep = _in_bounds(fasta, table.chrom, table.start.to_numpy(), table.end.to_numpy())
    notes = [f"{int((~keep).sum())} window(s) past a chromosome end dropped"] if (~keep).any() else []
    table = table[keep].reset_index(drop=True)
    return SuiteTask("glrb", task, table, labels[keep], spec["kind"], spec["metric"], fasta, L, variant,
                     None if extra is None else extra[keep], notes)


def _cage_targets(folder: Path, split: np.ndarray, npy_idx: np.ndarray, length: int, fix: str) -> np.ndarray:
    """(n, 50): each window's CAGE tracks averaged over its (cropped) 896 bins."""
    out, files = [], {}
    crop = (CAGE_FULL - length) // 2 // CAGE_BIN if length < CAGE_FULL else 0
    for s, idx in zip(split, npy_idx.astype(int)):
        lo = idx // 1000 * 1000
        if (s, lo) not in files:
            found = sorted(folder.glob(f"targets-{s}-{lo}-*.npz"))
            if not found:
                raise SuiteDataError(f"{folder} has no targets-{s}-{lo}-*.npz: GLRB's cage_prediction targets are "
                                     f"missing from the local copy. {fix}")
            files[(s, lo)] = np.load(found[0])
        key = f"target-{s}-{idx}.npy"
        if key not in files[(s, lo)].files:
            key = key[:-4] if key[:-4] in files[(s, lo)].files else key
        target = np.asarray(files[(s, lo)][key])[0]
        if crop:
            target = target[crop:-crop]
        out.append(target.mean(0))
    return np.stack(out).astype(np.float64)


# --------------------------------------------------------------------------- DNALongBench
DLB_TASKS = {
    "enhancer_target_gene_prediction": dict(dir="enhancer_target_gene", config="CRISPRi_EPI_K562_hg19.config",
                                            file_key="EPI_file", mask_key="enhancer_tabix_file"),
    "eqtl_prediction": dict(dir="eQTL", config="gtex_hg38.{cell_type}.config", file_key="eQTL_file",
                            mask_key="eQTL_tabix_file"),
}
DLB_ALIASES = {"enhancer_target_gene": "enhancer_target_gene_prediction", "etgp": "enhancer_target_gene_prediction",
               "eqtl": "eqtl_prediction", "eqtlp": "eqtl_prediction"}
DLB_UNSUPPORTED = ("contact_map_prediction", "regulatory_sequence_activity",
                   "transcription_initiation_signal_prediction")


def parse_dlb_config(path: Path) -> dict:
    """DNALongBench's ``key value type`` config lines (utils.parse_config) -> dict."""
    out = {}
    for line in Path(path).read_text().splitlines():
        fields = line.split()
        if len(fields) < 2 or fields[0].startswith("#"):
            continue
        key, value, kind = fields[0], fields[1], fields[2] if len(fields) > 2 else "str"
        out[key] = int(value) if kind == "int" else float(value) if kind == "float" else value
    return out


def _read_bed_gz(path: Path) -> dict:
    """{chrom: (starts, ends)} of a (bgzip) BED, sorted by start."""
    opener = gzip.open if path.suffix == ".gz" else open
    rows = {}
    with opener(path, "rt") as f:
        for line in f:
            fields = line.rstrip("\n").split("\t")
            if len(fields) < 3 or line.startswith(("#", "track", "browser")):
                continue
            rows.setdefault(fields[0], []).append((int(fields[1]), int(fields[2])))
    return {c: (np.array(sorted(v))[:, 0], np.array(sorted(v))[:, 1]) for c, v in rows.items()}


def load_dnalongbench(task: str, data_dir, cell_type: str | None = None, sequence_length: int | None = None) -> SuiteTask:
    """One DNALongBench classification task from its data root (see the module docstring).

    sequence_length: overrides the config's ``seq_len_cutoff`` (the longest region-TSS span kept and the
    length every sequence is padded / cut to).
    """
    from grelu_caduceus.data.genome import FastaGenome

    task = DLB_ALIASES.get(task, task)
    if task in DLB_UNSUPPORTED:
        raise SuiteDataError(f"DNALongBench task {task} is stored as TFRecords / bigWigs and is not supported; "
                             f"supported: {', '.join(DLB_TASKS)}.")
    if task not in DLB_TASKS:
        raise SuiteDataError(f"Unknown DNALongBench task {task!r}; choose from {', '.join(DLB_TASKS)}.")
    spec = DLB_TASKS[task]
    data_dir = Path(data_dir)
    root = data_dir / spec["dir"]
    fix = "Give --data the DNALongBench data root (the folder holding enhancer_target_gene/ and eQTL/)."
    if task == "eqtl_prediction":
        configs = sorted((root / "config").glob("gtex_hg38.*.config"))
        cells = [p.name[len("gtex_hg38."):-len(".config")] for p in configs]
        if cell_type is None:
            if len(cells) != 1:
                raise SuiteDataError(f"{root / 'config'} holds {'no' if not cells else len(cells)} gtex_hg38.*.config "
                                     f"file(s){': ' + ', '.join(cells) if cells else ''}; name one with --cell-type. "
                                     + ("" if cells else fix))
            cell_type = cells[0]
    config_path = _need(root / "config" / spec["config"].format(cell_type=cell_type),
                        f"DNALongBench's {task} config", fix)
    cfg = parse_dlb_config(config_path)
    for key in ("genome_fa", spec["file_key"]):
        if key not in cfg:
            raise SuiteDataError(f"{config_path} does not name {key}.")
    fasta = FastaGenome(_need(root / cfg["genome_fa"], f"the genome FASTA named in {config_path.name}", fix))
    records = pd.read_csv(_need(root / cfg[spec["file_key"]], f"the {spec['file_key']} of {config_path.name}", fix),
                          sep="\t")
    need = ["gene_chrom", "gene_start", "gene_end", "region_chrom", "region_start", "region_end", "gene_strand",
            "target", "subset"] + (["allele1", "allele2"] if task == "eqtl_prediction" else [])
    missing = [c for c in need if c not in records.columns]
    if missing:
        raise SuiteDataError(f"{cfg[spec['file_key']]} lacks column(s) {missing} (it has {list(records.columns)}).")
    masks = {}
    if cfg.get(spec["mask_key"]):
        masks = _read_bed_gz(_need(root / cfg[spec["mask_key"]], f"the {spec['mask_key']} of {config_path.name}", fix))
    cutoff = int(sequence_length or cfg.get("seq_len_cutoff", 450_000))
    tss_up, tss_down = int(cfg.get("tss_flank_upstream", 3000)), int(cfg.get("tss_flank_downstream", 3000))
    reg_up, reg_down = int(cfg.get("region_flank_upstream", 500)), int(cfg.get("region_flank_downstream", 500))
    rows, labels, skipped = [], [], {"chromosome": 0, "distance": 0, "strand": 0}
    _check_chroms(fasta, records.region_chrom.astype(str))
    for r in records.itertuples(index=False):
        if r.gene_chrom != r.region_chrom:
            skipped["chromosome"] += 1
            continue
        if r.gene_strand not in ("+", "-"):
            skipped["strand"] += 1
            continue
        tss = int(r.gene_start) if r.gene_strand == "+" else int(r.gene_end) - 1
        tss_start, tss_end = tss - tss_up, tss + 1 + tss_down
        region_start, region_end = int(r.region_start) - reg_up, int(r.region_end) + reg_down
        distance = max(0, max(tss_start, region_start) - min(tss_end, region_end))
        if distance > cutoff:
            skipped["distance"] += 1
            continue
        start, end = min(tss_start, region_start), max(tss_end, region_end)
        mask = []
        if distance > 0 and str(r.region_chrom) in masks:
            q0, q1 = (region_end, tss_start) if tss_start > region_end else (tss_end, region_start)
            s, e = masks[str(r.region_chrom)]
            for o0, o1 in zip(s[(s < q1) & (e > q0)], e[(s < q1) & (e > q0)]):
                a, b = int(o0) - start, int(o1) - start
                if 0 < a < end - start and 0 < b < end - start:
                    mask.append((a, b))
        row = dict(chrom=str(r.region_chrom), start=start, end=end, split=str(r.subset).lower(),
                   rc=int(r.gene_start) > region_end, mask=mask)
        if task == "eqtl_prediction":
            row.update(var_offset=int(r.region_start) - start, ref=str(r.allele1), alt=str(r.allele2))
        rows.append(row)
        labels.append({"positive": 1, "negative": 0, "1": 1, "0": 0, "true": 1, "false": 0}[str(r.target).lower()])
    table = pd.DataFrame(rows)
    if table.empty:
        raise SuiteDataError(f"No usable records in {cfg[spec['file_key']]} (skipped: {skipped}).")
    out = SuiteTask("dnalongbench", task, table, np.asarray(labels, np.int64), "binary", "auroc", fasta, cutoff,
                    variant=task == "eqtl_prediction",
                    notes=[f"skipped {n} record(s): {why}" for why, n in skipped.items() if n])
    if out.variant:  # DNALongBench asserts the reference allele; so do we
        for i in range(len(table)):
            row = table.iloc[i]
            seen = fasta.fetch(row.chrom, row.start + row.var_offset, row.start + row.var_offset + len(row.ref)).upper()
            if seen != row.ref.upper():
                raise SuiteDataError(f"allele1 {row.ref} of the record at {row.chrom}:{row.start + row.var_offset} "
                                     f"does not match the genome ({seen}): wrong genome_fa?")
    return out


# --------------------------------------------------------------------------- probe and metric
def _subsample(idx: np.ndarray, n: int | None, rng) -> np.ndarray:
    return idx if n is None or len(idx) <= n else np.sort(rng.choice(idx, size=n, replace=False))


def _pearson(a, b) -> float:
    a, b = a - a.mean(), b - b.mean()
    denom = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / denom) if denom > 0 else float("nan")


def auprc(labels, scores) -> float:
    """Area under the precision-recall curve, trapezoidal (``sklearn.metrics.auc(recall, precision)``,
    as GLRB's fine-tuning scripts compute it; ``average_precision_score`` is the step-wise variant)."""
    from sklearn.metrics import auc, precision_recall_curve

    precision, recall, _ = precision_recall_curve(labels, scores)
    return float(auc(recall, precision))


def score_probe(kind: str, X_train, y_train, X_test, y_test, seed: int = 0) -> dict:
    """Fit the probe for ``kind`` and return its test metrics ({name: value}).

    binary: auroc, auprc, average_precision; multilabel (one probe per label): auroc_micro /
    auprc_micro over all (example, label) pairs pooled, auroc_macro (mean over labels); regression
    (ridge): r2 and pearson (means over targets), r2_log1p (R^2 of log(1 + x), predictions clipped at 0).
    """
    from sklearn.metrics import average_precision_score, r2_score, roc_auc_score

    from grelu_caduceus.vep_probe import fit_probe

    if kind == "binary":
        if len(np.unique(y_train)) < 2 or len(np.unique(y_test)) < 2:
            raise SuiteDataError("Both the training and the test split need positives and negatives.")
        probe, C = fit_probe(X_train, y_train.astype(np.int64), "logistic", seed=seed)
        s = probe.decision_function(X_test)
        return {"auroc": float(roc_auc_score(y_test, s)), "auprc": auprc(y_test, s),
                "average_precision": float(average_precision_score(y_test, s)), "C": C}
    if kind == "multilabel":
        aurocs, labels, scores = [], [], []
        for j in range(y_train.shape[1]):
            if len(np.unique(y_train[:, j])) < 2 or len(np.unique(y_test[:, j])) < 2:
                continue
            probe, _ = fit_probe(X_train, y_train[:, j].astype(np.int64), "logistic", seed=seed)
            s = probe.decision_function(X_test)
            aurocs.append(roc_auc_score(y_test[:, j], s))
            labels.append(y_test[:, j])
            scores.append(s)
        if not aurocs:
            raise SuiteDataError("No label has both classes in the training and the test split.")
        labels, scores = np.concatenate(labels), np.concatenate(scores)
        return {"auroc_micro": float(roc_auc_score(labels, scores)), "auprc_micro": auprc(labels, scores),
                "auroc_macro": float(np.mean(aurocs)), "labels_scored": len(aurocs)}
    from sklearn.linear_model import RidgeCV
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    y_train = y_train.reshape(len(y_train), -1)
    y_test = y_test.reshape(len(y_test), -1)
    probe = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-2, 4, 7))).fit(X_train, y_train)
    pred = probe.predict(X_test).reshape(y_test.shape)
    ok = [j for j in range(y_test.shape[1]) if np.std(y_test[:, j]) > 0]
    log_pred, log_true = np.log1p(np.clip(pred, 0, None)), np.log1p(np.clip(y_test, 0, None))
    ok_log = [j for j in ok if np.std(log_true[:, j]) > 0]
    return {"r2": float(np.mean([r2_score(y_test[:, j], pred[:, j]) for j in ok])),
            "r2_log1p": float(np.mean([r2_score(log_true[:, j], log_pred[:, j]) for j in ok_log])),
            "pearson": float(np.nanmean([_pearson(y_test[:, j], pred[:, j]) for j in ok])), "targets": len(ok)}


SUITE_COLUMNS = ["suite", "task", "model", "checkpoint", "metric", "value", "other_metrics", "n_train", "n_test",
                 "sequence_length", "pool_len", "seconds"]


def run_suite(data: SuiteTask, model: str, out_dir=None, pool_len: int | None = None, max_train: int | None = None,
              max_test: int | None = None, seed: int = 0, batch_size: int = 8, trust_pickle: bool = False,
              log=print) -> dict:
    """Embed ``data``'s train and test examples with ``model`` (``FAMILY=NAME`` or ``NAME``), fit the probe, report.

    Returns the CSV row (also appended to ``out_dir/suites.csv`` when out_dir is given).
    """
    from benchmarks.pretrained import family_of, load_family
    from grelu_caduceus.embed import embed_onehot

    family, sep, name = str(model).partition("=")
    family, name = (family.strip().lower(), name.strip()) if sep else (None, str(model))
    if family is not None and family not in ("caduceus", "hyenadna", "enformer"):
        raise SuiteDataError(f"--model takes FAMILY=NAME or NAME (families: caduceus, hyenadna, enformer), got {model!r}.")
    started = time.perf_counter()
    embedder = load_family(family, name, trust_pickle)
    rng = np.random.default_rng(seed)
    split = data.table.split.to_numpy()
    train = _subsample(np.flatnonzero(split == "train"), max_train, rng)
    test = _subsample(np.flatnonzero(split == "test"), max_test, rng)
    if not len(train) or not len(test):
        raise SuiteDataError(f"{data.suite} {data.task}: {len(train)} training and {len(test)} test example(s) "
                             "after dropping windows; need both.")
    rows = np.concatenate([train, test])
    log(f"{data.suite} {data.task}: embedding {len(train)} train + {len(test)} test windows of {data.seq_len} bp "
        f"with {family_of(embedder)} {name}")
    feats = []
    for allele in (("ref", "alt") if data.variant else ("ref",)):
        parts = [embed_onehot(embedder, data.onehot(rows[i:i + batch_size], allele), pool_len=pool_len,
                              batch_size=batch_size) for i in range(0, len(rows), batch_size)]
        feats.append(np.concatenate(parts))
    if data.extra is not None:
        feats.append(data.extra[rows])
    X = np.concatenate(feats, axis=1).astype(np.float64)
    y = data.labels[rows]
    n_tr = len(train)
    metrics = score_probe(data.kind, X[:n_tr], y[:n_tr], X[n_tr:], y[n_tr:], seed)
    value = metrics.pop(data.metric)
    row = dict(suite=data.suite, task=data.task, model=family_of(embedder), checkpoint=name, metric=data.metric,
               value=round(value, 4), other_metrics=";".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                                             for k, v in metrics.items()),
               n_train=len(train), n_test=len(test), sequence_length=data.seq_len, pool_len=pool_len or data.seq_len,
               seconds=round(time.perf_counter() - started, 1))
    if out_dir is not None:
        from benchmarks.long_range import append_rows

        path = Path(out_dir) / "suites.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        append_rows(path, SUITE_COLUMNS, [row])
    for note in data.notes:
        log(f"  note: {note}")
    log(f"{data.suite} {data.task} {row['model']}: {data.metric} {row['value']:.4f} ({row['other_metrics']}; "
        f"{len(train)} train / {len(test)} test)")
    return row


__all__ = ["DLB_TASKS", "GLRB_TASKS", "SuiteDataError", "SuiteTask", "load_dnalongbench", "load_glrb",
           "parse_dlb_config", "run_suite", "score_probe"]
