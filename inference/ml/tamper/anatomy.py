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


EDGE = (6, 16)  # px from the slice's border: the edge of the field, where air is (inside any zero frame)
AIR_AT_THE_EDGE = 0.1  # share of that edge the plain cut may add beyond the Otsu head before it is taken for air
MOST_OF_THE_FIELD = 0.8  # a cut letting in more than this share of the slice has let in its background


def _largest_filled(fg: np.ndarray) -> np.ndarray:
    fg = ndi.binary_closing(fg, structure=np.ones((5, 5)), iterations=2)
    labels, n = ndi.label(fg)
    if n == 0:
        return fg
    sizes = ndi.sum(fg, labels, index=np.arange(1, n + 1))
    return ndi.binary_fill_holes(labels == (int(np.argmax(sizes)) + 1))


def _otsu(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold: the cut of the histogram that maximises the between-class variance."""
    hist, edges = np.histogram(values, bins=bins)
    centres = (edges[:-1] + edges[1:]) / 2.0
    w0 = np.cumsum(hist).astype(np.float64)
    w1 = w0[-1] - w0
    m0 = np.cumsum(hist * centres)
    with np.errstate(invalid="ignore", divide="ignore"):
        between = w0 * w1 * (m0 / w0 - (m0[-1] - m0) / w1) ** 2
    between[~np.isfinite(between)] = -1.0
    return float(edges[int(np.argmax(between)) + 1])


def _otsu_head(img: np.ndarray, floor: float) -> np.ndarray:
    """The head by Otsu's cut of the slice smoothed at 3 px, cut again above itself while it lets in most of the
    field (noise, and a zero frame outside the field of view, make three classes, not two)."""
    smooth = ndi.gaussian_filter(img, 3.0)
    cut = _otsu(smooth)
    for _ in range(3):
        if (smooth > cut).mean() <= MOST_OF_THE_FIELD:
            break
        cut = _otsu(smooth[smooth > cut])
    return _largest_filled(smooth > max(cut, floor))


def head_mask(image: np.ndarray) -> np.ndarray:
    """The head (skull and scalp included), holes filled: pixels above a tenth of the slice's 99th percentile
    (smoothed), closed, the largest component. Where background noise passes that cut (dark slices at the top
    or bottom of a stack, shaded fields), it would take air for head and let tumours be put in the air: when
    what it adds more than 6 px beyond an Otsu head reaches the edge of the field (more than ``AIR_AT_THE_EDGE``
    of the band ``EDGE`` px in from the border), that is air, and the Otsu head is used instead. (A
    tissue-versus-noise test of the added part does not work on these 8-bit slices: quantised air and brain
    read alike.)"""
    img = image.astype(np.float32)
    hi = float(np.percentile(img, 99))
    if hi <= 0:
        return np.zeros(img.shape, bool)
    plain = _largest_filled(ndi.gaussian_filter(img, 1.5) > 0.1 * hi)
    frame = np.zeros(img.shape, bool)
    frame[EDGE[0]:-EDGE[0], EDGE[0]:-EDGE[0]] = True
    frame[EDGE[1]:-EDGE[1], EDGE[1]:-EDGE[1]] = False
    if plain[frame].mean() <= AIR_AT_THE_EDGE:
        return plain  # the usual slice: the cut stays off the edge, so nothing it adds can be air there
    core = _otsu_head(img, 0.1 * hi)
    beyond = plain & ~ndi.binary_dilation(core, iterations=6)  # what the plain cut adds well beyond the Otsu head
    if core.any() and beyond[frame].mean() > AIR_AT_THE_EDGE:
        return core
    return plain


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
