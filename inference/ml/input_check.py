"""Is a scan's noise like the noise the detector was trained on? No Django.

The detector reads tampering in the noise (its SRM and constrained-convolution input channels), so a whole slice
whose noise differs from its training data's misleads it: on the test split of the default build, Gaussian noise
of sigma 3 grey levels took its accuracy from 0.87 to 0.47 (real tumours called injected, healthy slices called
erased), a JPEG round trip at quality 75 to 0.62 and a 0.75x resampling to 0.58. A noisier scanner, a scan that
was re-encoded or resized on its way to the portal, or a denoised export, would raise the same false alarms.

So every scan is measured before its verdict is trusted, on whole slices (a tampering edit changes a small region,
which moves these figures little), with two statistics of the brain tissue away from edges:

- ``noise``: the fine noise level in grey levels: the response of Immerkaer's 3 x 3 Laplacian-difference kernel
  ("Fast noise variance estimation", 1996), which cancels smooth content, over the flattest 40 % of the tissue,
  its spread taken robustly (1.4826 x median absolute deviation / 6; on 8-bit slices the figure moves in steps of
  0.25 grey levels);
- ``blockiness``: the mean absolute step between neighbouring pixels across the boundaries of an 8 x 8 grid over
  the mean step elsewhere (1 for a slice that never went through JPEG; above for JPEG blocks, and for the periodic
  trace a non-integer resize leaves).

``REFERENCE`` (``input_range.json`` beside this module) holds the range of each statistic over the training split
of the default build; a scan whose median statistic lies outside it, widened by ``MARGIN``, is reported as outside
the detector's validated range, with what was measured. The verdict is still given: this is a warning to a doctor,
as for a sequence the detector never saw (``sequence.py``). ``python -m inference.ml.input_check measure DATASET``
writes the reference again.

What it cannot see: mild added noise. Gaussian noise of sigma 1 grey level raises the scan rule's false alarms from
1 to 8 of 51 authentic validation and test series (``evaluate_series --processed``) and is never warned about: the
series' median noise moves from 0.49-1.98 to 1.24-2.35, inside the 0.49-2.22 that authentic training series span.
Two whiteness measures were tried as well (the 3 x 3 kernel's response over the same kernel dilated to 5 x 5, and
the lag-1 correlation of a high-pass residual): added noise is white and a scanner's is not, but the ranges
overlapped too (ratio 0.20-0.58 authentic, 0.32-0.67 noisy, across the two corpora), so neither was adopted.
"""
from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

import numpy as np

REFERENCE_FILE = Path(__file__).resolve().with_name("input_range.json")
FEATURES = ("noise", "blockiness")
LOW_Q, HIGH_Q = 0.5, 99.5  # percentiles of the training slices that bound the range
# the range is widened by this factor (noise: divided / multiplied; blockiness: its distance from 1 multiplied)
MARGIN = {"noise": 1.15, "blockiness": 1.25}
FLAT_PERCENTILE = 40  # the noise is measured where the 2 px gradient is in the lowest 40 % of the tissue's
MIN_TISSUE = 500  # px of brain tissue below which a slice is not measured (the top of the head, an empty slice)
MIN_FLAT = 100  # px of flat tissue (below the gradient percentile) below which its noise is not measured
MAX_SLICES = 24  # slices measured per scan (evenly spaced): enough for a median, cheap at upload
# DICOM transfer syntaxes whose pixels are (or may be) lossy: JPEG baseline / extended, JPEG-LS near-lossless,
# JPEG 2000 and HTJ2K (lossy allowed), MPEG-2/4 and HEVC video
LOSSY_TRANSFER_SYNTAXES = {
    "1.2.840.10008.1.2.4.50": "JPEG baseline", "1.2.840.10008.1.2.4.51": "JPEG extended",
    "1.2.840.10008.1.2.4.81": "JPEG-LS near-lossless", "1.2.840.10008.1.2.4.91": "JPEG 2000",
    "1.2.840.10008.1.2.4.93": "JPEG 2000 multi-component", "1.2.840.10008.1.2.4.203": "HTJ2K",
    **{f"1.2.840.10008.1.2.4.{n}": "MPEG / HEVC video" for n in ("100", "100.1", "101", "101.1", "102", "102.1",
                                                                 "103", "103.1", "104", "104.1", "105", "105.1",
                                                                 "106", "106.1", "107", "108")},
}
_KERNEL = np.array([[1, -2, 1], [-2, 4, -2], [1, -2, 1]], dtype=np.float64)
LABELS = {"noise": "noise level", "blockiness": "JPEG/resampling blockiness"}
UNITS = {"noise": " grey levels", "blockiness": ""}


