"""Certificates for the DICOM TLS tests, made with the openssl command: a test authority, a certificate it signs for
the portal and one for Orthanc (both naming 127.0.0.1 and localhost), and a self-signed stranger nobody trusts."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

NAMES = "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth,clientAuth\n"


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_pki(directory: Path) -> dict[str, Path]:
    """{"ca": ..., "portal.crt": ..., "portal.key": ..., "orthanc.crt", "orthanc.key", "stranger.crt",
    "stranger.key"} under ``directory`` (PEM)."""
    if shutil.which("openssl") is None:
        pytest.skip("openssl is not installed")
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "names.ext").write_text(NAMES)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "2",
             "-subj", "/CN=Tamper check test authority", "-addext", "basicConstraints=critical,CA:TRUE",
             "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=directory)
    for name in ("portal", "orthanc"):
        _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}", cwd=directory)
        _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
                 "-out", f"{name}.crt", "-days", "2", "-extfile", "names.ext", cwd=directory)
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "stranger.key", "-out", "stranger.crt",
             "-days", "2", "-subj", "/CN=stranger", "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost",
             cwd=directory)
    return {"ca": directory / "ca.crt", **{f"{n}.{e}": directory / f"{n}.{e}" for n in ("portal", "orthanc", "stranger")
                                          for e in ("crt", "key")}}
