"""What a new user hits on the command line (issue 27): every mistake is one line naming the option
and the fix, never a traceback, a silent wrong result or lost data.

Inputs are the committed Kipoi model (kipoi_model/, a Caduceus-PS CTCF classifier) and its example
genome (one 100,000 bp contig), a gReLU checkpoint saved from it, and a tiny masked LM.
"""

import gzip
import re
import shutil
import tempfile
from pathlib import Path

import numpy as np
import pytest
import torch

import grelu_caduceus  # noqa: F401  (registers our models with gReLU)
from grelu_caduceus import predict
from grelu_caduceus.cli import COMMANDS
from grelu_caduceus.cli import main as cli_main

ROOT = Path(__file__).resolve().parents[1]
KIPOI_MODEL = ROOT / "kipoi_model"
# A copy: reading a FASTA writes its .fai index beside it, and the committed kipoi_model/ must stay as
# export-kipoi writes it (test_kipoi compares the two).
GENOME = Path(tempfile.mkdtemp(prefix="grelu_caduceus_new_user_")) / "genome.fa"
shutil.copyfile(KIPOI_MODEL / "example_files" / "genome.fa", GENOME)
CONTIG, CONTIG_LEN = "chr20_43300000_43400000", 100_000
SHOW_INPUT_WARNINGS = pytest.mark.filterwarnings("always::grelu_caduceus.errors.InputWarning")


def save_checkpoint(lm, path: Path) -> Path:
    import pytorch_lightning as pl

    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.strategy.connect(lm)
    path.parent.mkdir(parents=True, exist_ok=True)
    trainer.save_checkpoint(path)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """A predictor checkpoint inside a run-folder layout, a masked-LM checkpoint, a BED and a VCF."""
    from grelu_caduceus.tasks.mlm import MLMLightningModel

    root = tmp_path_factory.mktemp("newuser")
    run = root / "runs" / "ctcf"
    best = save_checkpoint(predict.load_model(KIPOI_MODEL), run / "checkpoints" / "best.ckpt")
    torch.manual_seed(0)
    mlm = save_checkpoint(MLMLightningModel(dict(d_model=8, n_layer=1, rcps=True), {}), root / "mlm.ckpt")
    bed = root / "x.bed"
    bed.write_text(f"{CONTIG}\t1000\t1200\n{CONTIG}\t5000\t5200\n")
    seq = "".join(line.strip() for line in GENOME.read_text().splitlines() if not line.startswith(">"))
    vcf = root / "v.vcf"
    vcf.write_text("##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n"
                   f"{CONTIG}\t1100\t.\t{seq[1099].upper()}\t{'G' if seq[1099].upper() != 'G' else 'A'}\n")
    return dict(root=root, run=run, best=best, mlm=mlm, bed=bed, vcf=vcf)


def run_cli(capsys, *argv) -> tuple[int, str]:
    capsys.readouterr()
    code = cli_main([str(a) for a in argv])
    captured = capsys.readouterr()
    return code, captured.err


def one_line_error(err: str) -> str:
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.strip() and "warning" not in line.lower()]
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- 1. --device
def commands_with_device(files, device):
    out = files["root"] / "out"
    return [
        ("predict", "--model", KIPOI_MODEL, "--fasta", GENOME, "--bed", files["bed"], "--out", out / "p.tsv",
         "--device", device),
        ("vep", "--model", files["mlm"], "--variants", files["vcf"], "--genome", GENOME, "--out", out / "v.tsv",
         "--device", device),
        ("vep", "--finetuned", "--model", files["best"], "--variants", files["vcf"], "--genome", GENOME,
         "--out", out / "v.tsv", "--device", device),
        ("embed", "--model", files["mlm"], "--fasta", GENOME, "--bed", files["bed"], "--out", out / "e.npz",
         "--device", device),
    ]


