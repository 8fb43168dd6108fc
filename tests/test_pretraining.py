"""benchmarks/pretraining.py: the pre-training ablations' protocol, resumability and baselines.

The grid itself runs on hg19 chr20 (benchmarks/run.py pretraining); these tests use the bundled
real chr20 slice (chr20:40-44 Mb) with small blocks, and a protocol of a few steps.
"""

from dataclasses import replace
from itertools import product

import numpy as np
import pandas as pd
import pytest
import torch

import benchmarks.pretraining as P
from benchmarks.long_range import encode
from grelu_caduceus.core.tokens import MASK_ID
from grelu_caduceus.data import FastaGenome, demo_genome_fasta
from grelu_caduceus.tasks.mlm import IGNORE


@pytest.fixture(scope="module")
def slice_codes():
    genome = FastaGenome(demo_genome_fasta())
    (contig, size), = genome.sizes.items()
    return encode(genome.fetch(contig, 0, size))


@pytest.fixture
def small_genome(slice_codes):
    # blocks of 100 kb: block 3 (300-400 kb) is a val block; hold out its first 64 kb
    return P.Chr20(slice_codes[:1_000_000], block=100_000, heldout=(300_000, 364_000), edge_margin=2_000)


@pytest.fixture
def tiny_protocols(monkeypatch):
    monkeypatch.setitem(P.PROTOCOLS, "ablation", replace(P.PROTOCOLS["ablation"], seq_len=256, batch_size=2,
                                                         steps=6, eval_every=3))
    monkeypatch.setitem(P.PROTOCOLS, "lm", replace(P.PROTOCOLS["lm"], seq_len=256, batch_size=2, steps=4, eval_every=2))
    monkeypatch.setattr(P, "SAVE_EVERY", 2)
    monkeypatch.setattr(P, "MLM_KS", (1, 2))
    monkeypatch.setattr(P, "NTP_ORDERS", (1, 3))


def test_ablations_match_parameters_and_tokens():
    """Inside each ablation the variants have the same parameter count (within 5%) and the same
    tokens (>= 5M); mlm_rc and mlm_tying compare what the paper compares."""
    for experiment in P.ABLATIONS:
        arms = P.EXPERIMENTS[experiment]
        counts = {v: sum(p.numel() for p in a.build().parameters()) for v, a in arms.items()}
        assert max(counts.values()) <= 1.05 * min(counts.values()), (experiment, counts)
        assert P.protocol_of(experiment).tokens >= 5_000_000
    tying = P.EXPERIMENTS["mlm_tying"]
    assert tying["tied"].n_layer == 2 * tying["untied"].n_layer and tying["tied"].weight_tie and not tying["untied"].weight_tie
    rc = P.EXPERIMENTS["mlm_rc"]
    assert rc["caduceus_ps"].rcps and not rc["caduceus_ps"].rc_aug and not rc["bimamba"].rcps and rc["bimamba"].rc_aug
    ntp = P.EXPERIMENTS["ntp"]
    assert not ntp["mamba"].bidirectional and ntp["hyenadna"].family == "hyenadna"
    assert {a.objective for a in ntp.values()} == {"ntp"}


def test_causal_models_are_causal():
    """A next-token model's output at t must not depend on inputs after t."""
    torch.manual_seed(0)
    ids = torch.randint(7, 11, (1, 64))
    changed = ids.clone()
    changed[0, 40:] = 7 + (changed[0, 40:] - 7 + 1) % 4
    for arm in P.EXPERIMENTS["ntp"].values():
        model = arm.build().eval()
        with torch.no_grad():
            a, b = P.logits_of(model, arm, ids), P.logits_of(model, arm, changed)
        torch.testing.assert_close(a[0, :40], b[0, :40])
        assert not torch.allclose(a[0, 40:], b[0, 40:])


