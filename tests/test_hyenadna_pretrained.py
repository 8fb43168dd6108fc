"""Released HyenaDNA checkpoints: our backbone against a float64 transcription of the original equations
(HazyResearch/hyena-dna standalone_hyenadna.py), on checkpoints written here in the released layouts."""

import json
import math

import pytest
import torch
from safetensors.torch import save_file

from grelu_caduceus.core.hub import UnsafePickleError
from grelu_caduceus.hyena import load_pretrained
from grelu_caduceus.hyena.pretrained import config_from_released

D, N_LAYER, D_INNER, L_MAX, EMB, FORDER, W = 16, 2, 40, 64, 5, 8, 10.0


def released_config(checkpointing=False, lr_pos_emb=0.0, modulate=True, l_max=L_MAX):
    return {"d_model": D, "n_layer": N_LAYER, "d_inner": D_INNER, "vocab_size": 12, "resid_dropout": 0.0,
            "embed_dropout": 0.1, "fused_mlp": False, "fused_dropout_add_ln": True,
            "checkpoint_mixer": checkpointing, "checkpoint_mlp": checkpointing, "residual_in_fp32": True,
            "pad_vocab_size_multiple": 8,
            "layer": {"_name_": "hyena", "emb_dim": EMB, "filter_order": FORDER, "short_filter_order": 3,
                      "l_max": l_max, "modulate": modulate, "w": W, "lr": 6e-4, "wd": 0.0, "lr_pos_emb": lr_pos_emb}}


def released_backbone(seed=0, l_max=L_MAX):
    """Random backbone tensors with the original's names (without the ``model.backbone.`` prefix).

    The positional features, decay rates and sine frequencies are perturbed away from their initial
    values, so a loader that recomputes them instead of reading them fails the comparison.
    """
    g = torch.Generator().manual_seed(seed)
    rnd = lambda *s, std=0.3: torch.randn(*s, generator=g) * std  # noqa: E731
    sd = {"embeddings.word_embeddings.weight": rnd(16, D, std=1.0)}
    bands = (EMB - 1) // 2
    t = torch.linspace(0, 1, l_max)[None, :, None]
    w = 2 * math.pi * torch.linspace(0, l_max - 1, l_max)[None, :, None] / l_max
    f = torch.linspace(1e-4, bands - 1, bands)[None, None]
    z0 = torch.exp(-1j * f * w)
    z0 = torch.cat([t, z0.real, z0.imag], dim=-1)
    for i in range(N_LAYER):
        p = f"layers.{i}."
        sd[p + "norm1.weight"], sd[p + "norm1.bias"] = 1 + rnd(D, std=0.1), rnd(D, std=0.1)
        sd[p + "norm2.weight"], sd[p + "norm2.bias"] = 1 + rnd(D, std=0.1), rnd(D, std=0.1)
        m = p + "mixer."
        sd[m + "in_proj.weight"], sd[m + "in_proj.bias"] = rnd(3 * D, D), rnd(3 * D, std=0.1)
        sd[m + "out_proj.weight"], sd[m + "out_proj.bias"] = rnd(D, D), rnd(D, std=0.1)
        sd[m + "short_filter.weight"], sd[m + "short_filter.bias"] = rnd(3 * D, 1, 3, std=0.5), rnd(3 * D, std=0.1)
        ff = m + "filter_fn."
        sd[ff + "bias"] = rnd(D, std=1.0)
        sd[ff + "pos_emb.z"] = z0 + rnd(*z0.shape, std=0.05)
        sd[ff + "pos_emb.t"] = t.clone()
        sd[ff + "implicit_filter.0.weight"], sd[ff + "implicit_filter.0.bias"] = rnd(FORDER, EMB), rnd(FORDER)
        freq = W + rnd(1, FORDER, std=1.0)  # one Sin module, shared by the whole MLP
        for k in (1, 3, 5):
            sd[ff + f"implicit_filter.{k}.freq"] = freq
        for k in (2, 4):
            sd[ff + f"implicit_filter.{k}.weight"], sd[ff + f"implicit_filter.{k}.bias"] = rnd(FORDER, FORDER), rnd(FORDER)
        sd[ff + "implicit_filter.6.weight"] = rnd(D, FORDER)
        deltas = torch.linspace(math.log(1e-2) / 1.5, math.log(1e-2) / 0.3, D)[None, None]
        sd[ff + "modulation.deltas"] = deltas * (1 + rnd(*deltas.shape, std=0.1))
        sd[p + "mlp.fc1.weight"], sd[p + "mlp.fc1.bias"] = rnd(D_INNER, D), rnd(D_INNER, std=0.1)
        sd[p + "mlp.fc2.weight"], sd[p + "mlp.fc2.bias"] = rnd(D, D_INNER), rnd(D, std=0.1)
    sd["ln_f.weight"], sd["ln_f.bias"] = 1 + rnd(D, std=0.1), rnd(D, std=0.1)
    return sd


