"""A few training steps on a few real images: losses, checkpoints, resume, the bundle, augmentation."""
from __future__ import annotations

import hashlib
import json

import numpy as np
import pytest
import torch

from inference.ml.coco import site_of
from inference.ml.labels import VERDICTS
from inference.ml.model import DEFAULT_CALIBRATION, load_bundle
from inference.ml.predictor import Instance, Predictor
from inference.ml.train import (
    TrainConfig,
    ValItem,
    epoch_order,
    fit_calibration,
    fit_display,
    make_target,
    score_items,
    train,
)
from inference.ml.transforms import AugmentConfig, augment

from .conftest import build_tiny_dataset


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory):
    # 96 x 96 crops around the tumour: the same code path, a fraction of the CPU
    return build_tiny_dataset(tmp_path_factory.mktemp("small") / "ds", size=96)


def _config(dataset, out, **over):
    base = dict(dataset_dir=str(dataset), out_dir=str(out), val_split="test", epochs=1, batch_size=2,
                warmup_steps=1, lr=1e-3, threads=2, val_every_minutes=None, log_every=1,
                model={"backbone": "tiny", "min_size": 96, "max_size": 96}, augment={"flip": True})
    base.update(over)
    return TrainConfig.from_dict(base)


def test_train_steps_checkpoint_resume_and_bundle(small_dataset, tmp_path):
    out = tmp_path / "run"
    summary = train(_config(small_dataset, out))
    assert summary["global_step"] == 2 and summary["epoch"] == 1  # 4 train images / batch 2
    losses = [json.loads(line) for line in (out / "losses.jsonl").read_text().splitlines()]
    assert [row["step"] for row in losses] == [1, 2]
    for row in losses:
        assert np.isfinite(row["loss"])
        assert {"loss_classifier", "loss_mask", "loss_objectness", "loss_image"} <= set(row)
    ckpt = torch.load(out / "checkpoint.pt", weights_only=False)
    assert {"model", "optimizer", "scheduler", "epoch", "args", "global_step"} <= set(ckpt)
    assert ckpt["args"]["model"]["backbone"] == "tiny"
    history = json.loads((out / "history.json").read_text())
    assert history[-1]["step"] == 2 and "calibration" in history[-1]

    # the best bundle is a Predictor
    predictor = Predictor.load(out / "detector.pt")
    assert predictor.name == "mri-tamper-maskrcnn"
    assert predictor.meta["trained"] is True and predictor.meta["steps"] == 2
    assert predictor.meta["software"]["torch"] == torch.__version__  # what trained it, for whoever reproduces it
    from inference.ml.bundle_file import read_bundle_header

    assert read_bundle_header(out / "detector.pt")["meta"]["software"] == predictor.meta["software"]  # torch-free
    assert set(predictor.calibration) >= {"temperature", "image_weight", "detection_threshold"}

    # resume: one more epoch continues from step 2, with the optimizer state restored
    before = {k: v.clone() for k, v in ckpt["model"].items()}
    summary = train(_config(small_dataset, out, epochs=2), resume=out / "checkpoint.pt")
    assert summary["global_step"] == 4 and summary["epoch"] == 2
    after = torch.load(out / "checkpoint.pt", weights_only=False)["model"]
    changed = [k for k in before if before[k].dtype.is_floating_point and not torch.equal(before[k], after[k])]
    assert changed, "resumed training did not update the weights"
    steps = [json.loads(line)["step"] for line in (out / "losses.jsonl").read_text().splitlines()]
    assert steps == [1, 2, 3, 4]


def test_training_reduces_the_loss_on_a_fixed_batch(small_dataset, tmp_path):
    """Overfit 4 images for a few steps: the total loss must fall (the optimisation is wired correctly)."""
    cfg = _config(small_dataset, tmp_path / "fit", epochs=6, batch_size=4, lr=2e-3, val_split=None,
                  augment={"flip": False, "contrast": False})
    train(cfg)
    losses = [json.loads(line)["loss"] for line in (tmp_path / "fit" / "losses.jsonl").read_text().splitlines()]
    assert len(losses) == 6
    assert np.mean(losses[-2:]) < np.mean(losses[:2])


