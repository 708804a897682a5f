#!/usr/bin/env bash
# Run paycore on this machine with development defaults: SQLite, a file-system Celery broker
# (no server needed) and the sandbox gateway playing every channel. Ctrl-C stops everything.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export PAYCORE_VAR_DIR="${PAYCORE_VAR_DIR:-$PWD/var}"
mkdir -p "$PAYCORE_VAR_DIR"
PORT="${PORT:-8000}"
SANDBOX_PORT="${SANDBOX_PORT:-8100}"
export PAYCORE_PUBLIC_BASE_URL="${PAYCORE_PUBLIC_BASE_URL:-http://127.0.0.1:$PORT}"
export PAYCORE_SANDBOX_URL="${PAYCORE_SANDBOX_URL:-http://127.0.0.1:$SANDBOX_PORT}"
PY=.venv/bin/python

pids=()
cleanup() { for pid in "${pids[@]}"; do kill "$pid" 2>/dev/null || true; done; wait 2>/dev/null || true; }
trap cleanup EXIT INT TERM

$PY manage.py migrate --no-input -v0
$PY manage.py sandbox_gateway --port "$SANDBOX_PORT" > "$PAYCORE_VAR_DIR/sandbox.log" 2>&1 &
pids+=($!)
for _ in $(seq 1 50); do
  $PY -c "import requests,sys; requests.get('$PAYCORE_SANDBOX_URL/_sandbox/trades', timeout=1)" 2>/dev/null && break
  sleep 0.2
done
demo="$($PY manage.py bootstrap_demo)"
.venv/bin/celery -A config worker --beat --loglevel=INFO --concurrency=2 \
  --schedule="$PAYCORE_VAR_DIR/celerybeat-schedule" > "$PAYCORE_VAR_DIR/celery.log" 2>&1 &
pids+=($!)

cat <<INFO

paycore is running
  API        $PAYCORE_PUBLIC_BASE_URL/api/v1/
  API docs   $PAYCORE_PUBLIC_BASE_URL/api/v1/docs
  admin      $PAYCORE_PUBLIC_BASE_URL/admin/
  sandbox    $PAYCORE_SANDBOX_URL/_sandbox/
$(echo "$demo" | sed 's/^/  /')
  logs       $PAYCORE_VAR_DIR/{sandbox,celery}.log

Try: curl -H "Authorization: Bearer <api key>" $PAYCORE_PUBLIC_BASE_URL/api/v1/orders

INFO
$PY manage.py runserver "127.0.0.1:$PORT" --noreload &
pids+=($!)
wait -n "${pids[@]}"
