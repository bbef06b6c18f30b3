"""Header checks of a DICOM series: do its files look like one acquisition, written once? No Django.

The detector reads the pixels. The headers are a second, independent witness: a slice that was edited and saved
again by another program, copied in from another series, patient or day, or written with pixel values its own
header says cannot exist, often leaves traces there. ``check_series`` compares the files of one series with each
other and reports what does not fit, each finding with the slices it concerns:

- ``writer`` (warning): the files were last written by different programs (file meta Implementation Class UID and
  Version Name). A scanner or PACS writes a whole series with one program.
- ``uid`` (warning): the SOP Instance UIDs come from different organisations' roots (the first four components),
  repeat, or disagree with the file meta's Media Storage SOP Instance UID: a file was given a new identity, or
  its identity was edited without its file meta.
- ``identity`` (warning): the patient (compared, never stored or shown), study, frame of reference, scanner,
  station, institution or scanner software differ between files.
- ``acquisition``: what one acquisition shares differs between files: series description, protocol, sequence,
  field strength, pixel spacing, thickness, orientation, bit depth (warning); TR / TE / TI or flip angle (notice:
  a multi-echo or multi-TI series legitimately mixes them).
- ``time`` (warning): a file was created, or its content dated, more than ``TIME_TOLERANCE`` away from the rest
  of the series.
- ``position`` (warning / notice): two files at the same position in one acquisition (warning); a gap in the
  slice spacing larger than ``GAP_FACTOR`` x the usual spacing, or repeated instance numbers (notice).
- ``bits`` (warning): stored pixel values above what Bits Stored allows. Viewers mask them and show other values
  than the file holds; scanners never write them.
- ``derived`` (notice): Image Type says DERIVED or SECONDARY: processed, not as acquired.
- ``lossy`` (notice): Lossy Image Compression (0028,2110) is 01.
- ``elements`` (notice): some files carry a different set of data elements from the rest.

Honest limits: a program that edits only the pixels and saves the file back with its header (pydicom's
``save_as`` keeps the file meta, the UIDs and the times) leaves nothing here, and a series that was anonymised,
converted or exported by a PACS can carry notices without any tampering. A clean header is not evidence that
the pixels are authentic; a warning is evidence that the files were not left as the scanner wrote them.
"""
from __future__ import annotations

import re
from collections import Counter
from datetime import datetime, timedelta

import numpy as np

VERSION = 1
TIME_TOLERANCE = timedelta(hours=1)
GAP_FACTOR = 1.5
POSITION_TOLERANCE_MM = 0.01
UID_ROOT_COMPONENTS = 4
UNCOMPRESSED_SYNTAXES = {"1.2.840.10008.1.2", "1.2.840.10008.1.2.1", "1.2.840.10008.1.2.2", "1.2.840.10008.1.2.1.99"}

# (keyword, label, shown): identity attributes; values are shown only where `shown` (never a patient's or a UID)
PATIENT = ("PatientID", "PatientName", "PatientBirthDate")  # compared together, never stored or shown
IDENTITY = (
    ("StudyInstanceUID", "study", False),
    ("FrameOfReferenceUID", "frame of reference", False), ("Manufacturer", "manufacturer", True),
    ("ManufacturerModelName", "scanner model", True), ("DeviceSerialNumber", "scanner serial number", False),
    ("StationName", "station name", False), ("InstitutionName", "institution", False),
    ("SoftwareVersions", "scanner software", True),
)
# (keyword, label, severity): what one acquisition shares. Timing parameters may legitimately vary inside one
# series (multi-echo, multi-TI): notices; the rest cannot: warnings.
ACQUISITION = (
    ("SeriesDescription", "series description", "warning"), ("ProtocolName", "protocol", "warning"),
    ("ScanningSequence", "scanning sequence", "warning"), ("MagneticFieldStrength", "field strength", "warning"),
    ("PixelSpacing", "pixel spacing", "warning"), ("SliceThickness", "slice thickness", "warning"),
    ("ImageOrientationPatient", "orientation", "warning"), ("BitsStored", "bits stored", "warning"),
    ("PhotometricInterpretation", "photometric interpretation", "warning"),
    ("RepetitionTime", "repetition time (TR)", "notice"), ("EchoTime", "echo time (TE)", "notice"),
    ("InversionTime", "inversion time (TI)", "notice"), ("FlipAngle", "flip angle", "notice"),
)
TIMES = (("InstanceCreationDate", "InstanceCreationTime", "created"), ("ContentDate", "ContentTime", "content dated"))