def slice_statistics(image: np.ndarray) -> dict | None:
    """``noise`` and ``blockiness`` of one 8-bit slice's brain tissue; None where it has too little tissue."""
    import cv2
    from scipy import ndimage as ndi

    from .tamper.anatomy import analyse

    if image.ndim != 2:
        raise ValueError(f"a slice is 2-D; got shape {image.shape}")
    tissue = analyse(image).tissue
    if tissue.sum() < MIN_TISSUE:
        return None
    img = image.astype(np.float64)
    smooth = ndi.gaussian_filter(img, 2.0)
    grad = np.hypot(ndi.sobel(smooth, 0), ndi.sobel(smooth, 1))
    flat = tissue & (grad < np.percentile(grad[tissue], FLAT_PERCENTILE))  # edges and texture would read as noise
    if flat.sum() < MIN_FLAT:  # tissue without grain (most of it one value: painted, clipped): nothing to measure
        return None
    response = cv2.filter2D(img, -1, _KERNEL, borderType=cv2.BORDER_REFLECT)[flat]
    # the kernel's response to white noise of sigma s has sigma 6 s; its median absolute deviation is robust to
    # the structure that is left (a mean absolute value is not: it let sigma-3 noise pass as a noisy T1c scan)
    noise = 1.4826 * float(np.median(np.abs(response - np.median(response)))) / 6.0

    steps_x, steps_y = np.abs(np.diff(img, axis=1)), np.abs(np.diff(img, axis=0))
    in_x, in_y = tissue[:, 1:] & tissue[:, :-1], tissue[1:, :] & tissue[:-1, :]
    grid_x = (np.arange(steps_x.shape[1]) % 8) == 7
    grid_y = (np.arange(steps_y.shape[0]) % 8) == 7
    on = (steps_x[:, grid_x][in_x[:, grid_x]].sum() + steps_y[grid_y][in_y[grid_y]].sum(),
          in_x[:, grid_x].sum() + in_y[grid_y].sum())
    off = (steps_x[:, ~grid_x][in_x[:, ~grid_x]].sum() + steps_y[~grid_y][in_y[~grid_y]].sum(),
           in_x[:, ~grid_x].sum() + in_y[~grid_y].sum())
    if on[1] == 0 or off[1] == 0 or off[0] == 0:
        return None
    blockiness = float((on[0] / on[1]) / (off[0] / off[1]))
    return {"noise": round(noise, 4), "blockiness": round(blockiness, 4)}


@dataclass(frozen=True)
class InputCheck:
    within: bool | None  # None: nothing could be measured (no slice with enough tissue) or no reference
    measured: dict  # feature -> the scan's median value
    slices_measured: int
    outside: list  # the features outside the range
    message: str  # what to tell a doctor ("" when within)

    def as_dict(self) -> dict:
        return asdict(self)


def lossy_compression(metadata: dict) -> str | None:
    """What says a scan's pixels went through lossy compression (the file format, the DICOM transfer syntax, or
    DICOM's Lossy Image Compression attribute), or None. The statistics miss mild JPEG (quality 95: 0.05 of slices
    outside the range) that costs the detector 0.22 accuracy; where the file itself says so, nothing is missed."""
    if str(metadata.get("format") or "").upper() in ("JPEG", "MPO"):
        return "the file is a JPEG image"
    syntax = str(metadata.get("transfer_syntax") or "")
    if syntax in LOSSY_TRANSFER_SYNTAXES:
        return f"its DICOM transfer syntax is {LOSSY_TRANSFER_SYNTAXES[syntax]} ({syntax})"
    if str(metadata.get("lossy_image_compression") or "").strip() == "01":
        return "its DICOM header records lossy compression (Lossy Image Compression 01)"
    return None


def load_reference(path: str | Path | None = None) -> dict:
    path = Path(path) if path is not None else REFERENCE_FILE
    return json.loads(path.read_text(encoding="utf-8"))


def allowed_range(reference: dict, feature: str) -> tuple[float, float]:
    """The range a scan's median may take, the training range widened by MARGIN."""
    lo, hi = reference["ranges"][feature]
    m = MARGIN[feature]
    if feature == "blockiness":  # a ratio around 1
        return 1.0 - (1.0 - lo) * m, 1.0 + (hi - 1.0) * m
    return lo / m, hi * m


def _spaced(items: list, k: int) -> list:
    if len(items) <= k:
        return items
    return [items[int(i)] for i in np.linspace(0, len(items) - 1, k).round()]


