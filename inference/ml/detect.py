"""The `detect` command's work: files from disk -> per-slice and per-file verdicts (JSON-ready). No Django."""
from __future__ import annotations

from glob import escape as glob_escape
from pathlib import Path

from .imaging import ImagingError, check_model_input_size, iter_uint8_slices, read_path
from .input_check import check_slices
from .predictor import Predictor, SlicePrediction
from .sequence import identify_sequence


def _prediction_dict(pred: SlicePrediction) -> dict:
    return {
        "verdict": pred.verdict,
        "scores": {k: round(float(v), 6) for k, v in pred.scores.items()},
        "tamper_score": round(float(pred.tamper_score), 6),
    }


def detect_files(predictor: Predictor, paths: list[str | Path], *, masks_dir: str | Path | None = None,
                 prevalence: float | None = None) -> dict:
    """One entry per path: its slices' verdicts with regions, and the file's verdict; errors per file. With
    ``prevalence`` (a share of tampered scans) and a scan rule, the file verdict also says how likely the file is
    tampered at that share (`scan_rule.at_prevalence`; the rule's own probability holds at even odds)."""
    from .coco import encode_png
    from .scan_rule import at_prevalence, check_prevalence

    if prevalence is not None:
        prevalence = check_prevalence(prevalence)

    out_files = []
    for raw_path in paths:
        path = Path(raw_path)
        entry: dict = {"file": str(path)}
        try:
            volume = read_path(path)
            check_model_input_size(volume.slices.shape[2], volume.slices.shape[1])
        except (ImagingError, OSError) as exc:
            entry["error"] = str(exc)
            out_files.append(entry)
            continue
        slices = list(iter_uint8_slices(volume))  # the one windowing rule, over the whole volume
        preds = predictor.predict_batch(slices)
        entry.update({"kind": volume.kind, "n_slices": len(slices), "shape": list(slices[0].shape)})
        entry["sequence"] = identify_sequence(volume.metadata, path.name).as_dict()
        entry["input_check"] = check_slices(slices, metadata=volume.metadata).as_dict()
        if "header_checks" in volume.metadata:  # DICOM: the header checks (provenance.py)
            entry["header_checks"] = volume.metadata["header_checks"]
        if masks_dir is not None:  # an earlier run's masks of this file go: the folder holds this run's only
            for stale in Path(masks_dir).glob(f"{glob_escape(path.name)}.slice*.region*.png"):
                stale.unlink()
        entry["slices"] = []
        for index, pred in enumerate(preds):
            item = {"index": index, **_prediction_dict(pred), "instances": []}
            for k, inst in enumerate(pred.instances):
                region = {"label": inst.label, "score": round(float(inst.score), 6),
                          "box": [round(float(v), 2) for v in inst.box], "area": int(inst.mask.sum())}
                if masks_dir is not None:
                    target = Path(masks_dir) / f"{path.name}.slice{index:04d}.region{k}.png"
                    target.parent.mkdir(parents=True, exist_ok=True)
                    target.write_bytes(encode_png(inst.mask.astype("uint8") * 255))
                    region["mask_png"] = str(target)
                item["instances"].append(region)
            entry["slices"].append(item)
        entry["file_verdict"] = {**_prediction_dict(predictor.volume_verdict(preds)),
                                 # how the slices became it: the model's scan rule, or the max rule
                                 "scan_rule": ({"rule": "count", **predictor.scan_rule} if predictor.scan_rule
                                               else {"rule": "max"})}
        if prevalence is not None and predictor.scan_rule:
            entry["file_verdict"]["at_prevalence"] = {
                "prevalence": prevalence,
                "tamper_probability": round(at_prevalence(entry["file_verdict"]["tamper_score"], prevalence), 8)}
        out_files.append(entry)
    return {"model": predictor.info, "files": out_files}
