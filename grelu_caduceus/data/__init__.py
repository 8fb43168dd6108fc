"""Genome data for grelu-caduceus: bundled real data, a lazy genome window dataset, BGZF tools."""

from .genome import FastaGenome, GenomeDataError, GenomeWindowDataset, one_hot_encode, read_intervals
from .bundled import (
    demo_genome_contig,
    demo_genome_fasta,
    demo_genome_offset,
    demo_genome_regions,
    load_task,
    pretrained_lm_folder,
    pretrained_lm_info,
    read_task_table,
    task_baseline,
    task_table,
)

__all__ = [
    "FastaGenome",
    "GenomeDataError",
    "GenomeWindowDataset",
    "one_hot_encode",
    "read_intervals",
    "demo_genome_contig",
    "demo_genome_fasta",
    "demo_genome_offset",
    "demo_genome_regions",
    "load_task",
    "pretrained_lm_folder",
    "pretrained_lm_info",
    "read_task_table",
    "task_baseline",
    "task_table",
]
