"""Caduceus as gReLU models: a trunk on gReLU's one-hot input plus gReLU's ConvHead.

``LightningModel(model_params={"model_type": "CaduceusModel", "n_tasks": 1, ...})`` builds
:class:`CaduceusModel`; :class:`CaduceusPretrainedModel` starts from pretrained weights, like
gReLU's ``EnformerPretrainedModel``.
"""

from pathlib import Path

from grelu.model.heads import ConvHead
from grelu.model.models import BaseModel
from torch import nn

from ..core import CaduceusBackbone, CaduceusConfig, load_pretrained, set_scan_backend
from ..core.config import backbone_parameters
from ..core.mamba import cast_keeping_ssm_float32
from ..core.tokens import combine_ps_halves, conjoin
from .common import CropAndBin, check_pool_func, resolve_dtype, with_backbone_parameters

# CaduceusModel starts from a narrower, RC-equivariant backbone than CaduceusConfig's defaults.
MODEL_DEFAULTS = dict(d_model=128, rcps=True)


class CaduceusTrunk(nn.Module):
    """One-hot (N, 4, L) -> strand-symmetric features (N, d_model, L_out).

    PS: the two halves of the equivariant stream are combined as ``(a + flip_channels(b)) / 2``, so
    features of the reverse complement are the features flipped along length: pooled predictions
    are exactly RC-invariant and per-position ones flip. Ph with ``conjoin``: features of x and of
    its reverse complement (flipped back) are averaged, which has the same property.

    Args:
        backbone: a CaduceusBackbone.
        conjoin: average with the reverse-complement pass (post-hoc conjoining, Caduceus-Ph).
        crop_len, bin_size: see CropAndBin.
    """

    def __init__(self, backbone: CaduceusBackbone, conjoin=False, crop_len=0, bin_size=1):
        super().__init__()
        self.backbone = backbone
        self.conjoin = conjoin
        self.crop_bin = CropAndBin(crop_len, bin_size)
        self.out_channels = backbone.config.d_model

    def features(self, x):
        """(N, 4, L) -> (N, L, d_model)."""
        h = self.backbone(x.to(self.backbone.norm_f.weight.dtype))
        return combine_ps_halves(h) if self.backbone.config.rcps else h

    def forward(self, x):
        h = conjoin(self.features, x) if self.conjoin else self.features(x)
        return self.crop_bin(h.transpose(1, 2))


class CaduceusModel(BaseModel):
    """Caduceus trained from scratch inside gReLU.

    Args:
        n_tasks: number of output tracks.
        final_pool_func: "avg" or "max" pool over length, or None for per-position/per-bin output.
        final_act_func: activation of the head (None: gReLU applies the task's own at prediction).
        crop_len: positions cropped from each end before pooling or binning.
        bin_size: average the output over non-overlapping bins (128 for Enformer-like profiles).
        conjoin: also run the reverse complement and average (post-hoc conjoining); None (default):
            true for Ph (rcps false), false for PS, whose features are RC-symmetric already.
        dtype: "float32" or "bfloat16" weights.
        gradient_checkpointing: recompute layers in the backward pass to save memory.
        gradient_checkpointing_stride: with gradient_checkpointing, recompute every k-th layer only
            (layers 0, k, 2k, ...); 1 = every layer.
        scan_backend: selective-scan backend ("auto", "cpu", "triton", "mamba_ssm", "torch").
        **backbone: the architecture, flat: every field of ``CaduceusConfig`` a user chooses and the
            Mamba options of its ssm_cfg (``core.config.BACKBONE_PARAMS``: d_model, n_layer, rcps,
            rms_norm, bidirectional_strategy, d_state, expand, ...); defaults are CaduceusConfig's
            except ``MODEL_DEFAULTS`` (d_model 128, rcps True). The signature lists them all.

    Input (N, 4, L) one-hot; output (N, n_tasks, 1) when pooled, else (N, n_tasks, L_out).
    """

    def __init__(
        self,
        n_tasks: int,
        final_pool_func="avg",
        final_act_func=None,
        crop_len: int = 0,
        bin_size: int = 1,
        conjoin: bool | None = None,
        dtype=None,
        device=None,
        gradient_checkpointing: bool = False,
        gradient_checkpointing_stride: int = 1,
        scan_backend: str = "auto",
        **backbone,
    ):
        config = CaduceusConfig.from_params({**MODEL_DEFAULTS, **backbone}, owner="CaduceusModel")
        from ..core.caduceus import CaduceusForMaskedLM

        # Build through the masked LM so the backbone gets Mamba's initialisation, then keep the backbone.
        backbone = CaduceusForMaskedLM(config).backbone
        super().__init__(*_trunk_and_head(backbone, n_tasks, final_pool_func, final_act_func, crop_len,
                                          bin_size, conjoin, dtype, device, gradient_checkpointing,
                                          gradient_checkpointing_stride, scan_backend))


with_backbone_parameters(CaduceusModel.__init__, backbone_parameters(**MODEL_DEFAULTS))


