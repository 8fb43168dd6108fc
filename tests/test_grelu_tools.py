"""gReLU's tools on a small trained CaduceusModel: attributions, ISM, TF-MoDISco, variant effects,
marginalization, design, gReLU's datasets, RC behaviour of the outputs, head changes, checkpoints.

One Caduceus-PS model (d_model 32, 2 layers) is trained once per module, with gReLU's own
``train_on_dataset``, to find planted GATA sites (AGATAA, either strand) in 200 bp sequences, and
is read through a max pool: "does this sequence have a GATA site"; the tests then check each tool's output against what that model
must do (e.g. ISM effects largest at the planted site).
"""

import copy
import os
import warnings

import numpy as np
import pandas as pd
import pytest
import pytorch_lightning as pl
import torch

import grelu_caduceus
import grelu.model.models  # noqa: F401  (runs our registration)
from grelu.data.dataset import (AnnDataSeqDataset, BigWigSeqDataset, DFSeqDataset, LabeledSeqDataset, SeqDataset,
                                VariantDataset)
from grelu.lightning import LightningModel
from grelu.sequence.format import strings_to_one_hot

from grelu_caduceus import grelu_compat
from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM
from grelu_caduceus.training import train_on_dataset

warnings.filterwarnings("ignore", ".*does not have many workers.*")
warnings.filterwarnings("ignore", ".*number of training batches.*")

SEQ_LEN = 200
SITE, SITE_RC = "AGATAA", "TTATCT"  # a GATA site on either strand
CORE, CORE_RC = "GATA", "TATC"
QUIET = dict(enable_progress_bar=False, num_sanity_val_steps=0)
# fixture training: one epoch of 60 steps of 8 sequences (about 30 CPU seconds)
TRAIN_SIZE, BATCH_SIZE, EPOCHS, LR = 480, 8, 1, 1e-2
BASES = np.array(list("ACGT"))


def rc_string(seq):
    return seq[::-1].translate(str.maketrans("ACGT", "TGCA"))


def has_core(seq):
    return CORE in seq or CORE_RC in seq


def gata_free(rng, length):
    """A random sequence without GATA on either strand: bases drawn uniformly, redrawn when they
    would complete GATA or TATC."""
    seq = []
    while len(seq) < length:
        seq.append(BASES[rng.integers(4)])
        if "".join(seq[-4:]) in (CORE, CORE_RC):
            seq.pop()
    return "".join(seq)


def plant(seq, site, pos):
    return seq[:pos] + site + seq[pos + len(site):]


def with_sites(rng, seq, n_sites=1):
    """Plant n_sites GATA sites, one in each of n_sites equal segments, random strand."""
    seg = len(seq) // n_sites
    for i in range(n_sites):
        seq = plant(seq, SITE if rng.random() < 0.5 else SITE_RC, int(rng.integers(i * seg + 2, (i + 1) * seg - 8)))
    return seq


def gata_task(n, rng):
    """n sequences alternating positive (GATA sites) / negative (no GATA), labels (n, 1, 1)."""
    seqs = [gata_free(rng, SEQ_LEN) for _ in range(n)]
    seqs = [with_sites(rng, s) if i % 2 == 0 else s for i, s in enumerate(seqs)]
    labels = np.array([[[float(i % 2 == 0)]] for i in range(n)], dtype=np.float32)
    return seqs, labels


def without_dinucleotide(rng, length, dinucleotide="AT"):
    """A random sequence without ``dinucleotide``. Dinucleotide shuffles keep dinucleotide counts,
    so without AT no shuffle of it can contain GATA or TATC."""
    seq = []
    while len(seq) < length:
        seq.append(BASES[rng.integers(4)])
        if "".join(seq[-2:]) == dinucleotide:
            seq.pop()
    return "".join(seq)


def one_site_sequence(rng, pos=97, site=SITE):
    """A GATA-free background with one site at ``pos``."""
    return plant(gata_free(rng, SEQ_LEN), site, pos)


def predict(model, seqs):
    """Model predictions (N, T, L) for a list of strings, without gReLU's Trainer."""
    model.eval()
    with torch.no_grad():
        return model(strings_to_one_hot(seqs)).numpy()


