"""Fixtures for channel tests: a live sandbox gateway, accounts on it, and a notification sink.

None of these touch the database. The gateway is session-scoped with ``time_factor=1000`` so
that WeChat's 15 s/15 s/30 s... retry schedule runs in milliseconds; faults are cleared before
and after every test that uses ``sandbox``, the sandbox clock is back to real time before and after
it, and its undelivered notifications are cancelled after it.
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from requests.structures import CaseInsensitiveDict

from channels.base import AccountConfig
from sandbox.client import SandboxClient
from sandbox.server import SandboxGateway

_account_ids = itertools.count(1)


@pytest.fixture
def sandbox(sandbox_gateway: SandboxGateway) -> Iterator[SandboxClient]:
    client = SandboxClient(sandbox_gateway.base_url)
    client.clear_faults()
    client.reset_clock()
    try:
        yield client
    finally:
        client.clear_faults()
        client.reset_clock()  # a test that ended a day does not move the next test's clock
        client.cancel_notifications()  # nothing of this test keeps retrying into the next one


def account_config(data: dict[str, Any]) -> AccountConfig:
    """An ``AccountConfig`` from the JSON the sandbox's ``create_account`` returns."""
    return AccountConfig(
        channel=data["channel"],
        account_id=next(_account_ids),
        base_url=data["base_url"],
        ids=dict(data.get("ids", {})),
        credentials=dict(data.get("credentials", {})),
        options=dict(data.get("options", {})),
    )


@pytest.fixture
def sandbox_account(sandbox: SandboxClient) -> Callable[..., AccountConfig]:
    """``sandbox_account("wechat", notify_url=None, **extra) -> AccountConfig`` (extra: e.g. ``mode``)."""

    def make(channel: str, notify_url: str | None = None, **extra: Any) -> AccountConfig:
        return account_config(sandbox.create_account(channel, notify_url=notify_url, **extra))

    return make


# --------------------------------------------------------------------------------------------
# Notification sink
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes


class NotificationSink:
    """A local HTTP server recording every request; answers ``respond_with``'s status and body.

    ``respond_with(status, body, times=n)`` queues an answer for the next ``n`` requests only;
    without ``times`` it sets the default answer (initially ``200`` with an empty body).
    """

    def __init__(self) -> None:
        self.received: list[ReceivedRequest] = []
        self._cond = threading.Condition()
        self._default: tuple[int, bytes, str] = (200, b"", "text/plain")
        self._queued: list[tuple[int, bytes, str]] = []
        sink = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:  # quiet
                pass

            def _any(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                status, answer, ctype = sink._record(
                    ReceivedRequest(self.command, self.path, CaseInsensitiveDict(dict(self.headers.items())), body)
                )
                self.send_response(status)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            do_POST = do_GET = do_PUT = do_DELETE = _any

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="notification-sink", daemon=True
        )
        self._thread.start()

    def _record(self, req: ReceivedRequest) -> tuple[int, bytes, str]:
        with self._cond:
            self.received.append(req)
            answer = self._queued.pop(0) if self._queued else self._default
            self._cond.notify_all()
            return answer

    def url(self, path: str = "/cb") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def respond_with(
        self, status: int, body: bytes | str = b"", *, times: int | None = None, content_type: str = "application/json"
    ) -> None:
        answer = (status, body.encode() if isinstance(body, str) else body, content_type)
        with self._cond:
            if times is None:
                self._default = answer
            else:
                self._queued.extend([answer] * times)

    def wait_for(self, n: int, timeout: float = 5.0) -> list[ReceivedRequest]:
        """Wait until at least ``n`` requests arrived; fails the test on timeout."""
        with self._cond:
            if not self._cond.wait_for(lambda: len(self.received) >= n, timeout=timeout):
                got = len(self.received)
                raise AssertionError(f"expected {n} requests at the sink, got {got} in {timeout}s")
            return list(self.received)

    def clear(self) -> None:
        with self._cond:
            self.received.clear()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def notification_sink() -> Iterator[NotificationSink]:
    sink = NotificationSink()
    try:
        yield sink
    finally:
        sink.close()
