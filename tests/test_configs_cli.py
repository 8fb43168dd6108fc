"""Hydra configs and `grelu-caduceus train`: every shipped config composes and validates, every model
config builds a working gReLU model, overrides reach model_params / train_params, mistakes end in one
clean line, and short real runs (masked LM and a labelled task) write loadable checkpoints."""

import gzip
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from omegaconf import OmegaConf

from grelu_caduceus.cli import main as cli_main
from grelu_caduceus.cli.config_schema import ConfigError
from grelu_caduceus.cli.train import (
    CONFIG_DIR,
    GROUPS,
    build_lightning_model,
    compose_config,
    grelu_params,
    group_options,
    load_config,
)
from grelu_caduceus.cli.train_data import DataConfigError, build_datasets
from grelu_caduceus.data.genome import one_hot_encode

REPO = Path(__file__).resolve().parents[1]

# What a group option needs from the other groups to make sense (mlm <-> genome windows).
COMPANIONS = {("task", "mlm"): ["data=demo_genome"], ("data", "demo_genome"): ["task=mlm"],
              ("data", "genome"): ["task=mlm"], ("data", "bigwig"): ["task=regression"]}

# Small sizes per model config, so that building and a forward pass take well under a second.
TINY = {
    "caduceus": ["model.d_model=16", "model.n_layer=1"],
    "caduceus_ph": ["model.d_model=16", "model.n_layer=1"],
    "hyenadna": ["model.d_model=16", "model.n_layer=1", "model.filter_order=16"],
    "enformer": ["model.channels=384", "model.n_heads=4", "model.n_conv=3", "model.n_transformers=1",
                 "model.key_len=8"],
}


def all_options():
    return [(group, option) for group in GROUPS for option in group_options(group)]


def test_every_group_has_the_required_options():
    required = {
        "model": {"caduceus", "caduceus_ph", "hyenadna", "enformer", "convmodel", "dilatedconvmodel", "borzoi_lite"},
        "task": {"mlm", "binary", "multiclass", "regression"},
        "data": {"demo_genome", "ctcf", "fasta_bed", "bigwig", "table"},
        "trainer": {"cpu", "gpu", "ddp", "bf16"},
        "experiment": {"pretrain_1k", "pretrain_131k", "finetune"},
    }
    for group, names in required.items():
        assert names <= set(group_options(group)), (group, names - set(group_options(group)))


@pytest.mark.parametrize("group,option", all_options())
def test_every_config_composes_and_validates(group, option):
    cfg = compose_config([f"{group}={option}", *COMPANIONS.get((group, option), [])])
    # Templates leave paths as ??? (required): the types, keys and set values must still check out.
    load_config([f"{group}={option}", *COMPANIONS.get((group, option), [])], complete=False)
    if group == "task":
        assert cfg.task.name == option
    if group in ("model", "data", "trainer"):
        assert len(cfg[group]) > 0


def test_configs_folder_is_the_package_configs():
    """One source of truth: configs/ in the checkout is the package's conf/ folder."""
    link = REPO / "configs"
    if not link.exists():
        pytest.skip("no configs/ in this tree (installed package)")
    assert link.resolve() == CONFIG_DIR.resolve()
    assert (CONFIG_DIR / "train.yaml").is_file()


@pytest.fixture(scope="module")
def pretrained_folder(tmp_path_factory):
    from grelu_caduceus import CaduceusConfig, CaduceusForMaskedLM, save_pretrained

    folder = tmp_path_factory.mktemp("pretrained") / "tiny"
    save_pretrained(CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=2, rcps=False)), folder)
    return folder


@pytest.mark.parametrize("option", group_options("model"))
def test_every_model_config_builds_a_working_grelu_model(option, pretrained_folder):
    tiny = TINY.get(option, [])
    if option == "caduceus_pretrained":
        tiny = [f"model.pretrained_path={pretrained_folder}"]
    if option == "hyenadna_pretrained":
        from test_hyenadna_pretrained import released_backbone, write_original

        release = write_original(pretrained_folder.parent / "hyena", released_backbone(l_max=256), l_max=256)
        tiny = [f"model.pretrained_path={release}"]
    checked = load_config([f"model={option}", *tiny])
    lm = build_lightning_model(checked, n_tasks=2, seq_len=200)
    assert lm.model_params["model_type"] == checked.model["model_type"]
    assert lm.model.head.n_tasks == 2
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (2, 200), generator=torch.Generator().manual_seed(0)), 4)
    with torch.no_grad():
        out = lm(x.float().transpose(1, 2))
    assert out.shape == (2, 2, 1)  # pooled: one output per task, on the bundled tasks' 200 bp
    assert torch.isfinite(out).all()


