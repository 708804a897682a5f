"""Each bench, tiny, so that none of them rots: the real processes (gunicorn, the floor, the
sandbox gateway, Celery on Redis) on a database of the bench's own, asserting what must hold
(every request answered, nothing lost, everything converged), never a time."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg2
import pytest
from psycopg2.extensions import make_dsn, parse_dsn

ROOT = Path(__file__).resolve().parents[2]


def _server() -> str:
    parts = urlsplit(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paycore"))
    return urlunsplit(parts._replace(path="/postgres"))


@pytest.fixture
def bench_database(request: pytest.FixtureRequest) -> Iterator[str]:
    """A database named after the suite's own (so engineers sharing a server never collide),
    dropped afterwards."""
    suite = parse_dsn(os.environ.get("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paycore")).get("dbname")
    name = f"test_{suite}_{request.node.name.removeprefix('test_')}"[:60]
    yield name
    conn = psycopg2.connect(make_dsn(**{**parse_dsn(_server()), "dbname": "postgres"}))
    conn.autocommit = True
    with conn.cursor() as cursor:
        cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    conn.close()


def run_bench(module: str, database: str, tmp_path: Path) -> str:
    env = {
        **os.environ,
        "BENCH_DATABASE_SERVER": _server(),
        "BENCH_REDIS_URL": os.environ.get("REDIS_URL", "redis://127.0.0.1:6379/15"),
    }
    done = subprocess.run(
        [sys.executable, "-m", module, "--smoke", "--database", database, "--logdir", str(tmp_path / "logs")],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=280,
    )
    output = done.stdout + done.stderr
    assert done.returncode == 0, output[-4000:]
    return output


@pytest.mark.timeout(300)
def test_callbacks_bench_every_notification_acknowledged_and_stored(bench_database: str, tmp_path: Path) -> None:
    out = run_bench("bench.callbacks", bench_database, tmp_path)
    assert "os.cpu_count()=" in out and "ratio" in out
    assert "warm-up (not measured)" in out and "ok paycore 8/8, floor 8/8" in out  # 4 per worker, 2 workers
    assert "paycore 33 inbox rows for 33 notifications sent (33 verified first copies)" in out
    assert "floor 33 rows for 33 requests" in out
    assert "delivery-to-SUCCEEDED: 20/20 SUCCEEDED" in out
    assert "correctness: every genuine notification acknowledged and stored" in out


@pytest.mark.timeout(300)
def test_api_bench_every_request_answered_and_every_row_created(bench_database: str, tmp_path: Path) -> None:
    out = run_bench("bench.api", bench_database, tmp_path)
    for label in ("POST /orders", "POST /payments", "GET /payments/{no}"):
        assert f"  {label}" in out and "ok 20/20 errors 0" in out
        assert f"  {label} warm-up" in out  # 4 per gunicorn worker (2 in the smoke) a side, not measured
    assert "stored: 28/28 orders, 28/28 payments PENDING" in out
    assert "correctness: every request answered 2xx, every row created" in out


@pytest.mark.timeout(300)
def test_chaos_bench_converges(bench_database: str, tmp_path: Path) -> None:
    out = run_bench("bench.chaos", bench_database, tmp_path)
    assert "converged: 40/40 payments = 100.0%" in out
    assert "double successes (orders whose money was kept twice): 0" in out
    assert "double refunds: 0" in out and "payments whose refunds exceed the amount: 0" in out
    assert "money taken at the channel that paycore does not show: 0 minor units" in out
    assert "open items left for ops (NEEDS_ATTENTION payments, refunds, notifications): 0" in out
    assert "result: CONVERGED" in out