# ------------------------------------------------------------------ the original, in float64
def original_forward(sd, ids, modulate=True, eps=1e-5):
    """standalone_hyenadna.py's LMBackbone.forward in eval mode, transcribed equation by equation."""
    sd = {k: v.double() for k, v in sd.items()}
    ln = lambda x, p: torch.nn.functional.layer_norm(x, (D,), sd[p + ".weight"], sd[p + ".bias"], eps)  # noqa: E731
    lin = lambda x, p, bias=True: x @ sd[p + ".weight"].T + (sd[p + ".bias"] if bias else 0)  # noqa: E731

    def fftconv(u, k, d_skip):
        seqlen = u.shape[-1]
        fft_size = 2 * seqlen
        k_f = torch.fft.rfft(k, n=fft_size) / fft_size
        u_f = torch.fft.rfft(u, n=fft_size)
        y = torch.fft.irfft(u_f * k_f, n=fft_size, norm="forward")[..., :seqlen]
        return y + u * d_skip.unsqueeze(-1)

    def hyena(u, m):
        length = u.shape[-2]
        l_filter = min(length, L_MAX)
        u = lin(u, m + "in_proj").transpose(1, 2)  # b d l
        uc = torch.nn.functional.conv1d(u, sd[m + "short_filter.weight"], sd[m + "short_filter.bias"], padding=2,
                                        groups=3 * D)[..., :l_filter]
        *x, v = uc.split(D, dim=1)
        ff = m + "filter_fn."
        z, t = sd[ff + "pos_emb.z"][:, :l_filter], sd[ff + "pos_emb.t"][:, :l_filter]
        h = z
        for k in (0, 2, 4):
            h = torch.sin(sd[ff + f"implicit_filter.{k + 1}.freq"] * lin(h, ff + f"implicit_filter.{k}"))
        h = lin(h, ff + "implicit_filter.6", bias=False)
        if modulate:
            h = h * (torch.exp(-t * sd[ff + "modulation.deltas"].abs()) + 0.05)
        k = h[0].T.reshape(1, D, l_filter)  # 'l (o d) -> o d l' with o = 1
        bias = sd[ff + "bias"].reshape(1, D)
        for o, x_i in enumerate(reversed(x[1:])):
            v = fftconv(v * x_i, k[o], bias[o])
        return lin((v * x[0]).transpose(1, 2), m + "out_proj")

    hidden = sd["embeddings.word_embeddings.weight"][ids]
    residual = None
    for i in range(N_LAYER):  # prenorm Block: dropout -> add -> LN -> mixer -> add -> LN -> MLP
        p = f"layers.{i}."
        residual = hidden + residual if residual is not None else hidden
        hidden = hyena(ln(residual, p + "norm1"), p + "mixer.")
        residual = hidden + residual
        hidden = ln(residual, p + "norm2")
        hidden = lin(torch.nn.functional.gelu(lin(hidden, p + "mlp.fc1"), approximate="tanh"), p + "mlp.fc2")
    residual = hidden + residual
    return ln(residual, "ln_f")


