"""``Sandbox``: all state shared by the HTTP handler threads and the scheduler's workers."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, timedelta
from importlib import import_module
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.core.faults import API_FAULTS, DEFAULT_TIMEOUT_FAULT_SECONDS, FaultRule, FaultsMixin, fault_response
from sandbox.core.notifications import NotificationsMixin, Outbound
from sandbox.core.scheduler import Scheduler
from sandbox.core.simulator import SIMULATORS, ChannelSimulator
from sandbox.core.wire import (
    Disconnect,
    SandboxError,
    SandboxRequest,
    SandboxResponse,
    SimulatorUnavailable,
    json_default,
    jsonable,
)
from sandbox.keys import FreshKeys, KeyPool
from sandbox.merchants import MerchantReceiver, MerchantsMixin
from sandbox.tls import SandboxCA


class Sandbox(FaultsMixin, NotificationsMixin, MerchantsMixin):
    """All sandbox state, shared by the HTTP handler threads and the scheduler's workers."""

    def __init__(self, time_factor: float = 1.0, *, key_pool: KeyPool | None = None) -> None:
        if time_factor <= 0:
            raise ValueError("time_factor must be positive")
        self.time_factor = float(time_factor)
        self.keys: KeyPool | FreshKeys = key_pool if key_pool is not None else FreshKeys()
        self._clock_offset = 0.0  # seconds the sandbox clock is ahead of real time
        self.tls_port: int | None = None  # the gateway's mutual-TLS listener, once it listens
        self.tls_hosts: tuple[str, ...] = ()
        self._ca: SandboxCA | None = None
        self.lock = threading.RLock()
        self.base_url = ""  # set by the server once it listens
        self.generation = 0  # bumped by reset(): stale delayed work checks it
        self.accounts: dict[str, dict[str, Any]] = {}
        self.trades: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.faults: list[FaultRule] = []
        self.notification_log: list[dict[str, Any]] = []
        self.merchants: dict[str, MerchantReceiver] = {}  # merchant webhook receivers
        self._outbound: dict[str, Outbound] = {}
        self._held: list[Outbound] = []
        self._idle = threading.Condition(self.lock)
        self._in_flight = 0  # delivery requests on the wire right now, whatever their notification's state
        self._fault_ids = itertools.count(1)
        self._account_seq = itertools.count(1)
        self._simulators: dict[str, ChannelSimulator] = {}
        self._scheduler = Scheduler()
        self._local = threading.local()

    # --- time ---------------------------------------------------------------------------
    def now(self) -> datetime:
        """The sandbox clock, aware UTC: real time plus every ``advance_clock``. Business times
        (payments, refunds, expiry, bill days) use it; simulators convert to their zone."""
        return datetime.now(UTC) + timedelta(seconds=self._clock_offset)

    def wall_now(self) -> datetime:
        """Real time, for what the other side checks against its own clock: signature
        timestamps and their replay windows, download-link lifetimes."""
        return datetime.now(UTC)

    def advance_clock(self, seconds: float) -> datetime:
        """Move the sandbox clock forward; delayed work due within that span runs at once."""
        if seconds < 0:
            raise ValueError("the sandbox clock only moves forward (reset it to go back)")
        with self.lock:
            self._clock_offset += seconds
        self._scheduler.advance(self.scaled(seconds))
        return self.now()

    def reset_clock(self) -> datetime:
        with self.lock:
            self._clock_offset = 0.0
        return self.now()

    def clock(self) -> dict[str, Any]:
        with self.lock:
            return {
                "now": self.now().isoformat(),
                "real_now": self.wall_now().isoformat(),
                "offset_seconds": self._clock_offset,
            }

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

    # --- keys ---------------------------------------------------------------------------
    def rsa_keys(self, n: int) -> list[rsa.RSAPrivateKey]:
        """``n`` distinct RSA-2048 keys for a new account: fresh, or from the gateway's ``KeyPool``."""
        return self.keys.rsa_keys(n)

    @property
    def ca(self) -> SandboxCA:
        """The sandbox's certificate authority (created on first use: it costs an RSA key)."""
        with self.lock:
            if self._ca is None:
                self._ca = SandboxCA()
            return self._ca

    def tls_url(self) -> str | None:
        """``https://<host>:<tls port>`` with the host the current client used when the TLS server
        certificate covers it (else 127.0.0.1); None when there is no TLS listener."""
        if self.tls_port is None:
            return None
        host = urlsplit(self.current_base_url()).hostname or "127.0.0.1"
        if host not in self.tls_hosts:
            host = "127.0.0.1"
        return f"https://{f'[{host}]' if ':' in host else host}:{self.tls_port}"

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

    # --- views --------------------------------------------------------------------------
    def snapshot(self) -> list[dict[str, Any]]:
        """Every trade and refund, JSON-ready, for the control API and the HTML page."""
        with self.lock:
            rows: list[dict[str, Any]] = []
            for kind, store in (("trade", self.trades), ("refund", self.refunds)):
                for channel, items in store.items():
                    for key, obj in items.items():
                        rows.append({"channel": channel, "kind": kind, "key": key, **jsonable(obj)})
            return json.loads(json.dumps(rows, default=json_default))

    # --- lifecycle ----------------------------------------------------------------------
    def reset(self) -> None:
        """Forget everything: accounts, trades, refunds, faults, notifications, delayed work."""
        with self.lock:
            self.generation += 1
            self._clock_offset = 0.0
            self._scheduler.cancel_all()
            for store in (self.accounts, self.trades, self.refunds):
                for items in store.values():
                    items.clear()
            self.faults.clear()
            self.notification_log.clear()
            self.merchants.clear()
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
            return fault_response(fault)
        if kind == "timeout" and fault.process is False:  # never processed: sleep, then hang up
            time.sleep(fault.seconds if fault.seconds is not None else DEFAULT_TIMEOUT_FAULT_SECONDS)
            raise Disconnect()
        self._local.in_request, self._local.fault = True, fault
        try:
            resp = sim.handle(req)
        finally:
            self._local.in_request, self._local.fault = False, None
        if kind in ("http_500", "http_503", "disconnect"):
            return fault_response(fault)
        if kind == "timeout":
            time.sleep(fault.seconds if fault.seconds is not None else DEFAULT_TIMEOUT_FAULT_SECONDS)
        return resp

    def bind_base_url(self, base_url: str | None) -> None:
        self._local.base_url = base_url
