"""A real Orthanc PACS for the DICOM export tests, started from Debian's package with a throw-away configuration
(its REST API on a free port; with ``dicom=True`` also its DICOM server, AE title ORTHANC, checking the called AE
title, answering C-STORE from any calling AE, and C-FIND and C-GET too unless ``allow_query=False``). Skips the test when Orthanc is not installed (.ci/run installs it)."""
from __future__ import annotations

import contextlib
import json
import shutil
import socket
import subprocess
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextlib.contextmanager
def running_orthanc(directory: Path, *, dicom: bool = False, allow_query: bool = True, modalities: dict | None = None,
                    dicom_port: int | None = None, tls: dict | None = None):
    """Yields {"http": base URL, "port": DICOM port, "destination": "ORTHANC@127.0.0.1:<port>"}. `modalities`: the
    DICOM nodes Orthanc may send to ({"portal": ["TAMPERCHECK", "127.0.0.1", port]}; POST /modalities/portal/store)."""
    binary = shutil.which("Orthanc") or ("/usr/sbin/Orthanc" if Path("/usr/sbin/Orthanc").exists() else None)
    if binary is None:
        pytest.skip("Orthanc is not installed")
    http_port, dicom_port = free_port(), dicom_port or free_port()
    config = {
        "Name": "portal-test", "StorageDirectory": str(directory / "storage"), "IndexDirectory": str(directory / "index"),
        "HttpPort": http_port, "DicomServerEnabled": dicom, "DicomAet": "ORTHANC", "DicomPort": dicom_port,
        "DicomCheckCalledAet": True, "RemoteAccessAllowed": False, "AuthenticationEnabled": False,
        "HttpServerEnabled": True, "Plugins": [], "StableAge": 1,
        "DicomAlwaysAllowFind": allow_query, "DicomAlwaysAllowGet": allow_query,
        "DicomModalities": modalities or {},
    }
    if tls:
        config.update({"DicomTlsEnabled": True, "DicomTlsCertificate": str(tls["certificate"]),
                       "DicomTlsPrivateKey": str(tls["private_key"]), "DicomTlsTrustedCertificates": str(tls["trusted"]),
                       "DicomTlsRemoteCertificateRequired": True})
    directory.mkdir(parents=True, exist_ok=True)
    config_path = directory / "orthanc.json"
    config_path.write_text(json.dumps(config))
    process = subprocess.Popen([binary, str(config_path)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    base = f"http://127.0.0.1:{http_port}"
    try:
        for _ in range(150):
            try:
                urllib.request.urlopen(f"{base}/system", timeout=1).read()
                if dicom:
                    socket.create_connection(("127.0.0.1", dicom_port), timeout=1).close()
                break
            except (urllib.error.URLError, ConnectionError, OSError):
                if process.poll() is not None:
                    pytest.fail(f"Orthanc exited: {process.stderr.read().decode()[-2000:]}")
                time.sleep(0.2)
        else:
            pytest.fail("Orthanc did not start within 30 s")
        yield {"http": base, "port": dicom_port, "destination": f"ORTHANC@127.0.0.1:{dicom_port}"}
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


def post_instance(base: str, data: bytes) -> dict:
    """Store one DICOM file through Orthanc's REST API; its answer (Status, ID, ParentStudy, ...)."""
    request = urllib.request.Request(f"{base}/instances", data=data, method="POST",
                                     headers={"Content-Type": "application/dicom"})
    with urllib.request.urlopen(request, timeout=30) as response:
        return json.loads(response.read())


def post_json(base: str, path: str, body) -> dict:
    request = urllib.request.Request(f"{base}{path}", data=json.dumps(body).encode(), method="POST",
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=60) as response:
        return json.loads(response.read())


def get_json(base: str, path: str):
    with urllib.request.urlopen(f"{base}{path}", timeout=10) as response:
        return json.loads(response.read())