def write_fasta(path, chroms: dict):
    with open(path, "w") as f:
        for name, seq in chroms.items():
            f.write(f">{name}\n" + "\n".join(seq[i:i + 60] for i in range(0, len(seq), 60)) + "\n")
    with open(str(path) + ".sizes", "w") as f:
        f.writelines(f"{name}\t{len(seq)}\n" for name, seq in chroms.items())
    return str(path)


# --- the trained model --------------------------------------------------------------------------


def site_track_task(n, rng):
    """n sequences alternating with one GATA site / without GATA; labels (n, 1, L): 1 on the site."""
    seqs, labels = [], np.zeros((n, 1, SEQ_LEN), np.float32)
    for i in range(n):
        seq = gata_free(rng, SEQ_LEN)
        if i % 2 == 0:
            pos = int(rng.integers(2, SEQ_LEN - 8))
            seq = plant(seq, SITE if rng.random() < 0.5 else SITE_RC, pos)
            labels[i, 0, pos:pos + len(SITE)] = 1
        seqs.append(seq)
    return seqs, labels


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """(model, trainer): a Caduceus-PS GATA-site detector trained with gReLU's own train_on_dataset.

    It is trained per position (label 1 on the planted site), which gives every position a gradient
    and learns in tens of steps where a pooled presence label needs hundreds, and is then read
    through a max pool: one prediction per sequence, "is there a GATA site".
    """
    from grelu.model.layers import AdaptivePool

    pl.seed_everything(0)
    rng = np.random.default_rng(0)
    train_seqs, train_labels = site_track_task(TRAIN_SIZE, rng)
    val_seqs, val_labels = site_track_task(48, rng)
    model = LightningModel(
        model_params={"model_type": "CaduceusModel", "n_tasks": 1, "d_model": 32, "n_layer": 2, "rcps": True,
                      "final_pool_func": None},
        train_params={"task": "binary", "loss": "bce", "lr": LR, "batch_size": BATCH_SIZE, "max_epochs": EPOCHS,
                      "pos_weight": [10.0], "devices": "cpu", "num_workers": 0, "logger": None,
                      "save_dir": str(tmp_path_factory.mktemp("trained"))},
    )
    trainer = model.train_on_dataset(LabeledSeqDataset(train_seqs, labels=train_labels, tasks=["gata"]),
                                     LabeledSeqDataset(val_seqs, labels=val_labels, tasks=["gata"]))
    # read the per-position detector through a max pool (model_params too, so checkpoints agree)
    model.model.head.pool = AdaptivePool("max")
    model.model.head.pool_func = model.model_params["final_pool_func"] = "max"
    return model.eval(), trainer


@pytest.fixture(scope="module")
def genome(tmp_path_factory):
    """A 2 kb GATA-free chromosome with one site at 1-based 501..506 (its G at 502); FASTA path."""
    rng = np.random.default_rng(1)
    chrom = plant(gata_free(rng, 2000), SITE, 500)
    return write_fasta(tmp_path_factory.mktemp("genome") / "g.fa", {"chr1": chrom}), chrom


def test_model_learned_the_motif(trained):
    model, _ = trained
    assert model.performance["val"]["val_auroc"] > 0.9  # per position, on the validation sequences
    rng = np.random.default_rng(5)
    with_site = [one_site_sequence(rng, pos=int(p)) for p in (20, 97, 170)]
    without = [gata_free(rng, SEQ_LEN) for _ in range(3)]
    assert predict(model, with_site).min() > predict(model, without).max()


# --- attributions -----------------------------------------------------------------------------------


