import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.urls import reverse

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.django_db
def test_health_is_ok_without_logging_in(client):
    response = client.get(reverse("health"))
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert "no-cache" in response["Cache-Control"]


def test_health_is_503_when_the_database_is_unreachable(tmp_path):
    """A web process whose PostgreSQL is down (nothing listens on port 1) reports it, instead of a 500 page."""
    probe = (
        "import django; django.setup()\n"
        "from django.test import Client\n"
        "r = Client().get('/healthz/', HTTP_HOST='localhost')\n"
        "print(r.status_code, r.json()['status'])\n"
    )
    env = dict(os.environ, DJANGO_SETTINGS_MODULE="portal.settings", SECRET_KEY="k" * 50,
               PORTAL_VAR_DIR=str(tmp_path), DATABASE_URL="postgres://postgres@127.0.0.1:1/portal")
    result = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, env=env, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split()[-2:] == ["503", "error"]
