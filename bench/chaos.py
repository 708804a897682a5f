"""The convergence proof (convergence issue item 8): under faults, does every payment and refund
end where the channel says it is?

    .venv/bin/python -m bench.chaos                 # 1,000 payments, all faults (about 10 minutes)
    .venv/bin/python -m bench.chaos --smoke         # 40 payments, fewer faults, what the suite runs

Starts, on a database of its own, paycore under gunicorn (production settings), two Celery
workers and beat on Redis (django-celery-beat's database scheduler; the sweep schedules are the
``PeriodicTask`` rows seeded by ``schedulers/beat.py``, shortened here to a few seconds), and the
sandbox gateway with a compressed clock (``--time-factor``: its notification retry schedules and
delays run that much faster). Channel accounts reach the sandbox through a small proxy in this
process that, for a chosen share of channel API calls, first asks the sandbox (its fault control
API) to fail exactly that call: answer 500 or 503, or process it and then hold the answer past
paycore's read timeout. So the share of failed calls is exact and counted.

Then, through paycore's REST API and the sandbox's control API only:
- payments across WeChat Pay (app), Alipay (app), PayPal (page) and partner points;
- notification faults set per payment before the payer acts: dropped (30%), duplicated (then a
  third copy replayed byte for byte from the sandbox's delivery log for half of those), delayed,
  reordered;
- 5% of orders paid twice: an Alipay order string is handed out, the customer switches to WeChat
  and pays there, then pays the Alipay order string too;
- the app's client report for half of the payments;
- 20% of the paid payments partly refunded; half of the WeChat ones are held at the channel
  and their first attempt closed there (failed), so paycore must retry under a new number.

It waits (bounded) until nothing changes, then compares every payment and refund with the
sandbox's own trades and prints: converged %, double successes, double refunds, payments whose
refunds exceed the amount, money taken at the channel that paycore does not show, open items left
for ops, and the time to converge. Exit status 0 only when everything converged.
"""

from __future__ import annotations

import argparse
import http.server
import random
import threading
import time
import uuid
from collections import Counter, defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import requests

from bench import harness
from bench.harness import Gunicorn

CHANNELS = {
    "wechat": {"method": "app", "currency": "CNY"},
    "alipay": {"method": "app", "currency": "CNY"},
    "paypal": {"method": "page", "currency": "USD"},
    "points": {"method": "points", "currency": "CNY"},
}
MIX = ["wechat"] * 35 + ["alipay"] * 30 + ["paypal"] * 15 + ["points"] * 20
# Sweep intervals for the run (seconds); ops edit the same rows in the admin.
SWEEP_EVERY = {"success": 3, "refund": 3, "inbox": 5, "close": 5, "repeat": 5}
HOLD = "SANDBOX_PROCESSING"  # a WeChat refund with this reason waits at the sandbox for the payer's action


@dataclass
class Options:
    payments: int
    drop: float
    duplicate: float
    delay: float
    reorder: float
    api_faults: float
    timeouts: float  # share of the API faults that are timeouts (the rest 500/503)
    doubles: float
    refunds: float
    held_refunds: float
    reports: float
    time_factor: float
    max_wait: float
    settle: float
    seed: int
    senders: int
    database: str
    logdir: Path


def parse(argv: list[str] | None) -> Options:
    p = argparse.ArgumentParser(prog="python -m bench.chaos", description=__doc__.split("\n")[0])
    p.add_argument("--payments", type=int, default=1000)
    p.add_argument("--api-faults", type=float, default=0.10, help="share of channel API calls failed (0.10)")
    p.add_argument("--time-factor", type=float, default=30.0, help="sandbox clock compression (30)")
    p.add_argument("--max-wait", type=float, default=420.0, help="seconds to wait for convergence at most (420)")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--database", default="paycore_bench_chaos")
    p.add_argument("--logdir", default="var/bench/chaos")
    p.add_argument("--smoke", action="store_true", help="40 payments, no doubles, no timeouts, no held refunds")
    a = p.parse_args(argv)
    opts = Options(
        payments=a.payments,
        drop=0.30,
        duplicate=0.15,
        delay=0.10,
        reorder=0.05,
        api_faults=a.api_faults,
        timeouts=0.10,
        doubles=0.05,
        refunds=0.20,
        held_refunds=0.5,
        reports=0.5,
        time_factor=a.time_factor,
        max_wait=a.max_wait,
        settle=120.0,
        seed=a.seed,
        senders=8,
        database=a.database,
        logdir=harness.ROOT / a.logdir,
    )
    if a.smoke:
        opts.payments, opts.timeouts, opts.doubles, opts.held_refunds = 40, 0.0, 0.0, 0.0
        opts.max_wait, opts.settle, opts.senders = 150.0, 60.0, 6
    return opts


