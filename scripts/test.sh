#!/usr/bin/env bash
# The whole test suite, against PostgreSQL and Redis (defaults: the local servers).
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/portal}
export CELERY_BROKER_URL=${CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}
export SECRET_KEY=${SECRET_KEY:-test-only-secret-key-0123456789abcdef}
export PORTAL_VAR_DIR=${PORTAL_VAR_DIR:-$(mktemp -d /tmp/portal-test-XXXXXX)}
exec .venv/bin/python -m pytest "$@"