class CaduceusPretrainedModel(BaseModel):
    """A pretrained Caduceus backbone with a new head (like gReLU's EnformerPretrainedModel).

    Args:
        n_tasks: number of output tracks.
        pretrained_path: an HF-format folder (config.json + weights, e.g. a released checkpoint), its
            hub name (e.g. ``kuleshov-group/caduceus-ps_seqlen-131k_d_model-256_n_layer-16``, from the
            Hugging Face cache; see ``grelu_caduceus.core.hub``) or a masked-LM checkpoint (.ckpt)
            trained with grelu-caduceus.
        n_layers: keep only the first n layers of the backbone (None: all).
        freeze: freeze the backbone so only the head trains.
        conjoin: average with the reverse-complement pass; default True for Ph models, False for PS.
        final_pool_func, final_act_func, crop_len, bin_size, dtype, device, gradient_checkpointing,
        gradient_checkpointing_stride, scan_backend: as in CaduceusModel.
        backbone_config: the backbone's CaduceusConfig as a dict. A gReLU checkpoint of this model
            records it (``checkpoint_params``), so reloading builds the architecture from it and takes
            every weight from the checkpoint's state dict, without ``pretrained_path``. Given, the
            backbone starts untrained: use it only to load a state dict.
    """

    def __init__(
        self,
        n_tasks: int,
        pretrained_path: str,
        n_layers=None,
        freeze: bool = False,
        conjoin=None,
        final_pool_func="avg",
        final_act_func=None,
        crop_len: int = 0,
        bin_size: int = 1,
        dtype=None,
        device=None,
        gradient_checkpointing: bool = False,
        gradient_checkpointing_stride: int = 1,
        scan_backend: str = "auto",
        backbone_config: dict | None = None,
    ):
        if backbone_config is not None:
            from ..core.caduceus import CaduceusForMaskedLM

            backbone = CaduceusForMaskedLM(CaduceusConfig.from_dict(backbone_config)).backbone
        else:
            backbone = load_backbone(pretrained_path)
        if n_layers is not None:
            if not 1 <= n_layers <= len(backbone.layers):
                raise ValueError(f"n_layers must be between 1 and {len(backbone.layers)}, got {n_layers}.")
            backbone.layers = backbone.layers[:n_layers]
            backbone.config.n_layer = n_layers
        if freeze:
            backbone.requires_grad_(False)
        backbone.train()
        super().__init__(*_trunk_and_head(backbone, n_tasks, final_pool_func, final_act_func, crop_len,
                                          bin_size, conjoin, dtype, device, gradient_checkpointing,
                                          gradient_checkpointing_stride, scan_backend))

    def checkpoint_params(self) -> dict:
        """model_params a checkpoint records so that it reloads without ``pretrained_path``."""
        return {"backbone_config": self.embedding.backbone.config.to_dict()}


def load_backbone(path) -> CaduceusBackbone:
    """The backbone of an HF-format folder, a hub name or one of our masked-LM Lightning checkpoints (.ckpt)."""
    path = Path(path)
    if path.is_file() and path.suffix == ".ckpt":
        from ..checkpoint_files import load_lightning_checkpoint
        from ..tasks.mlm import MLMLightningModel

        mlm = load_lightning_checkpoint(path, MLMLightningModel,
                                        hint="point pretrained_path at a complete masked-LM checkpoint such as "
                                             "RUN/checkpoints/last.ckpt or step*.ckpt, or at an HF-format Caduceus "
                                             "folder")
        return mlm.model.backbone
    from ..core.hub import is_hub_name

    if is_hub_name(str(path)):
        return load_pretrained(str(path)).backbone
    if not path.exists():
        raise FileNotFoundError(
            f"Pretrained model {path} not found: give an HF-format Caduceus folder (config.json + weights) "
            "or a masked-LM .ckpt written by `grelu-caduceus train task=mlm`."
        )
    return load_pretrained(path).backbone


def _trunk_and_head(backbone, n_tasks, final_pool_func, final_act_func, crop_len, bin_size, conjoin, dtype,
                    device, gradient_checkpointing, gradient_checkpointing_stride, scan_backend):
    dtype = resolve_dtype(dtype)
    check_pool_func(final_pool_func)
    conjoin = (not backbone.config.rcps) if conjoin is None else conjoin
    backbone.gradient_checkpointing_stride = gradient_checkpointing_stride  # checked even when off
    if gradient_checkpointing:
        backbone.gradient_checkpointing_enable(stride=gradient_checkpointing_stride)
    else:
        backbone.gradient_checkpointing_disable()
    set_scan_backend(backbone, scan_backend)
    trunk = CaduceusTrunk(backbone, conjoin=conjoin, crop_len=crop_len, bin_size=bin_size)
    head = ConvHead(n_tasks=n_tasks, in_channels=trunk.out_channels, act_func=final_act_func,
                    pool_func=final_pool_func)
    cast_keeping_ssm_float32(trunk, device=device, dtype=dtype)  # A_log and D stay float32, as in Mamba
    head.to(device=device, dtype=dtype)
    return trunk, head
