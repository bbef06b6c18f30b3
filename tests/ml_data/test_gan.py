"""The learned inpainter: a few seconds of training give a loadable bundle, and both gan methods keep to the
method contract (nothing outside the mask changes, the mask covers the change). Its quality is measured by the
realism check, not here."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from inference.ml.tamper import REGISTRY, TamperRequest, gan


@pytest.fixture(scope="module")
def tiny_weights(small_slices, tmp_path_factory):
    path = tmp_path_factory.mktemp("gan") / "inpainter.pt"
    lgg = [s for s in small_slices if s.source == "lgg-flair"]
    meta = gan.train(lgg, path, seconds=2.0, n_examples=48, threads=1, log=lambda m: None)
    assert meta["steps"] >= 1 and path.is_file()
    return path


def test_gan_methods_registered_only_with_weights():
    registered = ("gan", "inject") in REGISTRY
    assert registered == gan.WEIGHTS.is_file()


def test_gan_methods_keep_the_contract(tiny_weights, small_slices, monkeypatch):
    monkeypatch.setattr(gan, "WEIGHTS", tiny_weights)
    lgg = [s for s in small_slices if s.source == "lgg-flair"]
    tumour = next(s for s in sorted(lgg, key=lambda s: s.key) if 300 < s.tumour_area < 1500)
    healthy = next(s for s in sorted(lgg, key=lambda s: s.key)
                   if not s.mask.any() and 0.4 < s.position < 0.7)
    donor = next(s for s in sorted(lgg, key=lambda s: s.key)
                 if 300 < s.tumour_area < 1500 and s.patient_id != healthy.patient_id)
    cases = [(gan.GanRemove(), TamperRequest(tumour.image, tumour=tumour.mask)),
             (gan.GanInject(), TamperRequest(healthy.image, donor_image=donor.image, donor_mask=donor.mask))]
    for method, request in cases:
        result = method.apply(request, np.random.default_rng(1))
        changed = result.image != request.image
        assert not (changed & ~result.mask).any()
        assert changed[result.mask].mean() > 0.8
        assert result.params["crop"][2] <= gan.MAX_CROP
        again = method.apply(request, np.random.default_rng(1))
        assert np.array_equal(result.image, again.image)


def test_region_too_large_for_the_inpainter():
    region = np.zeros((256, 256), bool)
    region[40:200, 40:200] = True
    with pytest.raises(gan.NotApplicable, match="too large"):
        gan.crop_around(region)


FILL_SCRIPT = """
import sys
import numpy as np
from inference.ml.tamper import gan
rng = np.random.default_rng(0)
image = (100 + 40 * rng.standard_normal((256, 256))).clip(0, 255).astype(np.uint8)
yy, xx = np.mgrid[:256, :256]
region = (yy - 120) ** 2 + (xx - 140) ** 2 < 20 ** 2
fills = [gan.Inpainter.load().fill(image, region, inject=inject, rng=rng)[0] for inject in (True, False)]
np.save(sys.argv[1], np.stack(fills))
"""


@pytest.mark.skipif(not gan.WEIGHTS.is_file(), reason="no shipped inpainter weights")
def test_the_inpainter_fills_the_same_on_any_instruction_set(tmp_path):
    """The same seed must give the same bytes on another machine: the fill may not depend on whether torch runs
    its AVX-512, AVX2 or plain kernels (in float32 it did, in the last bits, enough to flip rounded pixels)."""
    root = Path(__file__).resolve().parents[2]
    outs = []
    for capability in ("default", "avx2", None):
        env = {k: v for k, v in os.environ.items() if k != "ATEN_CPU_CAPABILITY"}
        if capability:
            env["ATEN_CPU_CAPABILITY"] = capability
        out = tmp_path / f"fill-{capability}.npy"
        subprocess.run([sys.executable, "-c", FILL_SCRIPT, str(out)], env=env, cwd=root, check=True, timeout=120)
        outs.append(np.load(out))
    for other in outs[1:]:
        assert np.abs(other - outs[0]).max() < 1e-6  # grey levels; float32 kernels differ by ~1e-5