# --------------------------------------------------------------------------------------------
# The channels' side of the network: a proxy that has the sandbox fail an exact share of calls
# --------------------------------------------------------------------------------------------
class FaultProxy:
    def __init__(self, sandbox_url: str, gateway: Any, rng: random.Random, timeout_share: float) -> None:
        self.sandbox_url, self.gateway, self.rng = sandbox_url, gateway, rng
        self.rate, self.timeout_share = 0.0, timeout_share
        self.lock = threading.Lock()
        self.calls: Counter[str] = Counter()
        self.faults: Counter[str] = Counter()
        self.local = threading.local()
        proxy = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                proxy.forward(self)

            do_GET = do_POST = do_PATCH = do_DELETE = do_PUT = _forward

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def _session(self) -> requests.Session:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        return self.local.session

    def forward(self, handler: http.server.BaseHTTPRequestHandler) -> None:
        channel = handler.path.split("/")[1] if handler.path.count("/") > 1 else ""
        body = handler.rfile.read(int(handler.headers.get("Content-Length") or 0))
        with self.lock:
            self.calls[channel] += 1
            fault = None
            if self.rng.random() < self.rate:
                fault = (
                    "timeout" if self.rng.random() < self.timeout_share else self.rng.choice(["http_500", "http_503"])
                )
                self.faults[fault] += 1
        if fault is not None:  # the sandbox fails exactly this call (its target, once)
            rule: dict[str, Any] = {"kind": fault, "channel": channel, "path": handler.path, "count": 1}
            if fault == "timeout":
                rule["seconds"] = 16.0  # past paycore's 15 s read timeout; processed, answer lost
            self.gateway.add_fault(**rule)
        headers = {
            k: v for k, v in handler.headers.items() if k.lower() not in ("host", "content-length", "connection")
        }
        try:
            resp = self._session().request(
                handler.command, self.sandbox_url + handler.path, headers=headers, data=body, timeout=40
            )
            status, content, out_headers = resp.status_code, resp.content, resp.headers
        except requests.RequestException:
            status, content, out_headers = 502, b"", {}
        try:
            handler.send_response(status)
            for k, v in out_headers.items():
                if k.lower() not in ("content-length", "connection", "transfer-encoding", "content-encoding"):
                    handler.send_header(k, v)
            handler.send_header("Content-Length", str(len(content)))
            handler.end_headers()
            handler.wfile.write(content)
        except OSError:
            pass  # paycore gave up waiting (a timeout fault): the answer is lost, as intended


# --------------------------------------------------------------------------------------------
# The app backend: paycore's REST API, retrying what failed as a careful client does
# --------------------------------------------------------------------------------------------
class Api:
    def __init__(self, base_url: str, key: str) -> None:
        self.base_url, self.key = base_url, key
        self.local = threading.local()
        self.errors: Counter[int] = Counter()

    def call(self, method: str, path: str, payload: dict[str, Any] | None = None, tries: int = 8) -> Any:
        if not hasattr(self.local, "session"):
            self.local.session = requests.Session()
        status = 0
        for attempt in range(tries):
            headers = {"Authorization": f"Bearer {self.key}", "X-Forwarded-Proto": "https"}
            if method == "POST":
                headers["Idempotency-Key"] = f"chaos-{uuid.uuid4()}"
            try:
                resp = self.local.session.request(
                    method, self.base_url + path, json=payload, headers=headers, timeout=60, allow_redirects=False
                )
                status = resp.status_code
                if status < 500:
                    return resp.json() if resp.content else None
            except requests.RequestException:
                status = -1
            self.errors[status] += 1
            time.sleep(min(0.5 * 2**attempt, 8.0))
        return {"code": "gave_up", "status": status}


