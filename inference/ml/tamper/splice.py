"""Injection ``splice``: a real tumour cut from another patient's slice, resized, rotated and mirrored within
plausible bounds, its intensities matched to the target's brain tissue, placed inside brain tissue (not on skull,
scalp, background or ventricles) and Poisson-blended.

Where it goes: near where the donor tumour sat in its own head (`anchor_place`: the same place relative to the
head's centre and spread, in either hemisphere; places are drawn around it, wider only if none fits, and anywhere
in the tissue only if still none does), and among up to ``PLACE_CANDIDATES`` places that fit, the one whose
surroundings (the ring 2-8 px outside the blended region) look most like the donor tumour's own surroundings in its
slice, in brightness and in detail at three scales (as the removal touch-up chooses its detail donor), plus a cost
for the distance from the donor's place. Gliomas favour some places (TCGA-LGG: forward and lateral); drawn anywhere
in the tissue, splices sat elsewhere, and where a region sits in the head told a splice from a real tumour at AUC
0.675 (`injection_check`, ``location``); anchored, 0.55-0.57 (texture 0.70 unchanged, border noise 0.53-0.55
with the noise touch-up's adaptive smoothing; since ``tamper-v11``). A tumour is told by its
neighbourhood as much as by itself: real tumours sit in busier tissue than a place drawn at random (on tamper-v9,
log std of 0.7-1.5 px detail in the ring 1.29 around real tumours, 1.06 around splices placed at random), and a
careful attacker puts the tumour where it looks at home.

The donor is warped with Lanczos interpolation (bilinear smooths the tumour's fine texture), its contrast then
scaled by the ratio of the chosen place's ring spread to the donor's own (``local_gain``), and the noise
touch-up (calibrated on the region's interior) ends at the donor's own interior-to-ring noise ratio
(``noise_ratio``) rather than at the ring's level: a real tumour is noisier than the tissue around it.
Measured with :mod:`inference.ml.dataset.injection_check` on tamper-v9 (seed 0, 1058 splices vs 1113 real
tumours): texture AUC 0.721 -> 0.696, border noise 0.567 -> 0.526, surroundings 0.582 -> 0.562.

Since ``tamper-v12``: the level of the tumour's core is kept (``CORE_RAMP``). Plain Poisson blending took the
tumour's level from the border of the place it landed in; real tumours sit in brighter tissue than those places
(FLAIR-bright surroundings), so splices came out darker inside than real tumours (5th percentile 55 against 62,
twice the share of dark pixels): the texture detector's main cue. Each injection is also offered
``DONOR_OPTIONS`` donors and takes the one whose tissue is spread most like the target's (`choose_donor`), so the
intensity match rescales least (it was clipped at its bounds in 42 % of tamper-v11's splices). On tamper-v11's
slices (``injection_check``, seeds 0 / 1; texture / border noise / surroundings / location AUC): before
0.695 / 0.525 / 0.557 / 0.549 and 0.697 / 0.547 / 0.571 / 0.573; donor choice alone (seed 0) 0.674 / 0.520 /
0.563 / 0.544; both 0.583 / 0.541 / 0.563 / 0.544 and 0.588 / 0.548 / 0.571 / 0.542: texture now within 0.02
of the surroundings control, which no edit can change."""
from __future__ import annotations

import cv2
import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy, analyse, ring
from .base import INJECT, NotApplicable, TamperMethod, TamperRequest
from .blend import poisson_blend
from .touchups import CALIBRATION_BAND, DETAIL_RING, detail_bands, dog, log_std, noise_sigma, residual

MIN_AREA = 60
MAX_TISSUE_FRACTION = 0.25  # an injected tumour covers at most this share of the brain tissue
SCALE_RANGE = (0.7, 1.3)
ROTATION_DEG = 30.0
PAD = 8
PLACE_CANDIDATES = 12  # places that fit, compared by their surroundings
PLACE_ATTEMPTS = 200
# places are drawn around the donor tumour's own place in its head (see `anchor_place`): (attempts, sd of the
# draw in units of the head's spread on each axis), a wider draw only when the first finds no place that fits,
# and anywhere in the brain tissue (PLACE_ATTEMPTS) only when neither does
ANCHOR_PHASES = ((120, 0.15), (80, 0.4))
# cost of a place's distance from the donor's (per squared sd of the first draw), added to how unlike the
# donor's its surroundings are
ANCHOR_WEIGHT = 0.05
NOISE_RATIO_RANGE = (0.7, 1.6)
# donors offered per injection (the builder's and injection_check's draw); the one whose brain tissue is spread
# most like the target's is taken (`choose_donor`), so its intensities need the least rescaling. 1: a random donor
DONOR_OPTIONS = 8
# Poisson blending keeps the donor's gradients but takes its level from the target's border, so a tumour cut from
# brighter surroundings than the place it lands in comes out darker than its intensity match made it. With a ramp
# (px), the blended region's core goes back to the matched level: blend + w x (paste - blend), w rising from 0 at the
# region's border to 1 at this depth. paste - blend is harmonic (both have the donor's Laplacian), so this adds
# no texture, only a smooth level. 0: plain Poisson blending
CORE_RAMP = 4
LOCAL_GAIN_RANGE = (0.67, 1.5)


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


