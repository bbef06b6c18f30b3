"""Removal ``inpaint``: the tumour plus a margin filled from its surroundings by OpenCV's Telea (fast marching)
or Navier-Stokes inpainting."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy
from .base import REMOVE, NotApplicable, TamperMethod, TamperRequest

ALGORITHMS = {"telea": cv2.INPAINT_TELEA, "ns": cv2.INPAINT_NS}
MARGIN_RANGE = (4, 8)


def removal_region(tumour: np.ndarray, margin: int, shape: tuple[int, int]) -> np.ndarray:
    region = ndi.binary_dilation(tumour, iterations=margin)
    region[0, :] = region[-1, :] = region[:, 0] = region[:, -1] = False
    if not region.any():
        raise NotApplicable("empty removal region")
    return region


class Inpaint(TamperMethod):
    name = "inpaint"
    kind = REMOVE
    # healthy tissue's detail replaces the fill's below this scale (px): an inpainted fill has no structure of its own
    detail_sigma = 6.0

    def edit(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator):
        algorithm = "telea" if rng.random() < 0.5 else "ns"
        margin = int(rng.integers(MARGIN_RANGE[0], MARGIN_RANGE[1] + 1))
        radius = int(rng.integers(3, 8))
        region = removal_region(np.asarray(request.tumour, bool), margin, request.image.shape)
        filled = cv2.inpaint(request.image, region.astype(np.uint8), radius, ALGORITHMS[algorithm])
        return filled.astype(np.float64), region, {"algorithm": algorithm, "margin": margin, "radius": radius}
