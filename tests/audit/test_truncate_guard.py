"""The TRUNCATE exception for test databases must not open a hole in a production database."""
import importlib
import uuid

import psycopg2
import pytest
from django.db import connection

triggers = importlib.import_module("audit.migrations.0002_append_only_triggers")


@pytest.fixture
def scratch_database():
    if connection.vendor != "postgresql":
        pytest.skip("PostgreSQL only")
    params = connection.get_connection_params()
    params.pop("cursor_factory", None)
    params["dbname"] = "postgres"
    name = f"prod_like_{uuid.uuid4().hex[:8]}"
    admin = psycopg2.connect(**params)
    admin.autocommit = True
    admin.cursor().execute(f'CREATE DATABASE "{name}"')
    try:
        conn = psycopg2.connect(**{**params, "dbname": name})
        conn.autocommit = True
        cur = conn.cursor()
        cur.execute("CREATE TABLE audit_auditevent (id int)")
        cur.execute(triggers.CREATE)
        cur.execute("INSERT INTO audit_auditevent VALUES (1)")
        yield conn
        conn.close()
    finally:
        admin.cursor().execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.close()


@pytest.mark.django_db
def test_flush_mark_is_ignored_outside_test_databases(scratch_database):
    cur = scratch_database.cursor()
    with pytest.raises(psycopg2.Error, match="append-only"):
        cur.execute("BEGIN; SELECT set_config('audit.allow_flush', 'on', true); TRUNCATE audit_auditevent;")
    cur.execute("ROLLBACK")
    with pytest.raises(psycopg2.Error, match="append-only"):
        cur.execute("DELETE FROM audit_auditevent")
    cur.execute("SELECT count(*) FROM audit_auditevent")
    assert cur.fetchone()[0] == 1
