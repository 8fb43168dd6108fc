"""`vep-probe`: the paper's supervised VEP protocol end to end on bundled real human DNA, for Caduceus,
HyenaDNA and Enformer (small random-weight models saved here), plus its TSS / split / label helpers."""

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_checkpoint

from grelu_caduceus.data.bundled import demo_genome_fasta
from grelu_caduceus.data.genome import FastaGenome
from grelu_caduceus.vep_probe import (
    ProbeError,
    bucket_of,
    chromosome_split,
    distance_to_tss,
    read_tss,
    run_vep_probe,
)

CHROM_LEN = 1_000_000
TSS_AT = 10_000  # 0-based, one per chromosome
N_PER_BUCKET = 16
WINDOW, POOL = 128, 64
BUCKET_RANGES = ((1_000, 29_000), (31_000, 99_000), (101_000, 900_000))


def write_fasta(path, records):
    with open(path, "w") as f:
        for name, seq in records.items():
            f.write(f">{name}\n")
            f.writelines(seq[i:i + 60] + "\n" for i in range(0, len(seq), 60))
    return path


@pytest.fixture(scope="module")
def probe_inputs(tmp_path_factory):
    """Four 1-Mb 'chromosomes' cut from the bundled real chr20 sequence, a TSS per chromosome, and
    SNVs in each distance bucket labelled by the GC content of their pooled window (learnable)."""
    folder = tmp_path_factory.mktemp("probe")
    demo = demo_genome_fasta()
    source = FastaGenome(demo)
    name = next(iter(source.sizes))
    records = {f"chr{i + 1}": source.fetch(name, i * CHROM_LEN, (i + 1) * CHROM_LEN).upper() for i in range(4)}
    fasta = write_fasta(folder / "genome.fa", records)
    (folder / "tss.bed").write_text("".join(f"{c}\t{TSS_AT}\t{TSS_AT + 1}\tgene_{c}\t0\t+\n" for c in records))
    rng = np.random.default_rng(0)
    rows = []
    for chrom, seq in records.items():
        for lo, hi in BUCKET_RANGES:
            for d in rng.integers(lo, hi, N_PER_BUCKET):
                pos0 = TSS_AT + int(d)
                ref = seq[pos0]
                alt = "ACGT"[("ACGT".index(ref) + 1 + int(rng.integers(3))) % 4]
                pooled = seq[pos0 - POOL // 2:pos0 + POOL // 2]
                rows.append((chrom, pos0 + 1, ref, alt, (pooled.count("G") + pooled.count("C")) / POOL, int(d)))
    table = pd.DataFrame(rows, columns=["chrom", "pos", "ref", "alt", "gc", "tss_distance"])
    table["label"] = (table.gc > table.gc.median()).astype(int)
    table.drop(columns="gc").to_csv(folder / "labelled.tsv", sep="\t", index=False)
    return folder


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    import pytorch_lightning as pl
    from grelu.lightning import LightningModel

    folder = tmp_path_factory.mktemp("models")
    write_checkpoint(folder / "ps", d_model=16, n_layer=2, rcps=True)
    write_checkpoint(folder / "ph", d_model=16, n_layer=2, rcps=False, seed=3)
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    for name, params in (
        ("hyena", dict(model_type="HyenaDNAModel", n_tasks=1, d_model=16, n_layer=1, l_max=256)),
        # gReLU's own Enformer (the published architecture, scaled down): 3 conv blocks = 8-bp bins
        ("enformer", dict(model_type="EnformerModel", n_tasks=1, n_conv=3, channels=384, n_transformers=1,
                          n_heads=2, key_len=8)),
    ):
        lm = LightningModel(model_params=params, train_params=dict(task="binary", loss="bce"))
        trainer.strategy.connect(lm)
        trainer.save_checkpoint(folder / f"{name}.ckpt")
    return folder


@pytest.mark.parametrize("name", ["ps", "ph", "hyena.ckpt", "enformer.ckpt"])
def test_probe_end_to_end_reports_auroc_by_tss_bucket(probe_inputs, models, tmp_path, name):
    out = tmp_path / "out"
    report = run_vep_probe(models / name, probe_inputs / "labelled.tsv", probe_inputs / "genome.fa", out,
                           tss=probe_inputs / "tss.bed", test_chroms=["chr4"], window=WINDOW, pool_window=POOL,
                           Cs=(0.01, 1.0), progress=False)
    m = report.metrics.set_index("bucket")
    assert list(m.index) == ["0-30kb", "30-100kb", "100kb+", "all"]
    assert list(m.n_train) == [3 * N_PER_BUCKET] * 3 + [9 * N_PER_BUCKET]
    assert list(m.n_test) == [N_PER_BUCKET] * 3 + [3 * N_PER_BUCKET]
    assert m.auroc.notna().all() and m.loc["all", "auroc"] > 0.75, m
    csv = pd.read_csv(out / "auroc.csv")
    assert list(csv.bucket) == list(m.index)
    md = (out / "auroc.md").read_text()
    assert "| 30-100kb |" in md and "AUROC" in md
    z = np.load(out / "embeddings.npz")
    assert z["ref_embeddings"].shape[0] == 4 * 3 * N_PER_BUCKET and set(z["split"]) == {"train", "test"}
    assert set(report.predictions.chrom) == {"chr4"} and report.predictions.score.notna().all()
    strands = str(z["strands"])
    expected = {"ps": "symmetric", "ph": "conjoined to test", "hyena.ckpt": "forward", "enformer.ckpt": "forward"}
    assert expected[name] in strands


def test_cli_with_a_tss_column_and_a_split_column(probe_inputs, models, tmp_path, capsys):
    from grelu_caduceus.cli import main

    table = pd.read_csv(probe_inputs / "labelled.tsv", sep="\t")
    table["split"] = np.where(table.chrom == "chr1", "test", "train")
    table.to_csv(tmp_path / "t.tsv", sep="\t", index=False)
    assert main(["vep-probe", "--model", str(models / "ps"), "--variants", str(tmp_path / "t.tsv"), "--genome",
                 str(probe_inputs / "genome.fa"), "--tss-column", "tss_distance", "--out", str(tmp_path / "o"),
                 "--window", str(WINDOW), "--pool-window", str(POOL), "--classifier", "linear-svm", "--C", "0.1",
                 "--no-progress"]) == 0
    printed = capsys.readouterr().out
    assert "0-30kb: AUROC" in printed and "100kb+" in printed
    predictions = pd.read_csv(tmp_path / "o" / "predictions.tsv", sep="\t")
    assert set(predictions.chrom) == {"chr1"}
    assert "the table's split column" in (tmp_path / "o" / "auroc.md").read_text()
    # bad inputs fail in one line
    assert main(["vep-probe", "--model", str(models / "ps"), "--variants", str(tmp_path / "t.tsv"), "--genome",
                 str(probe_inputs / "genome.fa"), "--tss-column", "tss_distance", "--out", str(tmp_path / "o"),
                 "--label-column", "nope"]) == 2
    assert "no label column 'nope'" in capsys.readouterr().err


def test_tss_distance_strand_and_buckets(tmp_path):
    bed = tmp_path / "tss.bed"
    bed.write_text("chrom\tstart\tend\tname\tscore\tstrand\nchrA\t100\t200\tg1\t0\t+\nchrA\t5000\t90000\tg2\t0\t-\n")
    tss = read_tss(bed)
    assert list(tss["chrA"]) == [100, 89999]
    table = pd.DataFrame({"chrom": ["chrA", "chrA", "chrA", "chrB"], "pos": [101, 50001, 300000, 10]})
    d = distance_to_tss(table, tss)
    assert list(d[:3]) == [0, 39999, 300000 - 1 - 89999] and np.isnan(d[3])
    assert list(bucket_of(np.array([0, 29_999, 30_000, 99_999, 100_000, np.nan]))) == [
        "0-30kb", "0-30kb", "30-100kb", "30-100kb", "100kb+", ""]
    split = chromosome_split(pd.DataFrame({"chrom": ["chr9", "9", "chr1", "X"]}), ["chr9", "x"])
    assert list(split) == ["test", "test", "train", "test"]
    with pytest.raises(ProbeError, match="only 'train' and 'test'"):
        chromosome_split(pd.DataFrame({"chrom": ["1"], "split": ["val"]}), [])


def test_enformer_published_weights_offline_say_how_to_get_them(tmp_path, monkeypatch):
    import huggingface_hub.constants as constants

    from grelu_caduceus.embed import load_embedder
    from grelu_caduceus.enformer import EnformerWeightsError

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "empty-cache"))
    with pytest.raises(EnformerWeightsError, match="huggingface-cli download Genentech/enformer-model"):
        load_embedder("Genentech/enformer-model")
    bad = tmp_path / "human_state_dict.h5"
    bad.write_bytes(b"not a torch file")
    with pytest.raises(EnformerWeightsError, match="not a torch state dict"):
        load_embedder(bad)


def test_enformer_windows_must_fill_whole_bins(probe_inputs, models):
    from grelu_caduceus.embed import EmbedError, load_embedder
    from grelu_caduceus.variant_embed import embed_variants

    embedder = load_embedder(models / "enformer.ckpt")
    assert embedder.bin_size == 8 and embedder.hidden_size == 768  # 3 conv blocks; 2 x channels
    with pytest.raises(EmbedError, match="multiple of 8 bp"):
        embed_variants(embedder, probe_inputs / "labelled.tsv", probe_inputs / "genome.fa", window=100,
                       progress=False)
