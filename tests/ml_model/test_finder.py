"""The tumour finder: what it is taught to mark, its features for the learned verdict, and that training learns."""
from __future__ import annotations

import numpy as np
import torch

from inference.ml.coco import load_dataset
from inference.ml.finder import (FinderConfig, FinderTrainConfig, TumourFinder, finder_features,
                                 finder_from_state, finder_probability, finder_state, finder_target,
                                 train_finder)

from .conftest import build_tiny_dataset


def test_the_target_is_what_shows_a_tumour(tmp_path):
    records = {r.verdict: r for r in load_dataset(build_tiny_dataset(tmp_path / "d"), split="train")}
    assert finder_target(records["real_tumor"]).sum() == records["real_tumor"].mask().sum() > 0
    assert finder_target(records["fake_added"]).sum() == records["fake_added"].mask().sum() > 0
    # a removal's region is annotated, but it shows no tumour: nothing to mark
    assert records["fake_removed"].mask().any() and not finder_target(records["fake_removed"]).any()
    assert not finder_target(records["no_tumor"]).any()


def test_any_slice_size_comes_back_at_its_own_size():
    finder = TumourFinder(FinderConfig(widths=(4, 8, 8))).eval()
    for shape in ((256, 256), (250, 237), (31, 17)):
        image = np.random.default_rng(0).integers(0, 255, shape, dtype=np.uint8)
        (prob,) = finder_probability(finder, [image])
        assert prob.shape == shape and prob.dtype == np.float32
        assert 0.0 <= prob.min() and prob.max() <= 1.0


def test_features_on_a_hand_made_map():
    prob = np.zeros((40, 50), np.float32)
    prob[10:20, 10:20] = 0.9  # 100 px at >= 0.5
    prob[30:32, 40:42] = 0.3
    f = finder_features(prob, ["fake_added", "real_tumor", "real_tumor"], [0.8, 0.2, 0.6],
                        [[38, 28, 45, 35], [0, 0, 5, 5], [8, 8, 22, 22]])
    assert f[0] == np.float32(0.9)
    assert np.isclose(f[1], np.log1p(100))
    assert f[2] == np.float32(0.9)  # inside the best real_tumor box (score 0.6), not the 0.2 one at the corner
    assert f[3] == np.float32(0.3)  # inside the fake_added box
    # no detection of a class: 0; a box reaching past the slice is clipped
    g = finder_features(prob, ["real_tumor"], [0.5], [[45, 35, 80, 90]])
    assert g[2] == 0.0 and g[3] == 0.0


def test_state_round_trip_gives_the_same_map():
    finder = TumourFinder(FinderConfig(widths=(4, 8))).eval()
    image = np.random.default_rng(1).integers(0, 255, (32, 32), dtype=np.uint8)
    again = finder_from_state(finder_state(finder))
    assert np.array_equal(finder_probability(finder, [image])[0], finder_probability(again, [image])[0])


def test_training_learns_the_tumour_and_resumes(tmp_path):
    torch.manual_seed(0)
    root = build_tiny_dataset(tmp_path / "d", size=64)
    train = list(load_dataset(root, split="train"))
    val = list(load_dataset(root, split="test"))
    cfg = FinderTrainConfig(minutes=0.4, batch_size=4, lr=5e-3, threads=1, val_every_minutes=0.2, crop=48,
                            config=FinderConfig(widths=(8, 16, 16)))
    finder, report = train_finder(train, val, cfg, out_dir=tmp_path / "run")
    assert (tmp_path / "run" / "finder.pt").is_file() and (tmp_path / "run" / "finder-checkpoint.pt").is_file()
    assert report["steps"] > 20 and len(report["history"]) >= 2
    # the mirrored test patient's tumour: marked inside, not outside, and not on its removal
    by_verdict = {r.verdict: r for r in val}
    real = by_verdict["real_tumor"]
    prob = finder_probability(finder, [real.pixels()])[0]
    mask = real.mask()
    assert prob[mask].mean() > 0.5 > prob[~mask].mean()
    removed = finder_probability(finder, [by_verdict["fake_removed"].pixels()])[0]
    assert removed[mask].mean() < prob[mask].mean()
    # the budget is spent: a second call resumes and stops at once, keeping the best state
    _, again = train_finder(train, val, cfg, out_dir=tmp_path / "run")
    assert again["steps"] == report["steps"]