@pytest.mark.parametrize("method", ["saliency", "inputxgradient", "integratedgradients", "deepshap"])
def test_attributions_are_rc_equivariant(trained, method):
    """For PS, attributions of RC(x) are RC(attributions of x); finite, non-zero, (N, 4, L)."""
    from grelu.interpret.score import get_attributions
    from tangermeme.ersatz import dinucleotide_shuffle

    model, _ = trained
    x = strings_to_one_hot([one_site_sequence(np.random.default_rng(2))])  # (1, 4, L)
    x_rc = x.flip(1, 2)  # A,C,G,T order: reversing both axes is the reverse complement
    kwargs = {}
    if method == "deepshap":
        # the same (reverse-complemented) references for both strands; default shuffles are random
        refs = dinucleotide_shuffle(x, n=4, random_state=0)  # (1, 4 refs, 4, L)
        kwargs = dict(references=refs), dict(references=refs.flip(2, 3))
    else:
        kwargs = {}, {}
    attr = get_attributions(model, x, method=method, device="cpu", **kwargs[0])
    attr_rc = get_attributions(model, x_rc, method=method, device="cpu", **kwargs[1])
    assert attr.shape == attr_rc.shape == (1, 4, SEQ_LEN)
    assert np.isfinite(attr).all() and np.abs(attr).max() > 0
    scale = np.abs(attr).max()
    np.testing.assert_allclose(attr_rc, attr[:, ::-1, ::-1], atol=1e-4 * scale)


def test_inputxgradient_points_at_the_site(trained):
    from grelu.interpret.score import get_attributions

    model, _ = trained
    pos = 97
    x = strings_to_one_hot([one_site_sequence(np.random.default_rng(3), pos=pos)])
    per_position = np.abs(get_attributions(model, x, method="inputxgradient")).sum(1)[0]  # (L,)
    site = per_position[pos:pos + len(SITE)].mean()
    elsewhere = np.delete(per_position, range(pos - 2, pos + len(SITE) + 2)).mean()
    assert site > 3 * elsewhere


# --- ISM and TF-MoDISco --------------------------------------------------------------------------------


def test_ism_effect_is_largest_at_the_planted_site(trained):
    from grelu.interpret.score import ISM_predict

    model, _ = trained
    pos, start, end = 97, 67, 133
    seq = one_site_sequence(np.random.default_rng(4), pos=pos)
    ism = ISM_predict([seq], model, start_pos=start, end_pos=end, compare_func="subtract", devices="cpu",
                      num_workers=0, batch_size=128, return_df=False)  # (1, positions, 4 bases, 1, 1)
    assert ism.shape == (1, end - start, 4, 1, 1)
    # largest decrease at each position (an increase can come from creating a second site)
    decrease = -ism[0, :, :, 0, 0].min(1)
    core = np.arange(pos + 1, pos + 5) - start  # the GATA of AGATAA
    far = [i for i in range(end - start) if abs(i + start - (pos + 3)) > 8]
    assert decrease[core].min() > 0
    assert decrease[core].min() > 3 * decrease[far].max()


def test_run_modisco_writes_a_report(trained, tmp_path):
    """TF-MoDISco (gReLU's default DeepLIFT/SHAP attributions) on 16 one-site sequences finds the site."""
    import h5py
    from grelu.interpret.modisco import run_modisco

    model, _ = trained
    rng = np.random.default_rng(6)
    seqs = [one_site_sequence(rng, pos=int(rng.integers(10, 180)), site=SITE if rng.random() < 0.5 else SITE_RC)
            for _ in range(16)]
    out = tmp_path / "modisco"
    run_modisco(model, seqs, method="deepshap", n_shuffles=4, seed=0, out_dir=str(out), devices="cpu",
                num_workers=0, sliding_window_size=8, flank_size=4, min_metacluster_size=5, n_leiden_runs=2,
                final_min_cluster_size=5, min_num_to_trim_to=5, trim_to_window_size=10, initial_flank_to_add=2,
                target_seqlet_fdr=0.3)
    report = out / "modisco_report.h5"
    assert report.exists() and (out / "motifs.html").exists()
    with h5py.File(report) as f:
        patterns = [f[g][p] for g in ("pos_patterns", "neg_patterns") if g in f for p in f[g]]
        assert patterns
        # the seqlets of the largest pattern are aligned on the site: its consensus holds GATA
        largest = max(patterns, key=lambda p: p["seqlets"]["n_seqlets"][()])
        consensus = "".join(BASES[np.array(largest["sequence"]).argmax(1)])
        assert has_core(consensus), consensus
    # gradient-based scores of this saturated max-pooled model have mixed signs at the site, so
    # the pattern may come out as "negative"; its position, not its sign, is what is checked


