"""PayPal REST adapter: Orders v2 checkout, captures, refunds, webhooks, Transaction Search.

PayPal authenticates calls with an OAuth2 bearer token (no request or response signatures) and
signs webhooks with SHA256withRSA over a CRC32-based string. The money id is the *capture*, not
the order: paycore's ``channel_trade_no`` is the order id, and the capture id travels in
``TradeState.raw``.

Account keys read (``AccountConfig``):

- ``ids["client_id"]``: REST app client id (token requests, token cache key).
- ``ids["webhook_id"]``: our webhook registration id in this environment; the only webhook id
  ever used for verification (never one taken from a message).
- ``credentials["client_secret"]``: REST app secret (token requests only; never logged).
- ``options["webhook_verification"]``: ``"local"`` (default, the certificate check done here) or
  ``"api"`` (``POST /v1/notifications/verify-webhook-signature``).
- ``options["cert_url_allowed_prefixes"]``: list of URL prefixes from which a webhook signing
  certificate may also be fetched (a test gateway); ``https`` URLs on ``*.paypal.com`` are
  always allowed.
- ``options["trusted_ca_certificates"]``: list of PEM CA certificates; when set, the signing
  certificate must chain to one of them (directly or through intermediates served with it).

Operations that PayPal does not have, and what this adapter does instead:

- ``close``: unapproved orders simply expire; there is no call to make, so ``close`` is a no-op.
- ``query`` without the order id: PayPal reads orders by its own ids only, so it raises
  ``NotSupported`` (a repeated ``prepay`` with the same payment number returns the original
  order through ``PayPal-Request-Id`` idempotency).
- ``settle`` captures an ``APPROVED`` order: the buyer has agreed, and money that is only
  approved is reversed by PayPal after a few hours. The capture is idempotent on
  ``<payment_no>:capture``. ``query`` itself never captures, so an order the buyer approves after
  paycore closed the payment is left to lapse.

Layout: ``_wire`` (amounts, captures and refunds as paycore values), ``_webhook`` (signature
verification and event mapping), ``_bill`` (Transaction Search rows), this module (HTTP, token,
orders and refunds).
"""

from __future__ import annotations

import base64
import hashlib
import json
import logging
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any
from urllib.parse import quote

import requests
from cryptography import x509

from channels._cache import ProcessCache, fingerprint
from channels.base import (
    AccountConfig,
    Bill,
    BillInconsistent,
    BillNotReady,
    BillSummary,
    ChannelAdapter,
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    Notification,
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
    normalize_headers,
)
from channels.paypal import _webhook
from channels.paypal._bill import bill_rows
from channels.paypal._wire import (
    CURRENCIES,
    format_amount,
    money_of,
    paid_capture,
    parse_time,
    refund_state,
    trade_from_capture,
)

logger = logging.getLogger(__name__)

# Order statuses that need no capture attempt; APPROVED and COMPLETED are handled apart.
_ORDER_STATUS: dict[str, TradeStatus] = {
    "CREATED": TradeStatus.NOT_PAID,
    "SAVED": TradeStatus.NOT_PAID,
    "PAYER_ACTION_REQUIRED": TradeStatus.NOT_PAID,
    "APPROVED": TradeStatus.NOT_PAID,  # approved, not captured: no money has moved yet
    "VOIDED": TradeStatus.CLOSED,
}

# 422 issues from the capture call that are an answer rather than an error.
_CAPTURE_ISSUE: dict[str, TradeStatus] = {
    "ORDER_NOT_APPROVED": TradeStatus.NOT_PAID,
    # the payer must pick another funding source on the approve page; the order stays open
    "INSTRUMENT_DECLINED": TradeStatus.NOT_PAID,
    "ORDER_EXPIRED": TradeStatus.CLOSED,
    "ORDER_IS_VOIDED": TradeStatus.CLOSED,
    "ORDER_ALREADY_VOIDED": TradeStatus.CLOSED,
}

_TOKEN_MARGIN = 300.0  # refresh when fewer than 5 minutes remain
_BILL_PAGE_SIZE = 500
_BILL_MAX_PAGES = 1000


# --- per-process caches: shared by every adapter instance, never across fork -------------------
@dataclass(frozen=True, slots=True)
class _Token:
    value: str
    expires_at: float  # time.monotonic()


