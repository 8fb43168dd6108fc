"""Pieces shared by the gReLU-facing models (Caduceus, HyenaDNA): output cropping and binning."""

from torch import nn


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
