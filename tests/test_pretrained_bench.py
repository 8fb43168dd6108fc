"""benchmarks/run.py long_range --pretrained: probe and fine-tune released checkpoints, offline, on small
random checkpoints written here in the released layouts (HF cache for Caduceus, LongSafari folder for
HyenaDNA, a gReLU Enformer .ckpt)."""

import csv
import sys
from pathlib import Path

import pytest
import torch
from helpers import write_checkpoint

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import long_range, pretrained  # noqa: E402
from benchmarks.run import main as run_main  # noqa: E402

CADUCEUS = "kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16"
TINY = long_range.Budget(contexts=[96], readout_len=32, steps=2, train_seconds=0.1, max_steps=3, curve_points=1,
                         batch_size=8, warmup_steps=1, n_train=16, n_test=16, seeds=[0])


def write_enformer_ckpt(path: Path) -> Path:
    import pytorch_lightning as pl
    from grelu.lightning import LightningModel

    torch.manual_seed(0)  # gReLU's EnformerModel: 384 channels is the smallest width it builds
    lm = LightningModel(model_params=dict(model_type="EnformerModel", n_tasks=1, channels=384, n_transformers=1,
                                          n_heads=2, key_len=8, crop_len=0),
                        train_params=dict(task="binary", loss="bce"))
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(lm)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory):
    """{family: name}: a Caduceus-PS hub name in an offline HF cache, a HyenaDNA LongSafari folder, an
    Enformer .ckpt."""
    from test_hyenadna_pretrained import released_backbone, write_original

    root = tmp_path_factory.mktemp("released")
    repo = root / "hub" / ("models--" + CADUCEUS.replace("/", "--"))
    sha = "0123456789abcdef0123456789abcdef01234567"
    write_checkpoint(repo / "snapshots" / sha, d_model=16, n_layer=1, rcps=True)
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text(sha)
    hyena = write_original(root / "hyenadna-tiny", released_backbone(l_max=256), l_max=256)
    enformer = write_enformer_ckpt(root / "enformer.ckpt")
    return root / "hub", {"caduceus": CADUCEUS, "hyenadna": str(hyena), "enformer": str(enformer)}


@pytest.fixture
def offline(checkpoints, monkeypatch):
    cache, names = checkpoints
    monkeypatch.setenv("HF_HUB_CACHE", str(cache))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return names


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_parse_pretrained_names_the_fix():
    assert pretrained.parse_pretrained(["caduceus=a/b", "enformer=x.ckpt"]) == {"caduceus": "a/b",
                                                                                "enformer": "x.ckpt"}
    for bad, match in ((["a/b"], "FAMILY=NAME"), (["gpt=a"], "Unknown model family"),
                       (["caduceus=a", "caduceus=b"], "twice"), ([], "at least one")):
        with pytest.raises(ValueError, match=match):
            pretrained.parse_pretrained(bad)


def test_probe_all_three_families(offline, tmp_path):
    path = pretrained.run_pretrained(tmp_path, offline, mode="pretrained_probe", tasks=["motif_distance"],
                                     budget=TINY, log=lambda m: None)
    rows = _rows(path)
    assert path.name == "long_range_pretrained.csv"
    assert list(rows[0]) == pretrained.COLUMNS
    assert sorted(r["model"] for r in rows) == ["caduceus", "enformer", "hyenadna"]
    for r in rows:
        assert r["mode"] == "pretrained_probe" and r["budget"] == "probe" and r["metric"] == "auroc"
        assert 0.0 <= float(r["value"]) <= 1.0 and r["context_len"] == "96" and r["n_test"] == "16"
        assert r["note"].startswith("logistic C=")
    assert {r["checkpoint"] for r in rows} == set(offline.values())
    # resumable: a second call has nothing left to do
    pretrained.run_pretrained(tmp_path, offline, mode="pretrained_probe", tasks=["motif_distance"], budget=TINY,
                              log=lambda m: None)
    assert len(_rows(path)) == 3
    assert not (tmp_path / "long_range.csv").exists()  # the from-scratch grid's CSV is not touched