@dataclass
class _TokenSlot:
    """The bearer token of one (environment, client id, secret); ``lock`` serialises its refresh."""

    token: _Token | None = None
    lock: threading.Lock = field(default_factory=threading.Lock)


_TOKENS: ProcessCache[_TokenSlot] = ProcessCache("paypal tokens")
_TRUSTED: ProcessCache[list[x509.Certificate]] = ProcessCache("paypal trusted CAs")


def clear_caches() -> None:
    """Forget cached tokens and certificates (tests; credential rotation needs no call)."""
    _TOKENS.clear()
    _TRUSTED.clear()
    _webhook.CERTIFICATES.clear()


def _int_field(data: Mapping[str, Any], name: str) -> int | None:
    value = data.get(name)
    if value is None:
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        raise ChannelUnavailable(f"transaction search reply has unreadable {name}") from None


@dataclass(frozen=True, slots=True)
class _Reply:
    status: int
    data: dict[str, Any]

    @property
    def issue(self) -> str:
        """The first ``details[].issue`` of an error reply, else its ``name``."""
        details = self.data.get("details")
        if isinstance(details, list):
            for item in details:
                if isinstance(item, Mapping) and item.get("issue"):
                    return str(item["issue"])
        return str(self.data.get("name") or self.data.get("error") or f"HTTP_{self.status}")

    def rejected(self, what: str) -> ChannelRejected:
        debug_id = self.data.get("debug_id", "")
        logger.warning("paypal %s rejected: %s (HTTP %s, debug_id %s)", what, self.issue, self.status, debug_id)
        return ChannelRejected(f"PayPal rejected {what}: {self.issue}", code=self.issue, raw=self.data)


