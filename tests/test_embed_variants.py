"""`embed --variants`: ref/alt window embeddings of SNVs, end to end on bundled real human DNA."""

from pathlib import Path

import numpy as np
import pytest
import torch

from grelu_caduceus.data.genome import FastaGenome, one_hot_encode
from grelu_caduceus.embed import EmbedError, load_embedder
from grelu_caduceus.variant_embed import embed_variants
from grelu_caduceus.vep import ReferenceMismatchError

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT / "kipoi_model" / "example_files" / "genome.fa"
CHROM = "chr20_43300000_43400000"
POSITIONS = [5001, 12345, 40000, 77777, 99990]  # 1-based; the last one's window runs off the end (N)


def genome_base(pos):
    return FastaGenome(FASTA).fetch(CHROM, pos - 1, pos).upper()


def other_base(base):
    return "ACGT"[("ACGT".index(base) + 1) % 4]


@pytest.fixture
def table(tmp_path):
    rows = ["chrom\tpos\tref\talt\tid"]
    for i, pos in enumerate(POSITIONS):
        ref = genome_base(pos)
        rows.append(f"{CHROM}\t{pos}\t{ref}\t{other_base(ref)}\tv{i}")
    rows.append(f"{CHROM}\t20000\t{genome_base(20000)}\t{genome_base(20000)}AT\tindel")
    path = tmp_path / "variants.tsv"
    path.write_text("\n".join(rows) + "\n")
    return path


def test_ref_and_alt_windows_are_pooled_around_the_variant(table, ps_folder):
    with pytest.warns(UserWarning, match="1 of 6 variant"):
        result = embed_variants(ps_folder, table, FASTA, window=128, pool_window=32, progress=False)
    assert result.n_skipped == 1 and list(result.table.id) == [f"v{i}" for i in range(5)]
    assert result.ref.shape == result.alt.shape == (5, 16) and np.isfinite(result.ref).all()
    assert (result.table.pool_end - result.table.pool_start == 32).all()
    embedder = load_embedder(ps_folder)
    genome = FastaGenome(FASTA)
    for j, pos in enumerate(POSITIONS):
        start = pos - 1 - 64
        seq = genome.fetch(CHROM, start, start + 128)
        assert seq[64] == genome_base(pos)
        alt_seq = seq[:64] + other_base(seq[64]) + seq[65:]
        with torch.no_grad():
            feats = embedder.features(torch.stack([one_hot_encode(seq), one_hot_encode(alt_seq)]))
        expected = feats[:, 64 - 16:64 + 16].mean(1)
        torch.testing.assert_close(torch.from_numpy(result.ref[j]), expected[0], rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(torch.from_numpy(result.alt[j]), expected[1], rtol=1e-5, atol=1e-6)
    assert not np.allclose(result.ref, result.alt)


def test_both_strands_for_ph_and_symmetry_for_ps(table, ph_folder, ps_folder):
    with pytest.warns(UserWarning):
        ph = embed_variants(ph_folder, table, FASTA, window=96, both_strands=True, progress=False)
        ps = embed_variants(ps_folder, table, FASTA, window=96, both_strands=True, progress=False)
    assert not np.allclose(ph.ref, ph.ref_rc)  # Ph: the two strands differ ...
    with pytest.warns(UserWarning):
        conj = embed_variants(ph_folder, table, FASTA, window=96, progress=False)  # ... and Ph is conjoined
    np.testing.assert_allclose(conj.ref, (ph.ref + ph.ref_rc) / 2, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(ps.ref_rc, ps.ref)


def test_reference_mismatch_and_indel_policies(tmp_path, ps_folder):
    ref = genome_base(5001)
    wrong = other_base(ref)
    path = tmp_path / "bad.tsv"
    path.write_text(f"chrom\tpos\tref\talt\n{CHROM}\t5001\t{wrong}\t{ref}\n{CHROM}\t6001\t{genome_base(6001)}\t"
                    f"{other_base(genome_base(6001))}\n{CHROM}\t7001\tAT\tA\n")
    with pytest.raises(ReferenceMismatchError, match=f"{CHROM}:5001 ref {wrong} but genome has {ref}"):
        embed_variants(ps_folder, path, FASTA, window=64, progress=False)
    with pytest.warns(UserWarning):
        kept = embed_variants(ps_folder, path, FASTA, window=64, on_mismatch="warn", progress=False)
    assert np.isnan(kept.ref[0]).all() and np.isfinite(kept.ref[1]).all() and list(kept.table.ref_match) == [
        False, True]
    with pytest.warns(UserWarning):
        dropped = embed_variants(ps_folder, path, FASTA, window=64, on_mismatch="drop", progress=False)
    assert list(dropped.table.pos) == [6001]
    with pytest.raises(EmbedError, match="not single-base"):
        embed_variants(ps_folder, path, FASTA, window=64, indels="error", on_mismatch="drop", progress=False)


def test_cli_variant_mode_with_a_vcf(tmp_path, ps_folder, capsys):
    from grelu_caduceus.cli import main

    vcf = tmp_path / "calls.vcf"
    lines = ["##fileformat=VCFv4.2", "#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO"]
    for pos in POSITIONS[:3]:
        ref = genome_base(pos)
        lines.append(f"{CHROM}\t{pos}\trs{pos}\t{ref}\t{other_base(ref)},{other_base(other_base(ref))}\t.\t.\t.")
    lines.append(f"{CHROM}\t30000\t.\t{genome_base(30000)}\t<DEL>\t.\t.\t.")
    vcf.write_text("\n".join(lines) + "\n")
    out = tmp_path / "v.npz"
    assert main(["embed", "--model", str(ps_folder), "--variants", str(vcf), "--genome", str(FASTA), "--out",
                 str(out), "--window", "64", "--no-progress"]) == 0
    printed = capsys.readouterr()  # the result on stdout, each warning as one line on stderr
    assert "embedded 6 variant(s)" in printed.out
    assert "grelu-caduceus embed: warning: 1 of 7 variant(s) are not single-base" in printed.err
    z = np.load(out)
    assert z["ref_embeddings"].shape == z["alt_embeddings"].shape == (6, 16)
    assert list(z["pos"]) == [p for p in POSITIONS[:3] for _ in range(2)] and list(z["chrom"]) == [CHROM] * 6
    assert len(set(z["alt"][:2])) == 2 and (z["ref_embeddings"][0] == z["ref_embeddings"][1]).all()
    assert main(["embed", "--model", str(ps_folder), "--variants", str(vcf), "--genome", str(FASTA), "--out",
                 str(out), "--indels", "error"]) == 2
    assert "not single-base" in capsys.readouterr().err
