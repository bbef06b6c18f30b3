"""Metrics on cases small enough to compute by hand."""
import numpy as np
import pytest

from inference.ml.metrics import (
    accuracy,
    classification_metrics,
    confusion_matrix,
    macro_f1,
    mask_iou,
    per_class,
    percentile_latency,
    probability_quality,
    roc_auc,
)

TRUE = ["real_tumor", "real_tumor", "no_tumor", "no_tumor", "fake_added", "fake_removed", "fake_removed"]
PRED = ["real_tumor", "no_tumor", "no_tumor", "fake_added", "fake_added", "fake_removed", "no_tumor"]


def test_confusion_matrix_rows_are_truth():
    cm = confusion_matrix(TRUE, PRED)
    assert cm.tolist() == [
        [1, 1, 0, 0],  # real_tumor: 1 right, 1 called no_tumor
        [0, 1, 1, 0],  # no_tumor: 1 right, 1 called fake_added
        [0, 0, 1, 0],
        [0, 1, 0, 1],
    ]
    with pytest.raises(ValueError):
        confusion_matrix(["real_tumor"], ["banana"])


def test_per_class_precision_recall_f1():
    classes = per_class(confusion_matrix(TRUE, PRED))
    # real_tumor: tp 1, predicted 1, support 2 -> P 1, R .5, F1 2/3
    assert classes["real_tumor"] == pytest.approx({"precision": 1.0, "recall": 0.5, "f1": 2 / 3, "support": 2})
    # no_tumor: tp 1, predicted 3, support 2 -> P 1/3, R 1/2, F1 0.4
    assert classes["no_tumor"]["precision"] == pytest.approx(1 / 3)
    assert classes["no_tumor"]["f1"] == pytest.approx(0.4)
    # fake_added: tp 1, predicted 2, support 1 -> P .5, R 1, F1 2/3
    assert classes["fake_added"]["f1"] == pytest.approx(2 / 3)
    # fake_removed: tp 1, predicted 1, support 2 -> F1 2/3
    assert classes["fake_removed"]["recall"] == pytest.approx(0.5)


def test_accuracy_and_macro_f1():
    cm = confusion_matrix(TRUE, PRED)
    assert accuracy(cm) == pytest.approx(4 / 7)
    assert macro_f1(cm) == pytest.approx((2 / 3 + 0.4 + 2 / 3 + 2 / 3) / 4)


def test_macro_f1_ignores_labels_absent_from_truth_and_predictions():
    cm = confusion_matrix(["no_tumor", "real_tumor"], ["no_tumor", "real_tumor"])
    assert macro_f1(cm) == 1.0
    # a label predicted but never true does count (its F1 is 0)
    cm = confusion_matrix(["no_tumor", "no_tumor"], ["no_tumor", "fake_added"])
    assert macro_f1(cm) == pytest.approx((2 / 3 + 0.0) / 2)


def test_mask_iou():
    a = np.zeros((4, 4), bool)
    b = np.zeros((4, 4), bool)
    a[:2, :2] = True  # 4 px
    b[1:3, 1:3] = True  # 4 px, overlap 1 px
    assert mask_iou(a, b) == pytest.approx(1 / 7)
    assert mask_iou(a, np.zeros_like(a)) == 0.0  # a missed region counts 0
    assert mask_iou(np.zeros_like(a), np.zeros_like(a)) is None
    with pytest.raises(ValueError):
        mask_iou(a, np.zeros((3, 3), bool))


def test_roc_auc_hand_cases():
    assert roc_auc([0, 0, 1, 1], [0.1, 0.2, 0.8, 0.9]) == 1.0
    assert roc_auc([0, 0, 1, 1], [0.9, 0.8, 0.2, 0.1]) == 0.0
    # pairs (pos, neg): (0.35 vs 0.1) win, (0.35 vs 0.4) loss, (0.8 vs both) wins -> 3/4
    assert roc_auc([0, 0, 1, 1], [0.1, 0.4, 0.35, 0.8]) == pytest.approx(0.75)
    # a tie counts one half
    assert roc_auc([0, 1], [0.5, 0.5]) == pytest.approx(0.5)
    assert roc_auc([1, 1], [0.2, 0.3]) is None


def test_roc_auc_agrees_with_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 200)
    s = np.round(rng.random(200), 1)  # many ties
    assert roc_auc(y, s) == pytest.approx(roc_auc_score(y, s))


