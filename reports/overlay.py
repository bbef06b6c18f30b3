"""A slice with the detector's label map drawn over it (the picture in reports)."""
import io

import numpy as np
from PIL import Image

from inference.ml.labels import CATEGORIES
from reports.charts import VERDICT_COLOURS


def _rgb(hex_colour: str) -> np.ndarray:
    return np.array([int(hex_colour[i:i + 2], 16) for i in (1, 3, 5)], dtype=np.float32)


LABEL_RGB = {value: _rgb(VERDICT_COLOURS[name]) for value, name in CATEGORIES.items()}


def read_png(field_file) -> np.ndarray:
    with field_file.open("rb") as fh:
        return np.asarray(Image.open(io.BytesIO(fh.read())))


# The outline of pixels another copy of the image holds with other values (as the scan page's viewer draws it).
CHANGED_RGB = np.array([255, 200, 0], dtype=np.float32)


def _edge(region: np.ndarray) -> np.ndarray:
    """The pixels of ``region`` with a 4-neighbour outside it."""
    inner = region.copy()
    inner[1:, :] &= region[:-1, :]
    inner[:-1, :] &= region[1:, :]
    inner[:, 1:] &= region[:, :-1]
    inner[:, :-1] &= region[:, 1:]
    return region & ~inner


def overlay(slice_u8: np.ndarray, labels: np.ndarray | None, *, alpha: float = 0.45,
            changed: np.ndarray | None = None) -> Image.Image:
    """RGB picture: the grey slice, each labelled region tinted in its class colour with a solid outline; and, with
    ``changed`` (a boolean mask), those pixels outlined in yellow, untinted (what another copy holds otherwise)."""
    grey = slice_u8 if slice_u8.ndim == 2 else np.asarray(Image.fromarray(slice_u8).convert("L"))
    rgb = np.repeat(grey[..., None].astype(np.float32), 3, axis=2)
    if labels is not None and labels.shape == grey.shape:
        for value, colour in LABEL_RGB.items():
            region = labels == value
            if not region.any():
                continue
            rgb[region] = (1 - alpha) * rgb[region] + alpha * colour
            rgb[_edge(region)] = colour
    if changed is not None and changed.shape == grey.shape:
        rgb[_edge(changed.astype(bool))] = CHANGED_RGB
    return Image.fromarray(np.clip(rgb, 0, 255).astype(np.uint8), mode="RGB")
