"""One slice in, one verdict out: the detector as the portal's worker, `detect` and `evaluate_detector` use it.

Load once (`Predictor.load`), then `predict` / `predict_batch`. Each slice gets:

- ``scores``: calibrated probabilities of the four verdicts (sum 1), a mix of the image-level head's softmax
  (temperature-scaled) and the evidence of the detections (the best score of each class), or, where the
  calibration holds a ``verdict_model``, that model's probabilities (`verdict_model`: a logistic regression on
  the same outputs, fitted on the validation split); either then reshaped by the calibration's
  ``confidence_temperature`` (`confidence`: keeps the order, so the verdict, and fitted so that the confidence
  shown means what it says);
- ``verdict``: the most probable verdict;
- ``instances``: the detections of the verdict's class that clear the show thresholds (always its best one), each
  with a boolean mask the size of the input (mask probability >= ``mask_threshold``). A ``no_tumor`` verdict
  shows nothing.

With the calibration's ``test_time_flip`` the model also reads each slice's left-right mirror (training flips
slices too) and `fuse_views` merges the two views' outputs before any of the above (twice the model's time).

`volume_verdict` turns per-slice results into one per scan. No Django here.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .bundle_file import file_sha256
from .confidence import temper_scores
from .imaging import check_model_input_size, to_uint8
from .labels import CATEGORIES, TAMPERED, VERDICT_CATEGORY, VERDICTS
from .model import DEFAULT_CALIBRATION, load_bundle, model_from_bundle
from .refiner import WINDOW_PROB, MaskRefiner, near, refine_probability, refiner_from_state
from .scan_rule import ScanRuleError, check_scan_rule, load_scan_rule, scan_scores
from .verdict_model import verdict_features, verdict_probs

DEFAULT_WEIGHTS = Path(__file__).resolve().parents[2] / "models" / "detector.pt"


class ModelNotInstalled(RuntimeError):
    """The weights file is missing or is not a detector bundle; the message says what to do."""


@dataclass
class Instance:
    label: str  # real_tumor | fake_added | fake_removed
    score: float
    box: tuple[float, float, float, float]  # x0, y0, x1, y1 in input pixels
    mask: np.ndarray  # bool (h, w), same size as the input slice


@dataclass
class SlicePrediction:
    verdict: str  # one of VERDICTS
    scores: dict[str, float]  # calibrated probabilities of the 4 verdicts, sum 1
    tamper_score: float  # P(fake_added) + P(fake_removed)
    instances: list[Instance] = field(default_factory=list)


def resolve_device(device: str = "auto") -> str:
    if device in (None, "", "auto"):
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise RuntimeError(f"Device {device!r} was asked for, but no CUDA GPU is available; use 'cpu' or 'auto'.")
    return device


def as_uint8_slice(image: np.ndarray) -> np.ndarray:
    """The 2-D uint8 slice the model reads (non-uint8 input goes through the one windowing rule)."""
    arr = np.asarray(image)
    if arr.ndim == 3 and arr.shape[0] == 1:
        arr = arr[0]
    if arr.ndim != 2:
        raise ValueError(f"A slice must be a 2-D array; got shape {arr.shape}.")
    check_model_input_size(arr.shape[1], arr.shape[0])
    return to_uint8(arr)


def slice_tensor(image_uint8: np.ndarray) -> torch.Tensor:
    """(1, H, W) float32 in [0, 1]: the model's input for one slice."""
    arr = np.ascontiguousarray(image_uint8)
    if not arr.flags.writeable:  # pixels read from a buffer: torch will not share memory it may not write
        arr = arr.copy()
    return torch.from_numpy(arr).to(torch.float32).div_(255.0).unsqueeze(0)


