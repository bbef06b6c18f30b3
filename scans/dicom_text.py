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
