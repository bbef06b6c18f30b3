"""Which sequence a scan is (inference.ml.sequence): real headers from an unseen hospital, and the rules on
edge cases."""
from __future__ import annotations

from pathlib import Path

import pytest

from inference.ml.imaging import read_path
from inference.ml.sequence import identify_sequence
from inference.ml.paths import shared_datasets_dir

DATASETS = shared_datasets_dir()
BRAINIX = DATASETS / "brainix-dicom" / "DICOM"


@pytest.mark.parametrize("series, sequence, trained", [
    ("FLAIR", "flair", True),  # IR, TI 2500 ms
    ("T1", "t1", False),  # spin echo TR 450 / TE 10, no contrast agent recorded
    ("T2", "t2", False),  # TR 4452 / TE 100
])
def test_real_dicom_series_are_recognised_from_their_acquisition(series, sequence, trained):
    volume = read_path(BRAINIX / series)
    check = identify_sequence(volume.metadata, series)
    assert (check.sequence, check.trained) == (sequence, trained)
    assert ("TR" in check.evidence) or ("TI" in check.evidence)
    if trained:
        assert check.message == ""
    else:
        assert "trained on FLAIR and T1 post-contrast only" in check.message


def test_a_nifti_without_header_hints_is_not_guessed():
    path = DATASETS / "tcia-progression-t1ce" / "01" / "Post_Scan_T1.nii.gz"
    check = identify_sequence(read_path(path).metadata, path.name)
    # "Post" there means the second time point, not contrast: the name says T1, nothing says contrast
    assert (check.sequence, check.trained) == ("t1_unconfirmed", None)
    assert "whether contrast was given is not recorded" in check.message


@pytest.mark.parametrize("meta, name, sequence, trained", [
    ({"repetition_time": 500.0, "echo_time": 12.0, "contrast_agent": "Gadovist"}, "", "t1_post_contrast", True),
    ({"series_description": "AX T1 +C"}, "", "t1_post_contrast", True),
    ({"series_description": "Ax T1 post gad", "repetition_time": 600.0, "echo_time": 9.0}, "",
     "t1_post_contrast", True),
    ({"scanning_sequence": "SE+IR", "repetition_time": 11000.0, "echo_time": 140.0, "inversion_time": 2800.0},
     "", "flair", True),
    ({"scanning_sequence": "IR", "repetition_time": 3500.0, "echo_time": 30.0, "inversion_time": 160.0}, "",
     "stir", False),
    ({"modality": "MR", "scanning_sequence": "GR+IR", "repetition_time": 2300.0, "echo_time": 3.0,
      "inversion_time": 900.0}, "", "t1", False),  # an MPRAGE; DICOM records the agent when one was given
    ({"series_description": "sT2W/FLAIR"}, "", "flair", True),  # a FLAIR name that also says T2
    ({"series_description": "DWI b1000"}, "", "diffusion", False),
    ({"repetition_time": 3000.0, "echo_time": 15.0}, "", "proton_density", False),
    ({}, "TCGA_CS_4941_19960909_1.tif", "unknown", None),
    ({}, "patient7_flair.png", "flair", True),
    ({"repetition_time": "not a number", "echo_time": None}, "", "unknown", None),
])
def test_rules(meta, name, sequence, trained):
    check = identify_sequence(meta, name)
    assert (check.sequence, check.trained) == (sequence, trained)
    assert bool(check.message) == (check.trained is not True)


@pytest.mark.parametrize("meta, name, declared, sequence, trained, conflict", [
    ({}, "slice.png", "flair", "flair", True, False),  # nothing in the file: the statement decides
    ({}, "slice.png", "t1", "t1", False, False),
    ({}, "Post_Scan_T1.nii.gz", "t1_post_contrast", "t1_post_contrast", True, False),
    ({}, "scan.png", "other", "other", False, False),
    # a DICOM T1 without a recorded agent, stated post-contrast by the uploader: believed
    ({"modality": "MR", "repetition_time": 500.0, "echo_time": 10.0}, "", "t1_post_contrast", "t1_post_contrast",
     True, False),
    # acquisition parameters outrank a contradicting statement, and the contradiction is reported
    ({"modality": "MR", "repetition_time": 4450.0, "echo_time": 100.0}, "", "flair", "t2", False, True),
    ({"modality": "MR", "scanning_sequence": "IR", "repetition_time": 9000.0, "echo_time": 100.0,
      "inversion_time": 2500.0}, "", "t1_post_contrast", "flair", True, True),
])
def test_a_stated_sequence(meta, name, declared, sequence, trained, conflict):
    check = identify_sequence(meta, name, declared=declared)
    assert (check.sequence, check.trained) == (sequence, trained)
    assert ("acquisition parameters contradict" in check.message) == conflict
    if not meta:
        assert check.evidence == "stated by the uploader"


def test_an_unknown_stated_sequence_is_refused():
    with pytest.raises(ValueError, match="expected one of: flair, t1_post_contrast, t1, t2, other"):
        identify_sequence({}, "x.png", declared="dwi")
