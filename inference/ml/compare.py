"""Two evaluations of the same images, compared image by image: is model B better than model A?

Reads two ``evaluate_detector`` output folders (``predictions.jsonl``, ``metrics.json``, ``run.json``) and answers
with paired figures, not two separate ones:

- each figure for A and for B and the difference B - A, with a 95 % interval from one patient-clustered bootstrap
  for both (``intervals.paired_differences``: both models see the same resample of patients, so what they share
  cancels out);
- the images B gets right that A got wrong (fixed) and the reverse (broken), with the exact McNemar p-value of
  that split (it treats slices as independent; the interval is the one that counts patients);
- where the two differ: accuracy and fixed / broken by corpus and by verdict and tampering method (``gan`` injects
  and removes), when the dataset is at hand.

The runs must cover the same images of the same dataset (the sha256 of its annotations.json in run.json, the ids,
file names and true verdicts in predictions.jsonl): anything else is refused with what differs. Pure Python and
numpy (scipy for the binomial test); no Django.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from .intervals import DEFAULT_RESAMPLES, paired_differences
from .labels import VERDICTS

OUTPUT_FILES = ("comparison.json", "comparison.md")


class ComparisonError(ValueError):
    """Two runs that cannot be compared; the message says what differs or what is missing."""


@dataclass
class Run:
    path: Path
    metrics: dict
    rows: list[dict]
    about: dict = field(default_factory=dict)  # run.json ({} for a run written before it existed)

    @property
    def model(self) -> str:
        m = self.metrics.get("model") or {}
        label = " ".join(str(m[k]) for k in ("name", "version") if m.get(k)) or "unnamed model"
        return f"{label} ({str(m['sha256'])[:12]})" if m.get("sha256") else label


def load_run(path: str | Path) -> Run:
    """An evaluate_detector output folder. Raises ComparisonError naming a missing or unreadable file."""
    path = Path(path)
    if not path.is_dir():
        raise ComparisonError(f"{path}: no such folder (give evaluate_detector's --out folders).")
    files = {name: path / name for name in ("metrics.json", "predictions.jsonl")}
    missing = [name for name, f in files.items() if not f.is_file()]
    if missing:
        raise ComparisonError(f"{path}: no {' and no '.join(missing)}; is it an evaluate_detector output folder?")
    try:
        metrics = json.loads(files["metrics.json"].read_text(encoding="utf-8"))
        rows = [json.loads(line) for line in files["predictions.jsonl"].read_text(encoding="utf-8").splitlines()
                if line.strip()]
        about = json.loads((path / "run.json").read_text(encoding="utf-8")) if (path / "run.json").is_file() else {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ComparisonError(f"{path}: a file cannot be read ({exc}).") from exc
    keys = ("image_id", "file_name", "verdict", "predicted", "tamper_score", "iou")
    for n, row in enumerate(rows, 1):
        lacking = [k for k in keys if k not in row]
        if lacking:
            raise ComparisonError(f"{path}/predictions.jsonl line {n}: no {', '.join(lacking)}.")
    if not rows:
        raise ComparisonError(f"{path}/predictions.jsonl holds no predictions.")
    return Run(path, metrics, rows, about)


def mcnemar_exact(fixed: int, broken: int) -> float:
    """Two-sided exact McNemar p-value of ``fixed`` against ``broken`` discordant images (1.0 when there are none)."""
    if fixed + broken == 0:
        return 1.0
    from scipy.stats import binomtest

    return float(binomtest(min(fixed, broken), fixed + broken, 0.5).pvalue)


def _check_same_images(a: Run, b: Run) -> list[tuple[dict, dict]]:
    sha_a, sha_b = a.about.get("dataset_sha256"), b.about.get("dataset_sha256")
    if sha_a and sha_b and sha_a != sha_b:
        raise ComparisonError(
            f"The runs evaluated different datasets (annotations.json sha256 {sha_a[:12]}... in {a.path}, "
            f"{sha_b[:12]}... in {b.path}); compare runs on the same dataset."
        )
    if "split" in a.about and "split" in b.about and a.about["split"] != b.about["split"]:
        raise ComparisonError(f"The runs evaluated different splits ({a.about['split']!r} and "
                              f"{b.about['split']!r}); compare runs on the same split.")
    by_a = {r["image_id"]: r for r in a.rows}
    by_b = {r["image_id"]: r for r in b.rows}
    for run, by in ((a, by_a), (b, by_b)):
        if len(by) != len(run.rows):
            raise ComparisonError(f"{run.path}/predictions.jsonl names an image id twice.")
    only_a, only_b = sorted(set(by_a) - set(by_b)), sorted(set(by_b) - set(by_a))
    if only_a or only_b:
        raise ComparisonError(
            f"The runs cover different images: {len(only_a)} only in {a.path} (ids {only_a[:5]}"
            f"{'...' if len(only_a) > 5 else ''}), {len(only_b)} only in {b.path} (ids {only_b[:5]}"
            f"{'...' if len(only_b) > 5 else ''}). Was one run made with --limit? Evaluate both on the same images."
        )
    pairs = [(by_a[i], by_b[i]) for i in sorted(by_a)]
    for ra, rb in pairs:
        if ra["file_name"] != rb["file_name"] or ra["verdict"] != rb["verdict"]:
            raise ComparisonError(
                f"Image {ra['image_id']} is {ra['file_name']} ({ra['verdict']}) in {a.path} but {rb['file_name']} "
                f"({rb['verdict']}) in {b.path}: the runs are of different datasets."
            )
    return pairs


def _dataset_records(a: Run, dataset_dir: str | Path | None) -> tuple[dict | None, str | None]:
    """image id -> record of the dataset both runs read (patients, corpora, methods), or None and why not."""
    from .coco import DatasetError, load_dataset
    from .predictor import file_sha256

    where = dataset_dir or a.about.get("dataset_dir")
    if not where:
        return None, "the runs do not say which dataset they read; give --dataset"
    annotations = Path(where) / "annotations.json"
    if not annotations.is_file():
        if dataset_dir:
            raise ComparisonError(f"{dataset_dir}: no annotations.json; --dataset names the dataset both runs read.")
        return None, f"the dataset the runs read, {where}, is not here; give --dataset"
    recorded = a.about.get("dataset_sha256")
    if recorded and file_sha256(annotations) != recorded:
        raise ComparisonError(f"{where}/annotations.json is not the one the runs read (sha256 {recorded[:12]}... "
                              "recorded in run.json); give --dataset the dataset they read.")
    try:
        return {r.id: r for r in load_dataset(where)}, None
    except DatasetError as exc:
        raise ComparisonError(str(exc)) from exc


def _groups(pairs: list[tuple[dict, dict]], records: dict) -> dict[str, list[dict]]:
    def correct(r: dict) -> bool:
        return r["verdict"] == r["predicted"]

    out: dict[str, list[dict]] = {"source": [], "method": []}
    for kind in out:
        members: dict[str, list[tuple[dict, dict]]] = {}
        for ra, rb in pairs:
            rec = records.get(ra["image_id"])
            if rec is None:
                continue
            name = rec.source if kind == "source" else (f"{rec.verdict} {rec.method}" if rec.method else rec.verdict)
            members.setdefault(str(name), []).append((ra, rb))
        for name, group in sorted(members.items()):
            out[kind].append({
                "name": name, "n_images": len(group),
                "accuracy_a": sum(correct(x) for x, _ in group) / len(group),
                "accuracy_b": sum(correct(y) for _, y in group) / len(group),
                "fixed": sum(correct(y) and not correct(x) for x, y in group),
                "broken": sum(correct(x) and not correct(y) for x, y in group),
            })
    return out


def compare_runs(a: Run, b: Run, *, dataset_dir: str | Path | None = None, resamples: int = DEFAULT_RESAMPLES,
                 seed: int = 0) -> dict:
    """The paired comparison of run B against run A (B - A); see the module's docstring."""
    pairs = _check_same_images(a, b)
    records, no_dataset = _dataset_records(a, dataset_dir)
    if records is not None:
        missing = [ra["image_id"] for ra, _ in pairs if ra["image_id"] not in records]
        if missing:
            raise ComparisonError(f"{len(missing)} evaluated images are not in the dataset (ids {missing[:5]}); "
                                  "give --dataset the dataset the runs read.")
        patients = [str(records[ra["image_id"]].patient_id or f"image-{ra['image_id']}") for ra, _ in pairs]
        patient_note = None
    else:
        patients = [f"image-{ra['image_id']}" for ra, _ in pairs]
        patient_note = (f"Images resampled one by one ({no_dataset}): slices of one patient are not independent, "
                        "so the intervals are too narrow.")
    rows_a, rows_b = [x for x, _ in pairs], [y for _, y in pairs]
    figures = paired_differences(rows_a, rows_b, patients, resamples=resamples, seed=seed)
    fixed = sum(y["verdict"] == y["predicted"] and x["verdict"] != x["predicted"] for x, y in pairs)
    broken = sum(x["verdict"] == x["predicted"] and y["verdict"] != y["predicted"] for x, y in pairs)
    latency = {}
    for name, run in (("a", a), ("b", b)):
        lat = run.metrics.get("latency_s") or {}
        latency[name] = {k: lat.get(k) for k in ("p50", "p95", "device", "threads")}
    same_machine = all(latency["a"][k] == latency["b"][k] for k in ("device", "threads"))
    result = {
        "a": {"path": str(a.path), "model": a.metrics.get("model", {}), "label": a.model},
        "b": {"path": str(b.path), "model": b.metrics.get("model", {}), "label": b.model},
        "dataset_dir": str(dataset_dir or a.about.get("dataset_dir") or "") or None,
        "dataset_sha256": a.about.get("dataset_sha256") or b.about.get("dataset_sha256"),
        "split": a.about.get("split"),
        "n_images": len(pairs),
        "figures": figures,
        "paired": {"fixed": int(fixed), "broken": int(broken), "both_right":
                   sum(x["verdict"] == x["predicted"] and y["verdict"] == y["predicted"] for x, y in pairs),
                   "both_wrong": sum(x["verdict"] != x["predicted"] and y["verdict"] != y["predicted"]
                                     for x, y in pairs),
                   "mcnemar_p": mcnemar_exact(fixed, broken)},
        "latency_s": {**latency, "comparable": same_machine},
        "groups": _groups(pairs, records) if records is not None else None,
        "notes": [n for n in (patient_note, figures.get("note")) if n],
    }
    result["summary"] = summary(result)
    return result


