"""The detector bundle file without torch: its format tag, its SHA-256, and its header (everything but the weights).

A bundle is what ``torch.save`` writes (a zip holding ``<name>/data.pkl`` and one file per tensor storage). The web
processes only need its header, the model's name, version, card metadata, configuration and calibration, for
every page that names the model; importing torch and torchvision for that took 6 s and some 300 MB in each web
worker. ``read_bundle_header`` reads ``data.pkl`` with an unpickler that admits only what a bundle holds (plain
data, ``OrderedDict``, and torch's tensor and storage references, which it reads as ``None``) and never opens the
storages.
"""
from __future__ import annotations

import collections
import hashlib
import pickle
import zipfile
from pathlib import Path
from typing import Any

BUNDLE_FORMAT = "mri-tamper-detector/1"


class BundleHeaderError(ValueError):
    """The file is not a bundle whose header can be read without torch (the caller may fall back to torch.load)."""


def file_sha256(path: str | Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _no_tensor(*args, **kwargs) -> None:
    return None


class _TorchStorageType:
    """Stands for torch.FloatStorage, torch.float16 and the like inside a storage reference."""


class _HeaderUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str):
        if (module, name) == ("collections", "OrderedDict"):
            return collections.OrderedDict
        if module == "torch._utils" and name.startswith("_rebuild_"):
            return _no_tensor
        if module == "torch":
            return _TorchStorageType
        raise BundleHeaderError(f"a bundle holds no {module}.{name}")

    def persistent_load(self, pid: Any) -> None:
        return None  # a tensor storage: left unread


def read_bundle_header(path: str | Path) -> dict[str, Any]:
    """The bundle as a dict with every tensor read as ``None`` ("config", "calibration", "meta" intact).
    BundleHeaderError when the file is not such a bundle."""
    path = Path(path)
    try:
        with zipfile.ZipFile(path) as archive:
            names = [n for n in archive.namelist() if n.endswith("/data.pkl") and n.count("/") == 1]
            if len(names) != 1:
                raise BundleHeaderError(f"{path} is not a torch.save archive (no single data.pkl)")
            bundle = _HeaderUnpickler(archive.open(names[0])).load()
    except (zipfile.BadZipFile, pickle.UnpicklingError, EOFError, AttributeError, TypeError) as exc:
        raise BundleHeaderError(f"{path}: {exc}") from exc
    if not isinstance(bundle, dict) or bundle.get("format") != BUNDLE_FORMAT:
        raise BundleHeaderError(f"{path} is not a detector bundle (expected format {BUNDLE_FORMAT!r}).")
    return bundle
