"""Readers: real slices with tumour masks from the corpora the project knows, as :class:`SourceSlice`.

Every reader returns 8-bit slices under the project's one windowing rule (``imaging.to_uint8``: 8-bit data
kept byte for byte, anything else windowed per volume between its 0.5th and 99.5th percentile), a boolean
tumour mask of the same size, the patient id and where the slice came from.

Layouts (``read_source`` picks one from the folder, or take ``KIND:PATH``):

- ``kaggle3m``: the LGG segmentation layout ``<root>/[kaggle_3m/]<case>/<case>_<n>.tif`` + ``<case>_<n>_mask.tif``.
  Single-channel (FLAIR) or the public 3-channel TIFF (pre-contrast, FLAIR, post-contrast: channel 1 is
  used). A mask without an image (or an image without a mask) is skipped with a warning. Patient =
  ``TCGA_<site>_<id>`` (the case folder without its date).
- ``pairs``: any folder of image + mask files (PNG, JPEG, TIFF), masks named by ``mask_pattern``
  (default ``{stem}_mask``; the mask may have any supported extension) or found in a ``masks/`` subfolder
  with the same stem. Patient = the first folder level under the root, else the file stem.
- ``dicom``: ``<root>/DICOM/<series>/`` with a mask series ``<root>/DICOM/ROI/`` (BRAINIX). The image series
  is the one whose slices match the mask's size (FLAIR for BRAINIX) unless ``series`` is given.
- ``nifti``: volumes and label volumes: ``<root>/<patient>/<name>_Scan_*.nii[.gz]`` + ``<name>_Mask.nii[.gz]``
  (TCIA Brain-Tumor-Progression) or ``<root>/NIfTI/<series>.nii.gz`` + ``ROI.nii.gz``. Blank slices (all
  zero, the padding some distributions add) are skipped.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable

import numpy as np

from .. import imaging
from ..imaging import ImagingError

log = logging.getLogger(__name__)

KINDS = ("kaggle3m", "pairs", "dicom", "nifti")
_IMAGE_EXT = (".png", ".jpg", ".jpeg", ".tif", ".tiff")


class SourceError(ValueError):
    """A corpus cannot be read: the message says which file and what to do."""


class SourceWarning(UserWarning):
    """A recoverable hole in a corpus (orphan mask, unreadable slice) that was skipped."""


@dataclass
class SourceSlice:
    image: np.ndarray  # (h, w) uint8 after the windowing rule
    mask: np.ndarray  # (h, w) bool, the tumour
    patient_id: str
    source: str  # corpus name (folder name)
    file: str  # path of the image file (or volume), relative to the corpus root when possible
    index: int = 0  # slice index within the file or volume
    meta: dict = field(default_factory=dict)
    position: float | None = None  # 0..1 along the patient's stack of slices (None when unknown)

    @property
    def key(self) -> str:
        return f"{self.source}:{self.file}#{self.index}"

    @property
    def tumour_area(self) -> int:
        return int(self.mask.sum())


def _check_pair(image: np.ndarray, mask: np.ndarray, what: str) -> None:
    if image.shape != mask.shape:
        raise SourceError(
            f"{what}: the image is {image.shape[-1]} x {image.shape[-2]} but its mask is "
            f"{mask.shape[-1]} x {mask.shape[-2]} (and {image.shape[0] if image.ndim == 3 else 1} vs "
            f"{mask.shape[0] if mask.ndim == 3 else 1} slices); an image and its mask must have the same size."
        )


def _warn(message: str) -> None:
    log.warning(message)
    warnings.warn(message, SourceWarning, stacklevel=3)


def _rel(path: Path, root: Path) -> str:
    try:
        return str(path.relative_to(root))
    except ValueError:
        return str(path)


# --- LGG kaggle_3m ------------------------------------------------------------------------------

_KAGGLE_SLICE = re.compile(r"^(?P<case>.+)_(?P<n>\d+)(?P<mask>_mask)?\.tiff?$", re.IGNORECASE)


def _kaggle_root(root: Path) -> Path:
    return root / "kaggle_3m" if (root / "kaggle_3m").is_dir() else root


def read_kaggle3m(root: str | Path, *, source: str | None = None) -> list[SourceSlice]:
    root = Path(root)
    base = _kaggle_root(root)
    source = source or (root.name if root.name != "kaggle_3m" else root.parent.name)
    out: list[SourceSlice] = []
    cases = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    for case in cases:
        images: dict[int, Path] = {}
        masks: dict[int, Path] = {}
        for f in case.iterdir():
            m = _KAGGLE_SLICE.match(f.name)
            if not m:
                continue
            (masks if m.group("mask") else images)[int(m.group("n"))] = f
        for n in sorted(set(images) | set(masks)):
            if n not in images:
                _warn(f"{_rel(masks[n], base)}: a mask without its image; skipped.")
                continue
            if n not in masks:
                _warn(f"{_rel(images[n], base)}: an image without its mask; skipped.")
                continue
            try:
                img = imaging.read_image(images[n], channel=1).slices
                msk = imaging.read_image(masks[n], channel=0).slices
            except ImagingError as exc:
                raise SourceError(f"{_rel(images[n], base)}: {exc}") from exc
            _check_pair(img, msk, _rel(images[n], base))
            patient = "_".join(case.name.split("_")[:3]) if case.name.startswith("TCGA_") else case.name
            last = max(images) if len(images) > 1 else 2
            out.append(
                SourceSlice(
                    image=imaging.to_uint8(img[0]),
                    mask=msk[0] > 0,
                    patient_id=patient,
                    source=source,
                    file=_rel(images[n], root),
                    index=0,
                    meta={"case": case.name, "slice": n},
                    position=(n - min(images)) / max(last - min(images), 1),
                )
            )
    return out


# --- Image + mask pairs -------------------------------------------------------------------------


def read_pairs(root: str | Path, *, mask_pattern: str = "{stem}_mask", source: str | None = None) -> list[SourceSlice]:
    """Image + mask files anywhere under ``root``; ``mask_pattern`` formats ``{stem}`` into the mask's stem."""
    root = Path(root)
    source = source or root.name
    files = sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_EXT)
    by_stem: dict[tuple[Path, str], Path] = {(f.parent, f.stem): f for f in files}
    mask_files: set[Path] = set()
    pairs: list[tuple[Path, Path]] = []
    probe = mask_pattern.format(stem="\0")
    prefix, _, suffix = probe.partition("\0")
    for f in files:
        if f.parent.name == "masks":
            continue
        mask = by_stem.get((f.parent, mask_pattern.format(stem=f.stem)))
        if mask is None:
            mask = by_stem.get((f.parent / "masks", f.stem))
        if mask is not None and mask != f:
            pairs.append((f, mask))
            mask_files.add(mask)
    images_seen = {img for img, _ in pairs}
    unpaired = []
    for f in files:
        if f in mask_files or f in images_seen:
            continue
        looks_like_mask = f.parent.name == "masks" or (
            f.stem.startswith(prefix) and f.stem.endswith(suffix) and (prefix or suffix)
        )
        unpaired.append(f"{_rel(f, root)}: {'a mask without an image' if looks_like_mask else 'no mask found'}")
    if unpaired:
        more = f" (and {len(unpaired) - 3} more)" if len(unpaired) > 3 else ""
        _warn(f"{'; '.join(unpaired[:3])}{more}; skipped (masks are named {mask_pattern!r} or masks/<stem>).")
    out = []
    for img_path, mask_path in pairs:
        try:
            img = imaging.read_image(img_path).slices
            msk = imaging.read_image(mask_path, channel=0).slices
        except ImagingError as exc:
            raise SourceError(f"{_rel(img_path, root)}: {exc}") from exc
        _check_pair(img, msk, _rel(img_path, root))
        rel = img_path.relative_to(root)
        patient = rel.parts[0] if len(rel.parts) > 1 else img_path.stem
        windowed = imaging.to_uint8(img)
        for i in range(img.shape[0]):
            out.append(
                SourceSlice(
                    image=windowed[i], mask=msk[i] > 0, patient_id=patient, source=source,
                    file=str(rel), index=i,
                )
            )
    return out