# --- variants ----------------------------------------------------------------------------------------------


def variants_for(chrom):
    """One variant destroying the planted site's G (pos 502) and one in GATA-free background."""
    far = 1500
    alt = next(b for b in "ACGT" if b != chrom[far - 1]
               and not has_core(chrom[far - 110:far - 1] + b + chrom[far:far + 110]))
    return pd.DataFrame({"chrom": ["chr1", "chr1"], "pos": [502, far], "ref": ["G", chrom[far - 1]],
                         "alt": ["C", alt]})


def test_predict_variant_effects_with_reference_check(trained, genome):
    from grelu.variant import predict_variant_effects

    model, _ = trained
    fasta, chrom = genome
    variants = variants_for(chrom)
    kwargs = dict(devices="cpu", seq_len=SEQ_LEN, num_workers=0, compare_func="subtract")
    with pytest.raises(TypeError, match="not callable"):  # the gReLU 1.1.0 bug the wrapper avoids
        predict_variant_effects(variants, model, genome=fasta, check_reference=True, return_ad=False, **kwargs)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ad = grelu_compat.predict_variant_effects(variants, model, genome=fasta, check_reference=True, **kwargs)
    assert not [w for w in caught if "ref allele" in str(w.message)]  # the reference alleles match
    effects = ad.X[:, 0]
    assert list(ad.var.index) == ["gata"] and ad.obs.shape[0] == 2
    assert effects[0] < -0.1 and abs(effects[0]) > 5 * abs(effects[1])
    assert list(variants.columns) == ["chrom", "pos", "ref", "alt"]  # the input is not modified

    wrong = variants.assign(ref=["A", variants.ref[1]])
    assert grelu_compat.reference_mismatches(wrong, fasta) == [0]
    with pytest.warns(UserWarning, match=r"1 variant\(s\) have a ref allele .* index \[0\]"):
        grelu_compat.predict_variant_effects(wrong, model, genome=fasta, check_reference=True, return_ad=False,
                                             **kwargs)
    with pytest.raises(ValueError, match="differs from the genome"):
        grelu_compat.predict_variant_effects(wrong, model, genome=fasta, check_reference="raise", **kwargs)


def test_marginalize_variants(trained, genome):
    from grelu.variant import marginalize_variants, predict_variant_effects

    model, _ = trained
    fasta, chrom = genome
    variants = variants_for(chrom)
    result = marginalize_variants(model, variants, genome=fasta, seq_len=SEQ_LEN, devices="cpu", num_workers=0,
                                  n_shuffles=6, seed=0, compare_func="subtract")
    direct = predict_variant_effects(variants, model, genome=fasta, seq_len=SEQ_LEN, devices="cpu", num_workers=0,
                                     compare_func="subtract", return_ad=False)
    np.testing.assert_allclose(result["effect_size"], direct[:, 0, 0], rtol=1e-5, atol=1e-6)
    assert all(np.isfinite(result[k]).all() for k in ("mean", "sd", "pvalue"))
    assert all(0 <= p <= 1 for p in result["pvalue"])
    # destroying the site in its own context is far outside the effects of G>C in shuffled backgrounds
    assert result["pvalue"][0] < 0.01 and result["pvalue"][0] < result["pvalue"][1]


# --- simulation and design ------------------------------------------------------------------------------------


def test_marginalize_patterns_inserting_a_site_raises_predictions(trained):
    from grelu.interpret.simulate import marginalize_patterns

    model, _ = trained
    rng = np.random.default_rng(7)
    backgrounds = [without_dinucleotide(rng, SEQ_LEN, "AT") for _ in range(4)]  # shuffles stay GATA-free
    effects = marginalize_patterns(model, [SITE, "CCGCGG"], backgrounds, devices="cpu", num_workers=0,
                                   n_shuffles=2, seed=0, compare_func="subtract")
    assert effects.shape == (4, 2, 2, 1, 1)  # backgrounds, shuffles, patterns, tasks, length
    site_effect, control_effect = effects[:, :, 0].ravel(), effects[:, :, 1].ravel()
    assert site_effect.min() > 0.3 and site_effect.min() > 10 * np.abs(control_effect).max()


