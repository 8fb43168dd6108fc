"""Kipoi export and our own predict path: `kipoi predict` on an exported folder must give the same
numbers as grelu_caduceus.predict (Python and CLI), for a PS model and for a conjoined Ph model.

`kipoi predict` runs as a subprocess with the venv's `kipoi` and HOME in a temp folder (importing
kipoi writes ~/.kipoi); `kipoi test` runs in the acceptance check on kipoi_model/, and here its
reference file is checked in-process. Tiny models are trained for two steps on the bundled CTCF task.
"""

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch

import grelu_caduceus  # noqa: F401  (registers our models with gReLU)
from grelu_caduceus import predict
from grelu_caduceus.kipoi import export, predict_batch, zero_uniform_columns
from grelu_caduceus.checkpoint_files import CheckpointFileError
from grelu_caduceus.data.genome import GenomeDataError

KIPOI = Path(sys.executable).parent / "kipoi"
needs_kipoi = pytest.mark.skipif(
    not KIPOI.exists() or importlib.util.find_spec("kipoi") is None,
    reason="kipoi is not installed (pip install -e '.[kipoi]')",
)
TOL = 1e-5
KIPOI_MODEL = Path(__file__).resolve().parents[1] / "kipoi_model"
COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


# --------------------------------------------------------------------------- helpers
def train_tiny(save_dir: Path, rcps: bool) -> Path:
    """A CaduceusModel trained for two steps on real CTCF windows; returns its checkpoint path."""
    import pytorch_lightning as pl
    from grelu.data.dataset import LabeledSeqDataset
    from grelu.lightning import LightningModel

    from grelu_caduceus.data.bundled import load_task

    pl.seed_everything(0)
    seqs, labels = load_task("ctcf", "train")
    pick = np.r_[0:32, len(seqs) - 32 : len(seqs)]  # both classes
    train = LabeledSeqDataset([seqs[i] for i in pick], labels[pick].reshape(-1, 1, 1), tasks=["ctcf"])
    val_seqs, val_labels = load_task("ctcf", "val")
    val = LabeledSeqDataset(val_seqs[:16], val_labels[:16].reshape(-1, 1, 1), tasks=["ctcf"])
    lm = LightningModel(
        model_params=dict(model_type="CaduceusModel", n_tasks=1, d_model=8, n_layer=1, rcps=rcps),
        train_params=dict(task="binary", loss="bce", lr=1e-2, batch_size=32, max_epochs=1, devices="cpu",
                          num_workers=0, logger=None, save_dir=str(save_dir), checkpoint=True),
    )
    trainer = lm.train_on_dataset(train, val)
    return Path(trainer.checkpoint_callback.best_model_path)


class KipoiPredict:
    """`kipoi predict FOLDER --source dir ...` started in the background (both exports' runs overlap
    with each other and with the in-process work of the tests: Kipoi's start-up dominates)."""

    def __init__(self, folder: Path, fasta: Path, bed: Path, out: Path, home: Path):
        args = [str(KIPOI), "predict", folder.name, "--source", "dir", "--keep_metadata", "-o", str(out),
                "--dataloader_args", f'{{"intervals_file": "{bed}", "fasta_file": "{fasta}"}}']
        self.out, self.log = out, out.with_suffix(".log")
        with open(self.log, "w") as log:
            self.process = subprocess.Popen(args, cwd=folder.parent, env=dict(os.environ, HOME=str(home)),
                                            stdout=log, stderr=subprocess.STDOUT)

    def table(self) -> pd.DataFrame:
        returncode = self.process.wait(timeout=600)
        assert returncode == 0, f"kipoi predict failed:\n{self.log.read_text()[-4000:]}"
        return pd.read_csv(self.out, sep="\t")


def read_fasta(path: Path) -> dict:
    records, name = {}, None
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            name = line[1:].split()[0]
            records[name] = []
        else:
            records[name].append(line.strip())
    return {k: "".join(v) for k, v in records.items()}