def fuse_scores(image_probs: np.ndarray | None, class_scores: dict[str, float], image_weight: float) -> dict[str, float]:
    """Verdict probabilities from the image head's probabilities and the best detection score of each class.

    Detection evidence alone: each positive verdict scores its best detection; ``no_tumor`` scores the
    probability that none of them is right, prod(1 - s_c). Both are normalised and mixed with ``image_weight``.
    """
    det = np.array(
        [
            class_scores.get("real_tumor", 0.0),
            float(np.prod([1.0 - class_scores.get(c, 0.0) for c in ("real_tumor", "fake_added", "fake_removed")])),
            class_scores.get("fake_added", 0.0),
            class_scores.get("fake_removed", 0.0),
        ],
        dtype=np.float64,
    )
    det = det / det.sum() if det.sum() > 0 else np.full(4, 0.25)
    if image_probs is None:
        mixed = det
    else:
        mixed = image_weight * np.asarray(image_probs, dtype=np.float64) + (1.0 - image_weight) * det
    mixed = np.clip(mixed, 0.0, None)
    mixed = mixed / mixed.sum()
    return {v: float(p) for v, p in zip(VERDICTS, mixed)}


def merge_overlapping(instances: list[Instance], min_overlap: float = 0.2) -> list[Instance]:
    """One instance per region: detections of one class whose masks overlap (intersection at least
    ``min_overlap`` of the smaller mask) become one instance with the union mask and box and the best score.
    The union of the masks is unchanged, so the shown region (and its IoU) is the same, without stacked outlines."""
    groups: list[Instance] = []
    for inst in sorted(instances, key=lambda d: -d.score):
        area = int(inst.mask.sum())
        target = None
        for g in groups:
            if g.label != inst.label:
                continue
            inter = int(np.logical_and(g.mask, inst.mask).sum())
            smaller = min(area, int(g.mask.sum()))
            if smaller == 0 or inter >= min_overlap * smaller:
                target = g
                break
        if target is None:
            groups.append(Instance(inst.label, inst.score, tuple(inst.box), inst.mask.copy()))
            continue
        target.mask |= inst.mask
        target.box = (min(target.box[0], inst.box[0]), min(target.box[1], inst.box[1]),
                      max(target.box[2], inst.box[2]), max(target.box[3], inst.box[3]))
    # a merge can make two groups overlap: repeat until nothing changes
    return groups if len(groups) == len(instances) else merge_overlapping(groups, min_overlap)


def shown_detections(verdict: str, detections: list[Instance], detection_threshold: float,
                     show_threshold: float = 0.0, show_relative: float = 0.0) -> list[int]:
    """The indices of the detections a doctor is shown for ``verdict``: those of its class scoring at least the
    detection threshold, the show threshold and ``show_relative`` x the class's best score (the best one is
    always shown); none for no_tumor. The two show parameters are fitted on the validation split for mask IoU
    (weak extra detections mostly outline tissue around the region); 0 shows every detection above the
    detection threshold."""
    if VERDICT_CATEGORY[verdict] is None:
        return []
    of_class = [i for i, d in enumerate(detections) if d.label == verdict]
    if not of_class:
        return []
    best = max(detections[i].score for i in of_class)
    floor = max(detection_threshold, show_threshold, show_relative * best)
    return [i for i in of_class if detections[i].score >= floor or detections[i].score == best]


def select_instances(verdict: str, detections: list[Instance], detection_threshold: float,
                     show_threshold: float = 0.0, show_relative: float = 0.0) -> list[Instance]:
    """What a doctor is shown (`shown_detections`), overlapping detections merged into one region."""
    idx = shown_detections(verdict, detections, detection_threshold, show_threshold, show_relative)
    return merge_overlapping([detections[i] for i in idx])


def flip_output(out: dict, width: int) -> dict:
    """A model output on a left-right mirrored slice, mirrored back into the slice's own coordinates."""
    boxes = out["boxes"].clone()
    boxes[:, 0], boxes[:, 2] = width - out["boxes"][:, 2], width - out["boxes"][:, 0]
    return {**out, "boxes": boxes, "masks": out["masks"].flip(-1)}