# ------------------------------------------------------------------ released layouts
def write_original(folder, sd, checkpointing=False, extra=None, **cfg_kw):
    folder.mkdir(parents=True, exist_ok=True)
    names = {}
    for k, v in sd.items():
        if checkpointing:
            k = k.replace(".mixer.", ".mixer.layer.").replace(".mlp.", ".mlp.layer.")
        names["model.backbone." + k] = v
    names["model.decoder.0.output_transform.weight"] = torch.zeros(2, D)  # a head: ignored
    ckpt = {"state_dict": names, "epoch": 3, "global_step": 1000, "pytorch-lightning_version": "1.8.6",
            "hyper_parameters": {"model": {"d_model": D}}} | (extra or {})
    torch.save(ckpt, folder / "weights.ckpt")
    (folder / "config.json").write_text(json.dumps(released_config(checkpointing, **cfg_kw)))
    return folder


def write_hf(folder, sd):
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {}
    for k, v in sd.items():
        if k.endswith((".3.freq", ".5.freq")):
            continue  # safetensors keeps a shared tensor once
        tensors["hyena.backbone." + k] = v.clone().contiguous()
    tensors["lm_head.weight"] = sd["embeddings.word_embeddings.weight"].clone()
    save_file(tensors, str(folder / "model.safetensors"))
    cfg = {"model_type": "hyenadna", "d_model": D, "n_layer": N_LAYER, "d_inner": D_INNER, "vocab_size": 12,
           "max_seq_len": L_MAX, "emb_dim": EMB, "filter_order": FORDER, "short_filter_order": 3,
           "hyena_order": 2, "num_inner_mlps": 2, "activation_freq": W, "train_freq": True, "use_bias": True,
           "embed_dropout": 0.1, "hyena_dropout": 0.0, "hyena_filter_dropout": 0.0, "layer_norm_epsilon": 1e-5,
           "pad_vocab_size_multiple": 8}
    (folder / "config.json").write_text(json.dumps(cfg))
    return folder


def ids_of(length, seed=0):
    return torch.randint(7, 12, (2, length), generator=torch.Generator().manual_seed(seed))


@pytest.mark.parametrize("checkpointing", [False, True], ids=["plain", "checkpoint_mixer"])
@pytest.mark.parametrize("length", [40, L_MAX], ids=["L<l_max", "L=l_max"])
def test_released_lightning_layout_matches_the_original(tmp_path, checkpointing, length):
    sd = released_backbone()
    model = load_pretrained(write_original(tmp_path / "m", sd, checkpointing))
    ids = ids_of(length)
    with torch.no_grad():
        ours = model.backbone(ids)
    expected = original_forward(sd, ids)
    assert ours.shape == (2, length, D) and ours.dtype == torch.float32
    torch.testing.assert_close(ours.double(), expected, rtol=1e-4, atol=1e-4)
    # in float64 the only differences left are rounding: the architecture is the original's
    with torch.no_grad():
        ours64 = model.double().backbone(ids)
    torch.testing.assert_close(ours64, expected, rtol=1e-10, atol=1e-10)


def test_filters_are_the_l_max_filters_cut_to_the_input_length(tmp_path):
    model = load_pretrained(write_original(tmp_path / "m", released_backbone()))
    filt = model.backbone.layers[0].mixer.long_filter
    torch.testing.assert_close(filt(40), filt(L_MAX)[..., :40])
    # prefix property of a causal model: a shorter input gives the first outputs of a longer one
    ids = ids_of(L_MAX)
    with torch.no_grad():
        torch.testing.assert_close(model(ids[:, :40]), model(ids)[:, :40], rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="l_max"):
        model(ids_of(L_MAX + 1))


