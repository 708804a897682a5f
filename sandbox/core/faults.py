"""Fault rules (``POST /_sandbox/faults``) and how the sandbox picks them for a request."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any

from sandbox.core.wire import Disconnect, SandboxError, SandboxResponse

NOTIFICATION_FAULTS = frozenset({"drop", "duplicate", "delay", "reorder"})
API_FAULTS = frozenset({"http_500", "http_503", "timeout", "disconnect", "bad_signature", "tamper_amount"})
# Chosen by the simulator for one trade or account (``account`` / ``trade`` match), not by path:
# a payment-code revocation (WeChat reverse, Alipay cancel) asking to be called again without
# acting (``recall=Y`` / ``retry_flag=Y``), or failing with SYSTEMERROR / 20000.
REVOCATION_FAULTS = frozenset({"revoke_retry", "revoke_error"})
# Applied by a simulator when it builds a bill (``account`` / ``date`` / ``trade`` match): the
# trade left out, a trade nobody placed, a wrong amount or fee, a line twice, a revocation that
# never happened.
BILL_FAULTS = frozenset({"bill_missing", "bill_extra", "bill_amount", "bill_fee", "bill_duplicate", "bill_revoked"})
BILL_CHANNELS = {
    "wechat": BILL_FAULTS,
    "alipay": BILL_FAULTS,
    "paypal": BILL_FAULTS - {"bill_revoked"},  # PayPal has no revocation
    "points": BILL_FAULTS - {"bill_revoked", "bill_fee"},  # statements carry no fee
}
FAULT_KINDS = NOTIFICATION_FAULTS | API_FAULTS | REVOCATION_FAULTS | BILL_FAULTS


# Real seconds a ``timeout`` fault sleeps by default: past channels.base.DEFAULT_TIMEOUT's read timeout.
DEFAULT_TIMEOUT_FAULT_SECONDS = 20.0
# Sandbox seconds a ``delay`` fault holds a notification back by default (divided by time_factor).
DEFAULT_DELAY_FAULT_SECONDS = 60.0


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
    ``account`` / ``trade``: for faults a simulator picks for a business object (revocation and
    bill faults): the account (WeChat ``mchid``, Alipay ``app_id``, PayPal ``client_id``, points
    ``app_id``) and the trade (the merchant's number: ``out_trade_no`` / ``invoice_id`` /
    ``request_no``); None = any. ``date``: bill faults, the bill day ``YYYY-MM-DD``; None = any.
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
    account: str | None = None
    trade: str | None = None
    date: str | None = None
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 0

    def matches(
        self, channel: str, where: str, body: str, *, account: str | None = None, trade: str | None = None
    ) -> bool:
        if self.channel is not None and self.channel != channel:
            return False
        if self.account is not None and self.account != account:
            return False
        if self.trade is not None and self.trade != trade:
            return False
        if self.path is not None and self.path not in where:
            return False
        return not (self.body_contains is not None and self.body_contains not in body)

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


class FaultsMixin:
    """``Sandbox``'s fault registry: add, clear, and pick the rule that applies to an event."""

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
        if kind in API_FAULTS | NOTIFICATION_FAULTS and (kwargs.get("account") or kwargs.get("trade")):
            raise SandboxError(400, "BAD_FAULT", f"{kind} matches by path/body_contains, not account/trade")
        if kind in API_FAULTS | NOTIFICATION_FAULTS | REVOCATION_FAULTS and kwargs.get("date"):
            raise SandboxError(400, "BAD_FAULT", f"{kind} has no date; only bill faults do")
        if kind in BILL_FAULTS:
            _check_bill_fault(kind, kwargs)
        if kind in REVOCATION_FAULTS and kwargs.get("channel") not in ("wechat", "alipay"):
            raise SandboxError(400, "BAD_FAULT", f"{kind} needs channel wechat or alipay (payment-code revocation)")
        with self.lock:
            fault = FaultRule(id=next(self._fault_ids), kind=kind, params=data, **kwargs)
            self.faults.append(fault)
            return fault

    def clear_faults(self) -> None:
        with self.lock:
            self.faults.clear()

    def _take_fault(
        self,
        kinds: frozenset[str],
        channel: str,
        where: str,
        body: str,
        *,
        account: str | None = None,
        trade: str | None = None,
    ) -> FaultRule | None:
        with self.lock:
            for rule in self.faults:
                if rule.kind in kinds and rule.matches(channel, where, body, account=account, trade=trade):
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

    def revocation_fault(self, channel: str, *, account: str, trade: str) -> FaultRule | None:
        """The revocation fault for this account's trade, if any, consuming one ``count`` of it."""
        return self._take_fault(REVOCATION_FAULTS, channel, "", "", account=account, trade=trade)

    def bill_faults(self, channel: str, account: str, day: str) -> list[FaultRule]:
        """Every bill fault for this account's bill of ``day``, each consuming one ``count``."""
        taken = []
        with self.lock:
            for rule in list(self.faults):
                if rule.kind in BILL_FAULTS and rule.matches(channel, "", "", account=account, trade=rule.trade):
                    if rule.date is not None and rule.date != day:
                        continue
                    rule.hits += 1
                    if rule.count is not None:
                        rule.count -= 1
                        if rule.count <= 0:
                            self.faults.remove(rule)
                    taken.append(rule)
        return taken


def _check_bill_fault(kind: str, rule: Mapping[str, Any]) -> None:
    channel = rule.get("channel")
    if kind not in BILL_CHANNELS.get(channel or "", ()):
        raise SandboxError(400, "BAD_FAULT", f"{kind} needs channel in {sorted(BILL_CHANNELS)} that has it")
    if kind in ("bill_missing", "bill_amount", "bill_fee", "bill_duplicate", "bill_revoked") and not rule.get("trade"):
        raise SandboxError(400, "BAD_FAULT", f"{kind} needs the trade (merchant number) it applies to")
    if kind in ("bill_amount", "bill_fee") and not isinstance(rule.get("amount"), int):
        raise SandboxError(400, "BAD_FAULT", f"{kind} needs amount (minor units / points)")
    day = rule.get("date")
    if day is not None:
        try:
            date.fromisoformat(day)
        except (TypeError, ValueError):
            raise SandboxError(400, "BAD_FAULT", "date is the bill day, YYYY-MM-DD") from None


def fault_response(fault: FaultRule) -> SandboxResponse:
    if fault.kind == "disconnect":
        raise Disconnect()
    if fault.kind == "http_503":
        return SandboxResponse.json(503, {"code": "SERVICE_UNAVAILABLE", "message": "sandbox fault: 503"})
    return SandboxResponse.json(500, {"code": "SYSTEM_ERROR", "message": "sandbox fault: 500"})
