"""`embed`: pooled interval embeddings, end to end on bundled real human DNA (kipoi example genome)."""

from pathlib import Path

import numpy as np
import pytest
import torch

from grelu_caduceus.core import load_pretrained
from grelu_caduceus.core.tokens import rc_onehot
from grelu_caduceus.data.genome import FastaGenome, one_hot_encode
from grelu_caduceus.embed import EmbedError, embed_intervals, load_embedder

ROOT = Path(__file__).resolve().parents[1]
FASTA = ROOT / "kipoi_model" / "example_files" / "genome.fa"
CHROM = "chr20_43300000_43400000"
INTERVALS = [(10000, 10200), (20000, 20150), (30000, 30200), (45000, 45100)]


@pytest.fixture
def bed(tmp_path):
    path = tmp_path / "i.bed"
    path.write_text("".join(f"{CHROM}\t{s}\t{e}\n" for s, e in INTERVALS))
    return path


def seq(start, end):
    return one_hot_encode(FastaGenome(FASTA).fetch(CHROM, start, end)).unsqueeze(0)


def test_ps_embedding_is_the_papers_strand_average(bed, ps_folder):
    table, emb = embed_intervals(ps_folder, FASTA, bed, progress=False)
    assert emb.shape == (4, 16) and emb.dtype == np.float32 and np.isfinite(emb).all()
    assert list(table.start) == [s for s, _ in INTERVALS] and (table.pool_end - table.pool_start).tolist() == [
        200, 150, 200, 100]
    backbone = load_pretrained(ps_folder).backbone
    with torch.no_grad():
        h = backbone(seq(20000, 20150))  # (1, L, 2 * 16): forward half, then the RC stream
        a, b = h.chunk(2, dim=-1)
        expected = ((a + b.flip(-1)) / 2).mean(1)[0]
        # The same interval read on the other strand gives the same embedding.
        embedder = load_embedder(ps_folder)
        rc = embedder.features(rc_onehot(seq(20000, 20150))).mean(1)[0]
    torch.testing.assert_close(torch.from_numpy(emb[1]), expected, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(rc, expected, rtol=1e-4, atol=1e-5)


def test_ph_is_conjoined_by_default_and_windows_and_context_pool_the_right_positions(bed, ph_folder):
    _, emb = embed_intervals(ph_folder, FASTA, bed, window=128, progress=False)
    _, fwd = embed_intervals(ph_folder, FASTA, bed, window=128, rc_average=False, progress=False)
    assert not np.allclose(emb, fwd)
    embedder = load_embedder(ph_folder, rc_average=False)
    centre = (10000 + 10200) // 2
    with torch.no_grad():
        window = embedder.features(seq(centre - 64, centre + 64)).mean(1)[0]
        conj = load_embedder(ph_folder)
        x = seq(centre - 64, centre + 64)
        invariant = conj.features(rc_onehot(x)).mean(1)[0]
        with_context = embedder.features(seq(centre - 64 - 32, centre + 64 + 32))[0, 32:-32].mean(0)
    torch.testing.assert_close(torch.from_numpy(fwd[0]), window, rtol=1e-5, atol=1e-6)
    torch.testing.assert_close(torch.from_numpy(emb[0]), invariant, rtol=1e-4, atol=1e-5)
    _, ctx = embed_intervals(ph_folder, FASTA, bed, window=128, context=32, rc_average=False, progress=False)
    torch.testing.assert_close(torch.from_numpy(ctx[0]), with_context, rtol=1e-5, atol=1e-6)
    _, mx = embed_intervals(embedder, FASTA, bed, pool="max", progress=False)
    assert (mx >= fwd.min()).all()


def test_cli_writes_npz_with_interval_columns(tmp_path, bed, ps_folder, capsys):
    from grelu_caduceus.cli import main

    out = tmp_path / "e.npz"
    assert main(["embed", "--model", str(ps_folder), "--fasta", str(FASTA), "--bed", str(bed), "--out", str(out),
                 "--window", "64"]) == 0
    z = np.load(out)  # no pickles: plain arrays only
    assert z["embeddings"].shape == (4, 16)
    assert list(z["chrom"]) == [CHROM] * 4 and list(z["start"]) == [s for s, _ in INTERVALS]
    assert (z["pool_end"] - z["pool_start"] == 64).all() and "PS" in str(z["strands"])
    assert "embedded 4 interval(s)" in capsys.readouterr().out
    assert main(["embed", "--model", str(ps_folder), "--fasta", str(FASTA), "--bed", str(bed), "--out", str(out),
                 "--pool", "mean", "--context", "-1"]) == 2
    assert "context must be >= 0" in capsys.readouterr().err


def test_grelu_checkpoint_of_our_models(tmp_path, bed, ps_folder):
    import pytorch_lightning as pl
    from grelu.lightning import LightningModel

    lm = LightningModel(model_params=dict(model_type="CaduceusPretrainedModel", n_tasks=1,
                                          pretrained_path=str(ps_folder)),
                        train_params=dict(task="regression", loss="mse"))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(lm)
    ckpt = tmp_path / "tuned.ckpt"
    trainer.save_checkpoint(ckpt)
    _, from_ckpt = embed_intervals(ckpt, FASTA, bed, progress=False)
    _, from_folder = embed_intervals(ps_folder, FASTA, bed, progress=False)
    np.testing.assert_allclose(from_ckpt, from_folder, rtol=1e-5, atol=1e-6)

    hyena = LightningModel(model_params=dict(model_type="HyenaDNAModel", n_tasks=1, d_model=16, n_layer=1,
                                             l_max=256), train_params=dict(task="regression", loss="mse"))
    trainer.strategy.connect(hyena)
    trainer.save_checkpoint(tmp_path / "hyena.ckpt")
    _, emb = embed_intervals(tmp_path / "hyena.ckpt", FASTA, bed, progress=False)
    assert emb.shape == (4, 16) and np.isfinite(emb).all()
    with pytest.raises(EmbedError, match="longest input"):
        embed_intervals(tmp_path / "hyena.ckpt", FASTA, bed, window=512, progress=False)
