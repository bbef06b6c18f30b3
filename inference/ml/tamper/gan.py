"""CT-GAN-style learned inpainter: context in, centre out, conditioned on the region's shape and on the task.

One small U-Net generator fills a masked region of a 64 x 64 patch (cut from a crop of 64 to 128 px around
the region, resized), with a flag that says what to paint: healthy tissue (removal) or a tumour (injection,
the region being a real tumour's shape from another patient, as in ``splice``). A PatchGAN discriminator and an
L1 loss train it (``train_inpainter``) on the training split's patients only.

The weights live in ``weights/inpainter.pt`` beside this module; the ``gan`` methods are registered only when
that file exists (``inference.ml.tamper.__init__``).

Shipped: ``weights/inpainter.pt`` (1.2 MB), trained by ``manage.py train_inpainter --dataset
/work/data/tamper-v4 --minutes 55 --threads 1`` (6805 steps of batch 16 in 55 minutes on one core of this
2-core machine, the other busy; seed 0; LGG and TCIA training-split patients only).

Realism (``build_dataset --seed 11 --max-images 800 --methods gan``, cheap detectors fitted on train, ROC AUC on
test): removals 0.50 / 0.54 / 0.44 (histogram / border noise / small CNN), injections 0.54 / 0.63 / 0.64. The
generated tumour's edge is soft; when the re-synthesised noise was matched on the region's border band (as for
the other methods) the border band of an injection ended at the tissue's noise level, while a real tumour's
border carries its edge on top of it, and the border-noise detector scored 0.78. Injections therefore match the
noise on the region's interior (``noise_calibration = "interior"``) and keep their edge. A sharper fill (unsharp
mask after upsampling) and Poisson blending of the fill were tried and did not help (0.80, 0.79).
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from scipy import ndimage as ndi

from .anatomy import Anatomy
from .base import INJECT, REMOVE, NotApplicable, TamperMethod, TamperRequest
from .inpaint import MARGIN_RANGE, removal_region

PATCH = 64
MAX_CROP = 128
WEIGHTS = Path(__file__).resolve().parent / "weights" / "inpainter.pt"


def _torch():
    import torch
    from torch import nn

    return torch, nn


def build_generator():
    torch, nn = _torch()

    def block(cin, cout, down=True):
        if down:
            return nn.Sequential(nn.Conv2d(cin, cout, 4, 2, 1), nn.GroupNorm(8, cout), nn.LeakyReLU(0.2))
        # upsample + 3x3 conv: cheaper than a transposed conv on 2 CPU cores, and no checkerboard
        return nn.Sequential(nn.Upsample(scale_factor=2, mode="nearest"), nn.Conv2d(cin, cout, 3, 1, 1),
                             nn.GroupNorm(8, cout), nn.ReLU())

    class UNet(nn.Module):
        def __init__(self, c=16):
            super().__init__()
            # image with the region blanked, the region, the task flag; no noise input: with the training time
            # this project can afford it only learns speckle, and the noise touch-up supplies real texture
            self.inp = nn.Sequential(nn.Conv2d(3, c, 3, 1, 1), nn.LeakyReLU(0.2))
            self.d1, self.d2, self.d3 = block(c, 2 * c), block(2 * c, 4 * c), block(4 * c, 4 * c)  # 32, 16, 8
            self.mid = nn.Sequential(nn.Conv2d(4 * c, 4 * c, 3, 1, 2, dilation=2), nn.GroupNorm(8, 4 * c), nn.ReLU())
            self.u3 = block(8 * c, 4 * c, down=False)
            self.u2 = block(8 * c, 2 * c, down=False)
            self.u1 = block(4 * c, c, down=False)
            self.out = nn.Conv2d(2 * c, 1, 3, 1, 1)

        def forward(self, image, mask, flag):
            x0 = self.inp(torch.cat([image * (1 - mask), mask, flag.expand_as(mask)], 1))
            x1 = self.d1(x0)
            x2 = self.d2(x1)
            x3 = self.d3(x2)
            m = self.mid(x3)
            y = self.u3(torch.cat([m, x3], 1))
            y = self.u2(torch.cat([y, x2], 1))
            y = self.u1(torch.cat([y, x1], 1))
            fill = torch.tanh(self.out(torch.cat([y, x0], 1)))
            return image * (1 - mask) + fill * mask

    return UNet()


def build_discriminator():
    torch, nn = _torch()

    class PatchD(nn.Module):
        def __init__(self, c=16):
            super().__init__()
            self.net = nn.Sequential(
                nn.Conv2d(3, c, 4, 2, 1), nn.LeakyReLU(0.2),
                nn.Conv2d(c, 2 * c, 4, 2, 1), nn.GroupNorm(8, 2 * c), nn.LeakyReLU(0.2),
                nn.Conv2d(2 * c, 4 * c, 4, 1, 1), nn.GroupNorm(8, 4 * c), nn.LeakyReLU(0.2),
                nn.Conv2d(4 * c, 1, 4, 1, 1),
            )

        def forward(self, image, mask, flag):
            return self.net(torch.cat([image, mask, flag.expand_as(mask)], 1))

    return PatchD()


# --- crops ------------------------------------------------------------------------------------


@dataclass
class Crop:
    y0: int
    x0: int
    size: int


def crop_around(region: np.ndarray, rng: np.random.Generator | None = None) -> Crop:
    """A square crop (64..128 px) with the region inside its central part, or NotApplicable."""
    ys, xs = np.nonzero(region)
    h, w = region.shape
    extent = max(ys.max() - ys.min() + 1, xs.max() - xs.min() + 1)
    size = int(max(PATCH, np.ceil(extent * 1.6)))
    if size > MAX_CROP or size > min(h, w):
        raise NotApplicable(f"the region ({extent} px) is too large for the {MAX_CROP} px inpainter")
    cy, cx = (ys.min() + ys.max()) // 2, (xs.min() + xs.max()) // 2
    if rng is not None:
        slack = max(0, (size - int(extent * 1.3)) // 2)
        cy += int(rng.integers(-slack, slack + 1)) if slack else 0
        cx += int(rng.integers(-slack, slack + 1)) if slack else 0
    y0 = int(np.clip(cy - size // 2, 0, h - size))
    x0 = int(np.clip(cx - size // 2, 0, w - size))
    return Crop(y0, x0, size)


def to_patch(image: np.ndarray, region: np.ndarray, crop: Crop) -> tuple[np.ndarray, np.ndarray]:
    sl = (slice(crop.y0, crop.y0 + crop.size), slice(crop.x0, crop.x0 + crop.size))
    img = image[sl].astype(np.float32)
    msk = region[sl].astype(np.float32)
    if crop.size != PATCH:
        img = cv2.resize(img, (PATCH, PATCH), interpolation=cv2.INTER_AREA)
        msk = cv2.resize(msk, (PATCH, PATCH), interpolation=cv2.INTER_AREA)
    # a pixel touched by the region at full size is inside it at patch size
    return img / 127.5 - 1.0, (msk > 0.01).astype(np.float32)


class Inpainter:
    """The trained generator, loaded once."""

    _cache: dict = {}

    def __init__(self, generator, meta: dict):
        self.generator = generator
        self.meta = meta

    @classmethod
    def load(cls, path: Path | None = None) -> "Inpainter":
        path = Path(path) if path is not None else WEIGHTS
        key = str(path)
        if key not in cls._cache:
            torch, _ = _torch()
            if not Path(path).is_file():
                raise FileNotFoundError(f"{path}: no inpainter weights; train them with `manage.py train_inpainter`.")
            bundle = torch.load(path, map_location="cpu", weights_only=False)
            gen = build_generator()
            gen.load_state_dict(bundle["generator"])
            # float64 at build time: float32 kernels differ by CPU instruction set (AVX2 / AVX-512) in the last bits,
            # enough to flip a rounded pixel, so the same seed gave other bytes on another machine; in float64 the
            # difference stays far below a grey level
            gen.double().eval()
            cls._cache[key] = cls(gen, bundle.get("meta", {}))
        return cls._cache[key]

    def fill(self, image: np.ndarray, region: np.ndarray, *, inject: bool, rng: np.random.Generator) -> tuple[np.ndarray, dict]:
        torch, _ = _torch()
        crop = crop_around(region)
        img, msk = to_patch(image, region, crop)
        with torch.no_grad():
            out = self.generator(
                torch.from_numpy(img.astype(np.float64))[None, None], torch.from_numpy(msk.astype(np.float64))[None, None],
                torch.full((1, 1, 1, 1), 1.0 if inject else 0.0, dtype=torch.float64),
            )[0, 0].numpy()
        out = (out + 1.0) * 127.5
        if crop.size != PATCH:
            out = cv2.resize(out, (crop.size, crop.size), interpolation=cv2.INTER_CUBIC)
        filled = image.astype(np.float64).copy()
        filled[crop.y0:crop.y0 + crop.size, crop.x0:crop.x0 + crop.size] = out
        return filled, {"crop": [crop.y0, crop.x0, crop.size]}


class GanRemove(TamperMethod):
    name = "gan"
    kind = REMOVE
    # healthy tissue's detail replaces the fill's below this scale (px): the generated fill is smooth at every scale
    detail_sigma = 6.0

    def edit(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator):
        margin = int(rng.integers(MARGIN_RANGE[0], MARGIN_RANGE[1] + 1))
        tumour = np.asarray(request.tumour, bool)
        region = removal_region(tumour, margin, request.image.shape)
        filled, params = Inpainter.load().fill(request.image, region, inject=False, rng=rng)
        # the generator fills with a plausible layout but too evenly (few dark sulci, little spread): keep the
        # layout, take the values of healthy tissue of this slice at a place of the region's shape
        reference, place = healthy_reference(request.image, region, anatomy, tumour, rng)
        if reference is not None:
            filled = match_histogram(filled, region, reference)
            params["histogram_from"] = place
        return filled, region, {"margin": margin, **params}


class GanInject(TamperMethod):
    name = "gan"
    kind = INJECT
    noise_calibration = "interior"

    def edit(self, request: TamperRequest, anatomy: Anatomy, rng: np.random.Generator):
        from .splice import Splice

        # the region: a real tumour's shape from another patient, placed as splice places it
        source, tumour, region, sparams = Splice().place(request, anatomy, rng)
        filled, params = Inpainter.load().fill(request.image, region, inject=True, rng=rng)
        # the generator draws tumours a little dim and flat; keep its drawing but give it the intensities of
        # that real tumour (matched to this slice's tissue as splice matches them)
        filled = match_histogram(filled, tumour, source[tumour])
        keep = {k: sparams[k] for k in ("scale", "angle", "flip", "position", "tumour_area", "anchored", "same_side",
                                        "placement_candidates", "surroundings_cost") if k in sparams}
        return filled, region, {**keep, **params, "histogram_matched": True}


def healthy_reference(image: np.ndarray, region: np.ndarray, anatomy: Anatomy, lesion: np.ndarray,
                      rng: np.random.Generator, candidates: int = 24) -> tuple[np.ndarray | None, list | None]:
    """The pixel values of a healthy place of the slice with the region's shape, inside the head's interior and
    away from the lesion, as bright as the region's surroundings (among ``candidates`` drawn from every place
    the region fits); (None, None) when it fits nowhere."""
    from .anatomy import ring
    from .touchups import donor_shifts

    avoid = ndi.binary_dilation(lesion | region, iterations=4)
    shifts = donor_shifts(region, anatomy.interior & ~avoid)
    if not len(shifts):
        return None, None
    picks = shifts[rng.choice(len(shifts), size=min(candidates, len(shifts)), replace=False)]
    img = image.astype(np.float64)
    near = ring(region, 0, 8) & anatomy.head & ~lesion
    level = float(np.median(img[near])) if near.sum() > 20 else float(np.median(img[anatomy.interior]))
    ys, xs = np.nonzero(region)
    costs = [abs(float(np.median(img[ys + dy, xs + dx])) - level) for dy, dx in picks]
    dy, dx = (int(v) for v in picks[int(np.argmin(costs))])
    return img[ys + dy, xs + dx], [dy, dx]


def match_histogram(image: np.ndarray, where: np.ndarray, reference: np.ndarray, ramp: float = 2.0) -> np.ndarray:
    """``image`` with its values inside ``where`` mapped, rank for rank, onto the distribution of
    ``reference`` (a monotone map: the spatial pattern is kept); the change fades out over ``ramp`` px inside
    the edge of ``where`` so that no step appears there."""
    out = image.astype(np.float64).copy()
    vals = out[where]
    if vals.size < 2 or reference.size < 2:
        return out
    ranks = np.argsort(np.argsort(vals, kind="stable"), kind="stable") / (vals.size - 1)
    mapped = np.quantile(reference.astype(np.float64), ranks)
    weight = np.clip(ndi.distance_transform_edt(where)[where] / ramp, 0.0, 1.0)
    out[where] = weight * mapped + (1.0 - weight) * vals
    return out


# --- training ---------------------------------------------------------------------------------


def training_examples(slices, rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``n`` (patch, mask, flag) triples: half removals (a tumour shape on healthy tissue, target = the healthy
    original), half injections (a real tumour's region erased, target = the tumour)."""
    from .anatomy import analyse

    tumours = [s for s in slices if s.tumour_area >= 100]
    healthy = [s for s in slices if not s.mask.any()]
    shapes = []
    for s in tumours:
        labels, k = ndi.label(s.mask)
        for i in range(1, k + 1):
            comp = labels == i
            ys, xs = np.nonzero(comp)
            if 60 <= comp.sum() and max(np.ptp(ys), np.ptp(xs)) < MAX_CROP / 1.7:
                shapes.append(comp[ys.min():ys.max() + 1, xs.min():xs.max() + 1])
    if not tumours or not healthy or not shapes:
        raise ValueError("Training the inpainter needs tumour and tumour-free slices.")
    tissue_cache: dict[int, np.ndarray] = {}
    imgs, masks, flags = [], [], []
    while len(imgs) < n:
        inject = len(imgs) % 2 == 1
        try:
            if inject:
                s = tumours[int(rng.integers(len(tumours)))]
                region = ndi.binary_dilation(s.mask, iterations=3)
                crop = crop_around(region, rng)
                img, msk = to_patch(s.image, region, crop)
            else:
                s = healthy[int(rng.integers(len(healthy)))]
                key = id(s)
                if key not in tissue_cache:
                    tissue_cache[key] = analyse(s.image).tissue
                tissue = tissue_cache[key]
                ty, tx = np.nonzero(tissue)
                if ty.size == 0:
                    continue
                shape = shapes[int(rng.integers(len(shapes)))]
                shape = ndi.binary_dilation(shape, iterations=3) if rng.random() < 0.5 else shape
                if rng.random() < 0.5:
                    shape = shape[:, ::-1]
                k = int(rng.integers(ty.size))
                y0, x0 = ty[k] - shape.shape[0] // 2, tx[k] - shape.shape[1] // 2
                if y0 < 0 or x0 < 0 or y0 + shape.shape[0] > s.image.shape[0] or x0 + shape.shape[1] > s.image.shape[1]:
                    continue
                region = np.zeros(s.image.shape, bool)
                region[y0:y0 + shape.shape[0], x0:x0 + shape.shape[1]] = shape
                if tissue[region].mean() < 0.8:
                    continue
                crop = crop_around(region, rng)
                img, msk = to_patch(s.image, region, crop)
        except NotApplicable:
            continue
        if rng.random() < 0.5:
            img, msk = img[:, ::-1], msk[:, ::-1]
        imgs.append(np.ascontiguousarray(img))
        masks.append(np.ascontiguousarray(msk))
        flags.append(1.0 if inject else 0.0)
    return np.stack(imgs)[:, None], np.stack(masks)[:, None], np.array(flags, np.float32)[:, None, None, None]


