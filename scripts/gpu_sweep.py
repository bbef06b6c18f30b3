"""Several detector trainings side by side on one GPU, each calibrated on the whole validation split afterwards.

    PYTHONPATH=. python3 scripts/gpu_sweep.py DATASET_DIR --jobs JOBS.json --runs RUNS_DIR --result RESULT_DIR

JOBS.json is a list of TrainConfig fields (dataset_dir and out_dir are filled in). The jobs run as parallel
processes (a small Mask R-CNN leaves most of a large GPU idle, so three at once cost little more than one); each
then refits its best bundle's calibration on all of the validation split (the same ``calibrate_bundle`` as
``manage.py calibrate_detector``). RESULT_DIR gets summary.json (every job's validation history and full-val
metrics, ranked by full-val accuracy, then macro F1) and the best ``--keep`` bundles, compacted to float16 and cut
into parts of at most 16 MiB (``cat NAME.pt.part* > NAME.pt``), for machines that return files of a limited size.
Only the ML package is needed (no Django); the selection on the validation split is repeated on the CPU before a
bundle is shipped. A machine that takes files in limited sizes gets the split in parts: ``python -m
inference.ml.dataset.pack pack DATA .carry/train --split train`` here, one part per call, then ``... unpack
.carry/train/part0 ... --out /tmp/data`` there (outside the repository copy, which each call replaces); with
``"val_split": null`` in the jobs the validation split need not travel (calibrate on it afterwards).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tarfile
import time
from pathlib import Path

PART_BYTES = 16 * 1024 * 1024  # the most one returned file may hold here


def run_job(job_json: str, calibrate_limit: int | None = None) -> int:
    """One job, in its own process: train, then calibrate the best bundle on the whole val split."""
    from inference.ml.train import TrainConfig, calibrate_bundle, train

    config = TrainConfig.from_dict(json.loads(job_json))
    summary = train(config)
    out = Path(config.out_dir)
    if not config.val_split:  # nothing to calibrate on here: the run's last weights, calibrated elsewhere
        (out / "job_result.json").write_text(json.dumps({"train": summary}, indent=2) + "\n")
        return 0
    calibration, metrics = calibrate_bundle(out / "detector.pt", config.dataset_dir, out / "calibrated.pt",
                                            split=config.val_split, device=config.device,
                                            limit=calibrate_limit)
    keys = ("accuracy", "macro_f1", "mean_iou", "tamper_auc", "nll")
    (out / "job_result.json").write_text(json.dumps({
        "train": summary, "calibration": calibration, "full_val": {k: metrics[k] for k in keys},
        "per_class_f1": {v: m["f1"] for v, m in metrics["per_class"].items()}}, indent=2) + "\n")
    return 0


def split_file(path: Path, dest_dir: Path, stem: str) -> list[str]:
    data = path.read_bytes()
    names = []
    for i in range(0, len(data), PART_BYTES):
        name = f"{stem}.pt.part{i // PART_BYTES}"
        (dest_dir / name).write_bytes(data[i : i + PART_BYTES])
        names.append(name)
    return names


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("dataset_dir")
    parser.add_argument("--jobs", required=True, help="JSON list of TrainConfig fields, one object per job")
    parser.add_argument("--runs", required=True, help="where each job's run directory goes (RUNS/jobN)")
    parser.add_argument("--result", required=True, help="summary.json and the kept bundles' parts go here")
    parser.add_argument("--keep", type=int, default=1, help="how many of the best bundles to write to --result")
    parser.add_argument("--keep-jobs", help="comma-separated job numbers to write to --result instead of the best "
                        "--keep (jobs without validation are ranked by order only; a large bundle may not fit)")
    parser.add_argument("--calibrate-limit", type=int, help="calibrate on the first N val images only (smoke tests)")
    parser.add_argument("--job", help=argparse.SUPPRESS)  # internal: run one job (JSON) in this process
    args = parser.parse_args(argv)
    if args.job:
        return run_job(args.job, args.calibrate_limit)

    jobs = json.loads(Path(args.jobs).read_text())
    if not isinstance(jobs, list) or not jobs:
        parser.error(f"{args.jobs}: expected a non-empty JSON list of training configurations")
    runs, result = Path(args.runs), Path(args.result)
    result.mkdir(parents=True, exist_ok=True)
    started = time.time()
    procs = []
    for i, job in enumerate(jobs):
        out_dir = runs / f"job{i}"
        out_dir.mkdir(parents=True, exist_ok=True)
        config = {**job, "dataset_dir": args.dataset_dir, "out_dir": str(out_dir)}
        log = open(out_dir / "stdout.log", "w")
        procs.append((i, config, out_dir, log, subprocess.Popen(
            [sys.executable, __file__, args.dataset_dir, "--jobs", args.jobs, "--runs", args.runs,
             "--result", args.result, "--job", json.dumps(config)]
            + (["--calibrate-limit", str(args.calibrate_limit)] if args.calibrate_limit else []),
            stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONUNBUFFERED": "1"})))
    rows = []
    for i, config, out_dir, log, proc in procs:
        code = proc.wait()
        log.close()
        row = {"job": i, "config": config, "exit_code": code}
        if (out_dir / "job_result.json").is_file():
            row.update(json.loads((out_dir / "job_result.json").read_text()))
        if (out_dir / "history.json").is_file():
            row["history"] = json.loads((out_dir / "history.json").read_text())
        tail = (out_dir / "stdout.log").read_text(errors="replace").splitlines()[-15:]
        row["log_tail"] = tail
        rows.append(row)
    # ranked by full-val accuracy, then macro F1; jobs without validation keep their order, after those with
    ranked = sorted((r for r in rows if r["exit_code"] == 0 and "train" in r),
                    key=lambda r: (r.get("full_val", {}).get("accuracy", -1), r.get("full_val", {}).get("macro_f1", -1)),
                    reverse=True)
    kept = []
    if ranked:
        from inference.ml.model_card import ship_bundle

        if args.keep_jobs:
            wanted = [int(j) for j in args.keep_jobs.split(",") if j.strip()]
            chosen = [r for r in ranked if r["job"] in wanted]
        else:
            chosen = ranked[: args.keep]
        for r in chosen:
            run_dir = Path(args.runs) / f"job{r['job']}"
            compact = run_dir / "compact.pt"
            ship_bundle(run_dir / ("calibrated.pt" if "full_val" in r else "detector.pt"), compact)
            r["parts"] = split_file(compact, result, f"job{r['job']}")
            kept.append(r["job"])
    summary = {"seconds": round(time.time() - started, 1), "ranking": [r["job"] for r in ranked], "kept": kept,
               "jobs": rows}
    (result / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
    with tarfile.open(result / "logs.tar.gz", "w:gz") as tar:  # every job's train.log, losses.jsonl, history
        for i, _, out_dir, _, _ in procs:
            for name in ("train.log", "losses.jsonl", "history.json", "stdout.log"):
                if (out_dir / name).is_file():
                    tar.add(out_dir / name, arcname=f"job{i}/{name}")
    for r in rows:
        print(f"job {r['job']}: exit {r['exit_code']}, full val {r.get('full_val')}")
    print(f"kept {kept}; {summary['seconds']} s")
    return 0 if ranked else 1


if __name__ == "__main__":
    raise SystemExit(main())
