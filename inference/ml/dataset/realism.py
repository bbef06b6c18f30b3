"""How easily cheap detectors tell tampered slices from authentic ones (the lower, the better the tampering).

Each detector is fitted on the ``train`` split and scored on the ``test`` split (patients never overlap),
as ROC AUC of "tampered" (0.5 = chance). Besides all tampered vs all authentic, each method is compared with
the authentic class it imitates: an injection (``fake_added``) with ``real_tumor`` (is this tumour real?), a
removal (``fake_removed``) with ``no_tumor`` (is this healthy slice real?).

- ``histogram``: logistic regression on the slice's 64-bin intensity histogram (background excluded).
- ``border_noise``: the noise level (MAD of a high-pass residual) just inside the region's border, just
  outside it, and their log ratio, fed to a logistic regression. Authentic slices need a region: a real
  tumour's own mask (dilated by 3 px, as tampered regions include a blending band), and for a tumour-free
  slice the region of a randomly drawn removal from the same corpus (a place where a tumour was) that lies
  inside this slice's interior (away from skull and scalp), as removal regions do (a borrowed region that
  spills onto the background would let a detector tell authentic from tampered by the dark pixels in view,
  not by traces).
- ``texture``: what an inpainted or generated fill lacks: the region's detail (difference of Gaussians at
  0.7-1.5, 1.5-3 and 3-6 px) inside (eroded by 3 px) and relative to a ring 2-8 px around it, with the
  region's intensity spread, 5th/95th percentiles and dark fraction, fed to a logistic regression.
- ``surroundings``: a control, not a detector of traces: the same statistics as ``texture`` (intensity spread,
  percentiles, dark fraction, detail at the three scales) of the ring 2-8 px *outside* the region only, pixels
  that no method changes. What it catches is told by the place the region sits in (a removal keeps an erased
  tumour's surroundings, an injection lands in healthy tissue), not by the edit; a detector scoring well above
  it reads the edit itself.
- ``cnn``: a small CNN (4 conv layers) on a 64 px native-resolution crop centred on the region, trained
  from scratch for a fixed time budget.
- ``location``: an audit of placement, not a trace detector: logistic regression on where the region sits in
  the head (its centroid relative to the head's centroid, in units of the head's spread on each axis: front to
  back and distance from the midline, with squares and their product). Real tumours grow in some places more
  than others (TCGA-LGG: forward and lateral); injections put anywhere would be told by where they are.
Every AUC comes with a 95 % confidence interval (``result["intervals"]``): the test patients resampled with
replacement, each with all of its slices (a cluster bootstrap, ``inference.ml.intervals``), the detector's scores
kept. It is the sampling uncertainty of the test split only; a detector refitted on another draw (the ``seed``)
moves as well.

- ``brain_level``: not a trace detector but an audit of the slice choice: logistic regression on the slice's
  position in its patient's stack (provenance ``position``: 0 one end, 1 the other; with its square), i.e. on
  the anatomy in view (skull base, ventricles, vertex). Tumour-free slices crowd the ends of the stack and tumour
  slices the middle, so a class drawn at other levels than its lookalike is told apart by anatomy. Omitted
  when the dataset does not record positions.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi

from ..coco import CocoDataset, ImageRecord
from ..tamper.anatomy import analyse

AUTHENTIC = ("real_tumor", "no_tumor")
LOOKALIKE = {"fake_added": "real_tumor", "fake_removed": "no_tumor"}
BORROW_INSIDE = 0.99  # a borrowed region must lie (almost) entirely inside the tumour-free slice's interior


@dataclass
class Sample:
    record: ImageRecord
    image: np.ndarray
    region: np.ndarray | None

    @property
    def tampered(self) -> int:
        return int(self.record.verdict in LOOKALIKE)


def _load(ds: CocoDataset, split: str, rng: np.random.Generator, limit: int | None) -> list[Sample]:
    records = [r for r in ds if r.split == split]
    if limit and len(records) > limit:
        records = [records[i] for i in sorted(rng.choice(len(records), limit, replace=False))]
    samples = [Sample(r, r.pixels(), None) for r in records]
    for s in samples:
        if s.record.verdict != "no_tumor":
            m = s.record.mask()
            s.region = ndi.binary_dilation(m, iterations=3) if s.record.verdict == "real_tumor" else m
    # tumour-free slices borrow the region of a removal (else any tampered region) from the same corpus
    for s in samples:
        if s.region is None:
            s.region = _borrow_region(s, samples, rng)
    return samples


def _borrow_region(sample: Sample, samples: list[Sample], rng: np.random.Generator,
                   inside: float = BORROW_INSIDE) -> np.ndarray | None:
    """A removal's region (else any tampered region) from the same corpus, drawn at random among those
    with at least ``inside`` of their pixels in this slice's interior (inside the head, away from skull and
    scalp, as removal regions are); the best-placed one when none is."""
    interior = analyse(sample.image).interior
    for wanted in ("fake_removed", None):
        cands = [o.region for o in samples if o.tampered and o.region is not None
                 and o.record.source == sample.record.source and o.region.shape == sample.image.shape
                 and (wanted is None or o.record.verdict == wanted)]
        if not cands:
            continue
        order = rng.permutation(len(cands))
        best, best_frac = None, -1.0
        for i in order:
            region = cands[i]
            frac = float(interior[region].mean()) if region.any() else 0.0
            if frac >= inside:
                return region
            if frac > best_frac:
                best, best_frac = region, frac
        return best
    return None


def histogram_features(image: np.ndarray) -> np.ndarray:
    img = image.astype(np.float64)
    if image.dtype != np.uint8:
        img = img * (255.0 / max(img.max(), 1.0))
    vals = img[img > 5]
    hist, _ = np.histogram(vals, bins=64, range=(0, 256))
    return hist / max(hist.sum(), 1)


def border_noise_features(image: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    if region is None or not region.any():
        return np.zeros(3)
    img = image.astype(np.float64)
    res = img - ndi.gaussian_filter(img, 1.0)
    inner = region & ~ndi.binary_erosion(region, iterations=3)
    outer = ndi.binary_dilation(region, iterations=3) & ~region

    def sigma(where):
        v = res[where]
        return 1.4826 * np.median(np.abs(v - np.median(v))) + 1e-3 if v.size > 10 else 1e-3

    s_in, s_out = sigma(inner), sigma(outer)
    return np.array([np.log(s_in), np.log(s_out), np.log(s_in / s_out)])


TEXTURE_BANDS = ((0.7, 1.5), (1.5, 3.0), (3.0, 6.0))


def _around(region: np.ndarray) -> np.ndarray:
    """The ring 2-8 px outside the region."""
    return ndi.binary_dilation(region, iterations=8) & ~ndi.binary_dilation(region, iterations=2)


def _intensity_stats(vals: np.ndarray) -> list[float]:
    med = float(np.median(vals))
    return [float(vals.std()), float(np.percentile(vals, 5)), float(np.percentile(vals, 95)),
            float((vals < 0.5 * med).mean())]


def _band_images(image: np.ndarray, exclude: np.ndarray | None = None) -> list[np.ndarray]:
    """Difference-of-Gaussians detail at each of TEXTURE_BANDS; with ``exclude``, blurs that ignore those pixels
    (normalised convolution), so that nothing inside ``exclude`` reaches the result."""
    img = image.astype(np.float64)
    if exclude is None:
        return [ndi.gaussian_filter(img, lo) - ndi.gaussian_filter(img, hi) for lo, hi in TEXTURE_BANDS]
    keep = (~exclude).astype(np.float64)

    def blur(sigma):
        return ndi.gaussian_filter(img * keep, sigma) / np.maximum(ndi.gaussian_filter(keep, sigma), 1e-6)

    return [blur(lo) - blur(hi) for lo, hi in TEXTURE_BANDS]


def texture_features(image: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """Detail inside the region at three scales, absolute and relative to its surroundings (see above)."""
    n = 4 + 2 * len(TEXTURE_BANDS)
    if region is None or not region.any():
        return np.zeros(n)
    inside = ndi.binary_erosion(region, iterations=3)
    if inside.sum() < 30:
        inside = region
    around = _around(region)
    out = _intensity_stats(image.astype(np.float64)[inside])
    for band in _band_images(image):
        s_in = np.log(band[inside].std() + 1e-3)
        s_out = np.log(band[around].std() + 1e-3) if around.any() else s_in
        out += [s_in, s_in - s_out]
    return np.asarray(out, dtype=np.float64)


def surroundings_features(image: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """The texture statistics of the ring 2-8 px outside the region only: untouched pixels (see above)."""
    n = 4 + len(TEXTURE_BANDS)
    around = _around(region) if region is not None and region.any() else None
    if around is None or around.sum() < 10:
        return np.zeros(n)
    out = _intensity_stats(image.astype(np.float64)[around])
    out += [np.log(band[around].std() + 1e-3) for band in _band_images(image, exclude=region)]
    return np.asarray(out, dtype=np.float64)


def location_features(image: np.ndarray, region: np.ndarray | None) -> np.ndarray:
    """Where the region sits in the head (see the module docstring); zeros without a region or a head."""
    from ..tamper.anatomy import head_mask

    if region is None or not region.any():
        return np.zeros(5)
    hy, hx = np.nonzero(head_mask(image))
    if hy.size < 50 or min(hy.std(), hx.std()) < 1.0:
        return np.zeros(5)
    ry, rx = np.nonzero(region)
    v = (ry.mean() - hy.mean()) / hy.std()
    u = abs(rx.mean() - hx.mean()) / hx.std()
    return np.array([v, u, v * v, u * u, v * u], dtype=np.float64)


def brain_level_features(sample: "Sample") -> np.ndarray:
    position = (sample.record.extra.get("provenance") or {}).get("position")
    if position is None:
        return np.full(2, np.nan)
    return np.array([float(position), float(position) ** 2])


INTERVAL_RESAMPLES = 1000


def _auc(y: np.ndarray, score: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    if len(set(y.tolist())) < 2:
        return None
    return round(float(roc_auc_score(y, score)), 3)


def _patient(sample: Sample) -> str:
    return f"{sample.record.source}/{sample.record.patient_id}"


def _patient_weights(patients, resamples: int, seed: int) -> np.ndarray:
    """resamples x slices: how many times each slice counts when the patients are drawn with replacement."""
    from ..intervals import patient_counts

    ids, patient_of = np.unique(np.asarray([str(p) for p in patients]), return_inverse=True)
    return patient_counts(len(ids), resamples, np.random.default_rng(seed))[:, patient_of]


def _percentiles(values: np.ndarray, level: float) -> list[float]:
    values = values[np.isfinite(values)]
    tail = (1.0 - level) / 2.0 * 100.0
    low, high = np.percentile(values, [tail, 100.0 - tail])
    return [round(float(low), 3), round(float(high), 3)]


def auc_interval(y: np.ndarray, score: np.ndarray, patients, *, resamples: int = INTERVAL_RESAMPLES,
                 seed: int = 0, level: float = 0.95) -> list[float] | None:
    """95 % interval of the ROC AUC, resampling patients (all slices of each drawn one); None with one class."""
    from ..intervals import weighted_roc_auc

    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return None
    aucs = weighted_roc_auc(y, np.asarray(score, dtype=np.float64), _patient_weights(patients, resamples, seed))
    return _percentiles(aucs, level)


def auc_difference(y: np.ndarray, score_a: np.ndarray, score_b: np.ndarray, patients, *,
                   resamples: int = INTERVAL_RESAMPLES, seed: int = 0, level: float = 0.95) -> dict | None:
    """AUC of ``score_a`` minus AUC of ``score_b`` on the same slices, with a paired 95 % interval: both
    AUCs computed on each of the same patient resamples (all slices of each drawn patient), so what the two
    detectors share cancels. None with one class."""
    from ..intervals import weighted_roc_auc

    y = np.asarray(y, dtype=bool)
    if y.all() or not y.any():
        return None
    a, b = np.asarray(score_a, np.float64), np.asarray(score_b, np.float64)
    weights = np.vstack([np.ones((1, len(y))), _patient_weights(patients, resamples, seed)])  # row 0: the data
    diffs = weighted_roc_auc(y, a, weights) - weighted_roc_auc(y, b, weights)
    return {"difference": round(float(diffs[0]), 3), "interval": _percentiles(diffs[1:], level)}


def _subsets(test: list[Sample]) -> dict[str, np.ndarray]:
    """name -> boolean selector over test samples."""
    verdicts = np.array([s.record.verdict for s in test])
    methods = np.array([s.record.method or "" for s in test])
    out = {"all tampered vs authentic": np.ones(len(test), bool)}
    for verdict, lookalike in LOOKALIKE.items():
        for method in sorted(set(methods[verdicts == verdict])):
            out[f"{verdict}/{method} vs {lookalike}"] = ((verdicts == verdict) & (methods == method)) | (
                verdicts == lookalike)
    return out


def _scores_to_report(test: list[Sample], score: np.ndarray, intervals: dict | None = None) -> dict:
    """AUC of each comparison; ``intervals`` (when given) receives each one's 95 % interval."""
    y = np.array([s.tampered for s in test])
    patients = np.array([_patient(s) for s in test])
    report = {}
    for name, sel in _subsets(test).items():
        report[name] = _auc(y[sel], score[sel])
        if intervals is not None:
            intervals[name] = auc_interval(y[sel], score[sel], patients[sel]) if report[name] is not None else None
    return report