@dataclass
class Plan:
    i: int
    channel: str
    fault: str | None
    report: bool
    double: bool
    amount: int


@dataclass
class Activity:
    placed: dict[str, int] = field(default_factory=dict)  # payment_no -> plan index
    doubles: list[tuple[str, str]] = field(default_factory=list)
    reports: int = 0
    paid_before_answer: int = 0
    gave_up: list[str] = field(default_factory=list)
    refunds: list[str] = field(default_factory=list)
    held: int = 0
    replay_answers: Counter[Any] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)


def make_plans(opts: Options, rng: random.Random) -> list[Plan]:
    plans = []
    for i in range(opts.payments):
        roll = rng.random()
        fault = None
        for kind, share in (
            ("drop", opts.drop),
            ("duplicate", opts.duplicate),
            ("delay", opts.delay),
            ("reorder", opts.reorder),
        ):
            if roll < share:
                fault = kind
                break
            roll -= share
        plans.append(
            Plan(
                i=i,
                channel=rng.choice(MIX),
                fault=fault,
                report=rng.random() < opts.reports,
                double=rng.random() < opts.doubles,
                amount=rng.randrange(100, 5000),
            )
        )
    return plans


def notification_fault(gateway: Any, plan: Plan, payment_no: str | None, time_factor: float) -> None:
    """Set this payment's notification fault before the payer acts. WeChat and Alipay key their
    notifications by the payment number, so the rule is that payment's own; PayPal and points by
    an event id, so the rule takes the channel's next notification."""
    if plan.fault is None:
        return
    rule: dict[str, Any] = {"kind": plan.fault, "channel": plan.channel, "count": 1}
    if plan.channel in ("wechat", "alipay") and payment_no:
        rule["body_contains"] = payment_no
    if plan.fault == "delay":
        rule["seconds"] = 20 * time_factor  # 20 real seconds late
    gateway.add_fault(**rule)


def run_plan(plan: Plan, api: Api, gateway: Any, binding: str, merchant: str, opts: Options, act: Activity) -> None:
    spec = CHANNELS[plan.channel] if not plan.double else CHANNELS["wechat"]
    order = api.call(
        "POST",
        "/api/v1/orders",
        {
            "merchant": merchant,
            "merchant_order_no": f"chaos-{plan.i}",
            "customer_ref": f"c{plan.i}",
            "description": "Chaos",
            "currency": spec["currency"],
            "items": [{"name": "Item", "unit_price": plan.amount, "quantity": 1}],
        },
    )
    if not order or "order_no" not in order:
        with act.lock:
            act.gave_up.append(f"order {plan.i}: {order}")
        return

    def place(channel: str) -> dict[str, Any] | None:
        body: dict[str, Any] = {
            "order_nos": [order["order_no"]],
            "customer_ref": f"c{plan.i}",
            "channel": channel,
            "method": CHANNELS[channel]["method"],
        }
        if channel == "paypal":
            body["return_url"] = "https://app.example/paypal"
        if channel == "points":
            body["payer_id"] = binding
        # A placement the channel did not answer leaves the payment CREATED; asking again places it.
        for _ in range(6):
            payment = api.call("POST", "/api/v1/payments", body)
            if payment and payment.get("status") in ("PENDING", "SUCCEEDED", "CLIENT_REPORTED"):
                with act.lock:
                    act.placed[payment["payment_no"]] = plan.i
                return payment
            if payment and (payment.get("extra") or {}).get("reason") == "paid":
                # The partner deducted while the answer to the first try was lost, and its callback
                # arrived before the retry: paycore already has the payment, the order is paid.
                with act.lock:
                    act.paid_before_answer += 1
                return None
            time.sleep(1.0)
        with act.lock:
            act.gave_up.append(f"payment of order {order['order_no']} ({channel}): {payment}")
        return None

    if plan.double:
        by_alipay = place("alipay")  # the order string the customer keeps
        by_wechat = place("wechat")  # ... switches to WeChat, which supersedes the Alipay payment
        if by_alipay and by_wechat:
            gateway.pay("wechat", by_wechat["payment_no"])
            gateway.pay("alipay", by_alipay["payment_no"], order_string=by_alipay["prepay"]["order_string"])
            with act.lock:
                act.doubles.append((by_wechat["payment_no"], by_alipay["payment_no"]))
        return
    if plan.channel == "points":  # the partner deducts while placing: the fault must be set first
        notification_fault(gateway, plan, None, opts.time_factor)
    payment = place(plan.channel)
    if payment is None:
        return
    no = payment["payment_no"]
    report_first = plan.report and plan.i % 2 == 0
    if report_first:
        api.call("POST", f"/api/v1/payments/{no}/client-report", {"result": "success"})
    if plan.channel != "points":
        notification_fault(gateway, plan, no, opts.time_factor)
        params = {"order_string": payment["prepay"]["order_string"]} if plan.channel == "alipay" else {}
        gateway.pay(plan.channel, no, **params)
    if plan.report and not report_first:
        api.call("POST", f"/api/v1/payments/{no}/client-report", {"result": "success"})
    if plan.report:
        with act.lock:
            act.reports += 1


