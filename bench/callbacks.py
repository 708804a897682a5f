"""Callback ingestion against the floor, and delivery-to-SUCCEEDED (performance issue items 6, 8).

    .venv/bin/python -m bench.callbacks            # the full run (a few minutes)
    .venv/bin/python -m bench.callbacks --smoke    # 25 requests a side, what the suite runs

Starts, on a database of its own (created and migrated here), paycore under gunicorn with
production settings (DEBUG off, a SECRET_KEY and field key generated for the run, persistent
connections) and, under the identical gunicorn and connection settings, the floor (bench/floor:
a bare Django view that INSERTs the request body and commits), plus the sandbox gateway.

Genuine notifications: payments are created through paycore's services and placed at the
sandbox; the payer pays there and the sandbox delivers its signed WeChat Pay notification to a
capture endpoint in this process. Those exact requests are then sent to paycore and to the floor
from 8 and from 64 concurrent senders in interleaved rounds (paycore, floor, paycore, floor...),
each paycore round with notifications of payments it has not seen, after an unmeasured warm-up
of ``--warmup`` (25) per gunicorn worker a side (each worker's first callback reads the account
and parses its keys, and its CPU per request keeps falling over its first hundred or so; the
slowest answer is printed). Notifications are captured just before
their level runs, inside WeChat's 300 s timestamp window.

Then delivery-to-SUCCEEDED: with a Celery worker on Redis, fresh notifications are sent by 8
senders and the bench waits until every payment is SUCCEEDED (the worker confirms each by a query
against the sandbox). Every notification must be acknowledged and stored (rows are counted): the
exit status says whether that held. Times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import http.server
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import Gunicorn, Request

SKIP_HEADERS = {"host", "content-length", "connection", "accept-encoding", "accept"}


@dataclass
class Options:
    requests: int  # per round and level
    rounds: int
    warmup: int  # per gunicorn worker and side
    senders: list[int]
    delivery: int
    gunicorn: Gunicorn
    worker_concurrency: int
    database: str
    logdir: Path


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.callbacks", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=300, help="notifications per round and level (default 300)")
    p.add_argument("--rounds", type=int, default=10, help="interleaved rounds per level (default 10)")
    p.add_argument("--senders", default="8,64", help="concurrency levels (default 8,64)")
    p.add_argument("--delivery", type=int, default=500, help="notifications for delivery-to-SUCCEEDED (500)")
    p.add_argument("--workers", type=int, default=4, help="gunicorn workers for paycore and the floor (4)")
    p.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker; >1 uses gthread (1)")
    p.add_argument("--worker-concurrency", type=int, default=4, help="Celery worker processes (4)")
    p.add_argument("--database", default="paycore_bench_callbacks", help="database created for the run")
    p.add_argument("--logdir", default="var/bench/callbacks", help="process logs")
    harness.add_warmup_argument(p)
    p.add_argument("--smoke", action="store_true", help="25 requests, one round, 8 senders, 20 deliveries")
    a = p.parse_args(argv)
    if a.smoke:
        a.requests, a.rounds, a.senders, a.delivery, a.workers, a.worker_concurrency = 25, 1, "8", 20, 2, 2
        a.warmup = 4
    return Options(
        requests=a.requests,
        rounds=a.rounds,
        warmup=a.warmup,
        senders=[int(s) for s in a.senders.split(",")],
        delivery=a.delivery,
        gunicorn=Gunicorn(workers=a.workers, threads=a.threads, worker_class="gthread" if a.threads > 1 else "sync"),
        worker_concurrency=a.worker_concurrency,
        database=a.database,
        logdir=harness.ROOT / a.logdir,
    )


# --------------------------------------------------------------------------------------------
# Genuine notifications: the sandbox delivers them to this capture endpoint
# --------------------------------------------------------------------------------------------
class Capture:
    def __init__(self) -> None:
        self.received: list[Request] = []
        self.lock = threading.Lock()
        capture = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k: v for k, v in self.headers.items() if k.lower() not in SKIP_HEADERS}
                headers["X-Forwarded-Proto"] = "https"
                with capture.lock:
                    capture.received.append(Request("POST", self.path, headers, body))
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def take(self, n: int, timeout: float = 120.0) -> list[Request]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.received) >= n:
                    taken, self.received = self.received[:n], self.received[n:]
                    return taken
            time.sleep(0.05)
        raise RuntimeError(f"the sandbox delivered {len(self.received)} of {n} notifications")


def make_payments(n: int, merchant: Any, tag: str) -> list[Any]:
    """``n`` WeChat app payments created through paycore's services and placed at the sandbox."""
    from django.db import connection

    from payments.services import payment_place

    def one(i: int) -> Any:
        try:
            order = harness.coffee_order(merchant, f"{tag}-{i}", f"c{i}", unit_price=1500 + i % 7)
            payment, _ = payment_place(order_ids=[order.pk], customer_ref=f"c{i}", channel="wechat", method="app")
            return payment
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(one, range(n)))


