"""What software computed a result: Python, torch, torchvision and the git commit of this code. Recorded beside
evaluations (run.json) and in trained bundles, so that a figure can be traced to the code that produced it."""
from __future__ import annotations

import platform
import subprocess
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]  # the project checkout: inference/ml/versions.py -> root


def code_version(root: Path = _ROOT) -> str | None:
    """The git commit of the checkout (with ``+changes`` when its tracked files differ from it); None outside a
    git checkout or without git."""
    try:
        commit = subprocess.run(["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True,
                                timeout=5, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    if not commit:
        return None
    return f"{commit}+changes" if dirty else commit


def software_versions() -> dict:
    import torch
    import torchvision

    # plain str: torch.__version__ is a TorchVersion, which a weights-only torch.load refuses to unpickle
    return {"python": platform.python_version(), "torch": str(torch.__version__),
            "torchvision": str(torchvision.__version__), "code": code_version()}
