"""Variant-effect scoring: VCF/table reading, reference checks, the zero-shot LLR on a planted motif,
strand averaging, the CLI, and gReLU's predict_variant_effects on a fine-tuned Caduceus."""

import contextlib
import gzip
import warnings

import numpy as np
import pandas as pd
import pytest
import torch

from grelu_caduceus.core.tokens import strings_to_ids
from grelu_caduceus.data import FastaGenome
from grelu_caduceus.tasks.mlm import MLMLightningModel
from grelu_caduceus.vep import (
    ReferenceMismatchError,
    VariantInputError,
    check_reference,
    read_variants,
    read_vcf,
    score_variants_finetuned,
    score_variants_zero_shot,
)

MOTIF = "GATTACA"
REPEATS = 120
BREAK_AT = 7 * 60 + 2  # 0-based position of a planted motif break: motif base T replaced by C
INTACT_AT = 7 * 30 + 4  # 0-based position of an intact motif base (A)


def write_fasta(path, records):
    with open(path, "w") as f:
        for name, seq in records.items():
            f.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                f.write(seq[i : i + 60] + "\n")
    return path


@pytest.fixture(scope="module")
def motif_genome(tmp_path_factory):
    """chrM: GATTACA repeated, with one broken copy (T -> C at BREAK_AT); chrR: random sequence."""
    folder = tmp_path_factory.mktemp("genome")
    seq = list(MOTIF * REPEATS)
    assert seq[BREAK_AT] == "T" and seq[INTACT_AT] == "A"
    seq[BREAK_AT] = "C"
    rng = np.random.default_rng(0)
    path = write_fasta(folder / "toy.fa", {"chrM": "".join(seq), "chrR": "".join(rng.choice(list("ACGT"), 500))})
    genome = FastaGenome(path)
    with open(f"{path}.sizes", "w") as f:
        f.writelines(f"{name}\t{size}\n" for name, size in genome.sizes.items())
    return path


@contextlib.contextmanager
def single_thread():
    """Tiny tensors gain nothing from thread pools, and idle OpenMP threads spin on a busy machine."""
    import numba

    threads, numba_threads = torch.get_num_threads(), numba.get_num_threads()
    torch.set_num_threads(1)
    numba.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(threads)
        numba.set_num_threads(numba_threads)


@pytest.fixture(scope="module")
def motif_mlm(motif_genome):
    """A tiny Caduceus-PS masked LM trained briefly on windows of the repeated motif."""
    with single_thread():
        return train_motif_mlm(motif_genome)


def train_motif_mlm(motif_genome):
    torch.manual_seed(0)
    module = MLMLightningModel(dict(d_model=16, n_layer=1, rcps=True), {"mask_prob": 0.2})
    genome = FastaGenome(motif_genome)
    clean = strings_to_ids([MOTIF * REPEATS])[0]
    optimizer = torch.optim.AdamW(module.model.parameters(), lr=1e-2)
    rng = np.random.default_rng(0)
    module.train()
    for _ in range(60):
        starts = rng.integers(0, len(clean) - 64, 16)
        loss, _, _ = module.masked_loss(torch.stack([clean[s : s + 64] for s in starts]))
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    assert genome.sizes["chrM"] == len(clean)
    return module.model.eval()


def variants(*rows):
    return pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt"])


# --------------------------------------------------------------------------- reading
VCF_TEXT = """##fileformat=VCFv4.2
##contig=<ID=chrM,length=840>
#CHROM\tPOS\tID\tREF\tALT\tQUAL\tFILTER\tINFO
chrM\t5\trs1\tA\tG\t.\tPASS\t.
chrM\t423\trs2\tc\tT,G\t50\tPASS\tDP=3
chrR\t10\t.\tAC\tA\t.\t.\t.
"""


def test_read_vcf_plain_and_gzip(tmp_path):
    plain = tmp_path / "calls.vcf"
    plain.write_text(VCF_TEXT)
    packed = tmp_path / "calls.vcf.gz"
    with gzip.open(packed, "wt") as f:
        f.write(VCF_TEXT)
    for path in (plain, packed):
        table = read_vcf(path)
        assert table.columns.tolist() == ["chrom", "pos", "id", "ref", "alt"]
        assert table.values.tolist() == [
            ["chrM", 5, "rs1", "A", "G"],
            ["chrM", 423, "rs2", "C", "T"],  # lower-case ref upper-cased; multi-allelic split
            ["chrM", 423, "rs2", "C", "G"],
            ["chrR", 10, ".", "AC", "A"],
        ]
        assert read_variants(path).equals(table)