def pay_and_capture(payments: list[Any], gateway: Any, capture: Capture) -> list[Request]:
    with ThreadPoolExecutor(max_workers=8) as pool:
        list(pool.map(lambda p: gateway.pay("wechat", p.payment_no), payments))
    return capture.take(len(payments))


def warm_up(notes: list[Request], paycore_url: str, floor_url: str, senders: int) -> bool:
    """Send each side the same few genuine notifications before the measured rounds, unmeasured
    but acknowledged and stored like the others (counted in the rows checked). A gunicorn worker's
    first callback reads the account, parses its keys and starts the dispatch thread, whose first
    publish opens the broker connection: a cost of each worker's start (the slowest warm-up
    answer, 194 ms against the floor's 40 ms in one run) that the floor does not have. The rounds
    measure callbacks, not starts; the start stays visible in the printed line."""
    paycore = harness.drive(paycore_url + "/", notes, senders)
    floor = harness.drive(floor_url + "/", notes, senders)
    slowest = {name: max(r.latencies, default=0.0) * 1000 for name, r in (("paycore", paycore), ("floor", floor))}
    print(
        f"  warm-up (not measured)       senders={senders:<3} {len(notes)} notifications a side: paycore slowest "
        f"{slowest['paycore']:.0f} ms, floor slowest {slowest['floor']:.0f} ms"
        f"  | ok paycore {paycore.ok}/{len(notes)}, floor {floor.ok}/{len(notes)}",
        flush=True,
    )
    return paycore.ok == floor.ok == len(notes)


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    started = time.monotonic()
    database = harness.database_url(opts.database)
    env = harness.production_env(database=database, redis=harness.redis_url())
    harness.recreate_database(database)
    harness.migrate(env)
    with harness.processes(opts.logdir) as procs:
        sandbox_url = harness.start_sandbox(procs, env)
        paycore_url = harness.start_web(procs, "paycore", "config.wsgi:application", env, opts.gunicorn)
        floor_url = harness.start_web(procs, "floor", "bench.floor.wsgi:application", env, opts.gunicorn)
        harness.django_setup(env)
        return run(opts, env, procs, sandbox_url, paycore_url, floor_url, started)


