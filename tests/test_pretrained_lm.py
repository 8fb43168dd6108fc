"""The pretrained Caduceus-PS shipped in grelu_caduceus/data/bundled/caduceus_ps_chr20/: it loads as an
RC-equivariant PS masked LM, its k-mer counts are those of its training DNA, and its files match the
manifest that scripts/build_pretrained_lm.py wrote.

These tests skip only while the folder is not built (see pytest's report header); the package ships it.
"""

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from conftest import shipped_pretrained_lm

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def shipped():
    folder = shipped_pretrained_lm()
    if folder is None:
        pytest.skip("grelu_caduceus/data/bundled/caduceus_ps_chr20 is not built yet (scripts/build_pretrained_lm.py)")
    return folder


@pytest.fixture(scope="module")
def info(shipped):
    from grelu_caduceus.data import pretrained_lm_info

    entry = pretrained_lm_info()
    assert entry is not None, "MANIFEST.json has no pretrained.caduceus_ps_chr20 entry"
    return entry


def test_shipped_model_is_an_rc_equivariant_caduceus_ps(shipped, info):
    from grelu_caduceus import load_pretrained
    from grelu_caduceus.core.tokens import A_ID, T_ID, complement_index
    from grelu_caduceus.data import pretrained_lm_folder

    assert pretrained_lm_folder() == shipped
    model = load_pretrained(shipped)
    assert model.config.rcps and (model.config.d_model, model.config.n_layer) == (64, 4)
    assert sum(p.numel() for p in model.parameters()) == info["model"]["parameters"] == 164_160
    comp = complement_index(model.config.padded_vocab_size)
    ids = torch.randint(A_ID, T_ID + 1, (2, 300), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, logits_rc = model(ids), model(comp[ids.flip(1)])
    expected = logits.flip(1)[..., comp]
    assert ((logits_rc - expected).norm() / expected.norm()).item() < 1e-5


def test_shipped_model_predicts_held_out_bases_better_than_chance(shipped):
    """A trained model, not a random one: on held-out windows of hg19 chr20:43-44 Mb it fills in [MASK]ed
    bases far better than the 27-33% of the most frequent base or a 1-base context (a random model's level)."""
    from grelu_caduceus import load_pretrained
    from grelu_caduceus.demo import MaskedEvalSet
    from grelu_caduceus.demo.masked_eval import model_predictions
    from grelu_caduceus.demo.stages import region_ids

    ids = region_ids("val")[: 16 * 1024].reshape(16, 1024)
    eval_set = MaskedEvalSet.build(ids, 16)
    rows, cols = eval_set.sites(hidden_only=True)
    predicted = model_predictions(load_pretrained(shipped), eval_set.inputs, 16, "cpu")[rows, cols]
    assert (predicted == eval_set.targets(rows, cols)).mean() > 0.38


def test_shipped_counts_are_the_counts_of_the_training_dna(shipped, info):
    """The stored k = 5 table counts chr20's training pieces; one of them, chr20:40,016,384-42,983,616, is
    inside the bundled demo genome, so a direct fit of that piece fits under the table everywhere."""
    from grelu_caduceus.data import demo_genome_offset
    from grelu_caduceus.data.bundled import PRETRAINED_LM_COUNTS
    from grelu_caduceus.demo import KmerContextModel
    from grelu_caduceus.demo.baselines import ids_to_bases
    from grelu_caduceus.demo.stages import region_ids

    stored = KmerContextModel.load(shipped / PRETRAINED_LM_COUNTS)
    assert stored.k == 5 and stored.counts_table().sum() == info["baselines"]["counted_positions"]
    assert stored.counts_table().max() == info["baselines"]["largest_count"]
    with np.load(shipped / PRETRAINED_LM_COUNTS) as f:
        assert f["counts"].dtype == np.uint16
    piece = next(p for p in info["data"]["train_intervals"] if p.startswith("chr20:40"))
    start, end = (int(x) - demo_genome_offset() for x in piece.split(":")[1].split("-"))
    direct = KmerContextModel(5).fit(ids_to_bases(region_ids("train")[start:end])).counts_table()
    assert direct.sum() == end - start - 10
    assert (stored.counts_table() >= direct).all()
    assert stored.counts_table().sum() > 10 * direct.sum()  # and much more: 13 pieces, about 36.7M positions


def test_shipped_files_fit_the_budget_and_the_demo_evaluates_at_their_window(shipped, info):
    from grelu_caduceus.demo import BUDGETS

    assert sum(f["bytes"] for f in info["files"].values()) <= 5e6
    assert BUDGETS["default"].eval_seq_len == info["training"]["seq_len"] == 1024
    assert info["training"]["steps"] * info["training"]["batch_size"] * 1024 == info["training"]["tokens"]


def test_build_script_check_passes(shipped):
    done = subprocess.run([sys.executable, str(REPO / "scripts" / "build_pretrained_lm.py"), "--check"],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "matches the manifest" in done.stdout


def test_build_script_check_finds_a_changed_file(shipped, tmp_path):
    import json
    import shutil

    sys.path.insert(0, str(REPO / "scripts"))
    try:
        import build_pretrained_lm
    finally:
        sys.path.pop(0)
    copy = tmp_path / "bundled"
    copy.mkdir()
    shutil.copy(shipped.parent / "MANIFEST.json", copy / "MANIFEST.json")
    shutil.copytree(shipped, copy / shipped.name)
    assert build_pretrained_lm.check(copy) == []
    config = json.loads((copy / shipped.name / "config.json").read_text())
    (copy / shipped.name / "config.json").write_text(json.dumps({**config, "n_layer": 3}))
    assert build_pretrained_lm.check(copy) == [f"{copy / shipped.name / 'config.json'} does not match the manifest's sha256"]


def test_the_demo_uses_the_shipped_model_by_default(shipped):
    from grelu_caduceus.demo.stages import resolve_pretrained

    assert resolve_pretrained(None) == shipped
