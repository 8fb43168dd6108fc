"""The `grelu-caduceus demo` job in its quick (smoke) size: outputs, resumption, settings guard; its
baselines and masked evaluation (the same sites for the model and every baseline)."""

import json
import math

import numpy as np
import pytest
import torch

from grelu_caduceus.cli import UserError
from grelu_caduceus.cli import main as cli_main
from grelu_caduceus.core.tokens import A_ID, MASK_ID, T_ID
from grelu_caduceus.demo import run_demo
from grelu_caduceus.tasks.mlm import VAL_MASK_SEED, mask_tokens


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory, demo_pretrained_folder):
    out = tmp_path_factory.mktemp("demo")
    metrics = run_demo(out, device="cpu", budget="quick", seed=0, pretrained=demo_pretrained_folder)
    return out, metrics


def demo_cli(out, pretrained, *more):
    return cli_main(["demo", "--out", str(out), "--quick", "--device", "cpu", "--pretrained", str(pretrained), *more])


# the keys metrics.json promises (run_demo's docstring and the main-job check)
HEADLINE_KEYS = ("mlm_val_accuracy", "mlm_baseline_accuracy", "mlm_difference_vs_baseline", "mlm_difference_ci95",
                 "finetune_val_auroc", "finetune_test_auroc", "finetune_scratch_val_auroc",
                 "finetune_scratch_test_auroc", "mlm_own_val_accuracy", "mlm_own_baseline_accuracy",
                 "mlm_own_difference_vs_baseline", "mlm_own_difference_ci95", "seconds_total")