def test_read_vcf_and_table_errors(tmp_path):
    bad = tmp_path / "bad.vcf"
    bad.write_text("#CHROM\tPOS\tID\tREF\tALT\nchrM\tfive\t.\tA\tG\n")
    with pytest.raises(VariantInputError, match="POS 'five' is not an integer"):
        read_vcf(bad)
    spaces = tmp_path / "spaces.vcf"
    spaces.write_text("chrM 5 . A G\n")
    with pytest.raises(VariantInputError, match="tab-delimited"):
        read_vcf(spaces)
    with pytest.raises(VariantInputError, match=r"lacks column\(s\) \['alt'\]"):
        read_variants(pd.DataFrame({"chrom": ["chrM"], "pos": [5], "ref": ["A"]}))
    table = tmp_path / "v.tsv"
    variants(("chrM", 5, "a", "g")).to_csv(table, sep="\t", index=False)
    assert read_variants(table).values.tolist() == [["chrM", 5, "A", "G"]]


# --------------------------------------------------------------------------- reference check
def test_reference_mismatch_is_an_error_not_a_silent_score(motif_genome, motif_mlm):
    wrong = variants(("chrM", INTACT_AT + 1, "A", "C"), ("chrM", BREAK_AT + 1, "T", "C"))  # genome has C
    with pytest.raises(ReferenceMismatchError, match=f"chrM:{BREAK_AT + 1} ref T but genome has C"):
        score_variants_zero_shot(motif_mlm, wrong, motif_genome, window=64)
    with pytest.warns(UserWarning, match="1 of 2 variant"):
        kept = score_variants_zero_shot(motif_mlm, wrong, motif_genome, window=64, on_mismatch="warn")
    assert kept.ref_match.tolist() == [True, False]
    assert np.isfinite(kept.llr[0]) and np.isnan(kept.llr[1])
    with pytest.warns(UserWarning):
        dropped = check_reference(wrong, motif_genome, on_mismatch="drop")
    assert dropped.pos.tolist() == [INTACT_AT + 1]


def test_bad_chromosome_and_position_errors(motif_genome):
    from grelu_caduceus.data import GenomeDataError

    with pytest.raises(GenomeDataError, match="Did you mean 'chrM'"):
        check_reference(variants(("M", 3, "T", "A")), motif_genome)
    with pytest.raises(VariantInputError, match="outside their chromosome"):
        check_reference(variants(("chrR", 501, "A", "C")), motif_genome)


# --------------------------------------------------------------------------- zero-shot scores
def test_llr_sign_on_a_planted_motif(motif_genome, motif_mlm):
    table = variants(
        ("chrM", INTACT_AT + 1, "A", "G"),  # breaks an intact motif copy
        ("chrM", BREAK_AT + 1, "C", "T"),  # restores the broken copy
    )
    scored = score_variants_zero_shot(motif_mlm, table, motif_genome, window=64)
    breaks, restores = scored.llr.tolist()
    assert breaks < -1.0, scored
    assert restores > 1.0, scored
    assert np.allclose(scored.llr, scored.logp_alt - scored.logp_ref)


def test_rc_average_agrees_with_one_strand_for_an_equivariant_model(motif_genome, motif_mlm):
    # Caduceus-PS gives exactly mirrored predictions on the reverse strand, so averaging the strands
    # (site mirrored, alleles complemented) must reproduce the forward-only scores.
    table = variants(("chrM", INTACT_AT + 1, "A", "G"), ("chrM", BREAK_AT + 1, "C", "T"), ("chrR", 3, None, "A"))
    table.loc[2, "ref"] = FastaGenome(motif_genome).fetch("chrR", 2, 3)
    if table.loc[2, "ref"] == "A":
        table.loc[2, "alt"] = "C"
    both = score_variants_zero_shot(motif_mlm, table, motif_genome, window=64, rc_average=True)
    forward = score_variants_zero_shot(motif_mlm, table, motif_genome, window=64, rc_average=False)
    assert np.allclose(both.llr, forward.llr, atol=1e-4)
    assert np.isfinite(both.llr).all()  # chrR:3 has a window reaching past the chromosome start (N padding)