def check_kipoi_test_reference(folder: Path) -> None:
    """What `kipoi test` checks (the acceptance check runs it on kipoi_model/): model.yaml's
    test.expect names example_files/expected.h5 relative to the folder's parent, and the exported
    model reproduces its /preds from its /inputs."""
    import h5py
    import yaml

    spec = yaml.safe_load((folder / "model.yaml").read_text())
    assert spec["test"]["expect"] == f"{folder.name}/example_files/expected.h5"
    assert spec["schema"]["targets"]["column_labels"] == export.read_spec(folder)["output_labels"]
    with h5py.File(folder.parent / spec["test"]["expect"], "r") as f:
        inputs, expected = f["inputs"][:], f["preds"][:]
    lm = predict.load_model(folder)
    assert inputs.shape[1:] == (4, export.read_spec(folder)["seq_len"])
    np.testing.assert_allclose(predict_batch(lm, inputs), expected, atol=1.5e-5, rtol=0)


def cli(command, argv):
    """`grelu-caduceus COMMAND ...` through the dispatcher (cli/predict.py, cli/export_kipoi.py)."""
    from grelu_caduceus.cli import main as cli_main

    return cli_main([command, *argv])


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    root = tmp_path_factory.mktemp("kipoi")
    # one HOME per concurrent `kipoi predict`: importing kipoi and genomepy creates ~/.kipoi and
    # ~/.config/genomepy without exist_ok, so two runs starting together in one HOME can race
    for name in ("home_ps", "home_ph"):
        (root / name).mkdir()
    return root


@pytest.fixture(scope="module")
def ps_checkpoint(work):
    return train_tiny(work / "train_ps", rcps=True)


@pytest.fixture(scope="module")
def ph_checkpoint(work):
    return train_tiny(work / "train_ph", rcps=False)


def both_strands_example(folder: Path, work: Path) -> tuple[Path, Path]:
    """The export's example slice plus its reverse complement (contig "rc"), each interval mirrored."""
    examples = folder / "example_files"
    (contig, sequence), = read_fasta(examples / "genome.fa").items()
    length = len(sequence)
    fasta = work / "both_strands.fa"
    fasta.write_text(f">{contig}\n{sequence}\n>rc\n{sequence.translate(COMPLEMENT)[::-1]}\n")
    bed = pd.read_csv(examples / "intervals.bed", sep="\t", comment="#", header=None).iloc[:, :3]
    bed.columns = ["chrom", "start", "end"]
    assert ((bed.start + bed.end) % 2 == 0).all()  # so centred windows mirror exactly
    mirrored = pd.DataFrame({"chrom": "rc", "start": length - bed.end, "end": length - bed.start})
    both_bed = work / "both_strands.bed"
    pd.concat([bed, mirrored]).to_csv(both_bed, sep="\t", header=False, index=False)
    return fasta, both_bed


@pytest.fixture(scope="module")
def kipoi_runs(work, ps_checkpoint, ph_checkpoint):
    """Export the PS model (Python API) and the Ph model with conjoining (CLI), then start
    `kipoi predict` on each: PS on the export's own example files, Ph on both strands."""
    if not KIPOI.exists() or importlib.util.find_spec("kipoi") is None:
        pytest.skip("kipoi is not installed (pip install -e '.[kipoi]')")
    ps = export.export_kipoi(ps_checkpoint, work / "ps_model")
    ph = work / "ph_model"
    assert cli("export-kipoi", ["--model", str(ph_checkpoint), "--out", str(ph), "--conjoin", "yes"]) == 0
    ph_inputs = both_strands_example(ph, work)
    examples = ps / "example_files"
    runs = {
        "ps": (ps, KipoiPredict(ps, examples / "genome.fa", examples / "intervals.bed", work / "ps.tsv",
                                 work / "home_ps")),
        "ph": (ph, KipoiPredict(ph, *ph_inputs, work / "ph.tsv", work / "home_ph"), ph_inputs),
    }
    yield runs
    for entry in runs.values():
        if entry[1].process.poll() is None:  # a test failed before waiting for it
            entry[1].process.kill()


