"""Reading a detector bundle's header without torch (inference.ml.bundle_file): the same config, calibration and
metadata torch.load gives, the tensors left unread; anything that is not such a bundle is refused, and the web code
that names the model never imports torch."""
import os
import pickle
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from inference.ml.bundle_file import BundleHeaderError, file_sha256, read_bundle_header
from inference.ml.model import load_bundle, save_random_bundle

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ROOT / "models" / "detector.pt"


def _without_tensors(bundle: dict) -> dict:
    return {k: v for k, v in bundle.items() if k not in ("state_dict", "refiner")}


@pytest.mark.parametrize("which", ["shipped", "random"])
def test_the_header_is_what_torch_load_reads_less_the_tensors(which, tmp_path):
    path = SHIPPED if which == "shipped" else save_random_bundle(tmp_path / "tiny.pt", backbone="tiny", seed=3)
    header, full = read_bundle_header(path), load_bundle(path)
    assert _without_tensors(header) == _without_tensors(full)
    assert list(header["state_dict"]) == list(full["state_dict"])  # the names, in order
    assert set(header["state_dict"].values()) == {None}


def test_what_is_not_a_bundle_is_refused(tmp_path):
    text = tmp_path / "notes.pt"
    text.write_text("not a bundle")
    with pytest.raises(BundleHeaderError, match="notes.pt"):
        read_bundle_header(text)

    empty = tmp_path / "empty.pt"
    with zipfile.ZipFile(empty, "w") as archive:
        archive.writestr("empty/other.txt", "x")
    with pytest.raises(BundleHeaderError, match="no single data.pkl"):
        read_bundle_header(empty)

    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    evil = tmp_path / "evil.pt"
    with zipfile.ZipFile(evil, "w") as archive:
        archive.writestr("evil/data.pkl", pickle.dumps({"format": "mri-tamper-detector/1", "meta": Evil()}))
    with pytest.raises(BundleHeaderError, match="a bundle holds no posix.system"):
        read_bundle_header(evil)

    other = tmp_path / "other.pt"
    with zipfile.ZipFile(other, "w") as archive:
        archive.writestr("other/data.pkl", pickle.dumps({"format": "something-else"}))
    with pytest.raises(BundleHeaderError, match="not a detector bundle"):
        read_bundle_header(other)


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path):
    import hashlib

    path = tmp_path / "blob"
    path.write_bytes(b"\x00" * (3 << 20) + b"tail")  # more than one read
    assert file_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_web_code_names_the_model_without_importing_torch():
    """Every view (through the URL conf), the services and the model card: importing torch would cost each web
    worker 6 s on its first page and some 300 MB."""
    code = (
        "import os, sys, django\n"
        "os.environ['DJANGO_SETTINGS_MODULE'] = 'portal.settings'\n"
        "django.setup()\n"
        "from django.urls import get_resolver\n"
        "def walk(patterns):\n"
        "    for p in patterns:\n"
        "        walk(getattr(p, 'url_patterns', []))\n"
        "walk(get_resolver().url_patterns)\n"
        "import scans.services, inference.services, reports.services, reviews.services\n"
        "from reports.selectors import model_card_current, evaluation_breakdown_tables\n"
        "card = model_card_current()\n"
        "assert card.available and card.version, card.problem\n"
        "print(card.version, sorted(m for m in ('torch', 'torchvision') if m in sys.modules))\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180, cwd=ROOT,
                         env={**os.environ, "DEBUG": "1", "DETECTOR_WEIGHTS": str(SHIPPED)})
    assert run.returncode == 0, run.stderr[-2000:]
    assert run.stdout.strip().splitlines()[-1].endswith(" []"), run.stdout


def test_the_code_version_is_the_checkouts_commit_and_none_outside_one(tmp_path):
    import re
    import subprocess

    from inference.ml.versions import code_version

    assert code_version(tmp_path) is None  # not a git checkout
    subprocess.run(["git", "init", "-q", str(tmp_path)], check=True)
    (tmp_path / "a.txt").write_text("one")
    subprocess.run(["git", "-C", str(tmp_path), "add", "a.txt"], check=True)
    subprocess.run(["git", "-C", str(tmp_path), "-c", "user.name=t", "-c", "user.email=t@example.org", "commit", "-qm",
                    "one"], check=True)
    commit = code_version(tmp_path)
    assert re.fullmatch(r"[0-9a-f]{40}", commit)
    (tmp_path / "a.txt").write_text("two")  # a tracked file changed: said so
    assert code_version(tmp_path) == f"{commit}+changes"
    (tmp_path / "a.txt").write_text("one")
    (tmp_path / "new.txt").write_text("untracked")  # an untracked file is not the code that ran
    assert code_version(tmp_path) == commit