def test_training_region_avoids_val_and_test_blocks(small_genome):
    g = small_genome
    pieces = g.train_intervals()
    for a, b in pieces:
        for pos in (a, b - 1):
            assert P.is_train_block(pos // g.block)
    sampler = P.WindowSampler(g, 256)
    for step in range(5):
        codes = sampler.batch(seed=1, step=step, batch_size=8, rc_aug=False)
        assert codes.shape == (8, 256) and (codes < 4).all()
    # windows are a function of (seed, step) alone
    np.testing.assert_array_equal(sampler.batch(3, 7, 4, True), sampler.batch(3, 7, 4, True))
    assert not np.array_equal(sampler.batch(3, 7, 4, False), sampler.batch(3, 8, 4, False))
    held = g.heldout_windows(256)
    assert held.shape == (250, 256)


def test_training_windows_never_enter_excluded_blocks(small_genome):
    g = small_genome
    sampler = P.WindowSampler(g, 256)
    allowed = np.zeros(len(g.codes), bool)
    for a, b in g.train_intervals():
        allowed[a:b] = True
    # recover window starts by matching: sample starts directly through the sampler's own mapping
    rng = np.random.default_rng(0)
    u = rng.integers(0, sampler.n_positions, 20_000)
    piece = np.searchsorted(sampler.offsets, u, side="right") - 1
    starts = sampler.starts[piece] + (u - sampler.offsets[piece])
    assert allowed[starts].all() and allowed[starts + 255].all()
    assert not allowed[g.heldout[0]:g.heldout[1]].any()
    # margin kept beside the val block 300-400 kb and the test block 400-500 kb
    assert not allowed[300_000 - g.edge_margin:500_000 + g.edge_margin].any()


def test_markov_baseline_matches_direct_counts():
    """The order-k chain's loss equals a per-position computation from the counts."""
    rng = np.random.default_rng(0)
    train = rng.integers(0, 4, 5000).astype(np.uint8)
    train[100] = 4
    ids = P.codes_to_ids(rng.integers(0, 4, (3, 40)).astype(np.uint8))
    bases = (ids - 7).numpy()
    for order in (1, 3):
        scores = P.ntp_markov_scores(train, ids, order, alpha=0.5)
        losses, hits = [], []
        for r, t in product(range(3), range(1, 40)):
            j = min(order, t)
            context = tuple(bases[r, t - j:t])
            counts = np.full(4, 0.5)
            for i in range(j, len(train)):
                window = train[i - j:i + 1]
                if (window < 4).all() and tuple(window[:-1]) == context:
                    counts[window[-1]] += 1
            p = counts / counts.sum()
            losses.append(-np.log(p[bases[r, t]]))
            hits.append(p.argmax() == bases[r, t])
        assert scores["loss"] == pytest.approx(np.mean(losses), rel=1e-9)
        assert scores["accuracy"] == pytest.approx(np.mean(hits))


def test_mlm_kmer_baseline_scores_the_masked_positions(slice_codes):
    """predict_proba agrees with the argmax predictor, and the [MASK]-only scores are the subset."""
    from grelu_caduceus.demo.baselines import KmerContextModel, ids_to_bases

    train = slice_codes[:200_000]
    ids = P.codes_to_ids(slice_codes[300_000:300_000 + 8 * 256].reshape(8, 256))
    x, y = P.heldout_masks(ids)
    scores = P.mlm_kmer_scores(train, x, y, 2)
    model = KmerContextModel(2).fit(train)
    rows, cols = torch.nonzero(y != IGNORE, as_tuple=True)
    probs = model.predict_proba(ids_to_bases(x), rows.numpy(), cols.numpy())
    np.testing.assert_allclose(probs.sum(1), 1)
    pred = model.predict(ids_to_bases(x), rows.numpy(), cols.numpy())
    target = ids_to_bases(y[rows, cols])
    assert scores["accuracy"] == pytest.approx(float((pred == target).mean()), abs=0.01)  # ties may differ
    assert scores["positions"] == int((y != IGNORE).sum())
    assert scores["mask_positions"] == int(((y != IGNORE) & (x == MASK_ID)).sum())


def _rows(path):
    return pd.read_csv(path).drop(columns=["train_s"])


def test_a_row_is_reproducible_alone_and_after_an_interruption(small_genome, tiny_protocols, tmp_path, monkeypatch):
    """--only writes the same row twice; a run interrupted after a saved state and resumed ends
    where an uninterrupted run ends (weights and row)."""
    only = "mlm_rc/caduceus_ps/1"
    a = P.run_pretraining(tmp_path / "a", only=only, genome=small_genome, log=lambda *_: None)
    b = P.run_pretraining(tmp_path / "b", only=only, genome=small_genome, log=lambda *_: None)
    pd.testing.assert_frame_equal(_rows(a), _rows(b))
    row = pd.read_csv(a).iloc[0]
    assert (row.experiment, row.variant, row.seed, row.tokens) == ("mlm_rc", "caduceus_ps", 1, 6 * 2 * 256)
    assert row.heldout_mask_positions > 0 and np.isfinite(row.heldout_loss)

    calls = {"n": 0}
    original = P.WindowSampler.batch

    def interrupt_at_step_3(self, seed, step, batch_size, rc_aug):
        if step == 3 and calls["n"] == 0:
            calls["n"] += 1
            raise KeyboardInterrupt
        return original(self, seed, step, batch_size, rc_aug)

    monkeypatch.setattr(P.WindowSampler, "batch", interrupt_at_step_3)
    with pytest.raises(KeyboardInterrupt):
        P.run_pretraining(tmp_path / "c", only=only, genome=small_genome, log=lambda *_: None)
    assert not (tmp_path / "c" / "pretraining.csv").exists()
    assert torch.load(P.run_dir(tmp_path / "c", "mlm_rc", "caduceus_ps", 1) / "state.pt", weights_only=False)["step"] == 2
    c = P.run_pretraining(tmp_path / "c", only=only, genome=small_genome, log=lambda *_: None)
    pd.testing.assert_frame_equal(_rows(a), _rows(c))
    curves_a = pd.read_csv(tmp_path / "a" / "pretraining_curves.csv")
    curves_c = pd.read_csv(tmp_path / "c" / "pretraining_curves.csv")
    pd.testing.assert_frame_equal(curves_a, curves_c)


def test_grid_is_resumable_and_writes_baselines(small_genome, tiny_protocols, tmp_path, monkeypatch):
    monkeypatch.setattr(P, "EXPERIMENTS", {"ntp": P.EXPERIMENTS["ntp"], "mlm_tying": P.EXPERIMENTS["mlm_tying"]})
    monkeypatch.setattr(P, "ABLATIONS", ("ntp", "mlm_tying"))
    out = tmp_path / "grid"
    P.run_pretraining(out, seeds=[0], genome=small_genome, log=lambda *_: None)
    rows = pd.read_csv(out / "pretraining.csv")
    assert sorted(zip(rows.experiment, rows.variant)) == [("mlm_tying", "tied"), ("mlm_tying", "untied"),
                                                          ("ntp", "hyenadna"), ("ntp", "mamba")]
    assert set(rows[rows.experiment == "ntp"].heldout_positions) == {250 * 255}  # every next-token position
    baselines = pd.read_csv(out / "pretraining_baselines.csv")
    assert set(baselines.baseline) == {"kmer_context_k1", "kmer_context_k2", "markov_order1", "markov_order3"}
    curves = pd.read_csv(out / "pretraining_curves.csv")
    assert set(curves.step) == {0, 3, 6}
    log = []
    P.run_pretraining(out, seeds=[0], genome=small_genome, log=log.append)
    assert "4 of 4 runs done" in log[0] and len(pd.read_csv(out / "pretraining.csv")) == 4


def test_only_is_checked():
    with pytest.raises(ValueError, match="EXPERIMENT/VARIANT/SEED"):
        P.parse_only("mlm_rc/ps/0")
    assert P.parse_only("ntp/mamba/2") == ("ntp", "mamba", 2)


def test_report_says_per_claim_whether_the_paper_reproduces():
    """The claims table pairs by seed, signs the difference in the paper's direction and words it."""
    from scipy import stats

    from benchmarks.report import claim_comparisons, claim_verdict, pretraining_block

    rows = []
    for seed, (hyena, mamba, tied, untied, ps, bi) in enumerate([(1.30, 1.20, 1.10, 1.12, 1.05, 1.040),
                                                                (1.31, 1.22, 1.11, 1.10, 1.06, 1.048),
                                                                (1.29, 1.21, 1.09, 1.12, 1.05, 1.039)]):
        for experiment, variant, loss, objective in [("ntp", "hyenadna", hyena, "ntp"), ("ntp", "mamba", mamba, "ntp"),
                                                     ("mlm_tying", "tied", tied, "mlm"), ("mlm_tying", "untied", untied, "mlm"),
                                                     ("mlm_rc", "caduceus_ps", ps, "mlm"), ("mlm_rc", "bimamba", bi, "mlm")]:
            rows.append(dict(experiment=experiment, variant=variant, seed=seed, params=1000, tokens=5_242_880,
                             objective=objective, heldout_loss=loss))
    df = pd.DataFrame(rows)
    comp = claim_comparisons(df).set_index("experiment")
    d = np.array([1.30 - 1.20, 1.31 - 1.22, 1.29 - 1.21])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / np.sqrt(3)
    assert comp.loc["ntp", "mean"] == pytest.approx(d.mean())
    assert comp.loc["ntp", "lo"] == pytest.approx(d.mean() - half)
    assert "reproduces" in claim_verdict(comp.loc["ntp"])
    assert "not at this scale" in claim_verdict(comp.loc["mlm_tying"])  # +0.02, -0.01, +0.03
    assert "reversed" in claim_verdict(comp.loc["mlm_rc"])  # -0.010, -0.012, -0.011: interval below 0
    text = pretraining_block(df, None, None)
    assert "hyenadna − mamba" in text and "untied − tied" in text and "bimamba − caduceus_ps" in text


def test_the_same_model_under_two_names_is_trained_once(small_genome, tiny_protocols, tmp_path):
    """mlm_tying/tied and mlm_rc/bimamba are the same Arm: the second row is the first one renamed,
    and equals what training it alone gives."""
    assert P.EXPERIMENTS["mlm_tying"]["tied"] == P.EXPERIMENTS["mlm_rc"]["bimamba"]
    out = tmp_path / "twins"
    P.run_pretraining(out, only="mlm_tying/tied/0", genome=small_genome, log=lambda *_: None)
    log = []
    P.run_pretraining(out, only="mlm_rc/bimamba/0", genome=small_genome, log=log.append)
    assert any("its row is copied" in line for line in log)
    alone = P.run_pretraining(tmp_path / "alone", only="mlm_rc/bimamba/0", genome=small_genome, log=lambda *_: None)
    rows = pd.read_csv(out / "pretraining.csv")
    copied = rows[rows.experiment == "mlm_rc"].reset_index(drop=True)
    pd.testing.assert_frame_equal(copied.drop(columns="train_s"), _rows(alone))
    curves = pd.read_csv(out / "pretraining_curves.csv")
    assert len(curves[curves.experiment == "mlm_rc"]) == len(curves[curves.experiment == "mlm_tying"])
