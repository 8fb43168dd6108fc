"""benchmarks/downstream.py: the pretrained LMs exported as loadable folders, and the scratch / finetune /
probe study on a tiny budget (tiny stand-in LMs of the lm arms' kinds, the bundled rnaseq_dm3 task)."""

import csv
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import downstream, long_range, pretraining  # noqa: E402
from grelu_caduceus.hyena import HyenaDNABackbone, HyenaDNAConfig  # noqa: E402
from grelu_caduceus.hyena import load_pretrained as load_hyena  # noqa: E402
from grelu_caduceus.hyena import save_pretrained as save_hyena  # noqa: E402

# The lm arms' kinds at a tiny size (the study reads EXPERIMENTS["lm"] when it runs).
TINY_ARMS = {
    "caduceus_ps": pretraining.Arm("caduceus", "mlm", d_model=16, n_layer=1, lr=8e-3, rcps=True, rc_aug=False),
    "caduceus_ph": pretraining.Arm("caduceus", "mlm", d_model=16, n_layer=1, lr=8e-3),
    "hyenadna": pretraining.Arm("hyenadna", "ntp", d_model=16, n_layer=1, lr=6e-4),
}
TINY = replace(downstream.BUDGET, contexts=[64], steps=2, max_steps=2, warmup_steps=1, n_train=16, n_test=16,
               seeds=[0])


def perturbed(module: torch.nn.Module, seed: int) -> torch.nn.Module:
    """Every parameter moved off its initial value (sine frequencies, norms and biases included), so a
    loader that rebuilds anything from the config instead of reading it fails the comparisons."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for p in module.parameters():
            p.add_(torch.randn(p.shape, generator=g) * 0.1)
    return module.eval()


@pytest.fixture
def tiny_arms(monkeypatch):
    monkeypatch.setitem(pretraining.EXPERIMENTS, "lm", dict(TINY_ARMS))


@pytest.fixture
def results(tmp_path, tiny_arms):
    """A results folder with the tiny LMs' weights.pt where pretraining leaves them -> (folder, {model: module})."""
    modules = {}
    for i, (model, arm) in enumerate(TINY_ARMS.items()):
        torch.manual_seed(i)
        modules[model] = perturbed(arm.build(), seed=10 + i)
        path = downstream.weights_path(tmp_path, model)
        path.parent.mkdir(parents=True)
        torch.save(modules[model].state_dict(), path)
    return tmp_path, modules


@pytest.mark.parametrize("released", [False, True], ids=["our_options", "released_options"])
def test_hyena_save_pretrained_round_trip(tmp_path, released):
    sizes = dict(d_model=16, n_layer=2, l_max=64, embed_dropout=0.0)
    if released:
        config = HyenaDNAConfig.released(train_positions=True, **sizes)
    else:  # the lm arm's options: our defaults, with the tied LM head
        config = HyenaDNAConfig(lm_head=True, **sizes)
    torch.manual_seed(0)
    backbone = perturbed(HyenaDNABackbone(config), seed=1)
    loaded = load_hyena(save_hyena(backbone, tmp_path / "m"))
    ids = torch.randint(7, 12, (2, 50), generator=torch.Generator().manual_seed(2))
    assert torch.equal(loaded(ids), backbone(ids))
    differs = {k for k, v in config.to_dict().items() if loaded.config.to_dict()[k] != v}
    assert differs <= {"lm_head"}  # the LM head is written (lm_head.weight) but not loaded


def test_hyena_save_pretrained_refuses_other_modules(tmp_path):
    with pytest.raises(TypeError, match="HyenaDNABackbone"):
        save_hyena(torch.nn.Linear(2, 2), tmp_path / "m")


