"""Small real corpora for the dataset tests: a few LGG cases and TCIA patients from ../shared/datasets,
linked (not copied) into temporary folders."""
from pathlib import Path

import pytest

from inference.ml.paths import shared_datasets_dir

SHARED = shared_datasets_dir()
LGG = SHARED / "lgg-flair" / "kaggle_3m"
TCIA = SHARED / "tcia-progression-t1ce"
BRAINIX = SHARED / "brainix-dicom"

if not LGG.is_dir() or not TCIA.is_dir():  # the corpora are part of the project's environment
    pytest.fail(f"The shared datasets are missing under {SHARED}; the ml_data tests read real scans.")

LGG_CASES = sorted(p.name for p in LGG.iterdir() if p.is_dir())[:8]
TCIA_PATIENTS = ["01", "02", "03", "04", "05", "06", "07"]


def _linked_corpus(base: Path, name: str, entries: list[str], sub: str = "") -> Path:
    root = base / name
    (root / sub).mkdir(parents=True, exist_ok=True)
    src = LGG if sub else TCIA
    for entry in entries:
        (root / sub / entry).symlink_to(src / entry)
    return root


@pytest.fixture(scope="session")
def small_corpora(tmp_path_factory):
    """(lgg root, tcia root): 8 LGG cases in the kaggle_3m layout, 7 TCIA patients."""
    base = tmp_path_factory.mktemp("corpora")
    lgg = _linked_corpus(base, "lgg-flair", LGG_CASES, sub="kaggle_3m")
    tcia = _linked_corpus(base, "tcia-progression-t1ce", TCIA_PATIENTS)
    return lgg, tcia


@pytest.fixture(scope="session")
def small_slices(small_corpora):
    import warnings

    from inference.ml.dataset.readers import read_source

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return [s for root in small_corpora for s in read_source(str(root))]