# --- DICOM series + mask series -----------------------------------------------------------------


def _dicom_patient(folder: Path, default: str) -> str:
    import pydicom

    for f in sorted(folder.iterdir()):
        if f.is_file():
            try:
                pid = pydicom.dcmread(f, stop_before_pixels=True).get("PatientID")
            except Exception:  # not DICOM: keep looking
                continue
            return str(pid) if pid else default
    return default


def read_dicom_pair(
    image_series: str | Path, mask_series: str | Path, *, source: str, patient_id: str | None = None,
    root: Path | None = None,
) -> list[SourceSlice]:
    image_series, mask_series = Path(image_series), Path(mask_series)
    try:
        vol = imaging.read_path(image_series)
        msk = imaging.read_path(mask_series)
    except ImagingError as exc:
        raise SourceError(f"{image_series} / {mask_series}: {exc}") from exc
    _check_pair(vol.slices, msk.slices, f"{image_series.name} with mask {mask_series.name}")
    patient = patient_id or _dicom_patient(image_series, source)
    windowed = imaging.to_uint8(vol.slices)
    rel = _rel(image_series, root) if root else str(image_series)
    n = vol.n_slices
    return [
        SourceSlice(windowed[i], msk.slices[i] > 0, patient, source, rel, i, {"series": image_series.name},
                    position=i / max(n - 1, 1))
        for i in range(n)
    ]


