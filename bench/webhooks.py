"""Merchant webhooks under load: N events committed, delivered to a local receiver that fails a
share of requests, retried on the schedule (compressed by --time-scale so a run ends in minutes).

Prints its configuration, os.cpu_count(), delivered/s, commit-to-delivery latency percentiles
(from the commit of an event to the receiver's first 2xx for it) and the duplicates the receiver
saw (2xx answers for an event id it had already accepted).

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/paycore_outbox \\
        .venv/bin/python -m bench.webhooks --events 10000 --failure-rate 0.1

It creates (and drops) its own database, ``bench_<name>``. Workers are threads in this process
standing in for Celery workers: the after-commit wake-up hands new events to a pool running the
dispatcher, and a sweeper thread runs the webhook sweep (the beat's job) for the retries.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")


@dataclass(frozen=True)
class Config:
    events: int = 10_000
    merchants: int = 100
    failure_rate: float = 0.1  # share of requests answered 500, drawn per request
    producers: int = 4  # threads committing events, one event per transaction
    workers: int = 8  # dispatcher threads (stand-ins for Celery workers)
    time_scale: float = 0.01  # the retry schedule and the ordering window, multiplied by this
    sweep_every: float = 0.05  # seconds between sweeper runs (the beat)
    seed: int = 7
    timeout: float = 600.0
    rate: float = 0.0  # events committed per second over all producers; 0: as fast as they can


@dataclass
class Result:
    events: int = 0
    delivered: int = 0
    requests: int = 0
    failures_answered: int = 0
    duplicates: int = 0
    seconds: float = 0.0
    latencies: list[float] = field(default_factory=list)

    def percentile(self, p: float) -> float:
        if not self.latencies:
            return float("nan")
        ordered = sorted(self.latencies)
        return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))]


class Receiver:
    """A merchant's server: fails a share of requests, dedupes by event id, notes the time."""

    def __init__(self, failure_rate: float, seed: int) -> None:
        self.failure_rate = failure_rate
        self.random = random.Random(seed)
        self.lock = threading.Lock()
        self.accepted: dict[str, float] = {}
        self.requests = self.failures = self.duplicates = 0
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                event_id = self.headers.get("X-Paycore-Event-Id", "")
                with receiver.lock:
                    receiver.requests += 1
                    fail = receiver.random.random() < receiver.failure_rate
                    if fail:
                        receiver.failures += 1
                    elif event_id in receiver.accepted:
                        receiver.duplicates += 1
                    else:
                        receiver.accepted[event_id] = time.time()
                self.send_response(500 if fail else 200)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"no" if fail else b"ok")

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/notify"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def compressed_schedule(scale: float) -> Any:
    from outbox.services import webhooks

    saved = webhooks.SCHEDULE, webhooks.ORDER_WINDOW
    webhooks.SCHEDULE = tuple(step * scale for step in saved[0])
    webhooks.ORDER_WINDOW = saved[1] * scale
    try:
        yield
    finally:
        webhooks.SCHEDULE, webhooks.ORDER_WINDOW = saved


