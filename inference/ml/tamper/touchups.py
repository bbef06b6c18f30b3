"""What a careful attacker does after the edit, each applied at random and only inside the edited region:

- ``resample``: the region is shrunk and enlarged again (what a resize in an editor leaves behind);
- ``seam_blur``: a slight blur along the inner edge of the region;
- ``noise``: the region's own texture is smoothed away and real noise, cut from a healthy place of the same
  slice, is added back scaled to the noise level measured in a ring around the region (MRI noise is not
  white and not uniform, so a transplant fits better than synthetic Gaussian noise). The scale of what is
  replaced is the method's ``detail_sigma``: 1 px or less (noise only) for injections, whose content carries a
  tumour's own texture (0.7 px for ``splice``: a 1 px blur also takes 10-20 % off the tumour's 1.5-3 px
  texture), and 6 px for removals, whose fill (inpainted, generated, or mirrored and
  Poisson-blended) lacks the fine structure of brain tissue (sulci, grey/white matter detail) as much as its
  noise. For removals the donor's detail up to that scale is transplanted, from inside the head away from the
  skull so no skull edge comes along, and from the place whose *surroundings* look most like the region's
  (brightness and detail at three scales of the ring 2-8 px outside): tissue is told by its neighbourhood, and
  a removal's neighbourhood is what the attacker cannot change. Its structure is then scaled, band by band
  (1-3 and 3-6 px for 6), so that the fill has as much detail relative to the region's ring as the donor place
  has relative to its own ring: a real interior carries less detail than its ring does (log std 0.25-0.4 less
  on tumour-free slices), and the donor's own amplitude left fills too detailed where the region sits in smooth
  tissue and too flat where it sits in busy tissue;
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
DETAIL_DONOR_CANDIDATES = 64  # the same for a detail transplant (removals), chosen by its own surroundings
DETAIL_RING = (2, 8)  # px outside a region: the surroundings a detail donor is matched on
DETAIL_INSIDE = 3  # px of the region's edge left out where its detail is measured (the feathered seam)
DETAIL_ROUNDS = 3  # alternations of the noise calibration and the per-band structure gains
MAX_STRUCTURE_GAIN = 3.0
# interior calibration (injections): noise is only ever added, so where the smoothed content alone is already
# noisier than ADAPTIVE_MARGIN x the target, it is smoothed more, at these sigmas (px) in turn (`content_sigma`)
ADAPTIVE_SMOOTHING = (1.0, 1.4, 2.0)
ADAPTIVE_MARGIN = 0.9


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


def dog(image: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Detail between scales ``lo`` and ``hi`` px (difference of Gaussians; ``lo`` 0 keeps everything below hi)."""
    return (ndi.gaussian_filter(image, lo) if lo > 0 else image) - ndi.gaussian_filter(image, hi)


def detail_bands(detail_sigma: float) -> list[tuple[float, float]]:
    """The scales (px) of a detail transplant: the 1 px noise, then two bands up to ``detail_sigma``."""
    mid = max(1.0, detail_sigma / 2.0)
    return [(0.0, 1.0), (1.0, mid), (mid, detail_sigma)]


def log_std(values: np.ndarray) -> float:
    return float(np.log(values.std() + 1e-3)) if values.size >= 20 else float("nan")


@dataclass
class Transplant:
    """What the noise touch-up adds: ``noise`` (the 1 px residual, scaled to the level around the region),
    ``bands`` (the donor's structure between 1 px and ``detail_sigma``, one image per band of
    :func:`detail_bands` past the first; empty when only noise is replaced) and ``targets`` (per band, the log
    std of detail the fill should have inside the region: its ring's plus the donor place's own
    interior-to-ring difference; None to keep the donor's amplitude)."""
    noise: np.ndarray
    bands: list[np.ndarray]
    targets: list[float] | None
    params: dict


