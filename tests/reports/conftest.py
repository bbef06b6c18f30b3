from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pytest

from inference.ml.paths import shared_datasets_dir
from inference.ml.labels import VERDICTS


def metrics_from_confusion(matrix: np.ndarray, *, version="1.2.0", sha="ab" * 32) -> dict:
    """A metrics.json (docs/dataset-and-evaluation.md) whose every figure follows from `matrix`."""
    matrix = np.asarray(matrix, dtype=int)
    per_class = {}
    for i, verdict in enumerate(VERDICTS):
        tp = matrix[i, i]
        predicted, actual = matrix[:, i].sum(), matrix[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[verdict] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                              "support": int(actual)}
    return {
        "n_images": int(matrix.sum()),
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(VERDICTS), "matrix": matrix.tolist()},
        "mean_iou": 0.71,
        "tamper_auc": 0.93,
        "latency_s": {"p50": 0.21, "p95": 0.34, "device": "cpu", "threads": 2},
        "model": {"name": "maskrcnn-tamper", "version": version, "sha256": sha},
    }


def series_metrics_doc(sha: str, rule: dict) -> dict:
    """A series_metrics.json as `evaluate_series --volume-injections --processed` writes it (the parts shown)."""
    def processed(n, warned, max_fa, max_un, fa, un):
        return {"n": n, "input_check_warned": warned, "max": {"false_alarms": max_fa, "false_alarms_unwarned": max_un},
                "count": {"false_alarms": fa, "false_alarms_unwarned": un}}

    def volume(n, slices, called, by_max, by_rule):
        return {"n": n, "slices": slices, "slices_called_tampered": called, "max": {"called_tampered": by_max},
                "count": {"called_tampered": by_rule}}

    return {"model": {"name": "m", "version": "1", "sha256": sha}, "chosen_on_val": rule, "splits": {
        "test": {"held_out": {"added_volume": {"n": 4, "added_volume": volume(4, 20, 0.95, 0.5, 1.0),
                                               "added_3 on the same series": volume(4, 12, 0.75, 0.25, 0.75)}},
                 "processed": {"as read": processed(10, 0, 2, 2, 1, 1),
                               "gaussian noise sigma 3": processed(10, 10, 9, 0, 3, 0)}},
        "val": {"processed": {"as read": processed(8, 0, 1, 1, 0, 0),
                              "gaussian noise sigma 3": processed(8, 7, 8, 1, 2, 2)}}}}


@pytest.fixture
def metrics():
    rng = np.random.default_rng(7)
    matrix = rng.integers(0, 6, size=(4, 4)) + np.diag(rng.integers(40, 80, size=4))
    return metrics_from_confusion(matrix)


BRAINIX_FLAIR = shared_datasets_dir() / "brainix-dicom" / "DICOM" / "FLAIR"


def brainix_paths(indices) -> list[Path]:
    names = sorted(p.name for p in BRAINIX_FLAIR.iterdir())
    return [BRAINIX_FLAIR / names[i] for i in indices]


def disk(shape, centre, radius) -> np.ndarray:
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    return (yy - centre[0]) ** 2 + (xx - centre[1]) ** 2 <= radius**2


@dataclass
class Analysed:
    scan: object
    job: object
    masks: dict  # slice index -> uint8 label map the "worker" stored (absent: no region)


def store_analysis(scan, *, verdicts: dict, regions: dict, scan_verdict: str, model=("maskrcnn-tamper", "2.0.1", "ef" * 32)):
    """Store a finished analysis the way the worker does (inference.services): per-slice results, label-map
    PNGs and instances with COCO RLE, then the scan-level verdict on the job. `regions`: index -> list of
    (label, score, bool mask)."""
    from django.core.files.base import ContentFile
    from django.utils import timezone

    from inference.ml.labels import VERDICTS
    from inference.ml.predictor import Instance
    from inference.models import InferenceJob, SliceInstance, SliceResult
    from inference.services import _png_bytes, label_map, mask_rle

    job = scan.jobs.order_by("-id").first() or InferenceJob.objects.create(scan=scan)
    masks = {}
    for scan_slice in scan.slices.order_by("index"):
        verdict = verdicts[scan_slice.index]
        probs = {v: (0.7 if v == verdict else 0.1) for v in VERDICTS}
        result = SliceResult(job=job, index=scan_slice.index, scan_slice=scan_slice, verdict=verdict,
                             confidence=probs[verdict], scores=probs,
                             tamper_score=probs["fake_added"] + probs["fake_removed"])
        instances = [Instance(label=l, score=s, box=_box(m), mask=m) for l, s, m in regions.get(scan_slice.index, [])]
        if instances:
            masks[scan_slice.index] = label_map((scan.height, scan.width), instances)
            result.mask.save(f"slice-{scan_slice.index:04d}.png", ContentFile(_png_bytes(masks[scan_slice.index])),
                             save=False)
        result.save()
        for inst in instances:
            SliceInstance.objects.create(slice_result=result, label=inst.label, score=inst.score, box=list(inst.box),
                                         mask_rle=mask_rle(inst.mask), area=int(inst.mask.sum()))
    now = timezone.now()
    InferenceJob.objects.filter(pk=job.pk).update(
        status="succeeded", verdict=scan_verdict, confidence=0.83, tamper_score=0.61, scores={},
        model_name=model[0], model_version=model[1], model_sha256=model[2], device="cpu",
        slices_total=len(verdicts), slices_done=len(verdicts), started_at=now, finished_at=now)
    job.refresh_from_db()
    return Analysed(scan=scan, job=job, masks=masks)


