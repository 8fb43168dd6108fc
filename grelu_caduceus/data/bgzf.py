"""Bgzipped FASTA files with their .fai and .gzi indexes, through biopython and pyfaidx.

pyfaidx and samtools read a bgzipped FASTA (BGZF, blocked gzip: SAM/BAM specification 4.1) by
random access, which plain gzip does not allow. ``Bio.bgzf`` writes the format, in blocks of
htslib's size (``BLOCK_UNCOMPRESSED_SIZE``), so the output is that of htslib's ``bgzip`` at the same
level: deterministic (no timestamps or names), depending only on the input bytes and zlib; pyfaidx
builds both indexes from the written file, as ``samtools faidx`` would.
"""

from __future__ import annotations

import gzip
import os
from pathlib import Path
from typing import Iterable, Iterator

FASTA_LINE_WIDTH = 60
# htslib's BGZF_BLOCK_SIZE: uncompressed bytes per block (Bio.bgzf's own blocks are 64 KiB).
BLOCK_UNCOMPRESSED_SIZE = 0xFF00


def _fasta_lines(name: str, sequence: str, width: int) -> Iterator[bytes]:
    yield f">{name}\n".encode()
    for i in range(0, len(sequence), width):
        yield sequence[i : i + width].encode() + b"\n"


def write_bgzip_fasta(
    path: str | os.PathLike,
    records: Iterable[tuple[str, str]],
    line_width: int = FASTA_LINE_WIDTH,
    level: int = 9,
) -> dict[str, Path]:
    """Write ``records`` ((name, sequence) pairs) as a bgzipped FASTA plus its .fai and .gzi.

    Sequences are held one at a time (pass a generator for large genomes). Returns the paths
    ``{"fasta", "fai", "gzi"}``; the indexes are built after the FASTA is complete, so pyfaidx
    sees them as up to date.
    """
    from Bio import bgzf
    from pyfaidx import Faidx

    path = Path(path)
    pending = bytearray()
    with bgzf.BgzfWriter(str(path), "wb", compresslevel=level) as writer:
        for name, sequence in records:
            for line in _fasta_lines(name, sequence, line_width):
                pending += line
                while len(pending) >= BLOCK_UNCOMPRESSED_SIZE:
                    writer.write(bytes(pending[:BLOCK_UNCOMPRESSED_SIZE]))
                    writer.flush()  # one block per BLOCK_UNCOMPRESSED_SIZE bytes, as htslib
                    del pending[:BLOCK_UNCOMPRESSED_SIZE]
        writer.write(bytes(pending))
    fai, gzi = Path(f"{path}.fai"), Path(f"{path}.gzi")
    for stale in (fai, gzi):
        stale.unlink(missing_ok=True)
    Faidx(str(path), indexname=str(fai), gzi_indexname=str(gzi), rebuild=True).close()
    return {"fasta": path, "fai": fai, "gzi": gzi}


def bgzip_fasta(src: str | os.PathLike, dst: str | os.PathLike, rename: dict[str, str] | None = None) -> dict[str, Path]:
    """Recompress a plain or gzip FASTA as BGZF with .fai/.gzi, optionally renaming contigs.

    Reads one contig at a time (memory of the largest contig). ``rename`` maps old to new names,
    e.g. ``{"20": "chr20"}``. Use this when pyfaidx rejects a plain-gzip FASTA.
    """
    rename = rename or {}
    opener = gzip.open if _is_gzip(src) else open

    def records() -> Iterator[tuple[str, str]]:
        name, chunks = None, []
        with opener(src, "rt") as f:
            for line in f:
                if line.startswith(">"):
                    if name is not None:
                        yield rename.get(name, name), "".join(chunks)
                    name, chunks = line[1:].split()[0], []
                else:
                    chunks.append(line.strip())
        if name is not None:
            yield rename.get(name, name), "".join(chunks)

    return write_bgzip_fasta(dst, records())


def _is_gzip(path: str | os.PathLike) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"