def test_marginalize_patterns_without_shuffling(trained):
    """gReLU's default n_shuffles=0 crashes; the wrapper inserts into the given sequences."""
    from grelu.interpret.simulate import marginalize_patterns
    from grelu.sequence.mutate import mutate

    model, _ = trained
    backgrounds = [gata_free(np.random.default_rng(13), SEQ_LEN) for _ in range(2)]
    with pytest.raises(TypeError, match="concat"):
        marginalize_patterns(model, [SITE], backgrounds, num_workers=0)
    before, after = grelu_compat.marginalize_patterns(model, [SITE, "CCGCGG"], backgrounds, num_workers=0)
    assert before.shape == (2, 1, 1, 1, 1) and after.shape == (2, 1, 2, 1, 1)
    np.testing.assert_allclose(before[:, 0, 0], predict(model, backgrounds), atol=1e-5)
    inserted = [mutate(bg, SITE, input_type="strings") for bg in backgrounds]
    assert all(SITE in s[96:104] for s in inserted)  # centred
    np.testing.assert_allclose(after[:, 0, 0], predict(model, inserted), atol=1e-5)
    effect = grelu_compat.marginalize_patterns(model, [SITE], backgrounds, num_workers=0, compare_func="subtract")
    np.testing.assert_allclose(effect, after[:, :, :1] - before, atol=1e-6)


def test_evolve_does_not_lower_the_objective(trained):
    import grelu.design

    model, _ = trained
    start = gata_free(np.random.default_rng(8), SEQ_LEN)
    out = grelu.design.evolve([start], model, max_iter=2, positions=list(range(90, 110)), devices="cpu",
                              num_workers=0, batch_size=128, return_preds=False, verbose=False)
    best = out[out.best_in_iter].groupby("iter").total_score.max()  # best score of each iteration
    assert best.index.tolist()[:2] == [0, 1]
    assert best[1] > best[0]  # the first round of single-base changes found a better sequence
    winner = out.loc[out.total_score.idxmax()]
    assert winner.total_score >= best[0]
    assert 1 <= sum(a != b for a, b in zip(winner.seq, start)) <= winner["iter"]  # one base changed per iteration
    np.testing.assert_allclose(predict(model, [winner.seq])[0, 0, 0], winner.total_score, rtol=1e-4)


# --- gReLU datasets ------------------------------------------------------------------------------------------------


def tiny_model(tmp_path, task="binary", n_tasks=1, **model_params):
    torch.manual_seed(0)
    loss = {"binary": "bce", "regression": "mse"}[task]
    return LightningModel(
        model_params={"model_type": "CaduceusModel", "n_tasks": n_tasks, "d_model": 8, "n_layer": 1, **model_params},
        train_params={"task": task, "loss": loss, "lr": 1e-2, "batch_size": 4, "num_workers": 0, "devices": "cpu",
                      "logger": None, "save_dir": str(tmp_path), "checkpoint": False})


def test_seq_datasets_predict_like_the_model(trained, genome, tmp_path):
    """DFSeqDataset, AnnDataSeqDataset, LabeledSeqDataset (rc augmentation) through predict_on_dataset."""
    import anndata

    model, _ = trained
    fasta, chrom = genome
    rng = np.random.default_rng(9)
    seqs = [one_site_sequence(rng), gata_free(rng, SEQ_LEN), gata_free(rng, SEQ_LEN)]
    expected = predict(model, seqs)

    df = DFSeqDataset(pd.DataFrame({"seq": seqs, "gata": [1.0, 0.0, 0.0]}))
    np.testing.assert_allclose(grelu_compat.predict_on_dataset(model, df, num_workers=0), expected, atol=1e-5)
    assert df.predict is False and df[0][1].shape == (1, 1)  # still yields (sequence, label)

    # PS predictions are RC-invariant, so averaging over the RC augmentation changes nothing
    rc_ds = LabeledSeqDataset(seqs, labels=np.zeros((3, 1, 1), np.float32), tasks=["gata"], rc=True)
    assert rc_ds.n_augmented == 2
    np.testing.assert_allclose(model.predict_on_dataset(rc_ds, num_workers=0), expected, atol=1e-5)

    intervals = pd.DataFrame({"chrom": "chr1", "start": [400, 1000, 1500], "end": [600, 1200, 1700]})
    adata = anndata.AnnData(X=np.array([[1.0, 0.0, 0.0]], np.float32), obs=pd.DataFrame(index=["gata"]),
                            var=intervals.set_axis(["r0", "r1", "r2"]))
    ad_ds = AnnDataSeqDataset(adata, genome=fasta)
    windows = [chrom[s:e] for s, e in zip(intervals.start, intervals.end)]
    np.testing.assert_allclose(model.predict_on_dataset(ad_ds, num_workers=0), predict(model, windows), atol=1e-5)
    assert ad_ds.tasks.index.tolist() == ["gata"] and ad_ds.labels.shape == (3, 1, 1)


