"""Pieces shared by the gReLU-facing models (Caduceus, HyenaDNA): output cropping and binning, the
choices of their head options, and signatures that list a backbone config's fields."""

import dataclasses
import inspect

import torch
from torch import nn

# Pooling of gReLU's ConvHead over length; None keeps one output per position or bin.
POOL_FUNCS = ("avg", "max", None)
# Weight dtypes by name (names keep checkpoints' hyper-parameters plain); None keeps float32.
DTYPES = {None: None, "float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


def check_pool_func(final_pool_func) -> None:
    if final_pool_func not in POOL_FUNCS:
        raise ValueError(f"final_pool_func must be one of {', '.join(map(repr, POOL_FUNCS))}, got {final_pool_func!r}.")


def resolve_dtype(dtype):
    """Accept a torch dtype or its name."""
    if isinstance(dtype, torch.dtype) or dtype is None:
        return dtype
    name = str(dtype).replace("torch.", "")
    if name not in DTYPES:
        raise ValueError(f"Unknown dtype {dtype!r}; use one of {', '.join(n for n in DTYPES if n)}.")
    return DTYPES[name]


def with_backbone_parameters(init, parameters: list[inspect.Parameter]):
    """Give ``init`` (which takes the backbone's fields as ``**backbone``) a signature listing them.

    gReLU passes model_params as keywords and the config schema reads the signature, so the
    backbone's fields are written once, in its config, and every one of them is a model parameter.
    """
    sig = inspect.signature(init)
    own = [p for p in sig.parameters.values() if p.kind is not p.VAR_KEYWORD]
    names = {p.name for p in own}
    init.__signature__ = sig.replace(parameters=own + [p for p in parameters if p.name not in names])
    return init


class CropAndBin(nn.Module):
    """Crop ``crop_len`` positions from each end, then average non-overlapping bins of ``bin_size``.

    Both steps commute with flipping the length axis when the cropped length is a multiple of
    ``bin_size``, so a trunk whose output flips under reverse-complement still does after this.

    Input (N, C, L); output (N, C, (L - 2 * crop_len) // bin_size).
    """

    def __init__(self, crop_len: int = 0, bin_size: int = 1):
        super().__init__()
        if crop_len < 0 or bin_size < 1:
            raise ValueError(f"crop_len must be >= 0 and bin_size >= 1, got {crop_len} and {bin_size}.")
        self.crop_len = int(crop_len)
        self.bin_size = int(bin_size)

    def forward(self, x):
        if self.crop_len:
            if x.shape[-1] <= 2 * self.crop_len:
                raise ValueError(
                    f"crop_len={self.crop_len} removes all {x.shape[-1]} positions: use a shorter crop_len "
                    "or longer sequences."
                )
            x = x[..., self.crop_len : x.shape[-1] - self.crop_len]
        if self.bin_size > 1:
            L = x.shape[-1]
            if L % self.bin_size:
                raise ValueError(
                    f"Output length {L} (after cropping) is not a multiple of bin_size={self.bin_size}: "
                    "choose seq_len - 2 * crop_len divisible by bin_size."
                )
            x = x.reshape(*x.shape[:-1], L // self.bin_size, self.bin_size).mean(-1)
        return x


def config_parameters(config_cls, names, **defaults) -> list[inspect.Parameter]:
    """Keyword-only parameters for the dataclass fields ``names`` of ``config_cls``, with their types
    and defaults (``defaults`` overrides some)."""
    fields = {f.name: f for f in dataclasses.fields(config_cls)}
    return [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, annotation=fields[name].type,
                              default=defaults.get(name, fields[name].default)) for name in names]
