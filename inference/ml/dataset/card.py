"""The dataset card: counts per verdict, method, split and source, the tamper-area distribution, a contact
sheet of every class and method (with and without its mask), and the realism measurement. Written to
``DATASET_DIR/card/`` as ``DATASET_CARD.md``, ``dataset_card.json``, ``contact_sheet.png``, ``areas.png``."""
from __future__ import annotations

import json
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np

from ..coco import SPLITS, CocoDataset, load_dataset
from ..labels import VERDICTS

CARD_DIR = "card"


def _counts(ds: CocoDataset) -> dict:
    by = defaultdict(Counter)
    for r in ds:
        method = r.method or "-"
        by["verdict"][r.verdict] += 1
        by["method"][f"{r.verdict}/{method}"] += 1
        by["split"][r.split or "(none)"] += 1
        by["source"][r.source] += 1
        by["split_verdict"][f"{r.split}/{r.verdict}"] += 1
        by["split_method"][f"{r.split}/{r.verdict}/{method}"] += 1
        by["source_verdict"][f"{r.source}/{r.verdict}"] += 1
        by["patients"][f"{r.split}"] += 0
    patients = defaultdict(set)
    for r in ds:
        patients[(r.source, r.split)].add(r.patient_id)
    out = {k: dict(sorted(v.items())) for k, v in by.items() if k != "patients"}
    out["patients"] = {f"{src}/{split}": len(p) for (src, split), p in sorted(patients.items(), key=str)}
    return out


def _areas(ds: CocoDataset) -> dict:
    groups = defaultdict(list)
    for r in ds:
        if r.verdict == "no_tumor":
            continue
        area = r.extra.get("mask_area")
        if area is None:
            area = int(r.mask().sum())
        groups[f"{r.verdict}/{r.method}" if r.method else r.verdict].append(area / float(r.width * r.height))
    out = {}
    for name, vals in sorted(groups.items()):
        v = np.array(vals)
        q = np.percentile(v, [0, 10, 25, 50, 75, 90, 100])
        out[name] = {"n": int(v.size), **{k: round(float(x), 4) for k, x in
                                          zip(("min", "p10", "p25", "median", "p75", "p90", "max"), q)}}
    return out, groups


