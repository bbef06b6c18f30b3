"""The dataset contract on disk (``../shared/docs/dataset-and-evaluation.md``): read, validate, write.

No Django. The builder writes through :class:`DatasetWriter`; the evaluation and training commands read
through :func:`load_dataset` and check through :func:`validate_dataset` / :func:`check_dataset`.

Reading::

    from inference.ml.coco import load_dataset
    ds = load_dataset("/work/data/tamper-v1", split="test")   # split=None: every image
    for rec in ds:                     # ImageRecord
        rec.id, rec.file_name, rec.path, rec.width, rec.height
        rec.verdict, rec.patient_id, rec.source, rec.method, rec.split, rec.extra   # extra: unknown keys
        img = rec.pixels()             # (h, w) uint8, or uint16 for a 16-bit PNG
        union = rec.mask()             # (h, w) bool: union of the ground-truth regions (all False if none)
        for inst in rec.instances():   # Instance(category_id, label, mask (h, w) bool, annotation_id)
            ...
    ds.by_id[42]; len(ds); ds.splits()  # {"train": n, ...}

Segmentations may be compressed RLE (``{"size": [h, w], "counts": str}``), uncompressed RLE
(``counts`` a list) or polygons; all are decoded with pycocotools.

Validating::

    problems = validate_dataset(path)          # list of human-readable problems, [] when valid
    check_dataset(path)                        # raises DatasetError listing the problems

Writing::

    with DatasetWriter(out_dir) as w:          # out_dir must be empty or absent
        w.add_image(pixels, name="lgg_0001", verdict="fake_added", patient_id="TCGA_CS_4941",
                    source="lgg-flair", method="splice", split="train",
                    masks=[mask], extra={"provenance": {...}})
    # annotations.json is written on close; images/<name>.png as they come.

Masks helpers: :func:`mask_to_rle` (compressed RLE with a ``str`` counts, JSON-ready), :func:`rle_to_mask`,
:func:`segmentation_to_mask`.
"""
from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

import numpy as np

from .labels import CATEGORIES, CATEGORY_IDS, TAMPERED, VERDICT_CATEGORY, VERDICTS

ANNOTATIONS_FILE = "annotations.json"
IMAGES_DIR = "images"
SPLITS = ("train", "val", "test")
CONTRACT_CATEGORIES = [{"id": cid, "name": name} for cid, name in sorted(CATEGORIES.items())]


class DatasetError(ValueError):
    """A dataset directory does not follow the contract; ``problems`` lists every finding."""

    def __init__(self, message: str, problems: Sequence[str] = ()):
        self.problems = list(problems)
        if self.problems:
            shown = "\n  - ".join(self.problems[:20])
            more = f"\n  ... and {len(self.problems) - 20} more" if len(self.problems) > 20 else ""
            message = f"{message}\n  - {shown}{more}"
        super().__init__(message)


# --- Masks --------------------------------------------------------------------------------------


def mask_to_rle(mask: np.ndarray) -> dict:
    """A 2-D boolean mask as compressed COCO RLE, ``{"size": [h, w], "counts": str}`` (JSON-ready)."""
    from pycocotools import mask as mask_utils

    arr = np.asarray(mask)
    if arr.ndim != 2:
        raise ValueError(f"A mask must be 2-D, got shape {arr.shape}.")
    rle = mask_utils.encode(np.asfortranarray(arr.astype(bool).astype(np.uint8)))
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": rle["counts"].decode("ascii")}


def rle_to_mask(rle: dict) -> np.ndarray:
    """Compressed or uncompressed COCO RLE as a (h, w) bool mask."""
    from pycocotools import mask as mask_utils

    if not isinstance(rle, dict) or "size" not in rle or "counts" not in rle:
        raise ValueError("An RLE segmentation needs 'size' and 'counts'.")
    h, w = (int(v) for v in rle["size"])
    counts = rle["counts"]
    if isinstance(counts, list):  # uncompressed RLE
        rle = mask_utils.frPyObjects({"size": [h, w], "counts": counts}, h, w)
    else:
        rle = {"size": [h, w], "counts": counts.encode("ascii") if isinstance(counts, str) else counts}
    return _decode(rle)


