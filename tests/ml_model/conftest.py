"""A tiny contract dataset made from the two real sample slices (crude tampering, for plumbing tests only)."""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from inference.ml.coco import DatasetWriter, read_png
from inference.ml.model import save_random_bundle

DATA = Path(__file__).resolve().parents[1] / "data" / "ml_model"


def sample_slices():
    tumour = read_png(DATA / "lgg_TCGA_CS_4941_14.png")
    mask = read_png(DATA / "lgg_TCGA_CS_4941_14_mask.png") > 0
    healthy = read_png(DATA / "lgg_TCGA_CS_4941_10.png")
    return tumour, mask, healthy


def build_tiny_dataset(root: Path, *, size: int | None = None) -> Path:
    """8 images, 2 per verdict, patient-disjoint train/test by a fake patient id.

    ``size``: crop the 256 x 256 slices to the central ``size`` x ``size`` (cheaper training tests).
    """
    tumour, mask, healthy = sample_slices()
    ys, xs = np.nonzero(mask)
    cy, cx = int(ys.mean()), int(xs.mean())

    def crop(a):
        if size is None:
            return a
        top = int(np.clip(cy - size // 2, 0, a.shape[0] - size))
        left = int(np.clip(cx - size // 2, 0, a.shape[1] - size))
        return a[top : top + size, left : left + size]

    tumour, mask, healthy = crop(tumour), crop(mask), crop(healthy)
    # injected: the tumour pasted into the healthy slice; removed: the region filled with its surroundings' mean
    added = healthy.copy()
    added[mask] = tumour[mask]
    removed = tumour.copy()
    ring = np.zeros_like(mask)
    ring[max(0, ys.min() - 4) : ys.max() + 4, max(0, xs.min() - 4) : xs.max() + 4] = True
    removed[mask] = int(np.median(tumour[ring & ~mask])) if (ring & ~mask).any() else 0
    with DatasetWriter(root, info={"description": "test fixture"}) as writer:
        for k, split in enumerate(("train", "test")):
            flip = (lambda a: a[:, ::-1]) if k else (lambda a: a)
            patient = f"P{k}"
            writer.add_image(flip(tumour), name=f"real{k}", verdict="real_tumor", patient_id=patient, source="lgg",
                             split=split, masks=[flip(mask)])
            writer.add_image(flip(healthy), name=f"clean{k}", verdict="no_tumor", patient_id=patient, source="lgg",
                             split=split)
            writer.add_image(flip(added), name=f"added{k}", verdict="fake_added", patient_id=patient, source="lgg",
                             method="paste", split=split, masks=[flip(mask)])
            writer.add_image(flip(removed), name=f"removed{k}", verdict="fake_removed", patient_id=patient,
                             source="lgg", method="fill", split=split, masks=[flip(mask)])
    return root


@pytest.fixture(scope="session")
def tiny_dataset(tmp_path_factory):
    return build_tiny_dataset(tmp_path_factory.mktemp("ds") / "tiny")


@pytest.fixture(scope="session")
def random_bundle(tmp_path_factory):
    return save_random_bundle(tmp_path_factory.mktemp("w") / "detector.pt", backbone="tiny", seed=1)