def test_quick_demo_runs_all_stages_and_writes_metrics_report_and_plots(quick_run, demo_pretrained_folder):
    out, metrics = quick_run
    saved = json.loads((out / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    for key in HEADLINE_KEYS:
        assert key in saved, key
    for key in ("mlm_val_accuracy", "mlm_baseline_accuracy", "finetune_val_auroc", "finetune_test_auroc",
                "finetune_scratch_val_auroc", "finetune_scratch_test_auroc", "mlm_own_val_accuracy"):
        assert 0.0 <= saved[key] <= 1.0 and math.isfinite(saved[key]), key
    for prefix in ("mlm", "mlm_own"):
        lo, hi = saved[f"{prefix}_difference_ci95"]
        assert lo <= saved[f"{prefix}_difference_vs_baseline"] <= hi, prefix
        assert saved[f"{prefix}_difference_vs_baseline"] == pytest.approx(
            saved[f"{prefix}_val_accuracy"] - saved[f"{prefix}_baseline_accuracy"])
        assert saved[f"{prefix}_baseline_accuracy"] == max(saved[f"{prefix}_baseline_accuracies"].values())
    # the pretrained model's baselines come from its stored k = 5 counts; the own model's are fitted (k <= 4)
    kmers = [f"kmer_context_k{k}" for k in range(1, 6)]
    assert list(saved["mlm_baseline_accuracies"]) == ["most_frequent_base", *kmers]
    assert list(saved["mlm_own_baseline_accuracies"]) == ["most_frequent_base", *kmers[:4]]
    assert saved["mlm_seq_len"] == 1024 and saved["mlm_val_windows"] == 8
    assert saved["mlm_model"]["folder"] == demo_pretrained_folder.name and saved["mlm_model"]["rcps"] is True
    assert saved["mlm_own_steps"] == 12 and saved["budget"] == "quick" and saved["device"] == "cpu"
    assert set(saved["stage_seconds"]) == {"mlm_eval", "finetune_pretrained", "finetune_scratch", "own_pretrain",
                                           "own_mlm_eval", "attributions"}
    runs = saved["finetune_runs"]
    assert runs["finetune_pretrained"]["model_type"] == "CaduceusPretrainedModel"
    assert runs["finetune_scratch"]["model_type"] == "CaduceusModel"
    assert runs["finetune_pretrained"]["steps"] == runs["finetune_scratch"]["steps"] == 8  # same budget
    report = (out / "report.md").read_text()
    for key in ("mlm_val_accuracy", "mlm_baseline_accuracy", "finetune_val_auroc", "finetune_scratch_test_auroc",
                "mlm_own_val_accuracy"):
        assert f"{saved[key]:.4f}" in report, key
    for png in ("mlm_accuracy.png", "mlm_own_curves.png", "finetune_curves.png", "attribution_logo_0.png"):
        assert (out / png).stat().st_size > 1000, png
        assert f"]({png})" in report
    assert (out / "own_pretrain" / "checkpoints" / "final.ckpt").exists()
    assert (out / "own_pretrain" / "logs" / "metrics.csv").exists()


def test_both_finetunes_train_the_pretrained_architecture_one_from_its_weights(quick_run, demo_pretrained_folder):
    """The scratch run has the pretrained model's architecture but not its weights: after the same few
    steps, the pretrained run's backbone is still near the pretrained weights, the scratch one's is not."""
    from grelu_caduceus import load_pretrained
    from grelu_caduceus.demo.stages import DemoRun

    out, metrics = quick_run
    demo = DemoRun(out, device="cpu", budget="quick", seed=0, pretrained=demo_pretrained_folder)
    pretrained = load_pretrained(demo_pretrained_folder).backbone.state_dict()
    distance = {}
    for name, record in metrics["finetune_runs"].items():
        backbone = demo.load_finetuned(out / record["checkpoint"]).model.embedding.backbone.state_dict()
        assert {k: v.shape for k, v in backbone.items()} == {k: v.shape for k, v in pretrained.items()}, name
        distance[name] = sum((backbone[k].float() - v.float()).norm() ** 2 for k, v in pretrained.items()) ** 0.5
    assert distance["finetune_pretrained"] < 0.2 * distance["finetune_scratch"], distance


def test_rerun_reuses_finished_stages(quick_run, demo_pretrained_folder, tmp_path, capsys):
    import shutil

    # rerun a copy: the rerun rewrites metrics.json (seconds_total), and the finished run is shared by
    # the module's other tests
    out = tmp_path / "rerun"
    shutil.copytree(quick_run[0], out)
    metrics = quick_run[1]
    assert demo_cli(out, demo_pretrained_folder) == 0
    printed = capsys.readouterr().out
    for stage in ("mlm_eval", "finetune_pretrained", "finetune_scratch", "own_pretrain", "own_mlm_eval",
                  "attributions"):
        assert f"{stage}: already done" in printed
    again = json.loads((out / "metrics.json").read_text())
    for key in HEADLINE_KEYS[:-1]:
        assert again[key] == metrics[key], key


def test_a_moved_run_folder_still_resumes(quick_run, demo_pretrained_folder, tmp_path, capsys):
    """Stage records and metrics.json hold paths relative to the run folder, so a moved folder resumes."""
    import shutil

    out, metrics = quick_run
    moved = tmp_path / "moved"
    shutil.copytree(out, moved)
    for record in [moved / "metrics.json", *sorted((moved / "stages").glob("*.json"))]:
        assert str(out) not in record.read_text(), record.name
    (moved / "stages" / "attributions.json").unlink()  # rerun a stage that loads the fine-tuned checkpoint
    assert demo_cli(moved, demo_pretrained_folder) == 0
    printed = capsys.readouterr().out
    assert "finetune_pretrained: already done" in printed and "attributions: already done" not in printed
    again = json.loads((moved / "metrics.json").read_text())
    assert again["finetune_test_auroc"] == metrics["finetune_test_auroc"]
    assert (moved / "attribution_logo_0.png").stat().st_size > 1000


def test_other_settings_in_the_same_folder_are_refused(quick_run, demo_pretrained_folder, tmp_path):
    import shutil

    from safetensors.torch import load_file, save_file

    out, _ = quick_run
    with pytest.raises(UserError, match="other settings"):
        run_demo(out, device="cpu", budget="quick", seed=1, pretrained=demo_pretrained_folder)
    assert demo_cli(out, demo_pretrained_folder, "--budget", "default") == 2
    other = tmp_path / demo_pretrained_folder.name  # same folder name, other weights
    shutil.copytree(demo_pretrained_folder, other)
    weights = load_file(other / "model.safetensors")
    name = next(iter(weights))
    weights[name] = weights[name] + 1.0
    save_file(weights, other / "model.safetensors")
    with pytest.raises(UserError, match="other settings .*other weights"):
        run_demo(out, device="cpu", budget="quick", seed=0, pretrained=other)


def test_a_pretrained_folder_without_its_parts_is_a_one_line_error(tmp_path, demo_pretrained_folder, capsys):
    import shutil

    assert demo_cli(tmp_path / "out", tmp_path / "nowhere") == 2
    assert "is not a folder" in capsys.readouterr().err
    partial = tmp_path / "partial"
    shutil.copytree(demo_pretrained_folder, partial)
    (partial / "kmer_context_k5.npz").unlink()
    assert demo_cli(tmp_path / "out", partial) == 2
    err = capsys.readouterr().err.strip()
    assert "lacks kmer_context_k5.npz" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out" / "stages").exists()  # refused before anything ran


def test_an_installation_without_the_shipped_model_says_how_to_get_it(tmp_path, monkeypatch):
    from grelu_caduceus.data import bundled
    from grelu_caduceus.demo.stages import resolve_pretrained

    monkeypatch.setattr(bundled, "BUNDLED_DIR", tmp_path)
    with pytest.raises(UserError, match=r"caduceus_ps_chr20 is missing.*build_pretrained_lm\.py.*--pretrained FOLDER"):
        resolve_pretrained(None)


def test_own_training_curve_and_its_baselines_are_scored_on_the_same_sites(quick_run):
    """The own pretraining's accuracy plot: its curve (val_mask_accuracy logged during pretraining)
    and its baseline lines come from the same windows, masks and [MASK]ed sites: rescoring the final
    model on the recorded training-time set gives the curve's last point."""
    import pandas as pd

    out, metrics = quick_run
    stage = json.loads((out / "stages" / "own_mlm_eval.json").read_text())
    during = stage["training_val"]
    logged = pd.read_csv(out / "own_pretrain" / "logs" / "metrics.csv").dropna(subset=["val_mask_accuracy"])
    last = logged.sort_values("step").iloc[-1]
    assert abs(during["model_accuracy"] - last.val_mask_accuracy) <= 1.0 / during["n_sites"]
    assert during["n_windows"] == 8 and set(during["baselines"]) == set(metrics["mlm_own_baseline_accuracies"])
    report = (out / "report.md").read_text()
    assert "| predictor" in report and "|:--" in report  # tables written by DataFrame.to_markdown


def test_model_and_baselines_are_evaluated_on_the_same_sites():
    """A 'model' that predicts what the k=2 baseline predicts must score exactly the baseline's
    accuracy, with a zero difference: both are scored on the same sites of the same inputs."""
    from grelu_caduceus.demo import KmerContextModel, MaskedEvalSet, evaluate_masked
    from grelu_caduceus.demo.baselines import fit_baselines, ids_to_bases
    from grelu_caduceus.demo.stages import region_ids

    class BaselineAsModel(torch.nn.Module):
        def __init__(self, baseline):
            super().__init__()
            self.baseline = baseline

        def forward(self, ids):
            bases = ids_to_bases(ids)
            rows, cols = np.nonzero(np.ones_like(bases, dtype=bool))
            guess = self.baseline.predict(bases, rows, cols).reshape(bases.shape)
            return torch.nn.functional.one_hot(torch.as_tensor(guess) + A_ID, 16).float()

    ids = region_ids("val")[: 16 * 256].reshape(16, 256)
    baselines = fit_baselines(ids_to_bases(region_ids("train")))
    k2 = next(bl for bl in baselines if isinstance(bl, KmerContextModel) and bl.k == 2)
    result = evaluate_masked(BaselineAsModel(k2), MaskedEvalSet.build(ids, 8), baselines, 8, "cpu")
    assert result["model_accuracy"] == result["baselines"]["kmer_context_k2"]
    assert result["n_windows"] == 16 and result["n_sites"] > 400
    if result["best_baseline"] == "kmer_context_k2":
        assert result["difference"] == 0.0 and result["difference_ci95"] == (0.0, 0.0)
    else:
        assert result["difference"] < 0.0

# --------------------------------------------------------------------------- baselines and masked evaluation
def random_ids(shape, seed=0):
    return torch.randint(A_ID, T_ID + 1, shape, generator=torch.Generator().manual_seed(seed))


def test_kmer_baseline_learns_context_and_marginalises_masked_neighbours():
    from grelu_caduceus.demo import KmerContextModel, MostFrequentBase

    # A period-3 sequence: the centre base is fixed by either neighbour.
    train = np.tile(np.array([0, 1, 2]), 1000)
    model = KmerContextModel(2).fit(train)
    inputs = np.tile(np.array([0, 1, 2]), 10)[None].copy()
    rows, cols = np.zeros(5, int), np.arange(5, 10)
    assert (model.predict(inputs, rows, cols) == inputs[0, 5:10]).all()
    # With every neighbour hidden the model falls back to base frequencies, not to garbage.
    hidden = np.full_like(inputs, 4)
    assert model.predict(hidden, rows, cols).tolist() == [0] * 5
    # One side hidden: the other side still decides.
    one_side = inputs.copy()
    one_side[0, 6:8] = 4
    assert model.predict(one_side, np.array([0]), np.array([5]))[0] == inputs[0, 5]
    assert MostFrequentBase().fit(np.array([3, 3, 1, 4, 4, 4])).predict(inputs, rows, cols).tolist() == [3] * 5


def test_masked_eval_set_uses_the_lightning_validation_masks():
    from grelu_caduceus.demo import MaskedEvalSet

    ids = random_ids((6, 128))
    eval_set = MaskedEvalSet.build(ids, batch_size=4)
    # Batch 1 (rows 4-5) is masked with seed VAL_MASK_SEED + 1, as MLMLightningModel.validation_step does.
    inputs, labels = mask_tokens(ids[4:], generator=torch.Generator().manual_seed(VAL_MASK_SEED + 1))
    assert torch.equal(eval_set.inputs[4:], inputs) and torch.equal(eval_set.labels[4:], labels)
    rows, cols = eval_set.sites(hidden_only=True)
    assert (eval_set.inputs[rows, cols] == MASK_ID).all()
    assert len(rows) == pytest.approx(0.8 * 0.15 * ids.numel(), rel=0.25)
    assert math.isclose(len(eval_set.sites(hidden_only=False)[0]), (eval_set.labels >= 0).sum().item())


def test_paired_bootstrap_interval_over_windows():
    from grelu_caduceus.demo import paired_bootstrap_ci

    rng = np.random.default_rng(0)
    windows = np.repeat(np.arange(200), 50)  # 200 windows of 50 sites
    truth = rng.random(windows.size)
    baseline = truth < 0.40
    better = truth < 0.45  # right wherever the baseline is, and on 5% more sites
    assert paired_bootstrap_ci(baseline, baseline, windows, 200) == (0.0, 0.0)
    lo, hi = paired_bootstrap_ci(better, baseline, windows, 200)
    assert 0.0 < lo < (better.mean() - baseline.mean()) < hi < 0.1
    lo, hi = paired_bootstrap_ci(baseline, better, windows, 200)
    assert hi < 0.0
    # A window-level effect: the model wins on half of the windows and loses on the other half.
    mixed = np.where(windows < 100, truth < 0.6, truth < 0.2)
    lo, hi = paired_bootstrap_ci(mixed, baseline, windows, 200)
    assert lo < 0.0 < hi


def demo_genome_bases(start, end):
    """Base codes of a slice of the bundled demo genome's train region (real hg19 chr20 DNA)."""
    from grelu_caduceus.demo.baselines import ids_to_bases
    from grelu_caduceus.demo.stages import region_ids

    return ids_to_bases(region_ids("train")[start:end])


def test_stored_counts_reproduce_a_direct_fit(tmp_path):
    """A k = 5 count table saved and loaded is the fitted one; lower k summed out of it equal a direct
    fit except for the centres within 5 bases of a piece edge, which only the direct fit counts."""
    from grelu_caduceus.demo import KmerContextModel
    from grelu_caduceus.demo.baselines import baselines_from_counts

    pieces = [demo_genome_bases(0, 60_000), demo_genome_bases(500_000, 540_000)]
    bases = np.concatenate([pieces[0], [4], pieces[1]])  # two pieces joined by N, as Chr20.train_bases()
    fitted = KmerContextModel(5).fit(bases)
    path = fitted.save(tmp_path / "kmer_context_k5.npz")
    with np.load(path) as stored:
        # the smallest dtype that holds the counts (uint8 for this slice, uint16 for chr20's 36 Mb)
        assert stored["counts"].dtype == np.min_scalar_type(int(fitted.counts_table().max()))
        assert stored["counts"].shape == (4,) * 11
    loaded = KmerContextModel.load(path)
    assert loaded.k == 5 and np.array_equal(loaded.counts_table(), fitted.counts_table())
    assert loaded.counts_table().sum() == sum(len(p) - 10 for p in pieces)
    assert fitted.save(tmp_path / "again.npz").read_bytes() == path.read_bytes()  # same counts, same bytes

    heldout = demo_genome_bases(1_000_000, 1_020_000)[None]
    rng = np.random.default_rng(0)
    inputs = np.where(rng.random(heldout.shape) < 0.15, 4, heldout)
    cols = np.flatnonzero(inputs[0] == 4)
    rows = np.zeros_like(cols)
    baselines = baselines_from_counts(loaded)
    assert [b.name for b in baselines] == ["most_frequent_base"] + [f"kmer_context_k{k}" for k in range(1, 6)]
    assert np.array_equal(baselines[-1].predict(inputs, rows, cols), fitted.predict(inputs, rows, cols))
    for derived in baselines[1:-1]:
        direct = KmerContextModel(derived.k).fit(bases).counts_table()
        missing = direct - derived.counts_table()
        assert missing.min() == 0 and missing.sum() == 2 * len(pieces) * (5 - derived.k), derived.k
        agree = (derived.predict(inputs, rows, cols) == KmerContextModel.from_counts(direct).predict(inputs, rows, cols))
        assert agree.mean() > 0.99, derived.k
    assert baselines[0].best == int(np.bincount(bases[bases < 4], minlength=4).argmax())
    with pytest.raises(ValueError, match=r"\(4,\) \* \(2k \+ 1\)"):
        KmerContextModel.from_counts(np.zeros((4, 4)))


def test_kmer_predictions_are_the_argmax_of_the_summed_out_counts():
    """predict (and predict_proba) against a plain reference: for each site, the count table summed over
    the unknown neighbours, read at the known ones; ties to the most frequent base. The sites cover
    both ways predict sums (gathering per site, and summing the table for many sites of one pattern)."""
    from grelu_caduceus.demo import KmerContextModel

    model = KmerContextModel(3).fit(demo_genome_bases(0, 200_000))
    table = model.counts_table()
    centre = table.reshape(-1, 4).sum(0)
    rng = np.random.default_rng(1)
    truth = demo_genome_bases(1_200_000, 1_230_000)[None]
    inputs = np.where(rng.random(truth.shape) < 0.3, 4, truth)
    cols = np.arange(2, truth.shape[1] - 2, 3)
    rows = np.zeros_like(cols)
    predicted = model.predict(inputs, rows, cols)
    probs = model.predict_proba(inputs, rows, cols, alpha=0.5)
    for i, c in enumerate(cols[:3000]):
        context = [inputs[0, c + off] if 0 <= c + off < truth.shape[1] else 4 for off in model.offsets]
        unknown = tuple(j for j, base in enumerate(context) if base == 4)
        summed = table.sum(axis=unknown, keepdims=True)
        counts = summed[tuple(0 if j in unknown else base for j, base in enumerate(context))].reshape(4)
        best = np.flatnonzero(counts == counts.max())
        assert predicted[i] == best[np.argmax(centre[best])], (c, context)
        assert np.allclose(probs[i], (counts + 0.5) / (counts + 0.5).sum(), atol=1e-6)  # + the 1e-6 tie prior
