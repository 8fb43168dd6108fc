"""Deterministic BGZF (blocked gzip) writer for FASTA files, with the .fai and .gzi indexes.

pyfaidx and samtools read a bgzipped FASTA by random access, which plain gzip does not allow. This
module writes the same format as htslib's ``bgzip`` using only the standard library (zlib), so the
bundled data can be rebuilt byte for byte without samtools. The output depends only on the input
bytes and the zlib version.

Format (SAM/BAM specification, section 4.1): a series of gzip members, each at most 64 KiB, with a
``BC`` extra field giving the member size, followed by a fixed 28-byte empty end-of-file member.
The .gzi index lists (compressed offset, uncompressed offset) of every member after the first.
"""

from __future__ import annotations

import os
import struct
import zlib
from pathlib import Path
from typing import BinaryIO, Iterable, Iterator

# htslib's BGZF_BLOCK_SIZE: uncompressed bytes per member (leaves room for incompressible data).
BLOCK_UNCOMPRESSED_SIZE = 0xFF00
MAX_MEMBER_SIZE = 0x10000
EOF_MARKER = bytes.fromhex("1f8b08040000000000ff0600424302001b0003000000000000000000")
FASTA_LINE_WIDTH = 60


def _member(data: bytes, level: int) -> bytes:
    """One BGZF member (gzip header with BC extra field, raw deflate, CRC32, ISIZE)."""
    compressor = zlib.compressobj(level, zlib.DEFLATED, -15)
    deflated = compressor.compress(data) + compressor.flush()
    size = 18 + len(deflated) + 8
    header = b"\x1f\x8b\x08\x04" + b"\x00" * 4 + b"\x00\xff" + struct.pack("<H", 6)
    header += b"BC" + struct.pack("<HH", 2, size - 1)
    return header + deflated + struct.pack("<II", zlib.crc32(data) & 0xFFFFFFFF, len(data))


class BgzfWriter:
    """Write bytes as BGZF members and remember the member offsets for the .gzi index.

    Use as a context manager; ``gzi_entries`` holds ``(compressed_offset, uncompressed_offset)``
    for every member after the first, as htslib writes them.
    """

    def __init__(self, handle: BinaryIO, level: int = 9):
        self.handle = handle
        self.level = level
        self._pending = bytearray()
        self._compressed_offset = 0
        self._uncompressed_offset = 0
        self.gzi_entries: list[tuple[int, int]] = []

    def write(self, data: bytes) -> None:
        self._pending += data
        while len(self._pending) >= BLOCK_UNCOMPRESSED_SIZE:
            self._flush_block(bytes(self._pending[:BLOCK_UNCOMPRESSED_SIZE]))
            del self._pending[:BLOCK_UNCOMPRESSED_SIZE]

    def _flush_block(self, data: bytes) -> None:
        member = _member(data, self.level)
        if len(member) > MAX_MEMBER_SIZE:  # incompressible input: split it (never happens for DNA)
            half = len(data) // 2
            self._flush_block(data[:half])
            self._flush_block(data[half:])
            return
        if self._compressed_offset > 0:
            self.gzi_entries.append((self._compressed_offset, self._uncompressed_offset))
        self.handle.write(member)
        self._compressed_offset += len(member)
        self._uncompressed_offset += len(data)

    def close(self) -> None:
        if self._pending:
            self._flush_block(bytes(self._pending))
            self._pending.clear()
        self.handle.write(EOF_MARKER)

    def __enter__(self) -> "BgzfWriter":
        return self

    def __exit__(self, *exc) -> None:
        if exc[0] is None:
            self.close()


def write_gzi(path: str | os.PathLike, entries: list[tuple[int, int]]) -> None:
    """Write an htslib .gzi index: uint64 count, then uint64 pairs, little-endian."""
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(entries)))
        for compressed, uncompressed in entries:
            f.write(struct.pack("<QQ", compressed, uncompressed))


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
    ``{"fasta", "fai", "gzi"}``; the indexes are written after the FASTA so that pyfaidx sees
    them as up to date.
    """
    path = Path(path)
    fai_lines = []
    offset = 0  # uncompressed byte offset, as samtools faidx records it
    with open(path, "wb") as handle, BgzfWriter(handle, level) as writer:
        for name, sequence in records:
            header = f">{name}\n".encode()
            offset += len(header)
            bases_per_line = min(line_width, len(sequence)) or line_width  # as samtools: the first line's length
            fai_lines.append(f"{name}\t{len(sequence)}\t{offset}\t{bases_per_line}\t{bases_per_line + 1}\n")
            for line in _fasta_lines(name, sequence, line_width):
                writer.write(line)
            offset += len(sequence) + -(-len(sequence) // line_width)  # bases + one newline per line
        gzi_entries = writer.gzi_entries
    write_gzi(str(path) + ".gzi", gzi_entries)
    with open(str(path) + ".fai", "w") as f:
        f.writelines(fai_lines)
    return {"fasta": path, "fai": Path(str(path) + ".fai"), "gzi": Path(str(path) + ".gzi")}


def bgzip_fasta(src: str | os.PathLike, dst: str | os.PathLike, rename: dict[str, str] | None = None) -> dict[str, Path]:
    """Recompress a plain or gzip FASTA as BGZF with .fai/.gzi, optionally renaming contigs.

    Reads one contig at a time (memory of the largest contig). ``rename`` maps old to new names,
    e.g. ``{"20": "chr20"}``. Use this when pyfaidx rejects a plain-gzip FASTA.
    """
    import gzip

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