def _overlay(img: np.ndarray, mask: np.ndarray):
    import cv2

    rgb = cv2.cvtColor(img if img.dtype == np.uint8 else (img >> 8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    if mask.any():
        contours, _ = cv2.findContours(mask.astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_NONE)
        cv2.drawContours(rgb, contours, -1, (0, 0, 255), 1)
    return rgb


def contact_sheet(ds: CocoDataset, path: Path, *, per_source: int = 2, tile: int = 160, seed: int = 0) -> Path:
    """Rows: each verdict/method; columns: examples from every source, each plain and with its mask."""
    import cv2

    rng = np.random.default_rng(seed)
    sources = sorted({r.source for r in ds})
    groups = defaultdict(list)
    for r in ds:
        groups[(r.verdict, r.method)].append(r)
    rows_keys = sorted(groups, key=lambda k: (VERDICTS.index(k[0]), k[1] or ""))
    label_w = 170
    rows = []
    for key in rows_keys:
        tiles = []
        for src in sources:
            recs = [r for r in groups[key] if r.source == src]
            picks = [recs[i] for i in rng.choice(len(recs), min(per_source, len(recs)), replace=False)] if recs else []
            for j in range(per_source):
                if j < len(picks):
                    img = picks[j].pixels()
                    plain = _overlay(img, np.zeros(img.shape, bool))
                    over = _overlay(img, picks[j].mask())
                    tiles += [cv2.resize(plain, (tile, tile)), cv2.resize(over, (tile, tile))]
                else:
                    tiles += [np.zeros((tile, tile, 3), np.uint8)] * 2
        label = np.zeros((tile, label_w, 3), np.uint8)
        cv2.putText(label, key[0], (6, tile // 2 - 8), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
        cv2.putText(label, key[1] or "authentic", (6, tile // 2 + 14), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (200, 200, 255), 1)
        rows.append(np.concatenate([label] + tiles, axis=1))
    header = np.zeros((24, rows[0].shape[1], 3), np.uint8)
    for si, src in enumerate(sources):
        x = label_w + si * per_source * 2 * tile + 6
        cv2.putText(header, f"{src} (plain | mask)", (x, 17), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1)
    sheet = np.concatenate([header] + rows, axis=0)
    cv2.imwrite(str(path), sheet)
    return path


def _area_plot(groups: dict, path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    bins = np.linspace(0, max(max(v) for v in groups.values()), 40)
    for name, vals in sorted(groups.items()):
        ax.hist(vals, bins=bins, histtype="step", label=f"{name} (n={len(vals)})")
    ax.set_xlabel("region area / slice area")
    ax.set_ylabel("images")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _table(title: str, rows: dict, unit: str = "images") -> str:
    lines = [f"| {title} | {unit} |", "|---|---:|"]
    lines += [f"| {k} | {v} |" for k, v in rows.items()]
    return "\n".join(lines)


def _split_table(counts: dict) -> str:
    keys = sorted({k.split("/", 1)[1] for k in counts["split_method"]},
                  key=lambda k: (VERDICTS.index(k.split("/")[0]), k))
    lines = ["| verdict/method | " + " | ".join(SPLITS) + " |", "|---|" + "---:|" * len(SPLITS)]
    for k in keys:
        lines.append(f"| {k} | " + " | ".join(str(counts["split_method"].get(f"{s}/{k}", 0)) for s in SPLITS) + " |")
    return "\n".join(lines)


def _realism_table(realism: dict) -> str:
    detectors = [d for d in ("histogram_logreg", "border_noise_logreg", "texture_logreg", "small_cnn",
                             "surroundings_logreg", "location_logreg", "brain_level_logreg") if d in realism]
    names = list(realism[detectors[0]].keys()) if detectors else []
    intervals = realism.get("intervals", {})

    def cell(detector: str, name: str) -> str:
        value, ci = realism[detector].get(name), intervals.get(detector, {}).get(name)
        return f"{value} ({ci[0]:.2f}-{ci[1]:.2f})" if value is not None and ci else str(value)

    lines = ["| comparison | " + " | ".join(detectors) + " |", "|---|" + "---:|" * len(detectors)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(cell(d, n) for d in detectors) + " |")
    return "\n".join(lines)


def _beyond_table(beyond: dict) -> str:
    """Each trace detector's AUC minus the surroundings control's, with its paired interval."""
    detectors = [d for d, rows in beyond.items() if rows]
    names = list(beyond[detectors[0]].keys()) if detectors else []

    def cell(detector: str, name: str) -> str:
        d = beyond[detector].get(name)
        return "n/a" if not d else f"{d['difference']:+.3f} ({d['interval'][0]:+.2f} to {d['interval'][1]:+.2f})"

    lines = ["| comparison | " + " | ".join(f"{d} - surroundings" for d in detectors) + " |",
             "|---|" + "---:|" * len(detectors)]
    for n in names:
        lines.append(f"| {n} | " + " | ".join(cell(d, n) for d in detectors) + " |")
    return "\n".join(lines)


def write_card(path: str | Path, *, build_seconds: float | None = None, realism: dict | None = None,
               measure: bool = True, cnn_seconds: float = 180.0, progress: bool = False) -> dict:
    """Write the card into ``path/card/``; measures realism unless given or ``measure`` is False."""
    root = Path(path)
    ds = load_dataset(root)
    out = root / CARD_DIR
    out.mkdir(exist_ok=True)
    counts = _counts(ds)
    areas, groups = _areas(ds)
    sheet = contact_sheet(ds, out / "contact_sheet.png")
    area_png = _area_plot(groups, out / "areas.png")
    if realism is None and measure:
        from .realism import measure_realism

        if progress:
            print(f"measuring realism (small CNN for {cnn_seconds:.0f} s) ...", flush=True)
        realism = measure_realism(ds, cnn_seconds=cnn_seconds)
    card = {
        "dataset": str(root),
        "info": ds.info,
        "n_images": len(ds),
        "build_seconds": None if build_seconds is None else round(build_seconds, 1),
        "counts": counts,
        "tamper_area_fraction": areas,
        "realism": realism,
        "paths": {"markdown": str(out / "DATASET_CARD.md"), "json": str(out / "dataset_card.json"),
                  "contact_sheet": str(sheet), "areas": str(area_png)},
    }
    (out / "dataset_card.json").write_text(json.dumps(card, indent=2, sort_keys=False))
    md = [
        f"# Dataset card: {root.name}",
        "",
        f"{len(ds)} single-channel 8-bit PNG slices in the project's COCO contract, four verdicts, split by "
        f"patient. Sources: {', '.join(sorted(counts['source']))}. Seed {ds.info.get('seed')}."
        + (f" Built in {build_seconds:.0f} s." if build_seconds else ""),
        "",
        "## Counts",
        "",
        _table("verdict", counts["verdict"]),
        "",
        _table("verdict/method", counts["method"]),
        "",
        _table("source/verdict", counts["source_verdict"]),
        "",
        _table("source/split", counts["patients"], unit="patients"),
        "",
        "### Per split",
        "",
        _split_table(counts),
        "",
        "## Tamper area (region area / slice area)",
        "",
        "| class | n | min | p10 | median | p90 | max |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    md += [f"| {k} | {v['n']} | {v['min']} | {v['p10']} | {v['median']} | {v['p90']} | {v['max']} |"
           for k, v in areas.items()]
    md += ["", "![areas](areas.png)", "", "## Contact sheet", "",
           "Every class and method from every source, each slice plain and with its ground-truth region (red).",
           "", "![contact sheet](contact_sheet.png)", ""]
    if realism:
        md += ["## Realism: can cheap detectors tell tampered from authentic?", "", realism.get("protocol", ""), "",
               _realism_table(realism), ""]
        if "small_cnn_training" in realism:
            t = realism["small_cnn_training"]
            md += [f"Small CNN: {t['steps']} steps ({t['epochs']} epochs) in {t['seconds']} s on {t['input']}, "
                   "one CPU thread.", ""]
        if "surroundings_logreg" in realism:
            md += ["`surroundings_logreg` is a control: the texture statistics of the ring 2-8 px outside the region "
                   "only, pixels no method changes. What it catches comes from where the region sits (an erased "
                   "tumour's surroundings stay), not from the edit; the trace detectors above it read the edit.", ""]
        if realism.get("beyond_surroundings"):
            md += ["### Beyond the surroundings: what the trace detectors read of the edit itself", "",
                   "Each trace detector's AUC minus the surroundings control's on the same test slices; in brackets "
                   "the 95 % interval, both AUCs recomputed on each of the same patient resamples. An interval "
                   "wholly above 0 says the detector reads more than the place the region sits in.", "",
                   _beyond_table(realism["beyond_surroundings"]), ""]
        if "location_logreg" in realism:
            md += ["`location_logreg` is an audit of placement: how well where the region sits in the head (front to "
                   "back, distance from the midline) alone tells each class from its lookalike.", ""]
        if "brain_level_logreg" in realism:
            md += ["`brain_level_logreg` is an audit, not a trace detector: how well the slice's level in the "
                   "stack (the anatomy in view) alone tells each class from its lookalike.", ""]
        md += ["Method: `inference.ml.dataset.realism` (module docstring).", ""]
    md += ["## Provenance", "",
           "Each image's `provenance` (in `annotations.json`) names its source file, slice index, seed and the "
           "tampering parameters (donor patient and file, scale, angle, placement, touch-ups drawn).", ""]
    (out / "DATASET_CARD.md").write_text("\n".join(md))
    return card
