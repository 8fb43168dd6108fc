"""Genome data for grelu-caduceus: bundled real data, a lazy genome window dataset, BGZF tools."""

from .bundled import (
    demo_genome_contig,
    demo_genome_fasta,
    demo_genome_offset,
    demo_genome_regions,
    load_task,
    read_task_table,
    task_table,
)

__all__ = [
    "demo_genome_contig",
    "demo_genome_fasta",
    "demo_genome_offset",
    "demo_genome_regions",
    "load_task",
    "read_task_table",
    "task_table",
]