def _decode(rle) -> np.ndarray:
    import warnings

    from pycocotools import mask as mask_utils

    with warnings.catch_warnings():  # pycocotools' __array__ predates numpy 2's copy keyword
        warnings.simplefilter("ignore", DeprecationWarning)
        return mask_utils.decode(rle).astype(bool)


def segmentation_to_mask(segmentation, height: int, width: int) -> np.ndarray:
    """Any COCO segmentation (RLE dict or list of polygons) as a (height, width) bool mask."""
    from pycocotools import mask as mask_utils

    if isinstance(segmentation, dict):
        mask = rle_to_mask(segmentation)
        if mask.shape != (height, width):
            raise ValueError(f"RLE size {list(mask.shape)} differs from the image's {[height, width]}.")
        return mask
    if isinstance(segmentation, list):
        polygons = [list(map(float, p)) for p in segmentation if len(p) >= 6]
        if not polygons:
            raise ValueError("The polygon segmentation has no polygon with at least 3 points.")
        rles = mask_utils.frPyObjects(polygons, height, width)
        return _decode(mask_utils.merge(rles))
    raise ValueError(f"Unknown segmentation type {type(segmentation).__name__}; expected RLE or polygons.")


def mask_bbox(mask: np.ndarray) -> list[float]:
    """COCO ``[x, y, w, h]`` of a non-empty mask."""
    ys, xs = np.nonzero(mask)
    if ys.size == 0:
        return [0.0, 0.0, 0.0, 0.0]
    x0, y0 = int(xs.min()), int(ys.min())
    return [float(x0), float(y0), float(xs.max() - x0 + 1), float(ys.max() - y0 + 1)]


# --- Pixels -------------------------------------------------------------------------------------


def read_png(path: str | Path) -> np.ndarray:
    """A single-channel 8- or 16-bit PNG as (h, w) uint8 / uint16; DatasetError when it is not."""
    import cv2

    data = np.fromfile(str(path), dtype=np.uint8)
    if data.size == 0:
        raise DatasetError(f"{path}: the file is empty.")
    img = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)
    if img is None:
        raise DatasetError(f"{path}: not a readable PNG image.")
    if img.ndim == 3:
        # A grey slice saved as RGB(A) or palette (every colour channel equal, fully opaque) is read as the grey
        # slice it is, losslessly; a colour image is refused.
        colour, alpha = img[..., :3], img[..., 3] if img.shape[2] == 4 else None
        grey = img.shape[2] in (3, 4) and bool((colour == colour[..., :1]).all())
        opaque = alpha is None or bool((alpha == np.iinfo(img.dtype).max).all())
        if img.shape[2] == 1 or (grey and opaque):
            img = np.ascontiguousarray(img[..., 0])
        else:
            why = "a colour image" if not grey else "a grey image with transparent pixels"
            raise DatasetError(f"{path}: {why} ({img.shape[2]} channels); the contract wants single-channel PNG.")
    if img.dtype not in (np.uint8, np.uint16):
        raise DatasetError(f"{path}: pixel type {img.dtype}; the contract wants 8- or 16-bit PNG.")
    return img


def encode_png(image: np.ndarray) -> bytes:
    """Deterministic PNG bytes of a (h, w) uint8 or uint16 array."""
    import cv2

    arr = np.ascontiguousarray(image)
    if arr.ndim != 2 or arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"A slice must be a 2-D uint8/uint16 array, got {arr.dtype} {arr.shape}.")
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, 6])
    if not ok:
        raise ValueError("PNG encoding failed.")
    return buf.tobytes()


# --- Reading ------------------------------------------------------------------------------------


@dataclass
class Instance:
    annotation_id: int
    category_id: int
    label: str
    mask: np.ndarray  # (h, w) bool