def read_dicom(root: str | Path, *, series: str | None = None, source: str | None = None) -> list[SourceSlice]:
    root = Path(root)
    base = root / "DICOM" if (root / "DICOM").is_dir() else root
    mask_dir = base / "ROI"
    if not mask_dir.is_dir():
        raise SourceError(f"{root}: no DICOM mask series (expected a folder ROI/ beside the image series).")
    candidates = [base / series] if series else sorted(p for p in base.iterdir() if p.is_dir() and p != mask_dir)
    try:
        mask_shape = imaging.read_path(mask_dir).slices.shape
    except ImagingError as exc:
        raise SourceError(f"{mask_dir}: {exc}") from exc
    for cand in candidates:
        if not cand.is_dir():
            raise SourceError(f"{cand}: no such DICOM series folder.")
        try:
            shape = imaging.read_path(cand).slices.shape
        except ImagingError as exc:
            raise SourceError(f"{cand}: {exc}") from exc
        if shape == mask_shape or series:
            return read_dicom_pair(cand, mask_dir, source=source or root.name, root=root)
    raise SourceError(f"{root}: no image series has the mask series' size {mask_shape}; name one with series=.")


# --- NIfTI volume + label volume ----------------------------------------------------------------


def read_nifti_pair(
    volume: str | Path, labels: str | Path, *, patient_id: str, source: str, root: Path | None = None,
    skip_blank: bool = True,
) -> list[SourceSlice]:
    volume, labels = Path(volume), Path(labels)
    try:
        vol = imaging.read_path(volume)
        lab = imaging.read_path(labels)
    except ImagingError as exc:
        raise SourceError(f"{volume.name} / {labels.name}: {exc}") from exc
    _check_pair(vol.slices, lab.slices, f"{_rel(volume, root) if root else volume} with labels {labels.name}")
    windowed = imaging.to_uint8(vol.slices)
    rel = _rel(volume, root) if root else str(volume)
    kept = []
    for i in range(vol.n_slices):
        raw = vol.slices[i]
        if skip_blank and (not np.isfinite(raw).any() or np.nanmax(raw) == np.nanmin(raw)):
            continue
        kept.append(i)
    if not kept:
        return []
    first, span = kept[0], max(kept[-1] - kept[0], 1)
    return [
        SourceSlice(windowed[i], lab.slices[i] > 0, patient_id, source, rel, i, {"volume": volume.name},
                    position=(i - first) / span)
        for i in kept
    ]