@pytest.mark.parametrize("device,why", [("gpu", r"--device gpu is not a device.*cpu, cuda or cuda:N"),
                                        ("cuda", r"--device cuda asks for a GPU but torch sees none.*--device cpu"),
                                        ("cuda:3", r"--device cuda:3 asks for a GPU")])
def test_a_wrong_device_is_one_line(files, capsys, monkeypatch, device, why):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for argv in commands_with_device(files, device):
        code, err = run_cli(capsys, *argv)
        assert code == 2 and re.search(why, one_line_error(err)), (argv[0], err)


def test_the_python_api_names_the_argument(files, monkeypatch):
    from grelu_caduceus.devices import DeviceError, check_device

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(DeviceError, match=r"device='gpu' is not a device"):
        predict.predict_intervals(KIPOI_MODEL, GENOME, files["bed"], device="gpu")
    with pytest.raises(DeviceError, match=r"device='cuda' asks for a GPU but torch sees none.*device='cpu'"):
        check_device("cuda")
    assert check_device("cpu") == torch.device("cpu")


def test_train_on_a_gpu_that_is_not_there_is_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    code, err = run_cli(capsys, "train", "trainer=gpu", "model.d_model=8", "model.n_layer=1", "trainer.max_steps=1",
                        f"hydra.run.dir={tmp_path / 'run'}")
    line = one_line_error(err)
    assert code == 2 and "trainer=gpu" in line and "torch sees none" in line and "trainer=cpu" in line, err
    assert "HYDRA_FULL_ERROR" not in err


# --------------------------------------------------------------------------- 2. a run folder as --model
@SHOW_INPUT_WARNINGS
def test_a_run_or_checkpoints_folder_stands_for_its_best_checkpoint(files, capsys):
    out = files["root"] / "out2"
    direct = predict.predict_intervals(files["best"], GENOME, files["bed"])
    for folder in (files["run"], files["run"] / "checkpoints"):
        code, err = run_cli(capsys, "predict", "--model", folder, "--fasta", GENOME, "--bed", files["bed"],
                            "--out", out / "p.tsv")
        assert code == 0, err
        assert "Traceback" not in err and f"using {files['best']}" in err, err
        table = __import__("pandas").read_csv(out / "p.tsv", sep="\t")
        np.testing.assert_allclose(table["ctcf"], direct["ctcf"], atol=1e-6, rtol=0)
    code, err = run_cli(capsys, "vep", "--finetuned", "--model", files["run"], "--variants", files["vcf"],
                        "--genome", GENOME, "--out", out / "v.tsv")
    assert code == 0 and f"using {files['best']}" in err, err
    code, err = run_cli(capsys, "export-kipoi", "--model", files["run"] / "checkpoints", "--out", out / "kipoi")
    assert code == 0 and f"using {files['best']}" in err, err
    assert (out / "kipoi" / "weights" / "model.json").is_file()


def test_a_folder_without_best_or_last_names_its_checkpoints(files, capsys, tmp_path):
    only = tmp_path / "run" / "checkpoints"
    only.mkdir(parents=True)
    (only / "step20.ckpt").write_bytes(files["best"].read_bytes())
    code, err = run_cli(capsys, "predict", "--model", tmp_path / "run", "--fasta", GENOME, "--bed", files["bed"],
                        "--out", tmp_path / "p.tsv")
    line = one_line_error(err)
    assert code == 2 and "no best.ckpt or last.ckpt" in line and "--model" in line and "step20.ckpt" in line, err
    code, err = run_cli(capsys, "export-kipoi", "--model", tmp_path, "--out", tmp_path / "k")
    line = one_line_error(err)
    assert code == 2 and "export-kipoi --model" not in line and "neither an exported model" in line, err