def site_of(patient_id: str, source: str) -> str:
    """The acquisition site of an image: for TCGA patients (``TCGA_CS_4941...``) the tissue-source-site code
    (``TCGA-CS``, one hospital each), otherwise the source corpus itself."""
    parts = str(patient_id).replace("-", "_").split("_")
    if len(parts) >= 2 and parts[0].upper() == "TCGA" and parts[1]:
        return f"TCGA-{parts[1].upper()}"
    return str(source) or "(unknown)"


# Regions under this many pixels (0.8 % of a 256 x 256 slice) are "small": the detector's weakest group
# (evaluate's region-size breakdown, train's --small-region-repeat).
SMALL_REGION_AREA = 500


def _stated_area(ann: dict) -> float | None:
    area = ann.get("area")
    return float(area) if isinstance(area, (int, float)) and not isinstance(area, bool) and area > 0 else None


def region_area(rec) -> int:
    """Pixels of a record's annotated regions (their COCO areas, summed); 0 for a slice without a region. Where a
    region states no usable area (a dataset written elsewhere), the pixels of the regions' masks are counted."""
    areas = [_stated_area(ann) for ann in rec.annotations]
    if any(area is None for area in areas):
        return int(rec.mask().sum())
    return int(sum(areas))


def ground_truth_annotation(ann: dict, rec) -> dict:
    """``ann`` as pycocotools' evaluation needs it: the category its image's verdict names (the contract ties the
    two; a dataset that numbered its categories otherwise is scored by what its images are), ``iscrowd`` 0,
    ``area`` and ``bbox`` from the mask where the file states none."""
    out = {**ann, "iscrowd": int(ann.get("iscrowd", 0) or 0)}
    category = VERDICT_CATEGORY.get(rec.verdict)
    if category is not None:
        out["category_id"] = category
    bbox = ann.get("bbox")
    if _stated_area(ann) is None or not (isinstance(bbox, list) and len(bbox) == 4):
        mask = segmentation_to_mask(ann["segmentation"], rec.height, rec.width)
        out["area"] = float(mask.sum()) if _stated_area(ann) is None else float(ann["area"])
        out["bbox"] = bbox if isinstance(bbox, list) and len(bbox) == 4 else mask_bbox(mask)
    return out


@dataclass
class ImageRecord:
    id: int
    file_name: str
    path: Path
    width: int
    height: int
    verdict: str
    patient_id: str
    source: str
    method: str | None
    split: str | None
    extra: dict = field(default_factory=dict)
    annotations: list[dict] = field(default_factory=list, repr=False)

    def pixels(self) -> np.ndarray:
        """The slice as stored: (h, w) uint8 or uint16."""
        return read_png(self.path)

    def instances(self) -> list[Instance]:
        """Every ground-truth region with its own mask (RLE or polygons decoded)."""
        out = []
        for k, ann in enumerate(self.annotations):
            try:
                cid = int(ann["category_id"])
            except (KeyError, TypeError, ValueError):  # a dataset written elsewhere: the verdict names the kind
                cid = VERDICT_CATEGORY.get(self.verdict) or 0
            mask = segmentation_to_mask(ann["segmentation"], self.height, self.width)
            ann_id = ann.get("id")
            out.append(Instance(ann_id if isinstance(ann_id, int) else k, cid, CATEGORIES.get(cid, str(cid)), mask))
        return out

    def mask(self) -> np.ndarray:
        """The union of the ground-truth regions, (h, w) bool; all False for ``no_tumor``."""
        union = np.zeros((self.height, self.width), dtype=bool)
        for inst in self.instances():
            union |= inst.mask
        return union

    @property
    def tampered(self) -> bool:
        return self.verdict in TAMPERED