def test_epoch_order_is_a_seeded_permutation():
    a, b, c = epoch_order(10, 0, 1), epoch_order(10, 0, 1), epoch_order(10, 0, 2)
    assert sorted(a) == list(range(10))
    assert (a == b).all() and not (a == c).all()


def test_make_target_boxes_from_masks():
    mask = np.zeros((20, 30), bool)
    mask[2:5, 10:16] = True
    t = make_target([mask], "fake_removed", mask.shape)
    assert t["boxes"].tolist() == [[10.0, 2.0, 16.0, 5.0]]
    assert t["labels"].tolist() == [3] and int(t["verdict"]) == 3
    empty = make_target([], "no_tumor", (20, 30))
    assert empty["boxes"].shape == (0, 4) and empty["masks"].shape == (0, 20, 30)


def test_crop_keeps_the_region_and_flip_moves_it():
    rng = np.random.default_rng(0)
    img = np.arange(256 * 256, dtype=np.uint32).reshape(256, 256).astype(np.uint8)
    mask = np.zeros((256, 256), bool)
    mask[200:230, 10:40] = True
    for _ in range(10):
        out, masks = augment(img, [mask], AugmentConfig(flip=False, contrast=False, crop=128), rng)
        assert out.shape == (128, 128)
        assert len(masks) == 1 and masks[0].sum() == mask.sum()  # the whole region is inside the crop
    out, masks = augment(img, [mask], AugmentConfig(flip=True, contrast=False), np.random.default_rng(1))
    flipped = not np.array_equal(out, img)
    assert np.array_equal(out, img[:, ::-1]) if flipped else np.array_equal(out, img)
    assert masks[0].sum() == mask.sum()


def test_every_augmentation_keeps_shape_and_dtype():
    rng = np.random.default_rng(0)
    img = (np.random.default_rng(1).random((64, 64)) * 255).astype(np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:40, 20:40] = True
    cfg = AugmentConfig(flip=True, rotate=True, contrast=True, noise=True, jpeg=True, launder=True)
    for _ in range(20):
        out, masks = augment(img, [mask], cfg, rng)
        assert out.shape == (64, 64) and out.dtype == np.uint8
        assert all(m.shape == (64, 64) and m.dtype == bool for m in masks)


def test_laundering_is_mild_whole_slice_processing_that_keeps_the_masks():
    from inference.ml.tamper.touchups import noise_sigma, residual
    from inference.ml.transforms import LAUNDERING, launder

    from .conftest import sample_slices

    tumour, mask, _ = sample_slices()
    head = tumour > 10
    base = noise_sigma(residual(tumour), head)
    for kind in LAUNDERING:
        for seed in range(3):
            out = launder(tumour, np.random.default_rng(seed), kind)
            assert out.shape == tumour.shape and out.dtype == np.uint8
            changed = np.abs(out.astype(int) - tumour.astype(int))
            assert changed.any(), kind  # it did something to the whole slice ...
            assert changed[head].mean() < 3.0, kind  # ... and only a little
            assert changed[head].astype(bool).mean() > 0.3, kind  # everywhere, not in one region
    noisy = launder(tumour, np.random.default_rng(0), "noise")
    assert noise_sigma(residual(noisy), head) > base
    blurred = launder(tumour, np.random.default_rng(0), "blur")
    assert noise_sigma(residual(blurred), head) < base
    with pytest.raises(ValueError, match="unknown laundering"):
        launder(tumour, np.random.default_rng(0), "sharpen")
    # through augment: masks are never moved by it (a same-size round trip)
    cfg = AugmentConfig(flip=False, contrast=False, launder=True)
    rng = np.random.default_rng(5)
    outs = [augment(tumour, [mask], cfg, rng) for _ in range(40)]
    assert all(np.array_equal(m[0], mask) for _, m in outs)
    share = np.mean([not np.array_equal(o, tumour) for o, _ in outs])
    assert 0.15 < share < 0.6  # p = 0.35


def test_site_of_reads_the_tcga_tissue_source_site():
    assert site_of("TCGA_CS_4941_19960909", "lgg-flair") == "TCGA-CS"
    assert site_of("TCGA-HT-7602", "lgg-flair") == "TCGA-HT"
    assert site_of("PGBM-001", "tcia-t1c") == "tcia-t1c"  # no site code: the corpus is the site


