"""Where the real corpora live: `../shared/datasets` beside the project root, or `SHARED_DATASETS_DIR`."""
import os
from pathlib import Path

PROJECT_ROOT = Path(__file__).resolve().parents[2]


def shared_datasets_dir() -> Path:
    override = os.environ.get("SHARED_DATASETS_DIR")
    return Path(override).resolve() if override else (PROJECT_ROOT / ".." / "shared" / "datasets").resolve()
