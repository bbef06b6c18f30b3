"""Which MRI sequence a scan is, and whether the detector was trained on it. No Django.

The detector learned from FLAIR (TCGA-LGG) and T1 post-contrast (TCIA) only. On sequences it never saw it raises
false alarms (an unseen hospital's authentic T1 and T2 series, BRAINIX: 0.9.0 flags 3 and 19 of 22 slices, earlier
models 5 to 21), so the portal and `detect` say when a scan is outside what it was trained on.

The sequence is read from the DICOM acquisition parameters where there are any (inversion, repetition and echo
times; the contrast agent, which DICOM requires for MR when contrast was given), else from the series description,
protocol name or file name. A NIfTI or a plain image usually carries neither, so the answer is often "unknown":
that is said, never guessed.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass

TRAINED_SEQUENCES = ("flair", "t1_post_contrast")
# what an uploader may state for a file that does not say (a PNG, most NIfTI); "other": none of these
DECLARABLE = ("flair", "t1_post_contrast", "t1", "t2", "other")
LABELS = {
    "flair": "FLAIR",
    "t1_post_contrast": "T1 post-contrast",
    "t1": "T1 without contrast",
    "t1_unconfirmed": "T1 (contrast not recorded)",
    "t2": "T2",
    "stir": "STIR",
    "proton_density": "proton density",
    "diffusion": "diffusion (DWI/ADC)",
    "susceptibility": "susceptibility / T2*",
    "other": "another sequence",
    "unknown": "unknown",
}

# Thresholds (ms) of the usual clinical weightings at 1.5 and 3 T.
FLAIR_MIN_TI = 1500.0  # FLAIR nulls fluid: TI 1800-2800
STIR_MAX_TI = 400.0  # STIR nulls fat: TI 100-250; TI in between is a T1-weighted IR (MPRAGE, T1-FLAIR)
T1_MAX_TR, T1_MAX_TE = 1000.0, 30.0
T2_MIN_TR, T2_MIN_TE = 2000.0, 60.0

_CONTRAST = re.compile(r"(\+\s*c\b|\bc\s*\+|gad|\bgd\b|gado|contrast|\bt1c\b|t1ce|t1gd|t1\s*post|\bce\b|\bkm\b)")
_TEXT_RULES = (  # first match wins; order matters (FLAIR names often contain "T2")
    ("flair", re.compile(r"flair|\bdark[\s_-]*fluid")),
    ("diffusion", re.compile(r"\bdwi\b|\badc\b|diffusion|\btrace\b|\bdti\b|\bep2d_diff")),
    ("susceptibility", re.compile(r"\bswi\b|\bswan\b|t2\s*\*|t2star|\bhemo")),
    ("stir", re.compile(r"\bstir\b")),
    ("proton_density", re.compile(r"\bpd\b|proton")),
    ("t2", re.compile(r"t2")),
    ("t1", re.compile(r"t1|mprage|spgr|bravo|\btfl\b")),
)


@dataclass(frozen=True)
class SequenceCheck:
    sequence: str  # a key of LABELS
    label: str
    trained: bool | None  # None: could not tell
    evidence: str  # what the decision rests on, for a doctor
    message: str  # what to tell the user ("" when the sequence is one the detector was trained on)

    def as_dict(self) -> dict:
        return asdict(self)


def _number(value) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if number > 0 else None


def _from_parameters(meta: dict) -> tuple[str | None, str]:
    tr, te, ti = (_number(meta.get(k)) for k in ("repetition_time", "echo_time", "inversion_time"))
    scanning = str(meta.get("scanning_sequence") or "").upper()
    shown = ", ".join(f"{name} {round(value, 1):g} ms" for name, value in (("TR", tr), ("TE", te), ("TI", ti)) if value)
    if ti is not None or "IR" in scanning.split("+"):
        if ti is not None and ti >= FLAIR_MIN_TI:
            return "flair", f"inversion recovery, {shown}"
        if ti is not None and ti <= STIR_MAX_TI:
            return "stir", f"inversion recovery, {shown}"
        if ti is not None:
            return "t1", f"T1-weighted inversion recovery, {shown}"
    if tr is None or te is None:
        return None, ""
    if tr <= T1_MAX_TR and te <= T1_MAX_TE:
        return "t1", f"short TR and TE ({shown})"
    if tr >= T2_MIN_TR and te >= T2_MIN_TE:
        return "t2", f"long TR and TE ({shown})"
    if tr >= T2_MIN_TR and te <= T1_MAX_TE:
        return "proton_density", f"long TR, short TE ({shown})"
    return None, ""


def _from_text(text: str) -> str | None:
    for sequence, pattern in _TEXT_RULES:
        if pattern.search(text):
            return sequence
    return None


def identify_sequence(metadata: dict, name: str = "", declared: str | None = None) -> SequenceCheck:
    """The scan's sequence from its metadata (keys of `imaging.dicom_metadata`) and its file or series name.

    ``declared`` (one of DECLARABLE) is what the uploader states. The acquisition parameters, where a DICOM has
    them, outrank it (a statement that contradicts them is reported); a name or nothing does not."""
    if declared is not None and declared not in DECLARABLE:
        raise ValueError(f"Unknown sequence {declared!r}; expected one of: {', '.join(DECLARABLE)}.")
    meta = metadata or {}
    texts = [str(meta.get(k) or "") for k in ("series_description", "protocol_name", "description")] + [name or ""]
    text = " ".join(t for t in texts if t).lower().replace("_", " ")
    from_params, param_evidence = _from_parameters(meta)
    from_text = _from_text(text)
    is_dicom = any(meta.get(k) for k in ("repetition_time", "echo_time", "modality"))
    agent = str(meta.get("contrast_agent") or "").strip()

    if from_params is not None:
        sequence, evidence = from_params, param_evidence
    elif from_text is not None:
        sequence, evidence = from_text, f"its name ({', '.join(t for t in texts if t)[:120]})"
    else:
        sequence, evidence = "unknown", "no acquisition parameters and no sequence in its name"

    conflict, settled = "", False
    if declared is not None:
        if from_params is None:
            sequence, evidence, settled = declared, "stated by the uploader", True
        elif declared == "t1_post_contrast" and from_params == "t1":
            if not agent:
                sequence, evidence, settled = declared, f"{evidence}; contrast stated by the uploader", True
        elif declared != _family(from_params):
            conflict = f" It was stated to be {LABELS[declared]}, which its acquisition parameters contradict."

    if sequence == "t1" and not settled:
        if agent:
            sequence, evidence = "t1_post_contrast", f"{evidence}; contrast agent {agent}"
        elif _CONTRAST.search(text):
            sequence, evidence = "t1_post_contrast", f"{evidence}; contrast named in the series or file name"
        elif is_dicom:
            evidence = f"{evidence}; no contrast agent recorded (DICOM records it when contrast was given)"
        else:
            sequence = "t1_unconfirmed"

    label = LABELS[sequence]
    trained_on = " and ".join(LABELS[s] for s in TRAINED_SEQUENCES)
    if sequence in TRAINED_SEQUENCES:
        return SequenceCheck(sequence, label, True, evidence, conflict.strip())
    if sequence in ("unknown", "t1_unconfirmed"):
        what = ("The MRI sequence could not be determined" if sequence == "unknown"
                else "This looks like a T1-weighted series, but whether contrast was given is not recorded")
        return SequenceCheck(sequence, label, None, evidence,
                             f"{what}. The detector was trained on {trained_on} only; "
                             "check the series is one of these before relying on the verdict.")
    return SequenceCheck(
        sequence, label, False, evidence,
        f"This series looks like {label}. The detector was trained on {trained_on} only and raises "
        "false alarms on sequences it never saw (on an unseen hospital's authentic T1 and T2 series the "
        "models shipped so far flagged 3 to 21 of 22 slices as tampered): treat its verdict as unreliable." + conflict,
    )


def _family(sequence: str) -> str:
    """The declarable name a measured sequence falls under."""
    if sequence in DECLARABLE:
        return sequence
    return "other"