def _logistic(train_x, train_y, test_x) -> np.ndarray:
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=2000, C=1.0))
    model.fit(train_x, train_y)
    return model.predict_proba(test_x)[:, 1]


def _pairwise_logistic(train: list[Sample], test: list[Sample], feats, intervals: dict | None = None,
                       scores: dict | None = None) -> dict:
    """One logistic regression per comparison (fitted on the same comparison in train); ``intervals`` (when
    given) receives each comparison's 95 % interval, ``scores`` its test scores (in the order of the comparison's
    test slices)."""
    x_tr = np.stack([feats(s) for s in train])
    x_te = np.stack([feats(s) for s in test])
    y_tr = np.array([s.tampered for s in train])
    y_te = np.array([s.tampered for s in test])
    patients = np.array([_patient(s) for s in test])
    report = {}
    tr_sel = _subsets(train)
    for name, sel in _subsets(test).items():
        if name not in tr_sel or len(set(y_tr[tr_sel[name]].tolist())) < 2:
            report[name] = None
            if intervals is not None:
                intervals[name] = None
            continue
        score = _logistic(x_tr[tr_sel[name]], y_tr[tr_sel[name]], x_te[sel])
        if scores is not None:
            scores[name] = score
        report[name] = _auc(y_te[sel], score)
        if intervals is not None:
            intervals[name] = auc_interval(y_te[sel], score, patients[sel]) if report[name] is not None else None
    return report


