"""Merchant webhook receivers: the sandbox playing a merchant's server for paycore's webhooks.

``POST /_sandbox/merchants`` creates a receiver whose ``notify_url`` is on the gateway
(``{gw}/_sandbox/merchants/{id}/notify``, any sub-path and query accepted). It records every
request (method, path, query, headers, raw body, real and sandbox time, what it answered) and
answers ``200 {"received": true}``, unless told otherwise through its behaviour queue:

- ``fail``: answer ``status`` (default 500) with ``body`` to the next ``count`` requests;
- ``timeout``: hold the request ``seconds`` real seconds (default 30) and hang up unanswered;
- ``slow``: wait ``seconds`` real seconds, then answer normally.

Behaviours run in the order they were added, each for its ``count`` requests (``null``: every
request from then on). The receiver does not check signatures: tests verify them with the
documented algorithm from the recorded headers and raw body.
"""

from __future__ import annotations

import base64
import itertools
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.core.wire import Disconnect, SandboxError, SandboxResponse

if TYPE_CHECKING:
    from sandbox.core.state import Sandbox

BEHAVIOURS = ("fail", "timeout", "slow")
DEFAULT_TIMEOUT_SECONDS = 30.0
MAX_HOLD_SECONDS = 300.0


@dataclass
class Behaviour:
    id: int
    kind: str
    count: int | None = 1
    status: int = 500
    body: str = ""
    seconds: float = DEFAULT_TIMEOUT_SECONDS
    applied: int = 0

    def to_json(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("id", "kind", "count", "status", "body", "seconds", "applied")}


@dataclass
class MerchantReceiver:
    id: str
    notify_url: str
    created_at: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    behaviours: list[Behaviour] = field(default_factory=list)
    _seq: Any = field(default_factory=lambda: itertools.count(1))
    _cond: threading.Condition = field(default_factory=threading.Condition)

    def add_behaviour(self, data: dict[str, Any]) -> Behaviour:
        kind = data.get("kind")
        if kind not in BEHAVIOURS:
            raise SandboxError(400, "BAD_BEHAVIOUR", f"kind must be one of {list(BEHAVIOURS)}, got {kind!r}")
        count = data.get("count", 1)
        if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 1):
            raise SandboxError(400, "BAD_BEHAVIOUR", "count must be a positive integer or null (every request)")
        status = data.get("status", 500)
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise SandboxError(400, "BAD_BEHAVIOUR", "status must be an HTTP status code")
        seconds = data.get("seconds", DEFAULT_TIMEOUT_SECONDS if kind == "timeout" else 1.0)
        if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_HOLD_SECONDS:
            raise SandboxError(400, "BAD_BEHAVIOUR", f"seconds must be between 0 and {MAX_HOLD_SECONDS:g}")
        with self._cond:
            behaviour = Behaviour(
                id=next(self._seq),
                kind=kind,
                count=count,
                status=status,
                body=str(data.get("body", "")),
                seconds=seconds,
            )
            self.behaviours.append(behaviour)
            return behaviour

    def clear_behaviours(self) -> None:
        with self._cond:
            self.behaviours.clear()

    def clear_requests(self) -> None:
        with self._cond:
            self.requests.clear()

    def _next_behaviour(self) -> Behaviour | None:
        """The behaviour for the request arriving now, consuming one of its ``count``."""
        with self._cond:
            if not self.behaviours:
                return None
            behaviour = self.behaviours[0]
            behaviour.applied += 1
            if behaviour.count is not None:
                behaviour.count -= 1
                if behaviour.count <= 0:
                    self.behaviours.pop(0)
            return behaviour

    def receive(
        self, sandbox: Sandbox, method: str, path: str, query: str, headers: dict[str, str], body: bytes
    ) -> SandboxResponse:
        behaviour = self._next_behaviour()
        entry: dict[str, Any] = {
            "method": method,
            "path": path,
            "query": query,
            "headers": headers,
            "body": body.decode("utf-8", "replace"),
            "body_base64": base64.b64encode(body).decode("ascii"),
            "at": sandbox.wall_now().isoformat(),
            "sandbox_at": sandbox.now().isoformat(),
            "behaviour": behaviour.to_json() if behaviour else None,
            "answer_status": None,
        }
        with self._cond:
            self.requests.append(entry)
            self._cond.notify_all()
        if behaviour is not None and behaviour.kind == "timeout":
            time.sleep(behaviour.seconds)
            raise Disconnect()
        if behaviour is not None and behaviour.kind == "slow":
            time.sleep(behaviour.seconds)
        if behaviour is not None and behaviour.kind == "fail":
            response = SandboxResponse.text(behaviour.status, behaviour.body, "text/plain; charset=utf-8")
        else:
            response = SandboxResponse.json(200, {"received": True})
        with self._cond:
            entry["answer_status"] = response.status
        return response

    def wait_for(self, count: int, timeout: float) -> bool:
        with self._cond:
            return self._cond.wait_for(lambda: len(self.requests) >= count, timeout=timeout)

    def to_json(self) -> dict[str, Any]:
        with self._cond:
            return {
                "id": self.id,
                "notify_url": self.notify_url,
                "created_at": self.created_at,
                "received": len(self.requests),
                "behaviours": [b.to_json() for b in self.behaviours],
            }

    def requests_json(self) -> list[dict[str, Any]]:
        with self._cond:
            return [dict(entry) for entry in self.requests]


class MerchantsMixin:
    """``Sandbox``'s merchant webhook receivers (``self.merchants``)."""

    merchants: dict[str, MerchantReceiver]

    def create_merchant(self) -> MerchantReceiver:
        merchant_id = "m_" + secrets.token_hex(8)
        receiver = MerchantReceiver(
            id=merchant_id,
            notify_url=f"{self.current_base_url()}/_sandbox/merchants/{merchant_id}/notify",  # type: ignore[attr-defined]
            created_at=self.now().isoformat(),  # type: ignore[attr-defined]
        )
        with self.lock:  # type: ignore[attr-defined]
            self.merchants[merchant_id] = receiver
        return receiver

    def merchant(self, merchant_id: str) -> MerchantReceiver:
        with self.lock:  # type: ignore[attr-defined]
            receiver = self.merchants.get(merchant_id)
        if receiver is None:
            raise SandboxError(404, "NO_SUCH_MERCHANT", f"no merchant receiver {merchant_id!r}")
        return receiver