def test_export_pretrained_lms_load_to_identical_outputs(results):
    from grelu_caduceus import load_pretrained

    folder, modules = results
    written = downstream.export_pretrained_lms(folder, log=lambda *a: None)
    assert set(written) == set(TINY_ARMS)
    ids = torch.randint(7, 11, (2, 40), generator=torch.Generator().manual_seed(3))
    for model in ("caduceus_ps", "caduceus_ph"):
        loaded = load_pretrained(written[model])
        assert loaded.config.rcps == TINY_ARMS[model].rcps
        assert torch.equal(loaded(ids), modules[model](ids))
    hyena = load_hyena(written["hyenadna"])
    assert torch.equal(hyena(ids), modules["hyenadna"](ids))
    assert (written["hyenadna"] / "pretraining.json").is_file()


def test_export_skips_models_without_weights(tmp_path, tiny_arms):
    said = []
    assert downstream.export_pretrained_lms(tmp_path, log=said.append) == {}
    assert len(said) == 3 and all("not exported" in s for s in said)
    with pytest.raises(ValueError, match="no pretrained caduceus_ps"):
        downstream.ensure_lms(tmp_path, ["caduceus_ps"])


def test_scratch_and_finetune_are_the_same_architecture(results):
    """The two trained inits differ only in their starting weights; finetune starts from the pretrained ones."""
    folder, modules = results
    downstream.export_pretrained_lms(folder, log=lambda *a: None)
    for model in TINY_ARMS:
        scratch = downstream.load_lm(model, "scratch", folder).state_dict()
        tuned = downstream.load_lm(model, "finetune", folder).state_dict()
        shapes = lambda sd: {k: tuple(v.shape) for k, v in sd.items() if k != "lm_head.weight"}  # noqa: E731
        assert shapes(scratch) == shapes(tuned)
        pretrained = modules[model].state_dict()
        assert all(torch.equal(tuned[k], pretrained[k]) for k in tuned if k in pretrained)


def _rows(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


def test_tiny_study_rows_and_resume(results, monkeypatch):
    folder, _ = results
    out = folder / "out"
    quiet = dict(log=lambda *a: None, lms_dir=folder, budget=TINY, tasks=["rnaseq_dm3"])
    path = downstream.run_downstream(out, **quiet)
    with open(path, newline="") as f:
        header = next(csv.reader(f))
    assert header[:6] == ["task", "model", "init", "seed", "metric", "value"] and header == downstream.COLUMNS
    rows = _rows(path)
    keys = {(r["model"], r["init"]) for r in rows}
    assert keys == {downstream.REFERENCE} | {(m, i) for m in TINY_ARMS for i in downstream.INITS}
    assert len(rows) == len(keys)
    for r in rows:
        assert r["metric"] == "auroc" and 0.0 <= float(r["value"]) <= 1.0
        assert (r["task"], r["seed"], r["context"], r["n_train"], r["n_test"]) == ("rnaseq_dm3", "0", "64", "16", "16")
        assert int(r["steps"]) == (TINY.steps if r["init"] in downstream.TRAINED_INITS else 0)
    by = {(r["model"], r["init"]): r for r in rows}
    assert by["caduceus_ps", "scratch"]["params"] == by["caduceus_ps", "finetune"]["params"]
    assert float(by["caduceus_ps", "scratch"]["lr"]) == long_range.MODEL_LR["caduceus"]
    assert float(by["hyenadna", "finetune"]["lr"]) == TINY.lr
    meta = (out / "downstream_meta.json").read_text()
    assert '"checkpoints_sha256"' in meta and '"cpu"' in meta

    # resuming: nothing to do; then one deleted row is redone alone
    calls = []
    real_run_one = downstream.run_one
    monkeypatch.setattr(downstream, "run_one", lambda *a, **k: calls.append(a[2:4]) or real_run_one(*a, **k))
    downstream.run_downstream(out, **quiet)
    assert calls == [] and len(_rows(path)) == len(rows)
    kept = [r for r in rows if (r["model"], r["init"]) != ("hyenadna", "probe")]
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=downstream.COLUMNS)
        writer.writeheader()
        writer.writerows(kept)
    downstream.run_downstream(out, **quiet)
    assert calls == [("hyenadna", "probe")]
    again = _rows(path)
    assert len(again) == len(rows) and again[-1]["value"] == by["hyenadna", "probe"]["value"]

    # another budget: the old rows are moved aside, not mixed in
    downstream.run_downstream(out, **dict(quiet, budget=replace(TINY, steps=3, max_steps=3)),
                              models=["hyenadna"], inits=["scratch"])
    assert len(_rows(out / "downstream.old.csv")) == len(rows)
    assert {(r["model"], r["init"]) for r in _rows(path)} == {downstream.REFERENCE, ("hyenadna", "scratch")}


