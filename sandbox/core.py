"""The sandbox gateway's state, fault injection, notification delivery and request dispatch.

The sandbox plays the *platform* side of every channel so that paycore can be exercised over
real HTTP with real signatures, and so that everything that goes wrong in production (lost,
repeated, late or reordered notifications, 5xx answers, timeouts, forged signatures) can be
switched on from a test. This module holds what is shared by all channel simulators; each
channel's protocol lives in ``sandbox/<channel>.py`` (see CONTRACT.md).

Threading model: the HTTP server handles each request on its own thread, delayed work (payer
actions, notification attempts, asynchronous refund completion) runs on a small scheduler
thread feeding a pool. All shared state is guarded by one re-entrant lock, ``Sandbox.lock``;
simulators take it around every read-modify-write of their trades.

This package must not import Django nor paycore's adapters: it is an independent
implementation of each protocol, built from the protocol reference.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools
import json
import sys
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from importlib import import_module
from typing import Any, ClassVar
from urllib.parse import parse_qs, urlsplit

import requests
from requests.structures import CaseInsensitiveDict

# Channel code -> simulator class, imported lazily so that a broken or missing simulator only
# breaks its own channel.
SIMULATORS: dict[str, str] = {
    "wechat": "sandbox.wechat.WechatSimulator",
    "alipay": "sandbox.alipay.AlipaySimulator",
    "paypal": "sandbox.paypal.PaypalSimulator",
    "points": "sandbox.points.PointsSimulator",
}

NOTIFICATION_FAULTS = frozenset({"drop", "duplicate", "delay", "reorder"})
API_FAULTS = frozenset({"http_500", "http_503", "timeout", "disconnect", "bad_signature", "tamper_amount"})
FAULT_KINDS = NOTIFICATION_FAULTS | API_FAULTS

# (connect, read) seconds for notification deliveries; WeChat requires an answer within 5 s.
NOTIFY_TIMEOUT: tuple[float, float] = (2.0, 5.0)
# Notifications are never sent to reserved documentation/test names (RFC 2606/6761): a test that
# left ``https://pay.example.com/...`` as notify_url must not make the sandbox reach the network.
RESERVED_HOST_SUFFIXES = (".example", ".example.com", ".example.net", ".example.org", ".invalid", ".test")
# Real seconds a ``timeout`` fault sleeps by default: past channels.base.DEFAULT_TIMEOUT's read timeout.
DEFAULT_TIMEOUT_FAULT_SECONDS = 20.0
# Sandbox seconds a ``delay`` fault holds a notification back by default (divided by time_factor).
DEFAULT_DELAY_FAULT_SECONDS = 60.0


class SandboxError(Exception):
    """Raised by the core or a simulator to answer a control call with a JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def to_response(self) -> SandboxResponse:
        return SandboxResponse.json(self.status, {"code": self.code, "message": self.message})


class SimulatorUnavailable(SandboxError):
    """The channel is known but its simulator module could not be imported."""


