"""Bad input gets a clear one-line error or a counted warning, never a traceback or a silent wrong
result: intervals outside their chromosome, windows padded with N, IUPAC codes, all-N windows, empty
interval files and truncated or corrupt checkpoints, in predict, Kipoi's dataloader, training data
and vep.

Inputs are real: the committed Kipoi model (kipoi_model/, a Caduceus-PS CTCF classifier) and its
example genome, a 100 kb slice of hg19 chr20, edited in copies (IUPAC codes, N runs). Warnings are
InputWarnings (UserWarnings, which the pytest configuration ignores), so they are asserted with
pytest.warns, or let through with a filterwarnings mark where the CLI must print them.
"""

import importlib.util
import re
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

import grelu_caduceus  # noqa: F401  (registers our models with gReLU)
from grelu_caduceus import predict
from grelu_caduceus.checkpoint_files import CheckpointFileError, read_checkpoint
from grelu_caduceus.cli import main as cli_main
from grelu_caduceus.cli.train_data import DataConfigError, build_datasets
from grelu_caduceus.data.genome import (
    GenomeDataError,
    GenomeWindowDataset,
    WindowTally,
    clean_sequence,
    one_hot_encode,
)
from grelu_caduceus.errors import InputWarning

ROOT = Path(__file__).resolve().parents[1]
KIPOI_MODEL = ROOT / "kipoi_model"
GENOME = KIPOI_MODEL / "example_files" / "genome.fa"
CONTIG, CONTIG_LEN = "chr20_43300000_43400000", 100_000
SHOW_INPUT_WARNINGS = pytest.mark.filterwarnings("always::grelu_caduceus.errors.InputWarning")


def read_contig(path: Path) -> str:
    return "".join(line.strip() for line in path.read_text().splitlines() if not line.startswith(">"))


