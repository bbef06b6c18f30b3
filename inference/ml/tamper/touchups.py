"""What a careful attacker does after the edit, each applied at random and only inside the edited region:

- ``resample``: the region is shrunk and enlarged again (what a resize in an editor leaves behind);
- ``noise``: the region's own texture is smoothed away and real noise, cut from a healthy place of the same
  slice, is added back scaled to the noise level measured in a ring around the region (MRI noise is not
  white and not uniform, so a transplant fits better than synthetic Gaussian noise);
- ``seam_blur``: a slight blur along the inner edge of the region;
- ``jpeg``: the region's bounding box is JPEG-encoded and decoded (a lossy round trip in an editor).

Whole-slice JPEG or resampling would move every pixel of the slice, which the dataset contract forbids for
the region outside the mask; they are therefore confined to the region too.
"""
from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np
from scipy import ndimage as ndi

from .anatomy import ring

PROBABILITIES = {"resample": 0.3, "noise": 0.9, "seam_blur": 0.5, "jpeg": 0.25}


def residual(image: np.ndarray, sigma: float = 1.0) -> np.ndarray:
    img = image.astype(np.float64)
    return img - ndi.gaussian_filter(img, sigma)


def noise_sigma(res: np.ndarray, where: np.ndarray) -> float:
    """Robust noise level (MAD of the high-pass residual) over ``where``."""
    vals = res[where]
    if vals.size < 20:
        return 0.0
    return float(1.4826 * np.median(np.abs(vals - np.median(vals))))


@dataclass
class Context:
    original: np.ndarray  # uint8 slice before the edit
    head: np.ndarray  # bool head mask of the original
    forbidden: np.ndarray  # bool: where no noise may be cut from (the region, the tumour)


def _resample(edited: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    factor = float(rng.uniform(0.6, 0.9))
    h, w = edited.shape
    small = cv2.resize(edited.astype(np.float32), (max(8, int(w * factor)), max(8, int(h * factor))),
                       interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    return np.where(mask, back, edited), {"factor": round(factor, 3)}


def _noise(edited: np.ndarray, mask: np.ndarray, ctx: Context, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    res_orig = residual(ctx.original)
    around = ring(mask, 1, 8) & ctx.head
    target_sigma = noise_sigma(res_orig, around)
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    # a shift that moves the region onto healthy head pixels, away from the edit
    donor = None
    for _ in range(60):
        dy = int(rng.integers(-h // 3, h // 3 + 1))
        dx = int(rng.integers(-w // 3, w // 3 + 1))
        sy, sx = ys + dy, xs + dx
        if sy.min() < 1 or sx.min() < 1 or sy.max() >= h - 1 or sx.max() >= w - 1:
            continue
        if not ctx.head[sy, sx].all() or ctx.forbidden[sy, sx].any():
            continue
        donor = (dy, dx)
        break
    smoothed = ndi.gaussian_filter(edited, 1.0)
    if donor is None:  # no clean place: synthetic noise at the measured level, lightly correlated
        field = ndi.gaussian_filter(rng.standard_normal((h, w)), 0.5)
        field /= max(field.std(), 1e-6)
        src_sigma, params = 1.0, {"source": "synthetic"}
    else:
        shifted = np.zeros_like(res_orig)
        shifted[ys, xs] = res_orig[ys + donor[0], xs + donor[1]]
        field = shifted
        src_sigma = noise_sigma(res_orig, _shift_mask(mask, donor))
        params = {"source": "transplant", "shift": [donor[0], donor[1]]}
    scale = target_sigma / src_sigma if src_sigma > 1e-6 else 0.0
    out = np.where(mask, smoothed + field * scale, edited)
    params["sigma"] = round(target_sigma, 3)
    return out, params


def _shift_mask(mask: np.ndarray, shift: tuple[int, int]) -> np.ndarray:
    ys, xs = np.nonzero(mask)
    out = np.zeros_like(mask)
    out[ys + shift[0], xs + shift[1]] = True
    return out


def _seam_blur(edited: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    sigma = float(rng.uniform(0.5, 1.0))
    band = mask & ~ndi.binary_erosion(mask, iterations=2)
    blurred = ndi.gaussian_filter(edited, sigma)
    return np.where(band, blurred, edited), {"sigma": round(sigma, 3)}


def _jpeg(edited: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    quality = int(rng.integers(75, 96))
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    y0, x0 = (ys.min() // 8) * 8, (xs.min() // 8) * 8
    y1, x1 = min(h, (ys.max() // 8 + 1) * 8), min(w, (xs.max() // 8 + 1) * 8)
    roi = np.clip(np.rint(edited[y0:y1, x0:x1]), 0, 255).astype(np.uint8)
    ok, buf = cv2.imencode(".jpg", roi, [cv2.IMWRITE_JPEG_QUALITY, quality])
    dec = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE).astype(np.float64)
    out = edited.copy()
    sub = out[y0:y1, x0:x1]
    out[y0:y1, x0:x1] = np.where(mask[y0:y1, x0:x1], dec, sub)
    return out, {"quality": quality}


def apply_random(
    edited: np.ndarray, mask: np.ndarray, ctx: Context, rng: np.random.Generator,
    probabilities: dict[str, float] | None = None,
) -> tuple[np.ndarray, dict]:
    """The touch-ups drawn for this edit (in an attacker's order), applied inside ``mask`` only."""
    probs = dict(PROBABILITIES, **(probabilities or {}))
    draws = {name: bool(rng.random() < probs[name]) for name in ("resample", "noise", "seam_blur", "jpeg")}
    out = edited.astype(np.float64)
    applied: dict[str, dict] = {}
    if draws["resample"]:
        out, applied["resample"] = _resample(out, mask, rng)
    if draws["noise"]:
        out, applied["noise"] = _noise(out, mask, ctx, rng)
    if draws["seam_blur"]:
        out, applied["seam_blur"] = _seam_blur(out, mask, rng)
    if draws["jpeg"]:
        out, applied["jpeg"] = _jpeg(out, mask, rng)
    return out, applied
