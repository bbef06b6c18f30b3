"""Poisson (gradient-domain) blending and feathered compositing, written out so the region is exact."""
from __future__ import annotations

import numpy as np
from scipy import ndimage as ndi
from scipy.sparse import coo_matrix
from scipy.sparse.linalg import spsolve


def poisson_blend(target: np.ndarray, source: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """Inside ``mask``: the image whose Laplacian is ``source``'s and which equals ``target`` on the
    mask's border (Pérez et al. 2003, seamless cloning). Outside ``mask``: ``target``. Float result.

    ``source`` is aligned with ``target`` (same shape). The mask may not touch the image border.
    """
    target = target.astype(np.float64)
    source = source.astype(np.float64)
    mask = mask.astype(bool).copy()
    mask[0, :] = mask[-1, :] = mask[:, 0] = mask[:, -1] = False
    out = target.copy()
    ys, xs = np.nonzero(mask)
    n = ys.size
    if n == 0:
        return out
    index = -np.ones(mask.shape, dtype=np.int64)
    index[ys, xs] = np.arange(n)
    rows, cols, vals = [np.arange(n)], [np.arange(n)], [np.full(n, 4.0)]
    rhs = np.zeros(n)
    for dy, dx in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        ny, nx = ys + dy, xs + dx
        rhs += source[ys, xs] - source[ny, nx]
        inside = mask[ny, nx]
        rows.append(np.arange(n)[inside])
        cols.append(index[ny[inside], nx[inside]])
        vals.append(np.full(int(inside.sum()), -1.0))
        rhs[~inside] += target[ny[~inside], nx[~inside]]
    a = coo_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n)).tocsr()
    out[ys, xs] = spsolve(a, rhs)
    return out


def feather_alpha(mask: np.ndarray, width: float) -> np.ndarray:
    """1 deep inside ``mask``, falling linearly to 1/(width+1) at its edge, 0 outside."""
    if width <= 0:
        return mask.astype(np.float64)
    dist = ndi.distance_transform_edt(mask)
    return np.clip(dist / (width + 1.0), 0.0, 1.0) * mask


def composite(original: np.ndarray, edited: np.ndarray, mask: np.ndarray, *, feather: float = 0.0) -> np.ndarray:
    """``edited`` inside ``mask`` (feathered towards ``original`` near its edge), ``original`` elsewhere,
    rounded to the original's dtype. Pixels outside ``mask`` are returned byte for byte."""
    alpha = feather_alpha(mask, feather)
    mixed = alpha * edited.astype(np.float64) + (1.0 - alpha) * original.astype(np.float64)
    info = np.iinfo(original.dtype) if np.issubdtype(original.dtype, np.integer) else None
    if info is not None:
        mixed = np.clip(np.rint(mixed), info.min, info.max)
    result = mixed.astype(original.dtype)
    return np.where(mask, result, original)