def test_held_out_methods_stay_out_and_the_bundle_says_what_it_saw(small_dataset, tmp_path):
    out = tmp_path / "lomo"
    train(_config(small_dataset, out, exclude_methods=["paste"]))
    meta = Predictor.load(out / "detector.pt").meta
    assert meta["train_methods"] == ["fill"]  # "paste" (the only injection) never reached training
    assert meta["train_sites"] == ["lgg"]
    log = (out / "train.log").read_text()
    assert "train: 3 images" in log and "held out of training and validation: methods ['paste']" in log
    with pytest.raises(ValueError, match="No training image is left"):
        train(_config(small_dataset, tmp_path / "loso", exclude_sites=["lgg"]))


def test_init_weights_starts_from_a_bundle(small_dataset, tmp_path):
    first = tmp_path / "first"
    train(_config(small_dataset, first))
    start = load_bundle(first / "detector.pt")
    # learning rate 0: the fine-tuned bundle's parameters must be exactly the starting bundle's
    second = tmp_path / "second"
    train(_config(small_dataset, second, lr=0.0, init_weights=str(first / "detector.pt"),
                  model={"backbone": "tiny", "min_size": 96, "max_size": 96}))
    tuned = load_bundle(second / "detector.pt")
    params = {name for name, _ in Predictor.load(first / "detector.pt").model.named_parameters()}
    assert params and all(torch.equal(start["state_dict"][k], tuned["state_dict"][k]) for k in params)
    assert "initialised from" in (second / "train.log").read_text()
    # the bundle says what it started from and where it trained
    init = tuned["meta"]["init_from"]
    assert init["sha256"] == hashlib.sha256((first / "detector.pt").read_bytes()).hexdigest()
    assert init["steps"] == start["meta"]["steps"] and tuned["meta"]["device"] == "cpu"
    assert start["meta"]["init_from"] is None
    # and a fresh model of the same config does not start there
    fresh = tmp_path / "fresh"
    train(_config(small_dataset, fresh, lr=0.0, seed=5))
    other = load_bundle(fresh / "detector.pt")
    assert not all(torch.equal(start["state_dict"][k], other["state_dict"][k]) for k in params)


def test_source_balance_repeats_the_smaller_corpus_with_fresh_augmentation():
    from inference.ml.train import TamperTrainSet

    class Rec:
        def __init__(self, source):
            self.source = source

    ts = TamperTrainSet.__new__(TamperTrainSet)
    ts.records = [Rec("lgg")] * 9 + [Rec("tcia")]
    assert ts.repeats(0.0).tolist() == [1] * 10
    assert ts.repeats(0.5).tolist() == [1] * 9 + [3]
    assert ts.repeats(1.0).tolist() == [1] * 9 + [9]
    order = epoch_order(10, 0, 0, ts.repeats(0.5))
    assert len(order) == 12
    copies = sorted(divmod(int(v), 10) for v in order)
    assert copies == [(0, i) for i in range(10)] + [(1, 9), (2, 9)]
    # without repeats the order is the plain permutation it always was
    assert sorted(epoch_order(10, 0, 0).tolist()) == list(range(10))


def test_small_region_repeat_multiplies_only_small_lesions():
    from inference.ml.train import TamperTrainSet

    class Rec:
        def __init__(self, source, *areas):
            self.source = source
            self.annotations = [{"area": a} for a in areas]

    ts = TamperTrainSet.__new__(TamperTrainSet)
    # no region, a 120 px lesion, two regions of 300 + 250 px (550: not small), a 499 px lesion, a large one
    ts.records = [Rec("lgg"), Rec("lgg", 120), Rec("lgg", 300, 250), Rec("lgg", 499), Rec("lgg", 2000)] * 3 + [
        Rec("tcia", 100)]
    assert ts.repeats(0.0, 1).tolist() == [1] * 16
    assert ts.repeats(0.0, 3).tolist() == [1, 3, 1, 3, 1] * 3 + [3]
    # with the source balance: the small tcia lesion (source repeat 4) is seen 4 x 3 times
    assert ts.repeats(0.5, 3).tolist() == [1, 3, 1, 3, 1] * 3 + [12]
    assert ts.repeats(0.0, 2, small_region_area=1000).tolist() == [1, 2, 2, 2, 1] * 3 + [2]
    with pytest.raises(ValueError, match="at least 1"):
        ts.repeats(0.0, 0)


