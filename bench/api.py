"""The REST API's hot paths against the floor (performance issue item 7).

    .venv/bin/python -m bench.api            # the full run (a few minutes)
    .venv/bin/python -m bench.api --smoke    # 20 requests an endpoint, what the suite runs

The method of bench/callbacks.py: its own database, paycore under gunicorn with production
settings, the floor (a bare Django view that INSERTs the request body and commits) under the
identical gunicorn and connection settings, the sandbox gateway on the same machine, and
interleaved rounds (paycore, floor, paycore, floor...) of the same requests from concurrent
senders, after an unmeasured warm-up of ``--warmup`` (25) requests per gunicorn worker a side and
endpoint (a worker's first requests import lazily, build serializers, parse channel keys and open
pooled connections, and its CPU per request keeps falling over its first hundred or so: its
start, printed on its own line, not its steady state), for:

- POST /api/v1/orders          a new order each (its own merchant order number and Idempotency-Key)
- POST /api/v1/payments        a WeChat app prepay placed at the sandbox, for an order created before
- GET  /api/v1/payments/{no}   the payments the POST rounds created

API keys come from ``paycore.apikeys.api_client_create``; every creating POST carries an
``Idempotency-Key``. Every request must succeed and every created row must be there (the exit
status says whether that held); times are printed, never asserted.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench import harness
from bench.harness import Gunicorn, Request

TARGETS = {"POST /orders": 0.5, "POST /payments": 0.3, "GET /payments/{no}": 0.6}


@dataclass
class Options:
    requests: int
    rounds: int
    warmup: int  # per gunicorn worker and side
    senders: list[int]
    gunicorn: Gunicorn
    database: str
    logdir: Path


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.api", description=__doc__.split("\n")[0])
    p.add_argument("--requests", type=int, default=400, help="requests per round, endpoint and level (400)")
    p.add_argument("--rounds", type=int, default=8, help="interleaved rounds (default 8)")
    p.add_argument("--senders", default="8", help="concurrency levels (default 8)")
    p.add_argument("--workers", type=int, default=4, help="gunicorn workers for paycore and the floor (4)")
    p.add_argument("--threads", type=int, default=1, help="threads per gunicorn worker; >1 uses gthread (1)")
    p.add_argument("--database", default="paycore_bench_api", help="database created for the run")
    p.add_argument("--logdir", default="var/bench/api", help="process logs")
    harness.add_warmup_argument(p)
    p.add_argument("--smoke", action="store_true", help="20 requests an endpoint, one round, 8 senders")
    a = p.parse_args(argv)
    if a.smoke:
        a.requests, a.rounds, a.senders, a.workers, a.warmup = 20, 1, "8", 2, 4
    return Options(
        requests=a.requests,
        rounds=a.rounds,
        warmup=a.warmup,
        senders=[int(s) for s in a.senders.split(",")],
        gunicorn=Gunicorn(workers=a.workers, threads=a.threads, worker_class="gthread" if a.threads > 1 else "sync"),
        database=a.database,
        logdir=harness.ROOT / a.logdir,
    )


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
        return run(opts, sandbox_url, paycore_url, floor_url, started)


def _json(method: str, path: str, key: str, payload: dict[str, Any] | None = None) -> Request:
    headers = {"Authorization": f"Bearer {key}", "X-Forwarded-Proto": "https", "Accept": "application/json"}
    body = b""
    if payload is not None:
        headers.update({"Content-Type": "application/json", "Idempotency-Key": f"bench-{uuid.uuid4()}"})
        body = json.dumps(payload).encode()
    return Request(method, path, headers, body)


def run(opts: Options, sandbox_url: str, paycore_url: str, floor_url: str, started: float) -> int:
    from django.db import connection

    from bench.floor.models import FloorRequest
    from orders.models import Order
    from orders.services import merchant_create
    from paycore.apikeys import api_client_create
    from payments.models import Payment
    from sandbox.provisioning.services import sandbox_account_provision

    sandbox_account_provision(channel="wechat", name="bench-wechat", sandbox_url=sandbox_url)
    merchant = merchant_create(code="bench", name="Bench merchant")
    _, key = api_client_create(name="bench-backend")
    db = connection.settings_dict
    warmup = opts.warmup * opts.gunicorn.workers
    per_side = opts.rounds * opts.requests
    total = warmup + per_side  # each endpoint's warm-up requests come first
    print("bench/api.py: POST /orders, POST /payments (WeChat app prepay at the sandbox), GET /payments/{no}")
    print(
        f"  machine: os.cpu_count()={harness.cpu_count()}  | paycore and floor: {opts.gunicorn.describe()}, "
        f"DEBUG off, CONN_MAX_AGE={db['CONN_MAX_AGE']} health checks={db['CONN_HEALTH_CHECKS']}, "
        f"PostgreSQL database {db['NAME']}; sandbox gateway on this machine"
    )
    print(
        f"  load: levels {opts.senders} senders, {opts.rounds} interleaved rounds x {opts.requests} requests per "
        f"side, endpoint and level; one connection per request; platform API key, Idempotency-Key on every POST"
    )
    ok = True
    verdicts = []
    floor_before = FloorRequest.objects.count()  # the readiness probes reached the floor too
    for senders in opts.senders:
        tag = f"s{senders}"
        # POST /orders: a distinct order each.
        orders = [
            _json(
                "POST",
                "/api/v1/orders",
                key,
                {
                    "merchant": merchant.code,
                    "merchant_order_no": f"{tag}-o{i}",
                    "customer_ref": f"c{i}",
                    "description": "Coffee",
                    "currency": "CNY",
                    "items": [{"name": "Latte", "unit_price": 1500, "quantity": 2}],
                },
            )
            for i in range(total)
        ]
        # POST /payments: orders created beforehand, one payment each.
        payable = []
        for i in range(total):
            order = harness.coffee_order(merchant, f"{tag}-p{i}", f"c{i}")
            payable.append(order.order_no)
        payments = [
            _json(
                "POST",
                "/api/v1/payments",
                key,
                {"order_nos": [no], "customer_ref": f"c{i}", "channel": "wechat", "method": "app"},
            )
            for i, no in enumerate(payable)
        ]
        for label, reqs, expect in (("POST /orders", orders, 201), ("POST /payments", payments, 201)):
            ok &= compare(label, reqs, expect, opts, senders, paycore_url, floor_url, verdicts)
        placed = list(Payment.objects.filter(maps__order__order_no__in=payable).values_list("payment_no", flat=True))
        gets = (
            [_json("GET", f"/api/v1/payments/{placed[i % len(placed)]}", key) for i in range(total)] if placed else []
        )
        ok &= compare("GET /payments/{no}", gets, 200, opts, senders, paycore_url, floor_url, verdicts)
        created_orders = Order.objects.filter(merchant_order_no__startswith=f"{tag}-o").count()
        pending = Payment.objects.filter(maps__order__order_no__in=payable, status="PENDING").count()
        print(
            f"  stored: {created_orders}/{total} orders, {pending}/{total} payments PENDING at the sandbox "
            f"(warm-ups included); floor rows so far {FloorRequest.objects.count() - floor_before}"
        )
        ok &= created_orders == total and pending == total
    for label, senders, ratio, median in verdicts:
        target = TARGETS[label]
        print(
            f"  target {label} at {senders} senders: >= {target:.2f}x the floor: {ratio:.2f}x overall, "
            f"{median:.2f}x median of rounds ({'met' if ratio >= target else 'NOT met'})"
        )
    print(
        f"  correctness: {'every request answered 2xx, every row created' if ok else 'FAILED'}; "
        f"took {time.monotonic() - started:.0f} s"
    )
    return 0 if ok else 1


def compare(
    label: str,
    reqs: list[Request],
    expect: int,
    opts: Options,
    senders: int,
    paycore_url: str,
    floor_url: str,
    verdicts: list[tuple[str, int, float, float]],
) -> bool:
    if not reqs:
        print(f"  {label}: nothing to send")
        return False
    warm, reqs = reqs[: len(reqs) - opts.rounds * opts.requests], reqs[len(reqs) - opts.rounds * opts.requests :]
    warmed = {name: harness.drive(url, warm, senders) for name, url in (("paycore", paycore_url), ("floor", floor_url))}
    print(
        f"  {label + ' warm-up':<28} senders={senders:<3} {len(warm)} a side, not measured: slowest answer "
        + ", ".join(f"{name} {max(r.latencies, default=0.0) * 1000:.0f} ms" for name, r in warmed.items()),
        flush=True,
    )
    rounds = [reqs[i * opts.requests : (i + 1) * opts.requests] for i in range(opts.rounds)]
    by_target = harness.interleaved(
        {
            "paycore": lambda i: harness.drive(paycore_url, rounds[i], senders),
            "floor": lambda i: harness.drive(floor_url, rounds[i], senders),
        },
        opts.rounds,
    )
    result = harness.print_comparison(label, by_target["paycore"], by_target["floor"], senders)
    verdicts.append((label, senders, result["ratio"], result["median"]))
    statuses = sorted({s for r in [*by_target["paycore"], warmed["paycore"]] for s in r.statuses})
    if statuses != [expect]:
        print(f"  !! {label}: paycore answered {statuses}, expected only {expect}")
        return False
    return True


if __name__ == "__main__":
    raise SystemExit(main())
