"""Benchmarks: matched model zoo, scaling measurements, long-range data and training, report."""

import importlib
import json
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import long_range, report, scaling  # noqa: E402
from benchmarks.run import main as run_main  # noqa: E402


# ------------------------------------------------------------------------------- model zoo


def test_matched_models_have_matched_sizes_and_centre_readout():
    """The three matched models are within 20% of each other, and readout_len crops to the centre."""
    counts = {}
    for name in scaling.MATCHED:
        torch.manual_seed(0)
        model = scaling.build_model(name, 256, readout_len=128)
        counts[name] = scaling.count_params(model)
        x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 256)), 4).transpose(1, 2).float()
        features = model.embedding(x)
        # Enformer's trunk works on 32 bp positions; the others per base.
        expected = 128 // scaling.length_multiple(name)
        assert features.shape[-1] == expected, name
        assert model(x).shape == (2, 1, 1), name
    assert max(counts.values()) / min(counts.values()) < 1.2, counts
    assert all(100_000 <= c <= 300_000 for c in counts.values()), counts


@pytest.mark.parametrize("name", ["caduceus", "hyenadna"])
def test_centre_readout_still_depends_on_distal_bases(name):
    """Cropping the output to the centre keeps distal input visible through the trunk.

    (Not asserted for Enformer: its attention output projection starts at zero, so an untrained
    Enformer is exactly local.)
    """
    torch.manual_seed(0)
    model = scaling.build_model(name, 256, readout_len=64).eval()
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (1, 256)), 4).transpose(1, 2).float()
    x_far = x.clone()
    x_far[:, :, :16] = x_far[:, :, :16].roll(1, dims=1)  # change the first 16 bp only
    with torch.no_grad():
        assert (model(x) - model(x_far)).abs().max() > 0


def test_model_params_errors_name_the_fix():
    with pytest.raises(ValueError, match="divisible by 32"):
        scaling.model_params("enformer", 1000)
    with pytest.raises(ValueError, match="readout_len"):
        scaling.model_params("caduceus", 256, readout_len=300)
    with pytest.raises(ValueError, match="choose from"):
        scaling.model_params("transformer", 256)
    with pytest.raises(ValueError, match="divisible by 6"):
        scaling.compact_enformer_trunk(5, 128, 1, 4, 16, 0.0, 0.0, 0.0)