# --------------------------------------------------------------------------- Kipoi vs our predict
@needs_kipoi
def test_export_round_trip_kipoi_equals_our_predict(work, ps_checkpoint, kipoi_runs):
    folder, run = kipoi_runs["ps"]
    fasta, bed = folder / "example_files" / "genome.fa", folder / "example_files" / "intervals.bed"
    for name in ("model.yaml", "model.py", "dataloader.yaml", "dataloader.py", "README.md", "weights/model.json",
                 "weights/model.safetensors", "example_files/expected.h5"):
        assert (folder / name).is_file(), name
    check_kipoi_test_reference(folder)

    ours = predict.predict_intervals(ps_checkpoint, fasta, bed)
    kipoi_table = run.table()
    n_intervals = sum(1 for line in bed.read_text().splitlines() if line and not line.startswith("#"))
    assert len(ours) == len(kipoi_table) == n_intervals
    assert list(kipoi_table.columns[kipoi_table.columns.str.startswith("preds")]) == ["preds/0"]
    assert np.isfinite(ours["ctcf"]).all()
    np.testing.assert_allclose(kipoi_table["preds/0"], ours["ctcf"], atol=TOL, rtol=0)
    # Same windows: kipoi's metadata ranges are our window_start/window_end.
    np.testing.assert_array_equal(kipoi_table["metadata/ranges/start"], ours["window_start"])
    np.testing.assert_array_equal(kipoi_table["metadata/ranges/end"], ours["window_end"])
    assert (ours.window_end - ours.window_start == 200).all() and ours.window_start.iloc[0] < 0  # N-padded edge

    # The CLI and the exported folder used as a model give the same table.
    assert cli("predict", ["--model", str(ps_checkpoint), "--fasta", str(fasta), "--bed", str(bed),
                        "--out", str(work / "ps_cli.tsv")]) == 0
    cli_table = pd.read_csv(work / "ps_cli.tsv", sep="\t")
    # the example BED names its rows: the name column is kept
    assert list(cli_table.columns) == ["chrom", "start", "end", "name", "window_start", "window_end", "ctcf"]
    np.testing.assert_allclose(cli_table["ctcf"], kipoi_table["preds/0"], atol=TOL, rtol=0)
    from_export = predict.predict_intervals(folder, fasta, bed)
    np.testing.assert_allclose(from_export["ctcf"], ours["ctcf"], atol=TOL, rtol=0)
    # A trained model is not constant: the comparison above is not vacuous.
    assert ours["ctcf"].std() > 1e-4


@needs_kipoi
def test_conjoined_ph_export_is_rc_invariant_and_matches_our_predict(ph_checkpoint, kipoi_runs):
    folder, run, (both, both_bed) = kipoi_runs["ph"]
    assert export.read_spec(folder)["model_params"]["conjoin"] is True
    ours = predict.predict_intervals(ph_checkpoint, both, both_bed)  # "auto": Ph is conjoined
    kipoi_table = run.table()
    np.testing.assert_allclose(kipoi_table["preds/0"], ours["ctcf"], atol=TOL, rtol=0)
    forward, reverse = np.split(kipoi_table["preds/0"].to_numpy(), 2)
    np.testing.assert_allclose(forward, reverse, atol=TOL, rtol=0)

    # Control: without conjoining the Ph model is not strand-symmetric, and conjoining changed the output.
    raw = predict.predict_intervals(ph_checkpoint, both, both_bed, conjoin=False)["ctcf"].to_numpy()
    raw_forward, raw_reverse = np.split(raw, 2)
    assert np.abs(raw_forward - raw_reverse).max() > 1e-4
    # The head is linear (1x1 conv + mean pool), so the conjoined logit is the mean of both strands' logits.
    logit = lambda p: np.log(p) - np.log1p(-p)  # noqa: E731
    np.testing.assert_allclose(logit(forward), (logit(raw_forward) + logit(raw_reverse)) / 2, atol=1e-4, rtol=0)


