"""The portal under load: real scans uploaded through the API of a running portal, timed to their verdict.

    .venv/bin/python benchmarks/portal_load.py --url http://127.0.0.1:8000 --username admin \
        [--scans 12] [--clients 3] [--setup "PostgreSQL + Redis, one worker"] [--out benchmarks/results-portal.md]

The password is read from BENCH_PASSWORD (or asked for). Nothing is mocked: the scans go through the web server,
the database, the broker and the Celery worker the portal runs with, and the detector it has installed.

Scans are made from the real data in ../shared/datasets, each unique so that the portal stores and analyses every
one (the same bytes uploaded twice would give the scan already made): the BRAINIX FLAIR DICOM series (22 slices)
re-identified with fresh study, series and instance UIDs and sent as a .zip, and the TCIA T1 NIfTI volumes (24
slices) with a unique header description. Pixels are unchanged.

Two measurements:

1. one scan at a time on an otherwise idle portal (one of each kind): what one doctor waits;
2. a burst: --scans scans uploaded by --clients clients at once, while a reader asks the API for the scan list
   and a scan every 0.5 s: queue wait, analysis time, upload-to-verdict, the worker's throughput, and how fast
   the web server answers while the worker is busy (against the same requests on the idle portal).

Times are taken by this client (upload to verdict includes up to one --poll interval) and, for the queue wait and
the analysis, from the job's own server timestamps. Writes a Markdown report (and prints it). Not a test: the
figures depend on the machine, and on what else runs on it.
"""
from __future__ import annotations

import argparse
import getpass
import io
import json
import os
import platform
import sys
import threading
import time
import uuid
import zipfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import urllib3

DATASETS = Path(__file__).resolve().parents[2] / "shared" / "datasets"
DONE = {"succeeded", "failed"}


class BenchError(RuntimeError):
    pass


# --- the uploads ------------------------------------------------------------------------------------------------

@dataclass
class Upload:
    kind: str  # "dicom" or "nifti"
    name: str
    data: bytes
    content_type: str
    sequence: str | None = None


def dicom_series_zip(series_dir: Path, tag: str) -> bytes:
    """The DICOM series in `series_dir` as a .zip, re-identified as a new study and series (fresh UIDs)."""
    import pydicom
    from pydicom.uid import generate_uid

    files = sorted(p for p in series_dir.iterdir() if p.is_file())
    if not files:
        raise BenchError(f"{series_dir}: no DICOM files")
    study, series, frame = generate_uid(), generate_uid(), generate_uid()
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as zf:
        for path in files:
            ds = pydicom.dcmread(path)
            ds.StudyInstanceUID, ds.SeriesInstanceUID = study, series
            if "FrameOfReferenceUID" in ds:
                ds.FrameOfReferenceUID = frame
            ds.SOPInstanceUID = generate_uid()
            ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
            ds.PatientID = f"BENCH-{tag}"
            buf = io.BytesIO()
            ds.save_as(buf, enforce_file_format=True)
            zf.writestr(path.name, buf.getvalue())
    return out.getvalue()


def nifti_copy(path: Path, tag: str) -> bytes:
    """The NIfTI volume at `path`, gzipped, with a header description unique to this run (pixels unchanged)."""
    import gzip

    import nibabel as nib

    img = nib.load(path)
    copy = nib.Nifti1Image(np.asanyarray(img.dataobj), img.affine, img.header)
    copy.header["descrip"] = f"bench {tag}"[:79].encode()
    return gzip.compress(copy.to_bytes(), compresslevel=6, mtime=0)