def fuse_views(first: dict, second: dict, match_iou: float = 0.3) -> dict:
    """One output from two views of the same slice (both in its coordinates): the mean of the image logits; each
    detection matched to the other view's detection of the same class whose mask overlaps it most (IoU of the
    masks cut at 0.5, at least ``match_iou``) averages score, box and mask probabilities with it; a detection the
    other view did not make averages with nothing there (half its score). Test-time augmentation the calibration
    then fits like any other output."""
    masks_a, masks_b = first["masks"][:, 0] >= 0.5, second["masks"][:, 0] >= 0.5
    inter = masks_a.flatten(1).float() @ masks_b.flatten(1).float().T
    area_a, area_b = masks_a.flatten(1).sum(1), masks_b.flatten(1).sum(1)
    taken: set[int] = set()
    fused = []  # (label, box, score, mask probabilities)

    def alone(out: dict, k: int) -> tuple:
        return out["labels"][k], out["boxes"][k], out["scores"][k] / 2, out["masks"][k]

    for i in sorted(range(len(first["scores"])), key=lambda k: -float(first["scores"][k])):
        j_best, iou_best = None, match_iou
        for j in range(len(second["scores"])):
            if j in taken or int(second["labels"][j]) != int(first["labels"][i]):
                continue
            union = float(area_a[i] + area_b[j] - inter[i, j])
            iou = float(inter[i, j]) / union if union > 0 else 0.0
            if iou >= iou_best:
                j_best, iou_best = j, iou
        if j_best is None:
            fused.append(alone(first, i))
            continue
        taken.add(j_best)
        fused.append((first["labels"][i], (first["boxes"][i] + second["boxes"][j_best]) / 2,
                      (first["scores"][i] + second["scores"][j_best]) / 2,
                      (first["masks"][i] + second["masks"][j_best]) / 2))
    fused += [alone(second, j) for j in range(len(second["scores"])) if j not in taken]
    fused.sort(key=lambda d: -float(d[2]))
    empty = {key: first[key][:0] for key in ("labels", "boxes", "scores", "masks")}
    return {
        **{key: torch.stack([d[n] for d in fused]) if fused else empty[key]
           for n, key in enumerate(("labels", "boxes", "scores", "masks"))},
        "image_logits": (first["image_logits"] + second["image_logits"]) / 2,
    }