def _box(mask):
    ys, xs = np.nonzero(mask)
    return (float(xs.min()), float(ys.min()), float(xs.max() + 1), float(ys.max() + 1))


@pytest.fixture
def upload_dicom():
    """Upload real BRAINIX FLAIR DICOM files through the scans service."""
    from django.core.files.uploadedfile import SimpleUploadedFile

    from scans.services import scan_upload

    def upload(user, indices=(9, 10, 11)):
        files = [SimpleUploadedFile(p.name, p.read_bytes(), content_type="application/dicom")
                 for p in brainix_paths(indices)]
        return scan_upload(user=user, files=files).scan

    return upload


@pytest.fixture
def analysed_scan(doctor_a, upload_dicom):
    """doctor_a's 3-slice DICOM scan: slice 1 has an added tumour, slice 2 a removed one, slice 0 nothing."""
    scan = upload_dicom(doctor_a)
    shape = (scan.height, scan.width)
    regions = {
        1: [("fake_added", 0.91, disk(shape, (shape[0] // 3, shape[1] // 2), 14))],
        2: [("fake_removed", 0.77, disk(shape, (shape[0] // 2, shape[1] // 3), 10)),
            ("real_tumor", 0.55, disk(shape, (2 * shape[0] // 3, 2 * shape[1] // 3), 8))],
    }
    return store_analysis(scan, verdicts={0: "no_tumor", 1: "fake_added", 2: "fake_removed"}, regions=regions,
                          scan_verdict="fake_added")


def check_dicom_export_access(*, client_a, client_b, doctor_a, scan, page: str, api: str, modality: str,
                              action: str):
    """What every DICOM export (SEG, report as DICOM, SR) does: doctor_a's API download gives a `modality` object;
    doctor_b gets 404 on the page and the API; a scan that is not DICOM is a 409 saying why (page and API);
    only the API download is audited (`action`). Returns that scan (an analysed PNG of doctor_a's)."""
    import io

    import pydicom
    from django.core.files.uploadedfile import SimpleUploadedFile
    from django.urls import reverse
    from PIL import Image

    from audit.models import AuditEvent
    from scans.services import scan_upload

    response = client_a.get(reverse(api, args=[scan.pk]))
    assert response.status_code == 200 and pydicom.dcmread(io.BytesIO(response.content)).Modality == modality
    assert client_b.get(reverse(page, args=[scan.pk])).status_code == 404
    assert client_b.get(reverse(api, args=[scan.pk])).status_code == 404

    buf = io.BytesIO()
    Image.fromarray((np.arange(64 * 64) % 251).reshape(64, 64).astype(np.uint8)).save(buf, format="PNG")
    png = scan_upload(user=doctor_a, files=[SimpleUploadedFile("slice.png", buf.getvalue())]).scan
    store_analysis(png, verdicts={0: "no_tumor"}, regions={}, scan_verdict="no_tumor")
    refused_page = client_a.get(reverse(page, args=[png.pk]))
    assert refused_page.status_code == 409 and b"only be made for a DICOM upload" in refused_page.content
    refused = client_a.get(reverse(api, args=[png.pk]))
    assert refused.status_code == 409 and "Download the PDF or CSV report instead" in refused.json()["detail"]
    assert AuditEvent.objects.filter(action=action).count() == 1  # the API's only
    return png


def dicom_download(client, url_name: str, scan_pk: int, filename: str | None = None) -> bytes:
    """A DICOM export of a scan (page URL ``url_name``): 200, application/dicom, as an attachment (named
    ``filename`` when given); its bytes."""
    from django.urls import reverse

    response = client.get(reverse(url_name, args=[scan_pk]))
    assert response.status_code == 200, response.content[:500]
    assert response["Content-Type"] == "application/dicom"
    assert response["Content-Disposition"].startswith(f'attachment; filename="scan-{scan_pk}-')
    if filename is not None:
        assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
    return response.content


def report_pdf_text(client, scan_pk: int) -> str:
    """The text of a scan's PDF report as `client` downloads it, its pages joined and its line breaks spaces."""
    import io

    from django.urls import reverse
    from pypdf import PdfReader

    content = client.get(reverse("reports:scan_pdf", args=[scan_pk])).content
    return " ".join(page.extract_text() for page in PdfReader(io.BytesIO(content)).pages).replace("\n", " ")
