"""What every bench shares: its own PostgreSQL database, production-like settings generated for
the run, the processes it starts (gunicorn for paycore and for the floor, the sandbox gateway, a
Celery worker and beat) and stops again, and a light load driver.

Benches print figures; they never assert a time. Every figure that depends on the machine is a
ratio to the floor (``bench/floor``: a bare Django view that INSERTs the request body and commits)
measured in the same run, under the same gunicorn and connection settings, in interleaved rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import requests

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable
BIN = Path(PYTHON).parent

DEFAULT_DATABASE_SERVER = "postgres://postgres@127.0.0.1:5432/postgres"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


# --------------------------------------------------------------------------------------------
# Settings for a run
# --------------------------------------------------------------------------------------------
def database_url(name: str, server: str | None = None) -> str:
    """``server``'s URL (env BENCH_DATABASE_SERVER, default local PostgreSQL) with database ``name``."""
    parts = urlsplit(server or os.environ.get("BENCH_DATABASE_SERVER", DEFAULT_DATABASE_SERVER))
    return urlunsplit(parts._replace(path="/" + name))


def redis_url() -> str:
    """BENCH_REDIS_URL, else REDIS_URL, else Redis database 0 on this machine."""
    return os.environ.get("BENCH_REDIS_URL") or os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL


def production_env(*, database: str, redis: str, extra: dict[str, str] | None = None) -> dict[str, str]:
    """The environment of every process of a run: DEBUG off, a real SECRET_KEY and field key
    generated for this run, persistent connections, HTTPS as terminated by a load balancer."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST", "CELERY_TASK_ALWAYS"))}
    env.update(
        {
            "DEBUG": "false",
            "SECRET_KEY": secrets.token_urlsafe(50),
            "FIELD_ENCRYPTION_KEYS": "bench:" + base64.urlsafe_b64encode(secrets.token_bytes(32)).decode(),
            "DATABASE_URL": database,
            "DATABASE_CONN_MAX_AGE": "600",
            "REDIS_URL": redis,
            "CELERY_BROKER_URL": redis,
            "ALLOWED_HOSTS": "127.0.0.1,localhost",
            # TLS ends at a balancer in production; here the driver plays it (X-Forwarded-Proto),
            # and the sandbox calls back over plain HTTP, which must not be redirected to https.
            "SECURE_PROXY_SSL_HEADER": "true",
            "SECURE_SSL_REDIRECT": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONUNBUFFERED": "1",
        }
    )
    env.update(extra or {})
    return env


def django_setup(env: dict[str, str], settings_module: str = "bench.floor.settings") -> None:
    """Configure Django in this (the driver's) process with the run's settings (and the floor's table)."""
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = settings_module
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))
    import django

    django.setup()


def coffee_order(merchant: Any, merchant_order_no: str, customer_ref: str, unit_price: int = 1500) -> Any:
    """A one-item order created through paycore's services (after ``django_setup``)."""
    from orders.services import ItemInput, order_create, order_new

    order, _ = order_create(
        order_new(
            merchant=merchant,
            merchant_order_no=merchant_order_no,
            customer_ref=customer_ref,
            description="Coffee",
            currency="CNY",
            items=[ItemInput(name="Coffee", unit_price=unit_price, quantity=1)],
        )
    )
    return order


def recreate_database(url: str) -> None:
    """Drop and create the run's database (never one the run did not name itself)."""
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    dsn = parse_dsn(url)
    name = dsn["dbname"]
    conn = psycopg2.connect(make_dsn(**{**dsn, "dbname": "postgres"}))
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            cursor.execute(f'CREATE DATABASE "{name}"')
    finally:
        conn.close()


def migrate(env: dict[str, str], settings_module: str = "bench.floor.settings") -> None:
    """Migrate paycore and the floor's table (the floor settings add one app to paycore's)."""
    subprocess.run(  # noqa: S603 -- our own interpreter and manage.py
        [PYTHON, "manage.py", "migrate", "--no-input", "-v0", f"--settings={settings_module}"],
        cwd=ROOT,
        env=env,
        check=True,
    )


def add_warmup_argument(parser: argparse.ArgumentParser) -> None:
    """``--warmup``: the unmeasured requests per gunicorn worker and side before the rounds."""
    parser.add_argument(
        "--warmup",
        type=int,
        default=25,
        help="unmeasured requests per gunicorn worker and side before the rounds (25): a worker's CPU per "
        "request falls by a third over its first hundred or so (lazy imports, caches, the interpreter's "
        "specialisation), and a run of a service is its steady state",
    )


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def cpu_count() -> int:
    return os.cpu_count() or 1


