"""HyenaDNA: FFT convolution, causality, gReLU output modes, RC conjoining, gradients, presets, learning."""

import random

import grelu.model.models  # noqa: F401  (import gReLU's models module before ours: see the report on registration)
import pytest
import torch
import torch.nn.functional as F

from grelu_caduceus.core.tokens import ids_to_onehot, strings_to_ids
from grelu_caduceus.hyena import (
    HyenaDNABackbone,
    HyenaDNAConfig,
    HyenaOperator,
    ImplicitFilter,
    fft_causal_conv,
    hyenadna_config,
)
from grelu_caduceus.models.hyenadna import HyenaDNAModel

if not hasattr(grelu.model.models, "HyenaDNAModel"):
    setattr(grelu.model.models, "HyenaDNAModel", HyenaDNAModel)


@pytest.fixture(autouse=True, scope="module")
def one_torch_thread():
    """These tensors are small: one thread is faster than two, by far on a busy machine."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def direct_causal_conv(u, k, bias):
    """Literal definition: y[b, c, t] = sum_{s=0..t} k[c, s] u[b, c, t-s] + bias[c] u[b, c, t]."""
    B, C, L = u.shape
    y = torch.zeros_like(u)
    for t in range(L):
        for s in range(t + 1):
            y[:, :, t] += k[:, s] * u[:, :, t - s]
    return y + bias[:, None] * u


def random_onehot(n, length, seed=0):
    g = torch.Generator().manual_seed(seed)
    return F.one_hot(torch.randint(0, 4, (n, length), generator=g), 4).float().transpose(1, 2)


def small_model(**kwargs):
    torch.manual_seed(0)
    params = dict(n_tasks=3, d_model=16, n_layer=2, l_max=64, filter_order=16)
    return HyenaDNAModel(**(params | kwargs)).eval()


# --- FFT convolution and filters --------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 2, 7, 16, 33, 50])
def test_fft_causal_conv_equals_direct_convolution(length):
    g = torch.Generator().manual_seed(length)
    u = torch.randn(2, 3, length, generator=g, dtype=torch.float64)
    k = torch.randn(3, length + 5, generator=g, dtype=torch.float64)  # longer filters: only L taps used
    bias = torch.randn(3, generator=g, dtype=torch.float64)
    expected = direct_causal_conv(u, k, bias)
    torch.testing.assert_close(fft_causal_conv(u, k, bias), expected, rtol=1e-10, atol=1e-10)
    torch.testing.assert_close(fft_causal_conv(u, k), expected - bias[:, None] * u, rtol=1e-10, atol=1e-10)


def test_fft_causal_conv_rejects_short_filter_and_keeps_half_dtype():
    with pytest.raises(ValueError, match="taps"):
        fft_causal_conv(torch.randn(1, 2, 10), torch.randn(2, 5))
    u, k = torch.randn(1, 2, 9), torch.randn(2, 9)
    y = fft_causal_conv(u.bfloat16(), k.bfloat16())
    assert y.dtype == torch.bfloat16
    torch.testing.assert_close(y.float(), fft_causal_conv(u.bfloat16().float(), k.bfloat16().float()), atol=0.05, rtol=0.02)


def test_implicit_filter_is_generated_per_length_and_does_not_depend_on_it():
    torch.manual_seed(0)
    filt = ImplicitFilter(channels=6, l_max=64, n_filters=2, emb_dim=5, filter_order=8)
    full, prefix = filt(64), filt(40)
    assert full.shape == (2, 6, 64) and prefix.shape == (2, 6, 40)
    # positions are normalised by l_max, so a shorter input sees the same taps
    torch.testing.assert_close(prefix, full[..., :40])
    # exponential modulation: the filters decay along the length
    assert full[..., 48:].abs().mean() < full[..., :16].abs().mean()
    with pytest.raises(ValueError, match="l_max=64"):
        filt(65)
    with pytest.raises(ValueError, match="emb_dim"):
        ImplicitFilter(channels=6, l_max=64, emb_dim=4)
    with torch.autocast("cpu", dtype=torch.bfloat16):  # filters stay in float32 under mixed precision
        assert filt(64).dtype == torch.float32


# --- causality ---------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [2, 3])
def test_operator_is_causal(order):
    torch.manual_seed(0)
    op = HyenaOperator(d_model=8, l_max=48, order=order, filter_order=8).double()
    u = torch.randn(2, 48, 8, dtype=torch.float64)
    u2 = u.clone()
    u2[:, 30] += 1.0
    y, y2 = op(u), op(u2)
    torch.testing.assert_close(y[:, :30], y2[:, :30], rtol=0, atol=1e-12)
    assert (y[:, 30] - y2[:, 30]).abs().max() > 1e-4


def test_backbone_is_causal():
    torch.manual_seed(0)
    backbone = HyenaDNABackbone(HyenaDNAConfig(d_model=8, n_layer=2, l_max=64, filter_order=8)).double().eval()
    ids = torch.randint(7, 12, (2, 64))
    for t in (0, 17, 63):
        changed = ids.clone()
        changed[:, t] = 7 + (ids[:, t] - 7 + 1) % 4
        h, h2 = backbone(ids), backbone(changed)
        torch.testing.assert_close(h[:, :t], h2[:, :t], rtol=0, atol=1e-10)
        assert (h[:, t:] - h2[:, t:]).abs().amax(-1).min() > 1e-6  # and every later position sees it


def test_backbone_takes_ids_or_embeddings_and_lm_head():
    torch.manual_seed(0)
    backbone = HyenaDNABackbone(d_model=16, n_layer=1, l_max=32, filter_order=8, lm_head=True).eval()
    ids = torch.randint(0, 12, (2, 20))
    h = backbone(input_ids=ids)
    assert h.shape == (2, 20, 16)
    torch.testing.assert_close(backbone(inputs_embeds=backbone.embeddings(ids)), h)
    logits = backbone(ids, return_logits=True)
    assert logits.shape == (2, 20, 16)
    assert backbone.lm_head.weight is backbone.embeddings.weight
    with pytest.raises(ValueError, match="exactly one"):
        backbone()
    with pytest.raises(ValueError, match="l_max=32"):
        backbone(torch.randint(0, 12, (1, 33)))
    with pytest.raises(ValueError, match="no LM head"):
        HyenaDNABackbone(d_model=8, n_layer=1, l_max=8, filter_order=8)(ids[:, :8], return_logits=True)


def test_onehot_embedding_matches_token_lookup_including_n():
    torch.manual_seed(0)
    backbone = HyenaDNABackbone(d_model=8, n_layer=1, l_max=16, filter_order=8)
    ids = strings_to_ids(["ACGTNNACGTAC"])
    torch.testing.assert_close(backbone.embed_onehot(ids_to_onehot(ids)), backbone.embeddings(ids))


def test_gradient_checkpointing_gives_the_same_gradients():
    torch.manual_seed(0)
    config = HyenaDNAConfig(d_model=16, n_layer=2, l_max=32, filter_order=8, embed_dropout=0.0)
    plain = HyenaDNABackbone(config)
    ckpt = HyenaDNABackbone(HyenaDNAConfig(**(config.to_dict() | {"gradient_checkpointing": True})))
    ckpt.load_state_dict(plain.state_dict())
    ids = torch.randint(7, 11, (2, 32))
    grads = []
    for model in (plain, ckpt):
        model.train()
        model(ids).square().mean().backward()
        grads.append(model.layers[0].mixer.in_proj.weight.grad.clone())
    torch.testing.assert_close(grads[0], grads[1])


# --- the gReLU model ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "kwargs, out_len",
    [
        (dict(final_pool_func="avg"), 1),
        (dict(final_pool_func="max"), 1),
        (dict(final_pool_func=None), 64),
        (dict(final_pool_func=None, bin_size=8), 8),
        (dict(final_pool_func=None, crop_len=4), 56),
        (dict(final_pool_func=None, crop_len=4, bin_size=7), 8),
        (dict(final_pool_func=None, crop_len=4, bin_size=7, conjoin=True), 8),
    ],
)
def test_output_shapes(kwargs, out_len):
    model = small_model(**kwargs)
    assert model(random_onehot(2, 64)).shape == (2, 3, out_len)
    assert model.embedding(random_onehot(2, 64)).shape == (2, 16, out_len if not kwargs.get("final_pool_func") else 64)


def test_conjoin_makes_predictions_rc_invariant():
    x = random_onehot(4, 64, seed=1)
    x_rc = x.flip(1, 2)
    plain = small_model(final_pool_func="avg")
    assert (plain(x) - plain(x_rc)).abs().max() > 1e-4  # a causal model is not RC-invariant by itself
    conjoined = small_model(final_pool_func="avg", conjoin=True)
    torch.testing.assert_close(conjoined(x), conjoined(x_rc), rtol=1e-5, atol=1e-6)
    # per-position outputs: the RC input gives the same track read backwards
    per_position = small_model(final_pool_func=None, crop_len=2, bin_size=4, conjoin=True)
    torch.testing.assert_close(per_position(x_rc), per_position(x).flip(-1), rtol=1e-5, atol=1e-6)


def test_gradients_reach_the_onehot_input():
    model = small_model(final_pool_func="avg")
    x = random_onehot(2, 64).requires_grad_(True)
    model(x)[:, 0].sum().backward()
    assert x.grad.shape == (2, 4, 64)
    assert torch.isfinite(x.grad).all()
    assert (x.grad.abs().sum(1) > 0).float().mean() > 0.9  # nearly every position gets a gradient


def test_dtype_argument_builds_parameters_in_that_dtype():
    model = small_model(final_pool_func="avg", dtype=torch.float64)
    assert {p.dtype for p in model.parameters()} == {torch.float64}
    assert model(random_onehot(1, 32).double()).dtype == torch.float64


def test_bad_arguments_give_clear_errors():
    with pytest.raises(ValueError, match="available presets: tiny-1k"):
        HyenaDNAModel(1, preset="huge-10m")
    with pytest.raises(ValueError, match="final_pool_func"):
        HyenaDNAModel(1, final_pool_func="mean")
    with pytest.raises(ValueError, match="l_max=64"):
        small_model()(random_onehot(1, 65))
    with pytest.raises(ValueError, match="shape \\(batch, 4, length\\)"):
        small_model()(torch.zeros(1, 5, 10))


# --- presets ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, d_model, n_layer, l_max, published_params",
    [
        ("tiny-1k", 128, 2, 1024, 0.44e6),
        ("small-32k", 256, 4, 32_768, 3.3e6),
        ("medium-160k", 256, 8, 160_000, 6.6e6),
        ("medium-450k", 256, 8, 450_000, 6.6e6),
        ("large-1m", 256, 8, 1_000_000, 6.6e6),
    ],
)
def test_presets_have_published_sizes(name, d_model, n_layer, l_max, published_params):
    config = hyenadna_config(name)
    assert (config.d_model, config.n_layer, config.l_max, config.d_inner) == (d_model, n_layer, l_max, 4 * d_model)
    n_params = sum(p.numel() for p in HyenaDNABackbone(config).parameters())
    assert abs(n_params - published_params) / published_params < 0.03, n_params
    model = HyenaDNAModel(2, d_model=7, n_layer=1, l_max=3, preset=name)  # the preset overrides sizes
    assert model.config.l_max == l_max and model.head.in_channels == d_model
    assert len(model.embedding.backbone.layers) == n_layer


# --- gReLU integration and learning -----------------------------------------------------------


def test_grelu_lightning_builds_runs_and_changes_head():
    from grelu.lightning import LightningModel

    lm = LightningModel(
        model_params={"model_type": "HyenaDNAModel", "n_tasks": 2, "d_model": 16, "n_layer": 1, "l_max": 64,
                      "filter_order": 8, "final_pool_func": "avg"},
        train_params={"task": "regression", "loss": "mse"},
    )
    assert isinstance(lm.model, HyenaDNAModel)
    assert lm(random_onehot(3, 64)).shape == (3, 2, 1)
    lm.change_head(n_tasks=5, final_pool_func=None)
    assert lm(random_onehot(3, 64)).shape == (3, 5, 64)


def motif_dataset(n, length, motif, rng):
    """Random sequences, half with ``motif`` planted at a random position; label = motif present."""
    seqs = []
    for i in range(n):
        s = "".join(rng.choice("ACGT") for _ in range(length))
        if i % 2:
            p = rng.randrange(length - len(motif))
            s = s[:p] + motif + s[p + len(motif):]
        seqs.append(s)
    labels = torch.tensor([float(motif in s) for s in seqs])
    return ids_to_onehot(strings_to_ids(seqs)), labels


def test_learns_motif_presence_from_scratch():
    """A short CPU run (150 steps of 32) on a controlled task: does a 128-bp sequence hold a 12-bp G run?

    Random sequences, half with the run planted at a random position; the label is computed from the
    final sequence. Max pooling means the model must detect the run where it is, not count G's.
    (Measured with seeds 0, 1, 2: 0.99, 0.94, 0.96 held-out accuracy.)
    """
    accuracy, losses = train_motif_model()
    assert sum(losses[-20:]) / 20 < 0.5 < sum(losses[:20]) / 20
    assert accuracy > 0.85, accuracy  # chance is ~0.5


def train_motif_model():
    rng = random.Random(0)
    torch.manual_seed(0)
    x_train, y_train = motif_dataset(1024, 128, "G" * 12, rng)
    x_test, y_test = motif_dataset(512, 128, "G" * 12, rng)
    model = HyenaDNAModel(1, d_model=32, n_layer=2, l_max=128, final_pool_func="max")
    optimizer = torch.optim.AdamW(model.parameters(), lr=2e-3)
    losses = []
    for step in range(150):
        batch = torch.randint(0, len(x_train), (32,))
        loss = F.binary_cross_entropy_with_logits(model(x_train[batch])[:, 0, 0], y_train[batch])
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    model.eval()
    with torch.no_grad():
        accuracy = ((model(x_test)[:, 0, 0] > 0).float() == y_test).float().mean().item()
    return accuracy, losses
