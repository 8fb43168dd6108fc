"""HyenaDNA as gReLU models: ``model_type="HyenaDNAModel"`` (from scratch) and
``model_type="HyenaDNAPretrainedModel"`` (a released backbone with a new head)."""

import torch
from grelu.model.heads import ConvHead
from grelu.model.models import BaseModel
from torch import nn

from grelu_caduceus.core.tokens import conjoin
from grelu_caduceus.hyena import HyenaDNABackbone, HyenaDNAConfig, preset_sizes
from grelu_caduceus.hyena.config import BACKBONE_FIELDS
from grelu_caduceus.models.common import CropAndBin, check_pool_func, config_parameters, with_backbone_parameters


class HyenaDNATrunk(nn.Module):
    """gReLU trunk: one-hot (N, 4, L) -> HyenaDNA hidden states -> crop/bin -> (N, d_model, L_out).

    ``L_out = (L - 2 * crop_len) // bin_size``. The one-hot input is embedded by matrix products, so
    gradients with respect to the input exist (gReLU's attribution methods need them).
    """

    def __init__(self, config: HyenaDNAConfig, crop_len: int = 0, bin_size: int = 1,
                 backbone: HyenaDNABackbone | None = None):
        super().__init__()
        self.backbone = backbone if backbone is not None else HyenaDNABackbone(config)
        self.crop_and_bin = CropAndBin(crop_len, bin_size)
        self.out_channels = config.d_model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 4, L) one-hot, A,C,G,T rows. Returns (N, d_model, L_out)."""
        hidden = self.backbone(inputs_embeds=self.backbone.embed_onehot(x))  # (N, L, d)
        return self.crop_and_bin(hidden.transpose(1, 2))


class HyenaDNAModel(BaseModel):
    """HyenaDNA (Nguyen et al., 2023) with a gReLU ConvHead, trained from scratch.

    Args:
        n_tasks: number of output tracks.
        preset: a published size ("tiny-1k", "small-32k", "medium-160k", "medium-450k", "large-1m");
            overrides d_model, n_layer and l_max.
        final_pool_func: "avg", "max" or None (per-position output).
        crop_len: positions cropped from each end of the output.
        bin_size: average the (cropped) output over non-overlapping bins of this size.
        conjoin: average the predictions for x and for its reverse complement (whose per-position
            outputs are flipped back along the length axis), making predictions RC-invariant.
        dtype, device: for the parameters.
        **backbone: the architecture: every field of ``HyenaDNAConfig`` but vocab_size and lm_head
            (``hyena.config.BACKBONE_FIELDS``: d_model, n_layer, l_max, order, filter_order, emb_dim,
            dropouts, gradient_checkpointing, ...), with its defaults. The signature lists them all.

    Output: (N, n_tasks, 1) when pooled, else (N, n_tasks, (L - 2 * crop_len) // bin_size).
    """

    def __init__(
        self,
        n_tasks: int,
        preset: str | None = None,
        final_pool_func: str | None = "avg",
        crop_len: int = 0,
        bin_size: int = 1,
        conjoin: bool = False,
        dtype=None,
        device=None,
        **backbone,
    ):
        check_pool_func(final_pool_func)
        unknown = set(backbone) - set(BACKBONE_FIELDS)
        if unknown:
            raise TypeError(f"HyenaDNAModel got unknown option(s) {', '.join(map(repr, sorted(unknown)))}; "
                            f"valid backbone options: {', '.join(BACKBONE_FIELDS)}.")
        if preset is not None:
            backbone = backbone | preset_sizes(preset)
        config = HyenaDNAConfig(**backbone)
        trunk = HyenaDNATrunk(config, crop_len=crop_len, bin_size=bin_size).to(device=device, dtype=dtype)
        head = ConvHead(n_tasks, in_channels=config.d_model, pool_func=final_pool_func, dtype=dtype, device=device)
        super().__init__(embedding=trunk, head=head)
        self.config = config
        self.conjoin = conjoin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x: (N, 4, L) one-hot -> (N, n_tasks, L_out)."""
        def predict(x):
            return self.head(self.embedding(x))

        return conjoin(predict, x, length_dim=-1) if self.conjoin else predict(x)


with_backbone_parameters(HyenaDNAModel.__init__, config_parameters(HyenaDNAConfig, BACKBONE_FIELDS))


class HyenaDNAPretrainedModel(HyenaDNAModel):
    """A released HyenaDNA backbone with a new gReLU ConvHead (like CaduceusPretrainedModel).

    Args:
        n_tasks: number of output tracks.
        pretrained_path: a released HyenaDNA folder (LongSafari layout: config.json + weights.ckpt, or the
            ``*-hf`` layout) or its hub name, e.g. ``LongSafari/hyenadna-tiny-1k-seqlen`` (from the
            Hugging Face cache; see ``grelu_caduceus.hyena.pretrained``).
        n_layers: keep only the first n blocks of the backbone (None: all).
        freeze: freeze the backbone so only the head trains.
        conjoin: average the predictions for x and its reverse complement.
        final_pool_func, final_act_func, crop_len, bin_size: as in HyenaDNAModel / CaduceusModel.
        gradient_checkpointing: recompute blocks in the backward pass to save memory.
        trust_pickle: allow a weights.ckpt that needs full unpickling (only for files you trust).
        revision: hub revision for a hub name.
        dtype, device: for the parameters.
        backbone_config: the backbone's HyenaDNAConfig as a dict; as in CaduceusPretrainedModel, a
            gReLU checkpoint records it so that reloading needs neither ``pretrained_path`` nor the
            hub (the weights come from the checkpoint's state dict).

    Inputs longer than the release's l_max are refused.
    """

    def __init__(
        self,
        n_tasks: int,
        pretrained_path: str,
        n_layers: int | None = None,
        freeze: bool = False,
        conjoin: bool = False,
        final_pool_func: str | None = "avg",
        final_act_func=None,
        crop_len: int = 0,
        bin_size: int = 1,
        gradient_checkpointing: bool = False,
        trust_pickle: bool = False,
        revision: str | None = None,
        dtype=None,
        device=None,
        backbone_config: dict | None = None,
    ):
        from grelu_caduceus.hyena.pretrained import load_pretrained

        check_pool_func(final_pool_func)
        if backbone_config is not None:
            backbone = HyenaDNABackbone(HyenaDNAConfig(**backbone_config))
        else:
            backbone = load_pretrained(pretrained_path, revision=revision, trust_pickle=trust_pickle).backbone
        if n_layers is not None:
            if not 1 <= n_layers <= len(backbone.layers):
                raise ValueError(f"n_layers must be between 1 and {len(backbone.layers)}, got {n_layers}.")
            backbone.layers = backbone.layers[:n_layers]
            backbone.config.n_layer = n_layers
        backbone.config.gradient_checkpointing = gradient_checkpointing
        if freeze:
            backbone.requires_grad_(False)
        backbone.train()
        config = backbone.config
        trunk = HyenaDNATrunk(config, crop_len=crop_len, bin_size=bin_size, backbone=backbone)
        trunk.to(device=device, dtype=dtype)
        head = ConvHead(n_tasks, in_channels=config.d_model, act_func=final_act_func, pool_func=final_pool_func,
                        dtype=dtype, device=device)
        BaseModel.__init__(self, embedding=trunk, head=head)
        self.config = config
        self.conjoin = conjoin

    def checkpoint_params(self) -> dict:
        """model_params a checkpoint records so that it reloads without ``pretrained_path``."""
        return {"backbone_config": self.config.to_dict()}