def test_mlm_config_builds_the_masked_lm():
    checked = load_config(["task=mlm", "data=demo_genome", "model.d_model=16", "model.n_layer=1"])
    lm = build_lightning_model(checked)
    assert type(lm).__name__ == "MLMLightningModel"
    assert lm.model.config.d_model == 16 and lm.model.config.rcps
    logits = lm(torch.zeros(1, 4, 64))
    assert logits.shape[:2] == (1, 64)


def test_overrides_reach_model_and_train_params():
    checked = load_config(["model=caduceus_ph", "model.d_model=48", "model.n_layer=3", "task.lr=0.005",
                           "task.batch_size=32", "trainer.max_epochs=2", "trainer.precision=bf16-mixed",
                           "trainer.accumulate_grad_batches=4", "seed=7"])
    model_params, train_params = grelu_params(checked, n_tasks=3, out_dir="/tmp/run")
    assert model_params == {**checked.model, "n_tasks": 3}
    assert [model_params[k] for k in ("d_model", "n_layer", "rcps", "conjoin")] == [48, 3, False, None]
    assert train_params["task"] == "binary" and train_params["loss"] == "bce"
    assert (train_params["lr"], train_params["batch_size"], train_params["max_epochs"]) == (0.005, 32, 2)
    assert (train_params["precision"], train_params["accumulate_grad_batches"]) == ("bf16-mixed", 4)
    assert train_params["seed"] == 7 and train_params["save_dir"] == "/tmp/run"
    lm = build_lightning_model(load_config(["model.d_model=24", "model.n_layer=1", "model.rcps=false"]), n_tasks=1)
    assert lm.model.embedding.backbone.config.d_model == 24 and not lm.model.embedding.backbone.config.rcps
    assert lm.model.embedding.conjoin  # conjoin null: Ph models conjoin


def test_experiment_presets_mirror_the_published_setups():
    ps = load_config(["experiment=pretrain_1k", "data.fasta=x.fa", "data.splits=x.bed"])
    model_params, train_params = grelu_params(ps)
    assert (model_params["d_model"], model_params["n_layer"], model_params["rcps"]) == (118, 4, True)
    assert (train_params["lr"], train_params["max_steps"], ps.data.seq_len) == (8e-3, 10000, 1024)
    assert train_params["batch_size"] * train_params["accumulate_grad_batches"] == 1024
    assert train_params["rc_aug"] is False  # PS is equivariant by construction
    ph = load_config(["experiment=pretrain_1k", "model=caduceus_ph", "data.fasta=x.fa", "data.splits=x.bed"])
    ph_model, ph_train = grelu_params(ph)
    assert ph_model["rcps"] is False and ph_model["d_model"] == 118 and ph_train["rc_aug"] is True
    long = load_config(["experiment=pretrain_131k", "data.fasta=x.fa", "data.splits=x.bed"])
    long_model, long_train = grelu_params(long)
    assert (long_model["d_model"], long_model["n_layer"], long.data.seq_len) == (256, 16, 131072)
    assert (long_train["max_steps"], long_train["strategy"]) == (50000, "ddp")
    tune = load_config(["experiment=finetune", "model.pretrained_path=some/folder"])
    assert tune.model["model_type"] == "CaduceusPretrainedModel" and tune.task.name == "binary"


def test_interpolated_model_values_follow_the_data():
    checked = load_config(["model=hyenadna", "data=ctcf"])
    assert checked.model["l_max"] == 200
    checked = load_config(["model=convmlpmodel", "data=fasta_bed", "data.fasta=a.fa", "data.intervals=b.tsv"])
    model_params, _ = grelu_params(checked, n_tasks=1, seq_len=500)
    assert model_params["seq_len"] == 500  # data.seq_len null -> filled from the dataset


