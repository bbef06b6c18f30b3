"""The tumour-finder experiment, step by step as RULE.md says (run with the project's venv from the repo root).

    python models/experiments/tumour-finder/experiment.py train DATA RUN   # step 1 (finder, time budget)
    python models/experiments/tumour-finder/experiment.py val DATA RUN     # step 2 (cross-validation on val)
    python models/experiments/tumour-finder/experiment.py test DATA RUN    # step 3 (only if step 2 passed)

DATA is tamper-v13; RUN a scratch folder (finder weights, cached outputs). Reports are written beside this file.
"""
from __future__ import annotations

import json
import logging
import pickle
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT))
HERE = Path(__file__).resolve().parent

from inference.ml.coco import load_dataset  # noqa: E402
from inference.ml.finder import (FinderTrainConfig, finder_features, finder_from_state,  # noqa: E402
                                 finder_probability, train_finder)
from inference.ml.imaging import to_uint8  # noqa: E402
from inference.ml.labels import VERDICTS  # noqa: E402
from inference.ml.metrics import accuracy, confusion_matrix, macro_f1  # noqa: E402
from inference.ml.predictor import Predictor  # noqa: E402
from inference.ml.train import (choose_verdict_model, collect_views, item_features, item_verdict,  # noqa: E402
                                score_items)
from inference.ml.verdict_model import fit_verdict_model, verdict_probs  # noqa: E402

WEIGHTS = ROOT / "models" / "detector.pt"


def collect(data: str, run: Path, split: str):
    """0.9.0's items (read as shipped) and the finder's features on ``split``, cached in RUN."""
    cache = run / f"items-{split}.pkl"
    if cache.is_file():
        with open(cache, "rb") as fh:
            return pickle.load(fh)
    import torch

    torch.set_num_threads(2)
    records = list(load_dataset(data, split=split))
    predictor = Predictor.load(WEIGHTS, device="cpu")
    plain, fused = collect_views(predictor, records, flip=predictor.test_time_flip)
    items = fused if predictor.test_time_flip else plain
    finder = finder_from_state(torch.load(run / "finder.pt", map_location="cpu", weights_only=False))
    probs = finder_probability(finder, [to_uint8(r.pixels()) for r in records])
    extra = np.stack([finder_features(p, [d.label for d in it.detections], [d.score for d in it.detections],
                                      [d.box for d in it.detections]) for p, it in zip(probs, items)])
    out = {"items": items, "extra": extra, "groups": [r.patient_id for r in records],
           "ids": [r.id for r in records], "calibration": predictor.calibration,
           "has_image_head": predictor.has_image_head}
    with open(cache, "wb") as fh:
        pickle.dump(out, fh)
    return out


def step_train(data: str, run: Path) -> None:
    train = list(load_dataset(data, split="train"))
    val = list(load_dataset(data, split="val"))
    cfg = FinderTrainConfig(minutes=float(sys.argv[4]) if len(sys.argv) > 4 else 30.0, threads=2)
    _, report = train_finder(train, val, cfg, out_dir=run)
    (HERE / "finder_training.json").write_text(json.dumps({"config": cfg.to_dict(), **report}, indent=1))


def step_val(data: str, run: Path) -> None:
    c = collect(data, run, "val")
    items, groups, hih = c["items"], c["groups"], c["has_image_head"]
    truth = [it.verdict for it in items]
    _, report = choose_verdict_model(items, groups, c["calibration"], hih, mode="on")
    x13 = np.stack([item_features(it, hih) for it in items])
    _, cv_c = fit_verdict_model(np.hstack([x13, c["extra"]]), truth, groups)
    a, b = report["rule_cv"]["macro_f1"], report["verdict_model_cv"]["macro_f1"]
    passed = cv_c["macro_f1"] >= max(a, b) + 0.010
    tumour = np.array([v in ("real_tumor", "fake_added") for v in truth])
    from inference.ml.metrics import roc_auc

    out = {"split": "val", "n": len(items), "a_rule_cv": report["rule_cv"], "b_verdict_model_cv": report["verdict_model_cv"],
           "c_with_finder_cv": cv_c, "passed": bool(passed),
           "finder_max_prob_auc_shows_tumour": roc_auc(tumour.tolist(), c["extra"][:, 0].tolist())}
    (HERE / "validation.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


def step_test(data: str, run: Path) -> None:
    v = collect(data, run, "val")
    t = collect(data, run, "test")
    hih = v["has_image_head"]
    xv = np.hstack([np.stack([item_features(it, hih) for it in v["items"]]), v["extra"]])
    xt = np.hstack([np.stack([item_features(it, hih) for it in t["items"]]), t["extra"]])
    model, cv = fit_verdict_model(xv, [it.verdict for it in v["items"]], v["groups"])
    truth = [it.verdict for it in t["items"]]
    base = [item_verdict(it, t["calibration"], hih)[0] for it in t["items"]]
    new = [VERDICTS[int(np.argmax(verdict_probs(model, f)))] for f in xt]
    fixed = sum(1 for y, p, q in zip(truth, base, new) if p != y and q == y)
    broken = sum(1 for y, p, q in zip(truth, base, new) if p == y and q != y)
    from scipy.stats import binomtest

    p_value = binomtest(fixed, fixed + broken).pvalue if fixed + broken else 1.0
    mb, mn = confusion_matrix(truth, base), confusion_matrix(truth, new)
    out = {"split": "test", "n": len(truth), "fitted_on_val_cv": cv,
           "baseline_0.9.0": {"accuracy": accuracy(mb), "macro_f1": macro_f1(mb)},
           "with_finder": {"accuracy": accuracy(mn), "macro_f1": macro_f1(mn), "confusion": mn.tolist()},
           "fixed": fixed, "broken": broken, "mcnemar_exact_p": p_value,
           "baseline_scored_again": score_items(t["items"], t["calibration"], hih, with_iou=False)["accuracy"]}
    (HERE / "test.json").write_text(json.dumps(out, indent=1))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    step, data, run = sys.argv[1], sys.argv[2], Path(sys.argv[3])
    run.mkdir(parents=True, exist_ok=True)
    {"train": step_train, "val": step_val, "test": step_test}[step](data, run)
