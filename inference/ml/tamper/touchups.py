"""What a careful attacker does after the edit, each applied at random and only inside the edited region:

- ``resample``: the region is shrunk and enlarged again (what a resize in an editor leaves behind);
- ``seam_blur``: a slight blur along the inner edge of the region;
- ``noise``: the region's own texture is smoothed away and real noise, cut from a healthy place of the same
  slice, is added back scaled to the noise level measured in a ring around the region (MRI noise is not
  white and not uniform, so a transplant fits better than synthetic Gaussian noise). The scale of what is
  replaced is the method's ``detail_sigma``: 1 px (noise only) for injections, whose content carries a
  tumour's own texture, and 6 px for removals, whose fill (inpainted, generated, or mirrored and
  Poisson-blended) lacks the fine structure of brain tissue (sulci, grey/white matter detail) as much as its
  noise: the donor's detail up to that scale is transplanted, from inside the head away from the skull so no
  skull edge comes along; its structure keeps its own amplitude, only its 1 px noise is scaled to the level
  around the region;
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

PROBABILITIES = {"resample": 0.3, "noise": 0.95, "seam_blur": 0.5, "jpeg": 0.25}
# px inside the region's edge where border calibration measures the noise: the outermost 2 px (the feathered
# seam) read noisier than the tissue beyond, so a narrow band leaves the region too quiet just inside its edge
CALIBRATION_BAND = 6
DONOR_CANDIDATES = 24  # places drawn for a noise transplant; the one most like the surroundings is used


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
    interior: np.ndarray | None = None  # bool: inside the head away from skull and scalp (detail donors)


def _resample(edited: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    factor = float(rng.uniform(0.6, 0.9))
    h, w = edited.shape
    small = cv2.resize(edited.astype(np.float32), (max(8, int(w * factor)), max(8, int(h * factor))),
                       interpolation=cv2.INTER_AREA)
    back = cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    return np.where(mask, back, edited), {"factor": round(factor, 3)}


def donor_shifts(mask: np.ndarray, allowed: np.ndarray) -> np.ndarray:
    """Every shift (dy, dx) that moves the whole of ``mask`` onto ``allowed`` pixels, as an (n, 2) array."""
    from scipy.signal import fftconvolve

    ys, xs = np.nonzero(mask)
    y0, x0 = ys.min(), xs.min()
    footprint = mask[y0:ys.max() + 1, x0:xs.max() + 1].astype(np.float64)
    bad = (~allowed).astype(np.float64)
    if footprint.shape[0] > bad.shape[0] or footprint.shape[1] > bad.shape[1]:
        return np.zeros((0, 2), int)
    # hits[py, px] = number of bad pixels under the footprint placed with its corner at (py, px)
    hits = fftconvolve(bad, footprint[::-1, ::-1], mode="valid")
    py, px = np.nonzero(hits < 0.5)
    return np.stack([py - y0, px - x0], axis=1)


def _noise_field(mask: np.ndarray, ctx: Context, rng: np.random.Generator,
                 detail_sigma: float = 1.0) -> tuple[np.ndarray, np.ndarray, dict]:
    """Noise for the region at the level measured just outside it: real residual texture (the original less
    its Gaussian blur of ``detail_sigma``) from a healthy place of the same slice that looks most like the
    region's surroundings in brightness and amount of detail (among a few drawn at random from every place
    the region fits), else lightly correlated Gaussian noise (and then only the 1 px noise is replaced:
    ``params["detail_sigma"]``).

    Returns (noise, structure, params): the 1 px residual, scaled to the noise level around the region, and
    the donor's detail between 1 px and ``detail_sigma`` at its own amplitude (zero when only noise is
    replaced): tissue structure is contrast, not noise, and scaling it by a noise ratio flattens it."""
    around = ring(mask, 0, 4) & ctx.head
    orig = ctx.original.astype(np.float64)
    target_sigma = noise_sigma(residual(orig), around)
    donor_area = ctx.head if detail_sigma <= 1.0 or ctx.interior is None else ctx.interior
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    edge = np.zeros((h, w), bool)
    edge[1:-1, 1:-1] = True
    shifts = donor_shifts(mask, donor_area & ~ctx.forbidden & edge)
    donor = None
    detail = residual(orig, detail_sigma)
    if len(shifts):
        picks = shifts[rng.choice(len(shifts), size=min(DONOR_CANDIDATES, len(shifts)), replace=False)]
        near = ring(mask, 0, 8) & ctx.head
        if not near.any():
            near = mask
        level = float(np.mean(orig[near]))
        texture = np.log(float(np.std(detail[near])) + 1e-3)
        # like tissue: the same brightness (relative) and the same amount of detail (log ratio) as around
        costs = [abs(float(np.mean(orig[ys + dy, xs + dx])) - level) / max(level, 1.0)
                 + abs(np.log(float(np.std(detail[ys + dy, xs + dx])) + 1e-3) - texture) for dy, dx in picks]
        donor = tuple(int(v) for v in picks[int(np.argmin(costs))])
    structure = np.zeros((h, w))
    if donor is None:
        field = ndi.gaussian_filter(rng.standard_normal((h, w)), 0.5)
        params = {"source": "synthetic", "detail_sigma": 1.0}
    else:
        field = np.zeros((h, w))
        noise = residual(orig)
        field[ys, xs] = noise[ys + donor[0], xs + donor[1]]
        if detail_sigma > 1.0:
            structure[ys, xs] = (detail - noise)[ys + donor[0], xs + donor[1]]
        params = {"source": "transplant", "shift": [donor[0], donor[1]], "detail_sigma": detail_sigma}
    field = np.where(mask, field, 0.0)
    # scale with the same estimator that measured the target, applied to the field as it will be seen
    measured = noise_sigma(residual(field), ndi.binary_erosion(mask, iterations=2) if mask.sum() > 200 else mask)
    field *= target_sigma / measured if measured > 1e-6 else 0.0
    params["sigma"] = round(target_sigma, 3)
    return field, structure, params


def _seam_blur(edited: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    sigma = float(rng.uniform(0.4, 0.8))
    band = mask & ~ndi.binary_erosion(mask, iterations=2)
    blurred = ndi.gaussian_filter(edited, sigma)
    return np.where(band, blurred, edited), {"sigma": round(sigma, 3)}


def _jpeg(edited: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
    quality = int(rng.integers(85, 98))
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


def finish(
    original: np.ndarray, edited: np.ndarray, mask: np.ndarray, ctx: Context, rng: np.random.Generator, *,
    feather: float, probabilities: dict[str, float] | None = None, calibrate_on: str = "border",
    detail_sigma: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """Draw the touch-ups, apply them in an attacker's order and composite into ``original`` inside ``mask``.

    Order: resample and seam blur shape the content; it is feathered into the original; noise is re-synthesised
    over the whole region last but one, with per-pixel weight so that the feathered edge (where the original's
    own noise is partly kept) ends at the same noise level as the rest; JPEG comes last, as when saving.

    ``calibrate_on`` says where the noise gain is measured: ``"border"`` (the 6 px band inside the region's edge,
    right for removals, whose truth has no edge there) or ``"interior"`` (the region less a 4 px band, for an
    injection whose content brings a tumour edge: a real tumour's border carries that edge above the tissue's
    noise level, and matching the band would flatten it). Too small an interior falls back to the border.
    ``detail_sigma``: the scale below which the content is replaced by the transplanted texture (see the
    module docstring).
    """
    from .blend import feather_alpha

    if calibrate_on not in ("border", "interior"):
        raise ValueError(f"calibrate_on must be 'border' or 'interior', not {calibrate_on!r}.")
    probs = dict(PROBABILITIES, **(probabilities or {}))
    draws = {name: bool(rng.random() < probs[name]) for name in ("resample", "noise", "seam_blur", "jpeg")}
    out = edited.astype(np.float64)
    orig = original.astype(np.float64)
    applied: dict[str, dict] = {}
    if draws["resample"]:
        out, applied["resample"] = _resample(out, mask, rng)
    if draws["seam_blur"]:
        out, applied["seam_blur"] = _seam_blur(out, mask, rng)
    alpha = feather_alpha(mask, feather)
    if draws["noise"]:
        field, structure, applied["noise"] = _noise_field(mask, ctx, rng, detail_sigma)
        smooth = ndi.gaussian_filter(out, applied["noise"]["detail_sigma"])
        # the original keeps (1 - alpha) of its noise: add the rest so the variance is the same everywhere
        weight = np.sqrt(np.clip(1.0 - (1.0 - alpha) ** 2, 0.0, 1.0))
        # structure is content: it is feathered in like the content
        base = alpha * (smooth + structure) + (1.0 - alpha) * orig
        # calibrate on the result itself: the smoothed content and the seam keep some high frequencies
        target, gain = applied["noise"]["sigma"], 1.0
        interior = ndi.binary_erosion(mask, iterations=4)
        band = mask & ~ndi.binary_erosion(mask, iterations=CALIBRATION_BAND)
        measure_on = interior if calibrate_on == "interior" and interior.sum() >= 50 else band
        for _ in range(2):
            measured = noise_sigma(residual(base + gain * weight * field), measure_on)
            if measured <= 1e-6 or target <= 0:
                break
            gain *= target / measured
        applied["noise"]["gain"] = round(gain, 3)
        out = base + gain * weight * field
    else:
        out = alpha * out + (1.0 - alpha) * orig
    if draws["jpeg"]:
        out, applied["jpeg"] = _jpeg(out, mask, rng)
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.where(mask, result, original), applied