# --------------------------------------------------------------------------------------------
# The truth: the sandbox's trades against paycore's rows
# --------------------------------------------------------------------------------------------
@dataclass
class Truth:
    paid: dict[str, bool] = field(default_factory=dict)  # payment_no -> money taken at the channel
    refunds: dict[str, list[tuple[str, int]]] = field(default_factory=lambda: defaultdict(list))  # successes
    open_refunds: dict[str, list[str]] = field(default_factory=lambda: defaultdict(list))  # still processing
    held: list[tuple[str, str]] = field(default_factory=list)  # WeChat refunds waiting for the bench


def channel_truth(trades: list[dict[str, Any]]) -> Truth:
    truth = Truth()
    for t in trades:
        channel, kind = t["channel"], t["kind"]
        if kind == "trade":
            if channel == "wechat":
                truth.paid[t["out_trade_no"]] = t.get("trade_state") in ("SUCCESS", "REFUND")
            elif channel == "alipay":
                truth.paid[t["out_trade_no"]] = bool(t.get("gmt_payment")) or t.get("trade_status") in (
                    "TRADE_SUCCESS",
                    "TRADE_FINISHED",
                )
            elif channel == "paypal":
                truth.paid[t["payment_no"]] = any(c.get("status") == "COMPLETED" for c in t.get("captures") or [])
            elif channel == "points":
                truth.paid[t["request_no"]] = t.get("status") == "SUCCESS"
            continue
        if channel == "wechat":
            no, request_no, amount, status = t["out_trade_no"], t["out_refund_no"], t.get("refund"), t.get("status")
            done, pending = status == "SUCCESS", status == "PROCESSING"
            if pending and t.get("reason") == HOLD:
                truth.held.append((request_no, no))
        elif channel == "alipay":
            no, request_no, amount = t["out_trade_no"], t["out_request_no"], t.get("refund_amount")
            done, pending = t.get("refund_status") == "REFUND_SUCCESS", False
        elif channel == "paypal":
            no, request_no, amount, status = t["payment_no"], t.get("invoice_id"), t.get("amount"), t.get("status")
            done, pending = status == "COMPLETED", status == "PENDING"
        else:
            no, request_no, amount, status = t["request_no"], t["refund_request_no"], t.get("points"), t.get("status")
            done, pending = status == "SUCCESS", status == "PROCESSING"
        if done:
            truth.refunds[no].append((str(request_no), int(amount or 0)))
        elif pending:
            truth.open_refunds[no].append(str(request_no))
    return truth


@dataclass
class Verdict:
    payments: int
    converged: int
    double_successes: int
    double_refunds: int
    refunds_over_amount: int
    money_not_shown: int
    open_for_ops: int
    mismatches: list[str]

    @property
    def percent(self) -> float:
        return 100.0 * self.converged / self.payments if self.payments else 100.0

    @property
    def clean(self) -> bool:
        return (
            self.converged == self.payments
            and not self.double_successes
            and not self.double_refunds
            and not self.refunds_over_amount
            and not self.money_not_shown
            and not self.open_for_ops
        )