def test_variant_dataset_puts_alleles_at_pos(trained, genome):
    model, _ = trained
    fasta, chrom = genome
    variants = variants_for(chrom)
    preds = model.predict_on_dataset(VariantDataset(variants, seq_len=SEQ_LEN, genome=fasta), num_workers=0)
    assert preds.shape == (2, 2, 1, 1)  # variants, (ref, alt), tasks, length
    for i, row in variants.iterrows():
        start = row.pos - SEQ_LEN // 2  # gReLU: the allele is at index L/2 - 1 of the window, pos 1-based
        window = chrom[start:start + SEQ_LEN]
        ref_seq = window[:SEQ_LEN // 2 - 1] + row.ref + window[SEQ_LEN // 2:]
        alt_seq = window[:SEQ_LEN // 2 - 1] + row.alt + window[SEQ_LEN // 2:]
        assert ref_seq == window  # the reference allele is the genome's
        np.testing.assert_allclose(preds[i, :, 0, 0], predict(model, [ref_seq, alt_seq])[:, 0, 0], atol=1e-5)


def test_bigwig_and_dataframe_datasets_train(genome, tmp_path):
    import pyBigWig

    fasta, chrom = genome
    bw_path = str(tmp_path / "signal.bw")
    bw = pyBigWig.open(bw_path, "w")
    bw.addHeader([("chr1", len(chrom))])
    # signal 2.0 on the planted site (500..506), 0.5 on 1000..1100, 0 elsewhere
    bw.addEntries(["chr1"] * 5, [0, 500, 506, 1000, 1100], ends=[500, 506, 1000, 1100, len(chrom)],
                  values=[0.0, 2.0, 0.0, 0.5, 0.0])
    bw.close()
    intervals = pd.DataFrame({"chrom": "chr1", "start": [400, 950, 1500, 300], "end": [600, 1150, 1700, 500]})
    bw_ds = BigWigSeqDataset(intervals, [bw_path], genome=fasta)
    assert bw_ds.tasks.index.tolist() == ["signal"]
    sums = [float(bw_ds[i][1].sum()) for i in range(4)]
    np.testing.assert_allclose(sums, [12.0, 50.0, 0.0, 0.0])
    x0 = bw_ds[0][0]
    assert torch.equal(x0, strings_to_one_hot(chrom[400:600]))

    model = tiny_model(tmp_path, task="regression")
    trainer = train_on_dataset(model, bw_ds, bw_ds, max_steps=2, max_epochs=2, **QUIET)
    assert trainer.global_step == 2 and np.isfinite(model.performance["val"]["val_mse"]).all()

    df_ds = DFSeqDataset(pd.DataFrame({"seq": [chrom[i:i + SEQ_LEN] for i in range(0, 800, SEQ_LEN)],
                                       "site": [0.0, 0.0, 1.0, 0.0]}))
    model = tiny_model(tmp_path)
    trainer = train_on_dataset(model, df_ds, df_ds, max_steps=1, **QUIET)
    assert trainer.global_step == 1 and model.data_params["tasks"]["name"] == ["site"]


# --- outputs under reverse complement ----------------------------------------------------------------------------


def rc_pair(n=3, length=SEQ_LEN, seed=0):
    x = torch.nn.functional.one_hot(torch.randint(0, 4, (n, length), generator=torch.Generator().manual_seed(seed)),
                                    4).float().transpose(1, 2)
    return x, x.flip(1, 2)


def relative(a, b):
    return float((a - b).norm() / b.norm())


@pytest.mark.parametrize("crop_len,bin_size", [(0, 1), (5, 10)])
def test_per_position_and_binned_outputs_flip_under_rc(crop_len, bin_size):
    from grelu_caduceus.models.caduceus import CaduceusModel

    torch.manual_seed(0)
    model = CaduceusModel(n_tasks=2, d_model=16, n_layer=2, rcps=True, final_pool_func=None, crop_len=crop_len,
                          bin_size=bin_size).eval()
    x, x_rc = rc_pair()
    with torch.no_grad():
        out, out_rc = model(x), model(x_rc)
    assert out.shape == (3, 2, (SEQ_LEN - 2 * crop_len) // bin_size)
    assert relative(out_rc, out.flip(-1)) < 1e-5
    assert relative(out_rc, out) > 1e-2  # a real per-position signal, not a constant


def test_ph_is_rc_invariant_with_conjoin_only():
    from grelu_caduceus.models.caduceus import CaduceusModel

    x, x_rc = rc_pair()
    outputs = {}
    for conjoin in (True, False):
        torch.manual_seed(0)
        model = CaduceusModel(n_tasks=1, d_model=16, n_layer=2, rcps=False, conjoin=conjoin).eval()
        with torch.no_grad():
            outputs[conjoin] = model(x), model(x_rc)
    assert relative(*outputs[True]) < 1e-5
    assert relative(*outputs[False]) > 1e-4  # without conjoining, Ph is not RC-invariant


# --- head changes and fine-tuning -----------------------------------------------------------------------------------


def test_tune_binary_model_for_regression(trained, tmp_path):
    """compat.tune_on_dataset: new head (2 tasks, pooling kept), MSE loss, identity activation,
    regression metrics; the checkpoint reloads the same model."""
    model = copy.deepcopy(trained[0])
    rng = np.random.default_rng(10)
    seqs = [with_sites(rng, gata_free(rng, SEQ_LEN), n_sites=int(k)) if k else gata_free(rng, SEQ_LEN)
            for k in rng.integers(0, 4, 16)]
    counts = np.array([[[s.count(SITE) + s.count(SITE_RC)], [s.count("CG") / 10]] for s in seqs], np.float32)
    tr = LabeledSeqDataset(seqs[:12], labels=counts[:12], tasks=["sites", "cpg"])
    va = LabeledSeqDataset(seqs[12:], labels=counts[12:], tasks=["sites", "cpg"])
    trunk_before = copy.deepcopy(model.model.embedding.state_dict())
    trainer = grelu_compat.tune_on_dataset(model, tr, va, task="regression", loss="mse", max_steps=3,
                                           checkpoint={"save_last": True, "dirpath": str(tmp_path)}, **QUIET)
    assert isinstance(model.loss, torch.nn.MSELoss) and isinstance(model.activation, torch.nn.Identity)
    assert model.model.head.n_tasks == 2 and model.model_params["final_pool_func"] == "max"
    assert set(model.performance["val"]) == {"val_mse", "val_pearson"}
    assert model.data_params["tasks"]["name"] == ["sites", "cpg"] and model.base_data_params["tasks"]["name"] == ["gata"]
    assert any(not torch.equal(v, model.model.embedding.state_dict()[k]) for k, v in trunk_before.items())
    out = predict(model, seqs[:4])
    assert out.shape == (4, 2, 1)

    reloaded = grelu_compat.load_checkpoint(trainer.checkpoint_callback.last_model_path)
    assert reloaded.train_params["task"] == "regression" and isinstance(reloaded.loss, torch.nn.MSELoss)
    np.testing.assert_allclose(predict(reloaded, seqs[:4]), out, atol=1e-6)


def test_set_task_back_from_regression(tmp_path):
    """Regression -> binary: the identity activation is a registered module that plain assignment of
    torch.sigmoid cannot replace (what gReLU's initialize_activation would do)."""
    model = tiny_model(tmp_path, task="regression")
    with pytest.raises(TypeError, match="cannot assign"):
        model.train_params["task"] = "binary"
        model.initialize_activation()
    grelu_compat.set_task(model, "binary")
    assert model.activation is torch.sigmoid and isinstance(model.loss, torch.nn.BCEWithLogitsLoss)
    assert "val_auroc" in model.val_metrics.keys()
    with pytest.raises(ValueError, match="task must be 'binary', 'multiclass' or 'regression'"):
        grelu_compat.set_task(model, "classification")


def test_change_head_keeps_dtype_and_pooling(tmp_path):
    model = tiny_model(tmp_path, dtype="bfloat16")
    grelu_compat.change_head(model, n_tasks=3)
    assert all(p.dtype == torch.bfloat16 for p in model.model.head.parameters())
    x, _ = rc_pair(n=2)
    assert model(x).shape == (2, 3, 1)
    grelu_compat.change_head(model, n_tasks=2, final_pool_func=None, final_act_func="softplus")
    assert model(x).shape == (2, 2, SEQ_LEN)
    assert model.model_params["final_act_func"] == "softplus" and model.model_params["final_pool_func"] is None


# --- checkpoints ------------------------------------------------------------------------------------------------------


def test_checkpoint_round_trip_caduceus_model(trained, tmp_path):
    model, trainer = trained
    path = str(tmp_path / "model.ckpt")
    trainer.save_checkpoint(path)
    reloaded = LightningModel.load_from_checkpoint(path, weights_only=False).eval()
    seqs = gata_task(6, np.random.default_rng(11))[0]
    assert type(reloaded.model).__name__ == "CaduceusModel"
    np.testing.assert_array_equal(predict(reloaded, seqs), predict(model, seqs))
    assert reloaded.data_params["train"]["seq_len"] == SEQ_LEN


def test_pretrained_model_truncated_frozen_round_trip(tmp_path):
    torch.manual_seed(0)
    core = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=3, rcps=True))
    folder = grelu_caduceus.save_pretrained(core, tmp_path / "pretrained")
    params = {"model_type": "CaduceusPretrainedModel", "n_tasks": 1, "pretrained_path": str(folder), "n_layers": 2,
              "freeze": True}
    model = LightningModel(model_params=params, train_params={"task": "binary", "lr": 1e-2, "batch_size": 4,
                                                              "num_workers": 0, "save_dir": str(tmp_path)})
    backbone = model.model.embedding.backbone
    assert len(backbone.layers) == 2
    core_state = core.backbone.layers[1].state_dict()
    assert all(torch.equal(v, core_state[k]) for k, v in backbone.layers[1].state_dict().items())
    assert not any(p.requires_grad for p in backbone.parameters())
    assert all(p.requires_grad for p in model.model.head.parameters())

    rng = np.random.default_rng(12)
    seqs, labels = gata_task(8, rng)
    ds = LabeledSeqDataset(seqs, labels=labels, tasks=["gata"])
    frozen = copy.deepcopy(backbone.state_dict())
    head = copy.deepcopy(model.model.head.state_dict())
    trainer = train_on_dataset(model, ds, ds, max_steps=2, **QUIET)
    assert all(torch.equal(v, backbone.state_dict()[k]) for k, v in frozen.items())
    assert any(not torch.equal(v, model.model.head.state_dict()[k]) for k, v in head.items())

    path = str(tmp_path / "tuned.ckpt")
    trainer.save_checkpoint(path)
    reloaded = LightningModel.load_from_checkpoint(path, weights_only=False).eval()
    assert len(reloaded.model.embedding.backbone.layers) == 2
    assert not any(p.requires_grad for p in reloaded.model.embedding.backbone.parameters())
    np.testing.assert_array_equal(predict(reloaded, seqs), predict(model, seqs))

    with pytest.raises(ValueError, match="n_layers must be between 1 and 3"):
        LightningModel(model_params={**params, "n_layers": 4}, train_params={"task": "binary"})
