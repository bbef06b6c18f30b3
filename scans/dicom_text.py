"""DICOM attribute values in the words a reader expects (the stored metadata keeps the values as the file gave
them). Each function returns the value unchanged when it is not in the DICOM form it expects."""
from __future__ import annotations

import re
from datetime import date

AGE_UNITS = {"D": ("day", "days"), "W": ("week", "weeks"), "M": ("month", "months"), "Y": ("year", "years")}
SEX_CODES = {"M": "Male", "F": "Female", "O": "Other"}


def study_date(value) -> str:
    """DA "20061201" -> "2006-12-01"; anything else (or an impossible date) as given."""
    text = str(value).strip()
    if re.fullmatch(r"\d{8}", text):
        try:
            return date(int(text[:4]), int(text[4:6]), int(text[6:])).isoformat()
        except ValueError:
            pass
    return text


def patient_age(value) -> str:
    """AS "045Y" -> "45 years", "006M" -> "6 months", "001W" -> "1 week"; anything else as given."""
    text = str(value).strip()
    match = re.fullmatch(r"(\d{3})([DWMY])", text.upper())
    if not match:
        return text
    n = int(match.group(1))
    one, many = AGE_UNITS[match.group(2)]
    return f"{n} {one if n == 1 else many}"


def patient_sex(value) -> str:
    """CS "M" / "F" / "O" -> "Male" / "Female" / "Other"; another value (not a DICOM code) as given, marked."""
    text = str(value).strip()
    if text.upper() in SEX_CODES:
        return SEX_CODES[text.upper()]
    return f"{text} (not a DICOM sex code)" if text else text


def series_text(metadata: dict) -> str:
    """What the file says of its series, to match the report to the study in a PACS: "sT2W/FLAIR, MR, study date
    2006-12-01" (the parts present; "" when none is)."""
    parts = [str(metadata.get("series_description") or "").strip(), str(metadata.get("modality") or "").strip()]
    if metadata.get("study_date"):
        parts.append(f"study date {study_date(metadata['study_date'])}")
    return ", ".join(p for p in parts if p)


HEADER_LIMITS = ("Header checks compare a series' files with each other. A program that edits only the pixels and "
                 "saves the file back with its header leaves nothing here: a clean header does not make the pixels "
                 "authentic; the detector reads the pixels.")


def header_checks_text(scan_kind: str, metadata: dict) -> str:
    """The DICOM header checks (``inference.ml.provenance``) in a few words: "consistent (22 files, one program:
    OSIRIX)", "2 signs of editing", ...; "" for a scan that has no DICOM header."""
    if scan_kind != "dicom":
        return ""
    checks = metadata.get("header_checks")
    if not checks:
        return "not checked (uploaded before the portal checked DICOM headers)"
    writers = ", ".join(w.get("name", "") for w in checks.get("writers") or [])
    warnings, notices = checks.get("warnings", 0), checks.get("notices", 0)
    origin = metadata.get("origin") or {}
    if origin.get("pacs") or origin.get("received"):
        # DICOM networking carries no file meta: the portal wrote it on receipt, for every file alike.
        writers = (f"this portal, on receipt {'from the PACS' if origin.get('pacs') else 'over DICOM'}: which program "
                   "saved the files before cannot be seen")
    return {
        "consistent": f"consistent ({checks.get('files')} files, one program: {writers})",
        "single": f"one file, written by {writers}: nothing to compare it with",
        "notices": f"{notices} note{'s' if notices != 1 else ''}, no sign of editing",
        "warnings": (f"{warnings} sign{'s' if warnings != 1 else ''} of editing"
                     + (f" and {notices} note{'s' if notices != 1 else ''}" if notices else "")),
    }.get(checks.get("status"), checks.get("message", "not checked"))


def origin_text(metadata: dict) -> tuple[str, str]:
    """How the scan came in, for the scan page and the report: ("Imported", "from the PACS ORTHANC@host:4242"),
    ("Received", "over DICOM from ORTHANC at 10.0.0.5") or ("Uploaded", "")."""
    origin = (metadata or {}).get("origin") or {}
    if origin.get("pacs"):
        return "Imported", f"from the PACS {origin['pacs']}"
    if received := origin.get("received"):
        address = f" at {received['address']}" if received.get("address") else ""
        return "Received", f"over DICOM from {received.get('calling_ae', '?')}{address}"
    return "Uploaded", ""