def judge(truth: Truth) -> Verdict:
    from inbox.models import InboundNotification
    from payments.models import Payment, PaymentOrderMap
    from refunds.models import Refund, RefundAttempt

    payments = {p.payment_no: p for p in Payment.objects.all()}
    refunds: dict[int, list[Refund]] = defaultdict(list)
    for refund in Refund.objects.all():
        refunds[refund.payment_id].append(refund)
    attempts: dict[int, set[str]] = defaultdict(set)
    for refund_id, request_no in RefundAttempt.objects.values_list("refund_id", "request_no"):
        attempts[refund_id].add(request_no)
    kept_by_order: Counter[int] = Counter()
    order_amount = {}
    for m in PaymentOrderMap.objects.select_related("order", "payment"):
        order_amount[m.order_id] = m.order.amount
        no = m.payment.payment_no
        if truth.paid.get(no):
            kept_by_order[m.order_id] += m.amount - sum(a for _, a in truth.refunds.get(no, []))
    mismatches = []
    converged = double_refunds = over = not_shown = 0
    for no, p in payments.items():
        paid = truth.paid.get(no, False)
        at_channel = truth.refunds.get(no, [])
        channel_refunded = sum(a for _, a in at_channel)
        ours = refunds.get(p.pk, [])
        ours_refunded = sum(r.amount for r in ours if r.status == "SUCCEEDED")
        unsettled = [r.refund_no for r in ours if r.status not in ("SUCCEEDED", "FAILED")]
        twice = [r.refund_no for r in ours if sum(1 for req, _ in at_channel if req in attempts[r.pk]) > 1]
        duplicate_refunds = sum(1 for r in ours if r.reason == "DUPLICATE_PAYMENT") > 1
        if twice or duplicate_refunds or channel_refunded > ours_refunded:
            double_refunds += 1
        if channel_refunded > p.amount or sum(r.amount for r in ours if r.status != "FAILED") > p.amount:
            over += 1
        if paid and p.status != "SUCCEEDED":
            not_shown += p.amount
        ok = (
            paid == (p.status == "SUCCEEDED")
            and channel_refunded == ours_refunded
            and not unsettled
            and not truth.open_refunds.get(no)
            and p.status != "NEEDS_ATTENTION"
        )
        if ok:
            converged += 1
        else:
            mismatches.append(
                f"{no} {p.channel}: paycore {p.status}, channel {'paid' if paid else 'not paid'}; refunded at "
                f"channel {channel_refunded} {at_channel}, in paycore {ours_refunded} "
                f"{[(r.refund_no, r.status, r.amount) for r in ours]}"
            )
    ops = (
        Payment.objects.filter(status="NEEDS_ATTENTION").count()
        + Refund.objects.filter(status="NEEDS_ATTENTION").count()
        + InboundNotification.objects.filter(outcome="NEEDS_ATTENTION").count()
    )
    doubles = sum(1 for order_id, kept in kept_by_order.items() if kept > order_amount[order_id])
    return Verdict(len(payments), converged, doubles, double_refunds, over, not_shown, ops, mismatches)


def fingerprint(truth: Truth) -> tuple[Any, ...]:
    from inbox.models import InboundNotification
    from payments.models import Payment
    from refunds.models import Refund

    return (
        tuple(sorted(Counter(Payment.objects.values_list("status", flat=True)).items())),
        tuple(sorted(Counter(Refund.objects.values_list("status", flat=True)).items())),
        tuple(sorted(Counter(InboundNotification.objects.values_list("outcome", flat=True)).items())),
        sum(truth.paid.values()),
        sum(len(v) for v in truth.refunds.values()),
        sum(len(v) for v in truth.open_refunds.values()),
    )


