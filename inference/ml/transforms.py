"""Training-time augmentation of a slice and its region masks, each switchable (for the ablation).

Everything works on the uint8 slice the model reads, so what is augmented is what the predictor sees. Geometry
that resamples (small rotations) also smooths the noise the forensic channels look at: it is off by default,
and flips (exact) are on.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass
class AugmentConfig:
    flip: bool = True  # horizontal flip, p=0.5 (exact: no resampling)
    rotate: bool = False  # rotation by up to +-max_degrees, p=0.3 (resamples)
    max_degrees: float = 10.0
    contrast: bool = True  # random gamma and gain through a lookup table, p=0.5
    noise: bool = False  # Gaussian noise, sigma up to 3 grey levels, p=0.3
    jpeg: bool = False  # JPEG re-compression, quality 70-95, p=0.2
    # mild processing of the whole slice, as an export or a viewer may apply it (p=0.35, one of: noise sigma
    # 0.5-2, JPEG 85-98, a resize by 0.85-1.15 and back, a 0.3-0.7 px blur); the verdict and masks are kept, so
    # the model must read traces that survive it. Why: each of these, too mild for the input check to notice,
    # took 0.7.2 from 0.87 to 0.62-0.65 accuracy on 100 v12 test slices (README, "Input check")
    launder: bool = False
    crop: int = 0  # > 0: a crop of this size that keeps the regions (cheaper steps); 0: whole slice

    @classmethod
    def none(cls) -> "AugmentConfig":
        return cls(flip=False, rotate=False, contrast=False, noise=False, jpeg=False, launder=False, crop=0)


def _start(lo: int, hi: int, size: int, length: int, rng: np.random.Generator) -> int:
    """A window start on one axis that keeps [lo, hi) inside when it fits, else centres on it."""
    if hi - lo <= size:
        first, last = max(0, hi - size), min(lo, length - size)
        return int(rng.integers(first, last + 1))
    return int(np.clip((lo + hi) // 2 - size // 2, 0, length - size))


def _crop_window(shape: tuple[int, int], masks: list[np.ndarray], size: int, rng: np.random.Generator):
    h, w = shape
    ch, cw = min(size, h), min(size, w)
    if masks:
        union = np.zeros(shape, dtype=bool)
        for m in masks:
            union |= m
        ys, xs = np.nonzero(union)
        top = _start(int(ys.min()), int(ys.max()) + 1, ch, h, rng)
        left = _start(int(xs.min()), int(xs.max()) + 1, cw, w, rng)
    else:
        top = int(rng.integers(0, h - ch + 1))
        left = int(rng.integers(0, w - cw + 1))
    return top, left, ch, cw


def augment(
    image: np.ndarray, masks: list[np.ndarray], config: AugmentConfig, rng: np.random.Generator
) -> tuple[np.ndarray, list[np.ndarray]]:
    """A new (uint8 image, bool masks) pair; regions emptied by a crop or rotation are dropped."""
    img = np.asarray(image, dtype=np.uint8)
    masks = [np.asarray(m, dtype=bool) for m in masks]
    masks = [m for m in masks if m.any()]
    if config.crop and config.crop > 0 and (img.shape[0] > config.crop or img.shape[1] > config.crop):
        top, left, ch, cw = _crop_window(img.shape, masks, config.crop, rng)
        img = img[top : top + ch, left : left + cw]
        masks = [m[top : top + ch, left : left + cw] for m in masks]
    if config.flip and rng.random() < 0.5:
        img = img[:, ::-1]
        masks = [m[:, ::-1] for m in masks]
    if config.rotate and rng.random() < 0.3:
        import cv2

        angle = float(rng.uniform(-config.max_degrees, config.max_degrees))
        h, w = img.shape
        matrix = cv2.getRotationMatrix2D((w / 2, h / 2), angle, 1.0)
        img = cv2.warpAffine(np.ascontiguousarray(img), matrix, (w, h), flags=cv2.INTER_LINEAR, borderValue=0)
        masks = [
            cv2.warpAffine(np.ascontiguousarray(m, dtype=np.uint8), matrix, (w, h), flags=cv2.INTER_NEAREST) > 0
            for m in masks
        ]
    if config.contrast and rng.random() < 0.5:
        gamma = float(np.exp(rng.uniform(np.log(0.8), np.log(1.25))))
        gain = float(rng.uniform(0.9, 1.1))
        lut = np.clip(255.0 * gain * (np.arange(256) / 255.0) ** gamma, 0, 255).round().astype(np.uint8)
        img = lut[img]
    if config.noise and rng.random() < 0.3:
        sigma = float(rng.uniform(0.5, 3.0))
        img = np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)
    if config.jpeg and rng.random() < 0.2:
        import cv2

        quality = int(rng.integers(70, 96))
        ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img), [int(cv2.IMWRITE_JPEG_QUALITY), quality])
        if ok:
            img = cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    if config.launder and rng.random() < 0.35:
        img = launder(img, rng)
    masks = [np.ascontiguousarray(m) for m in masks if m.any()]
    return np.ascontiguousarray(img), masks


def paste_tumour(image: np.ndarray, donor: np.ndarray, donor_mask: np.ndarray, rng: np.random.Generator,
                 interior: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray] | None:
    """A crude injection, for training only: ``donor``'s tumour (``donor_mask``) pasted into ``image`` at its own
    place with a feathered edge (alpha from a Gaussian of 1-3 px) and its intensity scaled by 0.85-1.15; no
    intensity matching, blending or touch-up, unlike the dataset's methods, so that the model also meets
    injections made otherwise than by the pipeline it learned from. Returns the tampered uint8 slice and its
    region (every changed pixel and the donor mask), or None when the donor's place is not (95 %) inside
    ``interior`` (the target head's brain tissue) or the images differ in size."""
    from scipy import ndimage as ndi

    img = np.asarray(image, dtype=np.uint8)
    mask = np.asarray(donor_mask, dtype=bool)
    if donor.shape != img.shape or mask.shape != img.shape or not mask.any():
        return None
    if interior is not None and float(interior[mask].mean()) < 0.95:
        return None
    sigma = float(rng.uniform(1.0, 3.0))
    alpha = np.clip(ndi.gaussian_filter(mask.astype(np.float64), sigma) * 2.0, 0.0, 1.0)
    content = np.asarray(donor, dtype=np.float64) * float(rng.uniform(0.85, 1.15))
    out = np.clip(np.rint(alpha * content + (1.0 - alpha) * img), 0, 255).astype(np.uint8)
    region = (out != img) | mask
    return out, region


LAUNDERING = ("noise", "jpeg", "resize", "blur")


def launder(image: np.ndarray, rng: np.random.Generator, kind: str | None = None) -> np.ndarray:
    """One mild whole-slice processing step (``kind``, else drawn from LAUNDERING); same size, uint8."""
    import cv2

    img = np.ascontiguousarray(image, dtype=np.uint8)
    kind = kind or LAUNDERING[int(rng.integers(len(LAUNDERING)))]
    if kind == "noise":
        sigma = float(rng.uniform(0.5, 2.0))
        return np.clip(img.astype(np.float32) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)
    if kind == "jpeg":
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), int(rng.integers(85, 99))])
        return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE) if ok else img
    if kind == "resize":
        h, w = img.shape
        factor = float(rng.uniform(0.85, 1.15))
        interp = cv2.INTER_CUBIC if rng.random() < 0.5 else cv2.INTER_LINEAR
        size = (max(8, int(round(w * factor))), max(8, int(round(h * factor))))
        there = cv2.resize(img, size, interpolation=cv2.INTER_AREA if factor < 1 else interp)
        back = cv2.resize(there, (w, h), interpolation=interp if factor < 1 else cv2.INTER_AREA)
        return np.clip(back, 0, 255).astype(np.uint8)
    if kind == "blur":
        return cv2.GaussianBlur(img, (0, 0), float(rng.uniform(0.3, 0.7)))
    raise ValueError(f"unknown laundering {kind!r}; one of {', '.join(LAUNDERING)}")
