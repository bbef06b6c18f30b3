"""How often a 95 % patient-bootstrap interval for accuracy holds the true accuracy, by number of patients.

Simulated evaluations shaped like tamper-v13 test: each patient has 10-59 slices and an accuracy of its own, drawn
from a beta distribution with mean 0.88 and intra-patient correlation ICC; slices are right or wrong by that
accuracy. For each setting, REPS evaluations are drawn and each gets the percentile interval and the expanded
percentile interval (``inference.ml.intervals.expanded_tail``) from B resamples of its patients.

    .venv/bin/python models/experiments/interval-coverage/coverage.py   # about 2 minutes; writes results.json
"""
import json
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))
from inference.ml.intervals import expanded_tail  # noqa: E402

ACCURACY, REPS, B = 0.88, 2000, 1000


def coverage(n_patients: int, icc: float, seed: int) -> dict:
    rng = np.random.default_rng(seed)
    spread = (1 - icc) / icc
    tails = {"percentile": 0.025, "expanded": expanded_tail(n_patients, 0.95)}
    held = dict.fromkeys(tails, 0)
    width = {k: 0.0 for k in tails}
    for _ in range(REPS):
        own = rng.beta(ACCURACY * spread, (1 - ACCURACY) * spread, n_patients)
        slices = rng.integers(10, 60, n_patients)
        right = rng.binomial(slices, own)
        drawn = rng.integers(0, n_patients, size=(B, n_patients))
        resampled = right[drawn].sum(1) / slices[drawn].sum(1)
        for name, tail in tails.items():
            low, high = np.quantile(resampled, [tail, 1 - tail])
            held[name] += low <= ACCURACY <= high
            width[name] += (high - low) / REPS
    return {name: {"coverage": held[name] / REPS, "mean_width": round(width[name], 4)} for name in tails}


def main() -> None:
    results = []
    for icc in (0.05, 0.15, 0.3):
        for n in (3, 5, 8, 12, 23):
            row = {"icc": icc, "patients": n, **coverage(n, icc, seed=int(icc * 1000) + n)}
            results.append(row)
            print(json.dumps(row))
    out = Path(__file__).with_name("results.json")
    out.write_text(json.dumps({"accuracy": ACCURACY, "reps": REPS, "resamples": B, "results": results}, indent=2)
                   + "\n")


if __name__ == "__main__":
    main()