# --------------------------------------------------------------------------------------------
# The run
# --------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    opts = parse(argv)
    started = time.monotonic()
    database = harness.database_url(opts.database)
    port = harness.free_port()
    paycore_url = f"http://127.0.0.1:{port}"
    env = harness.production_env(
        database=database,
        redis=harness.redis_url(),
        extra={
            "PAYCORE_PUBLIC_BASE_URL": paycore_url,
            # Payments stay payable 5 minutes and are settled within 2 more: expiry is part of the run.
            "PAYMENT_TTL_SECONDS": "300",
            "PAYMENT_SETTLE_GRACE_SECONDS": "120",
            "CLIENT_REPORT_TRUST_SECONDS": "30",
        },
    )
    harness.recreate_database(database)
    harness.migrate(env)
    harness.purge_broker(env["CELERY_BROKER_URL"])
    with harness.processes(opts.logdir) as procs:
        sandbox_url = harness.start_sandbox(procs, env, time_factor=opts.time_factor)
        harness.django_setup(env)
        shorten_sweeps()
        harness.start_web(procs, "paycore", "config.wsgi:application", env, Gunicorn(workers=4), port=port)
        for name in ("worker-a", "worker-b"):
            harness.start_worker(procs, env, concurrency=2, name=name)
        harness.start_beat(procs, env)
        return run(opts, env, sandbox_url, paycore_url, started)


def shorten_sweeps() -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, seconds in SWEEP_EVERY.items():
        interval, _ = IntervalSchedule.objects.get_or_create(every=seconds, period=IntervalSchedule.SECONDS)
        PeriodicTask.objects.filter(name=f"sweep: {name}").update(interval=interval)