def test_transformers_hf_layout_matches_the_original(tmp_path):
    sd = released_backbone(seed=1)
    model = load_pretrained(write_hf(tmp_path / "hf", sd))
    ids = ids_of(50, seed=2)
    with torch.no_grad():
        torch.testing.assert_close(model.double().backbone(ids), original_forward(sd, ids), rtol=1e-10, atol=1e-10)


def test_config_options_are_read(tmp_path):
    cfg = config_from_released(released_config(lr_pos_emb=1e-5, modulate=False))
    assert (cfg.vocab_size, cfg.l_max, cfg.sin_freq, cfg.d_inner) == (16, L_MAX, W, D_INNER)
    assert cfg.train_positions and not cfg.modulate and cfg.modulation_shift == 0.05
    sd = released_backbone()
    model = load_pretrained(write_original(tmp_path / "m", sd, lr_pos_emb=1e-5, modulate=False))
    assert isinstance(model.backbone.layers[0].mixer.long_filter.positions.z, torch.nn.Parameter)
    ids = ids_of(33)
    with torch.no_grad():
        torch.testing.assert_close(model.double()(ids), original_forward(sd, ids, modulate=False), rtol=1e-10,
                                   atol=1e-10)


def test_by_hub_name_offline_and_pickles_need_opt_in(tmp_path, monkeypatch):
    repo = tmp_path / "hub" / "models--LongSafari--hyenadna-tiny-1k-seqlen"
    sha = "a" * 40
    write_original(repo / "snapshots" / sha, released_backbone(), extra={"callbacks": {"x": ValueError("obj")}})
    (repo / "refs").mkdir()
    (repo / "refs" / "main").write_text(sha)
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    with pytest.raises(UnsafePickleError, match="trust_pickle=True"):
        load_pretrained("LongSafari/hyenadna-tiny-1k-seqlen")
    model = load_pretrained("hyenadna-tiny-1k-seqlen", trust_pickle=True)
    assert model(ids_of(8)).shape == (2, 8, D)


def test_grelu_pretrained_model_new_head_freezing_truncation_and_embed(tmp_path):
    import grelu_caduceus  # noqa: F401
    from grelu.model.models import HyenaDNAPretrainedModel
    from pathlib import Path

    from grelu_caduceus.embed import embed_intervals

    folder = write_original(tmp_path / "m", released_backbone(l_max=256), l_max=256)
    model = HyenaDNAPretrainedModel(n_tasks=3, pretrained_path=str(folder), freeze=True, n_layers=1)
    assert len(model.embedding.backbone.layers) == 1
    assert not any(p.requires_grad for p in model.embedding.parameters())
    assert all(p.requires_grad for p in model.head.parameters())
    x = torch.nn.functional.one_hot(ids_of(100)[0:1] - 7, 5)[..., :4].float().transpose(1, 2)
    assert model(x).shape == (1, 3, 1)
    full = HyenaDNAPretrainedModel(n_tasks=1, pretrained_path=str(folder), final_pool_func=None).eval()
    ids = torch.randint(7, 11, (1, 100), generator=torch.Generator().manual_seed(0))
    onehot = torch.nn.functional.one_hot(ids - 7, 4).float().transpose(1, 2)
    with torch.no_grad():  # the trunk's one-hot path equals the token path of the released model
        released = load_pretrained(folder)(ids)
        torch.testing.assert_close(full.embedding(onehot), released.transpose(1, 2), rtol=1e-5, atol=1e-5)

    fasta = Path(__file__).resolve().parents[1] / "kipoi_model" / "example_files" / "genome.fa"
    bed = tmp_path / "i.bed"
    bed.write_text("chr20_43300000_43400000\t1000\t1200\nchr20_43300000_43400000\t5000\t5100\n")
    _, emb = embed_intervals(folder, fasta, bed, progress=False)
    assert emb.shape == (2, D) and torch.isfinite(torch.from_numpy(emb)).all()
