import numpy as np
import pytest

from inference.ml.labels import VERDICTS


def metrics_from_confusion(matrix: np.ndarray, *, version="1.2.0", sha="ab" * 32) -> dict:
    """A metrics.json (docs/dataset-and-evaluation.md) whose every figure follows from `matrix`."""
    matrix = np.asarray(matrix, dtype=int)
    per_class = {}
    for i, verdict in enumerate(VERDICTS):
        tp = matrix[i, i]
        predicted, actual = matrix[:, i].sum(), matrix[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[verdict] = {"precision": float(precision), "recall": float(recall), "f1": float(f1),
                              "support": int(actual)}
    return {
        "n_images": int(matrix.sum()),
        "accuracy": float(np.trace(matrix) / matrix.sum()),
        "macro_f1": float(np.mean([c["f1"] for c in per_class.values()])),
        "per_class": per_class,
        "confusion_matrix": {"labels": list(VERDICTS), "matrix": matrix.tolist()},
        "mean_iou": 0.71,
        "tamper_auc": 0.93,
        "latency_s": {"p50": 0.21, "p95": 0.34, "device": "cpu", "threads": 2},
        "model": {"name": "maskrcnn-tamper", "version": version, "sha256": sha},
    }


@pytest.fixture
def metrics():
    rng = np.random.default_rng(7)
    matrix = rng.integers(0, 6, size=(4, 4)) + np.diag(rng.integers(40, 80, size=4))
    return metrics_from_confusion(matrix)
