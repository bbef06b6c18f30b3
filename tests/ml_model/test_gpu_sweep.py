"""scripts/gpu_sweep.py on the CPU with a tiny model: parallel jobs, calibration on val, ranked parts that reassemble."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from inference.ml.model import load_bundle

from .conftest import build_tiny_dataset

ROOT = Path(__file__).resolve().parents[2]


def test_sweep_trains_side_by_side_ranks_on_val_and_returns_bundles_in_parts(tmp_path):
    dataset = build_tiny_dataset(tmp_path / "ds", size=96)
    job = {"batch_size": 2, "lr": 1e-3, "device": "cpu", "threads": 1, "max_steps": 2, "epochs": 1, "warmup_steps": 1,
           "val_split": "test", "val_every_minutes": None, "log_every": 1,
           "model": {"backbone": "tiny", "min_size": 96, "max_size": 96}}
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{**job, "seed": 1}, {**job, "seed": 2, "augment": {"noise": True}},
                                {**job, "seed": 3, "nonsense": 1}]))
    result = tmp_path / "result"
    done = subprocess.run([sys.executable, "scripts/gpu_sweep.py", str(dataset), "--jobs", str(jobs), "--runs",
                           str(tmp_path / "runs"), "--result", str(result), "--keep", "1"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((result / "summary.json").read_text())
    codes = {j["job"]: j["exit_code"] for j in summary["jobs"]}
    assert codes[0] == codes[1] == 0 and codes[2] != 0  # a bad job fails alone, named in the summary
    assert any("nonsense" in line for line in summary["jobs"][2]["log_tail"])
    ranked = [j for j in summary["jobs"] if j["job"] in summary["ranking"]]
    assert sorted(summary["ranking"]) == [0, 1] and all("full_val" in j for j in ranked)
    best = summary["ranking"][0]
    assert summary["kept"] == [best]
    accuracy = {j["job"]: j["full_val"]["accuracy"] for j in ranked}
    assert accuracy[best] == max(accuracy.values())
    parts = sorted(result.glob(f"job{best}.pt.part*"), key=lambda p: int(p.name.rsplit("part", 1)[1]))
    (tmp_path / "best.pt").write_bytes(b"".join(p.read_bytes() for p in parts))
    bundle = load_bundle(tmp_path / "best.pt")
    assert bundle["meta"]["calibrated_on"]["split"] == "test" and bundle["meta"]["stored_dtype"] == "float16"
    assert (result / "logs.tar.gz").is_file()


def test_keep_jobs_returns_the_named_jobs_even_those_ranked_last(tmp_path):
    """--keep-jobs: a job without validation (calibrated elsewhere) is returned although a validated one ranks first."""
    dataset = build_tiny_dataset(tmp_path / "ds", size=96)
    job = {"batch_size": 2, "lr": 1e-3, "device": "cpu", "threads": 1, "max_steps": 1, "epochs": 1, "warmup_steps": 1,
           "val_every_minutes": None, "log_every": 1, "model": {"backbone": "tiny", "min_size": 96, "max_size": 96}}
    jobs = tmp_path / "jobs.json"
    jobs.write_text(json.dumps([{**job, "val_split": "test"}, {**job, "val_split": None}]))
    result = tmp_path / "result"
    done = subprocess.run([sys.executable, "scripts/gpu_sweep.py", str(dataset), "--jobs", str(jobs), "--runs",
                           str(tmp_path / "runs"), "--result", str(result), "--keep-jobs", "1"], cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    summary = json.loads((result / "summary.json").read_text())
    assert summary["ranking"] == [0, 1] and summary["kept"] == [1]
    assert sorted(p.name for p in result.glob("*.part*")) == ["job1.pt.part0"]  # a small bundle: one part
    assert "calibrated_on" not in load_bundle(result / "job1.pt.part0")["meta"]