# --------------------------------------------------------------------------------------------
# Requests and responses
# --------------------------------------------------------------------------------------------
@dataclass
class SandboxRequest:
    """One HTTP request to a channel prefix, as the simulator sees it.

    ``path`` is relative to the channel prefix (``/v3/pay/transactions/app``); ``raw_path`` is the
    path exactly as sent, prefix included, which is what request signatures cover. ``query`` is
    the raw query string without ``?``. ``base_url`` is the channel's base URL as the client
    reached it (``http://127.0.0.1:8100/wechat``), for links such as bill download URLs.
    ``fault`` is the API fault the core selected for this request (see ``Sandbox.api_fault``).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    remote_addr: str = ""
    channel: str = ""
    raw_path: str = ""
    base_url: str = ""
    fault: FaultRule | None = None

    @property
    def target(self) -> str:
        """Path and query exactly as sent (prefix included): the WeChat canonical URL."""
        path = self.raw_path or self.path
        return f"{path}?{self.query}" if self.query else path

    @property
    def params(self) -> dict[str, str]:
        """Query parameters, first value of each."""
        return {k: v[0] for k, v in parse_qs(self.query, keep_blank_values=True).items()}

    def json(self) -> Any:
        """The body parsed as JSON; a malformed body raises ``ValueError``."""
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class SandboxResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> SandboxResponse:
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=_json_default).encode()
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def text(
        cls,
        status: int,
        text: str | bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> SandboxResponse:
        body = text.encode() if isinstance(text, str) else text
        return cls(status, body, {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def empty(cls, status: int = 204, headers: Mapping[str, str] | None = None) -> SandboxResponse:
        return cls(status, b"", dict(headers or {}))


# --------------------------------------------------------------------------------------------
# Faults
# --------------------------------------------------------------------------------------------
@dataclass
class FaultRule:
    """One injected fault.

    Matching: ``channel`` (None = any), ``path`` (substring of the request target, prefix and
    query included; for notifications, of the notification URL), ``body_contains`` (substring of
    the raw request body, e.g. an Alipay ``method`` name; for notifications, of the
    notification ``key``). ``count`` None = until cleared, else the next N matching events.
    ``seconds``: ``timeout`` sleeps this many *real* seconds; ``delay`` holds a notification
    back this many *sandbox* seconds (divided by time_factor). ``amount``: ``tamper_amount``.
    ``process``: for ``http_500``/``http_503``/``disconnect``, whether the request is processed
    first (the effect happens, the answer is lost); ``timeout`` processes unless ``process`` is
    False (then it sleeps and hangs up without processing).
    """

    id: int
    kind: str
    channel: str | None = None
    path: str | None = None
    body_contains: str | None = None
    count: int | None = None
    seconds: float | None = None
    amount: int | None = None
    process: bool | None = None
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def matches(self, channel: str, where: str, body: str) -> bool:
        if self.channel is not None and self.channel != channel:
            return False
        if self.path is not None and self.path not in where:
            return False
        return not (self.body_contains is not None and self.body_contains not in body)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


# --------------------------------------------------------------------------------------------
# Simulator plug-in base
# --------------------------------------------------------------------------------------------
class ChannelSimulator:
    """Base of every channel simulator; one instance per channel per ``Sandbox``.

    Subclasses keep their trades in ``self.sandbox.trades[self.channel]`` (and refunds,
    accounts likewise) under ``self.sandbox.lock`` so that the trades page and ``reset`` see them.
    """

    channel: ClassVar[str]

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    # This channel's slices of the shared state (hold ``self.sandbox.lock`` while touching them).
    @property
    def _accounts(self) -> dict[str, dict[str, Any]]:
        return self.sandbox.accounts.setdefault(self.channel, {})

    @property
    def _trades(self) -> dict[str, dict[str, Any]]:
        return self.sandbox.trades.setdefault(self.channel, {})

    @property
    def _refunds(self) -> dict[str, dict[str, Any]]:
        return self.sandbox.refunds.setdefault(self.channel, {})

    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def reset(self) -> None:
        """Drop simulator-private state (the shared dicts are cleared by the core)."""


# --------------------------------------------------------------------------------------------
# Delayed work
# --------------------------------------------------------------------------------------------
class _Scheduler:
    """Runs callables after a delay: one timer thread, a pool for the work itself.

    ``cancel_all`` forgets everything scheduled (used by ``reset``); work already running
    finishes, but callables check ``Sandbox.generation`` before touching state.
    """

    def __init__(self, workers: int = 16) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-work")
        self._thread = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), fn))
            self._cond.notify()

    def cancel_all(self) -> None:
        with self._cond:
            self._heap.clear()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                self._pool.submit(_guarded, fn)
            except RuntimeError:  # pool shut down under us
                return


def _guarded(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        traceback.print_exc(file=sys.stderr)


# --------------------------------------------------------------------------------------------
# Notifications
# --------------------------------------------------------------------------------------------
@dataclass
class _Outbound:
    id: str
    channel: str
    url: str
    key: str
    build: Callable[[], tuple[dict[str, str], bytes]]
    schedule: list[float]
    is_ack: Callable[[int, bytes], bool]
    generation: int
    state: str = "pending"  # pending / held / acked / exhausted / dropped / error / cancelled
    fault: str | None = None
    duplicate: bool = False
    attempts: int = 0
    release_after: list[_Outbound] = field(default_factory=list)


# --------------------------------------------------------------------------------------------
# The state
# --------------------------------------------------------------------------------------------
class Sandbox:
    """All sandbox state, shared by the HTTP handler threads and the scheduler's workers."""

    def __init__(self, time_factor: float = 1.0) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be positive")
        self.time_factor = float(time_factor)
        self.lock = threading.RLock()
        self.base_url = ""  # set by the server once it listens
        self.generation = 0  # bumped by reset(): stale delayed work checks it
        self.accounts: dict[str, dict[str, Any]] = {}
        self.trades: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.faults: list[FaultRule] = []
        self.notification_log: list[dict[str, Any]] = []
        self._outbound: dict[str, _Outbound] = {}
        self._held: list[_Outbound] = []
        self._idle = threading.Condition(self.lock)
        self._in_flight = 0  # delivery requests on the wire right now, whatever their notification's state
        self._fault_ids = itertools.count(1)
        self._account_seq = itertools.count(1)
        self._simulators: dict[str, ChannelSimulator] = {}
        self._scheduler = _Scheduler()
        self._local = threading.local()

    # --- time ---------------------------------------------------------------------------
    def now(self) -> datetime:
        """Aware UTC now; simulators convert to the channel's zone themselves."""
        return datetime.now(UTC)

    def scaled(self, seconds: float) -> float:
        """Sandbox seconds -> real seconds."""
        return float(seconds) / self.time_factor

    def later(self, seconds: float, fn: Callable[[], None]) -> None:
        """Run ``fn`` after ``seconds`` sandbox seconds (divided by time_factor), unless reset first."""
        generation = self.generation

        def run() -> None:
            if generation == self.generation:
                fn()

        self._scheduler.call_later(self.scaled(seconds), run)

    # --- simulators ---------------------------------------------------------------------
    def simulator(self, channel: str) -> ChannelSimulator:
        with self.lock:
            sim = self._simulators.get(channel)
            if sim is not None:
                return sim
            try:
                dotted = SIMULATORS[channel]
            except KeyError:
                raise SandboxError(404, "UNKNOWN_CHANNEL", f"no channel {channel!r} in the sandbox") from None
            module_path, _, name = dotted.rpartition(".")
            try:
                cls = getattr(import_module(module_path), name)
            except Exception as exc:  # ImportError, SyntaxError, AttributeError...
                raise SimulatorUnavailable(
                    501, "SIMULATOR_UNAVAILABLE", f"{channel} simulator {dotted} cannot be loaded: {exc!r}"
                ) from exc
            sim = cls(self)
            self.accounts.setdefault(channel, {})
            self.trades.setdefault(channel, {})
            self.refunds.setdefault(channel, {})
            self._simulators[channel] = sim
            return sim

    def create_account(
        self, channel: str, *, notify_url: str | None = None, options: Mapping[str, Any] | None = None
    ) -> dict[str, Any]:
        sim = self.simulator(channel)
        extra = dict(options or {})
        account = sim.create_account(notify_url=notify_url, **extra)
        account.setdefault("channel", channel)
        account.setdefault("base_url", f"{self.current_base_url()}/{channel}")
        account.setdefault("name", f"sandbox-{channel}-{next(self._account_seq)}")
        account.setdefault("ids", {})
        account.setdefault("credentials", {})
        account.setdefault("options", {})
        return account

    def payer_action(self, channel: str, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        return self.simulator(channel).payer_action(payment_no, action, params)

    def current_base_url(self) -> str:
        """The gateway URL as the current client reached it (Host header), else the listen URL."""
        return getattr(self._local, "base_url", None) or self.base_url

    # --- history helper -----------------------------------------------------------------
    def record(self, obj: dict[str, Any], event: str, **info: Any) -> None:
        """Append ``event`` to ``obj["history"]`` (a trade or refund dict) with the time."""
        with self.lock:
            obj.setdefault("history", []).append({"at": self.now().isoformat(), "event": event, **info})

    # --- faults -------------------------------------------------------------------------
    def add_fault(self, rule: Mapping[str, Any]) -> FaultRule:
        data = dict(rule)
        kind = data.pop("kind", None)
        if kind not in FAULT_KINDS:
            raise SandboxError(400, "BAD_FAULT", f"kind must be one of {sorted(FAULT_KINDS)}, got {kind!r}")
        known = {f.name for f in dataclasses.fields(FaultRule)} - {"id", "kind", "params", "hits"}
        kwargs = {k: data.pop(k) for k in list(data) if k in known}
        count = kwargs.get("count")
        if count is not None and (not isinstance(count, int) or count < 1):
            raise SandboxError(400, "BAD_FAULT", "count must be a positive integer or null")
        with self.lock:
            fault = FaultRule(id=next(self._fault_ids), kind=kind, params=data, **kwargs)
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take_fault(self, kinds: frozenset[str], channel: str, where: str, body: str) -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.kind in kinds and rule.matches(channel, where, body):
                    rule.hits += 1
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self.faults.remove(rule)
                    return rule
        return None

    def api_fault(self, channel: str, path: str, body: bytes | str = b"") -> FaultRule | None:
        """The API fault that applies to this request, consuming one ``count`` of it.

        While a channel request is being handled the core has already chosen the fault (it is
        ``req.fault``); calling this from the handler returns that same rule without consuming
        another. Outside a request it matches ``channel``/``path``/``body`` and consumes.
        """
        if getattr(self._local, "in_request", False):
            return getattr(self._local, "fault", None)
        text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
        return self._take_fault(API_FAULTS, channel, path, text)

    # --- notifications ------------------------------------------------------------------
    def notify(
        self,
        channel: str,
        url: str,
        build: Callable[[], tuple[dict[str, str], bytes]],
        schedule: list[float],
        is_ack: Callable[[int, bytes], bool],
        key: str,
    ) -> str:
        """Deliver a notification asynchronously; returns its id.

        ``build`` makes the (headers, body) of one attempt; it is called per attempt.
        The first attempt is immediate; after each unaccepted attempt the next waits
        ``schedule[i]`` sandbox seconds, until ``is_ack(status, body)`` or the schedule runs out.
        Notification faults apply once per notification: ``drop`` (never sent), ``duplicate``
        (the first attempt is sent twice, byte for byte), ``delay`` (first attempt postponed),
        ``reorder`` (held back and released right after the next notification of the channel).
        """
        with self.lock:
            out = _Outbound(
                id=uuid.uuid4().hex[:16],
                channel=channel,
                url=url,
                key=key,
                build=build,
                schedule=list(schedule),
                is_ack=is_ack,
                generation=self.generation,
            )
            self._outbound[out.id] = out
            rule = self._take_fault(NOTIFICATION_FAULTS, channel, url, key)
            out.fault = rule.kind if rule else None
            delay = 0.0
            if rule is not None and rule.kind == "drop":
                out.state = "dropped"
                self._log(out, attempt=0, status=None, answer=b"", outcome="dropped")
                self._idle.notify_all()
                return out.id
            if rule is not None and rule.kind == "reorder":
                out.state = "held"
                self._held.append(out)
                self._log(out, attempt=0, status=None, answer=b"", outcome="held")
                return out.id
            if rule is not None and rule.kind == "duplicate":
                out.duplicate = True
            if rule is not None and rule.kind == "delay":
                delay = self.scaled(rule.seconds if rule.seconds is not None else DEFAULT_DELAY_FAULT_SECONDS)
            out.release_after = [h for h in self._held if h.channel == channel]
            self._held = [h for h in self._held if h.channel != channel]
        self._scheduler.call_later(delay, lambda: self._attempt(out, 1))
        return out.id

    def flush_held(self) -> int:
        """Release every held (reordered) notification now; returns how many."""
        with self.lock:
            held, self._held = self._held, []
        for out in held:
            self._release(out)
        return len(held)

    def _release(self, out: _Outbound) -> None:
        with self.lock:
            if out.generation != self.generation or out.state == "cancelled":
                return
            out.state = "pending"
        self._scheduler.call_later(0, lambda: self._attempt(out, 1))

    def cancel_notifications(self) -> int:
        """Stop every pending or held delivery (tests call this between tests); returns how many."""
        with self.lock:
            live = [o for o in self._outbound.values() if o.state in ("pending", "held")]
            for out in live:
                out.state = "cancelled"
            self._held.clear()
            self._idle.notify_all()
            return len(live)

    def _attempt(self, out: _Outbound, attempt: int) -> None:
        if out.generation != self.generation or out.state == "cancelled":
            return
        try:
            headers, body = out.build()
        except Exception as exc:
            with self.lock:
                out.state = "error"
                self._log(out, attempt=attempt, status=None, answer=repr(exc).encode(), outcome="error")
                self._idle.notify_all()
            traceback.print_exc(file=sys.stderr)
            return
        acked = self._send(out, attempt, headers, body, duplicate=False)
        if attempt == 1 and out.duplicate:
            acked = self._send(out, attempt, headers, body, duplicate=True) or acked
        if attempt == 1:
            for held in out.release_after:
                self._release(held)
            out.release_after = []
        with self.lock:
            out.attempts = attempt
            if out.generation != self.generation or out.state == "cancelled":
                return
            if acked:
                out.state = "acked"
            elif attempt - 1 < len(out.schedule):
                self._scheduler.call_later(
                    self.scaled(out.schedule[attempt - 1]), lambda: self._attempt(out, attempt + 1)
                )
                return
            else:
                out.state = "exhausted"
            self._idle.notify_all()

    def _send(self, out: _Outbound, attempt: int, headers: dict[str, str], body: bytes, *, duplicate: bool) -> bool:
        status: int | None = None
        answer = b""
        host = (urlsplit(out.url).hostname or "").lower().rstrip(".")
        if host.endswith(RESERVED_HOST_SUFFIXES) or host in {s.lstrip(".") for s in RESERVED_HOST_SUFFIXES}:
            with self.lock:
                self._log(
                    out,
                    attempt=attempt,
                    status=None,
                    answer=b"reserved host: not contacted",
                    outcome="not_acked",
                    duplicate=duplicate,
                    request_headers=headers,
                    request_body=body,
                )
            return False
        with self.lock:
            self._in_flight += 1
        try:
            resp = requests.post(out.url, data=body, headers=headers, timeout=NOTIFY_TIMEOUT, allow_redirects=False)
            status, answer = resp.status_code, resp.content
        except requests.RequestException as exc:
            answer = f"{type(exc).__name__}: {exc}".encode()
        finally:
            with self.lock:
                self._in_flight -= 1
                self._idle.notify_all()
        acked = False
        if status is not None:
            try:
                acked = bool(out.is_ack(status, answer))
            except Exception:
                traceback.print_exc(file=sys.stderr)
        with self.lock:
            if out.generation == self.generation:
                self._log(
                    out,
                    attempt=attempt,
                    status=status,
                    answer=answer,
                    outcome="acked" if acked else "not_acked",
                    duplicate=duplicate,
                    request_headers=headers,
                    request_body=body,
                )
        return acked

    def _log(
        self,
        out: _Outbound,
        *,
        attempt: int,
        status: int | None,
        answer: bytes,
        outcome: str,
        duplicate: bool = False,
        request_headers: Mapping[str, str] | None = None,
        request_body: bytes = b"",
    ) -> None:
        self.notification_log.append(
            {
                "id": out.id,
                "channel": out.channel,
                "key": out.key,
                "url": out.url,
                "attempt": attempt,
                "status": status,
                "outcome": outcome,
                "fault": out.fault,
                "duplicate": duplicate,
                "answer": answer[:500].decode("utf-8", "replace"),
                "at": self.now().isoformat(),
                "request_headers": dict(request_headers or {}),
                "request_body": request_body.decode("utf-8", "replace"),
            }
        )

    def notification_states(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": o.id,
                    "channel": o.channel,
                    "key": o.key,
                    "url": o.url,
                    "state": o.state,
                    "attempts": o.attempts,
                    "fault": o.fault,
                }
                for o in self._outbound.values()
            ]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no notification is pending (held ones do not count) and no delivery request
        is on the wire, even one of a cancelled notification; False on timeout."""
        with self._idle:
            return self._idle.wait_for(
                lambda: self._in_flight == 0 and all(o.state != "pending" for o in self._outbound.values()),
                timeout=timeout,
            )

    # --- views --------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """Every trade and refund, JSON-ready, for the control API and the HTML page."""
        with self.lock:
            rows: list[dict[str, Any]] = []
            for kind, store in (("trade", self.trades), ("refund", self.refunds)):
                for channel, items in store.items():
                    for key, obj in items.items():
                        rows.append({"channel": channel, "kind": kind, "key": key, **_jsonable(obj)})
            return json.loads(json.dumps(rows, default=_json_default))

    # --- lifecycle ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything: accounts, trades, refunds, faults, notifications, delayed work."""
        with self.lock:
            self.generation += 1
            self._scheduler.cancel_all()
            for store in (self.accounts, self.trades, self.refunds):
                for items in store.values():
                    items.clear()
            self.faults.clear()
            self.notification_log.clear()
            self._outbound.clear()
            self._held.clear()
            for sim in self._simulators.values():
                sim.reset()
            self._idle.notify_all()

    def close(self) -> None:
        with self.lock:
            self.generation += 1
        self._scheduler.stop()

    # --- dispatch (called by the HTTP server) ---------------------------------------------
    def dispatch_channel(self, req: SandboxRequest) -> SandboxResponse:
        """Route one channel request to its simulator, applying API faults around it."""
        sim = self.simulator(req.channel)
        fault = self._take_fault(API_FAULTS, req.channel, req.target, req.body.decode("utf-8", "replace"))
        req.fault = fault
        kind = fault.kind if fault else None
        if kind in ("http_500", "http_503", "disconnect") and not fault.process:
            return _fault_response(fault)
        if kind == "timeout" and fault.process is False:  # never processed: sleep, then hang up
            time.sleep(fault.seconds if fault.seconds is not None else DEFAULT_TIMEOUT_FAULT_SECONDS)
            raise Disconnect()
        self._local.in_request, self._local.fault = True, fault
        try:
            resp = sim.handle(req)
        finally:
            self._local.in_request, self._local.fault = False, None
        if kind in ("http_500", "http_503", "disconnect"):
            return _fault_response(fault)
        if kind == "timeout":
            time.sleep(fault.seconds if fault.seconds is not None else DEFAULT_TIMEOUT_FAULT_SECONDS)
        return resp

    def bind_base_url(self, base_url: str | None) -> None:
        self._local.base_url = base_url


class Disconnect(Exception):
    """Raised as a response marker: the server closes the connection without answering."""


def _fault_response(fault: FaultRule) -> SandboxResponse:
    if fault.kind == "disconnect":
        raise Disconnect()
    if fault.kind == "http_503":
        return SandboxResponse.json(503, {"code": "SERVICE_UNAVAILABLE", "message": "sandbox fault: 503"})
    return SandboxResponse.json(500, {"code": "SYSTEM_ERROR", "message": "sandbox fault: 500"})


def _jsonable(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if isinstance(obj, Mapping):
        return dict(obj)
    return {"value": str(obj)}


def _json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if callable(obj):
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def case_insensitive(headers: Mapping[str, str]) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict(headers)