def write_fasta(path: Path, name: str, seq: str) -> Path:
    path.write_text(f">{name}\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    return path


@pytest.fixture(scope="module")
def real_seq() -> str:
    seq = read_contig(GENOME)
    assert len(seq) == CONTIG_LEN and set(seq.upper()) <= set("ACGTN")
    return seq


@pytest.fixture(scope="module")
def odd_genome(tmp_path_factory, real_seq):
    """The first 20 kb of the real slice with 200 IUPAC codes (upper and lower case) at 1000-1200 of a
    window 900-1300, an N run 5000-5600, and the same genome with N in place of every IUPAC code."""
    folder = tmp_path_factory.mktemp("odd")
    rng = np.random.default_rng(0)
    seq = np.array(list(real_seq[:20_000]))
    codes = rng.choice(list("RYKMSWBDHVrykmswbdhv"), 200)
    seq[1000:1200] = codes
    seq[5000:5600] = "N"
    odd = "".join(seq)
    as_n = re.sub("[RYKMSWBDHVrykmswbdhv]", "N", odd)
    return SimpleGenome(write_fasta(folder / "odd.fa", "odd", odd), write_fasta(folder / "as_n.fa", "odd", as_n), odd)


class SimpleGenome:
    def __init__(self, fasta, fasta_as_n, seq):
        self.fasta, self.fasta_as_n, self.seq = fasta, fasta_as_n, seq


@pytest.fixture(scope="module")
def kipoi_lm():
    return predict.load_model(KIPOI_MODEL)


@pytest.fixture(scope="module")
def checkpoints(tmp_path_factory, kipoi_lm):
    """A real gReLU checkpoint of the committed model, and broken copies of it."""
    import pytorch_lightning as pl

    folder = tmp_path_factory.mktemp("ckpt")
    trainer = pl.Trainer(logger=False, enable_checkpointing=False, accelerator="cpu", enable_progress_bar=False,
                         enable_model_summary=False)
    trainer.strategy.connect(kipoi_lm)
    good = folder / "good.ckpt"
    trainer.save_checkpoint(good)
    data = good.read_bytes()
    middle = bytearray(data)
    middle[len(data) // 2: len(data) // 2 + 200] = bytes(200)  # inside the weights: torch alone loads it silently
    broken = {
        "trunc": data[:20_000],  # `head -c 20000`: what a run killed while saving leaves
        "short": data[:-10],
        "empty": b"",
        "text": b"not a checkpoint\n",
        "random": np.random.default_rng(0).bytes(20_000),
        "middle": bytes(middle),  # a complete zip with a damaged member
    }
    paths = {"good": good}
    for name, content in broken.items():
        paths[name] = folder / f"{name}.ckpt"
        paths[name].write_bytes(content)
    return paths


def run_cli(capsys, *argv) -> tuple[int, str]:
    code = cli_main(list(argv))
    captured = capsys.readouterr()
    return code, captured.err


def one_line_error(err: str) -> str:
    lines = [line for line in err.splitlines() if line.strip() and "warning:" not in line]
    assert "Traceback" not in err
    assert len(lines) == 1, err
    return lines[0]


# --------------------------------------------------------------------------- the letter rule
def test_clean_sequence_reads_iupac_as_n_and_rejects_other_letters():
    assert clean_sequence("ACGTNacgtn") == ("ACGTNACGTN", 0, False)
    assert clean_sequence("ArYkMsWbDhVn") == ("ANNNNNNNNNNN", 10, False)
    assert clean_sequence("NNRY") == ("NNNN", 2, True)
    # the one-hot of the cleaned window has all-zero columns where the codes were
    assert one_hot_encode(clean_sequence("ARG")[0]).sum(0).tolist() == [1.0, 0.0, 1.0]
    for bad, shown in (("ACGU", "'U'"), ("AC-GT", "'-'"), ("MKVLEF", "'E', 'F', 'L'")):
        with pytest.raises(GenomeDataError, match=f"row 2 holds .*not DNA letters \\({shown}\\)"):
            clean_sequence(bad, "row 2")


def test_window_tally_counts_each_kind_once():
    tally = WindowTally("test", lambda row: f"row {row + 1}")
    for row, (seq, padded) in enumerate([("ACGT", False), ("ARYT", True), ("NNNN", False), ("RRNN", True)]):
        tally.clean(seq, row, padded)
    messages = tally.messages(4)
    assert len(messages) == 3
    assert messages[0].startswith("test: 2 of 4 windows run past a chromosome end") and "(first: row 2)" in messages[0]
    assert "2 of 4 windows hold 4 IUPAC ambiguity codes (R/Y/K/M/S/W/B/D/H/V), read as N (first: row 2)" in messages[1]
    assert "2 of 4 windows are all-N (no A/C/G/T base)" in messages[2] and "(first: row 3)" in messages[2]
    with pytest.warns(InputWarning) as record:
        tally.warn(4)
    assert [str(w.message) for w in record] == messages
    assert WindowTally("clean").messages() == []


# --------------------------------------------------------------------------- predict and Kipoi
@pytest.mark.parametrize("start,end", [(150_000, 150_200), (99_950, 100_150), (-10, 190)])
def test_interval_outside_its_chromosome_is_an_error_naming_the_row(tmp_path, kipoi_lm, start, end):
    bed = tmp_path / "x.bed"
    bed.write_text(f"# a comment\n{CONTIG}\t1000\t1200\n{CONTIG}\t{start}\t{end}\n")
    expected = (rf"1 of 2 intervals lie wholly or partly outside their chromosome, e\.g\. row 2: "
                rf"{CONTIG}:{start}-{end} \(chromosome length {CONTIG_LEN}\)")
    with pytest.raises(GenomeDataError, match=expected):
        predict.IntervalWindows(GENOME, bed, 200)
    with pytest.raises(GenomeDataError, match=expected):
        predict.predict_intervals(KIPOI_MODEL, GENOME, bed)


def test_cli_interval_outside_and_empty_bed_are_one_line_errors(tmp_path, capsys):
    outside, empty, header_only = tmp_path / "outside.bed", tmp_path / "empty.bed", tmp_path / "header.bed"
    outside.write_text(f"{CONTIG}\t150000\t150200\n")
    empty.write_text("")
    header_only.write_text("track name=peaks\n# nothing here\n\n")
    for bed, pattern in ((outside, "row 1: chr20_43300000_43400000:150000-150200 \\(chromosome length 100000\\)"),
                         (empty, "empty.bed is empty: it has no intervals"),
                         (header_only, "header.bed is empty: it has no intervals")):
        code, err = run_cli(capsys, "predict", "--model", str(KIPOI_MODEL), "--fasta", str(GENOME), "--bed", str(bed),
                            "--out", str(tmp_path / "p.tsv"))
        assert code == 2 and re.search(pattern, one_line_error(err)), err
    assert not (tmp_path / "p.tsv").exists()
    with pytest.raises(GenomeDataError, match="intervals DataFrame is empty"):
        predict.IntervalWindows(GENOME, pd.DataFrame(columns=["chrom", "start", "end"]), 200)


def test_window_resized_past_an_edge_is_padded_with_n_and_counted(real_seq):
    bed = pd.DataFrame({"chrom": [CONTIG] * 3, "start": [0, 5000, CONTIG_LEN - 40], "end": [50, 5200, CONTIG_LEN]})
    with pytest.warns(InputWarning, match=r"2 of 3 windows run past a chromosome end only because of centring in "
                                          r"200 bp windows; the bases beyond the end are padded with N \(first: row 1"):
        windows = predict.IntervalWindows(GENOME, bed, 200)
    assert windows.window(0) == (CONTIG, -75, 125) and windows.window(2) == (CONTIG, CONTIG_LEN - 120, CONTIG_LEN + 80)
    np.testing.assert_array_equal(windows[0][:, :75].numpy(), 0)  # N before the contig
    np.testing.assert_array_equal(windows[0][:, 75:].numpy(), one_hot_encode(real_seq[:125]).numpy())
    np.testing.assert_array_equal(windows[2][:, 120:].numpy(), 0)  # N after it


def test_iupac_codes_and_all_n_windows_in_predict(odd_genome, kipoi_lm):
    bed = pd.DataFrame({"chrom": ["odd"] * 4, "start": [900, 5100, 9000, 5300], "end": [1300, 5300, 9200, 5900]})
    with pytest.warns(InputWarning) as record:
        table = predict.predict_intervals(KIPOI_MODEL, odd_genome.fasta, bed)
    messages = [str(w.message) for w in record if issubclass(w.category, InputWarning)]
    assert any("1 of 4 windows holds 200 IUPAC ambiguity codes (R/Y/K/M/S/W/B/D/H/V), read as N (first: row 1: "
               "odd:900-1300, window 1000-1200)" in m for m in messages), messages
    assert any("2 of 4 windows are all-N (no A/C/G/T base)" in m and "(first: row 1:" in m for m in messages), messages
    # Read as N: the same windows and numbers as the genome with N written in place of every code.
    with pytest.warns(InputWarning, match="all-N"):
        as_n = predict.predict_intervals(KIPOI_MODEL, odd_genome.fasta_as_n, bed)
    np.testing.assert_array_equal(table["ctcf"], as_n["ctcf"])
    # All-N windows (rows 1 and 2 hold no A/C/G/T) predict finite numbers, the model's answer to no sequence.
    assert np.isfinite(table["ctcf"]).all()
    assert table["ctcf"][0] == table["ctcf"][1] != table["ctcf"][2]
    x = torch.zeros(1, 4, 200)
    np.testing.assert_allclose(predict.predict_onehot(kipoi_lm, x)[0, 0], table["ctcf"][0], atol=1e-6, rtol=0)


@SHOW_INPUT_WARNINGS
def test_cli_predict_prints_each_warning_as_one_line(tmp_path, odd_genome, capsys):
    bed = tmp_path / "odd.bed"
    bed.write_text("odd\t1000\t1200\nodd\t5100\t5300\nodd\t9000\t9200\nodd\t0\t50\n")
    code, err = run_cli(capsys, "predict", "--model", str(KIPOI_MODEL), "--fasta", str(odd_genome.fasta),
                        "--bed", str(bed), "--out", str(tmp_path / "p.tsv"))
    assert code == 0 and "Traceback" not in err
    lines = [line for line in err.splitlines() if line.startswith("grelu-caduceus predict: warning: ")]
    assert len(lines) == 3, err
    assert "1 of 4 windows runs past a chromosome end" in lines[0]
    assert "1 of 4 windows holds 200 IUPAC ambiguity codes" in lines[1]
    assert "2 of 4 windows are all-N" in lines[2]
    assert np.isfinite(pd.read_csv(tmp_path / "p.tsv", sep="\t")["ctcf"]).all()


def test_kipoi_dataloader_follows_the_same_rules(tmp_path, monkeypatch, odd_genome):
    monkeypatch.setenv("HOME", str(tmp_path))  # importing kipoi writes ~/.kipoi
    if importlib.util.find_spec("kipoi") is None:
        pytest.skip("kipoi is not installed")
    spec = importlib.util.spec_from_file_location("committed_kipoi_dataloader", KIPOI_MODEL / "dataloader.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    bed = tmp_path / "odd.bed"
    bed.write_text("odd\t900\t1300\nodd\t5100\t5300\nodd\t0\t50\n")
    with pytest.warns(InputWarning) as record:
        loader = module.CaduceusIntervalDl(str(bed), str(odd_genome.fasta))
    text = " ".join(str(w.message) for w in record)
    assert "1 of 3 windows holds 200 IUPAC ambiguity codes" in text and "2 of 3 windows are all-N" in text
    assert "1 of 3 windows runs past a chromosome end" in text
    ours = predict.IntervalWindows(odd_genome.fasta_as_n, bed, 200)
    for i in range(3):
        np.testing.assert_array_equal(loader[i]["inputs"], ours[i].numpy())
    bed.write_text("odd\t19950\t20150\n")
    with pytest.raises(GenomeDataError, match=r"row 1: odd:19950-20150 \(chromosome length 20000\)"):
        module.CaduceusIntervalDl(str(bed), str(odd_genome.fasta))


# --------------------------------------------------------------------------- training data
def fasta_bed_config(fasta, intervals, *extra):
    from grelu_caduceus.cli.config_schema import validate
    from grelu_caduceus.cli.train import compose_config

    return validate(compose_config(["data=fasta_bed", f"data.fasta={fasta}", f"data.intervals={intervals}",
                                    "data.seq_len=200", *extra]))


def training_table(path: Path, starts, chrom="odd"):
    rows = ["chrom\tstart\tend\tlabel\tsplit"]
    rows += [f"{chrom}\t{s}\t{s + 200}\t{i % 2}\t{'val' if i % 4 == 0 else 'train'}" for i, s in enumerate(starts)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_training_data_reads_iupac_as_n_with_a_count(tmp_path, odd_genome):
    """Before: gReLU's one-hot check stopped with `ValueError: Input string is not a valid DNA sequence`."""
    from grelu.sequence.format import convert_input_type

    starts = [200, 600, 1000, 1100, 5100, 9000, 12000, 15000]
    table = training_table(tmp_path / "odd.tsv", starts)
    checked = fasta_bed_config(odd_genome.fasta, table)
    with pytest.warns(InputWarning) as record:
        train, val = build_datasets(checked.data, "binary")
    text = " ".join(str(w.message) for w in record)
    assert f"data.intervals={table}: 2 of 8 windows hold 300 IUPAC ambiguity codes" in text, text
    assert "(first: row 3: odd:1000-1200)" in text
    assert "2 of 8 windows are all-N" in text  # 1000-1200 (all codes) and 5100-5300 (the N run)
    assert len(train) + len(val) == 8
    as_n = odd_genome.seq.upper().translate(str.maketrans("RYKMSWBDHV", "N" * 10))
    seqs = convert_input_type(train.seqs[:], "strings") + convert_input_type(val.seqs[:], "strings")
    expected = [as_n[s:s + 200] for i, s in enumerate(starts) if i % 4 != 0] + \
               [as_n[s:s + 200] for i, s in enumerate(starts) if i % 4 == 0]
    assert seqs == expected


def test_training_data_intervals_outside_and_empty_tables(tmp_path, odd_genome):
    table = training_table(tmp_path / "outside.tsv", [200, 19_900, 600, 25_000])
    with pytest.raises(DataConfigError, match=r"2 of 4 intervals lie wholly or partly outside their chromosome, "
                                              r"e\.g\. row 2: odd:19900-20100 \(chromosome length 20000\); "
                                              r"row 4: odd:25000-25200"):
        build_datasets(fasta_bed_config(odd_genome.fasta, table).data, "binary")
    header_only = tmp_path / "header.tsv"
    header_only.write_text("chrom\tstart\tend\tlabel\tsplit\n")
    with pytest.raises(DataConfigError, match="header.tsv is empty: it has no interval rows below its header"):
        build_datasets(fasta_bed_config(odd_genome.fasta, header_only).data, "binary")
    empty = tmp_path / "empty.tsv"
    empty.write_text("")
    with pytest.raises(DataConfigError, match="empty.tsv is empty: it has no interval rows"):
        build_datasets(fasta_bed_config(odd_genome.fasta, empty).data, "binary")
    # resized past the contig's end: padded with N and counted
    near_end = training_table(tmp_path / "near.tsv", [200, 600, 1400, 19_800])
    with pytest.warns(InputWarning, match=r"1 of 4 windows runs past a chromosome end .* \(first: row 4"):
        build_datasets(fasta_bed_config(odd_genome.fasta, near_end, "data.seq_len=400").data, "binary")


def test_sequence_table_iupac_codes_and_foreign_letters(tmp_path, real_seq):
    from grelu_caduceus.cli.config_schema import validate
    from grelu_caduceus.cli.train import compose_config

    seqs = [real_seq[i:i + 100] for i in range(0, 1600, 100)]
    seqs[3] = seqs[3][:50] + "ry" + seqs[3][52:]
    path = tmp_path / "seqs.tsv"
    pd.DataFrame({"seq": seqs, "label": [i % 2 for i in range(16)],
                  "split": ["val" if i % 4 == 0 else "train" for i in range(16)]}).to_csv(path, sep="\t", index=False)
    checked = validate(compose_config(["data=table", f"data.path={path}"]))
    with pytest.warns(InputWarning, match=r"1 of 16 windows holds 2 IUPAC ambiguity codes .* \(first: row 4\)"):
        build_datasets(checked.data, "binary")
    frame = pd.read_csv(path, sep="\t")
    frame.loc[5, "seq"] = frame.seq[5][:10] + "-" + frame.seq[5][11:]
    frame.to_csv(path, sep="\t", index=False)
    with pytest.raises(DataConfigError, match=r"row 6 holds 1 character\(s\) that are not DNA letters \('-'\)"):
        build_datasets(checked.data, "binary")
    path.write_text("seq\tlabel\tsplit\n")
    with pytest.raises(DataConfigError, match="is empty: it has no rows below its header"):
        build_datasets(checked.data, "binary")


def test_genome_window_dataset_intervals_follow_the_same_bounds_rule(odd_genome):
    bed = pd.DataFrame({"chrom": ["odd", "odd"], "start": [10, 19_990], "end": [60, 20_010]})
    with pytest.raises(GenomeDataError, match=r"row 2: odd:19990-20010 \(chromosome length 20000\)"):
        GenomeWindowDataset(odd_genome.fasta, seq_len=100, intervals=bed)
    bed = pd.DataFrame({"chrom": ["odd", "odd"], "start": [10, 3000], "end": [60, 3050]})
    with pytest.warns(InputWarning, match=r"1 of 2 windows runs past a chromosome end .* \(first: row 1 \(odd:10-60\)\)"):
        GenomeWindowDataset(odd_genome.fasta, seq_len=100, intervals=bed)


@SHOW_INPUT_WARNINGS
def test_cli_train_on_iupac_data_warns_and_trains(tmp_path, odd_genome, capsys):
    table = training_table(tmp_path / "odd.tsv", range(200, 19_000, 400))
    run = tmp_path / "run"
    code, err = run_cli(capsys, "train", "data=fasta_bed", f"data.fasta={odd_genome.fasta}", f"data.intervals={table}",
                        "data.seq_len=200", "trainer.max_steps=1", "trainer.max_epochs=1", "task.batch_size=8",
                        "trainer.progress_bar=false", "model.d_model=8", "model.n_layer=1", f"hydra.run.dir={run}")
    assert code == 0 and "Traceback" not in err, err
    assert re.search(r"grelu-caduceus train: warning: data\.intervals=.*: 1 of 47 windows holds 200 IUPAC", err), err
    assert (run / "checkpoints" / "last.ckpt").exists()


# --------------------------------------------------------------------------- vep
@pytest.fixture(scope="module")
def tiny_mlm(tmp_path_factory):
    from grelu_caduceus.tasks.mlm import MLMLightningModel

    torch.manual_seed(0)
    return MLMLightningModel(dict(d_model=8, n_layer=1, rcps=True), {}).model.eval()


def vep_variants(seq: str, positions) -> pd.DataFrame:
    """SNVs at 1-based ``positions`` with the genome's base as ref."""
    refs = [seq[p - 1].upper() for p in positions]
    alts = [{"A": "G", "C": "T", "G": "A", "T": "C"}[r] for r in refs]
    return pd.DataFrame({"chrom": "odd", "pos": positions, "ref": refs, "alt": alts})


def test_vep_zero_shot_reads_iupac_as_n_and_pads_edges(odd_genome, tiny_mlm):
    from grelu_caduceus.vep import score_variants_zero_shot

    variants = vep_variants(odd_genome.seq, [950, 3000, 19_990])
    with pytest.warns(InputWarning) as record:
        scores = score_variants_zero_shot(tiny_mlm, variants, odd_genome.fasta, window=256)
    text = " ".join(str(w.message) for w in record)
    assert "vep: 256 bp context windows: 1 of 3 windows holds" in text and "(first: variant 1 (odd:950))" in text
    assert "1 of 3 windows runs past a chromosome end" in text and "(first: variant 3 (odd:19990))" in text
    with pytest.warns(InputWarning, match="runs past"):
        as_n = score_variants_zero_shot(tiny_mlm, variants, odd_genome.fasta_as_n, window=256)
    assert np.isfinite(scores.llr).all()
    np.testing.assert_allclose(scores.llr, as_n.llr, atol=1e-6, rtol=0)


def test_vep_finetuned_reads_iupac_as_n_and_pads_edges(odd_genome, kipoi_lm):
    """gReLU's own VariantDataset stops on both (KeyError 'R', ValueError on the chromosome end)."""
    from grelu_caduceus.vep import score_variants_finetuned

    variants = vep_variants(odd_genome.seq, [1250, 3000, 19_950])
    with pytest.warns(InputWarning) as record:
        scores = score_variants_finetuned(kipoi_lm, variants, odd_genome.fasta)
    text = " ".join(str(w.message) for w in record)
    assert "vep: 200 bp context windows: 1 of 3 windows holds" in text and "(first: variant 1 (odd:1250))" in text
    assert "runs past a chromosome end" in text and "variant 3 (odd:19950)" in text
    assert np.isfinite(scores.effect_ctcf).all()
    # the in-bounds, clean variant: exactly gReLU's predict_variant_effects
    from grelu.variant import predict_variant_effects

    (odd_genome.fasta.parent / "odd.fa.sizes").write_text("odd\t20000\n")
    direct = predict_variant_effects(variants.iloc[[1]], kipoi_lm, devices="cpu", seq_len=200, num_workers=0,
                                     genome=str(odd_genome.fasta), rc=True, compare_func="subtract",
                                     return_ad=False)
    np.testing.assert_allclose(scores.effect_ctcf[1], np.asarray(direct).mean(-1)[0, 0], atol=1e-6, rtol=0)


# --------------------------------------------------------------------------- checkpoints
@pytest.mark.parametrize("name,why", [("trunc", "truncated or corrupt"), ("short", "truncated or corrupt"),
                                      ("middle", "truncated or corrupt"), ("empty", "is empty"),
                                      ("text", "not a PyTorch checkpoint"), ("random", "not a PyTorch checkpoint")])
def test_read_checkpoint_names_the_file_and_the_fix(checkpoints, name, why):
    path = checkpoints[name]
    with pytest.raises(CheckpointFileError, match=f"{re.escape(str(path))}.*{why}.*: use a complete checkpoint "
                                                  r"such as RUN/checkpoints/last\.ckpt"):
        read_checkpoint(path)
    with pytest.raises(CheckpointFileError, match="or trainer.resume=null"):
        read_checkpoint(path, hint="or trainer.resume=null")


def test_read_checkpoint_reads_good_files_and_passes_other_errors_through(checkpoints, tmp_path):
    from grelu_caduceus.grelu_compat import load_checkpoint

    assert read_checkpoint(checkpoints["good"])["hyper_parameters"]["model_params"]["model_type"] == "CaduceusModel"
    torch.load(checkpoints["middle"], weights_only=False)  # damaged weights: torch alone does not notice
    with pytest.raises(KeyError, match="not about the file"):
        read_checkpoint(checkpoints["good"], lambda p: {}["not about the file"])
    with pytest.raises(CheckpointFileError, match="does not exist"):
        read_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(CheckpointFileError, match="is a folder"):
        read_checkpoint(tmp_path)
    assert not load_checkpoint(checkpoints["good"]).training
    with pytest.raises(CheckpointFileError, match="trunc.ckpt is truncated or corrupt"):
        load_checkpoint(checkpoints["trunc"])


def test_predict_and_vep_with_a_truncated_checkpoint_are_one_line_errors(tmp_path, checkpoints, capsys):
    trunc = checkpoints["trunc"]
    bed = tmp_path / "x.bed"
    bed.write_text(f"{CONTIG}\t1000\t1200\n")
    vcf = tmp_path / "v.vcf"
    vcf.write_text(f"##fileformat=VCFv4.2\n#CHROM\tPOS\tID\tREF\tALT\n{CONTIG}\t1100\t.\tA\tG\n")
    commands = [
        ("predict", "--model", str(trunc), "--fasta", str(GENOME), "--bed", str(bed), "--out", str(tmp_path / "p.tsv")),
        ("vep", "--model", str(trunc), "--variants", str(vcf), "--genome", str(GENOME), "--out", str(tmp_path / "v.tsv")),
        ("vep", "--finetuned", "--model", str(trunc), "--variants", str(vcf), "--genome", str(GENOME),
         "--out", str(tmp_path / "v.tsv")),
    ]
    for argv in commands:
        code, err = run_cli(capsys, *argv)
        line = one_line_error(err)
        assert code == 2 and f"{trunc} is truncated or corrupt (" in line, err
        assert "use a complete checkpoint such as RUN/checkpoints/last.ckpt" in line
    # the complete checkpoint predicts what the exported folder predicts
    good = predict.predict_intervals(checkpoints["good"], GENOME, bed)
    np.testing.assert_allclose(good["ctcf"], predict.predict_intervals(KIPOI_MODEL, GENOME, bed)["ctcf"], atol=1e-6)


def test_train_with_a_truncated_pretrained_path_or_resume_checkpoint(tmp_path, checkpoints, odd_genome, capsys):
    from grelu_caduceus.models.caduceus import load_backbone

    trunc = checkpoints["trunc"]
    with pytest.raises(CheckpointFileError, match=f"{re.escape(str(trunc))} is truncated or corrupt.*point "
                                                  "pretrained_path at a complete masked-LM checkpoint"):
        load_backbone(trunc)
    table = training_table(tmp_path / "clean.tsv", range(6000, 19_000, 400))
    common = ["data=fasta_bed", f"data.fasta={odd_genome.fasta}", f"data.intervals={table}", "data.seq_len=200",
              "trainer.max_steps=1", "task.batch_size=8", "trainer.progress_bar=false"]
    code, err = run_cli(capsys, "train", "experiment=finetune", *common, f"model.pretrained_path={trunc}",
                        f"hydra.run.dir={tmp_path / 'ft'}")
    line = one_line_error(err)
    assert code == 2 and "cannot build CaduceusPretrainedModel" in line and f"{trunc} is truncated" in line, err
    code, err = run_cli(capsys, "train", *common, "model.d_model=8", "model.n_layer=1", f"trainer.resume={trunc}",
                        f"hydra.run.dir={tmp_path / 'resume'}")
    line = one_line_error(err)
    assert code == 2 and f"{trunc} is truncated or corrupt" in line and "trainer.resume=null" in line, err
    assert not (tmp_path / "resume" / "checkpoints" / "last.ckpt").exists()


def test_mlm_resume_from_a_truncated_checkpoint_is_a_clear_error(tmp_path, checkpoints):
    from grelu_caduceus.tasks.mlm import MLMLightningModel, train_mlm

    model = MLMLightningModel(dict(d_model=8, n_layer=1), {"max_steps": 1, "batch_size": 2, "num_workers": 0,
                                                            "logger": None, "progress_bar": False})
    (tmp_path / "checkpoints").mkdir()
    (tmp_path / "checkpoints" / "last.ckpt").write_bytes(checkpoints["trunc"].read_bytes())
    data = torch.utils.data.TensorDataset(torch.zeros(4, 4, 32))
    with pytest.raises(CheckpointFileError, match=r"last\.ckpt is truncated or corrupt.*resume=None"):
        train_mlm(model, data, None, tmp_path, resume="auto")


def test_predict_and_vep_show_progress_for_inputs_of_several_batches(tmp_path, capsys, kipoi_lm, tiny_mlm):
    from grelu_caduceus.vep import score_variants_zero_shot

    bed = tmp_path / "many.bed"
    bed.write_text("".join(f"{CONTIG}\t{s}\t{s + 200}\n" for s in range(1000, 9000, 400)))  # 20 intervals
    capsys.readouterr()
    predict.predict_intervals(KIPOI_MODEL, GENOME, bed, batch_size=8)
    err = capsys.readouterr().err
    assert "predict: 100%" in err and "20/20" in err
    predict.predict_intervals(KIPOI_MODEL, GENOME, bed, batch_size=64)  # one batch: no bar
    assert "predict" not in capsys.readouterr().err
    seq = "".join(line.strip() for line in open(GENOME) if not line.startswith(">"))
    variants = vep_variants(seq, list(range(2000, 2040, 2))).assign(chrom=CONTIG)
    score_variants_zero_shot(tiny_mlm, variants, GENOME, window=64, batch_size=4)
    assert "vep (20 variants): 100%" in capsys.readouterr().err


def test_a_masked_lm_checkpoint_given_as_a_predictor_is_named_as_such(tmp_path):
    """predict/vep on a pretraining checkpoint: one line saying what it is and what to do instead."""
    import torch

    from grelu_caduceus.inference import PredictError, load_model

    path = tmp_path / "mlm.ckpt"
    torch.save({"hyper_parameters": {"model_params": {"model_type": "CaduceusForMaskedLM"}}}, path)
    with pytest.raises(PredictError, match=r"mlm\.ckpt .*masked-LM \(pretraining\) checkpoint, not a predictor: "
                                           r"fine-tune it"):
        load_model(path)
