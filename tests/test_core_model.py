"""Caduceus core: parity with a literal spec transcription, RC equivariance, inputs, checkpoint I/O."""

import json

import pytest
import torch
from helpers import rel_err, write_checkpoint
from spec_reference import forward as spec_forward

from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM, load_pretrained, save_pretrained
from grelu_caduceus.core.checkpoint import CheckpointError
from grelu_caduceus.core.tokens import (
    MASK_ID,
    N_ID,
    complement_index,
    ids_to_onehot,
    onehot_to_ids,
    rc_onehot,
    strings_to_ids,
)

COMP = complement_index(16)


def random_ids(g, batch=2, length=97, with_n=True):
    ids = torch.randint(7, 12 if with_n else 11, (batch, length), generator=g)
    return ids


@pytest.mark.parametrize("rcps", [False, True])
@pytest.mark.parametrize("tied_once", [False, True])
def test_matches_spec_transcription(tmp_path, rng, rcps, tied_once):
    sd, cfg = write_checkpoint(tmp_path, d_model=24, n_layer=3, rcps=rcps, tied_once=tied_once)
    model = load_pretrained(tmp_path)
    ids = random_ids(rng)
    with torch.no_grad():
        logits, hidden = model(ids, return_hidden=True)
    ref_logits, ref_hidden = spec_forward(sd, cfg, ids)
    assert logits.shape == (2, 97, 16) and hidden.shape == (2, 97, 48 if rcps else 24)
    assert rel_err(logits, ref_logits) < 1e-5
    assert rel_err(hidden, ref_hidden) < 1e-5
    assert rel_err(model.backbone(ids).detach(), ref_hidden) < 1e-5


def test_block_half_order_is_pinned(tmp_path, rng):
    """The other (also equivariant) half ordering must give different outputs, so the parity test
    above really distinguishes the released ordering."""
    sd, cfg = write_checkpoint(tmp_path, d_model=24, n_layer=3, rcps=True)
    ids = random_ids(rng)
    released, _ = spec_forward(sd, cfg, ids)
    other, _ = spec_forward(sd, cfg, ids, block_half_order="other")
    assert rel_err(other, released) > 1e-2
    with torch.no_grad():
        assert rel_err(load_pretrained(tmp_path)(ids), released) < 1e-5


def test_ew_multiply_strategy_matches_spec(tmp_path, rng):
    sd, cfg = write_checkpoint(tmp_path, d_model=16, n_layer=2, rcps=False, strategy="ew_multiply")
    ids = random_ids(rng, length=40)
    with torch.no_grad():
        assert rel_err(load_pretrained(tmp_path)(ids), spec_forward(sd, cfg, ids)[0]) < 1e-5


def test_pytorch_bin_loads_like_safetensors(tmp_path, rng):
    write_checkpoint(tmp_path / "a", fmt="safetensors", rcps=True, seed=4)
    write_checkpoint(tmp_path / "b", fmt="bin", rcps=True, seed=4)
    ids = random_ids(rng)
    with torch.no_grad():
        assert torch.equal(load_pretrained(tmp_path / "a")(ids), load_pretrained(tmp_path / "b")(ids))


@pytest.mark.parametrize("rcps", [False, True])
def test_rc_equivariance_of_logits_and_hidden(rng, rcps):
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=32, n_layer=3, rcps=rcps)).eval()
    ids = random_ids(rng, batch=3, length=150)
    rc_ids = COMP[ids.flip(1)]
    with torch.no_grad():
        logits, hidden = model(ids, return_hidden=True)
        logits_rc, hidden_rc = model(rc_ids, return_hidden=True)
    expected = logits.flip(1)[..., COMP]
    err = rel_err(logits_rc, expected)
    d = 32
    rc_hidden = torch.cat([hidden[..., d:].flip(1, 2), hidden[..., :d].flip(1, 2)], -1) if rcps else None
    if rcps:
        assert err < 1e-5
        assert rel_err(hidden_rc, rc_hidden) < 1e-5
    else:  # Ph is a different code path: not equivariant by construction
        assert err > 1e-3


def test_one_hot_input_equals_token_ids_and_handles_n_and_mask(rng):
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=32, n_layer=2, rcps=True)).eval()
    ids = random_ids(rng, length=64)
    ids[0, 5] = N_ID
    onehot = ids_to_onehot(ids)
    assert onehot[0, :, 5].sum() == 0  # N is an all-zero column
    assert torch.equal(onehot_to_ids(onehot), ids)
    with torch.no_grad():
        assert rel_err(model(onehot), model(ids)) < 1e-6
        masked = ids.clone()
        masked[1, 10] = MASK_ID
        five = torch.cat([ids_to_onehot(masked), (masked == MASK_ID).float()[:, None]], 1)
        assert rel_err(model(five), model(masked)) < 1e-6
    assert torch.equal(rc_onehot(onehot), ids_to_onehot(COMP[ids.flip(1)]))


def test_gradients_through_one_hot_are_rc_equivariant(rng):
    """Saliency of a strand-symmetric score under RC is the RC of the saliency (PS)."""
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=32, n_layer=2, rcps=True)).eval()
    x = ids_to_onehot(random_ids(rng, batch=1, length=80, with_n=False)).requires_grad_()
    hidden = model.backbone(x)
    score = (hidden[..., :32] + hidden[..., 32:].flip(-1)).pow(2).sum()
    (grad,) = torch.autograd.grad(score, x)
    x_rc = rc_onehot(x.detach()).requires_grad_()
    hidden_rc = model.backbone(x_rc)
    (grad_rc,) = torch.autograd.grad((hidden_rc[..., :32] + hidden_rc[..., 32:].flip(-1)).pow(2).sum(), x_rc)
    assert grad.abs().sum() > 0 and torch.isfinite(grad).all()
    assert rel_err(grad_rc, rc_onehot(grad)) < 1e-4