def train(slices, out: Path, *, seconds: float, seed: int = 0, batch: int = 16, n_examples: int = 6000,
          threads: int = 2, log=print) -> dict:
    """Adversarial + L1 training for a wall-time budget; writes a bundle {generator, discriminator, meta}."""
    torch, nn = _torch()
    torch.manual_seed(seed)
    torch.set_num_threads(threads)
    rng = np.random.default_rng(seed)
    t0 = time.monotonic()
    imgs, masks, flags = training_examples(slices, rng, n_examples)
    log(f"{len(imgs)} training patches in {time.monotonic() - t0:.0f} s")
    x, m, f = torch.from_numpy(imgs), torch.from_numpy(masks), torch.from_numpy(flags)
    gen, disc = build_generator(), build_discriminator()
    opt_g = torch.optim.Adam(gen.parameters(), lr=2e-4, betas=(0.5, 0.999))
    opt_d = torch.optim.Adam(disc.parameters(), lr=2e-4, betas=(0.5, 0.999))
    gen_rng = torch.Generator().manual_seed(seed)
    start, step = time.monotonic(), 0
    history = []
    while time.monotonic() - start < seconds:
        idx = torch.randint(len(x), (batch,), generator=gen_rng)
        xb, mb, fb = x[idx], m[idx], f[idx]
        fake = gen(xb, mb, fb)
        # discriminator: hinge loss on real vs filled patches
        d_loss = torch.relu(1 - disc(xb, mb, fb)).mean() + torch.relu(1 + disc(fake.detach(), mb, fb)).mean()
        opt_d.zero_grad()
        d_loss.backward()
        opt_d.step()
        # generator: fool the discriminator, stay close to the truth inside the region
        l1 = (torch.abs(fake - xb) * mb).sum() / mb.sum().clamp(min=1)
        g_adv = -disc(fake, mb, fb).mean()
        g_loss = 10.0 * l1 + 0.1 * g_adv
        opt_g.zero_grad()
        g_loss.backward()
        opt_g.step()
        step += 1
        if step % 100 == 0:
            history.append({"step": step, "l1": round(l1.item(), 4), "d": round(d_loss.item(), 4)})
            log(f"step {step} l1 {l1.item():.4f} d {d_loss.item():.3f} ({time.monotonic() - start:.0f} s)")
    meta = {"steps": step, "seconds": round(time.monotonic() - start, 1), "patch": PATCH, "max_crop": MAX_CROP,
            "examples": len(imgs), "seed": seed, "history": history[-20:]}
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"generator": gen.state_dict(), "discriminator": disc.state_dict(), "meta": meta}, out)
    Inpainter._cache.pop(str(out), None)
    return meta
