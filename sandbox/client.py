"""A thin ``requests`` wrapper over the sandbox gateway's control API (see CONTRACT.md).

Used by tests and by paycore's development tooling to create accounts, act as the payer and
inject faults. It talks HTTP only, so it works against a gateway in another process too.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import quote

import requests


class SandboxClientError(Exception):
    """The control API answered with an error status."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"sandbox answered {status}: {body}")
        self.status, self.body = status, body
        self.code = body.get("code", "") if isinstance(body, dict) else ""


class SandboxClient:
    def __init__(
        self, base_url: str, session: requests.Session | None = None, timeout: tuple[float, float] = (5.0, 70.0)
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self.http = session or requests.Session()
        self.timeout = timeout

    def _call(self, method: str, path: str, payload: dict[str, Any] | None = None) -> Any:
        url = f"{self.base_url}/_sandbox{path}"
        resp = self.http.request(method, url, json=payload, timeout=self.timeout)
        body: Any = None
        if resp.content:
            try:
                body = resp.json()
            except ValueError:
                body = resp.text
        if resp.status_code >= 400:
            raise SandboxClientError(resp.status_code, body)
        return body

    # --- accounts -----------------------------------------------------------------------
    def create_account(self, channel: str, notify_url: str | None = None, **options: Any) -> dict[str, Any]:
        """A fresh account JSON: ``channel``, ``name``, ``base_url``, ``ids``, ``credentials``, ``options``.

        ``options`` are simulator-specific (e.g. WeChat ``mode``).
        """
        payload: dict[str, Any] = {"channel": channel, **options}
        if notify_url is not None:
            payload["notify_url"] = notify_url
        return self._call("POST", "/accounts", payload)

    # --- payer --------------------------------------------------------------------------
    def act(self, channel: str, payment_no: str, action: str, **params: Any) -> dict[str, Any]:
        path = f"/{quote(channel, safe='')}/trades/{quote(payment_no, safe='')}/{quote(action, safe='')}"
        return self._call("POST", path, params)

    def pay(self, channel: str, payment_no: str, **params: Any) -> dict[str, Any]:
        return self.act(channel, payment_no, "pay", **params)

    def fail(self, channel: str, payment_no: str, **params: Any) -> dict[str, Any]:
        return self.act(channel, payment_no, "fail", **params)

    def cancel(self, channel: str, payment_no: str, **params: Any) -> dict[str, Any]:
        return self.act(channel, payment_no, "cancel", **params)

    def password(self, channel: str, payment_no: str, **params: Any) -> dict[str, Any]:
        return self.act(channel, payment_no, "password", **params)

    # --- inspection ---------------------------------------------------------------------
    def trades(self) -> list[dict[str, Any]]:
        return self._call("GET", "/trades")

    def notifications(self) -> list[dict[str, Any]]:
        """Every delivery attempt: id, key, url, attempt, status, outcome, fault, request body..."""
        return self._call("GET", "/notifications")

    def notification_states(self) -> list[dict[str, Any]]:
        return self._call("GET", "/notifications/states")

    def flush_notifications(self) -> int:
        """Release notifications held back by a ``reorder`` fault."""
        return self._call("POST", "/notifications/flush")["released"]

    def cancel_notifications(self) -> int:
        """Stop every pending or held delivery; returns how many were stopped."""
        return self._call("POST", "/notifications/cancel")["cancelled"]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no notification delivery is pending; False if still busy after ``timeout``."""
        return self._call("POST", "/wait_idle", {"timeout": timeout})["idle"]

    # --- clock --------------------------------------------------------------------------
    def clock(self) -> dict[str, Any]:
        """``{"now", "real_now", "offset_seconds"}``: the sandbox clock (real time plus advances)."""
        return self._call("GET", "/clock")

    def advance_clock(self, seconds: float) -> dict[str, Any]:
        """Move the sandbox clock forward (a day ends, an expiry passes) without sleeping."""
        return self._call("POST", "/clock", {"advance_seconds": seconds})

    def reset_clock(self) -> dict[str, Any]:
        """Back to real time (tests do this after themselves; ``reset()`` does it too)."""
        return self._call("POST", "/clock", {"reset": True})

    def end_day(self, utc_offset_hours: float = 8) -> dict[str, Any]:
        """Advance the clock to just past the next midnight at that UTC offset (8: Beijing, the
        WeChat/Alipay/points bill day; 0: UTC, PayPal's), so that today's bill is ready."""
        zone = timezone(timedelta(hours=utc_offset_hours))
        now = datetime.fromisoformat(self.clock()["now"]).astimezone(zone)
        midnight = datetime(now.year, now.month, now.day, tzinfo=zone) + timedelta(days=1, seconds=1)
        return self.advance_clock((midnight - now).total_seconds())

    # --- merchant webhook receivers ----------------------------------------------------
    def create_merchant(self) -> dict[str, Any]:
        """A receiver playing a merchant's server: ``{"id", "notify_url", "received", "behaviours"}``."""
        return self._call("POST", "/merchants")

    def merchant(self, merchant_id: str) -> dict[str, Any]:
        return self._call("GET", f"/merchants/{quote(merchant_id, safe='')}")

    def merchant_requests(self, merchant_id: str) -> list[dict[str, Any]]:
        """What it received: ``method, path, query, headers, body, body_base64, at, sandbox_at,
        behaviour, answer_status``, oldest first."""
        return self._call("GET", f"/merchants/{quote(merchant_id, safe='')}/requests")

    def clear_merchant_requests(self, merchant_id: str) -> None:
        self._call("DELETE", f"/merchants/{quote(merchant_id, safe='')}/requests")

    def merchant_behaviour(self, merchant_id: str, kind: str, **params: Any) -> dict[str, Any]:
        """Queue ``fail`` (``count``, ``status``, ``body``), ``timeout`` (``count``, ``seconds``) or
        ``slow`` (``count``, ``seconds``); ``count=None``: every request from then on."""
        return self._call("POST", f"/merchants/{quote(merchant_id, safe='')}/behaviours", {"kind": kind, **params})

    def merchant_fail(self, merchant_id: str, count: int = 1, status: int = 500, body: str = "") -> dict[str, Any]:
        return self.merchant_behaviour(merchant_id, "fail", count=count, status=status, body=body)

    def merchant_timeout(self, merchant_id: str, count: int = 1, seconds: float = 30.0) -> dict[str, Any]:
        return self.merchant_behaviour(merchant_id, "timeout", count=count, seconds=seconds)

    def merchant_slow(self, merchant_id: str, seconds: float, count: int | None = 1) -> dict[str, Any]:
        return self.merchant_behaviour(merchant_id, "slow", count=count, seconds=seconds)

    def clear_merchant_behaviours(self, merchant_id: str) -> None:
        self._call("DELETE", f"/merchants/{quote(merchant_id, safe='')}/behaviours")

    def wait_for_merchant_requests(self, merchant_id: str, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until ``count`` requests arrived (server side, no polling); raises on timeout."""
        answer = self._call(
            "POST", f"/merchants/{quote(merchant_id, safe='')}/wait", {"count": count, "timeout": timeout}
        )
        if not answer["received"]:
            raise TimeoutError(f"merchant {merchant_id} received {answer['count']} of {count} requests in {timeout}s")
        return self.merchant_requests(merchant_id)

    # --- faults -------------------------------------------------------------------------
    def add_fault(self, **rule: Any) -> dict[str, Any]:
        """``kind`` plus optional ``channel``, ``path``, ``body_contains``, ``count``, ``seconds``,
        ``amount``, ``process`` (see ``sandbox.core.FaultRule``)."""
        return self._call("POST", "/faults", rule)

    def faults(self) -> list[dict[str, Any]]:
        return self._call("GET", "/faults")

    def clear_faults(self) -> None:
        self._call("DELETE", "/faults")

    def reset(self) -> None:
        self._call("POST", "/reset")
