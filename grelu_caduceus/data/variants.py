"""Variants: reading a VCF or a chrom/pos/ref/alt table into one gReLU-style table, and the one
reference-allele check.

A VCF (plain, gzip or bgzip) is read as the VCF specification (v4.x, section 1.5) lays it out:
``##`` meta-information lines, then the ``#CHROM POS ID REF ALT ...`` header line, then
tab-separated data lines. Only the first five columns are kept; a multi-allelic ALT ("T,G") gives
one row per alternate allele; symbolic alleles (``<DEL>``) and breakends are kept as written.

Reference convention (VCF's, used by every check of this package): ``pos`` is 1-based and the
``ref`` allele's first base is at ``pos``, so a k-base ref spans 0-based ``[pos - 1, pos - 1 + k)``.
Case is ignored (soft-masked genomes); a ref of "-" or "." (an insertion written without an anchor
base) always matches.
"""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import numpy as np
import pandas as pd

VARIANT_COLUMNS = ["chrom", "pos", "ref", "alt"]
VCF_COLUMNS = ["CHROM", "POS", "ID", "REF", "ALT"]
NO_REF = ("-", ".")


class VariantInputError(ValueError):
    """A variants table or VCF that cannot be read (missing columns, bad positions ...)."""


def _is_gzip(path: Path) -> bool:
    with open(path, "rb") as f:
        return f.read(2) == b"\x1f\x8b"


def read_vcf(path) -> pd.DataFrame:
    """Read the variants of a VCF (plain or gzip/bgzip) into a gReLU variant table.

    Returns:
        DataFrame with columns chrom (str), pos (int, 1-based as in the VCF), id, ref, alt (alleles
        upper-cased), one row per alternate allele, in file order.

    Raises:
        VariantInputError: no such file, no ``#CHROM`` header line, a line that is not
            tab-delimited into at least CHROM POS ID REF ALT, or a POS that is not an integer.
    """
    path = Path(path)
    if not path.is_file():
        raise VariantInputError(f"VCF file not found: {path}.")
    compression = "gzip" if _is_gzip(path) else None
    n_meta, header, first_data = 0, None, None
    with (gzip.open(path, "rt") if compression else open(path)) as f:
        for line in f:
            if line.startswith("##"):
                n_meta += 1
                continue
            if line.startswith("#"):
                header = line.rstrip("\r\n").lstrip("#").split("\t")
            else:
                first_data = line
            break
    if header is None:
        if first_data is not None and len(first_data.split("\t")) < len(VCF_COLUMNS):
            raise VariantInputError(f"{path}:{n_meta + 1} is not a tab-delimited VCF data line (CHROM POS ID REF "
                                    "ALT ... separated by tabs). Is the file tab-delimited?")
        raise VariantInputError(f"{path} has no '#CHROM\\tPOS\\tID\\tREF\\tALT ...' header line after its '##' lines; "
                                "a VCF needs one (VCF specification, section 1.5).")
    if [h.upper() for h in header[:5]] != VCF_COLUMNS:
        raise VariantInputError(f"{path}:{n_meta + 1}: the header line starts {'/'.join(header[:5])}, not "
                                f"{'/'.join(VCF_COLUMNS)}; is the file tab-delimited?")
    try:
        frame = pd.read_csv(path, sep="\t", skiprows=n_meta + 1, header=None, names=list(range(len(header))),
                            dtype=str, keep_default_na=False, quoting=csv.QUOTE_NONE, compression=compression,
                            skip_blank_lines=True, engine="c")
    except pd.errors.ParserError as err:
        raise VariantInputError(f"{path}: data lines do not match the header's {len(header)} columns "
                                f"({str(err).strip().splitlines()[-1]}).") from None
    frame = frame.iloc[:, :5].set_axis(["chrom", "pos", "id", "ref", "alt"], axis=1)
    short = (frame[["ref", "alt"]].isna() | (frame[["ref", "alt"]] == "")).any(axis=1).to_numpy()
    if short.any():
        line = n_meta + 2 + int(np.argmax(short))
        raise VariantInputError(f"{path}:{line} has fewer than 5 tab-separated fields; a VCF data line needs at "
                                "least CHROM POS ID REF ALT. Is the file tab-delimited?")
    not_int = ~frame.pos.str.fullmatch(r"\d+").to_numpy(dtype=bool)
    if not_int.any():
        row = int(np.argmax(not_int))
        raise VariantInputError(f"{path}:{n_meta + 2 + row}: POS {frame.pos.iat[row]!r} is not an integer.")
    frame["pos"] = frame.pos.astype(np.int64)
    frame["ref"] = frame.ref.str.upper()
    frame["alt"] = frame.alt.str.upper().str.split(",")
    return frame.explode("alt", ignore_index=True)


def read_variants(source) -> pd.DataFrame:
    """A variants DataFrame (returned as a copy), a VCF path (.vcf / .vcf.gz / .vcf.bgz) or a table path.

    Tables are tab-separated (or comma-separated if named .csv) with a header holding at least
    chrom, pos (1-based), ref, alt.
    """
    if isinstance(source, pd.DataFrame):
        table = source.copy()
    else:
        path = Path(source)
        name = path.name.lower()
        if name.endswith((".vcf", ".vcf.gz", ".vcf.bgz")):
            return read_vcf(path)
        if not path.is_file():
            raise VariantInputError(f"Variants file not found: {path}.")
        table = pd.read_csv(path, sep="," if name.endswith((".csv", ".csv.gz")) else "\t", dtype={"chrom": str})
    missing = [c for c in VARIANT_COLUMNS if c not in table.columns]
    if missing:
        raise VariantInputError(
            f"The variants table lacks column(s) {missing}; it needs {VARIANT_COLUMNS} (pos 1-based, as in "
            f"gReLU and VCF). Found columns: {list(table.columns)}."
        )
    table["chrom"] = table["chrom"].astype(str)
    table["pos"] = pd.to_numeric(table["pos"], errors="raise").astype(np.int64)
    table["ref"] = table["ref"].astype(str).str.upper()
    table["alt"] = table["alt"].astype(str).str.upper()
    return table


def genome_ref_alleles(variants: pd.DataFrame, genome) -> list[str]:
    """The genome's bases (upper case) where each variant's ``ref`` allele lies (module convention).

    Args:
        variants: table with chrom, pos (1-based), ref.
        genome: a :class:`grelu_caduceus.data.FastaGenome` (or anything with its ``fetch``).
    """
    return [genome.fetch(c, p - 1, p - 1 + len(r)).upper()
            for c, p, r in variants[["chrom", "pos", "ref"]].itertuples(index=False)]


def reference_matches(variants: pd.DataFrame, genome) -> np.ndarray:
    """Whether each variant's ``ref`` allele is the genome's (boolean array, one per row).

    The one reference check of this package: 1-based ``pos`` at the ref's first base (VCF), case
    ignored, "-" / "." always matching.
    """
    missing = {"chrom", "pos", "ref"} - set(variants.columns)
    if missing:
        raise VariantInputError(f"variants need columns chrom, pos, ref (and alt); missing {sorted(missing)}.")
    genome_ref = genome_ref_alleles(variants, genome)
    return np.array([r.upper() in NO_REF or g == r.upper() for g, r in zip(genome_ref, variants.ref.astype(str))],
                    dtype=bool)
