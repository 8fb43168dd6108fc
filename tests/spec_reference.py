"""A literal, slow, float64 transcription of docs/architecture.md (the model contract), working directly on
a released-layout state dict. It shares no code with grelu_caduceus, so the model is tested against
the spec rather than against itself."""

import math

import torch
import torch.nn.functional as F

COMP = [0, 1, 2, 3, 4, 5, 6, 10, 9, 8, 7, 11, 12, 13, 14, 15]


def rc(t):  # (B, L, d) half of the stream
    return t.flip(1, 2)


def rms(x, w, eps):
    return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * w


def mamba(sd, p, u, cfg):
    d = cfg["d_model"]
    din, N, K = 2 * d, cfg["ssm_cfg"]["d_state"], cfg["ssm_cfg"]["d_conv"]
    r = math.ceil(d / 16)
    xz = u @ sd[p + "in_proj.weight"].T
    x, z = xz[..., :din], xz[..., din:]
    L = u.shape[1]
    xc = F.conv1d(x.transpose(1, 2), sd[p + "conv1d.weight"], sd[p + "conv1d.bias"], padding=K - 1, groups=din)[..., :L]
    x = F.silu(xc).transpose(1, 2)  # (B, L, din)
    dbl = x @ sd[p + "x_proj.weight"].T
    dt, Bm, Cm = dbl[..., :r], dbl[..., r:r + N], dbl[..., r + N:]
    dt = F.softplus(dt @ sd[p + "dt_proj.weight"].T + sd[p + "dt_proj.bias"])  # (B, L, din)
    A = -torch.exp(sd[p + "A_log"])
    h = torch.zeros(u.shape[0], din, N, dtype=u.dtype)
    ys = []
    for t in range(L):
        h = torch.exp(dt[:, t, :, None] * A) * h + (dt[:, t] * x[:, t])[..., None] * Bm[:, t, None, :]
        ys.append((h * Cm[:, t, None, :]).sum(-1) + sd[p + "D"] * x[:, t])
    y = torch.stack(ys, 1)
    return (y * F.silu(z)) @ sd[p + "out_proj.weight"].T


def tied(sd, key):
    """Tied tensors may be stored once, under mamba_fwd."""
    return sd[key] if key in sd else sd[key.replace("mamba_rev", "mamba_fwd")]


def bimamba(sd, p, u, cfg):
    view = {k[len(p):]: v for k, v in sd.items() if k.startswith(p)}
    fwd = {k[len("mamba_fwd."):]: v for k, v in view.items() if k.startswith("mamba_fwd.")}
    rev = {k[len("mamba_rev."):]: v for k, v in view.items() if k.startswith("mamba_rev.")}
    for name in ("in_proj.weight", "out_proj.weight"):
        rev.setdefault(name, fwd[name])
    out = mamba(fwd, "", u, cfg)
    out_rev = mamba(rev, "", u.flip(1), cfg).flip(1)
    return out + out_rev if cfg["bidirectional_strategy"] == "add" else out * out_rev


def forward(sd, cfg, ids, block_half_order="released"):
    """Returns (logits (B, L, 16), hidden (B, L, d or 2d)) in float64.

    PS blocks: with fused_add_norm (the released configs) the halves trade places at every block;
    with fused_add_norm false the released code's unfused path keeps them in place and stores the
    norms as norm.submodule.weight / norm_f.submodule.weight. block_half_order="other" uses the
    opposite ordering (for tests that pin the ordering).
    """
    sd = {k: v.double() if v.is_floating_point() else v for k, v in sd.items()}
    pb, eps, ps = "caduceus.backbone.", cfg["norm_epsilon"], cfg["rcps"]
    fused = cfg.get("fused_add_norm", True)
    norm_name = "norm.weight" if fused or not ps else "norm.submodule.weight"
    swap = fused if block_half_order == "released" else not fused
    comp = torch.tensor(COMP)
    if ps:
        E = sd[pb + "embeddings.word_embeddings.embedding.weight"]
        hidden = torch.cat([E[ids], rc(E[comp[ids.flip(1)]])], -1)
    else:
        E = sd[pb + "embeddings.word_embeddings.weight"]
        hidden = E[ids]
    residual = None
    for i in range(cfg["n_layer"]):
        w = sd[f"{pb}layers.{i}.{norm_name}"]
        s = hidden if residual is None else hidden + residual
        if ps:
            d = s.shape[-1] // 2
            s1, s2 = s[..., :d], s[..., d:]
            if swap:
                normed, residual = torch.cat([rms(s2, w, eps), rc(rms(rc(s1), w, eps))], -1), torch.cat([s2, s1], -1)
            else:
                normed, residual = torch.cat([rms(s1, w, eps), rc(rms(rc(s2), w, eps))], -1), s
            mp = f"{pb}layers.{i}.mixer.submodule."
            a, b = normed[..., :d], normed[..., d:]
            hidden = torch.cat([bimamba(sd, mp, a, cfg), rc(bimamba(sd, mp, rc(b), cfg))], -1)
        else:
            normed, residual = rms(s, w, eps), s
            hidden = bimamba(sd, f"{pb}layers.{i}.mixer.", normed, cfg)
    s = hidden + residual
    wf = sd[pb + "norm_f." + norm_name[len("norm."):]]
    if ps:
        d = s.shape[-1] // 2
        out = torch.cat([rms(s[..., :d], wf, eps), rc(rms(rc(s[..., d:]), wf, eps))], -1)
        W = sd.get("lm_head.lm_head.weight", E)
        logits = out[..., :d] @ W.T + out[..., d:].flip(-1) @ W[comp].T
    else:
        out = rms(s, wf, eps)
        logits = out @ sd.get("lm_head.weight", E).T
    return logits, out