class Predictor:
    """The detector, loaded once, in eval mode."""

    def __init__(self, model, *, config: dict, calibration: dict, meta: dict, sha256: str, device: str,
                 path: Path | None = None, batch_size: int = 4, refiner: MaskRefiner | None = None,
                 scan_rule: dict | None = None):
        self.model = model
        self.config = config
        self.calibration = {**DEFAULT_CALIBRATION, **(calibration or {})}
        self.meta = meta
        self.name = str(meta.get("name", "detector"))
        self.version = str(meta.get("version", "0"))
        self.sha256 = sha256
        self.device = device
        self.path = path
        self.batch_size = max(1, int(batch_size))
        self.has_image_head = bool(config.get("image_head", True))
        self.refiner = refiner.to(device) if refiner is not None else None
        # how slices become a scan verdict (volume_verdict); None: the max rule
        self.scan_rule = None
        if scan_rule:
            self.scan_rule = {**check_scan_rule(scan_rule), "chosen_on": scan_rule.get("chosen_on", "")}

    @classmethod
    def load(cls, weights: str | Path | None = None, device: str = "auto", *, batch_size: int = 4) -> "Predictor":
        """Load a bundle; ``weights=None`` reads $DETECTOR_WEIGHTS, else ``models/detector.pt``."""
        path = Path(weights or os.environ.get("DETECTOR_WEIGHTS") or DEFAULT_WEIGHTS)
        if not path.is_file():
            raise ModelNotInstalled(
                f"The detector weights file {path} does not exist. Train one with "
                "`python manage.py train_detector DATASET_DIR --out RUN_DIR` and copy RUN_DIR/detector.pt there, "
                "or point DETECTOR_WEIGHTS (or --weights) at an existing bundle such as the repository's "
                "models/detector.pt."
            )
        resolved = resolve_device(device)
        try:
            bundle = load_bundle(path, map_location="cpu")
            model = model_from_bundle(bundle)
            refiner = refiner_from_state(bundle["refiner"]) if bundle.get("refiner") else None
        except Exception as exc:  # torch.load raises many types (UnpicklingError, RuntimeError...) on bad files
            raise ModelNotInstalled(
                f"{path} is not a usable detector bundle ({exc}). Replace it with a file written by "
                "train_detector (or inference.ml.model.save_bundle)."
            ) from exc
        sha256 = file_sha256(path)
        try:
            scan_rule = load_scan_rule(path, sha256)
        except ScanRuleError as exc:
            raise ModelNotInstalled(str(exc)) from exc
        model.to(resolved)
        return cls(
            model,
            config=bundle["config"],
            calibration=bundle.get("calibration", {}),
            meta=bundle.get("meta", {}),
            sha256=sha256,
            device=resolved,
            path=path,
            batch_size=batch_size,
            refiner=refiner,
            scan_rule=scan_rule,
        )

    @property
    def info(self) -> dict:
        return {"name": self.name, "version": self.version, "sha256": self.sha256}

    def volume_verdict(self, preds: list[SlicePrediction]) -> SlicePrediction:
        """The scan verdict under this model's scan rule (`volume_verdict`)."""
        return volume_verdict(preds, self.scan_rule)

    def predict(self, image: np.ndarray) -> SlicePrediction:
        return self.predict_batch([image])[0]

    def predict_batch(self, images: list[np.ndarray]) -> list[SlicePrediction]:
        return [pred for pred, _ in self.predict_detailed(images)]

    @property
    def refines(self) -> bool:
        """Whether shown masks are redrawn by the bundle's refiner (`refiner`; the calibration's ``refine``)."""
        return self.refiner is not None and bool(self.calibration.get("refine", False))

    def refine(self, image: np.ndarray, verdict: str, shown: list[Instance], probs: np.ndarray,
               threshold: float | None = None) -> list[Instance]:
        """The shown detections with their masks redrawn by the refiner from their mask probabilities ``probs``
        (n, h, w): the refined probability cut at ``threshold`` (default the calibration's
        ``refine_threshold``), each detection keeping the refined pixels within the refiner's margin of its own
        coarse region. Scores, labels and boxes are kept; a detection left with no pixel keeps its own mask."""
        cut = float(self.calibration["refine_threshold"] if threshold is None else threshold)
        coarse = probs.max(axis=0)
        refined = refine_probability(self.refiner, image, coarse, verdict, self.device) >= cut
        margin = self.refiner.config.margin
        out = []
        for det, p in zip(shown, probs):
            mask = refined & near(p >= WINDOW_PROB, margin)
            out.append(Instance(det.label, det.score, det.box, mask if mask.any() else det.mask))
        return out

    @property
    def test_time_flip(self) -> bool:
        return bool(self.calibration.get("test_time_flip", False))

    def predict_detailed(self, images: list[np.ndarray]) -> list[tuple[SlicePrediction, list[Instance]]]:
        """Each slice's prediction and every detection the model made (any class, any score): for COCO AP."""
        slices = [as_uint8_slice(img) for img in images]
        results = []
        for start in range(0, len(slices), self.batch_size):
            chunk = slices[start : start + self.batch_size]
            outputs = self.forward(chunk)
            results.extend(self._postprocess_detailed(out, s) for out, s in zip(outputs, chunk))
        return results

    def forward(self, slices: list[np.ndarray], flip: bool | None = None) -> list[dict]:
        """The model's outputs for uint8 slices; with ``flip`` (default: the calibration's ``test_time_flip``)
        each is the fusion of the slice and its left-right mirror (`fuse_views`)."""
        plain, fused = self.forward_views(slices, flip=self.test_time_flip if flip is None else flip)
        return plain if fused is None else fused

    def forward_views(self, slices: list[np.ndarray], flip: bool = True) -> tuple[list[dict], list[dict] | None]:
        """The plain outputs and, with ``flip``, the two-view fused ones, from one pass of the model (calibration
        compares both)."""
        tensors = [slice_tensor(s).to(self.device) for s in slices]
        if flip:
            tensors += [t.flip(-1) for t in tensors]
        with torch.inference_mode():
            outputs = self.model(tensors)
        n = len(slices)
        if not flip:
            return outputs, None
        fused = [fuse_views(outputs[k], flip_output(outputs[n + k], s.shape[1])) for k, s in enumerate(slices)]
        return outputs[:n], fused

    def scores_from_raw(self, raw: dict, calibration: dict | None = None) -> dict[str, float]:
        """The verdict probabilities of one model output: the learned verdict's or the rule's
        (`fuse_scores`), then reshaped by the calibration's ``confidence_temperature`` (`confidence`)."""
        cal = {**self.calibration, **(calibration or {})}
        return temper_scores(self._untempered_scores(raw, cal), cal["confidence_temperature"])

    def _untempered_scores(self, raw: dict, cal: dict) -> dict[str, float]:
        if cal.get("verdict_model"):
            labels = [CATEGORIES.get(int(c), str(int(c))) for c in raw["labels"]]
            feats = verdict_features(raw["image_logits"] if self.has_image_head else None, labels, raw["scores"],
                                     raw["boxes"])
            return {v: float(p) for v, p in zip(VERDICTS, verdict_probs(cal["verdict_model"], feats))}
        image_probs = None
        if self.has_image_head:
            logits = np.asarray(raw["image_logits"], dtype=np.float64) / float(cal["temperature"])
            logits = logits - logits.max()
            image_probs = np.exp(logits) / np.exp(logits).sum()
        class_scores = {}
        for cid, name in CATEGORIES.items():
            sel = raw["scores"][(raw["labels"] == cid) & (raw["scores"] >= cal["detection_threshold"])]
            class_scores[name] = float(sel.max()) if sel.size else 0.0
        weight = float(cal["image_weight"]) if image_probs is not None else 0.0
        return fuse_scores(image_probs, class_scores, weight)

    def _postprocess(self, out: dict, image: np.ndarray) -> SlicePrediction:
        return self._postprocess_detailed(out, image)[0]

    def _postprocess_detailed(self, out: dict, image: np.ndarray) -> tuple[SlicePrediction, list[Instance]]:
        """The prediction for the uint8 slice ``image`` from the model's output on it, and every detection."""
        boxes = out["boxes"].float().cpu().numpy()
        raw = {
            "image_logits": out["image_logits"].float().cpu().numpy(),
            "scores": out["scores"].float().cpu().numpy(),
            "labels": out["labels"].cpu().numpy(),
            "boxes": boxes,
        }
        scores = self.scores_from_raw(raw)
        verdict = max(VERDICTS, key=lambda v: scores[v])
        probs = out["masks"][:, 0].float().cpu().numpy()
        masks = probs >= float(self.calibration["mask_threshold"])
        detections = [
            Instance(
                label=CATEGORIES.get(int(raw["labels"][i]), str(int(raw["labels"][i]))),
                score=float(raw["scores"][i]),
                box=tuple(float(v) for v in boxes[i]),
                mask=masks[i],
            )
            for i in range(len(raw["scores"]))
        ]
        cal = self.calibration
        idx = shown_detections(verdict, detections, float(cal["detection_threshold"]),
                               float(cal["show_threshold"]), float(cal["show_relative"]))
        shown = [detections[i] for i in idx]
        if self.refines and shown:
            shown = self.refine(image, verdict, shown, probs[idx])
        instances = merge_overlapping(shown)
        tamper = float(sum(scores[v] for v in TAMPERED))
        return SlicePrediction(verdict=verdict, scores=scores, tamper_score=tamper, instances=instances), detections


