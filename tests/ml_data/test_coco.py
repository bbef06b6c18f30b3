"""The dataset contract's reader, writer and validator (inference.ml.coco)."""
import json

import cv2
import numpy as np
import pytest

from inference.ml.coco import (
    DatasetError,
    DatasetWriter,
    check_dataset,
    read_png,
    load_dataset,
    mask_to_rle,
    rle_to_mask,
    validate_dataset,
)


def _blob(h=32, w=40, y=10, x=12, r=5):
    yy, xx = np.mgrid[:h, :w]
    return (yy - y) ** 2 + (xx - x) ** 2 <= r * r


def _write_small(root):
    rng = np.random.default_rng(0)
    img8 = rng.integers(0, 256, (32, 40), dtype=np.uint8)
    img16 = rng.integers(0, 65536, (32, 40), dtype=np.uint16)
    with DatasetWriter(root, info={"seed": 0}) as w:
        w.add_image(img8, name="a", verdict="real_tumor", patient_id="p1", source="s", split="train",
                    masks=[_blob(), _blob(y=25, x=30, r=3)])
        w.add_image(img16, name="b", verdict="no_tumor", patient_id="p2", source="s", split="val")
        w.add_image(img8, name="c", verdict="fake_added", patient_id="p3", source="s", method="splice",
                    split="test", masks=[_blob(y=15, x=20)], extra={"provenance": {"seed": 3}})
        w.add_image(img8, name="d", verdict="fake_removed", patient_id="p3", source="s", method="inpaint",
                    split="test", masks=[_blob(y=5, x=5, r=4)])
    return img8, img16


def test_rle_round_trip_and_uncompressed():
    m = _blob()
    rle = mask_to_rle(m)
    assert isinstance(rle["counts"], str) and rle["size"] == [32, 40]
    assert np.array_equal(rle_to_mask(rle), m)
    # uncompressed RLE (column-major run lengths starting with zeros)
    col = m.T.ravel().astype(int)
    runs, cur, n = [], 0, 0
    for v in col:
        if v == cur:
            n += 1
        else:
            runs.append(n); cur, n = v, 1
    runs.append(n)
    assert np.array_equal(rle_to_mask({"size": [32, 40], "counts": runs}), m)


def test_write_load_validate(tmp_path):
    img8, img16 = _write_small(tmp_path)
    assert validate_dataset(tmp_path, require_patient_disjoint=True) == []
    ds = load_dataset(tmp_path)
    assert len(ds) == 4 and ds.splits() == {"train": 1, "val": 1, "test": 2}
    a, b, c, d = ds
    assert np.array_equal(a.pixels(), img8) and a.pixels().dtype == np.uint8
    assert np.array_equal(b.pixels(), img16) and b.pixels().dtype == np.uint16
    assert len(a.instances()) == 2 and a.instances()[0].label == "real_tumor"
    assert np.array_equal(a.mask(), _blob() | _blob(y=25, x=30, r=3))
    assert not b.mask().any() and b.instances() == []
    assert c.method == "splice" and c.extra["provenance"] == {"seed": 3} and c.tampered
    assert [r.id for r in load_dataset(tmp_path, split="test")] == [3, 4]
    with pytest.raises(DatasetError):
        load_dataset(tmp_path, split="nope")


def test_polygon_segmentation_accepted(tmp_path):
    _write_small(tmp_path)
    data = json.loads((tmp_path / "annotations.json").read_text())
    data["annotations"][0]["segmentation"] = [[5.0, 5.0, 15.0, 5.0, 15.0, 15.0, 5.0, 15.0]]
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    assert validate_dataset(tmp_path) == []
    inst = load_dataset(tmp_path)[0].instances()[0]
    assert inst.mask[10, 10] and not inst.mask[20, 20]


