"""Seed a `train_refiner` run folder with the shipped refiner's weights, so that the run continues it (fresh AdamW
state, the time budget from zero) instead of starting from random weights.

    .venv/bin/python models/experiments/refiner-0.9.0/seed_checkpoint.py RUN_DIR [--lr 3e-4]
"""
from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[3]))

from inference.ml.model import load_bundle  # noqa: E402
from inference.ml.refiner import RefinerTrainConfig, _checkpoint, refiner_from_state  # noqa: E402


def main(run_dir: str, lr: float = 3e-4) -> None:
    out = Path(run_dir)
    out.mkdir(parents=True, exist_ok=True)
    ckpt = out / "refiner-checkpoint.pt"
    if ckpt.exists():
        raise SystemExit(f"{ckpt} exists: this run has started; rerun train_refiner to resume it.")
    refiner = refiner_from_state(load_bundle("models/detector.pt")["refiner"]).float()
    cfg = RefinerTrainConfig(lr=lr)
    opt = torch.optim.AdamW(refiner.parameters(), lr=lr, weight_decay=cfg.weight_decay)
    _checkpoint(ckpt, refiner, opt, step=0, seconds=0.0, rng=np.random.default_rng(cfg.seed))
    print("seeded", ckpt, "with the shipped refiner", refiner.config.to_dict())


if __name__ == "__main__":
    main(sys.argv[1], float(sys.argv[3]) if len(sys.argv) > 3 and sys.argv[2] == "--lr" else 3e-4)
