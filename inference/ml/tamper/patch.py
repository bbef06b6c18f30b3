"""Removal ``patch``: the tumour plus a margin replaced by healthy tissue from a matching place, the mirrored
hemisphere when it is tumour-free (the brain is nearly symmetric), else a healthy place of the same slice,
Poisson-blended so its intensities meet the surroundings."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy
from .base import REMOVE, NotApplicable, TamperMethod, TamperRequest
from .blend import poisson_blend
from .inpaint import MARGIN_RANGE, removal_region

ANGLES = (-6.0, -3.0, 0.0, 3.0, 6.0)


def mirror_transform(image: np.ndarray, head: np.ndarray, avoid: np.ndarray) -> tuple[np.ndarray, np.ndarray, dict]:
    """The image mirrored about its best-fitting vertical midline (small tilt allowed): (mirrored image,
    2x3 affine that maps output pixels to source pixels, parameters)."""
    h, w = image.shape
    img = image.astype(np.float32)
    cols = np.nonzero(head.any(axis=0))[0]
    cx0 = (cols.min() + cols.max()) / 2.0 if cols.size else w / 2.0
    weight = (head & ~avoid).astype(np.float32)
    best = None
    for angle in ANGLES:
        for shift in range(-12, 13, 2):
            cx = cx0 + shift / 2.0
            m = _mirror_matrix(cx, h / 2.0, angle)
            mir = cv2.warpAffine(img, m, (w, h), flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP)
            wmir = cv2.warpAffine(weight, m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP)
            ww = weight * wmir
            cost = float((np.abs(img - mir) * ww).sum() / max(ww.sum(), 1.0))
            if best is None or cost < best[0]:
                best = (cost, cx, angle, m, mir)
    cost, cx, angle, m, mir = best
    return mir.astype(np.float64), m, {"midline_x": round(float(cx), 2), "tilt": angle, "asymmetry": round(cost, 2)}


def _mirror_matrix(cx: float, cy: float, angle: float) -> np.ndarray:
    """Source coordinates of each output pixel: reflect across the line through (cx, cy) tilted by angle."""
    t = np.deg2rad(angle)
    # reflection across a line through the origin at angle (90deg + t) from the x axis
    phi = np.pi / 2 + t
    c, s = np.cos(2 * phi), np.sin(2 * phi)
    r = np.array([[c, s], [s, -c]])
    offset = np.array([cx, cy]) - r @ np.array([cx, cy])
    return np.hstack([r, offset[:, None]]).astype(np.float64)


def _map_mask(mask: np.ndarray, m: np.ndarray) -> np.ndarray:
    h, w = mask.shape
    return cv2.warpAffine(mask.astype(np.uint8), m, (w, h), flags=cv2.INTER_NEAREST | cv2.WARP_INVERSE_MAP) > 0


def _translated(image: np.ndarray, dy: int, dx: int) -> np.ndarray:
    """source[y, x] = image[y + dy, x + dx], edges replicated."""
    h, w = image.shape
    yy = np.clip(np.arange(h) + dy, 0, h - 1)
    xx = np.clip(np.arange(w) + dx, 0, w - 1)
    return image.astype(np.float64)[np.ix_(yy, xx)]


class Patch(TamperMethod):
    name = "patch"
    kind = REMOVE
    # healthy tissue's detail replaces the fill's below this scale (px): the mirrored tissue keeps its own layout
    # above it; below it, interpolation (tilted mirror) and Poisson blending leave it flatter than tissue
    detail_sigma = 6.0

    def edit(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator):
        tumour = np.asarray(request.tumour, bool)
        margin = int(rng.integers(MARGIN_RANGE[0], MARGIN_RANGE[1] + 1))
        region = removal_region(tumour, margin, request.image.shape)
        image = request.image
        h, w = image.shape
        lesion = ndi.binary_dilation(tumour, iterations=margin + 4)
        mirrored, m, mparams = mirror_transform(image, anatomy.head, lesion)
        # the mirrored source of every region pixel must be healthy head tissue
        source_lesion = _map_mask(lesion, m)  # output pixels whose source lies in the lesion
        source_head = _map_mask(anatomy.head, m)
        if not (region & source_lesion).any() and source_head[region].all():
            params = {"source": "mirror", "margin": margin, **mparams}
            return poisson_blend(image, mirrored, region), region, params

        # fall back: a translated healthy patch of the same slice whose surroundings look most like the
        # lesion's surroundings (so the copied tissue is of the same kind and depth)
        ys, xs = np.nonzero(region)
        free = anatomy.tissue & ~lesion
        around = ndi.binary_dilation(region, iterations=6) & ~region & anatomy.head
        ry, rx = np.nonzero(around)
        target_ring = image[ry, rx].astype(np.float64)
        best = None
        for attempt in range(150):
            dy = int(rng.integers(-h // 3, h // 3 + 1))
            dx = int(rng.integers(-w // 3, w // 3 + 1))
            sy, sx = ys + dy, xs + dx
            if sy.min() < 0 or sx.min() < 0 or sy.max() >= h or sx.max() >= w:
                continue
            if free[sy, sx].mean() < 0.9:
                continue
            qy, qx = np.clip(ry + dy, 0, h - 1), np.clip(rx + dx, 0, w - 1)
            cost = float(np.abs(image[qy, qx].astype(np.float64) - target_ring).mean()) if ry.size else 0.0
            if best is None or cost < best[0]:
                best = (cost, dy, dx)
        if best is None:
            raise NotApplicable("no healthy tissue to copy (tumour crosses the midline and fills the brain)")
        cost, dy, dx = best
        params = {"source": "shift", "shift": [dy, dx], "margin": margin, "ring_difference": round(cost, 2)}
        return poisson_blend(image, _translated(image, dy, dx), region), region, params