def _finding(check: str, severity: str, message: str, slices: list[int] | None = None) -> dict:
    return {"check": check, "severity": severity, "message": message, "slices": sorted(set(slices or []))}


def _norm(value) -> str | None:
    """A comparable text form of an element's value: numbers rounded, multi-values joined; None if absent."""
    if value is None or value == "":
        return None
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return "\\".join(_norm(v) or "" for v in value)
    try:
        number = float(value)
    except (TypeError, ValueError):
        return str(value).strip()
    if not np.isfinite(number):
        return str(value)
    return f"{round(number, 3) + 0.0:g}"  # to a thousandth (orientation cosines near 0 differ in noise); no -0


def _distinct(value) -> str | None:
    """Multi-valued text compared as its distinct entries: scanners repeat Software Versions a varying number of
    times from one slice to the next (seen in the BRAINIX series)."""
    if hasattr(value, "__iter__") and not isinstance(value, (str, bytes)):
        return "\\".join(sorted({str(v).strip() for v in value})) or None
    return _norm(value)


def _short(text, limit: int = 40) -> str:
    text = str(text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _slices_text(slices: list[int]) -> str:
    """0-based indices as the 1-based slice numbers the viewer shows, ranges joined ("slices 3-5, 9")."""
    numbers = sorted({s + 1 for s in slices})
    if not numbers:
        return ""
    runs, start, prev = [], numbers[0], numbers[0]
    for n in numbers[1:] + [None]:
        if n is not None and n == prev + 1:
            prev = n
            continue
        runs.append(f"{start}" if start == prev else f"{start}-{prev}")
        if n is not None:
            start = prev = n
    return ("slice " if len(numbers) == 1 else "slices ") + ", ".join(runs)


def _minority(values: list[str | None]) -> tuple[str | None, list[int]]:
    """The majority value and the positions (into ``values``) of the files that differ from it."""
    majority = Counter(values).most_common(1)[0][0]
    return majority, [i for i, v in enumerate(values) if v != majority]


def _parse_datetime(date, time) -> datetime | None:
    date, time = str(date or "").strip(), str(time or "").strip()
    if not re.fullmatch(r"\d{8}", date):
        return None
    match = re.fullmatch(r"(\d{2})(\d{2})?(\d{2})?(?:\.(\d{1,6}))?", time.replace(":", ""))
    if not match:
        return None
    hh, mm, ss, frac = match.groups()
    try:
        return datetime(int(date[:4]), int(date[4:6]), int(date[6:]), int(hh), int(mm or 0), int(ss or 0),
                        int((frac or "0").ljust(6, "0")))
    except ValueError:
        return None


def _duration(delta: timedelta) -> str:
    minutes = int(abs(delta).total_seconds() // 60)
    if minutes >= 2 * 24 * 60:
        return f"{minutes // (24 * 60)} days"
    return f"{minutes // 60} h {minutes % 60:02d} min" if minutes >= 60 else f"{minutes} min"


def _writer(ds) -> tuple[str, str]:
    meta = getattr(ds, "file_meta", None)
    uid = str(meta.get("ImplementationClassUID", "") or "") if meta is not None else ""
    name = str(meta.get("ImplementationVersionName", "") or "").strip() if meta is not None else ""
    return name or "unnamed program", uid


def _stored_bits_overflow(ds) -> bool:
    """Whether an uncompressed 16-bit instance stores values outside what Bits Stored allows."""
    meta = getattr(ds, "file_meta", None)
    syntax = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    try:
        allocated, stored = int(ds.BitsAllocated), int(ds.BitsStored)
        signed = int(getattr(ds, "PixelRepresentation", 0) or 0) == 1
    except (AttributeError, TypeError, ValueError):
        return False
    if syntax not in UNCOMPRESSED_SYNTAXES or allocated != 16 or not 0 < stored < 16 or "PixelData" not in ds:
        return False
    order = ">" if syntax == "1.2.840.10008.1.2.2" else "<"
    raw = ds.PixelData
    raw = np.frombuffer(raw[: len(raw) // 2 * 2], dtype=f"{order}{'i2' if signed else 'u2'}")
    if signed:
        low, high = -(1 << (stored - 1)), (1 << (stored - 1)) - 1
        return bool(raw.size) and bool((raw.min() < low) | (raw.max() > high))
    return bool(raw.size) and bool(raw.max() >> stored)


def check_series(datasets: list, positions: list[float | None] | None = None,
                 frames_per_file: list[int] | None = None) -> dict:
    """Compare the files of one series, in display order. ``positions``: each file's position along the slice
    normal (None where unknown); ``frames_per_file``: how many slices each file holds (1 each by default).

    Returns ``{"version", "files", "writers", "findings", "warnings", "notices", "status", "message"}``,
    JSON-ready and free of patient identifiers; each finding lists the 0-based slices it concerns."""
    n = len(datasets)
    frames_per_file = frames_per_file or [1] * n
    starts = np.concatenate([[0], np.cumsum(frames_per_file)[:-1]]).astype(int).tolist()

    def slices_of(files: list[int]) -> list[int]:
        return [s for i in files for s in range(starts[i], starts[i] + frames_per_file[i])]

    findings: list[dict] = []
    writers_seen = [_writer(ds) for ds in datasets]
    writer_counts = Counter(writers_seen)
    writers = [{"name": name, "uid": uid, "files": count} for (name, uid), count in writer_counts.most_common()]

    if len(writer_counts) > 1:
        major, odd = _minority(writers_seen)
        same_name = any(writers_seen[i][0] == major[0] for i in odd)  # one name, two implementations: say the UIDs

        def label(writer: tuple[str, str]) -> str:
            return f"{writer[0]} {writer[1]}".strip() if same_name else writer[0]

        others = ", ".join(sorted({label(writers_seen[i]) for i in odd}))
        findings.append(_finding(
            "writer", "warning",
            f"{len(odd)} of {n} files were last written by a different program ({others}) from the rest "
            f"({label(major)}, {writer_counts[major]} files), at {_slices_text(slices_of(odd))}: they were saved "
            "again after the series was made.", slices_of(odd)))

    # identities: roots of the SOP Instance UIDs, repeats, and agreement with the file meta
    uids = [str(ds.get("SOPInstanceUID", "") or "") for ds in datasets]
    roots = [".".join(u.split(".")[:UID_ROOT_COMPONENTS]) if u else None for u in uids]
    if n > 1 and len(set(roots)) > 1:
        major, odd = _minority(roots)
        findings.append(_finding(
            "uid", "warning",
            f"{len(odd)} of {n} files have instance UIDs from another organisation's root "
            f"({', '.join(sorted({str(roots[i]) for i in odd}))} against {major}), at "
            f"{_slices_text(slices_of(odd))}: they were given new identities by other software.", slices_of(odd)))
    repeated = [i for i, u in enumerate(uids) if u and uids.count(u) > 1]
    if repeated:
        findings.append(_finding(
            "uid", "warning", f"{len(repeated)} files share an instance UID with another file, at "
            f"{_slices_text(slices_of(repeated))}: one image was copied or replaced.", slices_of(repeated)))
    meta_mismatch = []
    for i, ds in enumerate(datasets):
        meta = getattr(ds, "file_meta", None)
        media = str(meta.get("MediaStorageSOPInstanceUID", "") or "") if meta is not None else ""
        if media and uids[i] and media != uids[i]:
            meta_mismatch.append(i)
    if meta_mismatch:
        findings.append(_finding(
            "uid", "warning", f"{len(meta_mismatch)} file{'s name' if len(meta_mismatch) > 1 else ' names'} a different "
            f"instance in the file meta than in the data set, at {_slices_text(slices_of(meta_mismatch))}: the "
            "identity was edited without the file meta.", slices_of(meta_mismatch)))

    if n > 1:
        patients = [tuple(_norm(ds.get(k)) for k in PATIENT) for ds in datasets]
        if len(set(patients)) > 1:
            _, odd = _minority(patients)
            findings.append(_finding(
                "identity", "warning", f"{len(odd)} of {n} files name another patient (name, ID or birth date), at "
                f"{_slices_text(slices_of(odd))}: they do not come from the same scan as the rest.", slices_of(odd)))
        for keyword, label, shown in IDENTITY:
            values = [_distinct(ds.get(keyword)) for ds in datasets]
            if len(set(values)) <= 1:
                continue
            major, odd = _minority(values)
            detail = (f" ({', '.join(sorted({_short(values[i]) for i in odd}))} against {_short(major)})"
                      if shown else "")
            findings.append(_finding(
                "identity", "warning", f"{len(odd)} of {n} files name a different {label}{detail}, at "
                f"{_slices_text(slices_of(odd))}: they do not come from the same acquisition as the rest.",
                slices_of(odd)))
        for keyword, label, severity in ACQUISITION:
            values = [_norm(ds.get(keyword)) for ds in datasets]
            if len(set(values)) <= 1:
                continue
            major, odd = _minority(values)
            findings.append(_finding(
                "acquisition", severity, f"{len(odd)} of {n} files have another {label} "
                f"({', '.join(sorted({_short(values[i]) for i in odd}))} against {_short(major)}), at "
                f"{_slices_text(slices_of(odd))}.", slices_of(odd)))

    # times: each file against the series' median
    if n >= 3:
        for date_kw, time_kw, verb in TIMES:
            stamps = [_parse_datetime(ds.get(date_kw), ds.get(time_kw)) for ds in datasets]
            known = sorted(s for s in stamps if s is not None)
            if len(known) < 3:
                continue
            median = known[len(known) // 2]
            odd = [i for i, s in enumerate(stamps) if s is not None and abs(s - median) > TIME_TOLERANCE]
            if odd:
                worst = max((stamps[i] - median for i in odd), key=lambda d: abs(d))
                side = "after" if worst > timedelta(0) else "before"
                findings.append(_finding(
                    "time", "warning", f"{len(odd)} of {n} files were {verb} up to {_duration(worst)} {side} the "
                    f"rest of the series, at {_slices_text(slices_of(odd))}.", slices_of(odd)))

    # positions along the slice normal (files in display order)
    if positions and n > 1 and all(k == 1 for k in frames_per_file):
        echo = [_norm(ds.get("EchoTime")) for ds in datasets]
        same = [i for i in range(1, n) if positions[i] is not None and positions[i - 1] is not None
                and abs(positions[i] - positions[i - 1]) < POSITION_TOLERANCE_MM and echo[i] == echo[i - 1]]
        if same:
            files = sorted({j for i in same for j in (i - 1, i)})
            findings.append(_finding(
                "position", "warning", f"{len(files)} files lie at the same position as another file of the same "
                f"acquisition, at {_slices_text(slices_of(files))}: an image was duplicated or replaced.",
                slices_of(files)))
        known = [p for p in positions if p is not None]
        steps = np.abs(np.diff(sorted(set(round(p, 3) for p in known))))
        if steps.size >= 2:
            usual = float(np.median(steps))
            ordered = sorted(set(round(p, 3) for p in known))
            gaps = [k for k, step in enumerate(steps) if usual > 0 and step > GAP_FACTOR * usual]
            if gaps:
                where = "; ".join(f"{ordered[k]:.1f} to {ordered[k + 1]:.1f} mm" for k in gaps[:5])
                findings.append(_finding(
                    "position", "notice", f"The slice spacing is usually {usual:.2f} mm but jumps {len(gaps)} "
                    f"time{'s' if len(gaps) > 1 else ''} ({where}): slices may be missing from the upload.", []))
    numbers = [_norm(ds.get("InstanceNumber")) for ds in datasets]
    repeats = [i for i, v in enumerate(numbers) if v is not None and numbers.count(v) > 1]
    if repeats:
        findings.append(_finding(
            "position", "notice", f"{len(repeats)} files repeat another file's instance number, at "
            f"{_slices_text(slices_of(repeats))}.", slices_of(repeats)))

    overflow = [i for i, ds in enumerate(datasets) if _stored_bits_overflow(ds)]
    if overflow:
        bits = _norm(datasets[overflow[0]].get("BitsStored"))
        findings.append(_finding(
            "bits", "warning", f"{len(overflow)} of {n} files store pixel values above what their header allows "
            f"(Bits Stored {bits}), at {_slices_text(slices_of(overflow))}: the pixels were written by software "
            "that ignored the header, and viewers show other values than the file holds.", slices_of(overflow)))

    derived = [i for i, ds in enumerate(datasets)
               if {"DERIVED", "SECONDARY"} & {str(v).upper() for v in (ds.get("ImageType") or [])}]
    if derived:
        findings.append(_finding(
            "derived", "notice", f"{len(derived)} of {n} files say they are derived or secondary images "
            f"(Image Type), not as acquired, at {_slices_text(slices_of(derived))}.", slices_of(derived)))
    lossy = [i for i, ds in enumerate(datasets) if str(ds.get("LossyImageCompression", "") or "").strip() == "01"]
    if lossy:
        findings.append(_finding(
            "lossy", "notice", f"{len(lossy)} of {n} files say they went through lossy compression, at "
            f"{_slices_text(slices_of(lossy))}.", slices_of(lossy)))

    if n > 1:
        sets = [frozenset(e.keyword or str(e.tag) for e in ds if e.tag.group not in (0x7FE0,)) for ds in datasets]
        major_set, odd = _minority(sets)
        if odd:
            added = sorted(set().union(*(sets[i] - major_set for i in odd)))
            missing = sorted(set().union(*(major_set - sets[i] for i in odd)))
            parts = ([f"adding {', '.join(added[:5])}{' and more' if len(added) > 5 else ''}"] if added else []) + (
                [f"lacking {', '.join(missing[:5])}{' and more' if len(missing) > 5 else ''}"] if missing else [])
            findings.append(_finding(
                "elements", "notice", f"{len(odd)} of {n} files carry other data elements than the rest "
                f"({'; '.join(parts)}), at {_slices_text(slices_of(odd))}.", slices_of(odd)))

    n_warn = sum(f["severity"] == "warning" for f in findings)
    n_note = len(findings) - n_warn
    by = ", ".join(f"{w['name']}" for w in writers)
    if n_warn:
        status = "warnings"
        message = (f"The headers of {n} file{'s' if n > 1 else ''} show {n_warn} sign{'s' if n_warn > 1 else ''} that "
                   "files were edited, replaced or mixed in after the scan was made. Compare with the copy in the "
                   "hospital's archive.")
    elif n_note:
        status = "notices"
        message = (f"The headers of {n} files raise {n_note} note{'s' if n_note > 1 else ''}: differences that "
                   "have innocent causes (a multi-echo series, an export, a gap in the upload) as often as not.")
    elif n == 1:
        status = "single"
        message = f"One file (written by {by}): its header cannot be compared with other slices'."
    else:
        status = "consistent"
        message = f"The {n} files' headers agree with one acquisition, written by one program ({by})."
    return {"version": VERSION, "files": n, "writers": writers, "findings": findings, "warnings": n_warn,
            "notices": n_note, "status": status, "message": message}