def test_embedding_distance_and_non_snvs(motif_genome, motif_mlm):
    table = variants(("chrM", INTACT_AT + 1, "A", "G"), ("chrM", INTACT_AT + 1, "AT", "A"))
    table.loc[1, "ref"] = FastaGenome(motif_genome).fetch("chrM", INTACT_AT, INTACT_AT + 2)
    with pytest.warns(UserWarning, match="not single-base"):
        scored = score_variants_zero_shot(motif_mlm, table, motif_genome, window=64, embedding_distance=True)
    assert scored.embedding_distance[0] > 0 and np.isnan(scored.embedding_distance[1])
    assert np.isfinite(scored.llr[0]) and np.isnan(scored.llr[1])


def test_cli_zero_shot_from_a_saved_model(tmp_path, motif_genome, motif_mlm):
    from grelu_caduceus.cli import UserError
    from grelu_caduceus.cli.vep import main
    from grelu_caduceus.core import save_pretrained

    folder = tmp_path / "mlm"
    save_pretrained(motif_mlm, folder)
    vcf = tmp_path / "calls.vcf"
    vcf.write_text(f"#CHROM\tPOS\tID\tREF\tALT\nchrM\t{INTACT_AT + 1}\tv1\tA\tG\nchrM\t{BREAK_AT + 1}\tv2\tC\tT\n")
    out = tmp_path / "scores.tsv"
    assert main(["--model", str(folder), "--variants", str(vcf), "--genome", str(motif_genome), "--out", str(out),
                 "--window", "64"]) == 0
    scores = pd.read_csv(out, sep="\t")
    assert scores.id.tolist() == ["v1", "v2"]
    assert scores.llr[0] < 0 < scores.llr[1]
    vcf.write_text(f"#CHROM\tPOS\tID\tREF\tALT\nchrM\t{BREAK_AT + 1}\tv2\tT\tC\n")
    with pytest.raises(UserError, match="differs from the genome"):
        main(["--model", str(folder), "--variants", str(vcf), "--genome", str(motif_genome), "--out", str(out)])
    with pytest.raises(UserError, match="does not exist"):
        main(["--model", str(tmp_path / "nope"), "--variants", str(vcf), "--genome", str(motif_genome),
              "--out", str(out)])


# --------------------------------------------------------------------------- fine-tuned scores
def test_finetuned_scores_match_direct_predictions(tmp_path, motif_genome):
    import pytorch_lightning as pl
    from grelu.data.dataset import LabeledSeqDataset
    from grelu.lightning import LightningModel

    from grelu_caduceus.core.tokens import ids_to_onehot
    from grelu_caduceus.vep import load_masked_lm

    torch.manual_seed(0)
    model = LightningModel(
        model_params={"model_type": "CaduceusModel", "n_tasks": 1, "d_model": 16, "n_layer": 1},
        train_params={"task": "binary", "loss": "bce", "lr": 1e-3, "batch_size": 4, "num_workers": 0},
    )
    rng = np.random.default_rng(0)
    data = LabeledSeqDataset(["".join(rng.choice(list("ACGT"), 32)) for _ in range(8)],
                             labels=np.array([0, 1] * 4, np.float32)[:, None, None], tasks=["site"])
    trainer = pl.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                         enable_model_summary=False, accelerator="cpu", devices=1)
    trainer.fit(model, model.make_train_loader(data))
    model.data_params = {"train": {"seq_len": 32}, "tasks": {"name": ["site"]}}
    ckpt = tmp_path / "tuned.ckpt"
    trainer.save_checkpoint(ckpt)

    table = variants(("chrM", INTACT_AT + 1, "A", "G"), ("chrM", BREAK_AT + 1, "C", "T"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        scored = score_variants_finetuned(ckpt, table, motif_genome)
    reference = MOTIF * REPEATS
    model.eval()
    expected = []
    for pos, alt in ((INTACT_AT + 1, "G"), (BREAK_AT + 1, "T")):
        start = pos - 16  # gReLU centres a 32 bp window so the variant is its 16th base (0-based 15)
        ref_seq = "".join(list(reference[start : start + 32]))
        ref_seq = ref_seq[:15] + FastaGenome(motif_genome).fetch("chrM", pos - 1, pos) + ref_seq[16:]
        alt_seq = ref_seq[:15] + alt + ref_seq[16:]
        with torch.no_grad():
            p = model(ids_to_onehot(strings_to_ids([ref_seq, alt_seq]))).reshape(-1)
        expected.append((p[1] - p[0]).item())
    assert np.allclose(scored.effect_site, expected, atol=1e-5)
    with pytest.raises(ValueError, match="not a Caduceus masked LM"):
        load_masked_lm(ckpt)