def header_warnings_by_slice(metadata: dict) -> dict[int, list[str]]:
    """The header checks' warnings by the 0-based slice they name, for the viewer to show beside each slice."""
    by_slice: dict[int, list[str]] = {}
    for finding in (metadata.get("header_checks") or {}).get("findings", []):
        if finding.get("severity") == "warning":
            for index in finding.get("slices", []):
                by_slice.setdefault(int(index), []).append(finding["message"])
    return by_slice


def slices_text(indices: list[int]) -> str:
    """[3, 4, 5, 9] -> "slices 4-6, 10" (numbered from 1, as on the page)."""
    runs: list[list[int]] = []
    for index in indices:
        if runs and index == runs[-1][1] + 1:
            runs[-1][1] = index
        else:
            runs.append([index, index])
    listed = ", ".join(str(a + 1) if a == b else f"{a + 1}-{b + 1}" for a, b in runs)
    return f"slice{'s' if len(indices) != 1 else ''} {listed}"


def pacs_comparison_matches(comparison: dict) -> bool:
    return not comparison.get("altered_slices") and not comparison.get("missing_slices")


def pacs_comparison_text(comparison: dict) -> str:
    """A comparison with the PACS's copy (scans.services.scan_compare_with_pacs) in words."""
    n, same = comparison.get("instances", 0), comparison.get("same", 0)
    where = f"the PACS {comparison.get('destination', '')}"
    parts = []
    lossy = comparison.get("lossy_slices")
    if pacs_comparison_matches(comparison) and not lossy:
        parts.append(f"All {n} image{'s' if n != 1 else ''} have the same pixels as in {where}.")
    else:
        parts.append(f"{same} of {n} image{'s' if n != 1 else ''} have the same pixels as in {where}.")
        if altered := comparison.get("altered_slices"):
            parts.append(f"{slices_text(altered).capitalize()} {'has' if len(altered) == 1 else 'have'} other pixels "
                         "than the PACS's copy of the same instance: one of the two was altered.")
        if lossy:
            parts.append(f"{slices_text(lossy).capitalize()} {'differs' if len(lossy) == 1 else 'differ'} from the "
                         "PACS's copy, but one of the two copies was lossily compressed (JPEG), which changes pixels: "
                         "there the comparison can neither show nor rule out an edit.")
        if comparison.get("missing_slices"):
            parts.append(f"The PACS does not hold {slices_text(comparison['missing_slices'])} (no instance with "
                         "that UID in the series).")
    if comparison.get("extra_in_pacs"):
        extra = comparison["extra_in_pacs"]
        parts.append(f"The PACS holds {extra} more instance{'s' if extra != 1 else ''} of the series than the scan.")
    return " ".join(parts)


# The label map's values (inference: 1 real_tumor, 2 fake_added, 3 fake_removed) in the words of the change texts.
REGION_WORDS = {1: "real tumour", 2: "added tumour", 3: "removed tumour"}


def change_text(region: dict, coverage: tuple[float, int | None] | None = None) -> str:
    """Where two versions of one image differ (inference.ml.imaging.changed_regions' entry) in words, and, for a
    local change with a finished analysis, how much of it the detector's regions cover (``coverage``: the share of
    the changed pixels inside them and the label value covering most, scans.selectors.slice_changes_for)."""
    if region.get("pixels") is None:
        a, b = region.get("sizes") or [[0, 0], [0, 0]]
        return (f"the two copies have other sizes ({a[1]} × {a[0]} px here, {b[1]} × {b[0]} px there): compared by "
                "their digests only")
    n = region["pixels"]
    if not n:
        return "no pixel value differs: the same values, stored in another data type"
    share = f"{region['fraction'] * 100:.1f} %" if region["fraction"] >= 0.001 else "under 0.1 %"
    if region.get("spread"):
        return (f"{share} of the pixels differ, across the image (by up to {region['max_difference']}): a change "
                "of the whole image (contrast, scaling, re-encoding), not of one place")
    x, y, w, h = region["box"]
    text = (f"{n} pixel{'s' if n != 1 else ''} differ{'s' if n == 1 else ''} ({share} of the image) within x {x}-"
            f"{x + w - 1}, y {y}-{y + h - 1} (a {w} × {h} px box, counted from the top left corner), by up to "
            f"{region['max_difference']}")
    if coverage is not None:
        covered, label = coverage
        if covered <= 0:
            text += "; the detector shows no region there"
        else:
            text += (f"; the detector's {REGION_WORDS.get(label, 'region')} region covers "
                     f"{covered * 100:.0f} % of them")
    return text
