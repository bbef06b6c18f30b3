"""inference.ml.dataset.pack: a split travels in size-limited parts and unpacks pixel for pixel."""
from __future__ import annotations

import numpy as np
import pytest

from inference.ml.coco import load_dataset, read_png
from inference.ml.dataset import pack as pack_split

from .conftest import build_tiny_dataset

def test_a_split_packs_into_parts_and_unpacks_to_the_same_pixels(tmp_path):
    dataset = build_tiny_dataset(tmp_path / "ds")
    original = {r.file_name: r for r in load_dataset(dataset, split="train")}
    parts = pack_split.pack(dataset, tmp_path / "packed", "train", part_bytes=40_000)
    assert len(parts) > 1  # the size limit was applied
    assert all(sum(f.stat().st_size for f in (p / "images").iterdir()) <= 40_000 or len(list((p / "images").iterdir())) == 1
               for p in parts)
    assert [p for p in parts if (p / "annotations.json").is_file()] == [parts[-1]]
    assert pack_split.main(["unpack", *map(str, parts), "--out", str(tmp_path / "copy")]) == 0
    copy = {r.file_name: r for r in load_dataset(tmp_path / "copy")}
    assert copy.keys() == original.keys() and {r.split for r in copy.values()} == {"train"}
    for name, rec in original.items():
        assert np.array_equal(read_png(tmp_path / "copy" / name), rec.pixels())
        assert copy[name].annotations == rec.annotations
    # a part left behind is named, not silently skipped
    with pytest.raises(ValueError, match="in none of the parts"):
        pack_split.unpack(parts[1:], tmp_path / "incomplete")


def test_pack_refuses_an_empty_split(tmp_path, capsys):
    dataset = build_tiny_dataset(tmp_path / "ds")
    assert pack_split.main(["pack", str(dataset), str(tmp_path / "p"), "--split", "nosuch"]) == 1
    assert "no image in split 'nosuch'" in capsys.readouterr().err


def test_two_splits_travel_together_and_a_missing_one_is_named(tmp_path, capsys):
    dataset = build_tiny_dataset(tmp_path / "ds")
    wanted = {r.file_name: r.split for r in load_dataset(dataset) if r.split in ("train", "test")}
    assert set(wanted.values()) == {"train", "test"}
    parts = pack_split.pack(dataset, tmp_path / "packed", "train,test", part_bytes=10_000_000)
    pack_split.unpack(parts, tmp_path / "copy")
    assert {r.file_name: r.split for r in load_dataset(tmp_path / "copy")} == wanted
    assert pack_split.main(["pack", str(dataset), str(tmp_path / "p"), "--split", "train,nosuch"]) == 1
    assert "no image in split 'nosuch'" in capsys.readouterr().err