def test_classification_metrics_shape_and_values():
    m = classification_metrics(TRUE, PRED, [0.1, 0.2, 0.1, 0.9, 0.8, 0.7, 0.3], [1.0, 0.0, None, None, 0.5, 0.25, 0.0])
    assert m["n_images"] == 7
    assert m["confusion_matrix"]["labels"] == ["real_tumor", "no_tumor", "fake_added", "fake_removed"]
    assert m["mean_iou"] == pytest.approx((1.0 + 0.0 + 0.5 + 0.25 + 0.0) / 5)
    # tampered scores 0.8, 0.7, 0.3 against clean 0.1, 0.2, 0.1, 0.9: each beats 3 of 4 -> 9/12
    assert m["tamper_auc"] == pytest.approx(0.75)


def test_percentile_latency():
    assert percentile_latency([0.1, 0.2, 0.3]) == pytest.approx({"p50": 0.2, "p95": 0.29})
    assert percentile_latency([]) == {"p50": None, "p95": None}


def test_every_robustness_perturbation_keeps_the_slice_and_changes_it():
    from inference.ml.evaluate import PERTURBATIONS

    from .conftest import sample_slices

    tumour, _, _ = sample_slices()
    for name, fn in PERTURBATIONS.items():
        out = fn(tumour, np.random.default_rng(0))
        assert out.shape == tumour.shape and out.dtype == np.uint8, name
        diff = np.abs(out.astype(int) - tumour.astype(int))
        assert diff.any(), name
        # the mild ones are mild: under a grey level on average
        if name in ("gaussian noise sigma 1", "JPEG quality 95", "resample 0.9x and back (bicubic)"):
            assert diff.mean() < 1.5, (name, diff.mean())


def test_region_size_breakdown_bins_each_verdict_by_its_true_area():
    from types import SimpleNamespace

    from inference.ml.evaluate import area_group_order, _breakdown, area_group

    def rec(i, verdict, *areas):
        return SimpleNamespace(id=i, verdict=verdict, annotations=[{"area": a} for a in areas])

    records = [rec(1, "no_tumor"), rec(2, "real_tumor", 499), rec(3, "real_tumor", 500),
               rec(4, "fake_added", 1000, 500), rec(5, "fake_added", 2999), rec(6, "fake_removed", 3000),
               rec(7, "real_tumor", 120)]
    assert [area_group(r) for r in records] == [
        "no_tumor", "real_tumor, < 500 px", "real_tumor, 500-1499 px", "fake_added, 1500-2999 px",
        "fake_added, 1500-2999 px", "fake_removed, >= 3000 px", "real_tumor, < 500 px"]
    predicted = {1: "no_tumor", 2: "no_tumor", 3: "real_tumor", 4: "fake_added", 5: "fake_removed",
                 6: "fake_removed", 7: "real_tumor"}
    rows = [{"image_id": r.id, "verdict": r.verdict, "predicted": predicted[r.id], "iou": None} for r in records]
    out = _breakdown(rows, records, area_group, order=area_group_order)
    # verdicts in their usual order, sizes small to large within each
    assert list(out) == ["real_tumor, < 500 px", "real_tumor, 500-1499 px", "no_tumor", "fake_added, 1500-2999 px",
                         "fake_removed, >= 3000 px"]
    assert out["real_tumor, < 500 px"]["n"] == 2 and out["real_tumor, < 500 px"]["accuracy"] == 0.5
    assert out["fake_added, 1500-2999 px"]["accuracy"] == 0.5
    assert out["fake_removed, >= 3000 px"]["flagged_tampered"] == 1.0


def _p(real=0.0, no=0.0, added=0.0, removed=0.0):
    return {"real_tumor": real, "no_tumor": no, "fake_added": added, "fake_removed": removed}