# --------------------------------------------------------------------------------------------
# Processes
# --------------------------------------------------------------------------------------------
@dataclass
class Gunicorn:
    """How paycore and the floor are served, identically."""

    workers: int = 4
    threads: int = 1
    worker_class: str = "sync"
    backlog: int = 2048

    def describe(self) -> str:
        return f"gunicorn {self.worker_class} workers={self.workers} threads={self.threads}"

    def argv(self, app: str, port: int) -> list[str]:
        argv = [
            str(BIN / "gunicorn"),
            app,
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            str(self.workers),
            "--worker-class",
            self.worker_class,
            "--backlog",
            str(self.backlog),
            "--log-level",
            "warning",
        ]
        if self.worker_class == "gthread":
            argv += ["--threads", str(self.threads)]
        return argv


@dataclass
class Processes:
    """Every process a run started, stopped by their own ids at the end (never by name)."""

    logdir: Path
    started: list[tuple[str, subprocess.Popen[bytes]]] = field(default_factory=list)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = open(self.logdir / f"{name}.log", "wb")
        proc = subprocess.Popen(  # noqa: S603 -- argv built here from our own executables
            list(argv), cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
        self.started.append((name, proc))
        return proc

    def stop(self, name: str, timeout: float = 15.0) -> None:
        for label, proc in self.started:
            if label == name and proc.poll() is None:
                _terminate(proc, timeout)

    def stop_all(self) -> None:
        for _, proc in reversed(self.started):
            if proc.poll() is None:
                _terminate(proc, 15.0)

    def log_tail(self, name: str, lines: int = 30) -> str:
        path = self.logdir / f"{name}.log"
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:]) if path.exists() else ""


def _terminate(proc: subprocess.Popen[bytes], timeout: float) -> None:
    # Each process leads its own session (start_new_session): its group is exactly what it forked.
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=timeout)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        try:
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=5)


@contextmanager
def processes(logdir: Path) -> Iterator[Processes]:
    logdir.mkdir(parents=True, exist_ok=True)
    procs = Processes(logdir)
    try:
        yield procs
    finally:
        procs.stop_all()


def wait_http(url: str, timeout: float = 60.0, proc: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"{url}: the process exited with {proc.returncode}")
        try:
            requests.get(url, timeout=2, allow_redirects=False)
            return
        except requests.RequestException:
            time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


def start_sandbox(procs: Processes, env: dict[str, str], *, time_factor: float = 1.0) -> str:
    port = free_port()
    proc = procs.start(
        "sandbox", [PYTHON, "-m", "sandbox", "--port", str(port), "--time-factor", f"{time_factor:g}"], env
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(f"{url}/_sandbox/health", proc=proc)
    return url


def start_web(
    procs: Processes, name: str, app: str, env: dict[str, str], gunicorn: Gunicorn, port: int | None = None
) -> str:
    port = port or free_port()
    proc = procs.start(name, gunicorn.argv(app, port), env)
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/", proc=proc)
    return url


def start_worker(procs: Processes, env: dict[str, str], *, concurrency: int, name: str = "worker") -> None:
    procs.start(
        name,
        [
            str(BIN / "celery"),
            "-A",
            "config",
            "worker",
            "--loglevel=WARNING",
            f"--concurrency={concurrency}",
            f"--hostname={name}@%h",
            "--without-gossip",
            "--without-mingle",
        ],
        env,
    )


def start_beat(procs: Processes, env: dict[str, str]) -> None:
    procs.start("beat", [str(BIN / "celery"), "-A", "config", "beat", "--loglevel=WARNING"], env)


def purge_broker(url: str) -> None:
    import redis

    redis.Redis.from_url(url).delete("celery")


# --------------------------------------------------------------------------------------------
# The load driver: N concurrent senders over raw HTTP/1.1, one connection per request
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]
    body: bytes = b""

    def wire(self, host: str) -> bytes:
        lines = [f"{self.method} {self.path} HTTP/1.1", f"Host: {host}", "Connection: close"]
        lines += [f"{k}: {v}" for k, v in self.headers.items() if k.lower() not in ("host", "connection")]
        if self.body or self.method in ("POST", "PUT", "PATCH"):
            lines.append(f"Content-Length: {len(self.body)}")
        return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + self.body


