"""The one interface every tampering method implements.

A method gets a :class:`TamperRequest` (the slice, and the tumour to erase or a donor tumour to inject) and a
seeded ``numpy.random.Generator``, and returns a :class:`TamperResult`: the tampered uint8 slice and the exact
mask of what it changed. Outside that mask the result equals the input byte for byte (``SEAM_MARGIN = 0``:
blending, feathering and every touch-up happen inside the mask). A method that cannot work on a given slice
(no room inside the brain, a tumour crossing the midline for a mirror patch) raises :class:`NotApplicable`.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from . import touchups
from .anatomy import Anatomy, analyse
from .blend import composite

INJECT = "inject"
REMOVE = "remove"
SEAM_MARGIN = 0  # pixels outside the reported mask that a method may change
HEAD_SPILL = 0.01  # share of an injected region that may lie outside the head (anatomy.head_mask)
HEAD_FIELD = 0.8  # a "head" covering more of the slice than this is noise (a slice above the head), not a head


class NotApplicable(Exception):
    """This method cannot tamper with this slice; the builder tries another slice or method."""


@dataclass
class TamperRequest:
    image: np.ndarray  # (h, w) uint8, the authentic slice
    tumour: np.ndarray | None = None  # (h, w) bool: the tumour to erase (removal methods)
    donor_image: np.ndarray | None = None  # (h, w) uint8: a slice of another patient (injection methods)
    donor_mask: np.ndarray | None = None  # (h, w) bool: its tumour
    # injections: where and how the donor tumour goes, instead of drawn (`splice.Splice.place`): {"scale", "angle",
    # "flip", "centre": (y, x) of the donor crop's centre on this slice, "band"}. A tumour volume injected slice by
    # slice keeps one geometry (series_eval's ``added_volume``); None: drawn as usual
    placement: dict | None = None

    def validate(self, kind: str) -> None:
        img = np.asarray(self.image)
        if img.ndim != 2 or img.dtype != np.uint8:
            raise ValueError(f"A tampering method needs a 2-D uint8 slice, got {img.dtype} {img.shape}.")
        if kind == REMOVE:
            if self.tumour is None or not np.asarray(self.tumour).any():
                raise ValueError("A removal needs a non-empty tumour mask.")
            if np.asarray(self.tumour).shape != img.shape:
                raise ValueError(f"The tumour mask {np.asarray(self.tumour).shape} and slice {img.shape} differ in size.")
        if kind == INJECT:
            if self.donor_image is None or self.donor_mask is None or not np.asarray(self.donor_mask).any():
                raise ValueError("An injection needs a donor slice with a non-empty tumour mask.")
            if np.asarray(self.donor_mask).shape != np.asarray(self.donor_image).shape:
                raise ValueError("The donor slice and its tumour mask differ in size.")


@dataclass
class TamperResult:
    image: np.ndarray  # (h, w) uint8
    mask: np.ndarray  # (h, w) bool: every pixel that may differ from the input
    params: dict = field(default_factory=dict)


class TamperMethod:
    """Subclasses set ``name`` and ``kind`` and implement :meth:`edit`."""

    name: str = ""
    kind: str = ""
    feather: float = 1.5  # px of alpha ramp inside the mask's edge
    noise_calibration: str = "border"  # where the re-synthesised noise is matched to the surrounding level
    detail_sigma: float = 1.0  # the noise touch-up replaces the content's detail below this scale (px)

    def noise_ratio(self, params: dict) -> float:
        """How much noisier than its surroundings the region should end (the noise touch-up's target is the level
        measured around it times this); 1 unless the method knows better from its edit's ``params``."""
        return 1.0

    def edit(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, dict]:
        """The core edit: (float image, region mask, parameters). Pixels outside the region are ignored."""
        raise NotImplementedError

    def apply(
        self, request: TamperRequest, rng: np.random.Generator, *, touch_ups: bool = True,
        probabilities: dict[str, float] | None = None,
    ) -> TamperResult:
        request.validate(self.kind)
        original = np.asarray(request.image)
        anatomy = analyse(original, exclude=request.tumour)
        if self.kind == INJECT and anatomy.head.mean() > HEAD_FIELD:
            raise NotApplicable(f"{self.name}: no head told from the air on this slice (noise only?)")
        edited, region, params = self.edit(request, anatomy, rng)
        region = np.asarray(region, dtype=bool)
        if not region.any():
            raise NotApplicable(f"{self.name}: empty edit region")
        if self.kind == INJECT and (region & ~anatomy.head).sum() > HEAD_SPILL * region.sum():
            # the last word on placement: whatever a method chose, no tumour is put in the air
            raise NotApplicable(f"{self.name}: the injected region leaves the head")
        applied: dict = {}
        if touch_ups:
            forbidden = region.copy()
            if request.tumour is not None:
                forbidden |= request.tumour
            ctx = touchups.Context(original=original, head=anatomy.head, forbidden=forbidden,
                                   interior=anatomy.interior)
            out, applied = touchups.finish(original, edited, region, ctx, rng, feather=self.feather,
                                           probabilities=probabilities, calibrate_on=self.noise_calibration,
                                           detail_sigma=self.detail_sigma, noise_ratio=self.noise_ratio(params))
        else:
            out = composite(original, edited, region, feather=self.feather)
        params = {"method": self.name, "kind": self.kind, **params, "touch_ups": applied}
        return TamperResult(image=out, mask=region, params=params)