@pytest.mark.parametrize("overrides,expected", [
    (["model=no_such_model"], ["unknown model 'no_such_model'", "caduceus", "hyenadna", "enformer"]),
    (["experiment=pretrain_2k"], ["unknown experiment", "pretrain_1k", "did you mean"]),
    (["modle=caduceus"], ["neither a config group", "did you mean model"]),
    (["model.d_modle=8"], ["model.d_modle is not a known key", "did you mean d_model"]),
    (["+model.d_modle=8"], ["model.d_modle is not a known key", "valid keys of model"]),
    (["model.d_model=abc"], ["model.d_model", "Integer"]),
    (["model.final_pool_func=sum"], ["final_pool_func='sum'", "avg, max, null"]),
    (["trainer.precision=8"], ["trainer.precision", "bf16-mixed"]),
    (["task=mlm"], ["task=mlm needs unlabelled genome windows", "data=demo_genome"]),
    (["model=hyenadna", "task=mlm", "data=demo_genome"], ["model=caduceus"]),
    (["experiment=finetune"], ["model.pretrained_path is required"]),
    (["data=table"], ["data.path is required"]),
    (["trainer.devices=4"], ["trainer=gpu"]),
    (["task.lr=-1"], ["task.lr must be > 0"]),
    (["model.d_model=["], ["cannot read the override"]),
    (["--bogus"], ["unknown option --bogus"]),
    (["-m", "model=caduceus,nope"], ["unknown model 'nope'"]),          # sweeps are checked value by value
    (["-m", "model=caduceus", "task.lr=0.1,-2"], ["task.lr must be > 0"]),
])
def test_mistakes_exit_cleanly_with_the_choices(overrides, expected, capsys):
    assert cli_main(["train", *overrides]) == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err
    for text in expected:
        assert text in err, (text, err)


@pytest.mark.parametrize("option,model_type", [("caduceus", "CaduceusModel"), ("hyenadna", "HyenaDNAModel"),
                                               ("enformer", "EnformerModel")])
def test_cfg_job_prints_the_composed_config_without_running(option, model_type, capsys, tmp_path):
    assert cli_main(["train", f"model={option}", "--cfg", "job", f"hydra.run.dir={tmp_path}/run"]) == 0
    out = capsys.readouterr().out
    assert f"model_type: {model_type}" in out.splitlines() or f"  model_type: {model_type}" in out.splitlines()
    assert OmegaConf.create(out).model.model_type == model_type
    assert not (tmp_path / "run").exists()  # nothing ran


def test_user_config_folder_adds_options(tmp_path, capsys):
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "mine.yaml").write_text("defaults:\n  - caduceus\n  - _self_\nd_model: 32\n")
    assert cli_main(["train", "--config-dir", str(tmp_path), "model=mine", "--cfg", "job"]) == 0
    composed = OmegaConf.create(capsys.readouterr().out)
    assert composed.model.d_model == 32 and composed.model.model_type == "CaduceusModel"


def test_train_script_reruns_the_train_command():
    """Lightning's DDP launcher re-runs sys.argv[0] (the train script) for the other devices."""
    import subprocess
    import sys

    from grelu_caduceus.cli.train import TRAIN_SCRIPT

    done = subprocess.run([sys.executable, str(TRAIN_SCRIPT), "model=hyenadna", "--cfg", "job"],
                          capture_output=True, text=True, timeout=300, cwd="/")
    assert done.returncode == 0, done.stderr[-2000:]
    assert "model_type: HyenaDNAModel" in done.stdout


def test_cfg_job_shows_templates_with_required_values_unset(capsys):
    assert cli_main(["train", "experiment=finetune", "--cfg", "job"]) == 0
    assert "pretrained_path: ???" in capsys.readouterr().out


def test_run_time_data_mistake_is_clean(tmp_path, capsys):
    code = cli_main(["train", "data=table", f"data.path={tmp_path}/missing.tsv", "model.d_model=16",
                     "model.n_layer=1", f"hydra.run.dir={tmp_path}/run"])
    err = capsys.readouterr().err
    assert code == 2 and "missing.tsv not found" in err and "Traceback" not in err


def test_unbuildable_model_is_clean(tmp_path, capsys):
    code = cli_main(["train", "experiment=finetune", f"model.pretrained_path={tmp_path}/nowhere",
                     f"hydra.run.dir={tmp_path}/run"])
    err = capsys.readouterr().err
    assert code == 2 and "cannot build CaduceusPretrainedModel" in err and "nowhere not found" in err
    assert "Traceback" not in err