def _noise_field(mask: np.ndarray, ctx: Context, rng: np.random.Generator,
                 detail_sigma: float = 1.0) -> Transplant:
    """Noise for the region at the level measured just outside it: real residual texture (the original less
    its Gaussian blur of 1 px) from a healthy place of the same slice, else lightly correlated Gaussian noise
    (and then only the 1 px noise is replaced: ``params["detail_sigma"]``). With ``detail_sigma`` above 1 px
    (removals) the donor also gives its structure up to that scale (see the module docstring)."""
    around = ring(mask, 0, 4) & ctx.head
    orig = ctx.original.astype(np.float64)
    target_sigma = noise_sigma(residual(orig), around)
    detail = detail_sigma > 1.0 and ctx.interior is not None
    donor_area = ctx.interior if detail else ctx.head
    ys, xs = np.nonzero(mask)
    h, w = mask.shape
    edge = np.zeros((h, w), bool)
    edge[1:-1, 1:-1] = True
    allowed = donor_area & ~ctx.forbidden & edge
    shifts = donor_shifts(mask, allowed)
    donor, targets = None, None
    if len(shifts):
        if detail:
            donor, targets = _detail_donor(mask, ctx, shifts, rng, detail_sigma)
        else:
            donor = _noise_donor(mask, ctx, shifts, rng)
    bands: list[np.ndarray] = []
    if donor is None:
        field = ndi.gaussian_filter(rng.standard_normal((h, w)), 0.5)
        params = {"source": "synthetic", "detail_sigma": 1.0}
        targets = None
    else:
        field = np.zeros((h, w))
        field[ys, xs] = residual(orig)[ys + donor[0], xs + donor[1]]
        if detail:
            for lo, hi in detail_bands(detail_sigma)[1:]:
                band = np.zeros((h, w))
                band[ys, xs] = dog(orig, lo, hi)[ys + donor[0], xs + donor[1]]
                bands.append(band)
        params = {"source": "transplant", "shift": [donor[0], donor[1]],
                  "detail_sigma": detail_sigma if detail else min(detail_sigma, 1.0)}
    field = np.where(mask, field, 0.0)
    # scale with the same estimator that measured the target, applied to the field as it will be seen
    measured = noise_sigma(residual(field), ndi.binary_erosion(mask, iterations=2) if mask.sum() > 200 else mask)
    field *= target_sigma / measured if measured > 1e-6 else 0.0
    params["sigma"] = round(target_sigma, 3)
    return Transplant(field, bands, targets, params)


def _noise_donor(mask: np.ndarray, ctx: Context, shifts: np.ndarray, rng: np.random.Generator):
    """Among a few places drawn at random, the one most like the region's surroundings in brightness and
    amount of 1 px detail."""
    orig = ctx.original.astype(np.float64)
    ys, xs = np.nonzero(mask)
    picks = shifts[rng.choice(len(shifts), size=min(DONOR_CANDIDATES, len(shifts)), replace=False)]
    near = ring(mask, 0, 8) & ctx.head
    if not near.any():
        near = mask
    detail = residual(orig)
    level = float(np.mean(orig[near]))
    texture = np.log(float(np.std(detail[near])) + 1e-3)
    # like tissue: the same brightness (relative) and the same amount of detail (log ratio) as around
    costs = [abs(float(np.mean(orig[ys + dy, xs + dx])) - level) / max(level, 1.0)
             + abs(np.log(float(np.std(detail[ys + dy, xs + dx])) + 1e-3) - texture) for dy, dx in picks]
    return tuple(int(v) for v in picks[int(np.argmin(costs))])


def _detail_donor(mask: np.ndarray, ctx: Context, shifts: np.ndarray, rng: np.random.Generator,
                  detail_sigma: float):
    """Among places drawn at random, the one whose ring (``DETAIL_RING`` px outside, on healthy head pixels)
    is most like the region's ring in brightness and in detail at each of :func:`detail_bands`; with, per
    structure band, the log std of detail the fill should have inside (see :class:`Transplant`), or None
    when the donor's ring is too small to measure."""
    orig = ctx.original.astype(np.float64)
    h, w = mask.shape
    healthy = ctx.head & ~ctx.forbidden
    own_ring = ring(mask, *DETAIL_RING)
    around = own_ring & healthy
    if around.sum() < 20:
        around = own_ring & ctx.head
    if around.sum() < 20:
        return _noise_donor(mask, ctx, shifts, rng), None
    ry, rx = np.nonzero(own_ring)
    bands = [dog(orig, lo, hi) for lo, hi in detail_bands(detail_sigma)]
    level = float(np.mean(orig[around]))
    reference = [log_std(b[around]) for b in bands]
    picks = shifts[rng.choice(len(shifts), size=min(DETAIL_DONOR_CANDIDATES, len(shifts)), replace=False)]
    best, best_cost = None, np.inf
    for dy, dx in picks:
        yy, xx = ry + dy, rx + dx
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        yy, xx = yy[inside], xx[inside]
        keep = healthy[yy, xx]
        yy, xx = yy[keep], xx[keep]
        if yy.size < 20:
            continue
        cost = abs(float(np.mean(orig[yy, xx])) - level) / max(level, 1.0)
        cost += sum(abs(log_std(b[yy, xx]) - r) for b, r in zip(bands, reference)) / len(bands)
        if cost < best_cost:
            best, best_cost = (int(dy), int(dx)), cost
    if best is None:
        return _noise_donor(mask, ctx, shifts, rng), None
    dy, dx = best
    placed = np.zeros((h, w), bool)
    ys, xs = np.nonzero(mask)
    placed[ys + dy, xs + dx] = True
    donor_inside = _detail_inside(placed)
    donor_ring = ring(placed, *DETAIL_RING) & healthy
    targets = [r + log_std(b[donor_inside]) - log_std(b[donor_ring])
               for b, r in zip(bands[1:], reference[1:])]
    return best, (targets if all(np.isfinite(targets)) else None)


