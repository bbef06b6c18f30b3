#!/usr/bin/env bash
# `make run`: the whole portal on one machine, no external services needed.
#   bootstrap (.venv) -> SECRET_KEY kept in var/ -> migrate -> collectstatic -> first admin
#   -> one Celery worker + the web server (gunicorn). Ctrl-C stops both (the worker finishes its task first).
# Everything can be switched by environment variables (see README, "Configuration"): DATABASE_URL,
# CELERY_BROKER_URL, S3_BUCKET, ... ; HOST/PORT choose where the web server listens (127.0.0.1:8000).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
PY=.venv/bin/python
export PORTAL_VAR_DIR=${PORTAL_VAR_DIR:-$PWD/var}
mkdir -p "$PORTAL_VAR_DIR"

# A SECRET_KEY generated once and kept in var/secret_key (settings read it when SECRET_KEY is not set).
if [ -z "${SECRET_KEY:-}" ] && [ -z "${SECRET_KEY_FILE:-}" ] && [ ! -s "$PORTAL_VAR_DIR/secret_key" ]; then
  (umask 077 && "$PY" -c 'import secrets; print(secrets.token_urlsafe(50))' >"$PORTAL_VAR_DIR/secret_key")
  echo "==> generated a SECRET_KEY into $PORTAL_VAR_DIR/secret_key (keep it: sessions and tokens depend on it)"
fi

echo "==> migrating the database"
"$PY" manage.py migrate --noinput
echo "==> collecting static files"
"$PY" manage.py collectstatic --noinput --verbosity 0
"$PY" manage.py ensure_admin

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
# Each child gets its own session (setsid): Ctrl-C reaches only this script, which then stops them in order.
setsid .venv/bin/celery -A portal worker --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
  --concurrency "${CELERY_CONCURRENCY:-1}" --hostname "worker-$$@%h" &
worker=$!
setsid .venv/bin/gunicorn portal.wsgi:application --bind "$HOST:$PORT" \
  --workers "${WEB_CONCURRENCY:-2}" --threads "${WEB_THREADS:-4}" --timeout "${WEB_TIMEOUT:-300}" \
  --access-logfile - &
web=$!

stop() {
  trap - INT TERM
  echo "==> stopping: web server, then the worker (it finishes the task in hand)"
  kill -TERM "$web" 2>/dev/null || true
  kill -TERM "$worker" 2>/dev/null || true
  wait "$web" 2>/dev/null || true
  wait "$worker" 2>/dev/null || true
  echo "==> stopped"
}
trap 'stop; exit 130' INT
trap 'stop; exit 143' TERM

url="http://$HOST:$PORT/"
[ "$HOST" = "0.0.0.0" ] && url="http://127.0.0.1:$PORT/"
for _ in $(seq 60); do
  curl -fsS -o /dev/null "${url}accounts/login/" 2>/dev/null && break
  kill -0 "$web" 2>/dev/null || break
  sleep 1
done
echo
echo "==> the portal is running: $url   (Ctrl-C stops it)"
echo

# If either process dies, stop the other and fail.
status=0
wait -n "$web" "$worker" || status=$?
echo "==> a process exited (status $status); stopping the rest"
stop
exit 1
