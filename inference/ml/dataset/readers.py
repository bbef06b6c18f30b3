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
  with the same stem. Patient = the first folder level under the root; a file directly in the root is its own
  patient (a warning says so: slices of one patient must share a folder, or the split is not patient-disjoint).
  Position in the stack: a multi-page file's page order; for one slice per file, the trailing number of the
  file names (``slice_7``, ``IM-0001-0012``) where every image of the folder has one (at least 3 distinct).
- ``dicom``: ``<root>/DICOM/<series>/`` with a mask series ``<root>/DICOM/ROI/`` (BRAINIX). The image series
  is the one whose slices match the mask's size (FLAIR for BRAINIX) unless ``series`` is given.
- ``dicom-seg``: DICOM image series with DICOM SEG objects that segment them, anywhere under the root (TCIA's
  and highdicom's way): each SEG read against the series it references, every segment tumour.
- ``nifti``: volumes and label volumes: ``<root>/<patient>/<name>_Scan_*.nii[.gz]`` + ``<name>_Mask.nii[.gz]``
  (TCIA Brain-Tumor-Progression), ``<root>/NIfTI/<series>.nii.gz`` + ``ROI.nii.gz`` (BRAINIX), or any folder
  per patient whose volumes share a prefix with a label volume ``<prefix>_seg`` (``_mask``, ``_label``,
  ``_roi``...), as BraTS writes ``<patient>_flair/_t1/_t1ce/_t2`` + ``<patient>_seg`` (every sequence is read).
  Blank slices (all zero, the padding some distributions add) are skipped.

Masks: a label map's non-zero pixels; a JPEG mask, or one with more than ``MAX_LABEL_VALUES`` values, above
half its maximum (``tumour_mask``). A corpus with unreadable files or images and masks of different sizes
is refused with every such file named at once (``SourceError``), before anything is built.
"""
from __future__ import annotations

import logging
import re
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterable, Iterator, Sequence

import numpy as np

from .. import imaging
from ..imaging import ImagingError

log = logging.getLogger(__name__)

KINDS = ("kaggle3m", "pairs", "dicom", "dicom-seg", "nifti")
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
        sequence = self.meta.get("sequence")
        return f"{self.source}:{self.file}#{self.index}" + (f"@{sequence}" if sequence else "")

    @property
    def tumour_area(self) -> int:
        return int(self.mask.sum())


def _check_pair(image: np.ndarray, mask: np.ndarray, what: str) -> None:
    if image.shape == mask.shape:
        return
    n_img, n_mask = (image.shape[0] if image.ndim == 3 else 1), (mask.shape[0] if mask.ndim == 3 else 1)
    if image.shape[-2:] != mask.shape[-2:]:
        raise SourceError(
            f"{what}: the image is {image.shape[-1]} x {image.shape[-2]} but its mask is "
            f"{mask.shape[-1]} x {mask.shape[-2]}; an image and its mask must have the same size."
        )
    raise SourceError(f"{what}: the image has {n_img} slices but its mask {n_mask}; they must have as many.")


# a mask with more distinct values than this is not a label map but a grey picture of one (lossy
# compression, interpolation): its tumour is what lies above half its maximum, not every non-zero pixel
MAX_LABEL_VALUES = 16
_LOSSY_EXT = (".jpg", ".jpeg")


def tumour_mask(values: np.ndarray, *, lossy: bool = False) -> np.ndarray:
    """The boolean tumour mask of a mask file's (or label volume's) values.

    A label map (0 and a few label values, as the corpora here and most segmentation tools write) is
    its non-zero pixels. A mask stored lossily (JPEG) or with more than ``MAX_LABEL_VALUES`` values
    (resized or anti-aliased) rings around its edges: there the tumour is the pixels above half the
    mask's maximum, so compression noise in the background does not grow the tumour.
    """
    arr = np.asarray(values)
    if not arr.size:
        return arr.astype(bool)
    finite = np.nan_to_num(arr.astype(np.float64), nan=0.0, posinf=0.0, neginf=0.0)
    if lossy or np.unique(finite).size > MAX_LABEL_VALUES:
        top = float(finite.max())
        return finite > top / 2.0 if top > 0 else np.zeros(arr.shape, dtype=bool)
    return finite > 0


def _is_lossy(path: Path) -> bool:
    return path.suffix.lower() in _LOSSY_EXT


MAX_LISTED = 20  # problems named one by one in a SourceError; the rest are counted


def _raise_problems(root: Path, problems: list[str]) -> None:
    """One SourceError naming every file of the corpus that cannot be read (the first ``MAX_LISTED``)."""
    if not problems:
        return
    more = f"\n- ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise SourceError(
        f"{root}: {len(problems)} problem{'s' if len(problems) != 1 else ''} in the corpus (nothing was built):\n- "
        + "\n- ".join(problems[:MAX_LISTED]) + more
    )


_TRAILING_NUMBER = re.compile(r"(\d+)$")


def _stack_positions(stems: dict[Path, str]) -> dict[Path, float | None]:
    """Each file's place in its folder's stack from the trailing numbers of the file names (0..1), where
    every file of the folder has one and there are at least 3 distinct; else None for all of the folder."""
    by_folder: dict[Path, list[Path]] = {}
    for f in stems:
        by_folder.setdefault(f.parent, []).append(f)
    out: dict[Path, float | None] = {}
    for files in by_folder.values():
        numbers = {f: _TRAILING_NUMBER.search(stems[f]) for f in files}
        values = sorted({int(m.group(1)) for m in numbers.values() if m})
        if any(m is None for m in numbers.values()) or len(values) < 3:
            out.update({f: None for f in files})
            continue
        lo, hi = values[0], values[-1]
        out.update({f: (int(numbers[f].group(1)) - lo) / (hi - lo) for f in files})
    return out


def _wanted(name: str, sequences: Sequence[str] | None) -> bool:
    """Whether a volume or series whose sequence is ``name`` is read (every one when ``sequences`` is None)."""
    return sequences is None or name.lower() in {s.lower() for s in sequences}


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


# the public LGG TIFFs' three channels, and the names --sequences also takes for them
KAGGLE_CHANNELS = {"pre-contrast": 0, "flair": 1, "post-contrast": 2}
_KAGGLE_ALIASES = {"t1": "pre-contrast", "t1ce": "post-contrast", "t1c": "post-contrast", "t1gd": "post-contrast"}


def _kaggle_channels(sequences: Sequence[str] | None) -> list[tuple[str | None, int]]:
    """(sequence name or None, channel) to read: FLAIR alone by default."""
    if sequences is None:
        return [(None, KAGGLE_CHANNELS["flair"])]
    out: list[tuple[str | None, int]] = []
    for name in sequences:
        key = _KAGGLE_ALIASES.get(name.lower(), name.lower())
        if key not in KAGGLE_CHANNELS:
            raise SourceError(f"--sequences {name}: the LGG TIFFs hold {', '.join(KAGGLE_CHANNELS)} (also named "
                              f"{', '.join(_KAGGLE_ALIASES)}).")
        if (key, KAGGLE_CHANNELS[key]) not in out:
            out.append((key, KAGGLE_CHANNELS[key]))
    return out


def _tiff_channels(path: Path) -> int:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        shape = tif.pages[0].shape
    return int(shape[-1]) if len(shape) == 3 and shape[-1] in (3, 4) else 1


def read_kaggle3m(root: str | Path, *, source: str | None = None,
                  sequences: Sequence[str] | None = None) -> list[SourceSlice]:
    """``sequences``: channels of the 3-channel TIFFs to read, each slice once per channel (``pre-contrast``,
    ``flair``, ``post-contrast``); default FLAIR (channel 1, or the only one)."""
    channels = _kaggle_channels(sequences)
    root = Path(root)
    base = _kaggle_root(root)
    source = source or (root.name if root.name != "kaggle_3m" else root.parent.name)
    out: list[SourceSlice] = []
    cases = sorted(p for p in base.iterdir() if p.is_dir()) if base.is_dir() else []
    problems: list[str] = []
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
            patient = "_".join(case.name.split("_")[:3]) if case.name.startswith("TCGA_") else case.name
            last = max(images) if len(images) > 1 else 2
            for sequence, channel in channels:
                try:
                    if channel != KAGGLE_CHANNELS["flair"] and _tiff_channels(images[n]) < 3:
                        problems.append(f"{_rel(images[n], base)}: one channel (FLAIR only); {sequence} needs the "
                                        "3-channel TIFFs (pre-contrast, FLAIR, post-contrast).")
                        continue
                    img = imaging.read_image(images[n], channel=channel).slices
                    msk = imaging.read_image(masks[n], channel=0).slices
                    _check_pair(img, msk, _rel(images[n], base))
                except SourceError as exc:
                    problems.append(str(exc))
                    continue
                except (ImagingError, OSError, ValueError) as exc:
                    problems.append(f"{_rel(images[n], base)} or its mask: {exc}")
                    continue
                meta = {"case": case.name, "slice": n}
                if sequence is not None:
                    meta["sequence"] = sequence
                out.append(
                    SourceSlice(
                        image=imaging.to_uint8(img[0]),
                        mask=tumour_mask(msk[0], lossy=_is_lossy(masks[n])),
                        patient_id=patient,
                        source=source,
                        file=_rel(images[n], root),
                        index=0,
                        meta=meta,
                        position=(n - min(images)) / max(last - min(images), 1),
                    )
                )
    _raise_problems(root, problems)
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
    loose = [img for img, _ in pairs if img.parent == root]
    if loose:
        _warn(
            f"{root}: {len(loose)} image{'s lie' if len(loose) != 1 else ' lies'} directly in the corpus folder "
            f"({_rel(loose[0], root)}{', ...' if len(loose) > 1 else ''}); each is taken as a patient of its own. "
            "Put each patient's slices in a folder of their own, or slices of one patient may land in both "
            "training and test."
        )
    positions = _stack_positions({img: img.stem for img, _ in pairs})
    out = []
    problems: list[str] = []
    for img_path, mask_path in pairs:
        try:
            img = imaging.read_image(img_path).slices
            msk = imaging.read_image(mask_path, channel=0).slices
            _check_pair(img, msk, _rel(img_path, root))
        except ImagingError as exc:
            problems.append(f"{_rel(img_path, root)} (mask {_rel(mask_path, root)}): {exc}")
            continue
        except SourceError as exc:
            problems.append(str(exc))
            continue
        rel = img_path.relative_to(root)
        patient = rel.parts[0] if len(rel.parts) > 1 else img_path.stem
        windowed = imaging.to_uint8(img)
        tumour = tumour_mask(msk, lossy=_is_lossy(mask_path))
        n = img.shape[0]
        for i in range(n):
            out.append(
                SourceSlice(
                    image=windowed[i], mask=tumour[i], patient_id=patient, source=source,
                    file=str(rel), index=i, position=i / (n - 1) if n > 1 else positions[img_path],
                )
            )
    _raise_problems(root, problems)
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
    tumour = tumour_mask(msk.slices)
    return [
        SourceSlice(windowed[i], tumour[i], patient, source, rel, i, {"series": image_series.name},
                    position=i / max(n - 1, 1))
        for i in range(n)
    ]


def read_dicom(root: str | Path, *, series: str | None = None, source: str | None = None,
               sequences: Sequence[str] | None = None) -> list[SourceSlice]:
    root = Path(root)
    base = root / "DICOM" if (root / "DICOM").is_dir() else root
    mask_dir = base / "ROI"
    if not mask_dir.is_dir():
        raise SourceError(f"{root}: no DICOM mask series (expected a folder ROI/ beside the image series).")
    candidates = [base / series] if series else sorted(
        p for p in base.iterdir() if p.is_dir() and p != mask_dir and _wanted(p.name, sequences))
    if not candidates:
        return []
    try:
        mask_shape = imaging.read_path(mask_dir).slices.shape
    except ImagingError as exc:
        raise SourceError(f"{mask_dir}: {exc}") from exc

    def size(shape) -> str:
        return f"{shape[0]} slices of {shape[2]} x {shape[1]}"

    seen = []
    for cand in candidates:
        if not cand.is_dir():
            raise SourceError(f"{cand}: no such DICOM series folder.")
        try:
            shape = imaging.read_path(cand).slices.shape
        except ImagingError as exc:
            raise SourceError(f"{cand}: {exc}") from exc
        if shape == mask_shape or series:
            return read_dicom_pair(cand, mask_dir, source=source or root.name, root=root)
        seen.append(f"{cand.name} {size(shape)}")
    raise SourceError(f"{root}: no image series has the mask series' size ({mask_dir.name} {size(mask_shape)}; "
                      f"{', '.join(seen)}): the mask must be drawn on the series it is read with.")


# --- DICOM series + DICOM SEG -------------------------------------------------------------------


def _dicom_headers(root: Path) -> Iterator[tuple[Path, object]]:
    """(file, header) of each DICOM file under ``root``, one at a time (pixels not read; other files skipped), so
    that a search for the first SEG stops there."""
    import pydicom
    from pydicom.errors import InvalidDicomError

    for f in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            ds = pydicom.dcmread(f, stop_before_pixels=True)
        except (InvalidDicomError, OSError, ValueError, EOFError):
            continue
        if "SOPClassUID" in ds or "Modality" in ds:
            yield f, ds


def read_dicom_seg(root: str | Path, *, source: str | None = None, sequences: Sequence[str] | None = None,
                   headers: list | None = None) -> list[SourceSlice]:
    """Image series with their tumour segmentations as DICOM SEG objects, anywhere under ``root`` (as TCIA
    distributes them, and as the portal and highdicom write them): each SEG is read with the series it references
    (by Series Instance UID), frame by frame through the source images' SOP Instance UIDs; every segment of the
    SEG is tumour. Patient = the series' Patient ID, else the first folder under ``root``. ``sequences``: only
    series whose Series Description, a word of it (``FLAIR`` of ``sT2W/FLAIR``) or whose folder is one of these."""
    import highdicom as hd

    root = Path(root)
    source = source or root.name
    headers = headers if headers is not None else list(_dicom_headers(root))
    segs = [(f, ds) for f, ds in headers if str(ds.get("Modality", "")) == "SEG"]
    series: dict[str, list[tuple[Path, object]]] = {}
    for f, ds in headers:
        if str(ds.get("Modality", "")) != "SEG":
            series.setdefault(str(ds.get("SeriesInstanceUID", "")), []).append((f, ds))
    out: list[SourceSlice] = []
    problems: list[str] = []
    for seg_file, seg_header in segs:
        what = _rel(seg_file, root)
        try:
            referenced = [str(item.SeriesInstanceUID) for item in seg_header.ReferencedSeriesSequence]
        except AttributeError:
            problems.append(f"{what}: a DICOM SEG that names no referenced series.")
            continue
        files = [pair for uid in referenced for pair in series.get(uid, [])]
        if not files:
            problems.append(f"{what}: the series it segments (Series Instance UID {referenced[0]}) is not in the "
                            "corpus.")
            continue
        description = str(files[0][1].get("SeriesDescription", "") or "")
        names = {description, files[0][0].parent.name, *re.split(r"[^A-Za-z0-9]+", description)}
        if sequences is not None and not any(_wanted(name, sequences) for name in names if name):
            continue
        try:
            volume = imaging.read_dicom_series([f for f, _ in files])
        except ImagingError as exc:
            problems.append(f"{_rel(files[0][0].parent, root)} (segmented by {what}): {exc}")
            continue
        uids = [item["sop_instance_uid"] for item in volume.metadata.get("instances", [])]
        if len(uids) != volume.n_slices:
            problems.append(f"{what}: its series holds multi-frame images; only single-frame series are read.")
            continue
        try:
            seg = hd.seg.segread(seg_file)
            pixels = seg.get_pixels_by_source_instance(uids, assert_missing_frames_are_empty=True)
        except (ValueError, RuntimeError, KeyError, AttributeError) as exc:
            problems.append(f"{what}: the segmentation cannot be read against its series ({exc}).")
            continue
        labels = np.asarray(pixels).max(axis=-1) if np.asarray(pixels).ndim == 4 else np.asarray(pixels)
        try:
            _check_pair(volume.slices, labels, f"{_rel(files[0][0].parent, root)} with {what}")
        except SourceError as exc:
            problems.append(str(exc))
            continue
        first = files[0][1]
        rel_parts = files[0][0].relative_to(root).parts
        patient = str(first.get("PatientID", "") or "") or (rel_parts[0] if len(rel_parts) > 1 else source)
        windowed = imaging.to_uint8(volume.slices)
        tumour = tumour_mask(labels)
        n = volume.n_slices
        rel = _rel(files[0][0].parent, root)
        out.extend(
            SourceSlice(windowed[i], tumour[i], patient, source, rel, i,
                        {"series": description or rel, "seg": what}, position=i / max(n - 1, 1))
            for i in range(n)
        )
    _raise_problems(root, problems)
    return out


# --- NIfTI volume + label volume ----------------------------------------------------------------


def read_nifti_pair(
    volume: str | Path, labels: str | Path, *, patient_id: str, source: str, root: Path | None = None,
    skip_blank: bool = True, skip_other_shapes: bool = False, label_volume: imaging.Volume | None = None,
) -> list[SourceSlice]:
    """One volume with its label volume; ``skip_other_shapes``: a volume of another shape than its labels (a
    4-D or differently sampled sequence beside them) is skipped with a warning instead of refused.
    ``label_volume``: ``labels`` already read (several sequences share one label volume)."""
    volume, labels = Path(volume), Path(labels)
    try:
        vol = imaging.read_path(volume)
        lab = label_volume if label_volume is not None else imaging.read_path(labels)
    except ImagingError as exc:
        raise SourceError(f"{_rel(volume, root) if root else volume} / {labels.name}: {exc}") from exc
    if skip_other_shapes and vol.slices.shape != lab.slices.shape:
        v, m = vol.slices.shape, lab.slices.shape
        _warn(f"{_rel(volume, root) if root else volume}: {v[0]} slices of {v[2]} x {v[1]}, its labels "
              f"{labels.name} {m[0]} of {m[2]} x {m[1]}; skipped.")
        return []
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
    tumour = tumour_mask(lab.slices)
    return [
        SourceSlice(windowed[i], tumour[i], patient_id, source, rel, i, {"volume": volume.name},
                    position=(i - first) / span)
        for i in kept
    ]


def _nifti_stem(p: Path) -> str:
    return p.name[:-7] if p.name.endswith(".nii.gz") else p.stem


def read_nifti(root: str | Path, *, source: str | None = None, sequences: Sequence[str] | None = None
               ) -> list[SourceSlice]:
    """``sequences``: read only volumes of these sequences (``flair``, ``t1ce``: the part of the name after
    ``_Scan_``, after a label volume's prefix, or BRAINIX's series name); None: every one."""
    root = Path(root)
    source = source or root.name
    out: list[SourceSlice] = []
    problems: list[str] = []
    # TCIA Brain-Tumor-Progression: <patient>/<tp>_Scan_<seq>.nii.gz + <tp>_Mask.nii.gz
    for vol in sorted(root.glob("*/*_Scan_*.nii*")):
        if not _wanted(_nifti_stem(vol).split("_Scan_", 1)[1], sequences):
            continue
        tp = vol.name.split("_Scan_")[0]
        labels = [p for p in vol.parent.glob(f"{tp}_Mask.nii*")]
        if not labels:
            _warn(f"{_rel(vol, root)}: no {tp}_Mask.nii.gz beside it; skipped.")
            continue
        try:
            out.extend(read_nifti_pair(vol, labels[0], patient_id=vol.parent.name, source=source, root=root))
        except SourceError as exc:
            problems.append(str(exc))
    _raise_problems(root, problems)
    if out:
        return out
    # BRAINIX-style: NIfTI/<series>.nii.gz + ROI.nii.gz in one folder
    base = root / "NIfTI" if (root / "NIfTI").is_dir() else root
    roi = [p for p in base.glob("ROI.nii*")]
    if roi:
        lshape = imaging.read_path(roi[0]).slices.shape
        for vol in sorted(p for p in base.glob("*.nii*") if p != roi[0] and _wanted(_nifti_stem(p), sequences)):
            if imaging.read_path(vol).slices.shape == lshape:
                return read_nifti_pair(vol, roi[0], patient_id=root.name, source=source, root=root)
    return _read_nifti_labelled(root, source, sequences)


# a label volume's name: <prefix>_seg, <prefix>-mask, <prefix>_label(s), <prefix>_roi, <prefix>_tumo(u)r, or the word alone
_LABEL_WORDS = r"seg|segmentation|mask|labels?|roi|tumou?r"
_LABEL_NAME = re.compile(rf"^(?:(?P<prefix>.+?)[_-])?(?:{_LABEL_WORDS})$", re.IGNORECASE)
_LABEL_WORD = re.compile(rf"(?:^|[_-])(?:{_LABEL_WORDS})(?:$|[_-])", re.IGNORECASE)


def _is_image_volume(stem: str) -> bool:
    """Not a label volume, nor named like one (``P_seg_edema``, ``P_mask-brain``: a map, not a scan)."""
    return _LABEL_NAME.match(stem) is None and _LABEL_WORD.search(stem) is None


def _has_prefix(stem: str, prefix: str) -> bool:
    """``P1_flair`` and ``P1`` have the prefix ``P1``; ``P10_flair`` has not."""
    return not prefix or stem == prefix or (stem.startswith(prefix) and stem[len(prefix)] in "_-")


def _read_nifti_labelled(root: Path, source: str, sequences: Sequence[str] | None = None) -> list[SourceSlice]:
    """Any other layout of volumes with a label volume beside them, as BraTS writes (``<patient>/<patient>_flair``,
    ``_t1``, ``_t1ce``, ``_t2`` and ``<patient>_seg.nii.gz``): in each patient folder (or the corpus folder
    itself), every volume whose name starts with a label volume's prefix is read with that label volume.
    Patient = the folder, or the prefix for volumes lying directly in the corpus folder."""
    out: list[SourceSlice] = []
    problems: list[str] = []
    folders = [root] + sorted(p for p in root.iterdir() if p.is_dir())
    for folder in folders:
        volumes = sorted(p for p in folder.iterdir() if p.is_file() and p.name.endswith(imaging.NIFTI_EXTENSIONS))
        labels = {v: _LABEL_NAME.match(_nifti_stem(v)) for v in volumes}
        for label, match in labels.items():
            if match is None:
                continue
            prefix = match.group("prefix") or ""
            images = [v for v in volumes if _is_image_volume(_nifti_stem(v)) and _has_prefix(_nifti_stem(v), prefix)]
            images = [v for v in images if _wanted(_nifti_stem(v)[len(prefix):].lstrip("_-"), sequences)]
            if sequences is not None and not images:
                continue
            if not images:
                _warn(f"{_rel(label, root)}: a label volume with no volume named {prefix or 'anything'}* beside it; "
                      "skipped.")
                continue
            patient = folder.name if folder != root else (prefix or root.name)
            try:
                label_volume = imaging.read_path(label)
            except ImagingError as exc:
                problems.append(f"{_rel(label, root)}: {exc}")
                continue
            for vol in images:
                try:
                    out.extend(read_nifti_pair(vol, label, patient_id=patient, source=source, root=root,
                                               skip_other_shapes=True, label_volume=label_volume))
                except SourceError as exc:
                    problems.append(str(exc))
    _raise_problems(root, problems)
    return out


# --- Dispatch -----------------------------------------------------------------------------------


def detect_kind(path: Path) -> str:
    if (path / "kaggle_3m").is_dir() or any(_is_kaggle_mask(f) for f in path.glob("*/*_mask.tif*")):
        return "kaggle3m"
    if (path / "DICOM" / "ROI").is_dir() or (path / "ROI").is_dir():
        return "dicom"
    if any(path.glob("*.nii*")) or any(path.glob("*/*.nii*")):
        return "nifti"
    if not any(p.suffix.lower() in _IMAGE_EXT for p in path.rglob("*") if p.is_file()) and any(
            str(ds.get("Modality", "")) == "SEG" for _, ds in _dicom_headers(path)):
        return "dicom-seg"
    return "pairs"


def _is_kaggle_mask(f: Path) -> bool:
    """``<case>/<case>_<n>_mask.tif``: a TIFF mask named after its case folder and slice number."""
    m = _KAGGLE_SLICE.match(f.name)
    return bool(m and m.group("mask") and m.group("case") == f.parent.name)


def parse_source(spec: str) -> tuple[str | None, Path]:
    """``KIND:PATH`` or ``PATH``."""
    kind, sep, rest = spec.partition(":")
    if sep and kind in KINDS:
        return kind, Path(rest)
    return None, Path(spec)


def read_source(spec: str | Path, *, mask_pattern: str = "{stem}_mask",
                sequences: Sequence[str] | None = None) -> list[SourceSlice]:
    """All slices of one corpus, ``spec`` = ``PATH`` (layout detected) or ``KIND:PATH``. Raises SourceError.
    ``sequences``: only these sequences of a NIfTI or DICOM corpus (see ``read_nifti``; DICOM: series folders)."""
    kind, path = parse_source(str(spec))
    if not path.exists():
        raise SourceError(f"{path}: no such file or folder.")
    if not path.is_dir():
        raise SourceError(f"{path}: a source must be a folder (a corpus), not a single file.")
    kind = kind or detect_kind(path)
    if sequences is not None and kind not in ("kaggle3m", "nifti", "dicom", "dicom-seg"):
        raise SourceError(f"{path}: --sequences chooses among the volumes of a NIfTI or DICOM corpus or the "
                          f"channels of the LGG TIFFs; this one is read as '{kind}', one sequence per corpus (leave "
                          "--sequences out, or give a sub-folder).")
    if kind == "kaggle3m":
        slices = read_kaggle3m(path, sequences=sequences)
    elif kind == "dicom":
        slices = read_dicom(path, sequences=sequences)
    elif kind == "dicom-seg":
        slices = read_dicom_seg(path, sequences=sequences)
    elif kind == "nifti":
        slices = read_nifti(path, sequences=sequences)
    else:
        slices = read_pairs(path, mask_pattern=mask_pattern)
    if not slices:
        chosen = f" of the sequences {', '.join(sequences)}" if sequences is not None else ""
        raise SourceError(
            f"{path}: no image{chosen} with a mask was found (read as '{kind}'). Expected one of the layouts in "
            f"inference/ml/dataset/readers.py; name the layout with KIND:PATH ({', '.join(KINDS)})."
        )
    return slices


def read_sources(specs: Iterable[str | Path], **kwargs) -> list[SourceSlice]:
    out: list[SourceSlice] = []
    for spec in specs:
        out.extend(read_source(spec, **kwargs))
    return out
