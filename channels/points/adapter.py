"""Partner loyalty points: HMAC-signed deductions from a bound points account.

Wire protocol: paycore's own generic pattern for partner points (no vendor specification
applies; a real partner's field names would be mapped here and nowhere else).

Account keys read from ``AccountConfig``:

- ``ids["app_id"]``: our application id at the partner; sent as ``X-App-Id`` and required in
  ``X-App-Id`` of every response and callback.
- ``ids["key_id"]``: id of the current shared secret, sent as ``X-Key-Id``.
- ``credentials["shared_secret"]``: the current secret. The HMAC key is the secret string's
  UTF-8 bytes exactly as configured (a hex secret is *not* hex-decoded).
- ``credentials["previous_key_id"]`` + ``credentials["previous_shared_secret"]`` (optional,
  during rotation): responses and callbacks signed under the previous key id are still accepted.
  Our requests are always signed with the current key.
- ``options["points_per_minor_unit"]``: positive int, default 1. ``points = amount * this``.
- ``options["currency"]``: ISO 4217 code reported on trades and bill rows, default ``CNY``.
- ``options["notify_url"]``: the callback URL registered at the partner. Its path and query are
  the PATH_AND_QUERY of a callback's signature (``parse_notification`` receives no URL).

Signing, both directions::

    string_to_sign = METHOD \\n PATH_AND_QUERY \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body)) \\n
    X-Signature    = hex(HMAC-SHA256(secret, string_to_sign))      # lower case
    X-App-Id, X-Key-Id, X-Timestamp (Unix seconds), X-Nonce (16-32 of [0-9a-f])

The partner signs each *response* with the METHOD and PATH_AND_QUERY of the request it answers
(as sent, base-URL prefix included) over the response body, so a response cannot be replayed as
the answer to another request; a callback is signed as ``POST`` to the registered URL's path.
Receivers reject ``|now - timestamp| > 300 s`` and a nonce seen in the last 10 minutes (here an
in-process cache; paycore also dedupes callbacks by ``event_id``).

JSON objects on the wire:

- deduction: ``deduction_id, request_no, binding_id, order_no, points, refunded_points, status,
  fail_code, created_at, completed_at``
- refund: ``refund_id, refund_request_no, deduction_id, request_no, points, status, fail_code,
  created_at, completed_at``
- error (any 4xx): ``{"code": "...", "message": "..."}``
- callback: ``{"event_id", "type", "created_at", "deduction": {...}}`` or ``... "refund": {...}``,
  ``type`` one of ``DEDUCTION.SUCCESS``, ``DEDUCTION.FAILED``, ``REFUND.SUCCESS``,
  ``REFUND.FAILED`` (other verified types are reported as ``NotificationKind.OTHER``).

``status`` is ``PROCESSING``, ``SUCCESS`` or ``FAILED``; times are RFC 3339 with an offset.

Daily statement, ``GET /v1/statements?date=YYYY-MM-DD``: UTF-8 CSV, header row exactly::

    type,request_no,deduction_id,refund_request_no,refund_id,points,status,created_at,completed_at

``type`` is ``DEDUCTION`` or ``REFUND`` (refund columns empty on deduction rows), ``points`` a
positive integer, the times RFC 3339. A statement for date D lists the records that became final
(else were created) on D in UTC+08:00. Only ``SUCCESS`` rows moved points, so only they become
``BillRow``\\ s.
"""

from __future__ import annotations

import contextlib
import json
import secrets
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import date, timedelta, timezone, tzinfo
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import requests

from channels.base import (
    AccountConfig,
    Ack,
    Bill,
    BillNotReady,
    BillRow,
    ChannelAdapter,
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    Notification,
    NotificationKind,
    NotSupported,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundState,
    RefundStatus,
    SignatureInvalid,
    TradeState,
    TradeStatus,
    check_amount,
    map_status,
    trade_ref_required,
)
from channels.points import _sign
from channels.points._statement import read_statement, verify_streamed
from channels.points._wire import parse_time, points_field, to_minor, to_points, unreadable
from paycore import money