def test_train_run_without_a_time_budget_stops_at_the_step_budget():
    """train_seconds None (the study's budget): exactly ``steps`` steps, one test evaluation at the end,
    no equal-time point, however slow or fast the steps are."""
    budget = replace(TINY, steps=5, max_steps=5, batch_size=4)
    x = long_range.one_hot(np.random.default_rng(0).integers(0, 4, size=(16, 16), dtype=np.uint8))
    y = np.tile(np.array([1, 0], dtype=np.float32), 8)
    for step_s in (0.001, 100.0):
        ticks = iter(np.arange(0, 1e6, step_s))
        net = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 1), torch.nn.Unflatten(1, (1, 1)))
        r = long_range.train_run(net, x, torch.from_numpy(y), x, y, budget, seed=0, clock=lambda: float(next(ticks)))
        assert set(r.points) == {"equal_steps"} and r.points["equal_steps"][0] == 5
        assert [c[0] for c in r.curve] == [5]


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="unknown init"):
        downstream.run_downstream(tmp_path, inits=["frozen"], log=lambda *a: None)
    with pytest.raises(ValueError, match="one context"):
        downstream.run_downstream(tmp_path, budget=replace(TINY, contexts=[64, 128]), log=lambda *a: None)


def test_tables_paired_differences(tmp_path):
    from scipy import stats

    auroc = {"scratch": [0.55, 0.60, 0.52], "finetune": [0.70, 0.66, 0.71], "probe": [0.61, 0.58, 0.66],
             "reference": [0.62, 0.63, 0.60]}
    rows = []
    for init, values in auroc.items():
        model = "kmer4" if init == "reference" else "caduceus_ps"
        for seed in (2, 0, 1):  # not in seed order: pairing must be by seed, not by position
            rows.append(dict(task="ctcf_hg19", model=model, init=init, seed=seed, metric="auroc", value=values[seed]))
    with open(tmp_path / "downstream.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=downstream.COLUMNS)
        writer.writeheader()
        writer.writerows(rows)

    def expected(a, b):
        d = np.subtract(auroc[a], auroc[b])
        ci = stats.ttest_1samp(d, 0.0).confidence_interval(0.95)
        return d.mean(), ci.low, ci.high

    pairs = downstream.paired_frame(downstream._read_csv(tmp_path)).set_index("comparison")
    text = downstream.downstream_tables(tmp_path)
    for a, b in (("finetune", "scratch"), ("probe", "scratch"), ("scratch", "reference"), ("finetune", "reference"),
                 ("probe", "reference")):
        mean, lo, hi = expected(a, b)
        r = pairs.loc[f"{a} − {'kmer4' if b == 'reference' else b}"]
        assert (r["mean"], r["lo"], r["hi"]) == pytest.approx((mean, lo, hi), abs=1e-12)
        cell = f"{mean:+.3f} [{lo:+.3f}, {hi:+.3f}]"
        assert (f"**{cell}**" if lo > 0 or hi < 0 else cell) in text
    assert "0.690 (0.660–0.710)" in text  # finetune: mean (min–max)
    assert "0.617 (0.600–0.630)" in text  # the k-mer reference
    png = downstream.plot_downstream(tmp_path)
    assert png.read_bytes()[:4] == b"\x89PNG"