# --------------------------------------------------------------------------- the committed kipoi_model/
def files_under(root: Path) -> list[str]:
    """The files of an export, less FASTA indexes (other tests reading the committed example build them)."""
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".fai", ".gzi"))


def test_committed_kipoi_model_is_what_export_writes(tmp_path):
    """kipoi_model/ is export-kipoi's output: re-exporting it (its weights, recorded source and
    description) writes the same files, so its shims, yaml, README and examples cannot drift from
    the code. Safetensors' header order is not fixed (compare tensors and metadata) and the
    expected predictions may differ in the last float bit across CPUs."""
    import h5py
    from safetensors import safe_open

    out = export.export_kipoi(KIPOI_MODEL, tmp_path / KIPOI_MODEL.name)
    assert files_under(out) == files_under(KIPOI_MODEL)
    for name in files_under(out):
        ours, committed = out / name, KIPOI_MODEL / name
        if name.endswith(".safetensors"):
            with safe_open(ours, "pt") as a, safe_open(committed, "pt") as b:
                assert a.metadata() == b.metadata() and sorted(a.keys()) == sorted(b.keys())
                for key in a.keys():
                    assert torch.equal(a.get_tensor(key), b.get_tensor(key)), key
        elif name.endswith(".h5"):
            with h5py.File(ours, "r") as a, h5py.File(committed, "r") as b:
                assert sorted(a) == sorted(b) == ["inputs", "preds"]
                np.testing.assert_array_equal(a["inputs"][:], b["inputs"][:])
                np.testing.assert_allclose(a["preds"][:], b["preds"][:], atol=1e-6, rtol=0)
        else:
            assert ours.read_text() == committed.read_text(), f"kipoi_model/{name} is not what export-kipoi writes"
    assert "from grelu_caduceus.kipoi.model import CaduceusKipoiModel" in (out / "model.py").read_text()


@needs_kipoi
def test_kipoi_model_and_dataloader_are_package_code(tmp_path, monkeypatch):
    """grelu_caduceus.kipoi's classes, imported as normal modules, reproduce kipoi_model/'s test
    reference: the dataloader's windows are its /inputs and the model's predictions its /preds."""
    import h5py

    monkeypatch.setenv("HOME", str(tmp_path))  # importing kipoi writes ~/.kipoi
    from kipoi.data import Dataset
    from kipoi.model import BaseModel

    from grelu_caduceus.kipoi.dataloader import CaduceusIntervalDl
    from grelu_caduceus.kipoi.model import CaduceusKipoiModel

    examples = KIPOI_MODEL / "example_files"
    seq_len = export.read_spec(KIPOI_MODEL)["seq_len"]
    loader = CaduceusIntervalDl(str(examples / "intervals.bed"), str(examples / "genome.fa"), seq_len)
    model = CaduceusKipoiModel(str(KIPOI_MODEL / "weights"))
    assert isinstance(loader, Dataset) and isinstance(model, BaseModel)
    items = [loader[i] for i in range(len(loader))]
    with h5py.File(examples / "expected.h5", "r") as f:
        np.testing.assert_array_equal(np.stack([item["inputs"] for item in items]), f["inputs"][:])
        np.testing.assert_allclose(model.predict_on_batch(f["inputs"][:]), f["preds"][:], atol=1.5e-5, rtol=0)
    first = items[0]["metadata"]["ranges"]  # the row at the contig start: its window runs past it
    assert (first.chr, first.start, first.end) == (loader.windows.window(0)[0], -40, 160)
    with pytest.raises(export.ExportError, match=r"shape \(batch, 4, length\)"):
        model.predict_on_batch(np.zeros((2, 200, 4), dtype=np.float32))