# --------------------------------------------------------------------------- 3. vep --finetuned on a masked LM
def test_vep_finetuned_with_a_masked_lm_names_it(files, capsys):
    code, err = run_cli(capsys, "vep", "--finetuned", "--model", files["mlm"], "--variants", files["vcf"],
                        "--genome", GENOME, "--out", files["root"] / "v.tsv")
    line = one_line_error(err)
    assert code == 2 and "masked-LM (pretraining) checkpoint" in line and "without --finetuned" in line, err
    assert "grelu-caduceus train experiment=finetune model.pretrained_path=" in line, err


# --------------------------------------------------------------------------- 4. embed's intervals: predict's rule
def test_embed_refuses_intervals_outside_the_contig_like_predict(files, capsys, tmp_path):
    bed = tmp_path / "bad.bed"
    bed.write_text(f"{CONTIG}\t200000\t200200\n{CONTIG}\t-5\t100\n{CONTIG}\t99950\t100300\n{CONTIG}\t10\t20\n")
    for command, more in (("embed", ["--model", files["mlm"], "--out", tmp_path / "e.npz"]),
                          ("predict", ["--model", KIPOI_MODEL, "--out", tmp_path / "p.tsv"])):
        code, err = run_cli(capsys, command, "--fasta", GENOME, "--bed", bed, *more)
        line = one_line_error(err)
        assert code == 2 and f"intervals file {bed}: 3 of 4 intervals lie wholly or partly outside" in line, err
        assert "row 1:" in line and "row 2:" in line and "row 3:" in line, err
    assert not (tmp_path / "e.npz").exists()


@SHOW_INPUT_WARNINGS
def test_embed_window_past_a_contig_end_is_padded_with_n_and_counted(files, capsys, tmp_path):
    bed = tmp_path / "edge.bed"
    bed.write_text(f"{CONTIG}\t99900\t99950\n{CONTIG}\t5000\t5050\n")
    code, err = run_cli(capsys, "embed", "--model", files["mlm"], "--fasta", GENOME, "--bed", bed, "--window", 1000,
                        "--out", tmp_path / "e.npz", "--no-progress")
    assert code == 0, err
    assert re.search(r"grelu-caduceus embed: warning: .*1 of 2 windows runs past a chromosome end .*padded with N "
                     r"\(first: row 1", err), err
    data = np.load(tmp_path / "e.npz")
    assert data["pool_end"][0] == 99925 + 500 and np.isfinite(data["embeddings"]).all()


# --------------------------------------------------------------------------- 5. a failed export leaves nothing
def test_a_failed_export_leaves_no_folder_and_the_retry_works(files, capsys, tmp_path):
    bad = tmp_path / "bad.bed"
    bad.write_text(f"{CONTIG}\t1000\t1200\n{CONTIG}\t200000\t200200\n")
    out = tmp_path / "exports" / "ctcf"
    common = ["export-kipoi", "--model", files["best"], "--out", out, "--example-fasta", GENOME]
    code, err = run_cli(capsys, *common, "--example-bed", bad)
    assert code == 2 and "outside" in one_line_error(err), err
    assert not out.exists() and list(out.parent.iterdir()) == [], list(out.parent.iterdir())
    good = tmp_path / "good.bed"
    good.write_text(f"{CONTIG}\t1000\t1200\n")
    code, err = run_cli(capsys, *common, "--example-bed", good)
    assert code == 0, err
    assert sorted(p.name for p in out.parent.iterdir()) == ["ctcf"]
    assert (out / "weights" / "model.safetensors").is_file() and (out / "model.yaml").is_file()
    modes = {p.relative_to(out).as_posix(): p.stat().st_mode & 0o777 for p in out.rglob("*")}
    assert out.stat().st_mode & 0o777 == 0o777 & ~current_umask(), oct(out.stat().st_mode)
    assert {m & 0o644 for p, m in modes.items() if (out / p).is_file()} == {0o644}, modes


def current_umask() -> int:
    import os

    mask = os.umask(0)
    os.umask(mask)
    return mask