def test_each_position_sees_both_flanks(rng):
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=32, n_layer=2, rcps=False)).eval()
    ids = random_ids(rng, batch=1, length=200, with_n=False)
    with torch.no_grad():
        base = model(ids)[0, 100]
        for pos in (20, 180):
            changed = ids.clone()
            changed[0, pos] = 7 if changed[0, pos] != 7 else 8
            assert (model(changed)[0, 100] - base).abs().max() > 1e-6


def test_unidirectional_model_is_causal(rng):
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=2, bidirectional=False)).eval()
    ids = random_ids(rng, batch=1, length=60, with_n=False)
    changed = ids.clone()
    changed[0, 40] = 7 if changed[0, 40] != 7 else 8
    with torch.no_grad():
        a, b = model(ids), model(changed)
    assert torch.equal(a[0, :40], b[0, :40]) and not torch.equal(a[0, 40:], b[0, 40:])


def test_gradient_checkpointing_gives_same_gradients(rng):
    torch.manual_seed(0)
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=3, rcps=True))
    ids = random_ids(rng, length=50)
    grads = []
    for enable in (False, True):
        model.zero_grad()
        model.gradient_checkpointing_enable() if enable else model.gradient_checkpointing_disable()
        model(ids).logsumexp(-1).sum().backward()
        grads.append(torch.cat([p.grad.flatten() for p in model.parameters()]))
    assert rel_err(grads[1], grads[0]) < 1e-6


def test_initialisation_follows_mamba():
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=32, n_layer=4))
    mixer = model.backbone.layers[0].mixer.mamba_fwd
    assert torch.allclose(mixer.A_log.exp(), torch.arange(1.0, 17).repeat(64, 1))
    assert torch.equal(mixer.D, torch.ones(64))
    dt = torch.nn.functional.softplus(mixer.dt_proj.bias)
    assert dt.min() >= 1e-4 and dt.max() <= 0.1 + 1e-6 and dt.std() > 0
    assert model.lm_head.weight is model.backbone.embeddings.word_embeddings.weight
    assert model.backbone.layers[0].mixer.mamba_rev.in_proj is mixer.in_proj


@pytest.mark.parametrize("rcps", [False, True])
@pytest.mark.parametrize("once", [False, True])
def test_save_load_round_trip(tmp_path, rng, rcps, once):
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=24, n_layer=2, rcps=rcps)).eval()
    save_pretrained(model, tmp_path, store_tied_once=once)
    again = load_pretrained(tmp_path)
    ids = random_ids(rng)
    with torch.no_grad():
        assert torch.equal(model(ids), again(ids))
    assert json.loads((tmp_path / "config.json").read_text())["rcps"] == rcps


def test_config_keeps_unknown_fields(tmp_path):
    write_checkpoint(tmp_path)
    cfg = json.loads((tmp_path / "config.json").read_text())
    cfg["transformers_version"] = "4.0"
    (tmp_path / "config.json").write_text(json.dumps(cfg))
    model = load_pretrained(tmp_path)
    save_pretrained(model, tmp_path / "out")
    assert json.loads((tmp_path / "out" / "config.json").read_text())["transformers_version"] == "4.0"


def test_clear_errors_for_bad_checkpoints(tmp_path):
    with pytest.raises(CheckpointError, match="does not exist"):
        load_pretrained(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(CheckpointError, match="No config.json"):
        load_pretrained(tmp_path / "empty")
    write_checkpoint(tmp_path / "bert")
    cfg = json.loads((tmp_path / "bert" / "config.json").read_text())
    (tmp_path / "bert" / "config.json").write_text(json.dumps(cfg | {"model_type": "bert"}))
    with pytest.raises(ValueError, match="'bert' model"):
        load_pretrained(tmp_path / "bert")
    write_checkpoint(tmp_path / "shape", d_model=32)
    cfg = json.loads((tmp_path / "shape" / "config.json").read_text())
    (tmp_path / "shape" / "config.json").write_text(json.dumps(cfg | {"d_model": 48}))
    with pytest.raises(CheckpointError, match=r"caduceus\.backbone\..*shape"):
        load_pretrained(tmp_path / "shape")
    write_checkpoint(tmp_path / "noweights")
    (tmp_path / "noweights" / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="No weights"):
        load_pretrained(tmp_path / "noweights")


def test_unknown_and_missing_keys_are_named(tmp_path):
    from safetensors.torch import load_file, save_file

    write_checkpoint(tmp_path)
    f = tmp_path / "model.safetensors"
    sd = load_file(f)
    save_file(sd | {"caduceus.backbone.extra_thing": torch.zeros(2)}, f)
    with pytest.raises(CheckpointError, match="unknown tensors caduceus.backbone.extra_thing"):
        load_pretrained(tmp_path)
    sd.pop("caduceus.backbone.norm_f.weight")
    save_file(sd, f)
    with pytest.raises(CheckpointError, match="missing tensor caduceus.backbone.norm_f.weight"):
        load_pretrained(tmp_path)


def test_bad_input_shapes_are_explained():
    model = CaduceusForMaskedLM(CaduceusConfig(d_model=16, n_layer=1))
    with pytest.raises(ValueError, match="one-hot"):
        model(torch.zeros(2, 7, 10))
    assert strings_to_ids(["ACGTN", "acgtx"]).tolist() == [[7, 8, 9, 10, 11], [7, 8, 9, 10, 11]]
