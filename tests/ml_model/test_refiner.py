"""The mask refiner: its window, its identity start, what the predictor does with it, training and the command."""
from __future__ import annotations

import json
from io import StringIO
from pathlib import Path

import numpy as np
import pytest
import torch
from django.core.management import CommandError, call_command

from inference.ml.model import load_bundle, save_bundle
from inference.ml.predictor import DEFAULT_WEIGHTS, Predictor
from inference.ml.refiner import (
    WINDOW_PROB,
    CoarseItem,
    MaskRefiner,
    RefinerConfig,
    RefinerTrainConfig,
    attach_refiner,
    choose_refinement,
    near,
    refine_probability,
    refiner_loss,
    shown_iou,
    train_refiner,
    window_of,
    _crop_sample,
)

from .conftest import sample_slices


def _coarse_of(mask: np.ndarray, grow: int = 3, level: float = 0.8) -> np.ndarray:
    """A coarse probability like the detector's: the region grown a little, at one confidence."""
    return near(mask, grow).astype(np.float32) * level


def test_window_covers_the_region_and_its_margin_in_multiples_of_8():
    coarse = np.zeros((256, 240), np.float32)
    coarse[100:131, 50:77] = 0.6
    y0, y1, x0, x1 = window_of(coarse, 16)
    assert (y1 - y0) % 8 == 0 and (x1 - x0) % 8 == 0
    assert y0 <= 100 - 16 and y1 >= 131 + 16 and x0 <= 50 - 16 and x1 >= 77 + 16
    # at the slice's edge the window stays inside it
    coarse[:] = 0
    coarse[0:5, 230:240] = 0.9
    y0, y1, x0, x1 = window_of(coarse, 16)
    assert y0 == 0 and x1 == 240 and (y1 - y0) % 8 == 0 and (x1 - x0) % 8 == 0
    # below WINDOW_PROB nothing is shown: no window
    coarse[:] = WINDOW_PROB / 2
    assert window_of(coarse, 16) is None


def test_an_untrained_refiner_returns_the_coarse_mask():
    tumour, mask, _ = sample_slices()
    coarse = _coarse_of(mask)
    refiner = MaskRefiner().eval()
    prob = refine_probability(refiner, tumour, coarse, "real_tumor")
    y0, y1, x0, x1 = window_of(coarse, refiner.config.margin)
    inside = np.zeros_like(mask)
    inside[y0:y1, x0:x1] = True
    np.testing.assert_allclose(prob[inside], np.clip(coarse, 0.02, 0.98)[inside], atol=1e-5)
    assert not prob[~inside].any()
    with pytest.raises(ValueError, match="real_tumor, fake_added, fake_removed"):
        refine_probability(refiner, tumour, coarse, "no_tumor")


def test_training_steps_lower_the_loss_on_real_slices(tmp_path):
    tumour, mask, healthy = sample_slices()
    added = healthy.copy()
    added[mask] = tumour[mask]
    items = [CoarseItem(tumour, mask, (_coarse_of(mask, 5, 0.7) * 255).astype(np.uint8), "real_tumor", "shown"),
             CoarseItem(added, mask, (_coarse_of(mask, 5, 0.7) * 255).astype(np.uint8), "fake_added", "shown")]
    rng = np.random.default_rng(0)
    batch = [_crop_sample(items[k % 2], 64, 16, rng) for k in range(4)]
    grey, chans, truth = (torch.from_numpy(np.stack([b[k] for b in batch])) for k in range(3))
    assert grey.shape == (4, 1, 64, 64) and chans.shape == (4, 3, 64, 64) and truth.shape == (4, 1, 64, 64)
    cfg = RefinerTrainConfig(minutes=0.15, batch_size=4, crop=64, lr=3e-3, config=RefinerConfig(widths=(8, 8, 16, 16)))
    first = refiner_loss(MaskRefiner(cfg.config)(grey, chans), truth).item()
    refiner = train_refiner(items, cfg, out_dir=tmp_path)
    with torch.no_grad():
        after = refiner_loss(refiner(grey, chans), truth).item()
    assert after < first
    state = torch.load(tmp_path / "refiner-checkpoint.pt", weights_only=False)
    assert state["step"] > 0
    # resuming continues the count (the time budget is already spent: no new step)
    again = train_refiner(items, cfg, out_dir=tmp_path)
    assert torch.load(tmp_path / "refiner-checkpoint.pt", weights_only=False)["step"] == state["step"]
    assert all(torch.equal(a, b) for a, b in zip(again.state_dict().values(), refiner.state_dict().values()))
    with pytest.raises(ValueError, match="No training items"):
        train_refiner([], cfg, out_dir=tmp_path / "empty")