def test_repeated_copies_get_other_augmentations(small_dataset):
    from inference.ml.coco import load_dataset
    from inference.ml.train import TamperTrainSet

    ts = TamperTrainSet(list(load_dataset(small_dataset, split="train")), AugmentConfig(contrast=True, noise=True), 0)
    a, _ = ts.sample(0, 0)
    b, _ = ts.sample(0, 0, copy=1)
    assert torch.equal(a, ts.sample(0, 0)[0]) and not torch.equal(a, b)


def _val_item(verdict="fake_added"):
    """A 32 x 32 item: truth an 8 x 8 square; one strong detection whose mask probability is 0.9 on the square
    and 0.55 on a 2 px ring around it, and a weak false detection elsewhere."""
    truth = np.zeros((32, 32), bool)
    truth[8:16, 8:16] = True
    strong = np.zeros((32, 32), np.uint8)
    strong[6:18, 6:18] = round(0.55 * 255)
    strong[8:16, 8:16] = round(0.9 * 255)
    weak = np.zeros((32, 32), np.uint8)
    weak[24:30, 24:30] = 230
    probs = np.stack([strong, weak])
    dets = [Instance(verdict, 0.9, (6.0, 6.0, 18.0, 18.0), strong >= 128),
            Instance(verdict, 0.35, (24.0, 24.0, 30.0, 30.0), weak >= 128)]
    logits = np.full(4, -5.0)
    logits[list(VERDICTS).index(verdict)] = 5.0
    return ValItem(verdict, truth, logits, dets, probs)


def test_display_fit_picks_the_mask_and_show_thresholds_with_the_best_iou():
    items = [_val_item("fake_added"), _val_item("real_tumor")]
    cal = {**DEFAULT_CALIBRATION, "detection_threshold": 0.3}
    before = score_items(items, cal, has_image_head=True)
    # the default shows the ring (0.55 >= 0.5) and the weak false region: 64 / (144 + 36)
    assert before["mean_iou"] == pytest.approx(64 / 180)
    fitted = fit_display(items, cal, has_image_head=True)
    assert fitted["mask_threshold"] in (0.6, 0.7)  # cuts the ring, keeps the square
    assert fitted["show_threshold"] >= 0.5 or fitted["show_relative"] >= 0.5  # drops the weak region
    assert {k: fitted[k] for k in ("temperature", "image_weight", "detection_threshold")} == {
        k: cal[k] for k in ("temperature", "image_weight", "detection_threshold")}  # verdicts untouched
    assert score_items(items, fitted, has_image_head=True)["mean_iou"] == pytest.approx(1.0)
    # the full fit ends with the same display choice
    full, metrics = fit_calibration(items, has_image_head=True)
    assert metrics["mean_iou"] == pytest.approx(1.0) and full["mask_threshold"] in (0.6, 0.7)


def test_display_fit_changes_nothing_when_nothing_is_gained():
    item = _val_item()
    item.mask_probs[0][item.mask_probs[0] < 200] = 0  # no ring
    item.mask_probs = item.mask_probs[:1]
    item.detections = item.detections[:1]
    cal = {**DEFAULT_CALIBRATION, "detection_threshold": 0.3}
    assert fit_display([item], cal, has_image_head=True) == cal


