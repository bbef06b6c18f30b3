"""Settings come from the environment alone; each case imports them in a fresh interpreter."""
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]

PROBE = """
import json, django
from django.conf import settings
django.setup()
print(json.dumps({
    "DEBUG": settings.DEBUG,
    "SECRET_KEY": settings.SECRET_KEY,
    "DATABASE": {k: settings.DATABASES["default"][k] for k in ("ENGINE", "NAME", "HOST", "PORT", "USER")},
    "BROKER": settings.CELERY_BROKER_URL,
    "STORAGE": settings.STORAGES["default"]["BACKEND"],
    "S3": settings.STORAGES["default"].get("OPTIONS", {}),
    "ALLOWED_HOSTS": settings.ALLOWED_HOSTS,
    "SESSION_COOKIE_SECURE": settings.SESSION_COOKIE_SECURE,
    "SECURE_SSL_REDIRECT": settings.SECURE_SSL_REDIRECT,
    "UPLOAD_MAX_BYTES": settings.UPLOAD_MAX_BYTES,
    "DETECTOR_DEVICE": settings.DETECTOR_DEVICE,
    "INFERENCE_QUEUE": settings.INFERENCE_QUEUE,
    "AXES_FAILURE_LIMIT": settings.AXES_FAILURE_LIMIT,
}))
"""

# Variables that would leak from the test run into the probe.
CLEARED = ("SECRET_KEY", "SECRET_KEY_FILE", "PORTAL_OFFLINE_COMMAND", "DEBUG", "DATABASE_URL", "CELERY_BROKER_URL", "S3_BUCKET",
           "ALLOWED_HOSTS", "HTTPS", "SECURE_COOKIES", "UPLOAD_MAX_BYTES", "DETECTOR_DEVICE", "INFERENCE_QUEUE",
           "AXES_FAILURE_LIMIT", "CELERY_QUEUE")


def probe(tmp_path, **env):
    clean = {k: v for k, v in os.environ.items() if k not in CLEARED}
    clean.update(PORTAL_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="portal.settings", **env)
    result = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=clean, capture_output=True, text=True,
                            timeout=120)
    return result