def _detail_inside(mask: np.ndarray) -> np.ndarray:
    """The region less its feathered edge, where its detail is measured (the whole region when that is small)."""
    inside = ndi.binary_erosion(mask, iterations=DETAIL_INSIDE)
    return inside if inside.sum() >= 30 else mask


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
    detail_sigma: float = 1.0, noise_ratio: float = 1.0,
) -> tuple[np.ndarray, dict]:
    """Draw the touch-ups, apply them in an attacker's order and composite into ``original`` inside ``mask``.

    Order: resample and seam blur shape the content; it is feathered into the original; noise is re-synthesised
    over the whole region last but one, with per-pixel weight so that the feathered edge (where the original's
    own noise is partly kept) ends at the same noise level as the rest; JPEG comes last, as when saving.

    ``calibrate_on`` says where the noise gain is measured: ``"border"`` (the 6 px band inside the region's edge,
    right for removals, whose truth has no edge there) or ``"interior"`` (the region less a 4 px band, for an
    injection whose content brings a tumour edge: a real tumour's border carries that edge above the tissue's
    noise level, and matching the band would flatten it). Too small an interior falls back to the border. Noise
    is only ever added, so with ``"interior"`` a content whose own fine detail already exceeds the target (a busy
    donor tumour in quiet tissue) is first smoothed more (``ADAPTIVE_SMOOTHING``, recorded as ``content_sigma``).
    ``detail_sigma``: the scale below which the content is replaced by the transplanted texture (see the
    module docstring). ``noise_ratio``: the region's noise ends this many times the level measured around it
    (a spliced tumour brings its own tumour-to-tissue relation; 1 for the rest).
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
        transplant = _noise_field(mask, ctx, rng, detail_sigma)
        applied["noise"] = transplant.params
        field = transplant.noise
        smooth = ndi.gaussian_filter(out, applied["noise"]["detail_sigma"])
        # the original keeps (1 - alpha) of its noise: add the rest so the variance is the same everywhere
        weight = np.sqrt(np.clip(1.0 - (1.0 - alpha) ** 2, 0.0, 1.0))
        # calibrate on the result itself: the smoothed content and the seam keep some high frequencies
        target, gain = applied["noise"]["sigma"] * noise_ratio, 1.0
        if noise_ratio != 1.0:
            applied["noise"]["ratio"] = round(noise_ratio, 3)
        interior = ndi.binary_erosion(mask, iterations=4)
        band = mask & ~ndi.binary_erosion(mask, iterations=CALIBRATION_BAND)
        measure_on = interior if calibrate_on == "interior" and interior.sum() >= 50 else band
        gains = [1.0] * len(transplant.bands)
        inside = _detail_inside(mask)
        bands_at = detail_bands(applied["noise"]["detail_sigma"])[1:]

        def content() -> np.ndarray:
            # structure is content: it is feathered in like the content
            structure = sum((g * b for g, b in zip(gains, transplant.bands)), np.zeros_like(orig))
            return alpha * (smooth + structure) + (1.0 - alpha) * orig

        if calibrate_on == "interior" and measure_on.any():
            # noise is only ever added: where the content alone is already noisier than the target (a busy donor
            # tumour put in quiet tissue), smooth it more, or the region stays too noisy for its place
            for sigma in ADAPTIVE_SMOOTHING:
                if noise_sigma(residual(content()), measure_on) <= ADAPTIVE_MARGIN * target:
                    break
                smooth = ndi.gaussian_filter(out, sigma)
                applied["noise"]["content_sigma"] = sigma
        for _ in range(DETAIL_ROUNDS if transplant.targets else 1):
            base = content()
            for _ in range(2):
                measured = noise_sigma(residual(base + gain * weight * field), measure_on)
                if measured <= 1e-6 or target <= 0:
                    break
                gain *= target / measured
            if not transplant.targets:
                break
            result = base + gain * weight * field
            for i, ((lo, hi), goal) in enumerate(zip(bands_at, transplant.targets)):
                now = log_std(dog(result, lo, hi)[inside])
                if np.isfinite(now):
                    gains[i] = float(np.clip(gains[i] * np.exp(goal - now), 0.0, MAX_STRUCTURE_GAIN))
        applied["noise"]["gain"] = round(gain, 3)
        if transplant.targets:
            applied["noise"]["structure_gain"] = [round(g, 3) for g in gains]
        out = content() + gain * weight * field
    else:
        out = alpha * out + (1.0 - alpha) * orig
    if draws["jpeg"]:
        out, applied["jpeg"] = _jpeg(out, mask, rng)
    result = np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return np.where(mask, result, original), applied