class PaypalAdapter(ChannelAdapter):
    """PayPal Orders v2 checkout (``app`` and ``page`` both send the buyer to the approve link)."""

    code = "paypal"
    methods = frozenset({"app", "page"})
    currencies = CURRENCIES  # what PayPal takes in paycore's minor units

    def __init__(self, config: AccountConfig, http: requests.Session | None = None) -> None:
        super().__init__(config, http)
        self._base = config.base_url.rstrip("/")
        mode = config.options.get("webhook_verification", "local") or "local"
        if mode not in ("local", "api"):
            raise ChannelError(f"unknown webhook_verification mode {mode!r}", code="CONFIG")
        self._verification = mode

    # --- payments -------------------------------------------------------------------------
    def prepay(self, req: PrepayRequest) -> PrepayResult:
        """Create an order (intent CAPTURE); idempotent on ``PayPal-Request-Id: payment_no``."""
        value = self._wire_amount(req.amount, req.currency)
        unit: dict[str, Any] = {
            "reference_id": "default",
            "custom_id": req.payment_no,
            "invoice_id": req.payment_no,
            "description": req.description[:127],
            "amount": {"currency_code": req.currency.upper(), "value": value},
        }
        body: dict[str, Any] = {"intent": "CAPTURE", "purchase_units": [unit]}
        if req.return_url:
            context = {"return_url": req.return_url, "user_action": "PAY_NOW"}
            if req.cancel_url:
                context["cancel_url"] = req.cancel_url
            body["payment_source"] = {"paypal": {"experience_context": context}}
        reply = self._call("POST", "/v2/checkout/orders", json_body=body, request_id=req.payment_no)
        if reply.status not in (200, 201):
            raise reply.rejected("order create")
        order = reply.data
        order_id = order.get("id")
        if not isinstance(order_id, str) or not order_id:
            raise ChannelUnavailable("order create reply has no order id", raw=order)
        self._check_order_unit(order, req.payment_no, req.amount, req.currency.upper())
        link = self._link(order, "payer-action") or self._link(order, "approve")
        if not link:
            raise ChannelUnavailable("order create reply has no approve link", raw=order)
        status = str(order.get("status", ""))
        if status not in ("CREATED", "PAYER_ACTION_REQUIRED", "SAVED", "APPROVED", "COMPLETED"):
            raise ChannelUnavailable(f"unexpected order status {status!r} at create", raw=order)
        return PrepayResult(
            payment_no=req.payment_no,
            client_params={"order_id": order_id, "approve_url": link},
            channel_trade_no=order_id,
            status=TradeStatus.NOT_PAID,
            raw=order,
        )

    def query(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> TradeState:
        """Read the order and decide on the capture status; an approved order is NOT_PAID."""
        return self._read(payment_no=payment_no, channel_trade_no=channel_trade_no, capture=False)

    def settle(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> TradeState:
        """Read the order, capture it if approved, and decide on the capture status."""
        return self._read(payment_no=payment_no, channel_trade_no=channel_trade_no, capture=True)

    def _read(self, *, payment_no: str | None, channel_trade_no: str | None, capture: bool) -> TradeState:
        if not channel_trade_no:
            raise NotSupported("PayPal reads orders by order id only; repeat prepay to recover the order")
        order = self._get_order(channel_trade_no)
        if order is None:
            return TradeState(
                payment_no=payment_no or "",
                status=TradeStatus.NOT_FOUND,
                channel_trade_no=channel_trade_no,
                paid_amount=None,
            )
        payment_no = self._check_order_unit(order, payment_no)
        status = str(order.get("status", ""))
        if status == "APPROVED" and capture:
            order, issue = self._capture(channel_trade_no, payment_no)
            if issue is not None:
                return TradeState(
                    payment_no=payment_no,
                    status=_CAPTURE_ISSUE[issue],
                    channel_trade_no=channel_trade_no,
                    paid_amount=None,
                    raw={"order_id": channel_trade_no, "issue": issue},
                )
            self._check_order_unit(order, payment_no)
            status = str(order.get("status", ""))
        if status == "COMPLETED":
            return trade_from_capture(order, payment_no, channel_trade_no)
        trade_status = map_status(_ORDER_STATUS, status, what="order status", raw=order)
        return TradeState(
            payment_no=payment_no,
            status=trade_status,
            channel_trade_no=channel_trade_no,
            paid_amount=None,
            raw={"order_id": channel_trade_no, "order_status": status, "order": order},
        )

    def close(self, *, payment_no: str, channel_trade_no: str | None = None) -> None:
        """No-op: PayPal has no close for unapproved orders, they expire on their own.

        An order approved after paycore closed the payment is never captured (only ``settle``
        captures, and the service settles open payments only); PayPal reverses the approval.
        """
        return None

    # --- refunds --------------------------------------------------------------------------
    def refund(self, req: RefundRequest) -> RefundState:
        """Refund part or all of the order's capture; idempotent on ``PayPal-Request-Id: refund_no``."""
        self._check_refund_no(req)
        self._wire_amount(req.amount, req.currency)
        if not req.channel_trade_no:
            raise NotSupported("PayPal refunds need the order id (channel_trade_no)")
        order = self._get_order(req.channel_trade_no)
        if order is None:
            raise ChannelRejected("order not found", code="RESOURCE_NOT_FOUND")
        self._check_order_unit(order, req.payment_no)
        capture = paid_capture(order)
        if capture is None:
            raise ChannelRejected("order has no completed capture to refund", code="NOT_CAPTURED", raw={"order": order})
        currency = req.currency.upper()
        body = {
            "amount": {"currency_code": currency, "value": self._wire_amount(req.amount, currency)},
            "invoice_id": req.refund_no,
            "custom_id": req.payment_no,
        }
        if req.reason:
            body["note_to_payer"] = req.reason[:255]
        path = f"/v2/payments/captures/{quote(str(capture['id']), safe='')}/refund"
        reply = self._call("POST", path, json_body=body, request_id=req.refund_no)
        if reply.status not in (200, 201):
            raise reply.rejected("refund")
        state = refund_state(reply.data, req.refund_no, capture_id=str(capture["id"]))
        if state.amount is not None and state.amount != req.amount:
            raise ChannelUnavailable("refund reply amount differs from the request", raw=reply.data)
        return state

    def refund_no_problem(self, *, refund_no: str, payment_no: str) -> str | None:
        """The refund number is sent as ``invoice_id`` (at most 127 characters) and ``PayPal-Request-Id``."""
        problem = super().refund_no_problem(refund_no=refund_no, payment_no=payment_no)
        if problem is None and len(refund_no) > 127:
            problem = "PayPal takes at most 127 characters (invoice_id)"
        return problem

    @staticmethod
    def _wire_amount(amount: int, currency: str) -> str:
        """Minor units as PayPal's decimal string; a currency PayPal cannot price is refused."""
        check_amount(amount)
        if not isinstance(currency, str) or currency.upper() not in CURRENCIES:
            raise ChannelRejected(f"PayPal cannot price {currency!r}", code="CURRENCY_NOT_SUPPORTED")
        return format_amount(amount, currency)

    def query_refund(
        self,
        *,
        refund_no: str,
        payment_no: str,
        channel_trade_no: str | None = None,
        channel_refund_no: str | None = None,
    ) -> RefundState:
        """Read the refund by its PayPal id, or find it by ``invoice_id`` among the order's refunds.

        Reading the order rather than re-posting the refund keeps a query from ever creating a
        refund when the original request never reached PayPal.
        """
        if channel_refund_no:
            reply = self._call("GET", f"/v2/payments/refunds/{quote(channel_refund_no, safe='')}")
            if reply.status == 404:
                return RefundState(
                    refund_no=refund_no, status=RefundStatus.NOT_FOUND, channel_refund_no=channel_refund_no, amount=None
                )
            if reply.status != 200:
                raise reply.rejected("refund read")
            return refund_state(reply.data, refund_no)
        if not channel_trade_no:
            raise NotSupported("PayPal finds a refund by refund id or through its order id")
        order = self._get_order(channel_trade_no)
        if order is None:
            return RefundState(refund_no=refund_no, status=RefundStatus.NOT_FOUND, channel_refund_no=None, amount=None)
        self._check_order_unit(order, payment_no)
        for unit in order.get("purchase_units") or []:
            for refund in (unit.get("payments") or {}).get("refunds") or []:
                if isinstance(refund, Mapping) and refund.get("invoice_id") == refund_no:
                    return refund_state(dict(refund), refund_no)
        return RefundState(refund_no=refund_no, status=RefundStatus.NOT_FOUND, channel_refund_no=None, amount=None)

    # --- notifications --------------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify the transmission signature (local or API), then map the event."""
        h = normalize_headers(headers)
        transmission_id = h.get("paypal-transmission-id", "")
        transmission_time = h.get("paypal-transmission-time", "")
        signature = h.get("paypal-transmission-sig", "")
        cert_url = h.get("paypal-cert-url", "")
        auth_algo = h.get("paypal-auth-algo", "")
        if not (transmission_id and transmission_time and signature and cert_url and auth_algo):
            raise SignatureInvalid("PayPal transmission headers missing")
        webhook_id = self.config.ids.get("webhook_id", "")
        if not webhook_id:
            raise ChannelError("account has no webhook_id", code="CONFIG")
        if self._verification == "local":
            if auth_algo != "SHA256withRSA":
                raise SignatureInvalid(f"unsupported PAYPAL-AUTH-ALGO {auth_algo!r}")
            cert = self._signing_certificate(cert_url)
            _webhook.verify_transmission(
                cert, _webhook.signing_string(transmission_id, transmission_time, webhook_id, body), signature
            )
        else:
            self._verify_by_api(
                body,
                webhook_id=webhook_id,
                transmission_id=transmission_id,
                transmission_time=transmission_time,
                signature=signature,
                cert_url=cert_url,
                auth_algo=auth_algo,
            )
        # verified: now the body may be read
        try:
            event = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            raise SignatureInvalid("verified body is not JSON") from None
        if not isinstance(event, dict) or not event.get("id") or not event.get("event_type"):
            raise SignatureInvalid("verified body is not a webhook event")
        return _webhook.event_notification(event)

    # ack(): the base answer (200 with an empty body, 400 on failure) is what PayPal expects.

    # --- bills ----------------------------------------------------------------------------
    def fetch_bill(self, bill_date: date) -> Bill:
        """Transaction Search for one UTC day, page by page as the caller reads the rows.

        The first page is asked for at once: "data for the given start date is not available"
        (the day has not ended) and a ``last_refreshed_datetime`` before the day's end (PayPal's
        up to 3 hours of lag) are ``BillNotReady``. Every page must agree on ``total_items`` and
        the pages together must hold that many items, else ``BillInconsistent``."""
        start = datetime(bill_date.year, bill_date.month, bill_date.day, tzinfo=UTC)
        end = start + timedelta(days=1) - timedelta(seconds=1)

        def params(page: int) -> dict[str, str]:
            return {
                "start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "end_date": end.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "fields": "transaction_info",
                "page_size": str(_BILL_PAGE_SIZE),
                "page": str(page),
            }

        first, first_raw = self._bill_page(params(1))
        refreshed = parse_time(first.data.get("last_refreshed_datetime"))
        if refreshed is not None and refreshed <= end:
            raise BillNotReady(f"PayPal data refreshed up to {refreshed.isoformat()} only", code="BILL_NOT_READY")

        def infos(bill: Bill) -> Iterator[Mapping[str, Any]]:
            digest, size = hashlib.sha256(), 0
            reply, raw, page, seen = first, first_raw, 1, 0
            total_items = _int_field(first.data, "total_items")
            while True:
                digest.update(raw)
                size += len(raw)
                details = reply.data.get("transaction_details")
                if not isinstance(details, list):
                    raise ChannelUnavailable("transaction search reply has no transaction_details")
                if _int_field(reply.data, "total_items") != total_items:
                    raise ChannelUnavailable("transaction search total_items changed between pages")
                seen += len(details)
                for d in details:
                    if isinstance(d, Mapping) and isinstance(d.get("transaction_info"), Mapping):
                        yield d["transaction_info"]
                total_pages = _int_field(reply.data, "total_pages") or 1
                if page >= total_pages:
                    break
                page += 1
                if page > _BILL_MAX_PAGES:
                    raise ChannelUnavailable("Transaction Search returned too many pages")
                reply, raw = self._bill_page(params(page))
            if total_items is not None and seen != total_items:
                raise BillInconsistent(
                    f"transaction search announced {total_items} items but its pages held {seen}", code="BILL_SUMMARY"
                )
            bill.digest, bill.size = digest.hexdigest(), size
            bill.summary = BillSummary(raw={"total_items": str(total_items)})

        return Bill(
            channel=self.code, bill_date=bill_date, bill_type="transactions", rows=lambda bill: bill_rows(infos(bill))
        )

    def _bill_page(self, params: Mapping[str, str]) -> tuple[_Reply, bytes]:
        """One Transaction Search page and its raw bytes (for the bill's digest)."""
        headers = {"Accept": "application/json"}
        for attempt in (1, 2):
            token = self._token()
            headers["Authorization"] = f"Bearer {token}"
            resp = self._send("GET", f"{self._base}/v1/reporting/transactions", headers=headers, params=params)
            if resp.status_code == 401 and attempt == 1:
                self._drop_token(token)
                continue
            reply = self._reply(resp)
            if reply.status == 200:
                return reply, resp.content
            message = str(reply.data.get("message") or "")
            if reply.status == 400 and "not available" in message:
                raise BillNotReady(f"PayPal: {message}", code="BILL_NOT_READY", raw=reply.data)
            raise reply.rejected("transaction search")
        raise AssertionError("unreachable")

    # --- private: HTTP ----------------------------------------------------------------------
    def _call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        raw_body: bytes | None = None,
        request_id: str | None = None,
        params: Mapping[str, str] | None = None,
    ) -> _Reply:
        """One authenticated call. 401 -> refresh the token once and retry once.

        Returns 2xx and 4xx replies for the caller to interpret; a timeout, 5xx, 429 or
        unreadable body raises ``ChannelUnavailable``.
        """
        if json_body is not None:
            raw_body = json.dumps(json_body, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        headers = {"Content-Type": "application/json", "Accept": "application/json", "Prefer": "return=representation"}
        if request_id:
            headers["PayPal-Request-Id"] = request_id
        for attempt in (1, 2):
            token = self._token()
            headers["Authorization"] = f"Bearer {token}"
            resp = self._send(method, f"{self._base}{path}", headers=headers, data=raw_body, params=params)
            if resp.status_code == 401 and attempt == 1:
                self._drop_token(token)
                continue
            return self._reply(resp)
        raise AssertionError("unreachable")

    def _send(self, method: str, url: str, **kwargs: Any) -> requests.Response:
        try:
            return self.http.request(method, url, timeout=self.timeout, allow_redirects=False, **kwargs)
        except requests.RequestException as exc:
            raise ChannelUnavailable(
                f"PayPal {method} {url.removeprefix(self._base)} failed: {type(exc).__name__}"
            ) from None

    @staticmethod
    def _reply(resp: requests.Response) -> _Reply:
        if resp.status_code >= 500 or resp.status_code == 429:
            raise ChannelUnavailable(f"PayPal answered HTTP {resp.status_code}", code=f"HTTP_{resp.status_code}")
        if 300 <= resp.status_code < 400:
            raise ChannelUnavailable(f"PayPal answered a redirect (HTTP {resp.status_code})")
        if resp.status_code in (204,) or not resp.content:
            if 200 <= resp.status_code < 300:
                return _Reply(resp.status_code, {})
            return _Reply(resp.status_code, {"name": f"HTTP_{resp.status_code}"})
        try:
            data = resp.json()
        except ValueError:
            raise ChannelUnavailable(f"PayPal answered HTTP {resp.status_code} with a non-JSON body") from None
        if not isinstance(data, dict):
            raise ChannelUnavailable("PayPal reply is not a JSON object")
        return _Reply(resp.status_code, data)

    def _token_slot(self) -> _TokenSlot:
        """One token per (environment, client id) and process; a new secret starts a new slot."""
        client_id = self.config.ids.get("client_id", "")
        secret_fp = fingerprint(self.config.credentials.get("client_secret", ""))
        return _TOKENS.get(("token", self._base, client_id), secret_fp, _TokenSlot)

    def _token(self) -> str:
        """A cached bearer token, fetched when missing or within 5 minutes of expiry."""
        slot = self._token_slot()
        with slot.lock:
            cached = slot.token
            if cached is not None and cached.expires_at - time.monotonic() > _TOKEN_MARGIN:
                return cached.value
            slot.token = self._fetch_token()
            return slot.token.value

    def _drop_token(self, value: str) -> None:
        """Forget a token the API refused, unless another thread has already replaced it."""
        slot = self._token_slot()
        with slot.lock:
            if slot.token is not None and slot.token.value == value:
                slot.token = None

    def _fetch_token(self) -> _Token:
        client_id = self.config.ids.get("client_id", "")
        secret = self.config.credentials.get("client_secret", "")
        if not client_id or not secret:
            raise ChannelError("account has no client_id / client_secret", code="CONFIG")
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode("ascii")
        started = time.monotonic()
        resp = self._send(
            "POST",
            f"{self._base}/v1/oauth2/token",
            headers={
                "Authorization": f"Basic {basic}",
                "Accept": "application/json",
                "Content-Type": "application/x-www-form-urlencoded",
            },
            data=b"grant_type=client_credentials",
        )
        reply = self._reply(resp)
        if reply.status != 200:
            code = str(reply.data.get("error") or reply.data.get("name") or f"HTTP_{reply.status}")
            raise ChannelRejected(f"PayPal token request refused: {code}", code=code)
        value, expires_in = reply.data.get("access_token"), reply.data.get("expires_in")
        if (
            not isinstance(value, str)
            or not value
            or isinstance(expires_in, bool)
            or not isinstance(expires_in, int | float)
        ):
            raise ChannelUnavailable("PayPal token reply is unreadable")
        return _Token(value=value, expires_at=started + float(expires_in))

    # --- private: orders ------------------------------------------------------------------
    def _get_order(self, order_id: str) -> dict[str, Any] | None:
        reply = self._call("GET", f"/v2/checkout/orders/{quote(order_id, safe='')}")
        if reply.status == 404:
            return None
        if reply.status != 200:
            raise reply.rejected("order read")
        if reply.data.get("id") != order_id:
            raise ChannelUnavailable("order read returned another order", raw=reply.data)
        return reply.data

    def _capture(self, order_id: str, payment_no: str) -> tuple[dict[str, Any], str | None]:
        """Capture an approved order. Returns (order, None) or (read order, issue) for a 422 answer."""
        reply = self._call(
            "POST",
            f"/v2/checkout/orders/{quote(order_id, safe='')}/capture",
            json_body={},
            request_id=f"{payment_no}:capture",
        )
        if reply.status in (200, 201):
            return reply.data, None
        if reply.status == 422:
            issue = reply.issue
            if issue in ("ORDER_ALREADY_CAPTURED", "ORDER_ALREADY_COMPLETED"):
                order = self._get_order(order_id)
                if order is None:
                    raise ChannelUnavailable("captured order vanished")
                return order, None
            if issue in _CAPTURE_ISSUE:
                logger.info("paypal capture of %s not done: %s", order_id, issue)
                return reply.data, issue
        raise reply.rejected("capture")

    @staticmethod
    def _link(obj: Mapping[str, Any], rel: str) -> str | None:
        for link in obj.get("links") or []:
            if isinstance(link, Mapping) and link.get("rel") == rel and link.get("href"):
                return str(link["href"])
        return None

    @staticmethod
    def _unit(order: Mapping[str, Any]) -> Mapping[str, Any]:
        units = order.get("purchase_units")
        if not isinstance(units, list) or not units or not isinstance(units[0], Mapping):
            raise ChannelUnavailable("order has no purchase unit", raw=dict(order))
        return units[0]

    def _check_order_unit(
        self, order: Mapping[str, Any], payment_no: str | None, amount: int | None = None, currency: str | None = None
    ) -> str:
        """Check the order belongs to ``payment_no`` (and has the amount sent); return its number."""
        units = order.get("purchase_units")
        if not units and amount is not None:
            return payment_no or ""  # minimal representation: nothing to compare
        unit = self._unit(order)
        found = str(unit.get("invoice_id") or unit.get("custom_id") or "")
        if payment_no and found and found != payment_no:
            raise ChannelRejected(
                f"order {order.get('id')} belongs to {found}, not {payment_no}", code="ORDER_MISMATCH"
            )
        if amount is not None and "amount" in unit:
            got = money_of(unit["amount"])
            if got != (amount, currency):
                raise ChannelUnavailable("order amount in the reply differs from the request", raw=dict(order))
        return payment_no or found

    # --- private: webhooks ----------------------------------------------------------------
    def _signing_certificate(self, cert_url: str) -> x509.Certificate:
        prefixes = self.config.options.get("cert_url_allowed_prefixes") or ()
        if not _webhook.cert_url_allowed(cert_url, list(prefixes)):
            raise SignatureInvalid(f"PAYPAL-CERT-URL {cert_url!r} is not an allowed certificate location")
        bundle = _webhook.CERTIFICATES.get(cert_url, "", lambda: self._download_cert(cert_url))
        pems = list(self.config.options.get("trusted_ca_certificates") or ())
        trusted = _TRUSTED.get(
            ("trusted", self.config.account_id), fingerprint(pems), lambda: [self._load_ca(pem) for pem in pems]
        )
        return _webhook.check_signing_certificate(bundle, trusted)

    def _download_cert(self, cert_url: str) -> list[x509.Certificate]:
        try:
            with self.http.get(cert_url, timeout=self.timeout, allow_redirects=False, stream=True) as resp:
                if resp.status_code != 200:
                    raise ChannelUnavailable(f"certificate fetch answered HTTP {resp.status_code}")
                data = b""
                for chunk in resp.iter_content(8192):
                    data += chunk
                    if len(data) > _webhook.CERT_MAX_BYTES:
                        break
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"certificate fetch failed: {type(exc).__name__}") from None
        if len(data) > _webhook.CERT_MAX_BYTES:
            raise SignatureInvalid("certificate at PAYPAL-CERT-URL is too large")
        return _webhook.load_pem_bundle(data)

    @staticmethod
    def _load_ca(pem: str) -> x509.Certificate:
        try:
            return x509.load_pem_x509_certificate(pem.encode("ascii"))
        except ValueError:
            raise ChannelError("trusted_ca_certificates holds an unreadable PEM", code="CONFIG") from None

    def _verify_by_api(
        self,
        body: bytes,
        *,
        webhook_id: str,
        transmission_id: str,
        transmission_time: str,
        signature: str,
        cert_url: str,
        auth_algo: str,
    ) -> None:
        """Method A: PayPal checks the signature; the received event bytes are embedded unchanged."""
        try:
            json.loads(body)  # only to refuse embedding something that is not JSON
        except (ValueError, UnicodeDecodeError):
            raise SignatureInvalid("webhook body is not JSON") from None
        head = {
            "auth_algo": auth_algo,
            "cert_url": cert_url,
            "transmission_id": transmission_id,
            "transmission_sig": signature,
            "transmission_time": transmission_time,
            "webhook_id": webhook_id,
        }
        prefix = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode("utf-8")[:-1]
        payload = prefix + b',"webhook_event":' + body + b"}"
        reply = self._call("POST", "/v1/notifications/verify-webhook-signature", raw_body=payload)
        if reply.status != 200:
            raise ChannelUnavailable(f"verify-webhook-signature answered HTTP {reply.status}: {reply.issue}")
        result = reply.data.get("verification_status")
        if result == "SUCCESS":
            return
        if result == "FAILURE":
            raise SignatureInvalid("PayPal reports the webhook signature as invalid")
        raise ChannelUnavailable(f"unreadable verification_status {result!r}")