def test_probe_features_are_embed_features(offline):
    """The probe's features are embed.py's: the mean over the central readout of the per-position features."""
    from grelu_caduceus.embed import embed_onehot

    embedder = pretrained.load_family("caduceus", offline["caduceus"])
    x = long_range.one_hot(long_range.motif_distance_data(96, 2, 2, 0).codes)
    with torch.no_grad():
        feats = embedder.features(x)
    expected = feats[:, 32:64].mean(1).numpy()
    torch.testing.assert_close(torch.from_numpy(embed_onehot(embedder, x, pool_len=32)), torch.from_numpy(expected))
    # Enformer (128 bp bins): a 96 bp input is padded with N to one bin
    enformer = pretrained.load_family("enformer", offline["enformer"])
    assert enformer.bin_size == 128 and embed_onehot(enformer, x, pool_len=32).shape == (4, enformer.hidden_size)


def test_finetune_writes_both_budgets_and_curves(offline, tmp_path):
    names = {k: offline[k] for k in ("caduceus", "enformer")}
    path = pretrained.run_pretrained(tmp_path, names, mode="pretrained_finetune", tasks=["motif_distance"],
                                     budget=TINY, log=lambda m: None)
    rows = _rows(path)
    assert sorted((r["model"], r["budget"]) for r in rows) == [
        ("caduceus", "equal_steps"), ("caduceus", "equal_time"), ("enformer", "equal_steps"),
        ("enformer", "equal_time")]
    assert all(r["mode"] == "pretrained_finetune" for r in rows)
    assert {int(r["steps"]) for r in rows if r["budget"] == "equal_steps"} == {TINY.steps}
    curves = _rows(tmp_path / "long_range_pretrained_curves.csv")
    assert curves and {c["model"] for c in curves} == {"caduceus", "enformer"}


def test_finetune_trains_the_pretrained_trunk(offline):
    embedder = pretrained.load_family("hyenadna", offline["hyenadna"])
    model = pretrained.PooledHead(embedder, pool_len=32)
    before = [p.detach().clone() for p in model.trunk.parameters()]
    data = long_range.motif_distance_data(96, 16, 16, 0)
    long_range.train_run(model, long_range.one_hot(data.codes[~data.is_test]),
                         torch.from_numpy(data.labels[~data.is_test]), long_range.one_hot(data.codes[data.is_test]),
                         data.labels[data.is_test], TINY, seed=0)
    assert model(long_range.one_hot(data.codes[:2])).shape == (2, 1, 1)
    assert any(not torch.equal(a, b) for a, b in zip(before, model.trunk.parameters()))


def test_wrong_family_and_long_context_fail_before_any_run(offline, tmp_path):
    with pytest.raises(ValueError, match="loaded a hyenadna model"):
        pretrained.run_pretrained(tmp_path, {"caduceus": offline["hyenadna"]}, budget=TINY, log=lambda m: None)
    with pytest.raises(ValueError, match="at most 256 bp"):
        pretrained.run_pretrained(tmp_path, {"hyenadna": offline["hyenadna"]}, contexts=[544], budget=TINY,
                                  log=lambda m: None)
    assert not (tmp_path / "long_range_pretrained.csv").exists()


def test_cli(offline, tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(long_range, "QUICK", TINY)
    assert run_main(["long_range", "--quick", "--out", str(tmp_path), "--tasks", "motif_distance",
                     "--pretrained", f"enformer={offline['enformer']}", "--probe"]) == 0
    assert [r["mode"] for r in _rows(tmp_path / "long_range_pretrained.csv")] == ["pretrained_probe"]
    assert run_main(["long_range", "--finetune"]) == 2
    assert "need --pretrained" in capsys.readouterr().err
    assert run_main(["long_range", "--out", str(tmp_path), "--pretrained", "caduceus=kuleshov-group/not-cached"]) == 2
    err = capsys.readouterr().err
    assert "huggingface-cli download kuleshov-group/not-cached" in err and len(err.strip().splitlines()) == 1
