#!/usr/bin/env bash
# Runs the portal.
#   scripts/run.sh          (`make run`) everything on one machine, no external services needed:
#                           .venv -> SECRET_KEY kept in var/ -> migrate -> collectstatic -> first admin
#                           -> one Celery worker + the web server. Ctrl-C stops both (the worker ends its task).
#   scripts/run.sh web      (`make web`) only the web server, in the foreground (scale-out: web machines)
#   scripts/run.sh worker   (`make worker`) only a Celery worker, in the foreground (scale-out: GPU machines)
#   scripts/run.sh beat     (`make beat`) the periodic-task scheduler: exactly one per installation (scale-out)
#   scripts/run.sh migrate  (`make migrate`) migrate the database once per release (scale-out)
#   scripts/run.sh receiver (`make receiver`) the DICOM receiver the PACS pushes series to (DICOM_RECEIVER_PEERS):
#                           one per installation; `all` starts it too when DICOM_RECEIVER_PEERS is set
# Configuration is by environment variables only (README, "Configuration"): DATABASE_URL, CELERY_BROKER_URL,
# S3_BUCKET, DETECTOR_DEVICE, ...; HOST/PORT choose where the web server listens (127.0.0.1:8000).
set -euo pipefail
cd "$(dirname "$0")/.."
role=${1:-all}
case "$role" in all|web|worker|beat|migrate|receiver) ;; *) echo "usage: $0 [all|web|worker|beat|migrate|receiver]" >&2; exit 2 ;; esac

scripts/bootstrap.sh
PY=.venv/bin/python
export PORTAL_VAR_DIR=${PORTAL_VAR_DIR:-$PWD/var}
mkdir -p "$PORTAL_VAR_DIR"

HOST=${HOST:-127.0.0.1}
PORT=${PORT:-8000}
# The worker reads the default queue, and the detector's own queue when INFERENCE_QUEUE is set;
# WORKER_QUEUES (comma-separated) overrides, e.g. WORKER_QUEUES=gpu on machines that only run the detector.
queues=${WORKER_QUEUES:-${CELERY_QUEUE:-celery}${INFERENCE_QUEUE:+,$INFERENCE_QUEUE}}
worker_cmd=(.venv/bin/celery -A portal worker --loglevel "${CELERY_LOG_LEVEL:-INFO}"
            --concurrency "${CELERY_CONCURRENCY:-1}" --queues "$queues" --hostname "worker-$$@%h")
web_cmd=(.venv/bin/gunicorn portal.wsgi:application --bind "$HOST:$PORT"
         --workers "${WEB_CONCURRENCY:-2}" --threads "${WEB_THREADS:-4}" --timeout "${WEB_TIMEOUT:-300}"
         --access-logfile -)

case "$role" in
  migrate) exec "$PY" manage.py migrate --noinput ;;
  worker) exec "${worker_cmd[@]}" ;;
  beat) exec .venv/bin/celery -A portal beat --loglevel "${CELERY_LOG_LEVEL:-INFO}" ;;
  receiver) exec "$PY" manage.py dicom_receiver ;;
  web) "$PY" manage.py collectstatic --noinput --verbosity 0; exec "${web_cmd[@]}" ;;
esac

# --- all: one machine.
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

# Each child gets its own session (setsid): Ctrl-C reaches only this script, which then stops them in order.
# On one machine the worker also runs the periodic-task scheduler (--beat).
setsid "${worker_cmd[@]}" --beat &
worker=$!
setsid "${web_cmd[@]}" &
web=$!
receiver=
if [ -n "${DICOM_RECEIVER_PEERS:-}" ]; then  # the DICOM receiver: a refusal to start (an unknown account) stops only it
  setsid bash -c "$PY manage.py dicom_receiver || echo '==> the DICOM receiver stopped (why: above); the portal runs on without it' >&2" &
  receiver=$!
fi

stop() {
  trap - INT TERM
  echo "==> stopping the web server and the worker (it finishes the task in hand first)"
  kill -TERM "$web" "$worker" 2>/dev/null || true
  if [ -n "$receiver" ]; then kill -TERM -- "-$receiver" 2>/dev/null || true; wait "$receiver" 2>/dev/null || true; fi
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
echo "==> the portal is running: $url   (log in there; Ctrl-C stops it)"
[ -n "$receiver" ] && kill -0 "$receiver" 2>/dev/null && echo "==> DICOM receiver: ${DICOM_RECEIVER_AE:-${PACS_CALLING_AE:-TAMPERCHECK}} on ${DICOM_RECEIVER_HOST:-127.0.0.1}:${DICOM_RECEIVER_PORT:-11112}, for $DICOM_RECEIVER_PEERS"
echo

# If either process dies, stop the other and fail.
status=0
wait -n "$web" "$worker" || status=$?
echo "==> a process exited (status $status); stopping the rest"
stop
exit 1