def run(opts: Options, env: dict[str, str], sandbox_url: str, paycore_url: str, started: float) -> int:
    from channels.models import ChannelAccount
    from channels.services import adapter_for
    from orders.services import merchant_create
    from paycore.apikeys import api_client_create
    from sandbox.client import SandboxClient
    from sandbox.provisioning.services import sandbox_account_provision

    rng = random.Random(opts.seed)
    gateway = SandboxClient(sandbox_url)
    proxy = FaultProxy(sandbox_url, gateway, random.Random(opts.seed + 1), opts.timeouts)
    for channel in CHANNELS:
        account = sandbox_account_provision(channel=channel, name=f"chaos-{channel}", sandbox_url=sandbox_url)
        ChannelAccount.objects.filter(pk=account.pk).update(base_url=f"{proxy.url}/{channel}")
    # The partner's members: one binding (100,000 points) for every 20 points payments.
    points = adapter_for(ChannelAccount.objects.get(channel="points"))
    bindings = [points.bind(f"chaos-{n}", f"member-{n}", f"c{n}") for n in range(opts.payments // 20 + 1)]
    # A marketplace's many merchants, 20 payments each: paycore's velocity rule rightly suspends
    # one merchant whose paid orders jump from nothing to a thousand in minutes.
    merchants = [merchant_create(code=f"chaos{n}", name=f"Chaos merchant {n}").code for n in range(len(bindings))]
    _, key = api_client_create(name="chaos-backend")
    api = Api(paycore_url, key)
    plans = make_plans(opts, rng)
    print("bench/chaos.py: convergence under faults")
    print(
        f"  machine: os.cpu_count()={harness.cpu_count()} | paycore: gunicorn sync workers=4, DEBUG off, "
        f"persistent connections; Celery: 2 workers x 2 processes + beat (database scheduler, sweeps every "
        f"{SWEEP_EVERY} s); sandbox time factor {opts.time_factor:g}"
    )
    print(
        f"  plan: {opts.payments} payments {dict(Counter(p.channel for p in plans))}, notification faults "
        f"{dict(Counter(p.fault for p in plans if p.fault))}, {sum(p.double for p in plans)} orders paid twice, "
        f"client report for {sum(p.report for p in plans)}, {opts.api_faults:.0%} of channel API calls failed "
        f"({opts.timeouts:.0%} of those timeouts), {opts.refunds:.0%} of paid payments partly refunded"
    )
    act = Activity()
    proxy.rate = opts.api_faults
    activity_started = time.monotonic()
    with ThreadPoolExecutor(max_workers=opts.senders) as pool:
        for future in [
            pool.submit(
                run_plan, p, api, gateway, bindings[p.i % len(bindings)], merchants[p.i % len(merchants)], opts, act
            )
            for p in plans
        ]:
            future.result()
    print(
        f"  payments placed: {len(act.placed)} in {time.monotonic() - activity_started:.0f} s, and "
        f"{act.paid_before_answer} paid before a lost answer was retried; gave up on {len(act.gave_up)}: "
        f"{act.gave_up[:3]}"
    )
    replay_third_copies(gateway, rng, act)
    stop = threading.Event()
    operator = threading.Thread(target=hold_then_settle_refunds, args=(gateway, stop, act), daemon=True)
    operator.start()
    request_refunds(opts, plans, act, api, rng)
    gateway.flush_notifications()
    activity_seconds = time.monotonic() - activity_started
    print(
        f"  refunds requested: {len(act.refunds)} ({act.held} held at WeChat, first attempt to be closed there); "
        f"third copies replayed: {sum(act.replay_answers.values())} (answers {dict(act.replay_answers)}); "
        f"client reports: {act.reports}; activity took {activity_seconds:.0f} s"
    )
    verdict, converged_after = wait_for_convergence(opts, gateway)
    stop.set()
    report(opts, gateway, proxy, api, verdict, converged_after, activity_seconds, started)
    return 0 if verdict.clean else 1


def replay_third_copies(gateway: Any, rng: random.Random, act: Activity) -> None:
    """Half of the duplicated notifications arrive a third time, byte for byte (as a channel whose
    acknowledgement got lost re-sends), replayed from the sandbox's delivery log."""
    gateway.wait_idle(timeout=10)  # the copies sent so far (delayed ones may still be pending)
    copies = [e for e in gateway.notifications() if e.get("duplicate")]
    for entry in copies:
        if rng.random() >= 0.5:
            continue
        try:
            answer = requests.post(
                entry["url"], data=entry["request_body"].encode(), headers=entry["request_headers"], timeout=10
            )
            act.replay_answers[answer.status_code] += 1
        except requests.RequestException as exc:
            act.replay_answers[type(exc).__name__] += 1


def request_refunds(opts: Options, plans: list[Plan], act: Activity, api: Api, rng: random.Random) -> None:
    from payments.models import Payment

    doubles = {no for pair in act.doubles for no in pair}
    wanted = {no for no in act.placed if no not in doubles}
    deadline, paid = time.monotonic() + 90, set()
    while time.monotonic() < deadline:  # refunds need the payment SUCCEEDED in paycore
        paid = set(
            Payment.objects.filter(payment_no__in=wanted, status="SUCCEEDED").values_list("payment_no", flat=True)
        )
        if len(paid) >= 0.9 * len(wanted):
            break
        time.sleep(2)
    candidates = sorted(paid)
    rng.shuffle(candidates)
    chosen = candidates[: round(opts.refunds * len(candidates))]
    amounts = dict(Payment.objects.filter(payment_no__in=chosen).values_list("payment_no", "amount"))
    channels = dict(Payment.objects.filter(payment_no__in=chosen).values_list("payment_no", "channel"))

    def refund(no: str) -> None:
        body = {
            "payment_no": no,
            "refund_no": f"chaos-r-{no}",
            "amount": max(1, amounts[no] * rng.randrange(3, 8) // 10),
        }
        if channels[no] == "wechat" and rng.random() < opts.held_refunds:
            body["note"] = HOLD
            with act.lock:
                act.held += 1
        answer = api.call("POST", "/api/v1/refunds", body)
        with act.lock:
            act.refunds.append(f"{no}: {answer.get('status') if isinstance(answer, dict) else answer}")

    with ThreadPoolExecutor(max_workers=opts.senders) as pool:
        list(pool.map(refund, chosen))


def hold_then_settle_refunds(gateway: Any, stop: threading.Event, act: Activity) -> None:
    """The channel's side of held WeChat refunds: the first attempt (paycore's own refund number)
    is closed at the channel, a failure paycore must retry under a new number; a retry succeeds."""
    acted: set[str] = set()
    while not stop.wait(2.0):
        try:
            truth = channel_truth(gateway.trades())
        except requests.RequestException:
            continue
        for request_no, _ in truth.held:
            if request_no in acted:
                continue
            action = "refund_closed" if request_no.startswith("chaos-r-") else "refund_success"
            try:
                gateway.act("wechat", request_no, action)
                acted.add(request_no)
            except Exception:  # noqa: S112 -- tried again on the next pass
                continue


def wait_for_convergence(opts: Options, gateway: Any) -> tuple[Verdict, float | None]:
    started = time.monotonic()
    last, changed_at, converged_at = None, started, None
    verdict = judge(channel_truth(gateway.trades()))
    while time.monotonic() - started < opts.max_wait:
        truth = channel_truth(gateway.trades())
        verdict = judge(truth)
        now = time.monotonic()
        print_now = fingerprint(truth)
        if print_now != last:
            last, changed_at = print_now, now
        if verdict.clean and converged_at is None:
            converged_at = now - started
        if verdict.clean and now - changed_at > 10:
            break
        if not verdict.clean:
            converged_at = None
        if now - changed_at > opts.settle:
            break  # nothing moves any more: stuck
        time.sleep(5)
    return verdict, converged_at


def evidence() -> str:
    """What the faults made paycore do: its payments and refunds by state, refunds that needed more
    than one attempt, duplicate payments refunded, how notifications were taken."""
    from django.db.models import Count

    from inbox.models import InboundNotification
    from payments.models import Payment
    from refunds.models import Refund

    payments = dict(Counter(Payment.objects.values_list("status", flat=True)))
    refunds = dict(Counter(Refund.objects.values_list("status", flat=True)))
    retried = Refund.objects.annotate(n=Count("attempts")).filter(n__gt=1).count()
    unwanted = dict(Counter(Refund.objects.exclude(reason="CUSTOMER_REQUEST").values_list("reason", flat=True)))
    inbox = dict(Counter(InboundNotification.objects.values_list("outcome", flat=True)))
    return (
        f"payments {payments}; refunds {refunds}, {retried} needed more than one attempt, by reason other than "
        f"the customer's {unwanted}; inbox outcomes {inbox}"
    )


def report(
    opts: Options,
    gateway: Any,
    proxy: FaultProxy,
    api: Api,
    verdict: Verdict,
    converged_after: float | None,
    activity_seconds: float,
    started: float,
) -> None:
    log = gateway.notifications()
    faults = Counter({e["id"]: e.get("fault") for e in log if e.get("fault")}.values())
    calls = sum(proxy.calls.values())
    print(
        f"  injected: notifications {len({e['id'] for e in log})} ({dict(faults)}; "
        f"{sum(1 for e in log if e.get('duplicate'))} duplicate copies + replays); channel API calls {calls}, "
        f"failed {sum(proxy.faults.values())} = {sum(proxy.faults.values()) / max(calls, 1):.1%} "
        f"{dict(proxy.faults)}; paycore API answers 5xx/unreachable to the bench: {sum(api.errors.values())}"
    )
    print(f"  paycore's end state: {evidence()}")
    print(f"  converged: {verdict.converged}/{verdict.payments} payments = {verdict.percent:.1f}%")
    print(f"  double successes (orders whose money was kept twice): {verdict.double_successes}")
    print(f"  double refunds: {verdict.double_refunds}")
    print(f"  payments whose refunds exceed the amount: {verdict.refunds_over_amount}")
    print(f"  money taken at the channel that paycore does not show: {verdict.money_not_shown} minor units")
    print(f"  open items left for ops (NEEDS_ATTENTION payments, refunds, notifications): {verdict.open_for_ops}")
    print(
        "  time to converge after the last action: "
        + (f"{converged_after:.0f} s" if converged_after is not None else f"not converged within {opts.max_wait:.0f} s")
        + f" (activity {activity_seconds:.0f} s, whole run {time.monotonic() - started:.0f} s)"
    )
    for line in verdict.mismatches[:25]:
        print(f"    not converged: {line}")
    print(f"  result: {'CONVERGED' if verdict.clean else 'NOT CONVERGED'}")


if __name__ == "__main__":
    raise SystemExit(main())
