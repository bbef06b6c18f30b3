"""Forensic input channels: what the detector sees besides the intensity.

Tampering (a spliced or inpainted region) changes the image's noise more than its content: blending, inpainting
and resampling smooth the sensor/reconstruction noise, and a pasted patch carries another noise level. A CNN that
starts from intensities learns content first. So the model's first layer sees, next to the intensity:

- SRM high-pass residuals (Fridrich and Kodovsky 2012; used for manipulation detection by Zhou et al., RGB-N,
  CVPR 2018): three fixed 5x5 filters, truncated to +-TRUNCATION grey levels (the "TLU" of steganalysis) so that
  edges do not dominate;
- a constrained convolution (Bayar and Stamm 2018): learnable 5x5 prediction-error filters whose centre weight
  is -1 and whose other weights sum to 1, re-projected at every forward pass so the constraint always holds.

The stem works on the normalised tensor torchvision's transform produces; it undoes the normalisation to compute
residuals in grey levels, so the truncation means the same for every input.
"""
from __future__ import annotations

import torch
from torch import nn
from torch.nn import functional as F

# The model's fixed input normalisation: uint8 / 255, then (x - MEAN) / STD.
IMAGE_MEAN = 0.5
IMAGE_STD = 0.25
TRUNCATION = 3.0  # grey levels

_SRM_KERNELS = (
    # KV-like second-order (first SRM filter of RGB-N)
    [[0, 0, 0, 0, 0], [0, -1, 2, -1, 0], [0, 2, -4, 2, 0], [0, -1, 2, -1, 0], [0, 0, 0, 0, 0]],
    # KV 5x5
    [[-1, 2, -2, 2, -1], [2, -6, 8, -6, 2], [-2, 8, -12, 8, -2], [2, -6, 8, -6, 2], [-1, 2, -2, 2, -1]],
    # horizontal second-order
    [[0, 0, 0, 0, 0], [0, 0, 0, 0, 0], [0, 1, -2, 1, 0], [0, 0, 0, 0, 0], [0, 0, 0, 0, 0]],
)
_SRM_NORMS = (4.0, 12.0, 2.0)


def srm_kernels() -> torch.Tensor:
    """The three SRM filters as a (3, 1, 5, 5) float tensor."""
    return torch.stack(
        [torch.tensor(k, dtype=torch.float32) / n for k, n in zip(_SRM_KERNELS, _SRM_NORMS)]
    ).unsqueeze(1)


class ConstrainedConv2d(nn.Module):
    """Bayar-Stamm constrained convolution: each filter predicts the centre pixel from its neighbours."""

    def __init__(self, out_channels: int = 3, kernel_size: int = 5):
        super().__init__()
        if kernel_size % 2 != 1:
            raise ValueError("kernel_size must be odd")
        self.kernel_size = kernel_size
        self.weight = nn.Parameter(torch.empty(out_channels, 1, kernel_size, kernel_size))
        nn.init.uniform_(self.weight, 0.0, 1.0)
        centre = torch.zeros(1, 1, kernel_size, kernel_size)
        centre[..., kernel_size // 2, kernel_size // 2] = 1.0
        self.register_buffer("centre", centre, persistent=False)

    def constrained_weight(self) -> torch.Tensor:
        off_centre = self.weight * (1.0 - self.centre)
        total = off_centre.sum(dim=(2, 3), keepdim=True)
        # Keep the denominator away from 0 without changing its sign.
        total = torch.where(total.abs() < 1e-6, torch.full_like(total, 1e-6), total)
        return off_centre / total - self.centre

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.constrained_weight(), padding=self.kernel_size // 2)


class ForensicStem(nn.Module):
    """(N, 1, H, W) normalised intensity -> (N, out_channels, H, W): intensity, SRM residuals, constrained conv."""

    def __init__(self, *, srm: bool = True, constrained: int = 3):
        super().__init__()
        self.use_srm = srm
        self.constrained = ConstrainedConv2d(constrained) if constrained > 0 else None
        if srm:
            self.register_buffer("srm_weight", srm_kernels(), persistent=False)
        self.out_channels = 1 + (3 if srm else 0) + constrained
        # Residuals and intensity live on different scales; a norm layer puts them on one.
        self.norm = nn.BatchNorm2d(self.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        grey_levels = (x * IMAGE_STD + IMAGE_MEAN) * 255.0
        channels = [x]
        if self.use_srm:
            residual = F.conv2d(grey_levels, self.srm_weight, padding=2)
            channels.append(residual.clamp(-TRUNCATION, TRUNCATION) / TRUNCATION)
        if self.constrained is not None:
            residual = self.constrained(grey_levels)
            channels.append(residual.clamp(-4 * TRUNCATION, 4 * TRUNCATION) / (4 * TRUNCATION))
        return self.norm(torch.cat(channels, dim=1))
