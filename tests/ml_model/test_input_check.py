"""The input check: a slice's noise against the detector's training range, on real slices and hand-made cases."""
from __future__ import annotations

import json

import cv2
import numpy as np
import pytest

from inference.ml import input_check
from inference.ml.input_check import (allowed_range, check_slices, check_statistics, load_reference,
                                      measure_reference, slice_statistics)

from .conftest import sample_slices

REF = {"ranges": {"noise": [0.5, 2.5], "blockiness": [0.86, 1.11]}}


def _noisy(img, sigma, seed=0):
    rng = np.random.default_rng(seed)
    return np.clip(img.astype(np.float64) + rng.normal(0, sigma, img.shape), 0, 255).round().astype(np.uint8)


def _jpeg(img, quality=75):
    ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), quality])
    assert ok
    return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)


def _resampled(img, factor=0.75):
    h, w = img.shape
    small = cv2.resize(img, (int(w * factor), int(h * factor)), interpolation=cv2.INTER_AREA)
    return cv2.resize(small, (w, h), interpolation=cv2.INTER_LINEAR)


def test_real_slices_are_within_the_shipped_range():
    tumour, _, healthy = sample_slices()
    for img in (tumour, healthy):
        stats = slice_statistics(img)
        assert stats is not None
        check = check_statistics([stats])
        assert check.within is True and check.outside == [] and check.message == ""


@pytest.mark.parametrize("name, edit, feature", [
    ("noise sigma 3", lambda im: _noisy(im, 3.0), "noise"),
    ("JPEG 75", _jpeg, "blockiness"),
    ("resampled 0.75x", _resampled, "blockiness"),
])
def test_a_reencoded_or_noisier_slice_is_outside(name, edit, feature):
    tumour, _, healthy = sample_slices()
    for img in (tumour, healthy):
        clean, changed = slice_statistics(img), slice_statistics(edit(img))
        check = check_statistics([changed])
        assert check.within is False, (name, clean, changed)
        assert feature in check.outside
        assert "do not rely on its verdict" in check.message
    if feature == "noise":
        assert changed["noise"] > clean["noise"] + 1.5  # sqrt(clean^2 + 9) against clean
        assert "above" in check.message and "noisier scanner or added noise" in check.message


def test_noise_statistic_follows_added_noise_on_a_flat_image():
    flat = np.full((128, 128), 120, np.uint8)
    flat[:8], flat[-8:], flat[:, :8], flat[:, -8:] = 0, 0, 0, 0  # a "head" so that analyse finds tissue
    for sigma in (2.0, 4.0):
        stats = slice_statistics(_noisy(flat, sigma, seed=3))
        assert stats["noise"] == pytest.approx(sigma, rel=0.15)


def test_too_little_tissue_is_not_measured_and_says_so():
    assert slice_statistics(np.zeros((64, 64), np.uint8)) is None
    check = check_slices([np.zeros((64, 64), np.uint8)] * 3)
    assert check.within is None and check.slices_measured == 0
    assert "could not be measured" in check.message
    with pytest.raises(ValueError, match="2-D"):
        slice_statistics(np.zeros((2, 64, 64), np.uint8))


def test_the_scan_decides_by_its_median_and_the_margin():
    inside = {"noise": 1.0, "blockiness": 1.0}
    # one odd slice of five does not flag a scan; a majority does
    assert check_statistics([inside] * 4 + [{"noise": 9.0, "blockiness": 1.0}], REF).within is True
    assert check_statistics([inside] * 2 + [{"noise": 9.0, "blockiness": 1.0}] * 3, REF).within is False
    lo, hi = allowed_range(REF, "noise")
    assert (lo, hi) == pytest.approx((0.5 / 1.15, 2.5 * 1.15))
    assert check_statistics([{"noise": hi - 1e-3, "blockiness": 1.0}], REF).within is True
    low = check_statistics([{"noise": lo - 1e-3, "blockiness": 1.0}], REF)
    assert low.within is False and "below" in low.message and "denoising" in low.message
    blo, bhi = allowed_range(REF, "blockiness")
    assert (blo, bhi) == pytest.approx((1 - 0.14 * 1.25, 1 + 0.11 * 1.25))
    blocky = check_statistics([{"noise": 1.0, "blockiness": bhi + 0.01}], REF)
    assert blocky.outside == ["blockiness"] and "JPEG compression or a resize" in blocky.message
    assert check_statistics([None, inside, None], REF).slices_measured == 1


def test_measure_reference_on_a_dataset(tiny_dataset, tmp_path):
    ref = measure_reference(tiny_dataset, "train")
    assert ref["split"] == "train" and ref["slices"] == 4 and 1 <= ref["slices_measured"] <= 4
    for feature in input_check.FEATURES:
        lo, hi = ref["ranges"][feature]
        assert lo <= ref["medians"][feature] <= hi
    out = tmp_path / "range.json"
    assert input_check.main(["measure", str(tiny_dataset), "--out", str(out)]) == 0
    assert load_reference(out)["ranges"] == ref["ranges"]
    with pytest.raises(ValueError, match="no images|split"):
        measure_reference(tiny_dataset, "nope")


def test_the_shipped_reference_was_measured_on_a_training_split():
    ref = json.loads(input_check.REFERENCE_FILE.read_text())
    assert ref["split"] == "train" and ref["slices_measured"] > 1000
    assert len(ref["annotations_sha256"]) == 64
    for feature in input_check.FEATURES:
        lo, hi = ref["ranges"][feature]
        assert 0 < lo < ref["medians"][feature] < hi


def test_what_the_file_says_about_lossy_compression_decides():
    from inference.ml.input_check import lossy_compression

    assert lossy_compression({"format": "JPEG"}) == "the file is a JPEG image"
    assert "JPEG baseline" in lossy_compression({"transfer_syntax": "1.2.840.10008.1.2.4.50"})
    assert "JPEG 2000" in lossy_compression({"transfer_syntax": "1.2.840.10008.1.2.4.91"})
    assert "Lossy Image Compression 01" in lossy_compression({"lossy_image_compression": "01"})
    for clean in ({"format": "PNG"}, {"format": "TIFF"}, {"transfer_syntax": "1.2.840.10008.1.2.1"},
                  {"transfer_syntax": "1.2.840.10008.1.2.4.90"}, {"lossy_image_compression": "00"}, {}):
        assert lossy_compression(clean) is None, clean
    tumour, _, _ = sample_slices()
    check = check_slices([tumour], metadata={"format": "JPEG"})  # the pixels alone are within the range
    assert check_slices([tumour]).within is True
    assert (check.within, check.outside, check.slices_measured) == (False, ["lossy_compression"], 1)
    assert "lossy compression (the file is a JPEG image)" in check.message and check.measured["noise"] > 0


def test_tissue_without_grain_is_not_measured_rather_than_measured_as_nan():
    """A slice whose brain is one painted value: no flat-but-grainy tissue to read the noise in. It used to give
    a noise level of NaN (and numpy's "mean of empty slice"); it is now a slice that cannot be measured."""
    import warnings

    from inference.ml.tamper.anatomy import analyse

    _, _, healthy = sample_slices()
    tissue = analyse(healthy).tissue
    painted = healthy.copy()
    painted[tissue] = int(np.median(healthy[tissue]))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert slice_statistics(painted) is None
        assert slice_statistics(healthy) is not None
        result = check_slices([painted], reference=load_reference())
    assert result.slices_measured == 0 and result.within is None