def test_short_mlm_run_writes_a_loadable_checkpoint(tmp_path):
    run = tmp_path / "mlm"
    code = cli_main(["train", "model=caduceus", "task=mlm", "data=demo_genome", "trainer.max_steps=5",
                     "model.d_model=16", "model.n_layer=1", "data.seq_len=256", "task.batch_size=4",
                     "trainer.progress_bar=false", f"hydra.run.dir={run}"])
    assert code == 0
    from grelu_caduceus.tasks.mlm import MLMLightningModel

    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=False)
    assert ckpt["global_step"] == 5
    model = MLMLightningModel.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=False)
    assert model.model.config.d_model == 16 and model.train_params["max_steps"] == 5
    composed = OmegaConf.load(run / ".hydra" / "config.yaml")
    assert composed.model.d_model == 16 and composed.data.seq_len == 256
    params = OmegaConf.load(run / "grelu_params.yaml")
    assert params.model_params.d_model == 16 and params.train_params.task == "mlm"
    assert (run / "train.log").exists()


def test_short_labelled_run_trains_a_grelu_model(tmp_path):
    run = tmp_path / "ctcf"
    code = cli_main(["train", "model=caduceus", "data=ctcf", "model.d_model=16", "model.n_layer=1",
                     "trainer.max_steps=4", "trainer.val_check_interval=4", "trainer.limit_val_batches=2",
                     "task.batch_size=8", "trainer.progress_bar=false", f"hydra.run.dir={run}"])
    assert code == 0
    from grelu.lightning import LightningModel

    lm = LightningModel.load_from_checkpoint(run / "checkpoints" / "last.ckpt", weights_only=False)
    # what gReLU's train_on_dataset records, so that predictions carry task names and lengths
    assert lm.data_params["tasks"]["name"] == ["ctcf"] and lm.data_params["train"]["seq_len"] == 200
    assert lm.model_params["model_type"] == "CaduceusModel" and lm.model_params["n_tasks"] == 1
    assert lm.model.embedding.backbone.config.d_model == 16
    metrics = pd.read_csv(run / "logs" / "metrics.csv")
    assert "val_auroc" in metrics.columns and metrics.val_loss.notna().any()
    assert (run / "checkpoints" / "best.ckpt").exists()


# --------------------------------------------------------------------------- data kinds
def _bundled_rows(n=40):
    from grelu_caduceus.data import read_task_table

    table = read_task_table("ctcf")
    return pd.concat([table[table.split == s].head(n) for s in ("train", "val")]).reset_index(drop=True)


def test_table_data_multiclass_one_hot(tmp_path):
    rows = _bundled_rows()
    rows["kind"] = np.where(rows.label == 1, "site", "background")
    rows["score"] = rows.label * 2
    path = tmp_path / "seqs.csv.gz"
    with gzip.open(path, "wt") as f:
        rows[["seq", "kind", "score", "split"]].to_csv(f, index=False)
    checked = load_config(["task=multiclass", "data=table", f"data.path={path}", "data.label_columns=[kind]"])
    train, val = build_datasets(checked.data, "multiclass")
    assert list(train.tasks.index) == ["background", "site"] and train.n_tasks == 2
    labels = train.labels[:, :, 0]
    assert (labels.sum(1) == 1).all()
    expected = (rows[rows.split == "train"].label.to_numpy() == 1).astype(np.float32)
    np.testing.assert_array_equal(labels[:, 1], expected)
    with pytest.raises(DataConfigError, match="must hold numbers for task=binary"):
        build_datasets(load_config(["data=table", f"data.path={path}", "data.label_columns=[kind]"]).data, "binary")
    with pytest.raises(DataConfigError, match=r"task=binary needs labels 0 or 1, found \[0.0, 2.0\]"):
        build_datasets(load_config(["data=table", f"data.path={path}", "data.label_columns=[score]"]).data, "binary")