def run(
    opts: Options,
    env: dict[str, str],
    procs: harness.Processes,
    sandbox_url: str,
    paycore_url: str,
    floor_url: str,
    started: float,
) -> int:
    from django.conf import settings
    from django.db import connection

    from bench.floor.models import FloorRequest
    from inbox.models import InboundNotification
    from orders.services import merchant_create
    from payments.models import Payment, PaymentEvent
    from sandbox.client import SandboxClient
    from sandbox.provisioning.services import sandbox_account_provision

    capture = Capture()
    settings.PAYCORE_PUBLIC_BASE_URL = capture.url  # where the sandbox delivers: the capture endpoint
    gateway = SandboxClient(sandbox_url)
    sandbox_account_provision(channel="wechat", name="bench-wechat", sandbox_url=sandbox_url)
    merchant = merchant_create(code="bench", name="Bench merchant")
    db = connection.settings_dict
    print("bench/callbacks.py: callback ingestion against the floor, then delivery-to-SUCCEEDED")
    print(
        f"  machine: os.cpu_count()={harness.cpu_count()}  | paycore and floor: {opts.gunicorn.describe()}, "
        f"DEBUG off, CONN_MAX_AGE={db['CONN_MAX_AGE']} health checks={db['CONN_HEALTH_CHECKS']}, "
        f"PostgreSQL database {db['NAME']}"
    )
    print(
        f"  load: levels {opts.senders} senders, {opts.rounds} interleaved rounds x {opts.requests} genuine WeChat "
        f"notifications per side and level (distinct payments), one connection per request; Celery worker off"
    )
    ok = True
    sent_paycore = sent_floor = 0
    floor_before = FloorRequest.objects.count()  # the readiness probes reached the floor too
    results: dict[int, Any] = {}
    warmup = opts.warmup * opts.gunicorn.workers
    for senders in opts.senders:
        payments = make_payments(warmup + opts.rounds * opts.requests, merchant, f"in{senders}")
        notes = pay_and_capture(payments, gateway, capture)
        warm, notes = notes[:warmup], notes[warmup:]
        sent_paycore, sent_floor = sent_paycore + len(warm), sent_floor + len(warm)
        ok = warm_up(warm, paycore_url, floor_url, senders) and ok
        rounds = [notes[i * opts.requests : (i + 1) * opts.requests] for i in range(opts.rounds)]
        by_target = harness.interleaved(
            {
                "paycore": lambda i, r=rounds, s=senders: harness.drive(paycore_url + "/", r[i], s),
                "floor": lambda i, r=rounds, s=senders: harness.drive(floor_url + "/", r[i], s),
            },
            opts.rounds,
        )
        results[senders] = harness.print_comparison(
            "ingestion (acks)", by_target["paycore"], by_target["floor"], senders
        )
        sent_paycore += sum(len(r.statuses) for r in by_target["paycore"])
        sent_floor += sum(len(r.statuses) for r in by_target["floor"])
        if any(s != 200 for r in by_target["paycore"] for s in r.statuses):
            ok = False
            print(f"  !! paycore answered {sorted({s for r in by_target['paycore'] for s in r.statuses})}")
    stored = InboundNotification.objects.count()
    verified = InboundNotification.objects.filter(verification="VERIFIED", is_duplicate=False).count()
    floor_rows = FloorRequest.objects.count() - floor_before
    print(
        f"  stored: paycore {stored} inbox rows for {sent_paycore} notifications sent ({verified} verified first "
        f"copies); floor {floor_rows} rows for {sent_floor} requests (warm-ups included)"
    )
    ok = ok and stored == verified == sent_paycore and floor_rows == sent_floor
    harness.purge_broker(env["CELERY_BROKER_URL"])  # the ingestion rounds' tasks: not measured

    # Delivery to SUCCEEDED with the worker confirming by query.
    harness.start_worker(procs, env, concurrency=opts.worker_concurrency)
    payments = make_payments(opts.delivery, merchant, "dl")
    notes = pay_and_capture(payments, gateway, capture)
    time.sleep(2.0)  # the worker is up and idle (it is not measured starting)
    delivered = harness.drive(paycore_url + "/", notes, 8)
    ids = [p.pk for p in payments]
    deadline = time.monotonic() + max(120.0, opts.delivery / 2)
    while time.monotonic() < deadline:
        done = Payment.objects.filter(pk__in=ids, status="SUCCEEDED").count()
        if done == len(ids):
            break
        time.sleep(0.25)
    succeeded_at = dict(
        PaymentEvent.objects.filter(payment_id__in=ids, to_status="SUCCEEDED").values_list("payment_id", "created_at")
    )
    start = min(t - lat for t, lat in zip(delivered.finished_at, delivered.latencies, strict=True))
    # notes[i] is the notification of some payment; match by payment through the inbox rows.
    sent_at = {}
    inbound = InboundNotification.objects.filter(payment_id__in=ids).values_list("payment_id", "received_at")
    for payment_id, received_at in inbound:
        sent_at[payment_id] = received_at
    latencies = [
        (succeeded_at[pid] - sent_at[pid]).total_seconds() for pid in ids if pid in succeeded_at and pid in sent_at
    ]
    last = max(succeeded_at.values(), default=None)
    span = (last.timestamp() - start) if isinstance(last, datetime) else float("nan")
    print(
        f"  delivery-to-SUCCEEDED: {len(succeeded_at)}/{len(ids)} SUCCEEDED, {len(ids) / span:.1f}/s over {span:.1f} s "
        f"(8 senders, Celery worker concurrency {opts.worker_concurrency} prefork, confirming by query at the "
        f"sandbox); per payment received->SUCCEEDED p50 {harness.percentile(latencies, 50) * 1000:.0f} ms "
        f"p99 {harness.percentile(latencies, 99) * 1000:.0f} ms; acks {delivered.ok}/{len(notes)}"
    )
    ok = ok and len(succeeded_at) == len(ids) and delivered.ok == len(notes)
    level8 = results.get(8)
    if level8:
        print(
            f"  targets at 8 senders: ingestion >= 0.70x the floor: {level8['ratio']:.2f}x overall, "
            f"{level8['median']:.2f}x median of rounds ({'met' if level8['ratio'] >= 0.7 else 'NOT met'}); "
            f"p99 < 30 ms: {level8['ours']['p99_ms']:.1f} ms ({'met' if level8['ours']['p99_ms'] < 30 else 'NOT met'}; "
            f"the floor's own p99 {level8['floor']['p99_ms']:.1f} ms)"
        )
    print(
        f"  correctness: {'every genuine notification acknowledged and stored' if ok else 'FAILED'}; "
        f"took {time.monotonic() - started:.0f} s"
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