def _nifti_stem(p: Path) -> str:
    return p.name[:-7] if p.name.endswith(".nii.gz") else p.stem


def read_nifti(root: str | Path, *, source: str | None = None) -> list[SourceSlice]:
    root = Path(root)
    source = source or root.name
    out: list[SourceSlice] = []
    # TCIA Brain-Tumor-Progression: <patient>/<tp>_Scan_<seq>.nii.gz + <tp>_Mask.nii.gz
    for vol in sorted(root.glob("*/*_Scan_*.nii*")):
        tp = vol.name.split("_Scan_")[0]
        labels = [p for p in vol.parent.glob(f"{tp}_Mask.nii*")]
        if not labels:
            _warn(f"{_rel(vol, root)}: no {tp}_Mask.nii.gz beside it; skipped.")
            continue
        out.extend(read_nifti_pair(vol, labels[0], patient_id=vol.parent.name, source=source, root=root))
    if out:
        return out
    # BRAINIX-style: NIfTI/<series>.nii.gz + ROI.nii.gz in one folder
    base = root / "NIfTI" if (root / "NIfTI").is_dir() else root
    roi = [p for p in base.glob("ROI.nii*")]
    if roi:
        lshape = imaging.read_path(roi[0]).slices.shape
        for vol in sorted(p for p in base.glob("*.nii*") if p != roi[0]):
            if imaging.read_path(vol).slices.shape == lshape:
                return read_nifti_pair(vol, roi[0], patient_id=root.name, source=source, root=root)
    return out


# --- Dispatch -----------------------------------------------------------------------------------


def detect_kind(path: Path) -> str:
    if (path / "kaggle_3m").is_dir() or any(path.glob("*/*_mask.tif")):
        return "kaggle3m"
    if (path / "DICOM" / "ROI").is_dir() or (path / "ROI").is_dir():
        return "dicom"
    if any(path.glob("*/*_Scan_*.nii*")) or any(path.glob("NIfTI/ROI.nii*")) or any(path.glob("ROI.nii*")):
        return "nifti"
    return "pairs"


def parse_source(spec: str) -> tuple[str | None, Path]:
    """``KIND:PATH`` or ``PATH``."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        return kind, Path(rest)
    return None, Path(spec)


def read_source(spec: str | Path, *, mask_pattern: str = "{stem}_mask") -> list[SourceSlice]:
    """All slices of one corpus, ``spec`` = ``PATH`` (layout detected) or ``KIND:PATH``. Raises SourceError."""
    kind, path = parse_source(str(spec))
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder.")
    if not path.is_dir():
        raise SourceError(f"{path}: a source must be a folder (a corpus), not a single file.")
    kind = kind or detect_kind(path)
    if kind == "kaggle3m":
        slices = read_kaggle3m(path)
    elif kind == "dicom":
        slices = read_dicom(path)
    elif kind == "nifti":
        slices = read_nifti(path)
    else:
        slices = read_pairs(path, mask_pattern=mask_pattern)
    if not slices:
        raise SourceError(
            f"{path}: no image with a mask was found (read as '{kind}'). Expected one of the layouts in "
            "inference/ml/dataset/readers.py; name the layout with KIND:PATH (kaggle3m, pairs, dicom, nifti)."
        )
    return slices


def read_sources(specs: Iterable[str | Path], **kwargs) -> list[SourceSlice]:
    out: list[SourceSlice] = []
    for spec in specs:
        out.extend(read_source(spec, **kwargs))
    return out