def volume_verdict(preds: list[SlicePrediction], rule: dict | None = None) -> SlicePrediction:
    """One verdict per scan: a finding on any slice is a finding on the scan.

    Without ``rule`` (the max rule): each positive verdict scores its highest slice probability, ``no_tumor``
    its lowest (a scan is tumour-free only if every slice is); the scores are renormalised and the verdict is
    the most probable. A series with a real tumour then reads as real_tumor unless a tampered slice beats the
    tumour's own probability, and that is nearly a coin toss when both are near 1.

    With ``rule`` ({"threshold": t, "min_slices": m, "slope": a}, chosen on the validation split's whole series
    by `evaluate_series`; `scan_rule`): the scan's probability of being tampered, q, is a logistic curve in the
    log-odds of its m-th highest slice tamper score (fake_added + fake_removed): 0.5 at t, slope a (fitted so that
    q means what it says at even odds, on validation series). q is shared between fake_added and fake_removed as
    their highest slice probabilities are, 1 - q between real_tumor (its highest) and no_tumor (its lowest), and
    the verdict is the most probable of the four. No instances.
    """
    verdict, scores = scan_scores([p.scores for p in preds], rule)
    return SlicePrediction(
        verdict=verdict, scores=scores, tamper_score=float(sum(scores[v] for v in TAMPERED)), instances=[]
    )