# --------------------------------------------------------------------------- pieces without kipoi
def test_export_and_inputs_do_not_import_kipoi():
    """Writing an export needs no Kipoi: only kipoi/model.py and kipoi/dataloader.py import it."""
    code = ("import sys, grelu_caduceus.kipoi.export, grelu_caduceus.cli.export_kipoi; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'kipoi'))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0 and out.stdout.strip() == "[]", out.stdout + out.stderr[-2000:]


def test_kipoiseq_n_columns_are_treated_as_our_all_zero_n(ps_checkpoint):
    lm = predict.load_model(ps_checkpoint)
    torch.manual_seed(0)
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (3, 200)), 4).permute(0, 2, 1).float()
    x[:, :, 20:60] = 0.0  # our N
    kipoiseq_style = x.clone()
    kipoiseq_style[:, :, 20:60] = 0.25  # kipoiseq's N
    ours = predict.predict_onehot(lm, x)
    np.testing.assert_allclose(predict_batch(lm, kipoiseq_style.numpy()), ours, atol=1e-6, rtol=0)
    # Feeding 0.25 columns to the model directly would give different numbers.
    assert np.abs(predict.predict_onehot(lm, kipoiseq_style) - ours).max() > 1e-6
    fixed = zero_uniform_columns(kipoiseq_style.numpy())
    np.testing.assert_array_equal(fixed, x.numpy())


def test_kipoiseq_dataloader_gives_our_predictions(tmp_path, monkeypatch, ps_checkpoint):
    """kipoiseq's SeqIntervalDl (0.25-valued N) fed to the Kipoi model's predict_batch equals our
    predict on the same windows, on real sequence with a run of N inside some windows."""
    monkeypatch.setenv("HOME", str(tmp_path))  # importing kipoi writes ~/.kipoi
    sequence_module = pytest.importorskip("kipoiseq.dataloaders.sequence")
    fasta, bed = export.write_demo_examples(tmp_path / "examples")
    (contig, sequence), = read_fasta(fasta).items()
    intervals = pd.read_csv(bed, sep="\t", comment="#", header=None).iloc[1:6, :3]  # inside the contig
    first = int(intervals.iloc[0, 1])
    sequence = sequence[: first + 50] + "N" * 30 + sequence[first + 80 :]
    fasta.write_text(f">{contig}\n{sequence}\n")
    bed3 = tmp_path / "plain.bed"
    intervals.to_csv(bed3, sep="\t", header=False, index=False)

    loader = sequence_module.SeqIntervalDl(str(bed3), str(fasta), auto_resize_len=200, alphabet_axis=0,
                                           dtype=np.float32, ignore_targets=True)
    inputs = np.stack([loader[i]["inputs"] for i in range(len(loader))])
    assert inputs.shape == (5, 4, 200) and (inputs == 0.25).all(axis=1).sum() == 30
    lm = predict.load_model(ps_checkpoint)
    ours = predict.predict_intervals(ps_checkpoint, fasta, bed3)["ctcf"].to_numpy()
    np.testing.assert_allclose(predict_batch(lm, inputs)[:, 0], ours, atol=TOL, rtol=0)