def run(config: Config) -> Result:
    """Run the load against the configured database (tables must exist) and return the figures."""
    from django.db import connection, transaction

    import paycore.outbox
    from orders.services import merchant_create
    from outbox.services.webhooks import WEBHOOKS, webhooks_dispatch
    from paycore.models import OutboxEvent
    from paycore.outbox import outbox_add
    from paycore.sweeps import sweep_run

    receiver = Receiver(config.failure_rate, config.seed)
    run_tag = f"{os.getpid()}-{int(time.time() * 1000) % 10**8}"
    merchants = [
        merchant_create(
            code=f"b{run_tag}-{n}"[:32],
            name=f"Bench {n}",
            notify_url=receiver.url,
            webhook_secret=f"whsec_bench_{n}",
        ).pk
        for n in range(config.merchants)
    ]
    committed: dict[str, float] = {}
    committed_lock = threading.Lock()
    pool = ThreadPoolExecutor(max_workers=config.workers)
    stop = threading.Event()

    def dispatch(pks: list[int]) -> None:
        try:
            webhooks_dispatch(event_pks=pks)
        finally:
            connection.close()

    def wake(pks: list[int]) -> None:  # what the Celery task would do, on a worker thread
        pool.submit(dispatch, pks)

    def sweeper() -> None:
        try:
            while not stop.is_set():
                sweep_run(WEBHOOKS)
                stop.wait(config.sweep_every)
        finally:
            connection.close()

    def produce(index: int) -> None:
        try:
            for n in range(index, config.events, config.producers):
                if config.rate:  # event n is due n / rate seconds after the start
                    time.sleep(max(0.0, started + n / config.rate - time.time()))
                with transaction.atomic():
                    (event,) = outbox_add(
                        topic="bench.ping",
                        key=f"{run_tag}-{n}",
                        merchant_id=merchants[n % len(merchants)],
                        payload={"n": n},
                    )
                at = time.time()  # the commit has returned
                with committed_lock:
                    committed[str(event.event_id)] = at
        finally:
            connection.close()

    listeners = list(paycore.outbox._LISTENERS)
    paycore.outbox._LISTENERS[:] = [wake]
    result = Result(events=config.events)
    started = time.time()
    try:
        with compressed_schedule(config.time_scale):
            sweeping = threading.Thread(target=sweeper, daemon=True)
            sweeping.start()
            producers = [threading.Thread(target=produce, args=(i,)) for i in range(config.producers)]
            for thread in producers:
                thread.start()
            for thread in producers:
                thread.join()
            deadline = started + config.timeout
            while time.time() < deadline:
                with receiver.lock:
                    if len(receiver.accepted) >= config.events:
                        break
                time.sleep(0.02)
            result.seconds = max(receiver.accepted.values(), default=time.time()) - started
            stop.set()
            sweeping.join()
            pool.shutdown(wait=True)
    finally:
        paycore.outbox._LISTENERS[:] = listeners
        receiver.stop()
    with receiver.lock:
        result.delivered = len(receiver.accepted)
        result.requests, result.failures_answered = receiver.requests, receiver.failures
        result.duplicates = receiver.duplicates
        result.latencies = [receiver.accepted[i] - committed[i] for i in receiver.accepted if i in committed]
    pending = OutboxEvent.objects.filter(key__startswith=f"{run_tag}-").exclude(delivery_status="DELIVERED").count()
    if pending:
        print(f"warning: {pending} events not delivered within {config.timeout:.0f}s", file=sys.stderr)
    return result


def report(config: Config, result: Result) -> str:
    schedule = [timedelta(seconds=s.total_seconds() * config.time_scale) for s in _schedule()]
    lines = [
        f"config: {json.dumps(asdict(config))}",
        f"os.cpu_count(): {os.cpu_count()}  load average at the end (1, 5, 15 min): {os.getloadavg()}",
        f"retry schedule (scaled x{config.time_scale}): {[str(s) for s in schedule]}",
        f"events: {result.events}  delivered (first 2xx): {result.delivered}  requests: {result.requests}"
        f"  answered 500: {result.failures_answered}",
        f"delivered/s: {result.delivered / result.seconds if result.seconds else float('nan'):.1f}"
        f"  (over {result.seconds:.1f} s from the first commit to the last delivery)",
        "commit-to-delivery latency: "
        + "  ".join(f"p{p} {result.percentile(p) * 1000:.0f} ms" for p in (50, 90, 99))
        + f"  max {max(result.latencies, default=0) * 1000:.0f} ms",
        f"duplicates seen by the receiver: {result.duplicates}",
    ]
    return "\n".join(lines)


def _schedule() -> tuple[timedelta, ...]:
    from outbox.services.webhooks import SCHEDULE

    return SCHEDULE


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    defaults = Config()
    for name, value in asdict(defaults).items():
        parser.add_argument(f"--{name.replace('_', '-')}", type=type(value), default=value)
    config = Config(**vars(parser.parse_args(argv)))

    import django
    from django.conf import settings

    django.setup()
    import logging

    logging.disable(logging.INFO)  # one sweep line per run would drown the figures
    from django.test.utils import setup_databases, teardown_databases

    db = settings.DATABASES["default"]
    db.setdefault("TEST", {})["NAME"] = f"bench_{db['NAME']}"
    names = setup_databases(verbosity=0, interactive=False)
    try:
        print(report(config, run(config)))
    finally:
        teardown_databases(names, verbosity=0)


if __name__ == "__main__":
    main()