def settings_with(tmp_path, **env):
    result = probe(tmp_path, **env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_without_secret_key_and_debug_off_the_error_names_the_variable(tmp_path):
    result = probe(tmp_path)
    assert result.returncode != 0
    assert "ImproperlyConfigured" in result.stderr
    assert "Set the SECRET_KEY environment variable" in result.stderr


def test_defaults_are_one_machine_and_debug_off(tmp_path):
    s = settings_with(tmp_path, SECRET_KEY="k" * 50)
    assert s["DEBUG"] is False
    assert s["DATABASE"]["ENGINE"] == "django.db.backends.sqlite3"
    assert s["DATABASE"]["NAME"] == str(tmp_path / "var" / "db.sqlite3")
    assert s["BROKER"] == "filesystem://"
    assert (tmp_path / "var" / "broker" / "in").is_dir()
    assert s["STORAGE"] == "django.core.files.storage.FileSystemStorage"
    assert s["ALLOWED_HOSTS"] == ["localhost", "127.0.0.1", "[::1]"]
    assert s["SESSION_COOKIE_SECURE"] is False and s["SECURE_SSL_REDIRECT"] is False
    assert s["INFERENCE_QUEUE"] is None


def test_offline_commands_get_a_key_of_their_own_process_only(tmp_path):
    # manage.py marks build_dataset, evaluate_detector, detect, ... as offline: they sign nothing
    first = settings_with(tmp_path, PORTAL_OFFLINE_COMMAND="evaluate_detector")["SECRET_KEY"]
    second = settings_with(tmp_path, PORTAL_OFFLINE_COMMAND="evaluate_detector")["SECRET_KEY"]
    assert len(first) >= 50 and first != second
    assert not (tmp_path / "var" / "secret_key").exists()  # never written down
    # a configured key still wins
    assert settings_with(tmp_path, PORTAL_OFFLINE_COMMAND="detect", SECRET_KEY="from-env")["SECRET_KEY"] == "from-env"


def test_secret_key_is_read_from_the_kept_file(tmp_path):
    (tmp_path / "var").mkdir()
    (tmp_path / "var" / "secret_key").write_text("from-the-file-" + "x" * 40 + "\n")
    assert settings_with(tmp_path)["SECRET_KEY"] == "from-the-file-" + "x" * 40
    other = tmp_path / "elsewhere"
    other.write_text("from-secret-key-file")
    assert settings_with(tmp_path, SECRET_KEY_FILE=str(other))["SECRET_KEY"] == "from-secret-key-file"
    assert settings_with(tmp_path, SECRET_KEY="from-env")["SECRET_KEY"] == "from-env"


def test_debug_may_run_without_a_secret_key(tmp_path):
    s = settings_with(tmp_path, DEBUG="1")
    assert s["DEBUG"] is True and s["SECRET_KEY"]


def test_production_by_environment_variables(tmp_path):
    s = settings_with(
        tmp_path,
        SECRET_KEY="k" * 50,
        DATABASE_URL="postgres://portal:pw@db.internal:5433/portal",
        CELERY_BROKER_URL="amqp://guest:guest@mq.internal:5672//",
        S3_BUCKET="mri-portal",
        S3_ENDPOINT_URL="https://s3.internal",
        ALLOWED_HOSTS="portal.hospital.example",
        HTTPS="1",
        UPLOAD_MAX_BYTES="1000",
        DETECTOR_DEVICE="cuda:1",
        INFERENCE_QUEUE="gpu",
        AXES_FAILURE_LIMIT="3",
    )
    assert s["DATABASE"] == {"ENGINE": "django.db.backends.postgresql", "NAME": "portal", "HOST": "db.internal",
                             "PORT": 5433, "USER": "portal"}
    assert s["BROKER"] == "amqp://guest:guest@mq.internal:5672//"
    assert s["STORAGE"] == "storages.backends.s3.S3Storage"
    assert s["S3"]["bucket_name"] == "mri-portal" and s["S3"]["endpoint_url"] == "https://s3.internal"
    assert s["S3"]["default_acl"] == "private" and s["S3"]["querystring_auth"] is True
    assert s["ALLOWED_HOSTS"] == ["portal.hospital.example"]
    assert s["SESSION_COOKIE_SECURE"] is True and s["SECURE_SSL_REDIRECT"] is True
    assert s["UPLOAD_MAX_BYTES"] == 1000
    assert s["DETECTOR_DEVICE"] == "cuda:1"
    assert s["INFERENCE_QUEUE"] == "gpu"
    assert s["AXES_FAILURE_LIMIT"] == 3


@pytest.mark.slow
@pytest.mark.parametrize("url", ["redis://127.0.0.1:6379/15", "amqp://guest:guest@127.0.0.1:5672//"])
def test_a_real_worker_answers_through_redis_and_rabbitmq(tmp_path, url, monkeypatch):
    """`celery -A portal worker` on CELERY_BROKER_URL (the local Redis and RabbitMQ) answers a ping."""
    from celery import Celery
    from kombu import Connection

    monkeypatch.setenv("CELERY_BROKER_URL", url)  # Celery's own client reads it before its broker= argument

    queue = f"portal-settings-probe-{os.getpid()}-{tmp_path.name}"
    env = {k: v for k, v in os.environ.items() if k not in CLEARED}
    env.update(PORTAL_VAR_DIR=str(tmp_path / "var"), SECRET_KEY="k" * 50, CELERY_BROKER_URL=url, CELERY_QUEUE=queue)
    hostname = f"probe-{os.getpid()}-{tmp_path.name}@localhost"
    worker = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal", "worker", "--pool", "solo", "--hostname", hostname,
         "--loglevel", "INFO", "--without-mingle", "--without-gossip"],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    lines = []
    reader = threading.Thread(target=lambda: lines.extend(worker.stdout), daemon=True)
    reader.start()
    client = Celery(broker=url)
    try:
        # Ping once the worker says it is ready (RabbitMQ refuses a broadcast before its exchange exists).
        deadline = time.monotonic() + 120
        while not any(f"{hostname} ready." in line for line in lines):
            assert worker.poll() is None and time.monotonic() < deadline, "".join(lines)
            time.sleep(0.5)
        for _ in range(10):
            if replies := client.control.ping(destination=[hostname], timeout=2.0):
                break
        assert replies == [{hostname: {"ok": "pong"}}]
    finally:
        worker.terminate()
        worker.wait(timeout=60)
        reader.join(timeout=10)
        client.close()
        with Connection(url) as connection:  # the worker declared a durable queue; leave the broker clean
            connection.default_channel.queue_delete(queue)
    output = "".join(lines)
    assert "Connected to " + url.split("://")[0] in output
    assert "warm shutdown" in output.lower()


