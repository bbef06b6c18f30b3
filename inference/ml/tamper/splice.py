"""Injection ``splice``: a real tumour cut from another patient's slice, resized, rotated and mirrored within
plausible bounds, its intensities matched to the target's brain tissue, placed inside brain tissue (not on skull,
scalp, background or ventricles) and Poisson-blended."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy, analyse
from .base import INJECT, NotApplicable, TamperMethod, TamperRequest
from .blend import poisson_blend

MIN_AREA = 60
MAX_TISSUE_FRACTION = 0.25  # an injected tumour covers at most this share of the brain tissue
SCALE_RANGE = (0.7, 1.3)
ROTATION_DEG = 30.0
PAD = 8


def largest_component(mask: np.ndarray) -> np.ndarray:
    labels, n = ndi.label(mask)
    if n <= 1:
        return mask.astype(bool)
    sizes = ndi.sum(mask, labels, index=np.arange(1, n + 1))
    return labels == (int(np.argmax(sizes)) + 1)


def tissue_stats(image: np.ndarray, where: np.ndarray) -> tuple[float, float]:
    vals = image[where].astype(np.float64)
    if vals.size < 50:
        vals = image[image > 0].astype(np.float64)
    if vals.size < 50:
        raise NotApplicable("no brain tissue on this slice")
    q25, q50, q75 = np.percentile(vals, [25, 50, 75])
    return float(q50), float(max(q75 - q25, 1.0))


class Splice(TamperMethod):
    name = "splice"
    kind = INJECT

    def edit(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator):
        source, _, region, params = self.place(request, anatomy, rng)
        return poisson_blend(request.image, source, region), region, params

    def place(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator):
        """The donor tumour, intensity-matched, resized, rotated and placed: (the target with the donor's
        pixels pasted in, the tumour's mask there, the region to blend (tumour plus a band), parameters)."""
        donor_img = np.asarray(request.donor_image)
        if anatomy.tissue_area < 50:
            raise NotApplicable("no brain tissue on this slice")
        tumour = largest_component(np.asarray(request.donor_mask, dtype=bool))
        if tumour.sum() < MIN_AREA:
            raise NotApplicable("donor tumour too small")
        donor_anat = analyse(donor_img, exclude=tumour)

        # intensity match: tumour-to-tissue contrast of the donor, expressed in the target's tissue scale
        d_med, d_iqr = tissue_stats(donor_img, donor_anat.tissue)
        t_med, t_iqr = tissue_stats(request.image, anatomy.tissue)
        ratio = float(np.clip(t_iqr / d_iqr, 0.5, 2.0))
        matched = (donor_img.astype(np.float64) - d_med) * ratio + t_med

        ys, xs = np.nonzero(tumour)
        y0, y1 = max(0, ys.min() - PAD), min(donor_img.shape[0], ys.max() + PAD + 1)
        x0, x1 = max(0, xs.min() - PAD), min(donor_img.shape[1], xs.max() + PAD + 1)
        crop = matched[y0:y1, x0:x1]
        crop_mask = tumour[y0:y1, x0:x1].astype(np.float32)

        tissue_area = max(anatomy.tissue_area, 1)
        base_area = float(tumour.sum())
        max_scale = np.sqrt(MAX_TISSUE_FRACTION * tissue_area / base_area)
        lo, hi = SCALE_RANGE
        hi = min(hi, max_scale)
        lo = max(lo, np.sqrt(MIN_AREA / base_area))
        if hi < lo:
            raise NotApplicable("the donor tumour does not fit this brain at a plausible size")
        scale = float(rng.uniform(lo, hi))
        angle = float(rng.uniform(-ROTATION_DEG, ROTATION_DEG))
        flip = bool(rng.random() < 0.5)
        if flip:
            crop, crop_mask = crop[:, ::-1], crop_mask[:, ::-1]

        ch, cw = crop.shape
        centre = (cw / 2.0, ch / 2.0)
        m = cv2.getRotationMatrix2D(centre, angle, scale)
        corners = np.array([[0, 0, 1], [cw, 0, 1], [0, ch, 1], [cw, ch, 1]], np.float64) @ m.T
        ow = int(np.ceil(corners[:, 0].max() - corners[:, 0].min()))
        oh = int(np.ceil(corners[:, 1].max() - corners[:, 1].min()))
        m[0, 2] -= corners[:, 0].min()
        m[1, 2] -= corners[:, 1].min()
        patch = cv2.warpAffine(np.ascontiguousarray(crop, np.float32), m, (ow, oh), flags=cv2.INTER_LINEAR,
                               borderMode=cv2.BORDER_REFLECT)
        pmask = cv2.warpAffine(np.ascontiguousarray(crop_mask), m, (ow, oh), flags=cv2.INTER_LINEAR) > 0.5
        if pmask.sum() < MIN_AREA:
            raise NotApplicable("the transformed tumour is too small")
        band = int(rng.integers(2, 5))
        region_local = ndi.binary_dilation(pmask, iterations=band)

        h, w = request.image.shape
        if oh >= h - 2 or ow >= w - 2:
            raise NotApplicable("the donor tumour is larger than the slice")
        allowed = anatomy.interior
        tissue = anatomy.tissue
        ty, tx = np.nonzero(tissue)
        if ty.size == 0:
            raise NotApplicable("no brain tissue on this slice")
        ly, lx = np.nonzero(region_local)
        py, px = np.nonzero(pmask)
        for attempt in range(80):
            k = int(rng.integers(ty.size))
            oy = int(ty[k] - oh // 2)
            ox = int(tx[k] - ow // 2)
            if oy < 1 or ox < 1 or oy + oh >= h - 1 or ox + ow >= w - 1:
                continue
            if not allowed[ly + oy, lx + ox].all():
                continue
            if tissue[py + oy, px + ox].mean() < 0.85:
                continue
            break
        else:
            raise NotApplicable("no place inside brain tissue fits the tumour")

        source = request.image.astype(np.float64).copy()
        source[oy:oy + oh, ox:ox + ow] = patch
        region = np.zeros((h, w), bool)
        region[ly + oy, lx + ox] = True
        placed = np.zeros((h, w), bool)
        placed[py + oy, px + ox] = True
        params = {
            "scale": round(scale, 3), "angle": round(angle, 2), "flip": flip, "band": band,
            "position": [int(oy + oh // 2), int(ox + ow // 2)], "placement_attempts": attempt + 1,
            "intensity": {"donor_median": round(d_med, 2), "target_median": round(t_med, 2),
                          "ratio": round(ratio, 3)},
            "tumour_area": int(pmask.sum()),
        }
        return source, placed, region, params