@pytest.mark.parametrize("start,end,seq_len", [(100, 300, 200), (100, 301, 200), (100, 301, 201), (7, 8, 10)])
def test_windows_follow_kipoiseq_centre_rule(start, end, seq_len, tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # importing kipoi writes ~/.kipoi
    functional = pytest.importorskip("kipoiseq.transforms.functional")

    # SeqIntervalDl resizes pybedtools intervals; any object with start/end will do.
    expected = functional.resize_interval(SimpleNamespace(chrom="chr1", start=start, end=end), seq_len, anchor="center")
    got = predict.centred_windows(pd.DataFrame({"chrom": ["chr1"], "start": [start], "end": [end]}), seq_len)
    assert (int(got.start[0]), int(got.end[0])) == (expected.start, expected.end)


def test_pretrained_model_export_is_self_contained(tmp_path):
    """A fine-tuned CaduceusPretrainedModel export carries its backbone: it predicts the same after
    the original pretrained folder is deleted."""
    import pytorch_lightning as pl
    from grelu.lightning import LightningModel

    from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM, save_pretrained

    torch.manual_seed(0)
    pretrained = save_pretrained(CaduceusForMaskedLM(CaduceusConfig(d_model=8, n_layer=2, rcps=False)),
                                 tmp_path / "pretrained")
    lm = LightningModel(
        model_params=dict(model_type="CaduceusPretrainedModel", n_tasks=2, pretrained_path=str(pretrained),
                          n_layers=1),
        train_params=dict(task="regression", loss="mse"),
    )
    lm.data_params = {"tasks": {"name": ["a", "b"]}, "train": {"seq_len": 64}}
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu")
    trainer.strategy.connect(lm)
    ckpt = tmp_path / "finetuned.ckpt"
    trainer.save_checkpoint(ckpt)

    folder = export.export_kipoi(ckpt, tmp_path / "export")
    fasta, bed = folder / "example_files" / "genome.fa", folder / "example_files" / "intervals.bed"
    before = predict.predict_intervals(ckpt, fasta, bed)
    shutil.rmtree(pretrained)
    after = predict.predict_intervals(folder, fasta, bed)
    assert list(after.columns[-2:]) == ["a", "b"]
    assert (after.window_end - after.window_start == 64).all()
    np.testing.assert_allclose(after[["a", "b"]], before[["a", "b"]], atol=TOL, rtol=0)
    assert export.read_spec(folder)["model_params"]["conjoin"] is True  # Ph: conjoined by default


def test_user_mistakes_get_clear_errors(tmp_path, ps_checkpoint):
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "ACGT" * 100 + "\n")
    bed = tmp_path / "x.bed"
    bed.write_text("1\t10\t50\n")
    with pytest.raises(GenomeDataError, match="Did you mean 'chr1'"):
        predict.predict_intervals(ps_checkpoint, fasta, bed)
    with pytest.raises(predict.PredictError, match="not found"):
        predict.predict_intervals(tmp_path / "missing.ckpt", fasta, bed)
    (tmp_path / "notes.ckpt").write_text("not a checkpoint")
    with pytest.raises(CheckpointFileError, match="notes.ckpt is not a PyTorch checkpoint"):
        predict.predict_intervals(tmp_path / "notes.ckpt", fasta, bed)
    bed.write_text("chr1\t50\t50\n")
    with pytest.raises(GenomeDataError, match=r"x\.bed: 1 of 1 intervals have end <= start, e\.g\. row 1: chr1:50-50"):
        predict.predict_intervals(ps_checkpoint, fasta, bed)
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x").write_text("")
    with pytest.raises(export.ExportError, match="not empty"):
        export.export_kipoi(ps_checkpoint, tmp_path / "full")
    with pytest.raises(export.ExportError, match="both example_fasta and example_bed"):
        export.export_kipoi(ps_checkpoint, tmp_path / "new", example_fasta=fasta)
    with pytest.raises(predict.PredictError, match="conjoin=True is not available|conjoin must be"):
        predict.set_conjoin(predict.load_model(ps_checkpoint), "sometimes")
    # The CLI turns them into one-line errors (exit status 2 through the dispatcher).
    from grelu_caduceus.cli import UserError
    from grelu_caduceus.cli.predict import main as predict_main

    with pytest.raises(UserError, match="not found"):
        predict_main(["--model", str(tmp_path / "missing.ckpt"), "--fasta", str(fasta), "--bed", str(bed),
                      "--out", str(tmp_path / "o.tsv")])


def test_export_ships_no_fasta_index(tmp_path):
    """Reading the example FASTA during the export indexes it; the export ships the FASTA alone."""
    out = export.export_kipoi(KIPOI_MODEL, tmp_path / "m")
    assert not list((out / "example_files").glob("*.fai"))