TRACE_DETECTORS = ("histogram_logreg", "border_noise_logreg", "texture_logreg")


def _beyond_surroundings(test: list[Sample], scores: dict) -> dict:
    """For each trace detector and comparison: its AUC minus the surroundings control's, with the paired
    interval of `auc_difference`. An interval above 0 says the detector reads more than the place the region
    sits in, beyond the doubt of this test split."""
    y = np.array([s.tampered for s in test])
    patients = np.array([_patient(s) for s in test])
    control = scores.get("surroundings_logreg", {})
    out: dict[str, dict] = {}
    for detector in TRACE_DETECTORS:
        out[detector] = {}
        for name, sel in _subsets(test).items():
            a, b = scores.get(detector, {}).get(name), control.get(name)
            out[detector][name] = (None if a is None or b is None
                                   else auc_difference(y[sel], a, b, patients[sel]))
    return out


def region_crop(image: np.ndarray, region: np.ndarray | None, size: int) -> np.ndarray:
    """A size x size crop at native resolution centred on the region (the slice centre without one)."""
    h, w = image.shape
    if region is not None and region.any():
        ys, xs = np.nonzero(region)
        cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    else:
        cy, cx = h // 2, w // 2
    img = image if image.dtype == np.uint8 else (
        image.astype(np.float64) * 255.0 / max(float(image.max()), 1.0)).astype(np.uint8)
    if h < size or w < size:  # pad a small slice
        img = np.pad(img, ((0, max(0, size - h)), (0, max(0, size - w))))
        h, w = img.shape
    y0 = int(np.clip(cy - size // 2, 0, h - size))
    x0 = int(np.clip(cx - size // 2, 0, w - size))
    return img[y0:y0 + size, x0:x0 + size]


def cnn_detector(train: list[Sample], test: list[Sample], *, seconds: float, seed: int, size: int = 64,
                 threads: int = 1, intervals: dict | None = None) -> tuple[dict, dict]:
    """A small CNN on native-resolution crops centred on the region (where the traces are; authentic slices
    use their tumour or borrowed region), trained from scratch for ``seconds``. Knowing where to look makes it
    a stronger detector than a blind one."""
    import torch
    from torch import nn

    torch.manual_seed(seed)
    torch.set_num_threads(threads)

    def tensor(samples):
        arr = np.stack([region_crop(s.image, s.region, size) for s in samples]).astype(np.float32) / 255.0
        return torch.from_numpy(arr[:, None])

    x_tr, x_te = tensor(train), tensor(test)
    y_tr = torch.tensor([s.tampered for s in train], dtype=torch.float32)
    net = nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(32, 64, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1),
        nn.Flatten(), nn.Linear(64, 1),
    )
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    loss_fn = nn.BCEWithLogitsLoss()
    gen = torch.Generator().manual_seed(seed)
    start, steps, epochs = time.monotonic(), 0, 0
    net.train()
    while time.monotonic() - start < seconds:
        perm = torch.randperm(len(x_tr), generator=gen)
        for i in range(0, len(perm), 32):
            idx = perm[i:i + 32]
            xb = x_tr[idx]
            if torch.rand(1, generator=gen).item() < 0.5:
                xb = torch.flip(xb, dims=[3])
            loss = loss_fn(net(xb).squeeze(1), y_tr[idx])
            opt.zero_grad()
            loss.backward()
            opt.step()
            steps += 1
            if time.monotonic() - start >= seconds:
                break
        epochs += 1
    net.eval()
    with torch.no_grad():
        score = torch.cat([torch.sigmoid(net(x_te[i:i + 256]).squeeze(1)) for i in range(0, len(x_te), 256)]).numpy()
    return _scores_to_report(test, score, intervals), {"steps": steps, "epochs": epochs, "seconds": round(seconds, 1),
                                            "input": f"{size} px crop around the region"}


def _fit(image: np.ndarray, size: int) -> np.ndarray:
    import cv2

    img = image if image.dtype == np.uint8 else (image.astype(np.float64) * 255.0 / max(image.max(), 1)).astype(np.uint8)
    if img.shape != (size, size):
        img = cv2.resize(img, (size, size), interpolation=cv2.INTER_AREA)
    return img


def measure_realism(ds: CocoDataset, *, seed: int = 0, cnn_seconds: float = 180.0, limit: int | None = None,
                    train_split: str = "train", test_split: str = "test") -> dict:
    """AUCs of the cheap detectors and of the brain-level audit (see module docstring), fitted on
    ``train_split``, scored on ``test_split``."""
    rng = np.random.default_rng(seed)
    train = _load(ds, train_split, rng, limit)
    test = _load(ds, test_split, rng, limit)
    if not train or not test:
        raise ValueError(f"The realism check needs images in both '{train_split}' and '{test_split}'.")
    n_patients = len({_patient(s) for s in test})
    result = {
        "protocol": f"fit on '{train_split}' ({len(train)} images), ROC AUC of 'tampered' on '{test_split}' "
                    f"({len(test)} images of {n_patients} patients); 0.5 is chance; in brackets the 95 % interval, "
                    f"the test patients resampled ({INTERVAL_RESAMPLES} times, each with all its slices)",
    }
    intervals: dict[str, dict] = {}
    features = {
        "histogram_logreg": lambda s: histogram_features(s.image),
        "border_noise_logreg": lambda s: border_noise_features(s.image, s.region),
        "texture_logreg": lambda s: texture_features(s.image, s.region),
        "surroundings_logreg": lambda s: surroundings_features(s.image, s.region),
        "location_logreg": lambda s: location_features(s.image, s.region),
    }
    if not any(np.isnan(brain_level_features(s)).any() for s in train + test):
        features["brain_level_logreg"] = brain_level_features
    scores: dict[str, dict] = {}
    for name, feats in features.items():
        intervals[name], scores[name] = {}, {}
        result[name] = _pairwise_logistic(train, test, feats, intervals[name], scores[name])
    result["beyond_surroundings"] = _beyond_surroundings(test, scores)
    if cnn_seconds > 0:
        intervals["small_cnn"] = {}
        result["small_cnn"], result["small_cnn_training"] = cnn_detector(train, test, seconds=cnn_seconds, seed=seed,
                                                                         intervals=intervals["small_cnn"])
    result["intervals"] = intervals
    return result