def tissue_spread(image: np.ndarray, exclude: np.ndarray | None = None) -> float | None:
    """Interquartile range of a slice's brain tissue (``exclude``, a tumour, left out): the scale `place` matches;
    None where the slice shows too little tissue."""
    image = np.asarray(image)
    try:
        return tissue_stats(image, analyse(image, exclude=exclude).tissue)[1]
    except NotApplicable:
        return None


def choose_donor(target: np.ndarray, spreads: list[float | None]) -> int:
    """Which of the offered donors (their `tissue_spread`) to take for ``target``: the one whose tissue spread is
    closest to the target's in ratio, so that the intensity match rescales its tumour least (a rescaled tumour
    is spread wider or narrower than a real one, and its fine texture with it). The first where nothing compares."""
    own = tissue_spread(target)
    if own is None:
        return 0
    return int(np.argmin([np.inf if s is None else abs(np.log(own / max(s, 1.0))) for s in spreads]))


class Splice(TamperMethod):
    name = "splice"
    kind = INJECT
    detail_sigma = 0.7
    noise_calibration = "interior"

    def noise_ratio(self, params: dict) -> float:
        return float(params.get("noise_ratio", 1.0))

    def edit(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator):
        source, placed, region, params = self.place(request, anatomy, rng)
        blended = poisson_blend(request.image, source, region)
        if CORE_RAMP > 0:
            shift = np.where(region, source - blended, 0.0)
            params["core_shift"] = round(float(np.median(shift[placed])), 2)
            weight = np.clip((ndi.distance_transform_edt(region) - 1.0) / CORE_RAMP, 0.0, 1.0)
            blended = blended + weight * shift
        return blended, region, params

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

        given = request.placement
        if given is not None:  # one geometry for every slice of a tumour volume
            try:
                scale, angle, flip = float(given["scale"]), float(given["angle"]), bool(given["flip"])
                centre_y, centre_x = (float(v) for v in given["centre"])
            except (KeyError, TypeError, ValueError) as exc:
                raise ValueError(f"A placement needs scale, angle, flip and centre (y, x): {exc}") from None
        else:
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
        patch = cv2.warpAffine(np.ascontiguousarray(crop, np.float32), m, (ow, oh), flags=cv2.INTER_LANCZOS4,
                               borderMode=cv2.BORDER_REFLECT)
        pmask = cv2.warpAffine(np.ascontiguousarray(crop_mask), m, (ow, oh), flags=cv2.INTER_LINEAR) > 0.5
        if pmask.sum() < MIN_AREA:
            raise NotApplicable("the transformed tumour is too small")
        band = int(given["band"]) if given is not None and "band" in given else int(rng.integers(2, 5))
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
        if given is not None:
            anchor, same_side = None, None
            oy, ox = int(round(centre_y)) - oh // 2, int(round(centre_x)) - ow // 2
            if oy < 1 or ox < 1 or oy + oh >= h - 1 or ox + ow >= w - 1:
                raise NotApplicable("the given placement puts the tumour off the slice")
            if not allowed[ly + oy, lx + ox].all() or tissue[py + oy, px + ox].mean() < 0.85:
                raise NotApplicable("the given placement puts the tumour outside the brain tissue")
            placements = []  # nothing to draw
            places, anchored, attempts = [(oy, ox)], set(), 0
        else:
            anchor, same_side = anchor_place(tumour, donor_anat.head, anatomy.head, rng)
            places, anchored, attempts = [], set(), 0
            phases = [(n, j) for n, j in ANCHOR_PHASES] if anchor is not None else []
            placements = phases + [(PLACE_ATTEMPTS, None)]
        for tries, jitter in placements:
            if places:
                break  # places near the donor's were found: the tumour goes to one of those
            for _ in range(tries):
                attempts += 1
                if jitter is not None:
                    cy = anchor[0] + rng.normal(0.0, jitter * anchor[2])
                    cx = anchor[1] + rng.normal(0.0, jitter * anchor[3])
                    oy, ox = int(round(cy)) - oh // 2, int(round(cx)) - ow // 2
                else:
                    k = int(rng.integers(ty.size))
                    oy = int(ty[k] - oh // 2)
                    ox = int(tx[k] - ow // 2)
                if oy < 1 or ox < 1 or oy + oh >= h - 1 or ox + ow >= w - 1:
                    continue
                if not allowed[ly + oy, lx + ox].all():
                    continue
                if tissue[py + oy, px + ox].mean() < 0.85:
                    continue
                places.append((oy, ox))
                if jitter is not None:
                    anchored.add((oy, ox))
                if len(places) == PLACE_CANDIDATES:
                    break
        if not places:
            raise NotApplicable("no place inside brain tissue fits the tumour")
        donor_region = ndi.binary_dilation(tumour, iterations=band)
        donor_healthy = donor_anat.head & ~np.asarray(request.donor_mask, dtype=bool)
        reference = _surroundings(matched, donor_region, donor_healthy)
        extra = None
        if anchored:  # a place far from the donor's costs as much as surroundings less alike
            sd = ANCHOR_PHASES[0][1]
            extra = [ANCHOR_WEIGHT * (((oy + oh // 2 - anchor[0]) / (sd * anchor[2])) ** 2
                                      + ((ox + ow // 2 - anchor[1]) / (sd * anchor[3])) ** 2) for oy, ox in places]
        (oy, ox), cost, there = _best_place(places, region_local, request.image.astype(np.float64), anatomy.head,
                                            reference, extra)
        local_gain = 1.0
        if there is not None and reference[2] > 1e-6:
            local_gain = float(np.clip(there[2] / reference[2], *LOCAL_GAIN_RANGE))
            patch = (patch - t_med) * local_gain + t_med

        source = request.image.astype(np.float64).copy()
        source[oy:oy + oh, ox:ox + ow] = patch
        region = np.zeros((h, w), bool)
        region[ly + oy, lx + ox] = True
        placed = np.zeros((h, w), bool)
        placed[py + oy, px + ox] = True
        params = {
            "scale": round(scale, 3), "angle": round(angle, 2), "flip": flip, "band": band,
            "position": [int(oy + oh // 2), int(ox + ow // 2)], "placement_attempts": attempts,
            "placement_candidates": len(places), "surroundings_cost": None if cost is None else round(cost, 3),
            "anchored": (oy, ox) in anchored, "same_side": same_side,
            "intensity": {"donor_median": round(d_med, 2), "target_median": round(t_med, 2),
                          "ratio": round(ratio, 3), "local_gain": round(local_gain, 3)},
            "tumour_area": int(pmask.sum()),
            "noise_ratio": round(_noise_ratio(matched, donor_region, donor_healthy), 3),
        }
        if given is not None:
            params["given_placement"] = True
        return source, placed, region, params


def crop_centre(donor_mask: np.ndarray) -> tuple[float, float]:
    """The centre (y, x) of the crop `Splice.place` cuts around a donor tumour (its largest part, padded by ``PAD``
    and clipped to the slice): the point that lands on a placement's ``centre``. A tumour volume placed slice by
    slice moves each slice's centre by its offset from the first, scaled, rotated and mirrored as the tumour is."""
    mask = np.asarray(donor_mask, dtype=bool)
    ys, xs = np.nonzero(largest_component(mask))
    if ys.size == 0:
        raise NotApplicable("no donor tumour on this slice")
    y0, y1 = max(0, ys.min() - PAD), min(mask.shape[0], ys.max() + PAD + 1)
    x0, x1 = max(0, xs.min() - PAD), min(mask.shape[1], xs.max() + PAD + 1)
    return (y0 + y1) / 2.0, (x0 + x1) / 2.0


def carry_offset(offset: tuple[float, float], *, scale: float, angle: float, flip: bool) -> tuple[float, float]:
    """A (dy, dx) offset between two donor slices' crop centres, as it lands on the target after the placement's
    mirror, then its rotation and scale (`cv2.getRotationMatrix2D`'s convention, as `Splice.place` warps)."""
    dy, dx = float(offset[0]), float(offset[1])
    if flip:
        dx = -dx
    m = cv2.getRotationMatrix2D((0.0, 0.0), float(angle), float(scale))
    return float(m[1, 0] * dx + m[1, 1] * dy), float(m[0, 0] * dx + m[0, 1] * dy)


def anchor_place(tumour: np.ndarray, donor_head: np.ndarray, head: np.ndarray, rng: np.random.Generator):
    """Where the donor tumour sat in its own head, carried over to this head: its centroid in units of the head's
    centroid and spread (pixel sd) on each axis, in the same hemisphere or the other one (even odds). Tumours
    are not scattered at random: in TCGA-LGG they sit forward and lateral (median 0.38 sd ahead of the head's
    centre and 0.69 sd out from its midline, against 0.13 sd behind and 0.56 sd for places drawn anywhere in the
    tissue), in the busier tissue of the frontal and temporal lobes, so a tumour put where its kind grows looks
    at home to a reader and leaves a detector no "where" to learn. Returns ((y, x, sd_y, sd_x) or None, whether
    the hemisphere was kept or None)."""
    same_side = bool(rng.random() < 0.5)
    if donor_head.sum() < 50 or head.sum() < 50:
        return None, None
    dy, dx = np.nonzero(donor_head)
    ty, tx = np.nonzero(tumour)
    sd = (dy.std(), dx.std())
    if min(sd) < 1.0:
        return None, None
    v, u = (ty.mean() - dy.mean()) / sd[0], (tx.mean() - dx.mean()) / sd[1]
    hy, hx = np.nonzero(head)
    sy, sx = float(hy.std()), float(hx.std())
    return (hy.mean() + v * sy, hx.mean() + (u if same_side else -u) * sx, sy, sx), same_side


def _ring_stats(image: np.ndarray, bands: list[np.ndarray], ys: np.ndarray, xs: np.ndarray):
    if ys.size < 20:
        return None
    return float(np.mean(image[ys, xs])), [log_std(b[ys, xs]) for b in bands], float(np.std(image[ys, xs]))


def _surroundings(image: np.ndarray, region: np.ndarray, healthy: np.ndarray):
    """Brightness and log std of detail at each of ``detail_bands(6)`` over the ring ``DETAIL_RING`` px outside
    ``region`` (healthy pixels only); None when too little of it is healthy."""
    around = ring(region, *DETAIL_RING) & healthy
    bands = [dog(image, lo, hi) for lo, hi in detail_bands(6.0)]
    return _ring_stats(image, bands, *np.nonzero(around))


def _best_place(places: list[tuple[int, int]], region_local: np.ndarray, target: np.ndarray, head: np.ndarray,
                reference, extra: list[float] | None = None) -> tuple[tuple[int, int], float | None, tuple | None]:
    """The place (top-left offset of ``region_local``) whose surroundings in ``target`` are most like
    ``reference`` (relative brightness difference plus the mean absolute difference of log detail, plus
    ``extra[i]`` for place i); the first place when there is nothing to compare."""
    if reference is None:
        return places[0], None, None
    level, detail, _ = reference
    outer = DETAIL_RING[1]
    padded = np.pad(region_local, outer)
    ry, rx = np.nonzero(ring(padded, *DETAIL_RING))
    ry, rx = ry - outer, rx - outer
    bands = [dog(target, lo, hi) for lo, hi in detail_bands(6.0)]
    h, w = target.shape
    best, best_cost, best_stats = places[0], None, None
    for i, (oy, ox) in enumerate(places):
        yy, xx = ry + oy, rx + ox
        inside = (yy >= 0) & (yy < h) & (xx >= 0) & (xx < w)
        yy, xx = yy[inside], xx[inside]
        keep = head[yy, xx]
        stats = _ring_stats(target, bands, yy[keep], xx[keep])
        if stats is None:
            continue
        cost = abs(stats[0] - level) / max(level, 1.0)
        cost += sum(abs(a - b) for a, b in zip(stats[1], detail)) / len(detail)
        cost += extra[i] if extra else 0.0
        if np.isfinite(cost) and (best_cost is None or cost < best_cost):
            best, best_cost, best_stats = (oy, ox), float(cost), stats
    return best, best_cost, best_stats


def _noise_ratio(image: np.ndarray, region: np.ndarray, healthy: np.ndarray) -> float:
    """The donor's own noise just inside its tumour region relative to just outside it (the bands where the noise
    touch-up measures), within ``NOISE_RATIO_RANGE``: a real tumour's edge zone is noisier than the tissue
    around it (log ratio +0.15 on average on tamper-v9), which re-synthesised noise at the tissue's level erases."""
    res = residual(image)
    inner = ndi.binary_erosion(region, iterations=4)
    if inner.sum() < 50:
        inner = region & ~ndi.binary_erosion(region, iterations=CALIBRATION_BAND)
    outer = ring(region, 0, 4) & healthy
    s_in, s_out = noise_sigma(res, inner), noise_sigma(res, outer)
    if s_in <= 0 or s_out <= 0:
        return 1.0
    lo, hi = NOISE_RATIO_RANGE
    return float(np.clip(s_in / s_out, lo, hi))