def make_uploads(n: int, datasets: Path, run: str) -> list[Upload]:
    """n unique scans, DICOM and NIfTI alternately."""
    flair = datasets / "brainix-dicom" / "DICOM" / "FLAIR"
    volumes = sorted((datasets / "tcia-progression-t1ce").glob("*/*_Scan_T1.nii.gz"))
    if not flair.is_dir() or not volumes:
        raise BenchError(f"{datasets}: expected brainix-dicom/DICOM/FLAIR and tcia-progression-t1ce/*/*_Scan_T1.nii.gz")
    uploads = []
    for i in range(n):
        tag = f"{run}-{i}"
        if i % 2 == 0:
            uploads.append(Upload("dicom", f"brainix-flair-{tag}.zip", dicom_series_zip(flair, tag),
                                  "application/zip"))
        else:
            path = volumes[(i // 2) % len(volumes)]
            # both time points (before and after treatment) are T1 post-contrast; a NIfTI file does not say so
            uploads.append(Upload("nifti", f"tcia-{path.parent.name}-{path.name.split('_')[0].lower()}-{tag}.nii.gz",
                                  nifti_copy(path, tag), "application/gzip", "t1_post_contrast"))
    return uploads


# --- the portal -----------------------------------------------------------------------------------------------

class Portal:
    def __init__(self, url: str, username: str, password: str):
        self.url = url.rstrip("/")
        self.http = urllib3.PoolManager(maxsize=16, retries=False, timeout=urllib3.Timeout(connect=10, read=600))
        r = self.http.request("POST", f"{self.url}/api/auth/token/", fields={"username": username,
                                                                            "password": password})
        if r.status != 200:
            raise BenchError(f"log-in as {username} failed: HTTP {r.status} {r.data[:300]!r}")
        # A new connection per request: a kept-alive one the server has just closed would fail a request mid-way.
        self.headers = {"Authorization": f"Token {json.loads(r.data)['token']}", "Connection": "close"}

    def get(self, path: str) -> tuple[dict, float]:
        t = time.perf_counter()
        r = self.http.request("GET", f"{self.url}{path}", headers=self.headers)
        elapsed = time.perf_counter() - t
        if r.status != 200:
            raise BenchError(f"GET {path}: HTTP {r.status} {r.data[:300]!r}")
        return json.loads(r.data), elapsed

    def upload(self, up: Upload) -> dict:
        fields = {"files": (up.name, up.data, up.content_type)}
        if up.sequence:
            fields["sequence"] = up.sequence
        r = self.http.request("POST", f"{self.url}/api/scans/", fields=fields, headers=self.headers)
        if r.status not in (200, 201):
            raise BenchError(f"upload of {up.name}: HTTP {r.status} {r.data[:500]!r}")
        body = json.loads(r.data)
        if not body.get("created"):
            raise BenchError(f"upload of {up.name}: the portal already had these bytes (scan {body['scan']['id']})")
        return body["scan"]


@dataclass
class Timed:
    kind: str
    scan: int = 0
    slices: int = 0
    upload_s: float = 0.0
    to_verdict_s: float = 0.0
    queue_s: float = 0.0
    analysis_s: float = 0.0
    detector_s: float = 0.0  # of the analysis, the time in the detector (the job's seconds_per_slice x slices)
    status: str = ""
    verdict: str = ""
    model: dict = field(default_factory=dict)
    started: float = 0.0
    finished: float = 0.0


def _seconds(a: str, b: str) -> float:
    return (datetime.fromisoformat(b) - datetime.fromisoformat(a)).total_seconds()


def run_one(portal: Portal, up: Upload, poll: float, timeout: float) -> Timed:
    out = Timed(up.kind, started=time.perf_counter())
    scan = portal.upload(up)
    out.upload_s = time.perf_counter() - out.started
    out.scan, out.slices = scan["id"], scan["n_slices"]
    while True:
        job, _ = portal.get(f"/api/scans/{out.scan}/latest-job/")
        if job["status"] in DONE:
            break
        if time.perf_counter() - out.started > timeout:
            raise BenchError(f"scan {out.scan}: no verdict after {timeout:.0f} s (job {job['id']} {job['status']})")
        time.sleep(poll)
    out.finished = time.perf_counter()
    out.to_verdict_s = out.finished - out.started
    out.status, out.verdict, out.model = job["status"], job.get("verdict") or "", job.get("model") or {}
    if job.get("started_at"):
        out.queue_s = _seconds(job["created_at"], job["started_at"])
        out.analysis_s = _seconds(job["started_at"], job["finished_at"])
    out.detector_s = ((job.get("timings") or {}).get("seconds_per_slice") or 0.0) * out.slices
    return out


def _reads(scan: int) -> dict[str, list[float]]:
    """The requests a doctor's page makes while waiting (the scan list, one scan), each with its answer times."""
    return {"/api/scans/": [], f"/api/scans/{scan}/": []}


class Reader(threading.Thread):
    """Asks the API for the scan list and for one scan every `every` seconds until stopped; keeps the latencies."""

    def __init__(self, portal: Portal, scan: int, every: float = 0.5):
        super().__init__(daemon=True)
        self.portal, self.every = portal, every
        self.times = _reads(scan)
        self.errors: list[str] = []  # requests that failed, said in the report
        self.stop = threading.Event()

    def run(self):
        while not self.stop.is_set():
            for path, times in self.times.items():
                try:
                    times.append(self.portal.get(path)[1])
                except (BenchError, urllib3.exceptions.HTTPError) as exc:
                    self.errors.append(f"GET {path}: {exc}")
            self.stop.wait(self.every)


def idle_web(portal: Portal, scan: int, n: int = 20) -> dict[str, list[float]]:
    times = _reads(scan)
    for _ in range(n):
        for path, t in times.items():
            t.append(portal.get(path)[1])
    return times


# --- the report -------------------------------------------------------------------------------------------------

def pct(values, q) -> float:
    return float(np.percentile(values, q)) if len(values) else float("nan")


def report(args, singles: list[Timed], burst: list[Timed], wall: float, idle: dict, busy: dict,
           busy_errors: list[str]) -> str:
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    model = next((t.model for t in singles + burst if t.model), {})
    lines = [
        "# The portal under load",
        "",
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; `benchmarks/portal_load.py` against {args.url}; "
        f"{platform.machine()}, {os.cpu_count()} logical CPUs, load average at the end {load:.1f}; "
        f"model {model.get('name', '?')} {model.get('version', '?')} on {model.get('device', '?')}.",
        f"Setup: {args.setup or 'not given (--setup)'}.",
        "",
        "Real scans (the BRAINIX FLAIR DICOM series, 22 slices, as a .zip with fresh UIDs; TCIA T1 NIfTI volumes, "
        "24 slices), uploaded through `POST /api/scans/` and followed on `/api/scans/<id>/latest-job/` every "
        f"{args.poll:g} s. Queue wait and analysis are the job's own timestamps; upload and upload-to-verdict "
        "are this client's.",
        "",
        "## One scan at a time, idle portal",
        "",
        "| scan | slices | upload s | queue wait s | analysis s | of it the detector s | upload to verdict s "
        "| verdict |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for t in singles:
        lines.append(f"| {t.kind} | {t.slices} | {t.upload_s:.2f} | {t.queue_s:.2f} | {t.analysis_s:.2f} | "
                     f"{t.detector_s:.2f} | {t.to_verdict_s:.2f} | {t.verdict or t.status} |")
    slices = sum(t.slices for t in burst)
    failed = sum(t.status != "succeeded" for t in burst)
    analysis = sum(t.analysis_s for t in burst)
    detector = sum(t.detector_s for t in burst)
    lines += [
        "",
        f"## A burst: {len(burst)} scans from {args.clients} clients at once",
        "",
        f"{len(burst)} scans, {slices} slices, all given a verdict in {wall:.1f} s "
        f"({failed} failed): **{3600 * len(burst) / wall:.0f} scans an hour, {60 * slices / wall:.0f} slices a "
        f"minute**; the jobs ran for {analysis:.1f} s in all ({analysis / max(slices, 1):.3f} s a slice), "
        f"{detector:.1f} s of it in the detector ({detector / max(slices, 1):.3f} s a slice).",
        "",
        "| figure | p50 | p95 | max |",
        "|---|---|---|---|",
    ]
    for label, key in [("upload s", "upload_s"), ("queue wait s", "queue_s"), ("analysis s", "analysis_s"),
                       ("upload to verdict s", "to_verdict_s")]:
        v = [getattr(t, key) for t in burst]
        lines.append(f"| {label} | {pct(v, 50):.2f} | {pct(v, 95):.2f} | {max(v):.2f} |")
    lines += [
        "",
        "The web server while the worker is busy (a reader asking every 0.5 s) against the same requests on the "
        "idle portal:",
        "",
        "| request | idle p50 s | idle p95 s | busy p50 s | busy p95 s | busy requests |",
        "|---|---|---|---|---|---|",
    ]
    for (path, i), b in zip(idle.items(), busy.values()):
        shown = path if path == "/api/scans/" else "/api/scans/&lt;id&gt;/"
        lines.append(f"| GET {shown} | {pct(i, 50):.3f} | {pct(i, 95):.3f} | {pct(b, 50):.3f} | {pct(b, 95):.3f} "
                     f"| {len(b)} |")
    lines += ["", f"{len(busy_errors)} of the reader's requests failed" + (":" if busy_errors else ".")]
    lines += [f"- {e}" for e in busy_errors[:10]]
    return "\n".join(lines) + "\n"


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--url", default="http://127.0.0.1:8000", help="the running portal (default %(default)s)")
    p.add_argument("--username", required=True, help="an account that may upload (password: BENCH_PASSWORD)")
    p.add_argument("--scans", type=int, default=12, help="scans in the burst (default %(default)s)")
    p.add_argument("--clients", type=int, default=3, help="clients uploading at once in the burst (default %(default)s)")
    p.add_argument("--poll", type=float, default=0.25, help="seconds between looks at a job (default %(default)s)")
    p.add_argument("--timeout", type=float, default=1800, help="seconds a scan may take to its verdict")
    p.add_argument("--datasets", type=Path, default=DATASETS, help="the shared datasets (default %(default)s)")
    p.add_argument("--setup", default="", help="what the portal runs on, for the report "
                   "(for example 'PostgreSQL + Redis, one worker, concurrency 1')")
    p.add_argument("--out", type=Path, help="write the Markdown report here too")
    args = p.parse_args(argv)
    if args.scans < 1 or args.clients < 1:
        p.error("--scans and --clients must be at least 1")
    password = os.environ.get("BENCH_PASSWORD") or getpass.getpass(f"password of {args.username}: ")
    try:
        portal = Portal(args.url, args.username, password)
        run = uuid.uuid4().hex[:8]
        print(f"preparing {args.scans + 2} unique scans from {args.datasets} ...", file=sys.stderr)
        uploads = make_uploads(args.scans + 2, args.datasets, run)
        singles = []
        for up in uploads[:2]:
            singles.append(run_one(portal, up, args.poll, args.timeout))
            print(f"one at a time: {up.kind} scan {singles[-1].scan} in {singles[-1].to_verdict_s:.1f} s",
                  file=sys.stderr)
        idle = idle_web(portal, singles[0].scan)
        reader = Reader(portal, singles[0].scan)
        reader.start()
        t0 = time.perf_counter()
        with ThreadPoolExecutor(args.clients) as pool:
            burst = list(pool.map(lambda up: run_one(portal, up, args.poll, args.timeout), uploads[2:]))
        wall = max(t.finished for t in burst) - t0
        reader.stop.set()
        reader.join()
    except (BenchError, urllib3.exceptions.HTTPError) as exc:
        print(f"portal_load: {exc}", file=sys.stderr)
        return 1
    text = report(args, singles, burst, wall, idle, reader.times, reader.errors)
    print(text)
    if args.out:
        args.out.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