def test_fasta_bed_data_reads_centred_windows(tmp_path):
    rng = np.random.default_rng(0)
    chrom = "".join(rng.choice(list("ACGT"), 3000))
    fasta = tmp_path / "g.fa"
    lines = "\n".join(chrom[i:i + 60] for i in range(0, 3000, 60))
    fasta.write_text(f">chr1\n{lines}\n>chr2\n{chrom[:1000]}\n")
    intervals = pd.DataFrame({"chrom": ["chr1"] * 4 + ["chr2"] * 2, "start": [100, 500, 900, 2000, 100, 400],
                              "end": [200, 600, 1000, 2100, 200, 500], "bound": [1, 0, 1, 0, 1, 0]})
    path = tmp_path / "peaks.tsv"
    intervals.to_csv(path, sep="\t", index=False)
    checked = load_config(["data=fasta_bed", f"data.fasta={fasta}", f"data.intervals={path}",
                           "data.label_columns=[bound]", "data.val_chroms=[chr2]", "data.seq_len=50"])
    train, val = build_datasets(checked.data, "binary")
    assert (len(train), len(val), train.seq_len) == (4, 2, 50)
    from grelu.sequence.format import convert_input_type

    assert convert_input_type(train.seqs[:1], "strings")[0] == chrom[125:175]  # centre 150 +- 25
    np.testing.assert_array_equal(train.labels[:, 0, 0], [1, 0, 1, 0])
    bad = load_config(["data=fasta_bed", f"data.fasta={fasta}", f"data.intervals={path}", "data.label_columns=[bound]"])
    with pytest.raises(DataConfigError, match="data.val_chroms"):
        build_datasets(bad.data, "binary")


def test_bigwig_data_bins_coverage(tmp_path):
    pyBigWig = pytest.importorskip("pyBigWig")
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 500 + "\n")
    bw_path = tmp_path / "cov.bw"
    bw = pyBigWig.open(str(bw_path), "w")
    bw.addHeader([("chr1", 2000)])
    bw.addEntries("chr1", 0, values=[float(i % 7) for i in range(2000)], span=1, step=1)
    bw.close()
    bed = tmp_path / "regions.bed"
    bed.write_text("chr1\t100\t164\ttrain\nchr1\t400\t464\ttrain\nchr1\t1000\t1064\tval\n")
    checked = load_config(["task=regression", "data=bigwig", f"data.fasta={fasta}", f"data.intervals={bed}",
                           f"data.bigwigs=[{bw_path}]", "data.seq_len=64", "data.bin_size=16"])
    train, val = build_datasets(checked.data, "regression")
    assert train.labels.shape == (2, 1, 4) and list(train.tasks.index) == ["cov"]
    expected = np.array([i % 7 for i in range(100, 164)], np.float32).reshape(4, 16).mean(1)
    np.testing.assert_allclose(train.labels[0, 0], expected, rtol=1e-6)
    x, y = train[0]  # the window itself, read from the FASTA when asked for
    assert torch.equal(x, one_hot_encode(("ACGT" * 500)[100:164])) and torch.equal(y, torch.from_numpy(train.labels[0]))


# --------------------------------------------------------------------------- other commands
def test_bench_forwards_to_the_benchmark_runner(capsys):
    if not (REPO / "benchmarks" / "run.py").exists():
        pytest.skip("no benchmarks/ in this tree")
    assert cli_main(["bench", "--help"]) == 0
    assert "scaling" in capsys.readouterr().out


def test_bench_without_a_checkout_explains(tmp_path):
    from grelu_caduceus.cli import UserError
    from grelu_caduceus.cli.bench import load_runner

    with pytest.raises(UserError, match="clone the grelu-caduceus repository"):
        load_runner(tmp_path / "benchmarks" / "run.py")


@pytest.mark.parametrize("command", ["predict", "export-kipoi"])
def test_predict_and_export_commands_reach_their_parsers(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli_main([command, "--help"])
    assert stop.value.code == 0
    assert "--model" in capsys.readouterr().out


def test_every_parser_and_main_lives_in_cli():
    """Library modules take typed arguments: argparse and main() are in cli/ only (issue 17)."""
    import ast

    package = REPO / "grelu_caduceus"
    found = []
    for path in sorted(package.rglob("*.py")):
        if path.relative_to(package).parts[0] == "cli":
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module] if isinstance(node, ast.ImportFrom) else [])
            if "argparse" in names or isinstance(node, ast.FunctionDef) and node.name == "main":
                found.append(f"{path.relative_to(REPO)}:{node.lineno}")
    assert not found, f"parsers or main() outside grelu_caduceus/cli/: {found}"


def test_validation_error_is_a_user_error():
    with pytest.raises(ConfigError):
        load_config(["model.n_layer=0"])
