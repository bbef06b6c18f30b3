"""`make run` (scripts/run.sh) for real: a fresh var/, no SECRET_KEY, SQLite and the filesystem broker; the web
server answers, the first admin can log in, and Ctrl-C (SIGINT) stops the worker and the web server."""
import os
import re
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from http.cookiejar import CookieJar
from pathlib import Path
from urllib.parse import urlencode

import pytest

ROOT = Path(__file__).resolve().parents[2]

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# The test run's own services must not leak into the one-machine defaults.
CLEARED = ("SECRET_KEY", "SECRET_KEY_FILE", "DATABASE_URL", "CELERY_BROKER_URL", "CELERY_QUEUE", "S3_BUCKET",
           "DEBUG", "ADMIN_USERNAME", "ADMIN_PASSWORD", "INFERENCE_QUEUE", "WORKER_QUEUES", "DJANGO_SETTINGS_MODULE")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def children_of(pid: int) -> list[int]:
    """Processes whose parent is pid (from /proc), recursively."""
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                try:
                    stat = (entry / "stat").read_text()
                except OSError:
                    continue
                if int(stat.rsplit(")", 1)[1].split()[1]) == parent:
                    found.append(int(entry.name))
                    frontier.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def test_make_run_serves_the_portal_and_stops_on_ctrl_c(tmp_path):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(PORTAL_VAR_DIR=str(tmp_path / "var"), PORT=str(port))
    # As from a terminal: SIGINT not ignored. A test runner started in the background (`cmd &` in a script)
    # ignores SIGINT, its children inherit that, and bash cannot trap a signal ignored on entry.
    run = subprocess.Popen(["scripts/run.sh"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, start_new_session=True,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(run.stdout), daemon=True)
    reader.start()
    processes = []
    try:
        deadline = time.monotonic() + 300
        while not any("the portal is running" in line for line in lines):
            assert run.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(1)
        output = "".join(lines)
        assert f"http://127.0.0.1:{port}/" in output
        key = (tmp_path / "var" / "secret_key").read_text().strip()
        assert len(key) >= 50 and key not in output
        password = re.search(r"username: admin\s+password: (\S+)", output).group(1)
        processes = children_of(run.pid)
        assert len(processes) >= 3  # a worker (and its pool), gunicorn (and its workers)

        # Log in through the page, as a browser does (CSRF cookie + token), and land on the scans list.
        jar = CookieJar()
        opener = urllib.request.build_opener(urllib.request.HTTPCookieProcessor(jar))
        base = f"http://127.0.0.1:{port}"
        page = opener.open(f"{base}/accounts/login/").read().decode()
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        form = urlencode({"csrfmiddlewaretoken": token, "username": "admin", "password": password}).encode()
        landing = opener.open(urllib.request.Request(f"{base}/accounts/login/", data=form,
                                                     headers={"Referer": f"{base}/accounts/login/"}))
        assert landing.url == f"{base}/"
        assert "Log out" in landing.read().decode()
        css = opener.open(f"{base}/static/css/portal.css")
        assert css.status == 200
        while not re.search(r"worker-\d+@\S+ ready\.", "".join(lines)):  # the worker is up too
            assert run.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(1)
    finally:
        run.send_signal(signal.SIGINT)  # what Ctrl-C in the terminal sends
        try:
            run.wait(timeout=90)
        finally:
            reader.join(timeout=10)
    output = "".join(lines)
    assert "==> stopped" in output, output[-3000:]
    deadline = time.monotonic() + 10
    while any(alive(pid) for pid in processes) and time.monotonic() < deadline:
        time.sleep(0.5)
    assert not [pid for pid in processes if alive(pid)], "processes left running after Ctrl-C"
    assert "Warm shutdown" in output  # the worker was stopped, not killed