@dataclass
class CocoDataset:
    root: Path
    images: list[ImageRecord]
    categories: list[dict]
    info: dict = field(default_factory=dict)

    def __iter__(self) -> Iterator[ImageRecord]:
        return iter(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> ImageRecord:
        return self.images[index]

    @property
    def by_id(self) -> dict[int, ImageRecord]:
        return {rec.id: rec for rec in self.images}

    def splits(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for rec in self.images:
            key = rec.split or "(none)"
            counts[key] = counts.get(key, 0) + 1
        return counts


def _load_json(root: Path) -> dict:
    path = root / ANNOTATIONS_FILE
    if not root.is_dir():
        raise DatasetError(f"{root}: not a directory.")
    if not path.is_file():
        raise DatasetError(f"{root}: no {ANNOTATIONS_FILE}; a dataset directory holds annotations.json and images/.")
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise DatasetError(f"{path}: not valid JSON ({exc}).") from exc
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: the top level must be an object with images, annotations, categories.")
    for key in ("images", "annotations", "categories"):
        if not isinstance(data.get(key), list):
            raise DatasetError(f"{path}: '{key}' is missing or not a list.")
    return data


_KNOWN_IMAGE_KEYS = {"id", "file_name", "width", "height", "verdict", "patient_id", "source", "method", "split"}


def load_dataset(path: str | Path, split: str | None = None) -> CocoDataset:
    """The dataset at ``path`` (only images of ``split`` when given). Raises DatasetError if unreadable.

    This does not check pixels or masks; call :func:`check_dataset` first for untrusted data.
    """
    root = Path(path)
    data = _load_json(root)
    by_image: dict[int, list[dict]] = {}
    for ann in data["annotations"]:
        try:
            by_image.setdefault(int(ann["image_id"]), []).append(ann)
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{root}: an annotation has no valid image_id ({ann!r:.120}).") from exc
    images = []
    present: dict[str, int] = {}  # every image's split, to say which exist when the one asked for does not
    for img in data["images"]:
        try:
            rec = ImageRecord(
                id=int(img["id"]),
                file_name=str(img["file_name"]),
                path=root / str(img["file_name"]),
                width=int(img["width"]),
                height=int(img["height"]),
                verdict=str(img["verdict"]),
                patient_id=str(img.get("patient_id", "")),
                source=str(img.get("source", "")),
                method=img.get("method"),
                split=img.get("split"),
                extra={k: v for k, v in img.items() if k not in _KNOWN_IMAGE_KEYS},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DatasetError(f"{root}: image entry {img!r:.160} lacks a required key or has a bad value ({exc}).") from exc
        if split is not None and rec.split != split:
            shown = "no split" if rec.split is None else repr(rec.split)
            present[shown] = present.get(shown, 0) + 1
            continue
        rec.annotations = by_image.get(rec.id, [])
        images.append(rec)
    if split is not None and not images:
        found = ", ".join(f"{name} ({n} images)" for name, n in sorted(present.items())) or "no images at all"
        raise DatasetError(f"{root}: no image has split '{split}'; its images have {found}.")
    return CocoDataset(root=root, images=images, categories=data["categories"], info=data.get("info") or {})


# --- Validation ---------------------------------------------------------------------------------


def validate_dataset(
    path: str | Path, *, check_pixels: bool = True, require_patient_disjoint: bool = False
) -> list[str]:
    """Every way the dataset at ``path`` breaks the contract, as readable sentences; [] when valid.

    ``check_pixels`` decodes every PNG (size, channels, bit depth). ``require_patient_disjoint`` also
    reports a patient that appears in more than one split (the project's own builds promise that).
    """
    root = Path(path)
    try:
        data = _load_json(root)
    except DatasetError as exc:
        return [str(exc)]
    problems: list[str] = []

    cats = data["categories"]
    normal = sorted(({"id": c.get("id"), "name": c.get("name")} for c in cats if isinstance(c, dict)),
                    key=lambda c: (c["id"] is None, c["id"] if isinstance(c["id"], int) else 0))
    if normal != CONTRACT_CATEGORIES or len(cats) != len(CONTRACT_CATEGORIES):
        problems.append(f"categories must be exactly {CONTRACT_CATEGORIES}, found {cats!r:.200}.")

    images: dict[int, dict] = {}
    file_names: set[str] = set()
    patient_splits: dict[str, set[str]] = {}
    for i, img in enumerate(data["images"]):
        where = f"images[{i}]"
        if not isinstance(img, dict):
            problems.append(f"{where}: not an object.")
            continue
        iid = img.get("id")
        if not isinstance(iid, int) or isinstance(iid, bool):
            problems.append(f"{where}: 'id' must be an integer, got {iid!r}.")
            continue
        where = f"image {iid}"
        if iid in images:
            problems.append(f"{where}: duplicate image id.")
            continue
        images[iid] = img
        fn = img.get("file_name")
        if not isinstance(fn, str) or not fn.startswith(IMAGES_DIR + "/") or not fn.lower().endswith(".png"):
            problems.append(f"{where}: file_name must be 'images/<name>.png', got {fn!r}.")
        elif fn in file_names:
            problems.append(f"{where}: file_name {fn} is used by another image.")
        else:
            file_names.add(fn)
        w, h = img.get("width"), img.get("height")
        if not (isinstance(w, int) and isinstance(h, int) and w > 0 and h > 0):
            problems.append(f"{where}: width and height must be positive integers, got {w!r} x {h!r}.")
            w = h = None
        verdict = img.get("verdict")
        if verdict not in VERDICTS:
            problems.append(f"{where}: verdict {verdict!r} is not one of {list(VERDICTS)}.")
        for key in ("patient_id", "source"):
            if not isinstance(img.get(key), str) or not img.get(key):
                problems.append(f"{where}: '{key}' must be a non-empty string.")
        method = img.get("method")
        if verdict in TAMPERED and not (isinstance(method, str) and method):
            problems.append(f"{where}: a {verdict} image must name its tampering method.")
        if verdict in ("real_tumor", "no_tumor") and method is not None:
            problems.append(f"{where}: an authentic ({verdict}) image must have method null, got {method!r}.")
        split = img.get("split")
        if split is not None and split not in SPLITS:
            problems.append(f"{where}: split {split!r} is not one of {list(SPLITS)}.")
        if isinstance(img.get("patient_id"), str) and split in SPLITS:
            patient_splits.setdefault(img["patient_id"], set()).add(split)
        if check_pixels and isinstance(fn, str) and fn.startswith(IMAGES_DIR + "/"):
            fpath = root / fn
            if not fpath.is_file():
                problems.append(f"{where}: {fn} does not exist.")
            else:
                try:
                    pix = read_png(fpath)
                except DatasetError as exc:
                    problems.append(f"{where}: {exc}")
                else:
                    if w is not None and pix.shape != (h, w):
                        problems.append(
                            f"{where}: {fn} is {pix.shape[1]} x {pix.shape[0]}, annotations say {w} x {h}."
                        )

    ann_ids: set[int] = set()
    n_regions: dict[int, int] = {}
    for j, ann in enumerate(data["annotations"]):
        where = f"annotations[{j}]"
        if not isinstance(ann, dict):
            problems.append(f"{where}: not an object.")
            continue
        aid = ann.get("id")
        if not isinstance(aid, int) or isinstance(aid, bool):
            problems.append(f"{where}: 'id' must be an integer.")
        elif aid in ann_ids:
            problems.append(f"{where}: duplicate annotation id {aid}.")
        else:
            ann_ids.add(aid)
            where = f"annotation {aid}"
        img = images.get(ann.get("image_id"))
        if img is None:
            problems.append(f"{where}: image_id {ann.get('image_id')!r} names no image.")
            continue
        cid = ann.get("category_id")
        expected = VERDICT_CATEGORY.get(img.get("verdict"))
        if cid not in CATEGORIES:
            problems.append(f"{where}: category_id {cid!r} is not one of {sorted(CATEGORIES)}.")
        elif expected is None and img.get("verdict") in VERDICTS:
            problems.append(f"{where}: a no_tumor image must have no regions.")
        elif expected is not None and cid != expected:
            problems.append(
                f"{where}: category {CATEGORIES[cid]} on a {img.get('verdict')} image (expected {CATEGORIES[expected]})."
            )
        if ann.get("iscrowd", 0) != 0:
            problems.append(f"{where}: iscrowd must be 0.")
        bbox = ann.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(isinstance(v, (int, float)) for v in bbox)):
            problems.append(f"{where}: bbox must be [x, y, w, h].")
        if not isinstance(ann.get("area"), (int, float)) or ann.get("area") <= 0:
            problems.append(f"{where}: area must be a positive number.")
        h, w = img.get("height"), img.get("width")
        if isinstance(h, int) and isinstance(w, int):
            try:
                mask = segmentation_to_mask(ann.get("segmentation"), h, w)
            except Exception as exc:  # pycocotools raises several types on malformed input
                problems.append(f"{where}: segmentation cannot be decoded ({exc}).")
            else:
                if not mask.any():
                    problems.append(f"{where}: the segmentation is empty.")
        n_regions[img["id"]] = n_regions.get(img["id"], 0) + 1

    for iid, img in images.items():
        if img.get("verdict") in VERDICT_CATEGORY and VERDICT_CATEGORY[img["verdict"]] is not None:
            if not n_regions.get(iid):
                problems.append(f"image {iid}: a {img['verdict']} image needs at least one region.")

    if require_patient_disjoint:
        for pid, splits in sorted(patient_splits.items()):
            if len(splits) > 1:
                problems.append(f"patient {pid} appears in several splits: {sorted(splits)}.")
    if not images:
        problems.append("the dataset has no images.")
    return problems


def evaluation_problems(records: Sequence[ImageRecord]) -> list[str]:
    """What would stop these records from being evaluated, or make their figures wrong, one sentence each.

    Looser than :func:`validate_dataset` on purpose: a dataset written elsewhere is evaluated as it is as long
    as every image has a verdict the metrics know, pixels the detector can read at the size the annotations
    give, and regions that decode. Reads every image once, so a missing file is named before the run starts
    rather than after the images before it were predicted.
    """
    from .imaging import ImagingError, check_model_input_size

    problems: list[str] = []
    seen: dict[int, str] = {}
    for rec in records:
        where = f"image {rec.id} ({rec.file_name})"
        if rec.id in seen:
            problems.append(f"{where}: image id {rec.id} is also {seen[rec.id]}'s; ids must be unique.")
        seen.setdefault(rec.id, rec.file_name)
        if rec.verdict not in VERDICTS:
            problems.append(f"{where}: verdict {rec.verdict!r} is not one of {list(VERDICTS)}.")
        if not rec.path.is_file():
            problems.append(f"{where}: the file does not exist.")
        else:
            try:
                pixels = read_png(rec.path)
                check_model_input_size(pixels.shape[1], pixels.shape[0])
            except (DatasetError, ImagingError) as exc:
                problems.append(f"{where}: {str(exc).removeprefix(f'{rec.path}: ')}")
            else:
                if pixels.shape != (rec.height, rec.width):
                    problems.append(f"{where}: the image is {pixels.shape[1]} x {pixels.shape[0]} pixels, "
                                    f"the annotations say {rec.width} x {rec.height}.")
        for ann in rec.annotations:
            try:
                segmentation_to_mask(ann.get("segmentation"), rec.height, rec.width)
            except Exception as exc:  # pycocotools raises several types on malformed input
                problems.append(f"{where}: annotation {ann.get('id')!r} cannot be decoded ({exc}).")
    return problems


def check_dataset(path: str | Path, **kwargs) -> None:
    """Raise DatasetError listing every problem when the dataset at ``path`` breaks the contract."""
    problems = validate_dataset(path, **kwargs)
    if problems:
        raise DatasetError(f"{path} does not follow the dataset contract ({len(problems)} problems):", problems)


# --- Writing ------------------------------------------------------------------------------------


class DatasetWriter:
    """Writes a dataset in the contract's layout; ``annotations.json`` appears on :meth:`close`.

    Images and annotations get ids in the order they are added, so a deterministic builder gives
    byte-identical output.
    """

    def __init__(self, out_dir: str | Path, *, info: dict | None = None, overwrite: bool = False):
        self.root = Path(out_dir)
        if self.root.exists() and any(self.root.iterdir()) and not overwrite:
            raise DatasetError(f"{self.root} exists and is not empty; choose a new output directory.")
        (self.root / IMAGES_DIR).mkdir(parents=True, exist_ok=True)
        self.info = dict(info or {})
        self.images: list[dict] = []
        self.annotations: list[dict] = []
        self._names: set[str] = set()
        self._closed = False

    def add_image(
        self,
        pixels: np.ndarray,
        *,
        name: str,
        verdict: str,
        patient_id: str,
        source: str,
        method: str | None = None,
        split: str | None = None,
        masks: Sequence[np.ndarray] = (),
        extra: dict | None = None,
    ) -> int:
        """Store one slice and its regions (one mask per instance); returns the image id."""
        if verdict not in VERDICTS:
            raise ValueError(f"Unknown verdict {verdict!r}.")
        if (verdict in TAMPERED) != bool(method):
            raise ValueError(f"{name}: method must be given exactly for tampered verdicts.")
        if split is not None and split not in SPLITS:
            raise ValueError(f"Unknown split {split!r}.")
        if name in self._names or "/" in name or not name:
            raise ValueError(f"Image name {name!r} is empty, contains '/', or is used twice.")
        arr = np.asarray(pixels)
        h, w = arr.shape[:2]
        category = VERDICT_CATEGORY[verdict]
        masks = [np.asarray(m, dtype=bool) for m in masks]
        masks = [m for m in masks if m.any()]
        for m in masks:
            if m.shape != (h, w):
                raise ValueError(f"{name}: mask {m.shape} and slice {(h, w)} differ in size.")
        if category is None and masks:
            raise ValueError(f"{name}: a no_tumor image cannot have regions.")
        if category is not None and not masks:
            raise ValueError(f"{name}: a {verdict} image needs at least one non-empty mask.")
        file_name = f"{IMAGES_DIR}/{name}.png"
        (self.root / file_name).write_bytes(encode_png(arr))
        image_id = len(self.images) + 1
        entry = {
            "id": image_id,
            "file_name": file_name,
            "width": int(w),
            "height": int(h),
            "verdict": verdict,
            "patient_id": str(patient_id),
            "source": str(source),
            "method": method,
        }
        if split is not None:
            entry["split"] = split
        for key, value in (extra or {}).items():
            if key in entry:
                raise ValueError(f"extra key {key!r} would overwrite a contract field.")
            entry[key] = value
        self.images.append(entry)
        self._names.add(name)
        for m in masks:
            self.annotations.append(
                {
                    "id": len(self.annotations) + 1,
                    "image_id": image_id,
                    "category_id": category,
                    "segmentation": mask_to_rle(m),
                    "area": int(m.sum()),
                    "bbox": mask_bbox(m),
                    "iscrowd": 0,
                }
            )
        return image_id

    def close(self) -> Path:
        """Write annotations.json (atomically) and return its path."""
        path = self.root / ANNOTATIONS_FILE
        if self._closed:
            return path
        data = {
            "info": self.info,
            "images": self.images,
            "annotations": self.annotations,
            "categories": CONTRACT_CATEGORIES,
        }
        tmp = path.with_suffix(".json.tmp")
        with open(tmp, "w", encoding="utf-8") as fh:
            json.dump(data, fh, separators=(",", ":"), sort_keys=False)
        os.replace(tmp, path)
        self._closed = True
        return path

    def __enter__(self) -> "DatasetWriter":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.close()


__all__ = [
    "ANNOTATIONS_FILE",
    "CATEGORY_IDS",
    "CONTRACT_CATEGORIES",
    "CocoDataset",
    "DatasetError",
    "DatasetWriter",
    "ImageRecord",
    "Instance",
    "SPLITS",
    "check_dataset",
    "encode_png",
    "load_dataset",
    "mask_bbox",
    "mask_to_rle",
    "read_png",
    "rle_to_mask",
    "segmentation_to_mask",
    "validate_dataset",
]
