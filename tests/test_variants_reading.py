"""Reading variants (data/variants.py): a VCF as the specification lays it out (meta lines, the
#CHROM header, FORMAT/sample columns, multi-allelic ALT, gzip and bgzip), clear one-line errors, and
one reference-allele convention shared by vep and grelu_compat."""

import gzip

import numpy as np
import pandas as pd
import pytest

from grelu_caduceus import grelu_compat
from grelu_caduceus.data.genome import FastaGenome
from grelu_caduceus.data.variants import VariantInputError, read_vcf, reference_matches
from grelu_caduceus.vep import check_reference

SAMPLES_VCF = ("##fileformat=VCFv4.3\n"
               "##INFO=<ID=DP,Number=1,Type=Integer,Description=\"Depth; with # inside\">\n"
               "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO\tFORMAT\tS1\tS2\n"
               "chr1\t3\trs1\tg\tA,<DEL>,t\t.\tPASS\tDP=3;NOTE=a#b\tGT\t0|1\t1/2\n"
               "\n"
               "chr1\t10\t.\tCGT\tC\t20\tq10\t.\tGT\t0/0\t./.\n")


@pytest.mark.parametrize("packing", ["plain", "gzip", "bgzip"])
def test_vcf_with_samples_and_multi_allelic_alts(tmp_path, packing):
    path = tmp_path / ("calls.vcf" if packing == "plain" else "calls.vcf.gz")
    if packing == "plain":
        path.write_text(SAMPLES_VCF)
    elif packing == "gzip":
        with gzip.open(path, "wt") as f:
            f.write(SAMPLES_VCF)
    else:
        from Bio import bgzf

        with bgzf.BgzfWriter(str(path), "wb") as f:
            f.write(SAMPLES_VCF.encode())
    table = read_vcf(path)
    assert table.values.tolist() == [["chr1", 3, "rs1", "G", "A"], ["chr1", 3, "rs1", "G", "<DEL>"],
                                     ["chr1", 3, "rs1", "G", "T"], ["chr1", 10, ".", "CGT", "C"]]
    assert table.pos.dtype == np.int64


@pytest.mark.parametrize("text, message", [
    ("##fileformat=VCFv4.2\nchr1\t3\t.\tA\tG\n", "no '#CHROM.*header line"),
    ("#CHROM POS ID REF ALT\nchr1 3 . A G\n", "header line starts CHROM POS ID REF ALT, not CHROM/POS"),
    ("#CHROM\tPOS\tID\tREF\tALT\nchr1\t3\t.\tA\n", r"calls.vcf:2 has fewer than 5 tab-separated fields"),
    ("##x\n#CHROM\tPOS\tID\tREF\tALT\nchr1\t3\t.\tA\tG\nchr1\t4.5\t.\tA\tG\n", r"calls.vcf:4: POS '4.5' is not"),
])
def test_vcf_errors_name_the_line_and_the_fix(tmp_path, text, message):
    path = tmp_path / "calls.vcf"
    path.write_text(text)
    with pytest.raises(VariantInputError, match=message):
        read_vcf(path)


def test_one_reference_convention(tmp_path):
    path = tmp_path / "g.fa"
    path.write_text(">chr1\nACGTACGTAC\n")
    genome = FastaGenome(path)
    # pos is 1-based at the ref's first base (VCF): chr1:2 is C, chr1:2-4 is CGT
    variants = pd.DataFrame({"chrom": ["chr1"] * 6, "pos": [2, 2, 2, 3, 5, 5],
                             "ref": ["C", "cgt", "ACG", "-", "A", "T"], "alt": ["A", "C", "A", "T", "G", "G"]})
    expected = [True, True, False, True, True, False]
    assert reference_matches(variants, genome).tolist() == expected
    with pytest.warns(UserWarning, match="2 of 6 variant"):
        assert check_reference(variants, path, on_mismatch="warn").ref_match.tolist() == expected
    assert grelu_compat.reference_mismatches(variants, path) == [2, 5]
