"""The learned inpainter: a few seconds of training give a loadable bundle, and both gan methods keep to the
method contract (nothing outside the mask changes, the mask covers the change). Its quality is measured by the
realism check, not here."""
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
