"""Where a tumour may plausibly sit: the head, its interior (away from skull and scalp) and brain tissue
(the interior without ventricles or other dark CSF and without the brightest fat/vessel pixels)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi


@dataclass
class Anatomy:
    head: np.ndarray  # bool: the head (skull and scalp included), holes filled
    interior: np.ndarray  # bool: inside the head, at least `skull_margin` pixels from its edge
    tissue: np.ndarray  # bool: interior brain tissue where a lesion may sit (no ventricles, no fat)
    skull_margin: int

    @property
    def tissue_area(self) -> int:
        return int(self.tissue.sum())


def head_mask(image: np.ndarray) -> np.ndarray:
    img = image.astype(np.float32)
    hi = float(np.percentile(img, 99))
    if hi <= 0:
        return np.zeros(img.shape, bool)
    fg = ndi.gaussian_filter(img, 1.5) > 0.1 * hi
    fg = ndi.binary_closing(fg, structure=np.ones((5, 5)), iterations=2)
    labels, n = ndi.label(fg)
    if n == 0:
        return fg
    sizes = ndi.sum(fg, labels, index=np.arange(1, n + 1))
    fg = labels == (int(np.argmax(sizes)) + 1)
    return ndi.binary_fill_holes(fg)


def analyse(image: np.ndarray, *, exclude: np.ndarray | None = None) -> Anatomy:
    """Head, interior and tissue masks of one 8-bit slice; ``exclude`` (a tumour) is left out of tissue."""
    h, w = image.shape
    margin = max(6, int(round(0.045 * min(h, w))))
    head = head_mask(image)
    dist = ndi.distance_transform_edt(head)
    interior = dist > margin
    tissue = interior.copy()
    if interior.sum() > 50:
        smooth = ndi.gaussian_filter(image.astype(np.float32), 1.0)
        vals = smooth[interior]
        lo, hi = np.percentile(vals, [15, 98])
        tissue &= (smooth >= lo) & (smooth <= hi)
        tissue = ndi.binary_opening(tissue, iterations=1)
    if exclude is not None:
        tissue &= ~ndi.binary_dilation(exclude, iterations=3)
    return Anatomy(head=head, interior=interior, tissue=tissue, skull_margin=margin)


def ring(mask: np.ndarray, inner: int, outer: int) -> np.ndarray:
    """Pixels between ``inner`` and ``outer`` pixels outside ``mask``."""
    big = ndi.binary_dilation(mask, iterations=outer)
    small = ndi.binary_dilation(mask, iterations=inner) if inner > 0 else mask
    return big & ~small
