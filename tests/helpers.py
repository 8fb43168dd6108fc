"""Test helpers: a released-layout checkpoint writer with random weights (written from the spec)."""

import json
import math
import os

import torch
from safetensors.torch import save_file

COMP_MAP = {str(i): i for i in range(7)} | {"7": 10, "8": 9, "9": 8, "10": 7, "11": 11}


def random_state_dict(d_model=32, n_layer=2, rcps=False, d_state=16, d_conv=4, seed=0, tied_once=False, scale=1.0,
                      fused_add_norm=True):
    g = torch.Generator().manual_seed(seed)

    def rnd(*shape, std=0.02):
        return torch.randn(*shape, generator=g) * std * scale

    din, r = 2 * d_model, math.ceil(d_model / 16)
    pb = "caduceus.backbone."
    sd = {}
    emb = torch.randn(16, d_model, generator=g) * 0.5
    comp = torch.tensor([0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15])
    if rcps:
        sd[pb + "embeddings.word_embeddings.embedding.weight"] = emb
        sd[pb + "embeddings.word_embeddings.complement_map"] = comp
    else:
        sd[pb + "embeddings.word_embeddings.weight"] = emb
    for i in range(n_layer):
        mix = f"{pb}layers.{i}.mixer." + ("submodule." if rcps else "")
        sd[f"{pb}layers.{i}.norm.weight"] = 1 + torch.randn(d_model, generator=g) * 0.3
        inp, outp = rnd(2 * din, d_model, std=0.2), rnd(d_model, din, std=0.1)
        for side in ("mamba_fwd", "mamba_rev"):
            p = mix + side + "."
            if side == "mamba_fwd" or not tied_once:
                sd[p + "in_proj.weight"], sd[p + "out_proj.weight"] = inp, outp
            sd[p + "conv1d.weight"], sd[p + "conv1d.bias"] = rnd(din, 1, d_conv, std=0.4), rnd(din, std=0.1)
            sd[p + "x_proj.weight"] = rnd(r + 2 * d_state, din, std=0.2)
            sd[p + "dt_proj.weight"] = rnd(din, r, std=0.5)
            sd[p + "dt_proj.bias"] = torch.log(torch.expm1(torch.rand(din, generator=g) * 0.1 + 1e-3))
            sd[p + "A_log"] = torch.log(torch.rand(din, d_state, generator=g) * 4 + 0.5)
            sd[p + "D"] = torch.randn(din, generator=g)
    sd[pb + "norm_f.weight"] = 1 + torch.randn(d_model, generator=g) * 0.3
    if rcps:
        sd["lm_head.lm_head.weight"] = emb
        sd["lm_head.complement_map"] = comp
    else:
        sd["lm_head.weight"] = emb
    if rcps and not fused_add_norm:  # the released unfused PS code keeps its norms in a wrapper module
        sd = {k.replace("norm.weight", "norm.submodule.weight").replace("norm_f.weight", "norm_f.submodule.weight"): v
              for k, v in sd.items()}
    return sd


def config_dict(d_model=32, n_layer=2, rcps=False, d_state=16, d_conv=4, strategy="add", fused_add_norm=True):
    return dict(model_type="caduceus", architectures=["CaduceusForMaskedLM"], d_model=d_model, n_layer=n_layer,
                vocab_size=12, ssm_cfg=dict(d_state=d_state, d_conv=d_conv, expand=2, dt_rank="auto"),
                rms_norm=True, residual_in_fp32=True, fused_add_norm=fused_add_norm, pad_vocab_size_multiple=8,
                norm_epsilon=1e-5, initializer_cfg=None, bidirectional=True, bidirectional_strategy=strategy,
                bidirectional_weight_tie=True, rcps=rcps, complement_map=COMP_MAP)


def write_checkpoint(folder, fmt="safetensors", tied_once=False, seed=0, strategy="add", **kw):
    sd = random_state_dict(tied_once=tied_once, seed=seed, **kw)
    cfg = config_dict(strategy=strategy, **kw)
    os.makedirs(folder, exist_ok=True)
    if fmt == "safetensors":
        save_file({k: v.clone().contiguous() for k, v in sd.items()}, os.path.join(folder, "model.safetensors"))
    else:
        torch.save(sd, os.path.join(folder, "pytorch_model.bin"))
    with open(os.path.join(folder, "config.json"), "w") as f:
        json.dump(cfg, f)
    return sd, cfg


def rel_err(a, b):
    a, b = a.double(), b.double()
    return ((a - b).norm() / b.norm()).item()


def write_demo_pretrained(folder, d_model=32, n_layer=2, seed=12345):
    """A stand-in for the shipped pretrained model's folder (grelu_caduceus/data/bundled/caduceus_ps_chr20):
    an untrained Caduceus-PS masked LM written by save_pretrained, with k = 5 context counts of the demo
    genome's train region as its kmer_context_k5.npz. (Its seed differs from the demo's, so that its
    weights are not the from-scratch run's initialisation.)"""
    from grelu_caduceus.core import CaduceusConfig, CaduceusForMaskedLM, save_pretrained
    from grelu_caduceus.data.bundled import PRETRAINED_LM_COUNTS
    from grelu_caduceus.demo.baselines import KmerContextModel, ids_to_bases
    from grelu_caduceus.demo.stages import region_ids

    with torch.random.fork_rng():
        torch.manual_seed(seed)
        model = CaduceusForMaskedLM(CaduceusConfig(d_model=d_model, n_layer=n_layer, rcps=True))
    save_pretrained(model, folder)
    KmerContextModel(5).fit(ids_to_bases(region_ids("train"))).save(os.path.join(folder, PRETRAINED_LM_COUNTS))
    return folder