def test_compact_enformer_pools_by_two_per_conv_block():
    torch.manual_seed(0)
    trunk = scaling.compact_enformer_trunk(4, 96, 1, 2, 16, 0.0, 0.0, 0.0)
    out = trunk(torch.zeros(3, 4, 512))
    assert out.shape == (3, 192, 512 // 16)


# ------------------------------------------------------------------------------- scaling


def test_predict_next_extrapolates_a_power_law():
    assert scaling.predict_next([(1000, 1.0)], 4000) == pytest.approx(16.0)  # one point: quadratic
    assert scaling.predict_next([(1000, 1.0), (2000, 2.0)], 8000) == pytest.approx(8.0)  # linear trend
    assert scaling.predict_next([(1000, 1.0), (2000, 1.0)], 8000) == pytest.approx(4.0)  # clamped to >= 1
    assert scaling.predict_next([(1000, 1.0), (2000, 100.0)], 4000) == pytest.approx(100 * 2**2.5)  # <= 2.5


@pytest.mark.skipif(not os.access("/proc/self/clear_refs", os.W_OK), reason="needs Linux peak-RSS reset")
def test_peak_memory_sees_an_allocation_and_its_absence():
    with scaling.PeakMemory("cpu") as big:
        block = torch.ones(50 * 2**20)  # 200 MiB, touched
        del block
    with scaling.PeakMemory("cpu") as small:
        torch.ones(1000).sum()
    assert 180 < big.peak_mb < 400
    assert small.peak_mb < 50


def test_scaling_suite_writes_the_csv(tmp_path):
    path = scaling.run_scaling(tmp_path, quick=True, models=["enformer"], lengths=[256, 512], log=lambda m: None)
    d = pd.read_csv(path)
    assert list(d.columns) == scaling.COLUMNS
    assert set(d.model) == {"enformer"}
    assert set(d["mode"]) == {"fwd", "fwd_bwd"}
    assert set(d.seq_len) == {256, 512}
    assert (d.ms > 0).all()
    assert d.device.str.startswith("cpu").all()
    meta = json.loads((tmp_path / "scaling_meta.json").read_text())
    assert meta["cpu"] and meta["cpu"] != "unknown" and meta["quick"] is True and meta["lengths"] == [256, 512]
    assert meta["cores"] == torch.get_num_threads() and meta["torch"] == torch.__version__


def test_report_names_the_scaling_machine(tmp_path):
    """The scaling block states the CPU model and sweep recorded in scaling_meta.json (none without it)."""
    _fake_results(tmp_path)
    df = pd.read_csv(tmp_path / "scaling.csv")
    assert "Hardware:" not in report.scaling_block(df, None)
    meta = dict(cpu="Some CPU 9000", cores=2, torch="2.x", quick=True, lengths=[1024, 4096])
    text = report.scaling_block(df, None, meta)
    assert "Hardware: Some CPU 9000, 2 torch threads, torch 2.x." in text
    assert "the quick one (`--quick`), lengths 1k, 4k" in text


# ------------------------------------------------------------------------------- long-range data


def test_motif_distance_places_the_motif_cluster_at_the_chosen_distance():
    context, distance = 512, 512 // 2 - 32
    assert long_range.motif_distance(context) == distance
    data = long_range.motif_distance_data(context, n_train=20, n_test=10, seed=3)
    assert data.codes.shape == (30, context)
    assert data.labels[~data.is_test].mean() == 0.5 and data.labels[data.is_test].mean() == 0.5
    motif = long_range.encode(long_range.MOTIF)
    motif_rc = (3 - motif)[::-1]
    k = len(motif)
    for codes, label in zip(data.codes, data.labels):
        hits = [s for s in range(context - k + 1)
                if (codes[s:s + k] == motif).all() or (codes[s:s + k] == motif_rc).all()]
        if label:  # four adjacent copies, centred on +-distance
            offsets = [s + k // 2 - context // 2 for s in hits]
            assert len({o > 0 for o in offsets}) == 1  # all on one side
            assert sorted(abs(o) for o in offsets) == [distance - 21, distance - 7, distance + 7, distance + 21]
        else:
            assert hits == []


def test_motif_distance_is_reproducible_per_seed():
    a = long_range.motif_distance_data(256, 8, 8, seed=1)
    b = long_range.motif_distance_data(256, 8, 8, seed=1)
    c = long_range.motif_distance_data(256, 8, 8, seed=2)
    assert (a.codes == b.codes).all() and not (a.codes == c.codes).all()


def test_real_task_from_bundled_windows_is_balanced_and_centred():
    from grelu_caduceus.data import read_task_table

    task = long_range.RealTask("atac", max_context=160)
    data = task.data(n_train=8, n_test=6, seed=0)
    assert data.codes.shape == (14, 160)
    assert data.labels[~data.is_test].sum() == 4 and data.labels[data.is_test].sum() == 3
    # Test examples do not depend on the seed; training examples do.
    other = task.data(n_train=8, n_test=6, seed=1)
    assert (other.codes[other.is_test] == data.codes[data.is_test]).all()
    assert not (other.codes[~other.is_test] == data.codes[~data.is_test]).all()
    # Every row is the centre of a bundled 200 bp window with its label.
    table = read_task_table("atac")
    centres = {long_range.encode(s[20:180]).tobytes(): lab for s, lab in zip(table.seq, table.label)}
    for codes, label in zip(data.codes, data.labels):
        assert centres[codes.tobytes()] == label
    assert (data.centre(96) == data.codes[:, 32:128]).all()


def _chr20_prepared() -> bool:
    from benchmarks.data.prepare import default_cache_dir

    return (default_cache_dir() / "hg19_chr20" / ".prepared.json").exists()


@pytest.mark.skipif(not _chr20_prepared(), reason="hg19 chr20 not fetched (benchmarks/data/prepare.py hg19_chr20)")
def test_real_task_with_long_context_is_centred_on_the_bundled_window():
    """Windows read from the full chr20 hold the bundled 200 bp window exactly in their centre."""
    from grelu_caduceus.data import read_task_table

    task = long_range.RealTask("ctcf", max_context=1024, log=lambda m: None)
    data = task.data(n_train=6, n_test=4, seed=0)
    assert data.codes.shape == (10, 1024)
    centre = data.centre(200)
    table = read_task_table("ctcf")
    bundled = {long_range.encode(seq).tobytes(): label for seq, label in zip(table.seq, table.label)}
    for codes, label in zip(centre, data.labels):
        assert bundled[codes.tobytes()] == label


def test_sample_balanced_explains_a_too_large_request():
    labels = np.array([1, 0, 0, 0], dtype=np.float32)
    with pytest.raises(ValueError, match="lower n_train"):
        long_range.sample_balanced(labels, np.arange(4), 4, np.random.default_rng(0))


def test_auroc_matches_pairwise_definition():
    rng = np.random.default_rng(0)
    labels = rng.integers(0, 2, 60)
    scores = rng.integers(0, 5, 60).astype(float)  # many ties
    pos, neg = scores[labels == 1], scores[labels == 0]
    pairwise = ((pos[:, None] > neg[None]).sum() + 0.5 * (pos[:, None] == neg[None]).sum()) / (len(pos) * len(neg))
    assert long_range.auroc(labels, scores) == pytest.approx(pairwise)
    assert long_range.auroc(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.3, 0.4])) == 1.0