def test_probability_quality_hand_case():
    # two images said at 0.9, one right: gap 0.4; two said at 0.6, both right: gap 0.4 -> ECE 0.4
    truth = ["real_tumor", "no_tumor", "fake_added", "fake_removed"]
    scores = [_p(real=0.9, no=0.1), _p(real=0.9, no=0.1), _p(added=0.6, removed=0.4), _p(added=0.4, removed=0.6)]
    q = probability_quality(truth, scores, bins=10)
    assert q["n_images"] == 4 and q["accuracy"] == pytest.approx(0.75)
    assert q["mean_confidence"] == pytest.approx(0.75)
    assert q["ece"] == pytest.approx(0.4) and q["mce"] == pytest.approx(0.4)
    # Brier: right at 0.9 -> 0.01 + 0.01; wrong at 0.9 (truth no_tumor at 0.1) -> 0.81 + 0.81; right at 0.6 -> 0.32 twice
    assert q["brier"] == pytest.approx((0.02 + 1.62 + 0.32 + 0.32) / 4)
    assert q["nll"] == pytest.approx(-(np.log(0.9) + np.log(0.1) + 2 * np.log(0.6)) / 4)
    filled = {round(b["low"], 1): b for b in q["reliability"] if b["count"]}
    assert set(filled) == {0.6, 0.9}
    assert filled[0.9]["count"] == 2 and filled[0.9]["accuracy"] == 0.5
    assert filled[0.6]["count"] == 2 and filled[0.6]["accuracy"] == 1.0
    assert sum(b["count"] for b in q["reliability"]) == 4 and len(q["reliability"]) == 10
    # the confident verdicts: all four at >= 0.6, the two said at 0.9 (one right) at >= 0.7, none at >= 0.95
    cover = {c["threshold"]: c for c in q["by_threshold"]}
    assert (cover[0.6]["n"], cover[0.6]["share"], cover[0.6]["accuracy"]) == (4, 1.0, 0.75)
    assert (cover[0.7]["n"], cover[0.7]["share"], cover[0.7]["accuracy"]) == (2, 0.5, 0.5)
    assert (cover[0.95]["n"], cover[0.95]["share"], cover[0.95]["accuracy"]) == (0, 0.0, None)


def test_probability_quality_perfect_and_edges():
    truth = ["no_tumor", "fake_added"]
    q = probability_quality(truth, [_p(no=1.0), _p(added=1.0)])
    assert q["ece"] == 0.0 and q["brier"] == 0.0 and q["nll"] == pytest.approx(0.0, abs=1e-12)
    assert q["reliability"][-1]["count"] == 2  # a confidence of exactly 1 falls in the last bin
    assert probability_quality([], [])["ece"] is None
    with pytest.raises(ValueError, match="sum to 1"):
        probability_quality(["no_tumor"], [_p(no=0.5)])
    with pytest.raises(ValueError, match="Unknown label"):
        probability_quality(["maybe"], [_p(no=1.0)])
    with pytest.raises(ValueError, match="differ in length"):
        probability_quality(["no_tumor"], [])


def _perfect_detections(records):
    """Every true region reported back as a detection of its verdict's category, score 1."""
    from inference.ml.coco import mask_bbox, mask_to_rle
    from inference.ml.labels import VERDICT_CATEGORY

    detections = []
    for rec in records:
        for inst in rec.instances():
            detections.append({"image_id": rec.id, "category_id": VERDICT_CATEGORY[rec.verdict],
                               "segmentation": mask_to_rle(inst.mask), "bbox": mask_bbox(inst.mask), "score": 1.0})
    return detections


def test_coco_ap_and_region_sizes_of_a_dataset_numbered_its_own_way(tiny_dataset, tmp_path):
    """Categories numbered otherwise, regions without area or bbox, region ids reused across images: the
    ground truth is still each image's verdict's category, its area and box taken from the mask."""
    import json
    import shutil

    from inference.ml.coco import load_dataset
    from inference.ml.evaluate import area_group, coco_average_precision

    original = list(load_dataset(tiny_dataset))
    foreign = tmp_path / "foreign"
    shutil.copytree(tiny_dataset, foreign)
    data = json.loads((foreign / "annotations.json").read_text())
    renumber = {1: 7, 2: 5, 3: 9}
    data["categories"] = [{"id": renumber[c["id"]], "name": c["name"]} for c in data["categories"]]
    for k, ann in enumerate(data["annotations"]):
        ann["category_id"] = renumber[ann["category_id"]]
        ann["id"] = 1  # one id for every region
        if k % 2:
            del ann["area"], ann["bbox"]
    (foreign / "annotations.json").write_text(json.dumps(data))
    records = list(load_dataset(foreign))

    expected = coco_average_precision(original, _perfect_detections(original))
    assert expected["segm"]["AP"] == pytest.approx(1.0) and expected["bbox"]["AP"] == pytest.approx(1.0)
    assert coco_average_precision(records, _perfect_detections(records)) == expected
    assert [area_group(r) for r in records] == [area_group(r) for r in original]
