#!/usr/bin/env bash
# The whole test suite, against PostgreSQL and Redis (defaults: the local servers). Arguments go to pytest:
#   scripts/test.sh                      everything
#   scripts/test.sh tests/accounts -q    one app
# Each run gets its own test database, var/ folder and Celery queue, so runs started side by side (several
# people, or CI next to a developer) do not drop each other's database or eat each other's tasks.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
run_id=$$
export DATABASE_URL=${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/portal_$run_id}
export CELERY_BROKER_URL=${CELERY_BROKER_URL:-redis://127.0.0.1:6379/15}
export CELERY_QUEUE=${CELERY_QUEUE:-test-$run_id}
export DB_CONN_MAX_AGE=${DB_CONN_MAX_AGE:-0}  # the live server thread must not hold the test DB open
export SECRET_KEY=${SECRET_KEY:-test-only-secret-key-0123456789abcdef}
own_var_dir=
if [ -z "${PORTAL_VAR_DIR:-}" ]; then
  PORTAL_VAR_DIR=$(mktemp -d /tmp/portal-test-XXXXXX)
  own_var_dir=$PORTAL_VAR_DIR
fi
export PORTAL_VAR_DIR
mkdir -p "$PORTAL_VAR_DIR/staticfiles"
# Debian's Chromium for the browser tests (never a downloaded one).
export PLAYWRIGHT_CHROMIUM=${PLAYWRIGHT_CHROMIUM:-/usr/bin/chromium}

status=0
.venv/bin/python -m pytest "$@" || status=$?
# A run that was interrupted leaves its test database behind; drop it (a finished run already has).
test_db="test_${DATABASE_URL##*/}"
if [[ "$DATABASE_URL" == postgres* ]] && command -v psql >/dev/null 2>&1; then
  psql "${DATABASE_URL%/*}/postgres" -qAt -c "DROP DATABASE IF EXISTS \"$test_db\"" >/dev/null 2>&1 || true
fi
# Messages this run queued and nobody consumed.
if [[ "$CELERY_BROKER_URL" == redis* ]] && command -v redis-cli >/dev/null 2>&1; then
  redis-cli -u "$CELERY_BROKER_URL" DEL "$CELERY_QUEUE" >/dev/null 2>&1 || true
fi
[ -n "$own_var_dir" ] && rm -rf "$own_var_dir"
exit $status
