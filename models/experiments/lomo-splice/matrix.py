"""One table of the leave-one-method-out runs: per test group, the share flagged as tampered in each run.

    python models/experiments/lomo-splice/matrix.py models/experiments/lomo-{splice,patch,inpaint,gan}

Each folder holds the `analysis.json` that `analyse.py` wrote for its run (`--held-out` that run's method). A cell
is the share flagged with its 95 % patient-resampled interval; the run's held-out method is in bold ("unseen").
The last row is the run's false alarms (authentic slices flagged). Standard library only.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path


def cell(figures: dict, unseen: bool) -> str:
    lo, hi = figures["flagged_95"]
    text = f"{figures['flagged']:.3f} ({lo:.2f}-{hi:.2f})"
    return f"**{text}** unseen" if unseen else text


def matrix(folders: list[Path]) -> str:
    runs = [json.loads((f / "analysis.json").read_text()) for f in folders]
    groups = sorted({g for r in runs for g in r["methods"] if g != "authentic"},
                    key=lambda g: (g.split()[-1], g))
    head = "| test slices | " + " | ".join(f"`{r['held_out']}` held out" for r in runs) + " |"
    lines = [head, "|---|" + "---:|" * len(runs)]
    for g in groups:
        n = runs[0]["methods"][g]["n"]
        lines.append(f"| {g}s ({n}) | " + " | ".join(
            cell(r["methods"][g], g.split()[0] == r["held_out"]) for r in runs) + " |")
    lines.append(f"| authentic ({runs[0]['methods']['authentic']['n']}), false alarms | " + " | ".join(
        f"{r['methods']['authentic']['flagged']:.3f}" for r in runs) + " |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(matrix([Path(a) for a in sys.argv[1:]]))
