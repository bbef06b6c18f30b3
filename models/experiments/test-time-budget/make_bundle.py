"""Step 2 of RULE.md: 0.9.0's bundle with another test-time budget, ready for `calibrate_detector`; then, after
calibration, the shipped refiner's cut put back (calibrate_detector fits the reading and the verdict, not the
refiner).

    .venv/bin/python models/experiments/test-time-budget/make_bundle.py budget OUT.pt PRE POST DETS
    .venv/bin/python manage.py calibrate_detector /work/data/tamper-v13 --weights OUT.pt --out OUT.pt
    .venv/bin/python models/experiments/test-time-budget/make_bundle.py refine OUT.pt
"""
from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from inference.ml.model import load_bundle, save_bundle  # noqa: E402

SHIPPED = "models/detector.pt"


def main(argv: list[str]) -> None:
    step, out = argv[0], argv[1]
    if step == "budget":
        pre, post, dets = (int(v) for v in argv[2:5])
        bundle = load_bundle(SHIPPED)
        bundle["config"] = {**bundle["config"], "rpn_pre_nms_top_n_test": pre, "rpn_post_nms_top_n_test": post,
                            "box_detections_per_img": dets}
    elif step == "refine":
        shipped = load_bundle(SHIPPED)["calibration"]
        bundle = load_bundle(out)
        bundle["calibration"] = {**bundle["calibration"], "refine": shipped["refine"],
                                 "refine_threshold": shipped["refine_threshold"]}
    else:
        raise SystemExit(f"unknown step {step!r}: budget or refine")
    save_bundle(bundle, out)
    print(step, out, {k: bundle["config"][k] for k in ("rpn_pre_nms_top_n_test", "rpn_post_nms_top_n_test",
                                                       "box_detections_per_img")},
          {k: bundle["calibration"].get(k) for k in ("refine", "refine_threshold", "test_time_flip")})


if __name__ == "__main__":
    main(sys.argv[1:])
