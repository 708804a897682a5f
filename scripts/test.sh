#!/usr/bin/env bash
# Run the test suite on PostgreSQL and Redis (installs what it needs first).
#   DATABASE_URL  default postgres://postgres@127.0.0.1:5432/paycore  (the suite uses test_paycore)
#   REDIS_URL     default redis://127.0.0.1:6379/15
# Extra arguments go to pytest, e.g. scripts/test.sh tests/api -x
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/bootstrap.sh
export DATABASE_URL="${DATABASE_URL:-postgres://postgres@127.0.0.1:5432/paycore}"
export REDIS_URL="${REDIS_URL:-redis://127.0.0.1:6379/15}"
.venv/bin/python - <<'PY'
import os, sys
import psycopg2, redis
from psycopg2.extensions import make_dsn, parse_dsn
try:
    # The server, not the database: the suite creates its own test_<name> database.
    dsn = parse_dsn(os.environ["DATABASE_URL"])
    psycopg2.connect(make_dsn(**{**dsn, "dbname": "postgres"}), connect_timeout=5).close()
except Exception as exc:
    sys.exit(f"PostgreSQL is not reachable at DATABASE_URL: {exc}")
try:
    redis.Redis.from_url(os.environ["REDIS_URL"], socket_connect_timeout=5).ping()
except Exception as exc:
    sys.exit(f"Redis is not reachable at REDIS_URL: {exc}")
PY
exec .venv/bin/pytest -p no:cacheprovider "$@"