def check_statistics(per_slice: list[dict | None], reference: dict | None = None, *,
                     lossy: str | None = None) -> InputCheck:
    """The scan-level decision from per-slice statistics (None entries: slices not measured); ``lossy``: what
    says the scan was lossily compressed (``lossy_compression``), which puts it outside whatever was measured."""
    reference = reference if reference is not None else load_reference()
    values = [s for s in per_slice if s]
    if lossy:
        measured = {f: round(float(np.median([v[f] for v in values])), 4) for f in FEATURES} if values else {}
        return InputCheck(False, measured, len(values), ["lossy_compression"],
                          f"This scan went through lossy compression ({lossy}). The detector was trained on "
                          "uncompressed slices and reads tampering in the noise that compression changes: even JPEG "
                          "at quality 95 took its accuracy from 0.87 to 0.65 in a test. Do not rely on its verdict; "
                          "use an uncompressed export of the original.")
    if not values:
        return InputCheck(None, {}, 0, [], "The noise of this scan could not be measured (too little brain tissue "
                          "in its slices): check that it has not been re-encoded, resized or denoised.")
    measured = {f: round(float(np.median([v[f] for v in values])), 4) for f in FEATURES}
    outside, parts = [], []
    for feature in FEATURES:
        lo, hi = allowed_range(reference, feature)
        value = measured[feature]
        if not lo <= value <= hi:
            outside.append(feature)
            side = "above" if value > hi else "below"
            parts.append(f"its {LABELS[feature]} is {value:.2f}{UNITS[feature]}, {side} the {lo:.2f}-{hi:.2f} of the "
                         "detector's training data")
    if not outside:
        return InputCheck(True, measured, len(values), [], "")
    hint = {"noise": ("a noisier scanner or added noise" if measured["noise"] > allowed_range(reference, "noise")[1]
                      else "denoising, smoothing or resampling")}.get(outside[0], "JPEG compression or a resize")
    message = ("This scan's noise is outside what the detector was trained and validated on (" + "; ".join(parts)
               + f"; likely {hint}). The detector reads tampering in the noise, and on such slices it raises false "
               "alarms and misses edits: do not rely on its verdict; use the original, unprocessed export.")
    return InputCheck(False, measured, len(values), outside, message)


def check_slices(slices: Iterable[np.ndarray], reference: dict | None = None, *, max_slices: int = MAX_SLICES,
                 metadata: dict | None = None) -> InputCheck:
    """Measure up to ``max_slices`` evenly spaced 8-bit slices of a scan and decide; ``metadata`` (the Volume's)
    tells whether the file says it was lossily compressed."""
    chosen = _spaced(list(slices), max_slices)
    return check_statistics([slice_statistics(s) for s in chosen], reference,
                            lossy=lossy_compression(metadata or {}))


def measure_reference(dataset_dir: str | Path, split: str = "train") -> dict:
    """The per-feature range over one split of a contract dataset (every verdict: what the detector saw)."""
    import hashlib

    from .coco import load_dataset
    from .imaging import to_uint8

    records = load_dataset(dataset_dir, split=split).images
    stats = []
    for rec in records:
        pixels = rec.pixels()
        stats.append(slice_statistics(pixels if pixels.dtype == np.uint8 else to_uint8(pixels)))
    values = [s for s in stats if s]
    if not values:
        raise ValueError(f"{dataset_dir}: no slice of split {split!r} has enough brain tissue to measure")
    ranges = {f: [round(float(np.percentile([v[f] for v in values], LOW_Q)), 4),
                  round(float(np.percentile([v[f] for v in values], HIGH_Q)), 4)] for f in FEATURES}
    medians = {f: round(float(np.median([v[f] for v in values])), 4) for f in FEATURES}
    ann = Path(dataset_dir) / "annotations.json"
    return {"dataset": str(dataset_dir), "annotations_sha256": hashlib.sha256(ann.read_bytes()).hexdigest(),
            "split": split, "slices": len(records), "slices_measured": len(values),
            "percentiles": [LOW_Q, HIGH_Q], "ranges": ranges, "medians": medians}


def main(argv: list[str] | None = None) -> int:
    import argparse

    parser = argparse.ArgumentParser(prog="python -m inference.ml.input_check",
                                     description="Measure the detector's input range on a dataset's training split.")
    sub = parser.add_subparsers(dest="cmd", required=True)
    m = sub.add_parser("measure", help="write the reference range (input_range.json)")
    m.add_argument("dataset_dir")
    m.add_argument("--split", default="train")
    m.add_argument("--out", default=str(REFERENCE_FILE))
    args = parser.parse_args(argv)
    reference = measure_reference(args.dataset_dir, args.split)
    Path(args.out).write_text(json.dumps(reference, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(reference, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