def test_a_malformed_dicom_receiver_peer_list_stops_start_up_saying_what_is_wrong(tmp_path):
    result = probe(tmp_path, SECRET_KEY="k" * 50, DICOM_RECEIVER_PEERS="ORTHANC=doctor_a, MR1")
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr
    assert "DICOM_RECEIVER_PEERS: 'MR1' is not AE_TITLE=username" in result.stderr
    assert settings_with(tmp_path, SECRET_KEY="k" * 50, DICOM_RECEIVER_PEERS="ORTHANC=doctor_a")["DEBUG"] is False


def test_dicom_tls_without_its_files_stops_start_up_naming_them(tmp_path):
    result = probe(tmp_path, SECRET_KEY="k" * 50, PACS_TLS="1", DICOM_TLS_CERTIFICATE="/etc/portal/dicom.crt")
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr
    assert "PACS_TLS is on but DICOM_TLS_PRIVATE_KEY, DICOM_TLS_TRUSTED are not set" in result.stderr


@pytest.mark.parametrize("env, message", [
    ({"ALERT_EMAILS": "security@hospital.example, pacs admin"}, "ALERT_EMAILS and ALERT_FROM must be e-mail addresses: "
                                                                "'pacs admin' is not."),
    ({"ALERT_ON": "pacs_changed,everything"}, "ALERT_ON: unknown kind everything; the kinds are pacs_changed, "),
    ({"PORTAL_URL": "tampercheck.hospital.org"}, "PORTAL_URL must be the portal's address"),
    ({"ALERT_WEBHOOK_URL": "hooks.hospital.org/tamper"}, "ALERT_WEBHOOK_URL must be an http(s):// address."),
    ({"PACS_RECHECK_HOURS": "-1"}, "PACS_RECHECK_HOURS must be 0 (off) or more hours"),
])
def test_bad_alert_and_recheck_settings_stop_start_up_saying_what_is_wrong(tmp_path, env, message):
    result = probe(tmp_path, SECRET_KEY="k" * 50, **env)
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr
    assert message in result.stderr, result.stderr


@pytest.mark.parametrize("env", [{"DETECTOR_THREADS": "-1"}, {"DETECTOR_BATCH_SIZE": "0"}])
def test_bad_detector_settings_stop_start_up_saying_what_is_wrong(tmp_path, env):
    result = probe(tmp_path, SECRET_KEY="k" * 50, **env)
    assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr
    assert "DETECTOR_THREADS must be 0 (automatic) or more threads, and DETECTOR_BATCH_SIZE at least 1" in result.stderr


def test_the_mail_server_comes_from_email_url(tmp_path):
    script = ("import django, json; from django.conf import settings; django.setup(); print(json.dumps([settings."
              "EMAIL_HOST, settings.EMAIL_PORT, settings.EMAIL_HOST_USER, settings.EMAIL_USE_TLS, settings.ALERT_EMAILS, "
              "settings.ALERT_ON]))")
    clean = {k: v for k, v in os.environ.items() if k not in CLEARED}
    clean.update(PORTAL_VAR_DIR=str(tmp_path / "var"), DJANGO_SETTINGS_MODULE="portal.settings", SECRET_KEY="k" * 50,
                 EMAIL_URL="smtp+tls://alerts:p%40ss@mail.hospital.example:587",
                 ALERT_EMAILS="security@hospital.example,pacs@hospital.example")
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env=clean, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout.strip().splitlines()[-1]) == [
        "mail.hospital.example", 587, "alerts", True, ["security@hospital.example", "pacs@hospital.example"],
        ["pacs_changed", "pacs_differs", "altered_copy"]]  # not the detector's verdicts unless asked for