# --------------------------------------------------------------------------- 6. the plain-gzip hint
def test_the_plain_gzip_hint_writes_a_new_file(files, capsys, tmp_path):
    plain = tmp_path / "hg.fa.gz"
    with gzip.open(plain, "wb") as f:
        f.write(GENOME.read_bytes())
    code, err = run_cli(capsys, "predict", "--model", KIPOI_MODEL, "--fasta", plain, "--bed", files["bed"],
                        "--out", tmp_path / "p.tsv")
    line = one_line_error(err)
    assert code == 2 and "not with bgzip" in line, err
    commands = re.findall(r"`([^`]*)`", line)
    assert commands, line
    for command in commands:  # no suggested command reads and writes the same file (the shell empties it first)
        if ">" in command:
            source, target = command.split(">")
            assert target.strip() not in source, command
    assert any("bgzip" in c and ">" in c and c.split(">")[1].strip().endswith(".gz") for c in commands), line
    assert "grelu_caduceus.data" not in line  # a command line, not Python


# --------------------------------------------------------------------------- 7. train.log of an MLM run
def run_cli_process(*argv, cwd=None):
    """`grelu-caduceus ARGV` in a new process, as a user runs it (the logging set-up depends on what was
    imported before Hydra configured it, which a test process cannot reproduce)."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, PYTHONPATH=str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", ""))
    code = "import sys; from grelu_caduceus.cli import main; sys.exit(main(sys.argv[1:]))"
    return subprocess.run([sys.executable, "-c", code, *map(str, argv)], capture_output=True, text=True, env=env,
                          cwd=cwd, timeout=300)


def test_an_mlm_run_writes_lightning_and_validation_lines_to_train_log(tmp_path):
    """pytorch_lightning, imported before Hydra sets up logging (as task=mlm's config check does), gives
    its loggers their own stderr handler and stops them propagating: their lines missed train.log."""
    run = tmp_path / "mlm"
    done = run_cli_process("train", "task=mlm", "data=demo_genome", "model.d_model=8", "model.n_layer=1",
                           "trainer.max_steps=2", "trainer.progress_bar=false", f"hydra.run.dir={run}")
    assert done.returncode == 0, done.stderr
    log = (run / "train.log").read_text()
    assert re.search(r"\]\[pytorch_lightning[\w.]*\]\[INFO\] - validation at step 2", log), log
    assert "`Trainer.fit` stopped: `max_steps=2` reached." in log, log
    assert "validation at step" not in done.stderr, done.stderr  # formatted on stdout, like a labelled run


def test_the_resume_line_after_ctrl_c_is_logged(tmp_path, caplog):
    import logging
    from types import SimpleNamespace

    from grelu_caduceus.training import SaveOnInterrupt

    saved = []
    trainer = SimpleNamespace(global_step=7, is_global_zero=True, save_checkpoint=lambda p, **kw: saved.append(p))
    with caplog.at_level(logging.INFO):
        SaveOnInterrupt(tmp_path, "run the same command again").on_exception(trainer, None, KeyboardInterrupt())
    assert saved and any("Interrupted at step 7" in r.getMessage() and "To resume, run the same command again"
                         in r.getMessage() for r in caplog.records), caplog.text


# --------------------------------------------------------------------------- help
@pytest.mark.parametrize("command", list(COMMANDS))
def test_every_sub_command_help_names_it_in_its_usage_line(command, capsys):
    try:
        code = cli_main([command, "--help"])
    except SystemExit as stop:  # argparse's --help
        code = stop.code
    out = capsys.readouterr().out
    usage = next((line for line in out.splitlines() if line.startswith("usage:")), None)
    assert code in (0, None) and usage is not None, out
    assert usage.startswith(f"usage: grelu-caduceus {command}"), usage


def test_bench_help_and_the_command_list_name_every_suite_of_benchmarks_run(capsys):
    from grelu_caduceus.cli.bench import load_runner, suite_names

    names = suite_names(load_runner())
    assert {"scaling", "long_range", "gpu", "glrb", "dnalongbench", "report"} <= set(names)
    code = cli_main(["--help"])
    out = capsys.readouterr().out
    assert code == 0 and all(name in out for name in names), out
    assert cli_main(["bench", "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: grelu-caduceus bench") and ".venv/bin/python benchmarks/run.py" not in out, out
    try:
        cli_main(["bench", "scaling", "--help"])
    except SystemExit:
        pass
    assert capsys.readouterr().out.startswith("usage: grelu-caduceus bench scaling")


def test_a_bare_command_prints_usage_and_exits_2(capsys):
    assert cli_main([]) == 2
    captured = capsys.readouterr()
    assert captured.err.startswith("usage: grelu-caduceus COMMAND") and captured.out == ""
    assert cli_main(["--help"]) == 0 and capsys.readouterr().out.startswith("usage: grelu-caduceus COMMAND")


# --------------------------------------------------------------------------- rough edges
def test_vep_finetuned_writes_nothing_in_the_current_folder(files, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = run_cli(capsys, "vep", "--finetuned", "--model", files["best"], "--variants", files["vcf"],
                        "--genome", GENOME, "--out", files["root"] / "v_ft.tsv")
    assert code == 0, err
    assert list(tmp_path.iterdir()) == [], list(tmp_path.rglob("*"))
    assert "Predicting" not in err and "tensorboard" not in err.lower(), err


@pytest.mark.parametrize("command", ["predict", "vep", "embed", "vep-probe"])
def test_genome_option_has_one_documented_name_and_both_work(command, capsys):
    import importlib

    module = importlib.import_module(COMMANDS[command][0])
    parser = module.build_parser()
    help_text = parser.format_help()
    assert "--fasta" in help_text and "--genome" not in help_text, help_text
    options = parser._option_string_actions
    assert options["--fasta"].dest == options["--genome"].dest == "fasta"
    with pytest.raises(SystemExit):
        parser.parse_args(["--genome", "g.fa"])  # the other required options are missing ...
    assert "--fasta" not in capsys.readouterr().err.split("required:")[-1]  # ... but not the genome


@pytest.mark.parametrize("command", ["predict", "vep", "embed", "vep-probe"])
def test_no_progress_everywhere(command):
    import importlib

    options = importlib.import_module(COMMANDS[command][0]).build_parser()._option_string_actions
    assert options["--no-progress"].dest == "no_progress"


def test_a_run_says_seed_set_once(tmp_path, capsys):
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", "model.d_model=8", "model.n_layer=1", "trainer.max_steps=1",
                        "trainer.progress_bar=false", f"hydra.run.dir={run}")
    assert code == 0, err
    assert (run / "train.log").read_text().count("Seed set to 0") == 1


def test_predict_says_output_in_the_singular(files, capsys, tmp_path):
    capsys.readouterr()
    assert cli_main(["predict", "--model", str(KIPOI_MODEL), "--fasta", str(GENOME), "--bed", str(files["bed"]),
                     "--out", str(tmp_path / "p.tsv")]) == 0
    assert "wrote 2 predictions (1 output per interval)" in capsys.readouterr().out


def test_messages_name_the_command_line_option(files, capsys, tmp_path):
    vcf = tmp_path / "wrong.vcf"
    seq = "".join(line.strip() for line in GENOME.read_text().splitlines() if not line.startswith(">"))
    wrong = "A" if seq[1099].upper() != "A" else "C"
    vcf.write_text(f"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n{CONTIG}\t1100\t.\t{wrong}\tT\n")
    code, err = run_cli(capsys, "vep", "--model", files["mlm"], "--variants", vcf, "--fasta", GENOME,
                        "--out", tmp_path / "v.tsv")
    line = one_line_error(err)
    assert code == 2 and "--on-mismatch warn" in line and "on_mismatch=" not in line, err
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    code, err = run_cli(capsys, "export-kipoi", "--model", files["best"], "--out", tmp_path / "full")
    line = one_line_error(err)
    assert code == 2 and "--overwrite" in line and "overwrite=True" not in line, err


def test_bad_bed_rows_are_named_with_the_file_all_kinds_at_once(files, capsys, tmp_path):
    bed = tmp_path / "typo.bed"
    bed.write_text(f"{CONTIG}\t1000\t1200\n{CONTIG}\t10O0\t1200\n{CONTIG}\t5000\t52x0\n")
    for command, more in (("embed", ["--model", files["mlm"], "--out", tmp_path / "e.npz"]),
                          ("predict", ["--model", KIPOI_MODEL, "--out", tmp_path / "p.tsv"])):
        code, err = run_cli(capsys, command, "--fasta", GENOME, "--bed", bed, *more)
        line = one_line_error(err)
        assert code == 2 and str(bed) in line and "2 of 3" in line, err
        assert "row 2: " in line and "'10O0'" in line and "row 3: " in line and "'52x0'" in line, err
    mixed = tmp_path / "mixed.bed"
    mixed.write_text(f"{CONTIG}\t1000\t1200\n{CONTIG}\t500\t400\n{CONTIG}\t200000\t200200\n")
    for command, more in (("embed", ["--model", files["mlm"], "--out", tmp_path / "e.npz"]),
                          ("predict", ["--model", KIPOI_MODEL, "--out", tmp_path / "p.tsv"])):
        code, err = run_cli(capsys, command, "--fasta", GENOME, "--bed", mixed, *more)
        line = one_line_error(err)
        assert code == 2 and str(mixed) in line and "end <= start" in line and "row 2:" in line, err
        assert "outside" in line and "row 3:" in line, err


def test_predict_and_embed_keep_the_bed_name_column(files, capsys, tmp_path):
    import pandas as pd

    bed = tmp_path / "named.bed"
    bed.write_text(f"{CONTIG}\t1000\t1200\tsite_a\t0\t+\n{CONTIG}\t5000\t5200\tsite_b\t0\t-\n")
    assert cli_main(["predict", "--model", str(KIPOI_MODEL), "--fasta", str(GENOME), "--bed", str(bed),
                     "--out", str(tmp_path / "p.tsv")]) == 0
    table = pd.read_csv(tmp_path / "p.tsv", sep="\t")
    assert list(table.columns) == ["chrom", "start", "end", "name", "window_start", "window_end", "ctcf"]
    assert list(table.name) == ["site_a", "site_b"] and "(1 output per interval)" in capsys.readouterr().out
    assert cli_main(["embed", "--model", str(files["mlm"]), "--fasta", str(GENOME), "--bed", str(bed),
                     "--out", str(tmp_path / "e.npz"), "--no-progress"]) == 0
    assert list(np.load(tmp_path / "e.npz")["name"]) == ["site_a", "site_b"]


def test_the_bar_of_a_step_bounded_run_counts_its_steps(tmp_path):
    from types import SimpleNamespace

    from grelu_caduceus.training import build_trainer, step_bounded_progress_bar

    trainer = build_trainer({"max_steps": 20, "max_epochs": 10, "checkpoint": False, "logger": None,
                             "save_dir": str(tmp_path)})
    assert type(trainer.progress_bar_callback).__name__.startswith("StepBounded")
    bar = step_bounded_progress_bar()
    bar._trainer = SimpleNamespace(num_training_batches=512, max_steps=20, global_step=0, accumulate_grad_batches=1,
                                   max_epochs=10)
    assert bar.total_train_batches == 20
    if hasattr(bar, "_get_train_description"):  # the rich bar
        assert bar._get_train_description(0).strip() == "Epoch 0"
    bar._trainer.max_steps = -1
    assert bar.total_train_batches == 512