def test_validator_finds_problems(tmp_path):
    _write_small(tmp_path)
    data = json.loads((tmp_path / "annotations.json").read_text())
    data["images"][0]["verdict"] = "maybe"
    data["images"][1]["split"] = "train"  # p2 still single-split
    data["images"][2]["method"] = None
    data["images"][3]["patient_id"] = "p1"  # p1 now in train and test
    data["annotations"][0]["category_id"] = 3
    data["annotations"].append(dict(data["annotations"][1], id=99, image_id=2))  # region on no_tumor
    data["categories"] = data["categories"][:2]
    (tmp_path / "annotations.json").write_text(json.dumps(data))
    colour = np.zeros((32, 40, 3), np.uint8)
    colour[..., 2] = 200  # red: not a grey slice stored as RGB
    cv2.imwrite(str(tmp_path / "images" / "c.png"), colour)
    (tmp_path / "images" / "d.png").unlink()
    problems = "\n".join(validate_dataset(tmp_path, require_patient_disjoint=True))
    for needle in ("verdict 'maybe'", "must name its tampering method", "no_tumor image must have no regions",
                   "categories must be exactly", "a colour image (3 channels)", "does not exist", "patient p1 appears in several"):
        assert needle in problems
    with pytest.raises(DatasetError, match="does not follow the dataset contract"):
        check_dataset(tmp_path)


def test_missing_and_corrupt_json(tmp_path):
    assert "no annotations.json" in validate_dataset(tmp_path)[0]
    (tmp_path / "annotations.json").write_text("{not json")
    with pytest.raises(DatasetError, match="not valid JSON"):
        load_dataset(tmp_path)


def test_writer_refuses_bad_input(tmp_path):
    img = np.zeros((32, 40), np.uint8)
    w = DatasetWriter(tmp_path / "out")
    with pytest.raises(ValueError, match="differ in size"):
        w.add_image(img, name="x", verdict="real_tumor", patient_id="p", source="s", masks=[np.ones((8, 8), bool)])
    with pytest.raises(ValueError, match="needs at least one non-empty mask"):
        w.add_image(img, name="x", verdict="fake_added", patient_id="p", source="s", method="splice")
    with pytest.raises(ValueError, match="method"):
        w.add_image(img, name="x", verdict="no_tumor", patient_id="p", source="s", method="splice")
    w.add_image(img, name="x", verdict="no_tumor", patient_id="p", source="s")
    w.close()
    with pytest.raises(DatasetError, match="not empty"):
        DatasetWriter(tmp_path / "out")


def test_a_grey_slice_saved_as_rgb_rgba_or_palette_is_read_as_grey_and_colour_is_refused(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(1)
    grey = rng.integers(0, 256, (20, 24), dtype=np.uint8)
    grey16 = rng.integers(0, 65536, (20, 24), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "rgb.png"), np.dstack([grey] * 3))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.dstack([grey] * 3 + [np.full_like(grey, 255)]))
    cv2.imwrite(str(tmp_path / "rgb16.png"), np.dstack([grey16] * 3))
    Image.fromarray(grey).convert("P").save(tmp_path / "palette.png")
    for name in ("rgb.png", "rgba.png", "palette.png"):
        read = read_png(tmp_path / name)
        assert read.dtype == np.uint8 and np.array_equal(read, grey), name
    assert np.array_equal(read_png(tmp_path / "rgb16.png"), grey16)

    colour = np.dstack([grey] * 3)
    colour[3, 4, 0] ^= 1  # one pixel not grey
    cv2.imwrite(str(tmp_path / "colour.png"), colour)
    with pytest.raises(DatasetError, match="a colour image"):
        read_png(tmp_path / "colour.png")
    alpha = np.full_like(grey, 255)
    alpha[0, 0] = 0
    cv2.imwrite(str(tmp_path / "transparent.png"), np.dstack([grey] * 3 + [alpha]))
    with pytest.raises(DatasetError, match="transparent pixels"):
        read_png(tmp_path / "transparent.png")
