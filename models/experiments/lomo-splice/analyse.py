"""Per-method figures of a leave-one-method-out evaluation, with patient-resampled 95 % intervals.

    python models/experiments/lomo-splice/analyse.py DATA EVAL_DIR [OUT.json] [--held-out splice]

DATA is the dataset (annotations.json); EVAL_DIR an `evaluate_detector` output (predictions.jsonl). For each
method and kind ("gan injection", "patch removal", ...; and the authentic slices): slices, patients, the share
flagged as tampered (verdict fake_added or fake_removed), the share given the right verdict; and the held-out
method's flagged share minus each trained-on method's of the same kind (injection or removal), each with a
percentile interval over 2000 resamples of the test patients (each drawn with all its slices). Standard library and numpy only.
"""
from __future__ import annotations

import argparse
import json
from collections import defaultdict
from pathlib import Path

import numpy as np

TAMPERED = {"fake_added", "fake_removed"}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("data")
    ap.add_argument("eval_dir")
    ap.add_argument("out", nargs="?", default=None)
    ap.add_argument("--held-out", default="splice")
    ap.add_argument("--resamples", type=int, default=2000)
    args = ap.parse_args()

    images = {im["id"]: im for im in json.loads((Path(args.data) / "annotations.json").read_text())["images"]}
    rows = []
    for line in (Path(args.eval_dir) / "predictions.jsonl").read_text().splitlines():
        p = json.loads(line)
        im = images[p["image_id"]]
        kind = {"fake_added": "injection", "fake_removed": "removal"}.get(im["verdict"], "authentic")
        group = f"{im['method']} {kind}" if im.get("method") else "authentic"  # gan injects and removes
        rows.append((im["patient_id"], group, im["verdict"], p["predicted"]))
    patients = sorted({r[0] for r in rows})
    index = {p: i for i, p in enumerate(patients)}
    methods = sorted({r[1] for r in rows})
    # per patient, per method: [n, flagged, right]
    counts = np.zeros((len(patients), len(methods), 3))
    kind = {}
    for pid, method, truth, pred in rows:
        m = methods.index(method)
        counts[index[pid], m] += (1, pred in TAMPERED, pred == truth)
        kind[method] = method.split()[-1]

    def figures(c: np.ndarray) -> dict:
        tot = c.sum(0)
        with np.errstate(invalid="ignore", divide="ignore"):
            return {"flagged": tot[:, 1] / tot[:, 0], "right": tot[:, 2] / tot[:, 0]}

    point = figures(counts)
    rng = np.random.default_rng(0)
    boot = {"flagged": [], "right": []}
    for _ in range(args.resamples):
        f = figures(counts[rng.integers(0, len(patients), len(patients))])
        boot["flagged"].append(f["flagged"])
        boot["right"].append(f["right"])
    boot = {k: np.array(v) for k, v in boot.items()}

    def interval(values: np.ndarray) -> list[float]:
        values = values[~np.isnan(values)]
        return [round(float(np.percentile(values, 2.5)), 3), round(float(np.percentile(values, 97.5)), 3)]

    report = {"held_out": args.held_out, "n_images": len(rows), "n_patients": len(patients), "methods": {},
              "held_out_minus": {}}
    for m, name in enumerate(methods):
        report["methods"][name] = {
            "kind": kind[name], "n": int(counts[:, m, 0].sum()), "patients": int((counts[:, m, 0] > 0).sum()),
            "flagged": round(float(point["flagged"][m]), 3), "flagged_95": interval(boot["flagged"][:, m]),
            "right": round(float(point["right"][m]), 3), "right_95": interval(boot["right"][:, m])}
    for h, held in enumerate(methods):
        if held.split()[0] != args.held_out:
            continue
        for m, name in enumerate(methods):
            if name != held and kind[name] == kind[held]:
                diff = boot["flagged"][:, h] - boot["flagged"][:, m]
                report["held_out_minus"][f"{held} - {name}"] = {
                    "flagged": round(float(point["flagged"][h] - point["flagged"][m]), 3), "flagged_95": interval(diff)}
    text = json.dumps(report, indent=1)
    print(text)
    if args.out:
        Path(args.out).write_text(text + "\n")


if __name__ == "__main__":
    main()
