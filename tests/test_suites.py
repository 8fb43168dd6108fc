"""Standard long-range suites (benchmarks/suites.py): each loader on a small fixture written here in that
suite's on-disk format (a few rows and a tiny FASTA), and the probe commands end to end."""

import gzip
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from helpers import write_checkpoint

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from benchmarks import suites  # noqa: E402
from benchmarks.run import main as run_main  # noqa: E402

COMP = str.maketrans("ACGT", "TGCA")
CHR1 = 120_000  # long enough for one full 114,688 bp CAGE window


@pytest.fixture(scope="module")
def chroms():
    rng = np.random.default_rng(0)
    return {"chr1": "".join(rng.choice(list("ACGT"), CHR1)), "chr2": "".join(rng.choice(list("ACGT"), 3000))}


def write_fasta(path: Path, chroms: dict) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as f:
        for name, seq in chroms.items():
            f.write(f">{name}\n")
            for i in range(0, len(seq), 60):
                f.write(seq[i:i + 60] + "\n")
    return path


def rc(seq: str) -> str:
    return seq.translate(COMP)[::-1]


# ------------------------------------------------------------------------------------- GLRB fixture
def n_rows(n_train=12, n_test=6):
    """Positions (1-based) spread over chr1, alternating labels, train then test."""
    n = n_train + n_test
    pos = 1000 + 400 * np.arange(n)
    return pos, np.tile([1, 0], n // 2), ["train"] * n_train + ["test"] * n_test


@pytest.fixture(scope="module")
def glrb_dir(tmp_path_factory, chroms):
    d = tmp_path_factory.mktemp("glrb")
    write_fasta(d / "hg38.fa", chroms)
    write_fasta(d / "downloads" / "hg19.fa", chroms)  # where the dataset script puts its downloads
    pos, label, split = n_rows()
    seq = chroms["chr1"]
    eqtl = pd.DataFrame(dict(CHROM="chr1", POS=pos, REF=[seq[p - 1] for p in pos],
                             ALT=["A" if seq[p - 1] != "A" else "C" for p in pos], label=label,
                             tissue=["Whole_Blood", "Thyroid"] * (len(pos) // 2), distance_to_nearest_TSS=100,
                             split=split))
    eqtl = pd.concat([eqtl, pd.DataFrame([dict(CHROM="chr2", POS=10, REF=chroms["chr2"][9], ALT="N", label=1,
                                               tissue="Thyroid", distance_to_nearest_TSS=5, split="test")])])
    (d / "variant_effect_causal_eqtl").mkdir()
    eqtl.to_csv(d / "variant_effect_causal_eqtl" / "All_Tissues.csv", index=False)

    (d / "bulk_rna_expression").mkdir()
    pd.DataFrame(dict(chrom="chr1", CAGE_representative_TSS=pos, strand=["+", "-"] * (len(pos) // 2),
                      split=split)).to_csv(d / "bulk_rna_expression" / "gene_coordinates.csv", index=False)
    rng = np.random.default_rng(1)
    pd.DataFrame(rng.normal(size=(len(pos), 3)), columns=["Liver", "Lung", "Brain"]).to_csv(
        d / "bulk_rna_expression" / "rna_expression_values.csv", index=False)

    (d / "chromatin_features").mkdir()
    pd.DataFrame(dict(CHROM="chr1", POS=pos, HISTONES=[str([int(v), 1 - int(v), int(v)]) for v in label],
                      DNASE=[str([int(v), 1 - int(v)]) for v in label], split=split)).to_csv(
        d / "chromatin_features" / "histones_and_dnase.csv", index=False)

    (d / "regulatory_elements").mkdir()
    for name in ("promoter", "enhancer"):
        pd.DataFrame(dict(CHROM="chr1", START=pos, STOP=pos + 200, label=label, split=split)).to_csv(
            d / "regulatory_elements" / f"{name}_dataset.csv", index=False)

    cage = d / "cage_prediction"
    (cage / "targets_subset").mkdir(parents=True)
    starts = [1001, 2001, 3001]  # full 114,688 bp windows (1-based start, stop)
    pd.DataFrame(dict(chrom="chr1", start=starts, stop=[s + suites.CAGE_FULL for s in starts],
                      split=["train", "train", "test"], npy_idx=[0, 1, 0])).to_csv(
        cage / "sequences_coordinates.csv", index=False)
    targets = {s: np.random.default_rng(2).random((2, 1, 896, 50)).astype(np.float32) for s in ("train", "test")}
    np.savez(cage / "targets_subset" / "targets-train-0-1.npz",
             **{f"target-train-{i}.npy": targets["train"][i] for i in range(2)})
    np.savez(cage / "targets_subset" / "targets-test-0-0.npz", **{"target-test-0.npy": targets["test"][0]})
    return d, targets


def test_glrb_eqtl_windows_centre_the_variant(glrb_dir, chroms):
    d, _ = glrb_dir
    data = suites.load_glrb("variant_effect_causal_eqtl", d, sequence_length=64)
    t = data.table
    assert data.kind == "binary" and data.metric == "auroc" and data.variant
    assert len(t) == 18 and "1 window(s) past a chromosome end dropped" in data.notes[0]  # chr2:10 with 64 bp
    assert (t.start.to_numpy() == 1000 + 400 * np.arange(18) - 1 - 32).all() and (t.end - t.start == 64).all()
    ref, alt = data.sequence(0), data.sequence(0, "alt")
    assert ref == chroms["chr1"][t.start[0]:t.end[0]] and ref[32] == chroms["chr1"][999]
    assert alt[:32] == ref[:32] and alt[33:] == ref[33:] and alt[32] != ref[32]
    assert list(t.split[:12]) == ["train"] * 12 and data.extra.shape == (18, 1)  # tissue code
    assert data.onehot([0, 1]).shape == (2, 4, 64)


def test_glrb_bulk_rna_strand_and_labels(glrb_dir, chroms):
    d, _ = glrb_dir
    data = suites.load_glrb("bulk_rna_expression", d, sequence_length=50)
    values = pd.read_csv(d / "bulk_rna_expression" / "rna_expression_values.csv").to_numpy()
    np.testing.assert_allclose(data.labels, values)
    assert data.kind == "regression" and data.metric == "r2"
    fwd, rev = data.sequence(0), data.sequence(1)
    assert fwd == chroms["chr1"][999 - 25:999 + 25]
    assert rev == rc(chroms["chr1"][1399 - 25:1399 + 25])  # - strand: reverse complement


def test_glrb_cage_targets_cropped_to_the_window(glrb_dir, chroms):
    d, targets = glrb_dir
    data = suites.load_glrb("cage_prediction", d, sequence_length=256)
    assert list(data.table.split) == ["train", "train", "test"] and data.labels.shape == (3, 50)
    centre = 1000 + suites.CAGE_FULL // 2
    assert data.sequence(0) == chroms["chr1"][centre - 128:centre + 128]
    crop = (suites.CAGE_FULL - 256) // 2 // 128  # 447 bins each side: the central 2 bins
    np.testing.assert_allclose(data.labels[1], targets["train"][1][0][crop:-crop].mean(0), rtol=1e-6)
    np.testing.assert_allclose(data.labels[2], targets["test"][0][0][crop:-crop].mean(0), rtol=1e-6)
    full = suites.load_glrb("cage_prediction", d)  # the default window: all 896 bins
    np.testing.assert_allclose(full.labels[0], targets["train"][0][0].mean(0), rtol=1e-6)


def test_glrb_chromatin_and_regulatory_elements(glrb_dir, chroms):
    d, _ = glrb_dir
    hist = suites.load_glrb("chromatin_features_histone_marks", d, sequence_length=300)
    dnase = suites.load_glrb("chromatin_features_dna_accessibility", d, sequence_length=300)
    assert hist.labels.shape == (18, 3) and dnase.labels.shape == (18, 2) and hist.kind == "multilabel"
    assert hist.sequence(0) == chroms["chr1"][999 - 150:999 + 150]
    prom = suites.load_glrb("regulatory_element_promoter", d, sequence_length=400)
    # 1-based START..STOP -> 0-based [START-1, STOP-1), padded by (400 - 200) // 2 on each side
    assert prom.sequence(0) == chroms["chr1"][999 - 100:1199 + 100] and prom.metric == "auprc"
    assert suites.load_glrb("regulatory_element_enhancer", d, sequence_length=400).labels.tolist() == \
        prom.labels.tolist()


def test_glrb_missing_files_fail_in_one_line(tmp_path, glrb_dir):
    with pytest.raises(suites.SuiteDataError) as info:
        suites.load_glrb("cage_prediction", tmp_path)
    message = str(info.value)
    assert "cage_prediction/sequences_coordinates.csv" in message and "\n" not in message
    assert "huggingface-cli download InstaDeepAI/genomics-long-range-benchmark" in message
    (tmp_path / "regulatory_elements").mkdir()
    (tmp_path / "regulatory_elements" / "promoter_dataset.csv").write_text("CHROM,START,STOP,label,split\n")
    with pytest.raises(suites.SuiteDataError, match="no hg38 FASTA"):
        suites.load_glrb("regulatory_element_promoter", tmp_path)
    with pytest.raises(suites.SuiteDataError, match="Unknown GLRB task"):
        suites.load_glrb("chromatin_features", glrb_dir[0])


# ------------------------------------------------------------------------------- DNALongBench fixture
CONFIG = """organism human str
genome_fa {fa} str
{file_key} {tsv} str
{mask_key} {bed} str
seq_len_cutoff 400 int
tss_flank_upstream 10 int
tss_flank_downstream 10 int
region_flank_upstream 5 int
region_flank_downstream 5 int
"""


@pytest.fixture(scope="module")
def dlb_dir(tmp_path_factory, chroms):
    d = tmp_path_factory.mktemp("dnalongbench")
    rows = []
    for i in range(18):
        base = 1000 + 500 * i
        downstream = i % 2 == 0  # gene after the region on even rows
        gene_start, gene_end = (base + 300, base + 340) if downstream else (base - 300, base - 260)
        rows.append(dict(gene_chrom="chr1", gene_start=gene_start, gene_end=gene_end, region_chrom="chr1",
                         region_start=base, region_end=base + 1, gene_id=f"g{i}", gene_strand="+" if i % 4 < 2 else "-",
                         region_id=f"r{i}", target="positive" if i % 2 else "negative",
                         subset="train" if i < 12 else "test", allele1=chroms["chr1"][base],
                         allele2="A" if chroms["chr1"][base] != "A" else "G"))
    rows.append(dict(rows[0], gene_start=90_000, gene_end=90_100, region_id="far"))  # span > cutoff: skipped
    table = pd.DataFrame(rows)
    for folder, config, file_key, mask_key in (
            ("enhancer_target_gene", "CRISPRi_EPI_K562_hg19.config", "EPI_file", "enhancer_tabix_file"),
            ("eQTL", "gtex_hg38.Whole_Blood.config", "eQTL_file", "eQTL_tabix_file")):
        root = d / folder
        write_fasta(root / "genome" / "genome.fa", chroms)
        (root / "config").mkdir(parents=True)
        (root / "config" / config).write_text(CONFIG.format(fa="genome/genome.fa", file_key=file_key, tsv="records.tsv",
                                                            mask_key=mask_key, bed="elements.bed.gz"))
        cols = list(table.columns) if folder == "eQTL" else [c for c in table.columns if not c.startswith("allele")]
        table[cols].to_csv(root / "records.tsv", sep="\t", index=False)
        with gzip.open(root / "elements.bed.gz", "wt") as f:  # one element between region 0 and its gene
            f.write("chr1\t1100\t1120\n")
    return d


def test_dnalongbench_enhancer_target_gene(dlb_dir, chroms):
    data = suites.load_dnalongbench("enhancer_target_gene_prediction", dlb_dir)
    t = data.table
    assert len(t) == 18 and "skipped 1 record(s): distance" in data.notes[0]
    assert data.kind == "binary" and data.metric == "auroc" and not data.variant and data.seq_len == 400
    # row 0: region [1000-5, 1001+5), gene + strand TSS at 1300 flanked [1290, 1311): span 995..1311
    assert (t.start[0], t.end[0]) == (995, 1311) and bool(t.rc[0]) and t["mask"][0] == [(105, 125)]
    seq = chroms["chr1"][995:1311]
    seq = seq[:105] + "N" * 20 + seq[125:]
    assert data.sequence(0) == (rc(seq) + "N" * 400)[:400]  # gene downstream: reverse complemented, N-padded
    assert data.labels.tolist()[:4] == [0, 1, 0, 1] and list(t.split[-6:]) == ["test"] * 6
    # an upstream gene on the - strand: TSS = gene_end - 1
    row = t.iloc[3]  # i = 3: gene [2200, 2240) on '-': TSS 2239, flanked [2229, 2250); region [2495, 2506)
    assert (row.start, row.end, bool(row.rc)) == (2229, 2506, False) and row["mask"] == []
    assert suites.load_dnalongbench("enhancer_target_gene", dlb_dir, sequence_length=2000).seq_len == 2000


def test_dnalongbench_eqtl_ref_and_alt(dlb_dir, chroms):
    data = suites.load_dnalongbench("eqtl", dlb_dir)  # the one config there: Whole_Blood
    assert data.variant and data.task == "eqtl_prediction"
    ref, alt = data.sequence(1), data.sequence(1, "alt")  # row 1: gene upstream, no flip
    row = data.table.iloc[1]
    assert ref[row.var_offset] == chroms["chr1"][1500] and alt[row.var_offset] == row.alt
    assert sum(a != b for a, b in zip(ref, alt)) == 1
    with pytest.raises(suites.SuiteDataError, match="gtex_hg38.Thyroid.config not found"):
        suites.load_dnalongbench("eqtl", dlb_dir, cell_type="Thyroid")


def test_dnalongbench_missing_and_unsupported(tmp_path):
    with pytest.raises(suites.SuiteDataError) as info:
        suites.load_dnalongbench("enhancer_target_gene_prediction", tmp_path)
    assert "CRISPRi_EPI_K562_hg19.config not found" in str(info.value) and "\n" not in str(info.value)
    with pytest.raises(suites.SuiteDataError, match="no gtex_hg38"):
        suites.load_dnalongbench("eqtl_prediction", tmp_path)
    with pytest.raises(suites.SuiteDataError, match="not supported"):
        suites.load_dnalongbench("contact_map_prediction", tmp_path)


# ------------------------------------------------------------------------------------- the commands
@pytest.fixture(scope="module")
def caduceus(tmp_path_factory):
    folder = tmp_path_factory.mktemp("model") / "caduceus"
    write_checkpoint(folder, d_model=16, n_layer=1, rcps=True)
    return folder


def test_probe_reports_the_papers_metric(glrb_dir, dlb_dir, caduceus, tmp_path):
    d, _ = glrb_dir
    quiet = lambda m: None  # noqa: E731
    row = suites.run_suite(suites.load_glrb("regulatory_element_promoter", d, sequence_length=256), str(caduceus),
                           tmp_path, pool_len=64, log=quiet)
    assert (row["metric"], row["model"], row["n_train"], row["n_test"]) == ("auprc", "caduceus", 12, 6)
    assert 0 <= row["value"] <= 1 and "auroc=" in row["other_metrics"]
    row = suites.run_suite(suites.load_glrb("bulk_rna_expression", d, sequence_length=64), f"caduceus={caduceus}",
                           tmp_path, log=quiet)
    assert row["metric"] == "r2" and "pearson=" in row["other_metrics"] and "targets=3" in row["other_metrics"]
    row = suites.run_suite(suites.load_glrb("chromatin_features_dna_accessibility", d, sequence_length=64),
                           str(caduceus), tmp_path, log=quiet)
    assert row["metric"] == "auroc_micro" and "labels_scored=2" in row["other_metrics"]
    assert "auroc_macro=" in row["other_metrics"]
    row = suites.run_suite(suites.load_dnalongbench("eqtl", dlb_dir), str(caduceus), tmp_path,
                           max_train=10, log=quiet)
    assert row["suite"] == "dnalongbench" and row["metric"] == "auroc" and row["n_train"] == 10
    written = pd.read_csv(tmp_path / "suites.csv")
    assert list(written.columns) == suites.SUITE_COLUMNS and len(written) == 4
    with pytest.raises(ValueError, match="loaded a caduceus model"):
        suites.run_suite(suites.load_glrb("regulatory_element_promoter", d, sequence_length=64),
                         f"hyenadna={caduceus}", log=quiet)


def test_cli(glrb_dir, dlb_dir, caduceus, tmp_path, capsys):
    d, _ = glrb_dir
    assert run_main(["glrb", "--task", "variant_effect_causal_eqtl", "--data", str(d), "--model", str(caduceus),
                     "--sequence-length", "64", "--out", str(tmp_path)]) == 0
    assert "variant_effect_causal_eqtl caduceus: auroc" in capsys.readouterr().out
    assert run_main(["dnalongbench", "--task", "enhancer_target_gene", "--data", str(dlb_dir), "--model",
                     str(caduceus), "--out", str(tmp_path)]) == 0
    assert len(pd.read_csv(tmp_path / "suites.csv")) == 2
    capsys.readouterr()
    assert run_main(["glrb", "--task", "bulk_rna_expression", "--data", str(tmp_path), "--model", "x"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "bulk_rna_expression/gene_coordinates.csv" in err and len(err.splitlines()) == 1


def test_glrb_metrics_follow_the_benchmarks_fine_tuning_scripts():
    """Per-task metrics (finetuning_glrb/ of the Caduceus repository) and their definitions."""
    from sklearn.metrics import auc, precision_recall_curve

    metrics = {t: spec["metric"] for t, spec in suites.GLRB_TASKS.items()}
    assert metrics == {"variant_effect_causal_eqtl": "auroc", "bulk_rna_expression": "r2",
                       "cage_prediction": "r2_log1p", "chromatin_features_histone_marks": "auroc_micro",
                       "chromatin_features_dna_accessibility": "auroc_micro",
                       "regulatory_element_promoter": "auprc", "regulatory_element_enhancer": "auprc"}
    y = np.array([0, 0, 1, 1, 0, 1, 0, 1])
    s = np.array([0.1, 0.4, 0.35, 0.8, 0.2, 0.9, 0.7, 0.3])
    precision, recall, _ = precision_recall_curve(y, s)
    assert suites.auprc(y, s) == pytest.approx(auc(recall, precision))
    rng = np.random.default_rng(0)
    X = rng.standard_normal((80, 3))
    # Multilabel: micro AUROC pools every (example, label) pair; label 1 is easy, label 0 noise.
    Y = np.stack([rng.integers(0, 2, 80), (X[:, 0] > 0).astype(int)], axis=1)
    m = suites.score_probe("multilabel", X[:40], Y[:40], X[40:], Y[40:])
    assert m["labels_scored"] == 2 and m["auroc_micro"] != pytest.approx(m["auroc_macro"])
    assert 0.5 < m["auroc_macro"] < 1
    # Regression: r2_log1p is R^2 after log(1 + x) of prediction (clipped at 0) and target.
    t = np.exp(X[:, :1] + 0.05 * rng.standard_normal((80, 1)))
    r = suites.score_probe("regression", X[:40], t[:40], X[40:], t[40:])
    assert r["targets"] == 1 and -1 < r["r2_log1p"] <= 1 and r["r2_log1p"] != pytest.approx(r["r2"])
    b = suites.score_probe("binary", X[:40], Y[:40, 1], X[40:], Y[40:, 1])
    assert b["auroc"] > 0.9 and 0 < b["auprc"] <= 1 and "average_precision" in b