def _pct(x: float | None, signed: bool = False) -> str:
    if x is None:
        return "n/a"
    return f"{x:+.3f}" if signed else f"{x:.3f}"


def summary(result: dict) -> str:
    """What the comparison shows about accuracy, in one or two sentences."""
    acc = result["figures"]["accuracy"]
    paired = result["paired"]
    counts = (f"B fixed {paired['fixed']} of A's errors and made {paired['broken']} new ones "
              f"(exact McNemar p = {paired['mcnemar_p']:.2g}).")
    if acc["low"] is None:
        return f"Accuracy B - A {_pct(acc['difference'], True)}, with no interval (too few patients). {counts}"
    span = f"{_pct(acc['difference'], True)} (95 % CI {_pct(acc['low'], True)} to {_pct(acc['high'], True)})"
    if acc["low"] > 0:
        head = f"B is more accurate than A: {span}."
    elif acc["high"] < 0:
        head = f"B is less accurate than A: {span}."
    else:
        head = f"No difference in accuracy is shown: B - A {span}, an interval that holds 0."
    return f"{head} {counts}"


def comparison_markdown(result: dict) -> str:
    """The comparison as Markdown (comparison.md and the command's output)."""
    f = result["figures"]
    lines = [
        "# Comparison of two evaluations",
        "",
        f"- A: {result['a']['label']}, `{result['a']['path']}`",
        f"- B: {result['b']['label']}, `{result['b']['path']}`",
        f"- {result['n_images']} images, {f['n_patients']} patients"
        + (f", split `{result['split']}`" if result.get("split") else "")
        + (f", dataset `{result['dataset_dir']}`" if result.get("dataset_dir") else ""),
        "",
        result["summary"],
        "",
        "| figure | A | B | B - A | 95 % CI of B - A |",
        "|---|---|---|---|---|",
    ]

    def row(name: str, fig: dict) -> str:
        ci = "n/a" if fig["low"] is None else f"{_pct(fig['low'], True)} to {_pct(fig['high'], True)}"
        return f"| {name} | {_pct(fig['a'])} | {_pct(fig['b'])} | {_pct(fig['difference'], True)} | {ci} |"

    for key, name in (("accuracy", "accuracy"), ("macro_f1", "macro F1"), ("mean_iou", "mean IoU"),
                      ("tamper_auc", "tamper AUC")):
        lines.append(row(name, f[key]))
    for v in VERDICTS:
        lines.append(row(f"F1 {v}", f["f1"][v]))
    p = result["paired"]
    intervals = (f"the intervals above resample {f['n_patients']} patients, {f['method']}, {f['resamples']} resamples"
                 if f["resamples"] else f"no interval: {f['n_patients']} patients are too few to resample")
    lines += ["", f"Image by image: both right {p['both_right']}, both wrong {p['both_wrong']}, fixed by B "
              f"{p['fixed']}, broken by B {p['broken']}; exact McNemar p = {p['mcnemar_p']:.3g} (slices counted as "
              f"independent; {intervals})."]
    lat = result["latency_s"]
    if lat["a"].get("p50") is not None and lat["b"].get("p50") is not None:
        where = (f"both {lat['a']['device']}, {lat['a']['threads']} threads, timed in their own runs: comparable "
                 "only if both ran on the same idle machine" if lat["comparable"] else
                 f"different machines or settings ({lat['a']['device']}, {lat['a']['threads']} threads against "
                 f"{lat['b']['device']}, {lat['b']['threads']}): not comparable")
        lines += ["", f"Latency p50: A {lat['a']['p50']:.3f} s, B {lat['b']['p50']:.3f} s ({where})."]
    if result["groups"]:
        for kind, title in (("source", "By corpus"), ("method", "By verdict and tampering method")):
            lines += ["", f"## {title}", "", "| group | images | A | B | fixed | broken |", "|---|---|---|---|---|---|"]
            for g in result["groups"][kind]:
                lines.append(f"| {g['name']} | {g['n_images']} | {_pct(g['accuracy_a'])} | {_pct(g['accuracy_b'])} "
                             f"| {g['fixed']} | {g['broken']} |")
    if result["notes"]:
        lines += [""] + [f"Note: {n}" for n in result["notes"]]
    return "\n".join(lines) + "\n"


def write_comparison(result: dict, out_dir: str | Path) -> list[Path]:
    """comparison.json and comparison.md into ``out_dir`` (created), each written whole or not at all."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    texts = {"comparison.json": json.dumps(result, indent=2) + "\n", "comparison.md": comparison_markdown(result)}
    written = []
    for name, text in texts.items():
        fd, tmp = tempfile.mkstemp(prefix=f".{name}.", dir=out)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(text)
            os.replace(tmp, out / name)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        written.append(out / name)
    return written
