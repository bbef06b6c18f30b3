from pathlib import Path as _P
HERE = _P(__file__).resolve().parent
ROOT = HERE.parents[2]
import json, sys, numpy as np, cv2
from pathlib import Path
from scipy import ndimage as ndi
sys.path.insert(0, str(ROOT)); sys.path.insert(0, str(HERE))
from inference.ml.tamper.anatomy import analyse
from inference.ml.evaluate import PERTURBATIONS
from inference.ml.input_check import slice_statistics
ds = Path("/work/data/tamper-v12")
ann = json.load(open(ds / "annotations.json"))
LAP = np.array([[1,-2,1],[-2,4,-2],[1,-2,1]], float)
mad = lambda v: 1.4826 * float(np.median(np.abs(v - np.median(v))))
def feats(img):
    t = analyse(img).tissue
    if t.sum() < 500: return None
    f = img.astype(np.float64)
    g1 = ndi.gaussian_filter(f, 1.0); g2 = ndi.gaussian_filter(f, 2.0); g4 = ndi.gaussian_filter(f, 4.0)
    grad = np.hypot(ndi.sobel(g2, 0), ndi.sobel(g2, 1))
    flat = t & (grad < np.percentile(grad[t], 40))
    lap = cv2.filter2D(f, -1, LAP, borderType=cv2.BORDER_REFLECT)
    d = {"lap": mad(lap[flat]) / 6, "r1": mad((f - g1)[flat]), "b12": mad((g1 - g2)[flat]), "b24": mad((g2 - g4)[flat])}
    # horizontal vs vertical first differences (anisotropy) and lag-1 correlation of the residual
    r = (f - g1)
    a, b = r[:, 1:][flat[:, 1:] & flat[:, :-1]], r[:, :-1][flat[:, 1:] & flat[:, :-1]]
    d["corr1"] = float(np.corrcoef(a, b)[0, 1]) if a.size > 50 else 0.0
    s = slice_statistics(img); d["block"] = s["blockiness"] if s else 1.0
    lo, hi = np.percentile(f[t], [5, 95]); d["spread"] = hi - lo
    return d
def noise(s): return lambda img, rng: np.clip(img.astype(np.float32) + rng.normal(0, s, img.shape), 0, 255).round().astype(np.uint8)
def jpeg(q):
    def fn(img, rng):
        ok, buf = cv2.imencode(".jpg", img, [int(cv2.IMWRITE_JPEG_QUALITY), q]); return cv2.imdecode(buf, cv2.IMREAD_GRAYSCALE)
    return fn
def resample(factor, interp=cv2.INTER_LINEAR):
    def fn(img, rng):
        h, w = img.shape
        small = cv2.resize(img, (int(round(w * factor)), int(round(h * factor))), interpolation=cv2.INTER_AREA if factor < 1 else interp)
        return cv2.resize(small, (w, h), interpolation=interp if factor < 1 else cv2.INTER_AREA)
    return fn
P = {"clean": None, "noise 0.5": noise(0.5), "noise 1": noise(1), "noise 2": noise(2), "noise 3": noise(3),
     "JPEG 95": jpeg(95), "JPEG 90": jpeg(90), "JPEG 75": jpeg(75), "resample 0.75": PERTURBATIONS["resample 0.75x and back"],
     "resample 0.9 bicubic": resample(0.9, cv2.INTER_CUBIC), "upsample 1.5": resample(1.5),
     "blur 0.6": lambda img, rng: cv2.GaussianBlur(img, (0, 0), 0.6),
     "gamma 0.8": lambda img, rng: np.clip(255 * (img / 255.0) ** 0.8, 0, 255).round().astype(np.uint8),
     "contrast 1.25": PERTURBATIONS["contrast x1.25"]}
which = sys.argv[1]
if which == "train":
    res = [{"source": im["source"], "clean": feats(cv2.imread(str(ds / im["file_name"]), -1))} for im in ann["images"] if im.get("split") in ("train",)]
else:
    res = []
    test = [im for im in ann["images"] if im.get("split") == "test"][:300]
    for im in test:
        img = cv2.imread(str(ds / im["file_name"]), -1)
        res.append({"source": im["source"], "patient": im["patient_id"], **{k: feats(img if fn is None else fn(img, np.random.default_rng(im["id"]))) for k, fn in P.items()}})
json.dump(res, open(str(HERE / f"feats4-{which}.json"), "w")); print("done")
