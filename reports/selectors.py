"""Reads of the reports app: the current model's card, evaluation runs and their tables."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from django.conf import settings
from django.db.models import QuerySet

from reports.models import EvaluationRun

# --- The model card -------------------------------------------------------------------------------------

_card_cache: dict[tuple, "ModelCard"] = {}


@dataclass
class ModelCard:
    weights_path: str
    available: bool
    problem: str = ""
    name: str = ""
    version: str = ""
    sha256: str = ""
    created: str = ""
    description: str = ""
    backbone: str = ""
    trained: bool | None = None
    meta: dict = field(default_factory=dict)  # everything else the bundle says about itself
    card_text: str = ""  # models/MODEL_CARD.md (or MODEL_CARD.md beside the weights)


def _card_text(weights: Path) -> str:
    for candidate in (weights.parent / "MODEL_CARD.md", Path(settings.BASE_DIR) / "models" / "MODEL_CARD.md"):
        if candidate.is_file():
            return candidate.read_text(encoding="utf-8", errors="replace")
    return ""


def model_card_current() -> ModelCard:
    """What the installed weights bundle (settings.DETECTOR_WEIGHTS) says about itself: read from the
    bundle's metadata without building the network, cached until the file changes."""
    weights = Path(settings.DETECTOR_WEIGHTS)
    try:
        stat = weights.stat()
    except OSError:
        return ModelCard(
            weights_path=str(weights), available=False, card_text=_card_text(weights),
            problem=f"No detector weights at {weights}. Train one (`manage.py train_detector`) or point "
                    "DETECTOR_WEIGHTS at a bundle.",
        )
    key = (str(weights), stat.st_mtime_ns, stat.st_size)
    if key in _card_cache:
        return _card_cache[key]

    from inference.ml.model import load_bundle
    from inference.ml.predictor import file_sha256

    try:
        bundle = load_bundle(weights, map_location="cpu")
    except Exception as exc:  # torch.load raises many types on a bad file
        return ModelCard(weights_path=str(weights), available=False, card_text=_card_text(weights),
                         problem=f"{weights} is not a usable detector bundle ({exc}).")
    meta = dict(bundle.get("meta") or {})
    card = ModelCard(
        weights_path=str(weights),
        available=True,
        name=str(meta.pop("name", "detector")),
        version=str(meta.pop("version", "0")),
        sha256=file_sha256(weights),
        created=str(meta.pop("created", "")),
        description=str(meta.pop("description", "")),
        trained=meta.pop("trained", None),
        backbone=str((bundle.get("config") or {}).get("backbone", "")),
        meta=meta,
        card_text=_card_text(weights),
    )
    _card_cache.clear()
    _card_cache[key] = card
    return card


# --- Evaluation runs -------------------------------------------------------------------------------------

def evaluation_run_list(*, limit: int = 20) -> QuerySet[EvaluationRun]:
    return EvaluationRun.objects.order_by("-created_at", "-id")[:limit]


def evaluation_run_latest(*, model_sha256: str | None = None) -> EvaluationRun | None:
    qs = EvaluationRun.objects.all()
    if model_sha256:
        qs = qs.filter(model_sha256=model_sha256)
    return qs.order_by("-created_at", "-id").first()


@dataclass
class ClassRow:
    label: str
    accuracy: float | None
    precision: float | None
    recall: float | None
    f1: float | None
    support: int | None


@dataclass
class EvaluationTables:
    rows: list[ClassRow]  # the paper's Table 1
    labels: list[str]  # Table 2: rows = truth, columns = prediction
    matrix: list[list[int]]
    row_totals: list[int]
    column_totals: list[int]
    total: int

    @property
    def matrix_rows(self):
        return list(zip(self.labels, self.matrix, self.row_totals))

    @property
    def supports(self) -> dict[str, int]:
        return dict(zip(self.labels, self.row_totals))

    @property
    def f1_by_class(self) -> dict[str, float]:
        return {r.label: r.f1 for r in self.rows if r.f1 is not None}


def evaluation_tables(run: EvaluationRun) -> EvaluationTables:
    """Table 1 (per class: one-vs-rest accuracy, precision, recall, F1, support) and Table 2 (the confusion
    matrix), from the stored metrics. Precision, recall and F1 are the stored ones; the per-class accuracy,
    which metrics.json does not carry, follows from the stored confusion matrix."""
    cm = run.metrics["confusion_matrix"]
    labels, matrix = list(cm["labels"]), [[int(v) for v in row] for row in cm["matrix"]]
    n = len(labels)
    row_totals = [sum(row) for row in matrix]
    column_totals = [sum(matrix[r][c] for r in range(n)) for c in range(n)]
    total = sum(row_totals)
    per_class = run.metrics.get("per_class", {})
    rows = []
    for i, label in enumerate(labels):
        stats = per_class.get(label, {})
        tp = matrix[i][i]
        true_negatives = total - row_totals[i] - column_totals[i] + tp
        rows.append(ClassRow(
            label=label,
            accuracy=(tp + true_negatives) / total if total else None,
            precision=stats.get("precision"),
            recall=stats.get("recall"),
            f1=stats.get("f1"),
            support=stats.get("support", row_totals[i]),
        ))
    return EvaluationTables(rows, labels, matrix, row_totals, column_totals, total)