def test_motif_pair_needs_both_flanks():
    """Positives: A left and B right; negatives: exactly one of them (A-left only or B-right only)."""
    context = 288
    d = long_range.motif_distance(context)
    data = long_range.motif_pair_data(context, n_train=16, n_test=8, seed=0)
    a, b = long_range.encode(long_range.MOTIF), long_range.encode(long_range.MOTIF_B)
    k = len(a)

    def offsets(codes, motif):
        rc = long_range.reverse_complement(motif)
        return [s + k // 2 - context // 2 for s in range(context - k + 1)
                if (codes[s:s + k] == motif).all() or (codes[s:s + k] == rc).all()]

    kinds = set()
    for codes, label in zip(data.codes, data.labels):
        oa, ob = offsets(codes, a), offsets(codes, b)
        assert all(o < 0 for o in oa) and all(o > 0 for o in ob)  # A only ever left, B only right
        assert not oa or abs(np.mean(oa) + d) <= 1 and len(oa) == long_range.PAIR_COPIES
        kind = (bool(oa), bool(ob))
        assert kind == (True, True) if label else kind in {(True, False), (False, True)}
        kinds.add(kind)
    assert kinds == {(True, True), (True, False), (False, True)}
    assert data.labels[data.is_test].mean() == 0.5


def test_motif_rc_is_strand_biased_in_training_and_reverse_complemented_in_test():
    context = 160
    data = long_range.motif_rc_data(context, n_train=200, n_test=200, seed=1)
    motif = long_range.encode(long_range.RC_MOTIF)
    rc = long_range.reverse_complement(motif)
    assert (motif != rc).any()  # not its own reverse complement: the strand is visible
    k, d = len(motif), long_range.motif_distance(context)

    def hits(codes, m):
        return [s for s in range(context - k + 1) if (codes[s:s + k] == m).all()]

    def forward_share(rows):
        strands = []
        for codes in rows:
            f, r = hits(codes, motif), hits(codes, rc)
            assert sorted([len(f), len(r)]) == [0, long_range.RC_COPIES]  # one strand per sequence
            starts = f or r
            assert abs(abs(np.mean(starts) + k / 2 - context // 2) - d) <= 1  # at +-distance
            strands.append(bool(f))
        return np.mean(strands)

    pos, test = data.labels.astype(bool), data.is_test
    # Training: mostly forward (RC_FORWARD); test rows are exact reverse complements of rows drawn the
    # same way, so undoing the RC gives the training strand mix back and as given they are mostly reverse.
    assert abs(forward_share(data.codes[pos & ~test]) - long_range.RC_FORWARD) < 0.12
    held_out = long_range.reverse_complement(data.codes[pos & test])
    assert abs(forward_share(held_out) - long_range.RC_FORWARD) < 0.12
    assert abs(forward_share(data.codes[pos & test]) - (1 - long_range.RC_FORWARD)) < 0.12
    # The label is "the motif on either strand": negatives have it on neither.
    assert (long_range.contains_motif(data.codes, motif) == pos).all()
    again = long_range.motif_rc_data(context, n_train=200, n_test=200, seed=1)
    assert (again.codes == data.codes).all()
    assert (long_range.reverse_complement(np.array([[0, 1, 2, 3, 4]], np.uint8)) == [[4, 0, 1, 2, 3]]).all()


def test_contains_motif_sees_both_strands_and_nothing_else():
    motif = long_range.encode("AACCGT")
    rows = np.stack([long_range.encode(s) for s in ("TTAACCGTTT", "TTACGGTTTT", "TTAACCGATT", "AAAAAAAAAA")])
    assert long_range.contains_motif(rows, motif).tolist() == [True, True, False, False]


def test_rnaseq_dm3_slice_sites_match_the_bundled_coverage_rule():
    """The bundled fly task: balanced, centred on its 32 bp site, train and test blocks apart, and
    its sequence read from the bundled chr2R slice at the table's coordinates."""
    prepare = importlib.import_module("benchmarks.data.prepare")

    task = long_range.real_task(long_range.TASKS["rnaseq_dm3"], max_context=544, log=lambda m: None)
    table = task.table
    assert set(table.label) == {0, 1} and set(table.split) == {"train", "test"}
    assert ((table.end - table.start) == prepare.RNASEQ_SITE).all()
    block = (table.start + prepare.RNASEQ_SITE // 2 - prepare.RNASEQ_REGION[1]) // prepare.RNASEQ_BLOCK
    assert ((block % 5 == 4) == (table.split == "test")).all()
    # GC-matched negatives: the two classes' mean GC differ by little.
    assert abs(table[table.label == 1].gc.mean() - table[table.label == 0].gc.mean()) < 0.02
    data = task.data(n_train=16, n_test=8, seed=0)
    assert data.codes.shape == (24, 544) and data.labels.mean() == 0.5
    assert (data.codes < 4).all()
    genome = long_range.SliceGenome(prepare.BUNDLED / "dm3_chr2R_slice.fa.gz")
    row = table.iloc[0]
    centre = (row.start + row.end) // 2
    window = long_range.encode(genome.fetch("chr2R", centre - 272, centre + 272))
    task._read(np.array([0]))
    assert (task._codes[0] == window).all()
    with pytest.raises(ValueError, match="outside the bundled slice"):
        genome.fetch("chr2R", genome.start - 1, genome.start + 10)
    # The GC column is the central 128 bp of the slice.
    seq = genome.fetch("chr2R", centre - 64, centre + 64).upper()
    assert row.gc == pytest.approx((seq.count("G") + seq.count("C")) / 128, abs=1e-4)


def test_kmer_counts_are_frequencies_of_every_window():
    codes = np.stack([long_range.encode("ACGTA"), long_range.encode("AANAA")])
    f = long_range.kmer_counts(codes, k=2)
    index = {a + b: i for i, (a, b) in enumerate((a, b) for a in "ACGT" for b in "ACGT")}
    assert f[0, index["AC"]] == f[0, index["CG"]] == f[0, index["GT"]] == f[0, index["TA"]] == 0.25
    assert f[1, index["AA"]] == 1.0 and f.sum(1).tolist() == [1.0, 1.0]  # windows with N skipped


def test_rnaseq_dm3_label_is_learnable_and_needs_context():
    """A 4-mer logistic-regression reference on the grid's sample (256 training sequences): above
    chance, and better with 544 bp around the site than with the 32 bp site alone."""
    task = long_range.real_task(long_range.TASKS["rnaseq_dm3"], max_context=544, log=lambda m: None)
    data = task.data(n_train=256, n_test=128, seed=0)
    site, wide = long_range.kmer_probe(data, 32), long_range.kmer_probe(data, 544)
    assert wide > 0.65 and wide > site + 0.1


def test_read_wig_coverage_variable_and_fixed_step(tmp_path):
    from benchmarks.data.prepare import read_wig_coverage

    wig = tmp_path / "x.wig"
    wig.write_text("track type=wiggle_0\nvariableStep chrom=chr2R\n11 5\n12 7\nvariableStep chrom=chr3L\n11 9\n"
                   "fixedStep chrom=chr2R start=15 step=2 span=2\n1\n3\n")
    cov = read_wig_coverage(wig, "chr2R", 9, 20)  # 0-based 9..19 = 1-based 10..20
    assert cov.tolist() == [0, 5, 7, 0, 0, 1, 1, 3, 3, 0, 0]


@pytest.mark.skipif(not (Path(os.environ.get("GRELU_CADUCEUS_DATA") or REPO / "data_cache")
                         / "dm3_chr2R" / ".prepared.json").exists(),
                    reason="dm3 chr2R not fetched (benchmarks/data/prepare.py dm3_chr2R)")
def test_rnaseq_dm3_bundle_is_rebuilt_exactly_from_the_package(tmp_path):
    """prepare.py --bundle reproduces the committed slice and table byte for byte."""
    prepare = importlib.import_module("benchmarks.data.prepare")

    out = prepare.bundle(out_dir=tmp_path, log=lambda m: None)["rnaseq_dm3"]
    for key, name in (("fasta", "dm3_chr2R_slice.fa.gz"), ("table", "rnaseq_dm3.tsv.gz")):
        assert out[key].read_bytes() == (prepare.BUNDLED / name).read_bytes()


class _Linear(torch.nn.Module):
    def __init__(self, length):
        super().__init__()
        self.fc = torch.nn.Linear(4 * length, 1)

    def forward(self, x):
        return self.fc(x.flatten(1)).reshape(-1, 1, 1)


def test_train_run_reports_both_budgets_and_a_curve():
    """With a fake clock (every step 0.5 s): equal_steps after `steps` steps, equal_time at the time
    budget (more steps), the curve has both points, and evaluation is not counted as training time."""
    ticks = iter(np.arange(0, 1000, 0.25))  # consecutive clock calls 0.25 s apart

    def clock():
        return float(next(ticks))

    budget = long_range.Budget(contexts=[16], readout_len=16, steps=3, train_seconds=2.0, curve_points=2,
                               batch_size=4, warmup_steps=1)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(24, 16), dtype=np.uint8)
    labels = np.tile(np.array([1, 0], dtype=np.float32), 12)
    x = long_range.one_hot(codes)
    torch.manual_seed(0)
    result = long_range.train_run(_Linear(16), x[:16], torch.from_numpy(labels[:16]), x[16:], labels[16:], budget,
                                  seed=0, clock=clock)
    steps_point, time_point = result.points["equal_steps"], result.points["equal_time"]
    step_s = 0.25  # consecutive clock calls (start, end of a step) differ by 0.25
    assert steps_point[0] == 3 and steps_point[1] == pytest.approx(3 * step_s)
    assert time_point[0] == 8 and time_point[1] == pytest.approx(2.0)
    curve_steps = [c[0] for c in result.curve]
    assert curve_steps == sorted(curve_steps) and {2, 3, 4, 8} <= set(curve_steps)
    assert all(0 <= c[2] <= 1 for c in result.curve)


def test_train_run_equal_time_before_equal_steps_and_max_steps():
    """A slow model hits the time budget first and keeps training to the step budget; max_steps caps
    a fast model's equal-time run."""
    budget = long_range.Budget(contexts=[16], readout_len=16, steps=4, train_seconds=1.0, curve_points=1,
                               batch_size=4, warmup_steps=1, max_steps=6)
    x = long_range.one_hot(np.random.default_rng(0).integers(0, 4, size=(16, 16), dtype=np.uint8))
    y = np.tile(np.array([1, 0], dtype=np.float32), 8)
    slow = iter(np.arange(0, 1000, 0.5))  # 0.5 s per step
    r = long_range.train_run(_Linear(16), x, torch.from_numpy(y), x, y, budget, seed=0, clock=lambda: float(next(slow)))
    assert r.points["equal_time"][0] == 2 and r.points["equal_steps"][0] == 4
    fast = iter(np.arange(0, 1000, 0.001))
    r = long_range.train_run(_Linear(16), x, torch.from_numpy(y), x, y, budget, seed=0, clock=lambda: float(next(fast)))
    assert r.points["equal_time"][0] == 6 and r.points["equal_time"][1] < 1.0


def test_training_learns_an_easy_task():
    """The shared loop fits a motif inside the read-out window (so a broken loop cannot pass)."""
    budget = long_range.Budget(contexts=[128], readout_len=64, steps=30, train_seconds=0.0, batch_size=8, lr=3e-3,
                               warmup_steps=2, curve_points=1)
    rng = np.random.default_rng(0)
    codes = rng.integers(0, 4, size=(192, 128), dtype=np.uint8)
    labels = np.tile(np.array([1, 0], dtype=np.float32), 96)
    codes[labels == 1, 60:68] = long_range.encode("GGGGGGGG")
    x = long_range.one_hot(codes)
    torch.manual_seed(0)
    model = scaling.build_model("enformer", 128, readout_len=64)
    result = long_range.train_run(model, x[:128], torch.from_numpy(labels[:128]), x[128:], labels[128:], budget, seed=0)
    steps, seconds, value = result.points["equal_steps"]
    assert steps == 30 and value > 0.9 and seconds > 0


def test_long_range_grid_is_resumable_and_moves_an_old_csv_aside(tmp_path):
    """Rows are appended per run; a rerun skips finished runs and redoes a missing one; a CSV of the
    old protocol (other columns) is moved aside, not mixed in."""
    (tmp_path / "long_range.csv").write_text("task,model,value\nx,y,1\n")
    budget = long_range.Budget(contexts=[96, 160], readout_len=32, steps=2, train_seconds=0.05, max_steps=4,
                               curve_points=1, batch_size=4, warmup_steps=1, n_train=8, n_test=8, seeds=[0, 1])
    logs = []
    run = dict(tasks=["motif_distance", "motif_pair"], models=["enformer"], log=logs.append, budget=budget)
    path = long_range.run_long_range(tmp_path, **run)
    assert (tmp_path / "long_range.old.csv").exists()
    d = pd.read_csv(path)
    assert list(d.columns) == long_range.COLUMNS
    assert len(d) == 2 * 2 * 2 * 2  # tasks x seeds x contexts x budget kinds
    assert set(d.budget) == set(long_range.BUDGET_KINDS)
    assert (d.groupby(["task", "context_len"]).seed.nunique() == 2).all()
    assert (d[d.budget == "equal_steps"].steps == 2).all()
    curves = pd.read_csv(tmp_path / "long_range_curves.csv")
    assert list(curves.columns) == long_range.CURVE_COLUMNS and len(curves) >= 8
    meta = json.loads((tmp_path / "long_range_meta.json").read_text())
    assert meta["cpu"] and meta["budget"]["steps"] == 2
    assert any("ETA" in line for line in logs)
    logs.clear()
    long_range.run_long_range(tmp_path, **run)
    assert len(pd.read_csv(path)) == 16 and any("16 of 16 runs already" in line or "8 of 8 runs already" in line
                                                 for line in logs)
    d[~((d.task == "motif_pair") & (d.seed == 1) & (d.context_len == 160))].to_csv(path, index=False)
    logs.clear()
    long_range.run_long_range(tmp_path, **run)
    d2 = pd.read_csv(path)
    assert len(d2) == 16 and any("1 to run" in line for line in logs)
    # A seed subset is the same grid: nothing is moved aside and nothing rerun.
    logs.clear()
    long_range.run_long_range(tmp_path, **(run | dict(seeds=[1])))
    assert len(pd.read_csv(path)) == 16 and not any("moved to" in line for line in logs)
    # Another budget (here: more steps) is another protocol: its CSVs are moved aside, all runs redone.
    logs.clear()
    from dataclasses import replace

    long_range.run_long_range(tmp_path, **(run | dict(budget=replace(budget, steps=3))))
    assert any("another budget" in line and "long_range.old.csv" in line for line in logs)
    assert len(pd.read_csv(tmp_path / "long_range.old.csv")) == 16
    d3 = pd.read_csv(path)
    assert len(d3) == 16 and (d3[d3.budget == "equal_steps"].steps == 3).all()


def test_predicted_seconds_follow_the_slower_of_the_two_budgets():
    budget = long_range.Budget(steps=50, train_seconds=5.0)
    assert long_range.predicted_seconds("caduceus", 544, budget) > 50 * 0.5  # caduceus: steps dominate
    enformer = long_range.predicted_seconds("enformer", 160, budget)  # enformer: the time budget
    assert 5.0 + long_range.RUN_OVERHEAD < enformer < 6.0 + long_range.RUN_OVERHEAD
    assert long_range.FULL.seeds == [0, 1, 2] and len(long_range.FULL.contexts) == 3


@pytest.mark.slow
def test_long_range_quick_cli(tmp_path):
    """`run.py long_range --quick`: every grid task, model and context gets both budget rows."""
    assert run_main(["long_range", "--quick", "--out", str(tmp_path)]) == 0
    d = pd.read_csv(tmp_path / "long_range.csv")
    assert list(d.columns) == long_range.COLUMNS
    assert set(d.task) == set(long_range.GRID_TASKS)
    assert set(d.model) == {"caduceus", "hyenadna", "enformer"}
    assert (d.data == "synthetic").any() and (d.data != "synthetic").any()
    assert (d.groupby(["task", "model"]).context_len.nunique() == len(long_range.QUICK.contexts)).all()
    assert d.value.between(0, 1).all() and (d.metric == "auroc").all()
    assert set(d.budget) == set(long_range.BUDGET_KINDS)
    # Per-model learning rates (MODEL_LR), the same on every task, recorded in the lr column.
    lrs = d.groupby("model").lr.unique()
    assert list(lrs["caduceus"]) == [long_range.MODEL_LR["caduceus"]]
    assert list(lrs["enformer"]) == list(lrs["hyenadna"]) == [long_range.QUICK.lr]


# ------------------------------------------------------------------------------- report


def _fake_results(folder: Path):
    rows = []
    for model, base in (("caduceus", 10.0), ("hyenadna", 5.0), ("enformer", 2.0)):
        for L in (1024, 4096):
            for mode in ("fwd", "fwd_bwd"):
                rows.append(dict(model=model, seq_len=L, params=200_000, mode=mode, ms=base * L / 1024,
                                 peak_mem_mb=L / 100, device="cpu (2 threads)"))
    pd.DataFrame(rows).to_csv(folder / "scaling.csv", index=False)
    rows = []
    for task, kind in (("syn", "synthetic"), ("real_a", "real")):
        for model, auc in (("caduceus", 0.6), ("hyenadna", 0.7), ("enformer", 0.55)):
            for ctx in (256, 1024):
                for seed in (0, 1):
                    rows.append(dict(task=task, data=kind, model=model, context_len=ctx, params=200_000,
                                     metric="auroc", value=auc + 0.01 * seed, seed=seed, steps=10, n_train=32,
                                     n_test=32, train_s=1.0))
    pd.DataFrame(rows).to_csv(folder / "long_range.csv", index=False)


def _squash(text: str) -> str:
    """Markdown with the column padding of DataFrame.to_markdown collapsed to single spaces."""
    import re

    return re.sub(r" +", " ", text)


def test_report_fills_the_readme_blocks_and_writes_plots(tmp_path):
    _fake_results(tmp_path)
    readme = tmp_path / "README.md"
    readme.write_text("# Bench\nprose stays\n<!-- BEGIN scaling -->\nold\n<!-- END scaling -->\n"
                      "<!-- BEGIN long_range -->\n<!-- END long_range -->\n")
    assert report.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = _squash(readme.read_text())
    assert "prose stays" in text and "\nold\n" not in text
    assert "Enformer/Caduceus time 0.20" in text  # 2 ms / 10 ms per 1024 bp at the longest common length
    assert "| 4k | 40.0 | 20.0 | 8.0 |" in text
    assert "0.605 (0.600–0.610)" in text  # mean (min–max) over the two seeds
    assert "Caduceus is behind (equal steps) in" in text and "hyenadna 0.705" in text
    for png in ("scaling_time.png", "scaling_memory.png", "long_range.png"):
        assert (tmp_path / png).stat().st_size > 1000


def test_paired_difference_t_interval():
    from scipy import stats

    a = pd.Series([0.9, 0.8, 0.85], index=[0, 1, 2])
    b = pd.Series([0.6, 0.7, 0.5, 0.99], index=[0, 1, 2, 3])  # seed 3 has no partner: ignored
    r = report.paired_difference(a, b)
    d = np.array([0.3, 0.1, 0.35])
    half = stats.t.ppf(0.975, 2) * d.std(ddof=1) / 3 ** 0.5
    assert r["n"] == 3 and r["mean"] == pytest.approx(d.mean())
    assert (r["lo"], r["hi"]) == pytest.approx((d.mean() - half, d.mean() + half))
    assert r["significant"] == (d.mean() - half > 0)
    noisy = report.paired_difference(pd.Series([0.9, 0.5, 0.7]), pd.Series([0.6, 0.8, 0.7]))
    assert not noisy["significant"] and noisy["lo"] < 0 < noisy["hi"]
    one = report.paired_difference(pd.Series([0.9]), pd.Series([0.1]))
    assert one["n"] == 1 and not one["significant"] and np.isnan(one["lo"])


def test_report_paired_tables_budgets_and_curves(tmp_path):
    """A new-protocol CSV: per-budget tables, paired differences marked significant or n.s., hardware
    from the meta file, learning-curve plot."""
    rows, curves = [], []
    rng = np.random.default_rng(0)
    for budget in long_range.BUDGET_KINDS:
        for model, base in (("caduceus", 0.6), ("hyenadna", 0.6), ("enformer", 0.9)):
            for ctx in (160, 288, 544):
                for seed in (0, 1, 2):
                    v = base + 0.01 * rng.standard_normal()
                    rows.append(dict(task="syn", data="synthetic", model=model, context_len=ctx, params=1, budget=budget,
                                     metric="auroc", value=v, seed=seed, steps=24, train_s=8.0, batch_size=8, lr=2e-3,
                                     n_train=256, n_test=128))
                    if budget == "equal_steps":
                        curves += [dict(task="syn", model=model, context_len=ctx, seed=seed, step=s, train_s=s * 0.1,
                                        metric="auroc", value=v) for s in (12, 24)]
    pd.DataFrame(rows).to_csv(tmp_path / "long_range.csv", index=False)
    pd.DataFrame(curves).to_csv(tmp_path / "long_range_curves.csv", index=False)
    (tmp_path / "long_range_meta.json").write_text(json.dumps(dict(cpu="Test CPU 9000", cores=2, torch="x",
                                                                   budget=dict(train_seconds=8.0, lr=2e-3))))
    readme = tmp_path / "README.md"
    readme.write_text("<!-- BEGIN long_range -->\n<!-- END long_range -->\n")
    assert report.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = _squash(readme.read_text())
    assert "Test CPU 9000" in text and "equal wall time = 8 s" in text
    assert "**syn, equal steps**" in text and "**syn, equal wall time**" in text
    assert "caduceus − enformer" in text and "** enformer" in text  # enformer significantly ahead
    assert "caduceus − hyenadna" in text and "n.s." in text  # equal models: not significant
    assert "Caduceus is behind (equal wall time) in" in text and "significant" in text
    assert (tmp_path / "long_range_curves.png").stat().st_size > 1000


def test_report_renders_pretrained_and_suites_csvs(tmp_path):
    """long_range_pretrained.csv and suites.csv, when present, become the pretrained and suites blocks
    (markdown tables); without them the blocks say how to produce them."""
    from benchmarks import pretrained, suites

    _fake_results(tmp_path)
    readme = tmp_path / "README.md"
    markers = "".join(f"<!-- BEGIN {n} -->\nold\n<!-- END {n} -->\n" for n in ("pretrained", "suites"))
    readme.write_text(markers)
    assert report.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = readme.read_text()
    assert "No results yet (`benchmarks/run.py long_range --pretrained" in text and "run.py glrb" in text
    rows = []
    for mode, budget in (("pretrained_probe", "probe"), ("pretrained_finetune", "equal_steps")):
        for ctx in (160, 544):
            for seed, v in ((0, 0.61), (1, 0.65)):
                rows.append({c: "" for c in pretrained.COLUMNS} | dict(
                    mode=mode, checkpoint="ckpt-A", task="atac_gm12878", data="real", model="caduceus",
                    context_len=ctx, params=1, budget=budget, metric="auroc", value=v + (ctx == 544) * 0.1,
                    seed=seed, steps=0, train_s=1.0))
    pd.DataFrame(rows, columns=pretrained.COLUMNS).to_csv(tmp_path / "long_range_pretrained.csv", index=False)
    pd.DataFrame([dict(suite="glrb", task="regulatory_element_promoter", model="caduceus", checkpoint="ckpt-A",
                       metric="auprc", value=0.71234, other_metrics="auroc=0.7", n_train=12, n_test=6,
                       sequence_length=256, pool_len=64, seconds=1.5)],
                 columns=suites.SUITE_COLUMNS).to_csv(tmp_path / "suites.csv", index=False)
    assert report.main(["--results", str(tmp_path), "--readme", str(readme)]) == 0
    text = _squash(readme.read_text())
    assert "\nold\n" not in text and "No results yet" not in text
    assert "**pretrained_probe, probe**" in text and "**pretrained_finetune, equal steps**" in text
    assert "| atac_gm12878 | caduceus | ckpt-A | 0.630 (0.610–0.650) | 0.730 (0.710–0.750) |" in text
    assert "| glrb | regulatory_element_promoter | caduceus | ckpt-A | auprc | 0.7123 |" in text


def test_report_without_markers_or_csvs_fails_clearly(tmp_path):
    assert report.main(["--results", str(tmp_path), "--readme", str(tmp_path / "README.md")]) == 1
    with pytest.raises(ValueError, match="markers"):
        report.replace_block("no markers here", "scaling", "x")


# ------------------------------------------------------------------------------- runner


def test_runner_passes_gpu_arguments_to_the_gpu_suite(capsys):
    if not (REPO / "benchmarks" / "gpu_suite.py").exists():
        pytest.skip("GPU suite not in this checkout")
    with pytest.raises(SystemExit) as exit_info:
        run_main(["gpu", "--help"])
    assert exit_info.value.code == 0
    assert "--dry-run" in capsys.readouterr().out  # the GPU suite's own parser answered


def test_runner_rejects_unknown_models_and_tasks(tmp_path, capsys):
    assert run_main(["scaling", "--models", "transformer", "--out", str(tmp_path)]) == 2
    assert "Unknown model(s) ['transformer']; choose from caduceus" in capsys.readouterr().err
    assert run_main(["long_range", "--quick", "--tasks", "nope", "--out", str(tmp_path)]) == 2
    assert "Unknown task(s) ['nope']; choose from motif_distance" in capsys.readouterr().err