_DEDUCTION_STATUS: dict[str, TradeStatus] = {
    "PROCESSING": TradeStatus.NOT_PAID,
    "SUCCESS": TradeStatus.PAID,
    "FAILED": TradeStatus.FAILED,
}
_REFUND_STATUS: dict[str, RefundStatus] = {
    "PROCESSING": RefundStatus.PROCESSING,
    "SUCCESS": RefundStatus.SUCCEEDED,
    "FAILED": RefundStatus.FAILED,
}


# 4xx error codes that mean "the partner definitely did not do it". Any other code on a 4xx
# reply is treated as an unknown outcome rather than guessed to be a rejection.
_REJECTION_CODES = frozenset(
    {
        "INVALID_REQUEST",
        "SIGNATURE_INVALID",
        "TIMESTAMP_EXPIRED",
        "NONCE_REPLAYED",
        "APP_NOT_FOUND",
        "KEY_NOT_FOUND",
        "USER_REF_INVALID",
        "BINDING_NOT_FOUND",
        "BINDING_INACTIVE",
        "DEDUCTION_NOT_FOUND",
        "REFUND_NOT_FOUND",
        "REQUEST_NO_CONFLICT",
        "REFUND_EXCEEDS_DEDUCTION",
        "DEDUCTION_NOT_SUCCESS",
    }
)
_NOT_FOUND_CODES = frozenset({"DEDUCTION_NOT_FOUND", "REFUND_NOT_FOUND"})


@dataclass(frozen=True, slots=True)
class PointsBalance:
    binding_id: str
    points: int
    frozen_points: int
    raw: Mapping[str, Any] = field(default_factory=dict)


def _account_currency(config: AccountConfig) -> str:
    currency = config.options.get("currency") or "CNY"
    if not isinstance(currency, str) or not money.is_currency(currency):
        raise ChannelError(f"points: options.currency {currency!r} is not an ISO 4217 code", code="CONFIG")
    return currency


_DOWNLOAD_CHUNK = 256 * 1024
_BILL_ZONE = timezone(timedelta(hours=8))  # the partner's statement day


