"""The FASTA-backed training tables (data=fasta_bed, data=bigwig) read their windows lazily, through
the genome window dataset, and give gReLU's training exactly what an in-memory table of the same
windows gives: the same one-hot inputs and labels, item by item, and the same dataset attributes
(what a checkpoint records).

Inputs are real: CTCF sites and background windows of the bundled task table that lie on the bundled
demo genome (hg19 chr20:40-44 Mb), with two intervals added next to the contig's ends so that their
windows are padded with N. The in-memory reference is built here from the demo genome decompressed
with gzip (not through pyfaidx) and served by the sequence-table reader, which keeps gReLU's own
LabeledSeqDataset.
"""

import gzip
from functools import lru_cache

import numpy as np
import pandas as pd
import pytest
import torch

from grelu_caduceus.data import bundled
from grelu_caduceus.data.genome import FastaGenome
from grelu_caduceus.data.labelled import GenomeLabeledSeqDataset
from grelu_caduceus.data.tables import DataConfigError, fasta_bed_table, labelled_datasets, sequence_table
from grelu_caduceus.errors import InputWarning

SEQ_LEN = 600


def decode(x: torch.Tensor) -> str:
    """(4, L) one-hot -> string, all-zero columns as N."""
    return "".join(np.array(list("ACGTN"))[np.where(x.sum(0).numpy() == 0, 4, x.argmax(0).numpy())])


@lru_cache(maxsize=1)
def demo_genome() -> str:
    with gzip.open(bundled.demo_genome_fasta(), "rt") as f:
        return "".join(line.strip() for line in f if not line.startswith(">")).upper()


def window(start: int, length: int = SEQ_LEN) -> str:
    """genome[start, start + length), N outside the contig."""
    g = demo_genome()
    return "N" * max(0, -start) + g[max(0, start):min(len(g), start + length)] + "N" * max(0, start + length - len(g))


@pytest.fixture(scope="module")
def intervals() -> pd.DataFrame:
    table = bundled.read_task_table("ctcf")
    offset = bundled.demo_genome_offset()
    inside = table[(table.start >= offset) & (table.end <= offset + 4_000_000) & table.split.isin(["train", "val"])]
    rows = pd.DataFrame({"chrom": bundled.demo_genome_contig(), "start": inside.start - offset,
                         "end": inside.end - offset, "label": inside.label, "split": inside.split})
    edges = pd.DataFrame({"chrom": bundled.demo_genome_contig(), "start": [20, 3_999_700], "end": [220, 3_999_900],
                          "label": [1, 0], "split": ["train", "val"]})
    return pd.concat([rows, edges]).reset_index(drop=True)


def lazy_datasets(tmp_path, intervals, **augment):
    path = tmp_path / "peaks.tsv"
    intervals.to_csv(path, sep="\t", index=False)
    with pytest.warns(InputWarning, match=f"2 of {len(intervals)} windows run past a chromosome end"):
        table = fasta_bed_table(bundled.demo_genome_fasta(), path, ["label"], "binary", seq_len=SEQ_LEN)
    return labelled_datasets(table, **augment)


def in_memory_datasets(tmp_path, intervals, **augment):
    starts = (intervals.start + intervals.end) // 2 - SEQ_LEN // 2
    path = tmp_path / "seqs.tsv"
    pd.DataFrame({"seq": [window(s) for s in starts], "label": intervals.label,
                  "split": intervals.split}).to_csv(path, sep="\t", index=False)
    return labelled_datasets(sequence_table(path, "seq", ["label"], "split", "binary"), **augment)


def dataset_attrs(ds) -> dict:
    from grelu.lightning import LightningModel

    return dict(LightningModel._get_dataset_attrs(None, ds))


def test_lazy_items_equal_the_in_memory_table(tmp_path, intervals):
    lazy, eager = lazy_datasets(tmp_path, intervals), in_memory_datasets(tmp_path, intervals)
    sizes = [(intervals.split == s).sum() for s in ("train", "val")]
    assert [len(ds) for ds in lazy] == [len(ds) for ds in eager] == sizes
    for lazy_ds, eager_ds in zip(lazy, eager):
        assert isinstance(lazy_ds, GenomeLabeledSeqDataset) and not isinstance(lazy_ds.seqs, np.ndarray)
        assert dataset_attrs(lazy_ds) == dataset_attrs(eager_ds)
        pd.testing.assert_frame_equal(lazy_ds.tasks, eager_ds.tasks)
        np.testing.assert_array_equal(lazy_ds.get_labels(), eager_ds.get_labels())
        for i in range(len(lazy_ds)):
            (x, y), (x_ref, y_ref) = lazy_ds[i], eager_ds[i]
            assert x.dtype == x_ref.dtype and x.shape == (4, SEQ_LEN)
            assert torch.equal(x, x_ref) and torch.equal(y, y_ref), i
    # the padded windows really are padded: the first train item past the contig's start
    first_edge = lazy[0][int(np.flatnonzero(intervals[intervals.split == "train"].start.to_numpy() == 20)[0])][0]
    assert decode(first_edge) == "N" * 180 + demo_genome()[:420]