def test_shown_iou_counts_what_is_shown_and_choose_refinement_needs_a_gain():
    truth = np.zeros((64, 64), bool)
    truth[20:30, 20:30] = True  # 100 px
    coarse = np.zeros((64, 64), np.uint8)
    coarse[20:30, 20:35] = 200  # 150 px: IoU 100 / 150
    items = [CoarseItem(np.zeros((64, 64), np.uint8), truth, coarse, "fake_added", "shown"),
             CoarseItem(np.zeros((64, 64), np.uint8), truth, coarse, "fake_removed", "truth_class")]
    # three slices with a region, one shown: (2/3 + 0 + 0) / 3; the truth-class item is not what is shown
    report = shown_iou(None, items, 3, 0.5)
    assert report["unrefined"] == pytest.approx(2 / 9) and report["n_shown"] == 1 and "refined" not in report
    assert report == shown_iou(None, items, 3, 0.7)  # 200 / 255 = 0.78 clears both cuts
    assert shown_iou(None, items, 3, 0.8)["unrefined"] == 0.0
    with pytest.raises(ValueError, match="1 shown regions for 0 slices"):
        shown_iou(None, items, 0, 0.5)
    # the untrained refiner reproduces the coarse mask at every cut under its probability
    refined = shown_iou(MaskRefiner().eval(), items, 3, 0.5)["refined"]
    assert refined["0.5"] == pytest.approx(2 / 9) and refined["0.7"] == pytest.approx(2 / 9)
    assert choose_refinement({"unrefined": 0.5, "refined": {"0.4": 0.6, "0.5": 0.6, "0.6": 0.55}}) == \
        {"refine": True, "refine_threshold": 0.4}
    assert choose_refinement({"unrefined": 0.5, "refined": {"0.5": 0.5}}) == {"refine": False}
    assert choose_refinement({"unrefined": 0.5, "refined": {"0.5": 0.51}}, min_gain=0.02) == {"refine": False}


@pytest.fixture(scope="module")
def shipped_on_tumour():
    """The shipped detector, the real tumour slice it calls real_tumor, and its prediction with the detector's
    own masks (the shipped bundle may carry a refiner of its own: switched off for ``plain``)."""
    predictor = Predictor.load(DEFAULT_WEIGHTS)
    tumour, mask, _ = sample_slices()
    own, predictor.refiner = predictor.refiner, None
    plain = predictor.predict(tumour)
    predictor.refiner = own
    assert plain.verdict == "real_tumor" and plain.instances
    return predictor, tumour, mask, plain


def _with_refiner(tmp_path: Path, refiner: MaskRefiner, calibration: dict) -> Predictor:
    path = save_bundle(attach_refiner(load_bundle(DEFAULT_WEIGHTS), refiner, calibration, version="test"),
                       tmp_path / "refined.pt")
    return Predictor.load(path)