@dataclass
class Round:
    target: str
    senders: int
    seconds: float
    statuses: list[int]
    latencies: list[float]  # seconds, per request, in sending order
    finished_at: list[float]  # time.time() when each answer was complete

    @property
    def ok(self) -> int:
        return sum(1 for s in self.statuses if 200 <= s < 300)

    @property
    def server_errors(self) -> int:
        return sum(1 for s in self.statuses if s >= 500 or s <= 0)

    @property
    def rate(self) -> float:
        return self.ok / self.seconds if self.seconds else 0.0

    def percentile(self, q: float) -> float:
        return percentile(self.latencies, q)


def percentile(values: Sequence[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))
    return ordered[index]


def drive(base_url: str, requests_: Sequence[Request], senders: int, *, timeout: float = 30.0) -> Round:
    """Send every request once, ``senders`` at a time, and time each answer."""
    return asyncio.run(_drive(base_url, requests_, senders, timeout))


async def _drive(base_url: str, requests_: Sequence[Request], senders: int, timeout: float) -> Round:
    parts = urlsplit(base_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    wires = [r.wire(f"{host}:{port}") for r in requests_]
    statuses = [0] * len(wires)
    latencies = [0.0] * len(wires)
    finished = [0.0] * len(wires)
    cursor = iter(range(len(wires)))

    async def sender() -> None:
        for i in cursor:
            started = time.perf_counter()
            try:
                reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), timeout)
                writer.write(wires[i])
                await writer.drain()
                answer = await asyncio.wait_for(reader.read(), timeout)  # until the server closes
                writer.close()
                statuses[i] = int(answer.split(b" ", 2)[1]) if answer.startswith(b"HTTP/") else -1
            except (OSError, TimeoutError, ValueError, IndexError):
                statuses[i] = -1
            latencies[i] = time.perf_counter() - started
            finished[i] = time.time()

    started = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(senders)))
    return Round(base_url, senders, time.perf_counter() - started, statuses, latencies, finished)


def interleaved(targets: dict[str, Callable[[int], Round]], rounds: int) -> dict[str, list[Round]]:
    """Run ``rounds`` rounds of every target in turn (a, b, a, b, ...); ``targets[name](i)`` runs
    round ``i`` of that target."""
    results: dict[str, list[Round]] = {name: [] for name in targets}
    for i in range(rounds):
        for name, run in targets.items():
            results[name].append(run(i))
    return results


def summary(rounds: Sequence[Round]) -> dict[str, float]:
    """Rate over all rounds (requests acknowledged / seconds spent) and latency percentiles."""
    latencies = [x for r in rounds for x in r.latencies]
    seconds = sum(r.seconds for r in rounds)
    return {
        "requests": sum(len(r.statuses) for r in rounds),
        "ok": sum(r.ok for r in rounds),
        "errors": sum(r.server_errors for r in rounds),
        "rate": sum(r.ok for r in rounds) / seconds if seconds else 0.0,
        "p50_ms": percentile(latencies, 50) * 1000,
        "p99_ms": percentile(latencies, 99) * 1000,
        "best_round_rate": max((r.rate for r in rounds), default=0.0),
    }


def print_comparison(label: str, ours: Sequence[Round], floor: Sequence[Round], senders: int) -> dict[str, Any]:
    a, f = summary(ours), summary(floor)
    ratio = a["rate"] / f["rate"] if f["rate"] else float("nan")
    ratios = [o.rate / fl.rate for o, fl in zip(ours, floor, strict=False) if fl.rate]
    median = sorted(ratios)[len(ratios) // 2] if ratios else float("nan")
    per_round = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"  {label:<28} senders={senders:<3} {a['rate']:8.1f}/s  p50 {a['p50_ms']:6.1f} ms  p99 {a['p99_ms']:6.1f} ms"
        f"  | floor {f['rate']:8.1f}/s  p50 {f['p50_ms']:6.1f} ms  p99 {f['p99_ms']:6.1f} ms"
        f"  | ratio {ratio:.2f}x, median of rounds {median:.2f}x (per round {per_round})"
        f"  | ok {a['ok']}/{a['requests']} errors {a['errors']}",
        flush=True,
    )
    # Each side's own rate per round: tells a slow paycore round from a floor slowed by the machine.
    print(
        f"  {'':<28} per round /s: paycore {', '.join(f'{r.rate:.0f}' for r in ours)}"
        f"  | floor {', '.join(f'{r.rate:.0f}' for r in floor)}",
        flush=True,
    )
    return {"ours": a, "floor": f, "ratio": ratio, "median": median}