def test_reverse_complement_augmentation_matches_the_in_memory_table(tmp_path, intervals):
    lazy, _ = lazy_datasets(tmp_path, intervals, rc_aug=True)
    eager, _ = in_memory_datasets(tmp_path, intervals)
    flipped = []
    for i in range(len(lazy)):
        (x, y), (x_ref, y_ref) = lazy[i], eager[i]
        assert torch.equal(y, y_ref)
        assert torch.equal(x, x_ref) or torch.equal(x, x_ref.flip(0, 1)), i
        flipped.append(not torch.equal(x, x_ref))
    assert 0 < sum(flipped) < len(flipped)  # both strands are drawn


def test_shifts_read_the_genome_beyond_the_window(tmp_path, intervals):
    """gReLU's in-memory table pads its sequences with N for a shift; the lazy one reads the genome's
    flanking bases, as gReLU's datasets of intervals do."""
    max_shift = 8
    lazy, val = lazy_datasets(tmp_path, intervals, max_shift=max_shift)
    assert (lazy.max_seq_shift, val.max_seq_shift, lazy.padded_seq_len) == (max_shift, 0, SEQ_LEN + 2 * max_shift)
    train_rows = intervals[intervals.split == "train"]
    starts = ((train_rows.start + train_rows.end) // 2 - SEQ_LEN // 2).to_numpy()
    shifts = []
    for i, start in enumerate(starts):
        seq = decode(lazy[i][0])
        found = [s for s in range(-max_shift, max_shift + 1) if window(int(start) + s) == seq]
        assert found, i
        shifts.append(found[0])
    assert any(s != 0 for s in shifts)  # N padding would not match a shifted genome window


def test_windows_are_read_when_asked_for(tmp_path, monkeypatch):
    """Construction scans each stretch of the FASTA once (overlapping windows are not read twice);
    an item reads its own window; DataLoader workers give the same items as the main process."""
    rng = np.random.default_rng(0)
    chrom = "".join(rng.choice(list("ACGT"), 4000))
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "\n".join(chrom[i:i + 60] for i in range(0, 4000, 60)) + "\n")
    starts = np.arange(100, 3700, 12)
    path = tmp_path / "peaks.tsv"
    index = np.arange(len(starts))
    pd.DataFrame({"chrom": "chr1", "start": starts, "end": starts + 100, "label": index % 2,
                  "split": np.where(index % 5 == 0, "val", "train")}).to_csv(path, sep="\t", index=False)
    calls = []
    fetch = FastaGenome.fetch
    monkeypatch.setattr(FastaGenome, "fetch", lambda self, *args: calls.append(args) or fetch(self, *args))
    train, val = labelled_datasets(fasta_bed_table(fasta, path, ["label"], "binary", seq_len=200))
    assert len(train) + len(val) == len(starts) == 300
    assert len(calls) == 1  # one chunk covers the one stretch all 300 windows lie in
    x, y = train[1]
    assert len(calls) == 2 and decode(x) == chrom[74:274] and y.item() == 0  # row 3: 124-224, centred to 74-274
    monkeypatch.undo()
    serial = torch.stack([train[i][0] for i in range(len(train))])
    loader = torch.utils.data.DataLoader(train, batch_size=32, num_workers=2)
    assert torch.equal(torch.cat([batch[0] for batch in loader]), serial)


def test_a_foreign_character_in_a_window_is_an_error_naming_its_row(tmp_path):
    rng = np.random.default_rng(1)
    chrom = list("".join(rng.choice(list("ACGT"), 3000)))
    chrom[1500] = "-"
    fasta = tmp_path / "g.fa"
    fasta.write_text(">chr1\n" + "".join(chrom) + "\n")
    path = tmp_path / "peaks.tsv"
    frame = pd.DataFrame({"chrom": "chr1", "start": [100, 1450, 2000], "end": [200, 1550, 2100], "label": [1, 0, 1],
                          "split": ["train", "train", "val"]})
    frame.to_csv(path, sep="\t", index=False)
    with pytest.raises(DataConfigError, match=r"row 2: chr1:1450-1550 holds 1 character\(s\) that are not DNA "
                                              r"letters \('-'\)"):
        fasta_bed_table(fasta, path, ["label"], "binary")
    frame.drop(index=1).to_csv(path, sep="\t", index=False)  # no window holds it: nothing to refuse
    train, val = labelled_datasets(fasta_bed_table(fasta, path, ["label"], "binary"))
    assert decode(train[0][0]) == "".join(chrom[100:200])