def test_worker_processes_give_the_same_batches_as_the_main_process(small_dataset):
    from inference.ml.coco import load_dataset
    from inference.ml.train import BatchStream, TamperTrainSet

    ts = TamperTrainSet(list(load_dataset(small_dataset, split="train")),
                        AugmentConfig(contrast=True, noise=True, jpeg=True), 3)
    steps = len(ts) // 2
    inline, parallel = BatchStream(ts, 2), BatchStream(ts, 2, workers=2)
    try:
        for epoch, first in ((1, 1), (2, 0)):  # resumed at step 1 of an epoch, then a whole epoch: same workers
            order = epoch_order(len(ts), 3, epoch)
            a_batches = list(inline.epoch(order, epoch, first, steps))
            b_batches = list(parallel.epoch(order, epoch, first, steps))
            assert len(a_batches) == len(b_batches) == steps - first > 0
            for a, b in zip(a_batches, b_batches):
                for (img_a, tgt_a), (img_b, tgt_b) in zip(a, b):
                    assert torch.equal(img_a, img_b)
                    assert all(torch.equal(tgt_a[k], tgt_b[k]) for k in tgt_a)
        # resuming at step 1 gives the batch a whole epoch gives at step 1; another epoch draws other samples
        order = epoch_order(len(ts), 3, 1)
        assert torch.equal(list(inline.epoch(order, 1, 0, steps))[1][0][0], list(inline.epoch(order, 1, 1, steps))[0][0][0])
        assert not torch.equal(list(inline.epoch(order, 1, 0, steps))[0][0][0], list(inline.epoch(order, 2, 0, steps))[0][0][0])
        # an epoch abandoned half-way (validation, a signal) does not leak into the next
        it = parallel.epoch(order, 1, 0, steps)
        next(it)
        again = list(parallel.epoch(order, 1, 0, steps))
        assert len(again) == steps and torch.equal(again[0][0][0], list(inline.epoch(order, 1, 0, steps))[0][0][0])
    finally:
        parallel.close()


def test_training_with_workers_runs_and_writes_a_bundle(small_dataset, tmp_path):
    summary = train(_config(small_dataset, tmp_path / "run", workers=2, max_steps=2))
    assert summary["global_step"] == 2
    assert load_bundle(tmp_path / "run" / "detector.pt")["meta"]["train_args"]["workers"] == 2


def test_paste_tumour_changes_only_its_region_and_respects_the_tissue():
    from inference.ml.transforms import paste_tumour

    rng = np.random.default_rng(0)
    image = rng.integers(40, 60, (64, 64)).astype(np.uint8)
    donor = np.full((64, 64), 200, np.uint8)
    mask = np.zeros((64, 64), bool)
    mask[20:30, 24:36] = True
    out, region = paste_tumour(image, donor, mask, np.random.default_rng(1))
    assert out.dtype == np.uint8 and out.shape == image.shape
    assert region[mask].all()  # the whole donor tumour is in the reported region
    assert np.array_equal(out[~region], image[~region])  # nothing outside it changed
    assert out[mask].mean() > 150  # the tumour is there (intensity 200 x 0.85-1.15, feathered at its edge)
    # the same draws give the same slice
    again, _ = paste_tumour(image, donor, mask, np.random.default_rng(1))
    assert np.array_equal(out, again)
    # a place outside the head's tissue, a size mismatch or an empty donor mask: no paste
    interior = np.zeros((64, 64), bool)
    interior[:, :32] = True
    assert paste_tumour(image, donor, mask, rng, interior) is None
    assert paste_tumour(image, donor[:32], mask, rng) is None
    assert paste_tumour(image, donor, np.zeros_like(mask), rng) is None


def test_pasted_injections_turn_tumour_free_draws_into_fake_added(tmp_path):
    from inference.ml.coco import load_dataset
    from inference.ml.labels import CATEGORY_IDS
    from inference.ml.train import TamperTrainSet

    records = list(load_dataset(build_tiny_dataset(tmp_path / "ds")))  # two patients: each is the other's donor
    healthy = [k for k, rec in enumerate(records) if rec.verdict == "no_tumor"]
    plain = TamperTrainSet(records, AugmentConfig.none(), 0)
    always = TamperTrainSet(records, AugmentConfig.none(), 0, paste_injections=1.0)
    for k in healthy:
        image, target = always.sample(k, 0)
        assert target["labels"].tolist() == [CATEGORY_IDS["fake_added"]]
        assert int(target["verdict"]) == VERDICTS.index("fake_added")
        assert target["masks"].sum() > 0
        before, plain_target = plain.sample(k, 0)
        assert len(plain_target["labels"]) == 0
        changed = (image != before).any(0)
        assert changed.any() and not changed[~target["masks"][0].bool()].any()
    # slices of other verdicts are never pasted into, and without the option nothing changes
    other = next(k for k, rec in enumerate(records) if rec.verdict == "real_tumor")
    assert torch.equal(always.sample(other, 0)[0], plain.sample(other, 0)[0])
    with pytest.raises(ValueError, match="probability"):
        TamperTrainSet(records, AugmentConfig.none(), 0, paste_injections=1.5)