def test_the_predictor_redraws_only_near_what_it_shows_and_keeps_the_verdict(shipped_on_tumour, tmp_path):
    shipped, tumour, mask, plain = shipped_on_tumour
    # as shipped (refined or not), the verdict and its scores are the detector's
    as_shipped = shipped.predict(tumour)
    assert as_shipped.verdict == plain.verdict and as_shipped.scores == plain.scores
    # an untrained refiner at the detector's own mask cut shows exactly the detector's masks
    same = _with_refiner(tmp_path, MaskRefiner(), {"refine": True, "refine_threshold": 0.5}).predict(tumour)
    assert same.verdict == plain.verdict and same.scores == plain.scores
    assert [i.mask.sum() for i in same.instances] == [i.mask.sum() for i in plain.instances]
    # a refiner that says "all region" redraws up to its margin around the coarse region, never further
    eager = MaskRefiner()
    torch.nn.init.constant_(eager.head.bias, 20.0)
    predictor = _with_refiner(tmp_path, eager, {"refine": True, "refine_threshold": 0.5})
    assert predictor.refines and predictor.version == "test"
    pred = predictor.predict(tumour)
    assert pred.verdict == plain.verdict and pred.scores == plain.scores
    shown = np.logical_or.reduce([i.mask for i in pred.instances])
    before = np.logical_or.reduce([i.mask for i in plain.instances])
    assert shown.sum() > before.sum()
    assert not (shown & ~near(before | shown, 0)).any()
    raw = predictor.forward([tumour])[0]
    probs = raw["masks"][:, 0].numpy()
    allowed = near(probs.max(axis=0) >= WINDOW_PROB, eager.config.margin)
    assert not (shown & ~allowed).any()
    # switched off in the calibration: the detector's own masks
    off = _with_refiner(tmp_path, eager, {"refine": False})
    assert not off.refines
    assert [i.mask.sum() for i in off.predict(tumour).instances] == [i.mask.sum() for i in plain.instances]


def test_train_refiner_command_writes_a_bundle_that_refines(tiny_dataset, tmp_path):
    out = tmp_path / "run"
    stdout = StringIO()
    args = [str(tiny_dataset), "--out", str(out), "--minutes", "0.1", "--batch-size", "2", "--crop", "64",
            "--widths", "8,8,16,16", "--train-split", "train", "--val-split", "train", "--bundle-version", "9.9.9"]
    call_command("train_refiner", *args, stdout=stdout)
    printed = json.loads(stdout.getvalue().rsplit("}", 1)[0] + "}")
    report = json.loads((out / "refine.json").read_text())
    assert printed["val"] == report["val"] and printed["chosen"] == report["chosen"]
    # the tiny train split has 3 slices with a region (real, added, removed), all shown by the shipped detector
    assert report["val"]["n_regions"] == 3 and report["val"]["n_shown"] == 3
    assert set(report["val"]["refined"]) == {"0.3", "0.4", "0.5", "0.6", "0.7"}
    bundle = load_bundle(out / "detector.pt")
    shipped = load_bundle(DEFAULT_WEIGHTS)
    assert bundle["meta"]["version"] == "9.9.9" and bundle["refiner"]["config"]["widths"] == [8, 8, 16, 16]
    assert all(torch.equal(bundle["state_dict"][k], shipped["state_dict"][k]) for k in shipped["state_dict"])
    assert bundle["calibration"]["refine"] is report["chosen"]["refine"]
    predictor = Predictor.load(out / "detector.pt")
    assert predictor.refiner is not None
    # the coarse masks are cached: a rerun reads them and resumes the training
    assert (out / "coarse-train.pkl").is_file()
    call_command("train_refiner", *args, stdout=StringIO())
    # bad requests are refused with the reason
    with pytest.raises(CommandError, match="without the test split"):
        call_command("train_refiner", str(tiny_dataset), "--out", str(tmp_path / "x"), "--val-split", "test")
    with pytest.raises(CommandError, match="--widths takes comma-separated integers"):
        call_command("train_refiner", str(tiny_dataset), "--out", str(tmp_path / "x"), "--widths", "8,a")
    with pytest.raises(CommandError, match="multiple of 8"):
        call_command("train_refiner", str(tiny_dataset), "--out", str(tmp_path / "x"), "--crop", "60")
    with pytest.raises(CommandError, match="No detector weights"):
        call_command("train_refiner", str(tiny_dataset), "--out", str(tmp_path / "x"), "--weights",
                     str(tmp_path / "none.pt"))