class PointsAdapter(ChannelAdapter):
    """Deducts and refunds partner points for a payment; also binds a user's points account."""

    code: ClassVar[str] = "points"
    methods: ClassVar[frozenset[str]] = frozenset({"points"})
    # The partner prices points in one currency: CNY unless options ``currency`` says otherwise.
    currencies: ClassVar[frozenset[str] | None] = frozenset({"CNY"})

    @classmethod
    def priced_currencies(cls, config: AccountConfig) -> frozenset[str] | None:
        """Exactly the account's ``options.currency`` (default CNY): points have no other price."""
        return frozenset({_account_currency(config)})

    # --- configuration ------------------------------------------------------------------
    @property
    def _app_id(self) -> str:
        return self.config.ids["app_id"]

    @property
    def _rate(self) -> int:
        rate = self.config.options.get("points_per_minor_unit", 1)
        if type(rate) is not int or rate <= 0:
            raise ChannelError("points: options.points_per_minor_unit must be a positive int", code="CONFIG")
        return rate

    @property
    def _currency(self) -> str:
        return _account_currency(self.config)

    def _check_currency(self, currency: str) -> None:
        """Points are priced in the account's currency only; anything else is refused, never relabelled."""
        if currency != self._currency:
            raise ChannelRejected(
                f"points: the partner prices {self._currency}, not {currency!r}", code="CURRENCY_NOT_SUPPORTED"
            )

    def _secret_for(self, key_id: str) -> str:
        """The secret a message claims via ``X-Key-Id``: the current one, or the previous during rotation."""
        creds = self.config.credentials
        if key_id == self.config.ids["key_id"]:
            return creds["shared_secret"]
        previous = creds.get("previous_key_id") or self.config.ids.get("previous_key_id")
        if previous and key_id == previous and creds.get("previous_shared_secret"):
            return creds["previous_shared_secret"]
        raise SignatureInvalid("points: unknown key id", code="KEY_NOT_FOUND")

    def _to_points(self, amount: int) -> int:
        return to_points(amount, self._rate)

    def _to_minor(self, points: int) -> int:
        return to_minor(points, self._rate)

    # --- signatures -----------------------------------------------------------------------
    def _signed_headers(self, method: str, path_and_query: str, body: bytes) -> dict[str, str]:
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        return {
            "X-App-Id": self._app_id,
            "X-Key-Id": self.config.ids["key_id"],
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": _sign.sign(
                self.config.credentials["shared_secret"], method, path_and_query, timestamp, nonce, body
            ),
        }

    def _verify(self, headers: Mapping[str, str], *, method: str, path_and_query: str, body: bytes) -> None:
        """Authenticate a response or callback from its raw bytes; raises ``SignatureInvalid``."""
        _sign.verify(
            headers,
            method=method,
            path_and_query=path_and_query,
            body=body,
            app_id=self._app_id,
            secret_for=self._secret_for,
            now=time.time(),
        )

    # --- transport ------------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        params: Mapping[str, str] | None = None,
        payload: Mapping[str, Any] | None = None,
    ) -> tuple[int, bytes]:
        """Send one signed request; returns the verified (status, body).

        5xx, 429, transport errors and unverifiable replies raise ``ChannelUnavailable``.
        """
        body = (
            b"" if payload is None else json.dumps(payload, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        )
        headers = {"Accept": "application/json"}
        if payload is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        url = self.config.base_url.rstrip("/") + path
        prepared = self.http.prepare_request(
            requests.Request(method, url, params=dict(params or {}), data=body or None, headers=headers)
        )
        path_and_query = prepared.path_url  # exactly what goes on the request line
        prepared.headers.update(self._signed_headers(method, path_and_query, body))
        settings = self.http.merge_environment_settings(prepared.url, {}, None, None, None)
        try:
            resp = self.http.send(prepared, timeout=self.timeout, allow_redirects=False, **settings)
            content = resp.content
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"points: {method} {path} failed: {type(exc).__name__}", code="NETWORK") from exc
        if resp.status_code >= 500 or resp.status_code in (408, 429):
            raise ChannelUnavailable(f"points: HTTP {resp.status_code}", code=f"HTTP_{resp.status_code}")
        try:
            self._verify(resp.headers, method=method, path_and_query=path_and_query, body=content)
        except SignatureInvalid as exc:
            raise ChannelUnavailable(f"points: unverifiable reply: {exc.message}", code=exc.code) from exc
        return resp.status_code, content

    @staticmethod
    def _json(content: bytes) -> dict[str, Any]:
        try:
            data = json.loads(content.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise unreadable("not JSON") from None
        if not isinstance(data, dict):
            raise unreadable("not a JSON object")
        return data

    def _ok(self, status: int, content: bytes, *, not_found_ok: bool = False) -> dict[str, Any] | None:
        """The JSON object of a 2xx reply; ``None`` for a 404 when allowed; otherwise raise."""
        if 200 <= status < 300:
            return self._json(content) if content else {}
        if not 400 <= status < 500:
            raise ChannelUnavailable(f"points: unexpected HTTP {status}", code=f"HTTP_{status}")
        error = self._json(content)
        code = str(error.get("code", ""))
        if status == 404 and not_found_ok and code in _NOT_FOUND_CODES:
            return None
        if code in _REJECTION_CODES:
            raise ChannelRejected(f"points: {code}: {error.get('message', '')}", code=code, raw=error)
        raise ChannelUnavailable(f"points: HTTP {status} with unknown code {code!r}", code=code or "UNKNOWN", raw=error)

    # --- bindings (not part of ChannelAdapter; used by the product's points linking) ------------
    def bind(self, bind_request_no: str, user_ref: str, our_user_id: str) -> str:
        """Link a user's partner account; idempotent by ``bind_request_no``. Returns the binding id."""
        status, content = self._call(
            "POST",
            "/v1/bindings",
            payload={"bind_request_no": bind_request_no, "user_ref": user_ref, "our_user_id": our_user_id},
        )
        data = self._ok(status, content) or {}
        if data.get("status") != "ACTIVE" or not isinstance(data.get("binding_id"), str):
            raise ChannelRejected(
                f"points: binding not active: {data.get('status')!r}", code="BINDING_INACTIVE", raw=data
            )
        return data["binding_id"]

    def unbind(self, binding_id: str) -> None:
        status, content = self._call("DELETE", f"/v1/bindings/{quote(binding_id, safe='')}")
        self._ok(status, content)

    def balance(self, binding_id: str) -> PointsBalance:
        status, content = self._call("GET", f"/v1/bindings/{quote(binding_id, safe='')}/balance")
        data = self._ok(status, content) or {}
        return PointsBalance(
            binding_id=binding_id,
            points=points_field(data, "points"),
            frozen_points=points_field(data, "frozen_points"),
            raw=data,
        )

    # --- payments ---------------------------------------------------------------------------
    def prepay(self, req: PrepayRequest) -> PrepayResult:
        """Deduct the points now. Idempotent: ``request_no`` is the payment number.

        A timeout raises ``ChannelUnavailable``: resolve it with ``query``, never with a new number.
        """
        if req.method != "points":
            raise NotSupported(f"points: unsupported method {req.method!r}")
        if not req.payer_id:
            raise ChannelRejected("points: payer_id must be the user's binding id", code="PAYER_ID_REQUIRED")
        self._check_currency(req.currency)
        points = self._to_points(check_amount(req.amount))
        status, content = self._call(
            "POST",
            "/v1/points/deductions",
            payload={
                "request_no": req.payment_no,
                "binding_id": req.payer_id,
                "points": points,
                "order_no": req.payment_no,
                "description": req.description,
            },
        )
        deduction = self._ok(status, content) or {}
        if deduction.get("request_no") != req.payment_no or deduction.get("points") != points:
            raise unreadable("deduction does not match the request")
        trade = self._trade(deduction)
        return PrepayResult(
            payment_no=req.payment_no,
            client_params={"deduction_id": trade.channel_trade_no, "points": points, "status": trade.status.value},
            channel_trade_no=trade.channel_trade_no,
            status=trade.status,
            raw=deduction,
        )

    def query(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> TradeState:
        trade_ref_required(payment_no, channel_trade_no)
        if channel_trade_no:
            params = {"deduction_id": channel_trade_no}
        else:
            params = {"request_no": str(payment_no)}
        status, content = self._call("GET", "/v1/points/deductions", params=params)
        deduction = self._ok(status, content, not_found_ok=True)
        if deduction is None:
            return TradeState(
                payment_no=payment_no or "",
                status=TradeStatus.NOT_FOUND,
                channel_trade_no=channel_trade_no,
                paid_amount=None,
                currency=self._currency,
            )
        trade = self._trade(deduction)
        if (payment_no and trade.payment_no != payment_no) or (
            channel_trade_no and trade.channel_trade_no != channel_trade_no
        ):
            raise unreadable("deduction does not match the query")
        return trade

    def close(self, *, payment_no: str, channel_trade_no: str | None = None) -> None:
        """Points are taken at once, so there is nothing to close; only check nothing was taken.

        Not found or FAILED: nothing was deducted, fine. SUCCESS: ``ChannelRejected`` code
        ``TRADE_PAID`` (refund instead). PROCESSING: ``ChannelRejected`` code
        ``DEDUCTION_PROCESSING``; it will end SUCCESS or FAILED, query again later.
        """
        trade = self.query(payment_no=payment_no, channel_trade_no=channel_trade_no)
        if trade.status in (TradeStatus.NOT_FOUND, TradeStatus.FAILED):
            return
        if trade.status == TradeStatus.PAID:
            raise ChannelRejected("points: deduction succeeded; refund it", code="TRADE_PAID", raw=trade.raw)
        raise ChannelRejected("points: deduction still processing", code="DEDUCTION_PROCESSING", raw=trade.raw)

    def _trade(self, deduction: Mapping[str, Any]) -> TradeState:
        status = map_status(
            _DEDUCTION_STATUS, deduction.get("status"), what="points deduction status", code="UNREADABLE_REPLY"
        )
        deduction_id, request_no = deduction.get("deduction_id"), deduction.get("request_no")
        if not isinstance(deduction_id, str) or not isinstance(request_no, str):
            raise unreadable("deduction ids")
        points = points_field(deduction, "points")
        paid = status == TradeStatus.PAID
        return TradeState(
            payment_no=request_no,
            status=status,
            channel_trade_no=deduction_id,
            paid_amount=self._to_minor(points) if paid else None,
            currency=self._currency,
            paid_at=parse_time(deduction.get("completed_at")) if paid else None,
            raw=dict(deduction),
        )

    # --- refunds ----------------------------------------------------------------------------
    def refund(self, req: RefundRequest) -> RefundState:
        """Return points; idempotent by ``refund_request_no`` (= ``refund_no``). Completes asynchronously."""
        self._check_refund_no(req)
        self._check_currency(req.currency)
        points = self._to_points(check_amount(req.amount))
        payload: dict[str, Any] = {"refund_request_no": req.refund_no, "points": points}
        if req.channel_trade_no:
            payload["deduction_id"] = req.channel_trade_no
        else:
            payload["request_no"] = req.payment_no
        status, content = self._call("POST", "/v1/points/refunds", payload=payload)
        refund = self._ok(status, content) or {}
        state = self._refund_state(refund)
        if state.refund_no != req.refund_no or refund.get("points") != points:
            raise unreadable("refund does not match the request")
        return state

    def query_refund(
        self,
        *,
        refund_no: str,
        payment_no: str,
        channel_trade_no: str | None = None,
        channel_refund_no: str | None = None,
    ) -> RefundState:
        params = {"refund_id": channel_refund_no} if channel_refund_no else {"refund_request_no": refund_no}
        status, content = self._call("GET", "/v1/points/refunds", params=params)
        refund = self._ok(status, content, not_found_ok=True)
        if refund is None:
            return RefundState(
                refund_no=refund_no, status=RefundStatus.NOT_FOUND, channel_refund_no=channel_refund_no, amount=None
            )
        state = self._refund_state(refund)
        if state.refund_no != refund_no or refund.get("request_no") != payment_no:
            raise unreadable("refund does not match the query")
        return state

    def _refund_state(self, refund: Mapping[str, Any]) -> RefundState:
        status = map_status(_REFUND_STATUS, refund.get("status"), what="points refund status", code="UNREADABLE_REPLY")
        refund_id, refund_no = refund.get("refund_id"), refund.get("refund_request_no")
        if not isinstance(refund_id, str) or not isinstance(refund_no, str):
            raise unreadable("refund ids")
        succeeded = status == RefundStatus.SUCCEEDED
        return RefundState(
            refund_no=refund_no,
            status=status,
            channel_refund_no=refund_id,
            amount=self._to_minor(points_field(refund, "points")),
            succeeded_at=parse_time(refund.get("completed_at")) if succeeded else None,
            fail_code=refund.get("fail_code") or None,
            raw=dict(refund),
        )

    # --- notifications ------------------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify a partner callback (signed as POST to ``options.notify_url``), then parse it."""
        notify_url = self.config.options.get("notify_url")
        if not notify_url:
            raise SignatureInvalid("points: options.notify_url is not configured", code="NOTIFY_URL_MISSING")
        parts = urlsplit(notify_url)
        path_and_query = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        self._verify(headers, method="POST", path_and_query=path_and_query, body=body)
        event = self._json(body)
        event_id, event_type = event.get("event_id"), event.get("type")
        if not isinstance(event_id, str) or not event_id or not isinstance(event_type, str):
            raise unreadable("callback without event_id/type")
        if event_type.startswith("DEDUCTION.") and isinstance(event.get("deduction"), dict):
            trade = self._trade(event["deduction"])
            return Notification(
                kind=NotificationKind.PAYMENT,
                dedupe_key=event_id,
                event_type=event_type,
                payment_no=trade.payment_no,
                channel_trade_no=trade.channel_trade_no,
                trade=trade,
                raw=event,
            )
        if event_type.startswith("REFUND.") and isinstance(event.get("refund"), dict):
            refund = self._refund_state(event["refund"])
            payment_no, deduction_id = event["refund"].get("request_no"), event["refund"].get("deduction_id")
            if not isinstance(payment_no, str) or not isinstance(deduction_id, str):
                raise unreadable("refund callback without the deduction's ids")
            return Notification(
                kind=NotificationKind.REFUND,
                dedupe_key=event_id,
                event_type=event_type,
                payment_no=payment_no,
                channel_trade_no=deduction_id,
                refund=refund,
                raw=event,
            )
        return Notification(kind=NotificationKind.OTHER, dedupe_key=event_id, event_type=event_type, raw=event)

    def ack(self, ok: bool, message: str = "") -> Ack:
        body = {"code": "SUCCESS"} if ok else {"code": "FAIL", "message": message}
        return Ack(
            status=200 if ok else 400,
            body=json.dumps(body, separators=(",", ":")).encode(),
            content_type="application/json",
        )

    # --- bills --------------------------------------------------------------------------------
    bill_timezone: ClassVar[tzinfo] = _BILL_ZONE  # the bill day is a Beijing (UTC+8) day

    def fetch_bill(self, bill_date: date) -> Bill:
        """The day's statement (UTC+8 day); only SUCCESS rows (points actually moved) become bill
        rows. The request is sent at once (``409 STATEMENT_NOT_READY`` raises ``BillNotReady``
        here); the body is then streamed and parsed row by row, its signature checked at the end."""
        method, path = "GET", "/v1/statements"
        url = self.config.base_url.rstrip("/") + path
        prepared = self.http.prepare_request(
            requests.Request(method, url, params={"date": bill_date.isoformat()}, headers={"Accept": "text/csv"})
        )
        path_and_query = prepared.path_url
        prepared.headers.update(self._signed_headers(method, path_and_query, b""))
        settings = self.http.merge_environment_settings(prepared.url, {}, True, None, None)
        try:
            resp = self.http.send(prepared, timeout=self.timeout, allow_redirects=False, **settings)
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"points: statement request failed: {type(exc).__name__}", code="NETWORK") from exc
        if resp.status_code != 200:
            with contextlib.closing(resp):
                content = resp.content
            if resp.status_code >= 500 or resp.status_code in (408, 429):
                raise ChannelUnavailable(f"points: HTTP {resp.status_code}", code=f"HTTP_{resp.status_code}")
            try:
                self._verify(resp.headers, method=method, path_and_query=path_and_query, body=content)
            except SignatureInvalid as exc:
                raise ChannelUnavailable(f"points: unverifiable reply: {exc.message}", code=exc.code) from exc
            if resp.status_code == 409 and self._json(content).get("code") == "STATEMENT_NOT_READY":
                raise BillNotReady(f"points: statement of {bill_date} not ready", code="STATEMENT_NOT_READY")
            self._ok(resp.status_code, content)  # raises with the partner's code
            raise unreadable(f"statement HTTP {resp.status_code}")

        def verify(body_sha256: str) -> None:
            try:
                verify_streamed(
                    resp.headers,
                    method=method,
                    path_and_query=path_and_query,
                    body_sha256=body_sha256,
                    app_id=self._app_id,
                    secret_for=self._secret_for,
                    now=time.time(),
                )
            except SignatureInvalid as exc:
                raise ChannelUnavailable(f"points: unverifiable statement: {exc.message}", code=exc.code) from exc

        def rows(bill: Bill) -> Iterator[BillRow]:
            with contextlib.closing(resp):
                try:
                    yield from read_statement(
                        bill,
                        resp.iter_content(_DOWNLOAD_CHUNK),
                        to_minor=self._to_minor,
                        currency=self._currency,
                        verify=verify,
                    )
                except requests.RequestException as exc:
                    raise ChannelUnavailable(f"points: statement broke off: {type(exc).__name__}") from exc

        return Bill(channel=self.code, bill_date=bill_date, bill_type="statement", rows=rows)
