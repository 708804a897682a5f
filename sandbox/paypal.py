"""PayPal REST as the platform plays it: OAuth2 tokens, Orders v2, captures, refunds, webhooks,
webhook signature verification and Transaction Search (docs/channel-protocols.md §4).

An independent implementation: it does not import ``channels.paypal``. Paths are relative to
the ``/paypal`` prefix, exactly as PayPal's (``/v1/oauth2/token``, ``/v2/checkout/orders``...).

Per account the simulator generates a client id and secret, a webhook id, a private CA and a
leaf signing certificate (CN ``messageverificationcerts.sandbox.paypal.com``) served at
``{gw}/paypal/certs/<name>.pem``; webhooks are signed with the leaf key per §4.5 method B.

Payer actions (``POST /_sandbox/paypal/trades/{payment_no}/{action}``):

- ``pay``: the buyer approves the order (``CHECKOUT.ORDER.APPROVED`` is sent); the merchant's
  capture then completes. ``{"amount": n}`` makes the capture take ``n`` minor units instead
  (a tampered capture), ``{"pending": true}`` leaves the capture ``PENDING``.
- ``fail``: the buyer approves with an instrument that the capture will ``DECLINE``.
- ``cancel``: the order is voided (stands in for "expired": PayPal has no merchant close).
- ``complete_pending``: a ``PENDING`` capture completes (``PAYMENT.CAPTURE.COMPLETED``).
- ``reverse``: a completed capture is reversed by PayPal (``PAYMENT.CAPTURE.REVERSED``).
All take ``{"after_seconds": s}`` to happen later (sandbox seconds).

Account creation options (``POST /_sandbox/accounts {"channel": "paypal", ...}``):
``webhook_verification`` (``local``/``api``, default ``local``), ``token_expires_in`` (seconds,
default 32400), ``refund_delay_seconds`` (sandbox seconds until a refund completes, default 5;
0 completes it synchronously), ``report_page_size`` (caps Transaction Search's page size, to
exercise paging).

API faults (core): ``http_500``/``http_503``/``timeout``/``disconnect`` apply as the core does;
``tamper_amount`` rewrites the amounts in order replies; ``bad_signature`` makes
verify-webhook-signature answer ``FAILURE``, and, matched against ``webhook:<event type>``,
signs that webhook with a wrong signature.
"""

from __future__ import annotations

import base64
import html
import json
import re
import secrets
import string
import threading
import time
import uuid
import zlib
from datetime import UTC, datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from sandbox.core import ChannelSimulator, SandboxError, SandboxRequest, SandboxResponse

# ISO 4217 minor-unit exponents the simulator accepts.
_EXP: dict[str, int] = {
    **dict.fromkeys(("JPY", "KRW", "HUF", "TWD", "CLP", "VND"), 0),
    **dict.fromkeys(("BHD", "KWD", "JOD", "OMR", "TND"), 3),
    **dict.fromkeys(
        (
            "USD",
            "EUR",
            "GBP",
            "CNY",
            "HKD",
            "SGD",
            "AUD",
            "CAD",
            "NZD",
            "CHF",
            "SEK",
            "NOK",
            "DKK",
            "PLN",
            "CZK",
            "ILS",
            "MXN",
            "BRL",
            "MYR",
            "PHP",
            "THB",
            "INR",
            "AED",
            "SAR",
            "ZAR",
        ),
        2,
    ),
}

# Webhook retries: 25 sends over 3 days (§4.5, ⚠ single source); sandbox seconds between sends.
WEBHOOK_SCHEDULE: list[float] = [60, 120, 300, 600, 1200, 1800] + [3600] * 6 + [7200] * 6 + [31720] * 6

SIGNING_CN = "messageverificationcerts.sandbox.paypal.com"
IDEMPOTENCY_SECONDS = {"create": 6 * 3600, "capture": 6 * 3600, "refund": 45 * 86400}
DEFAULT_TOKEN_SECONDS = 32400
DEFAULT_REFUND_DELAY = 5.0
MAX_REPORT_DAYS = 31

_ID_ALPHABET = string.ascii_uppercase + string.digits


def _pp_id(n: int = 17) -> str:
    return "".join(secrets.choice(_ID_ALPHABET) for _ in range(n))


def _ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _report_ts(dt: datetime) -> str:
    return dt.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S+0000")


def _fmt(minor: int, currency: str) -> str:
    exp = _EXP[currency]
    return f"{Decimal(minor).scaleb(-exp):.{exp}f}"


def _fmt_signed(minor: int, currency: str) -> str:
    return ("-" if minor < 0 else "") + _fmt(abs(minor), currency)


def _parse_value(value: Any, currency: str) -> int | None:
    """A request amount string -> minor units; None when malformed for the currency."""
    exp = _EXP.get(currency)
    if exp is None or not isinstance(value, str):
        return None
    pattern = r"\d{1,10}" if exp == 0 else rf"\d{{1,10}}(\.\d{{1,{exp}}})?"
    if not re.fullmatch(pattern, value):
        return None
    try:
        return int(Decimal(value).scaleb(exp))
    except InvalidOperation:
        return None


class _ApiError(Exception):
    def __init__(self, status: int, name: str, issue: str | None = None, message: str = "") -> None:
        super().__init__(message or name)
        self.status, self.name, self.issue, self.message = status, name, issue, message or name

    def response(self) -> SandboxResponse:
        body: dict[str, Any] = {"name": self.name, "message": self.message, "debug_id": uuid.uuid4().hex[:13]}
        if self.issue:
            body["details"] = [{"issue": self.issue, "description": self.message}]
        return SandboxResponse.json(self.status, body)


def _unprocessable(issue: str, message: str) -> _ApiError:
    return _ApiError(422, "UNPROCESSABLE_ENTITY", issue, message)


def _not_found(what: str) -> _ApiError:
    return _ApiError(
        404, "RESOURCE_NOT_FOUND", "INVALID_RESOURCE_ID", f"Specified resource ID ({what}) does not exist."
    )


def _bad_request(issue: str, message: str) -> _ApiError:
    return _ApiError(400, "INVALID_REQUEST", issue, message)


class PaypalSimulator(ChannelSimulator):
    channel = "paypal"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self._tokens: dict[str, tuple[str, float]] = {}  # token -> (client_id, expires monotonic)
        self._idem: dict[tuple[str, str, str], tuple[float, int, dict[str, Any]]] = {}
        self._orders: dict[str, str] = {}  # order id -> payment_no
        self._captures: dict[str, str] = {}  # capture id -> payment_no
        self._certs: dict[str, bytes] = {}  # cert name -> PEM
        self._keys: dict[str, Any] = {}  # client id -> leaf private key
        self._mutex = threading.RLock()

    # --- plumbing ------------------------------------------------------------------------
    def reset(self) -> None:
        with self.sandbox.lock:
            self._tokens.clear()
            self._idem.clear()
            self._orders.clear()
            self._captures.clear()
            self._certs.clear()
            self._keys.clear()

    def revoke_tokens(self, client_id: str | None = None) -> int:
        """Invalidate issued tokens (all, or one client's): the next API call answers 401."""
        with self.sandbox.lock:
            gone = [t for t, (cid, _) in self._tokens.items() if client_id is None or cid == client_id]
            for t in gone:
                del self._tokens[t]
            return len(gone)

    # --- accounts ------------------------------------------------------------------------
    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        base = f"{self.sandbox.current_base_url()}/paypal"
        client_id = "A" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "y")
        secret = "E" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "y")
        webhook_id = _pp_id(17)
        now = self.sandbox.now()
        ca_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        leaf_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        ca_cn = f"paycore sandbox PayPal CA {webhook_id}"
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paycore sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, ca_cn),
            ]
        )
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        leaf_cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PayPal, Inc."),
                        x509.NameAttribute(NameOID.COMMON_NAME, SIGNING_CN),
                    ]
                )
            )
            .issuer_name(ca_name)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        cert_name = f"CERT-{webhook_id.lower()}"
        leaf_pem = leaf_cert.public_bytes(serialization.Encoding.PEM)
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        verification = options.get("webhook_verification", "local")
        account = {
            "client_id": client_id,
            "client_secret": secret,
            "webhook_id": webhook_id,
            "notify_url": notify_url,
            "base_url": base,
            "cert_url": f"{base}/certs/{cert_name}.pem",
            "cert_name": cert_name,
            "token_expires_in": int(options.get("token_expires_in", DEFAULT_TOKEN_SECONDS)),
            "refund_delay_seconds": float(options.get("refund_delay_seconds", DEFAULT_REFUND_DELAY)),
            "report_page_size": options.get("report_page_size"),
            "token_requests": 0,
            "created_at": now,
        }
        with self.sandbox.lock:
            self._accounts[client_id] = account
            self._certs[cert_name] = leaf_pem
            self._keys[client_id] = leaf_key
        return {
            "channel": "paypal",
            "base_url": base,
            "ids": {"client_id": client_id, "webhook_id": webhook_id},
            "credentials": {"client_secret": secret},
            "options": {
                "webhook_verification": verification,
                "cert_url_allowed_prefixes": [f"{base}/certs/"],
                "trusted_ca_certificates": [ca_pem],
            },
        }

    # --- dispatch ------------------------------------------------------------------------
    def handle(self, req: SandboxRequest) -> SandboxResponse:
        try:
            return self._route(req)
        except _ApiError as exc:
            return exc.response()

    def _route(self, req: SandboxRequest) -> SandboxResponse:
        method, parts = req.method, [p for p in req.path.split("/") if p]
        match (method, parts):
            case ("GET", ["certs", name]) if name.endswith(".pem"):
                pem = self._certs.get(name.removesuffix(".pem"))
                if pem is None:
                    raise _not_found(name)
                return SandboxResponse.text(200, pem, "application/x-pem-file")
            case ("POST", ["v1", "oauth2", "token"]):
                return self._token(req)
            case ("GET", ["checkoutnow"]):
                return self._checkout_page(req)
        account = self._authenticate(req)
        match (method, parts):
            case ("POST", ["v2", "checkout", "orders"]):
                return self._order_create(req, account)
            case ("GET", ["v2", "checkout", "orders", order_id]):
                return self._order_reply(req, self._order(account, order_id))
            case ("POST", ["v2", "checkout", "orders", order_id, "capture"]):
                return self._order_capture(req, account, order_id)
            case ("GET", ["v2", "payments", "captures", capture_id]):
                trade, capture = self._capture(account, capture_id)
                return SandboxResponse.json(200, self._capture_view(trade, capture))
            case ("POST", ["v2", "payments", "captures", capture_id, "refund"]):
                return self._refund_create(req, account, capture_id)
            case ("GET", ["v2", "payments", "refunds", refund_id]):
                refund = self._refunds.get(refund_id)
                if refund is None or refund["client_id"] != account["client_id"]:
                    raise _not_found(refund_id)
                return SandboxResponse.json(200, self._refund_view(refund))
            case ("POST", ["v1", "notifications", "verify-webhook-signature"]):
                return self._verify_webhook(req, account)
            case ("GET", ["v1", "reporting", "transactions"]):
                return self._transactions(req, account)
        raise _ApiError(404, "NOT_FOUND", None, f"no PayPal endpoint {method} {req.path}")

    def _checkout_page(self, req: SandboxRequest) -> SandboxResponse:
        """The approve link's target: tells a person how to act as the buyer."""
        token = req.params.get("token", "")
        with self.sandbox.lock:
            payment_no = self._orders.get(token)
        if payment_no is None:
            raise _not_found(token)
        text = (
            f"<!doctype html><title>PayPal sandbox checkout</title><p>Order {html.escape(token)} for "
            f"{html.escape(payment_no)}. Approve with <code>POST /_sandbox/paypal/trades/"
            f"{html.escape(payment_no)}/pay</code> (or <code>fail</code>, <code>cancel</code>).</p>"
        )
        return SandboxResponse.text(200, text, "text/html; charset=utf-8")

    # --- auth ----------------------------------------------------------------------------
    def _token(self, req: SandboxRequest) -> SandboxResponse:
        auth = req.headers.get("Authorization", "")
        invalid = SandboxResponse.json(
            401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
        )
        if not auth.startswith("Basic "):
            return invalid
        try:
            client_id, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return invalid
        with self.sandbox.lock:
            account = self._accounts.get(client_id)
            if account is None or not secrets.compare_digest(secret, account["client_secret"]):
                return invalid
            if req.body.strip() != b"grant_type=client_credentials":
                return SandboxResponse.json(
                    400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}
                )
            token = "A21AA" + secrets.token_urlsafe(48)
            expires_in = account["token_expires_in"]
            self._tokens[token] = (client_id, time.monotonic() + expires_in)
            account["token_requests"] += 1
        return SandboxResponse.json(
            200,
            {
                "scope": "https://uri.paypal.com/services/payments/payment https://uri.paypal.com/services/reporting/search/read",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": expires_in,
                "nonce": f"{_ts(self.sandbox.now())}{secrets.token_hex(8)}",
            },
        )

    def _authenticate(self, req: SandboxRequest) -> dict[str, Any]:
        auth = req.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.sandbox.lock:
            entry = self._tokens.get(token)
            if entry is not None and entry[1] <= time.monotonic():
                del self._tokens[token]
                entry = None
            account = self._accounts.get(entry[0]) if entry else None
        if account is None:
            raise _ApiError(
                401,
                "AUTHENTICATION_FAILURE",
                None,
                "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
            )
        return account

    # --- idempotency ---------------------------------------------------------------------
    def _replay(self, account: dict[str, Any], op: str, req: SandboxRequest) -> SandboxResponse | None:
        request_id = req.headers.get("PayPal-Request-Id")
        if not request_id:
            return None
        with self.sandbox.lock:
            stored = self._idem.get((account["client_id"], op, request_id))
            if stored is None or stored[0] < time.monotonic():
                return None
            return SandboxResponse.json(stored[1], stored[2])

    def _remember(
        self, account: dict[str, Any], op: str, req: SandboxRequest, status: int, body: dict[str, Any]
    ) -> None:
        request_id = req.headers.get("PayPal-Request-Id")
        if request_id:
            expires = time.monotonic() + self.sandbox.scaled(IDEMPOTENCY_SECONDS[op])
            self._idem[(account["client_id"], op, request_id)] = (expires, status, body)

    # --- orders --------------------------------------------------------------------------
    def _order_create(self, req: SandboxRequest, account: dict[str, Any]) -> SandboxResponse:
        replay = self._replay(account, "create", req)
        if replay is not None:
            return self._tamper(req, replay)
        try:
            body = req.json()
        except ValueError:
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from None
        if not isinstance(body, dict) or body.get("intent") != "CAPTURE":
            raise _bad_request("INVALID_PARAMETER_VALUE", "intent must be CAPTURE in this sandbox.")
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            raise _bad_request("INVALID_ARRAY_MAX_ITEMS", "Exactly one purchase unit is supported.")
        unit = units[0]
        amount = unit.get("amount") or {}
        currency = str(amount.get("currency_code", ""))
        if currency not in _EXP:
            raise _unprocessable("CURRENCY_NOT_SUPPORTED", f"Currency {currency!r} is not supported.")
        minor = _parse_value(amount.get("value"), currency)
        if minor is None or minor <= 0:
            raise _bad_request("INVALID_PARAMETER_VALUE", "amount.value is malformed for the currency.")
        payment_no = str(unit.get("invoice_id") or unit.get("custom_id") or "")
        if not payment_no:
            raise _bad_request("MISSING_REQUIRED_PARAMETER", "The sandbox needs invoice_id or custom_id.")
        context = ((body.get("payment_source") or {}).get("paypal") or {}).get("experience_context")
        now = self.sandbox.now()
        with self.sandbox.lock:
            existing = self._trades.get(payment_no)
            if existing is not None and existing["client_id"] == account["client_id"]:
                raise _unprocessable("DUPLICATE_INVOICE_ID", "Duplicate Invoice ID detected.")
            if existing is not None:
                raise _unprocessable("DUPLICATE_INVOICE_ID", "invoice_id is in use in this sandbox.")
            order_id = _pp_id(17)
            trade = {
                "order_id": order_id,
                "payment_no": payment_no,
                "client_id": account["client_id"],
                "status": "PAYER_ACTION_REQUIRED" if context is not None else "CREATED",
                "intent": "CAPTURE",
                "amount": minor,
                "currency": currency,
                "custom_id": unit.get("custom_id"),
                "invoice_id": unit.get("invoice_id"),
                "description": unit.get("description"),
                "reference_id": unit.get("reference_id", "default"),
                "experience_context": context,
                "decline": False,
                "pending": False,
                "capture_amount": None,
                "captures": [],
                "refund_ids": [],
                "create_time": now,
                "update_time": now,
            }
            self._trades[payment_no] = trade
            self._orders[order_id] = payment_no
            self.sandbox.record(trade, "created", amount=minor, currency=currency)
            view = self._order_view(trade)
            if (req.headers.get("Prefer") or "").replace(" ", "") != "return=representation":
                view = {"id": order_id, "status": trade["status"], "links": view["links"]}
            self._remember(account, "create", req, 201, view)
        return self._tamper(req, SandboxResponse.json(201, view))

    def _order(self, account: dict[str, Any], order_id: str) -> dict[str, Any]:
        with self.sandbox.lock:
            trade = self._trades.get(self._orders.get(order_id, ""))
        if trade is None or trade["client_id"] != account["client_id"]:
            raise _not_found(order_id)
        return trade

    def _order_reply(self, req: SandboxRequest, trade: dict[str, Any], status: int = 200) -> SandboxResponse:
        with self.sandbox.lock:
            view = self._order_view(trade)
        return self._tamper(req, SandboxResponse.json(status, view))

    def _order_capture(self, req: SandboxRequest, account: dict[str, Any], order_id: str) -> SandboxResponse:
        replay = self._replay(account, "capture", req)
        if replay is not None:
            return self._tamper(req, replay)
        trade = self._order(account, order_id)
        with self.sandbox.lock:
            status = trade["status"]
            if status in ("CREATED", "PAYER_ACTION_REQUIRED", "SAVED"):
                raise _unprocessable("ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment.")
            if status == "VOIDED":
                raise _unprocessable("ORDER_IS_VOIDED", "The order has been voided.")
            if status == "COMPLETED":
                raise _unprocessable("ORDER_ALREADY_CAPTURED", "Order already captured.")
            now = self.sandbox.now()
            amount = trade["capture_amount"] if trade["capture_amount"] is not None else trade["amount"]
            capture_status = "DECLINED" if trade["decline"] else "PENDING" if trade["pending"] else "COMPLETED"
            fee = (amount * 29) // 1000 if capture_status == "COMPLETED" else 0
            capture = {
                "id": _pp_id(17),
                "status": capture_status,
                "amount": amount,
                "fee": fee,
                "create_time": now,
                "update_time": now,
                "refunded": 0,
                "reversed": False,
            }
            trade["captures"].append(capture)
            trade["status"] = "COMPLETED"
            trade["update_time"] = now
            self._captures[capture["id"]] = trade["payment_no"]
            self.sandbox.record(
                trade, "captured", capture_id=capture["id"], capture_status=capture_status, amount=amount
            )
            view = self._order_view(trade)
            self._remember(account, "capture", req, 201, view)
        event = {
            "COMPLETED": "PAYMENT.CAPTURE.COMPLETED",
            "PENDING": "PAYMENT.CAPTURE.PENDING",
            "DECLINED": "PAYMENT.CAPTURE.DECLINED",
        }[capture_status]
        self._webhook(account, event, "capture", lambda: self._capture_view(trade, capture))
        return self._tamper(req, SandboxResponse.json(201, view))

    def _tamper(self, req: SandboxRequest, resp: SandboxResponse) -> SandboxResponse:
        """``tamper_amount``: rewrite every amount value in an order reply."""
        fault = req.fault
        if fault is None or fault.kind != "tamper_amount" or resp.status >= 300:
            return resp
        data = json.loads(resp.body)
        for unit in data.get("purchase_units") or []:
            currency = unit.get("amount", {}).get("currency_code", "USD")
            forged = _fmt(int(fault.amount if fault.amount is not None else 1), currency)
            unit["amount"]["value"] = forged
            for capture in (unit.get("payments") or {}).get("captures") or []:
                capture["amount"]["value"] = forged
        return SandboxResponse.json(resp.status, data)

    # --- views ---------------------------------------------------------------------------
    def _link(self, trade: dict[str, Any], path: str, rel: str, method: str = "GET") -> dict[str, str]:
        base = self._accounts[trade["client_id"]]["base_url"]
        return {"href": f"{base}{path}", "rel": rel, "method": method}

    def _order_view(self, trade: dict[str, Any]) -> dict[str, Any]:
        order_id, currency = trade["order_id"], trade["currency"]
        unit: dict[str, Any] = {
            "reference_id": trade["reference_id"],
            "amount": {"currency_code": currency, "value": _fmt(trade["amount"], currency)},
            "payee": {"merchant_id": "SANDBOXMERCHANT1"},
        }
        for key in ("description", "custom_id", "invoice_id"):
            if trade.get(key) is not None:
                unit[key] = trade[key]
        if trade["captures"]:
            unit["payments"] = {"captures": [self._capture_view(trade, c) for c in trade["captures"]]}
            refunds = [self._refund_view(self._refunds[r]) for r in trade["refund_ids"] if r in self._refunds]
            if refunds:
                unit["payments"]["refunds"] = refunds
        links = [self._link(trade, f"/v2/checkout/orders/{order_id}", "self")]
        if trade["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "payer-action" if trade["status"] == "PAYER_ACTION_REQUIRED" else "approve"
            links.append(self._link(trade, f"/checkoutnow?token={order_id}", rel))
        if trade["status"] in ("CREATED", "PAYER_ACTION_REQUIRED", "APPROVED"):
            links.append(self._link(trade, f"/v2/checkout/orders/{order_id}/capture", "capture", "POST"))
        view: dict[str, Any] = {
            "id": order_id,
            "intent": "CAPTURE",
            "status": trade["status"],
            "purchase_units": [unit],
            "create_time": _ts(trade["create_time"]),
            "update_time": _ts(trade["update_time"]),
            "links": links,
        }
        if trade["status"] in ("APPROVED", "COMPLETED"):
            view["payer"] = {"payer_id": "SANDBOXPAYER01", "email_address": "buyer@example.com"}
        return view

    def _capture_view(self, trade: dict[str, Any], capture: dict[str, Any]) -> dict[str, Any]:
        currency = trade["currency"]
        status = capture["status"]
        if status == "COMPLETED" and capture["reversed"]:
            status = "REVERSED"
        elif status == "COMPLETED" and capture["refunded"] >= capture["amount"]:
            status = "REFUNDED"
        elif status == "COMPLETED" and capture["refunded"] > 0:
            status = "PARTIALLY_REFUNDED"
        view: dict[str, Any] = {
            "id": capture["id"],
            "status": status,
            "amount": {"currency_code": currency, "value": _fmt(capture["amount"], currency)},
            "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE"},
            "create_time": _ts(capture["create_time"]),
            "update_time": _ts(capture["update_time"]),
            "supplementary_data": {"related_ids": {"order_id": trade["order_id"]}},
            "links": [
                self._link(trade, f"/v2/payments/captures/{capture['id']}", "self"),
                self._link(trade, f"/v2/payments/captures/{capture['id']}/refund", "refund", "POST"),
                self._link(trade, f"/v2/checkout/orders/{trade['order_id']}", "up"),
            ],
        }
        if capture["status"] == "COMPLETED":
            net = capture["amount"] - capture["fee"]
            view["seller_receivable_breakdown"] = {
                "gross_amount": {"currency_code": currency, "value": _fmt(capture["amount"], currency)},
                "paypal_fee": {"currency_code": currency, "value": _fmt(capture["fee"], currency)},
                "net_amount": {"currency_code": currency, "value": _fmt(net, currency)},
            }
        elif capture["status"] == "PENDING":
            view["status_details"] = {"reason": "PENDING_REVIEW"}
        for key in ("custom_id", "invoice_id"):
            if trade.get(key) is not None:
                view[key] = trade[key]
        return view

    def _refund_view(self, refund: dict[str, Any]) -> dict[str, Any]:
        currency = refund["currency"]
        trade = self._trades[refund["payment_no"]]
        view: dict[str, Any] = {
            "id": refund["id"],
            "status": refund["status"],
            "amount": {"currency_code": currency, "value": _fmt(refund["amount"], currency)},
            "seller_payable_breakdown": {
                "gross_amount": {"currency_code": currency, "value": _fmt(refund["amount"], currency)},
                "paypal_fee": {"currency_code": currency, "value": _fmt(0, currency)},
                "net_amount": {"currency_code": currency, "value": _fmt(refund["amount"], currency)},
            },
            "create_time": _ts(refund["create_time"]),
            "update_time": _ts(refund["update_time"]),
            "supplementary_data": {"related_ids": {"order_id": trade["order_id"], "capture_id": refund["capture_id"]}},
            "links": [
                self._link(trade, f"/v2/payments/refunds/{refund['id']}", "self"),
                self._link(trade, f"/v2/payments/captures/{refund['capture_id']}", "up"),
            ],
        }
        if refund["status"] == "PENDING":
            view["status_details"] = {"reason": "ECHECK"}
        for key in ("invoice_id", "custom_id", "note_to_payer"):
            if refund.get(key) is not None:
                view[key] = refund[key]
        return view

    # --- refunds -------------------------------------------------------------------------
    def _capture(self, account: dict[str, Any], capture_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        with self.sandbox.lock:
            trade = self._trades.get(self._captures.get(capture_id, ""))
            if trade is not None and trade["client_id"] == account["client_id"]:
                for capture in trade["captures"]:
                    if capture["id"] == capture_id:
                        return trade, capture
        raise _not_found(capture_id)

    def _refund_create(self, req: SandboxRequest, account: dict[str, Any], capture_id: str) -> SandboxResponse:
        replay = self._replay(account, "refund", req)
        if replay is not None:
            return replay
        trade, capture = self._capture(account, capture_id)
        try:
            body = req.json() or {}
        except ValueError:
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from None
        if not isinstance(body, dict):
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not an object.")
        currency = trade["currency"]
        now = self.sandbox.now()
        with self.sandbox.lock:
            if capture["status"] != "COMPLETED" or capture["reversed"]:
                raise _unprocessable(
                    "CAPTURE_NOT_REFUNDABLE"
                    if capture["status"] != "COMPLETED"
                    else "CAPTURE_DISPUTED_PARTIAL_REFUND_NOT_ALLOWED",
                    "The capture cannot be refunded.",
                )
            committed = sum(
                self._refunds[r]["amount"]
                for r in trade["refund_ids"]
                if r in self._refunds
                and self._refunds[r]["status"] in ("PENDING", "COMPLETED")
                and self._refunds[r]["capture_id"] == capture_id
            )
            remaining = capture["amount"] - committed
            if remaining <= 0:
                raise _unprocessable("CAPTURE_FULLY_REFUNDED", "The capture has already been fully refunded.")
            if "amount" in body:
                amount = body["amount"] if isinstance(body["amount"], dict) else {}
                if amount.get("currency_code") != currency:
                    raise _unprocessable("REFUND_CURRENCY_MISMATCH", "Refund currency must match the capture.")
                minor = _parse_value(amount.get("value"), currency)
                if minor is None or minor <= 0:
                    raise _bad_request("INVALID_PARAMETER_VALUE", "amount.value is malformed for the currency.")
            else:
                minor = remaining
            if minor > remaining:
                raise _unprocessable(
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less than or equal to the capture amount "
                    "that has not yet been refunded.",
                )
            delay = account["refund_delay_seconds"]
            refund = {
                "id": _pp_id(17),
                "client_id": account["client_id"],
                "payment_no": trade["payment_no"],
                "capture_id": capture_id,
                "amount": minor,
                "currency": currency,
                "status": "PENDING" if delay > 0 else "COMPLETED",
                "invoice_id": body.get("invoice_id"),
                "custom_id": body.get("custom_id"),
                "note_to_payer": body.get("note_to_payer"),
                "create_time": now,
                "update_time": now,
            }
            self._refunds[refund["id"]] = refund
            trade["refund_ids"].append(refund["id"])
            self.sandbox.record(refund, "created", amount=minor)
            self.sandbox.record(trade, "refund_created", refund_id=refund["id"], amount=minor)
            if refund["status"] == "COMPLETED":
                capture["refunded"] += minor
            view = self._refund_view(refund)
            self._remember(account, "refund", req, 201, view)
        if delay > 0:
            self.sandbox.later(delay, lambda: self._complete_refund(refund["id"]))
        else:
            self._refund_webhook(account, refund)
        return SandboxResponse.json(201, view)

    def _complete_refund(self, refund_id: str) -> None:
        with self.sandbox.lock:
            refund = self._refunds.get(refund_id)
            if refund is None or refund["status"] != "PENDING":
                return
            trade = self._trades[refund["payment_no"]]
            capture = next(c for c in trade["captures"] if c["id"] == refund["capture_id"])
            refund["status"] = "COMPLETED"
            refund["update_time"] = self.sandbox.now()
            capture["refunded"] += refund["amount"]
            capture["update_time"] = refund["update_time"]
            self.sandbox.record(refund, "completed")
            account = self._accounts.get(refund["client_id"])
        if account is not None:
            self._refund_webhook(account, refund)

    def _refund_webhook(self, account: dict[str, Any], refund: dict[str, Any]) -> None:
        self._webhook(account, "PAYMENT.CAPTURE.REFUNDED", "refund", lambda: self._refund_view(refund))

    # --- payer actions -------------------------------------------------------------------
    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        with self.sandbox.lock:
            trade = self._trades.get(payment_no)
        if trade is None:
            raise SandboxError(404, "NO_SUCH_TRADE", f"no PayPal order for {payment_no!r}")
        actions = {
            "pay": self._approve,
            "fail": self._approve,
            "cancel": self._void,
            "complete_pending": self._complete_pending,
            "reverse": self._reverse,
        }
        if action not in actions:
            raise SandboxError(400, "BAD_ACTION", f"PayPal payer actions: {sorted(actions)}")
        after = float(params.get("after_seconds") or 0)

        def run() -> None:
            actions[action](trade, action, params)

        if after > 0:
            self.sandbox.later(after, run)
        else:
            run()
        return self._public(trade)

    def _approve(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            if trade["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED"):
                raise SandboxError(409, "NOT_APPROVABLE", f"order is {trade['status']}")
            trade["status"] = "APPROVED"
            trade["decline"] = action == "fail"
            trade["pending"] = bool(params.get("pending"))
            if params.get("amount") is not None:
                trade["capture_amount"] = int(params["amount"])
            trade["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "approved", decline=trade["decline"])
            account = self._accounts[trade["client_id"]]
        self._webhook(account, "CHECKOUT.ORDER.APPROVED", "checkout-order", lambda: self._order_view(trade))

    def _void(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            if trade["status"] == "COMPLETED":
                raise SandboxError(409, "ALREADY_CAPTURED", "order is already captured")
            trade["status"] = "VOIDED"
            trade["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "voided")

    def _complete_pending(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            capture = next((c for c in trade["captures"] if c["status"] == "PENDING"), None)
            if capture is None:
                raise SandboxError(409, "NO_PENDING_CAPTURE", "no pending capture")
            capture["status"] = "COMPLETED"
            capture["fee"] = (capture["amount"] * 29) // 1000
            capture["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "capture_completed", capture_id=capture["id"])
            account = self._accounts[trade["client_id"]]
        self._webhook(account, "PAYMENT.CAPTURE.COMPLETED", "capture", lambda: self._capture_view(trade, capture))

    def _reverse(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            capture = next((c for c in trade["captures"] if c["status"] == "COMPLETED"), None)
            if capture is None:
                raise SandboxError(409, "NO_CAPTURE", "no completed capture")
            capture["reversed"] = True
            capture["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "capture_reversed", capture_id=capture["id"])
            account = self._accounts[trade["client_id"]]
        self._webhook(account, "PAYMENT.CAPTURE.REVERSED", "capture", lambda: self._capture_view(trade, capture))

    def _public(self, trade: dict[str, Any]) -> dict[str, Any]:
        with self.sandbox.lock:
            data = {k: v for k, v in trade.items() if k not in ("experience_context",)}
            data["refunds"] = [dict(self._refunds[r]) for r in trade["refund_ids"] if r in self._refunds]
            return json.loads(json.dumps(data, default=str))

    # --- webhooks ------------------------------------------------------------------------
    def _webhook(self, account: dict[str, Any], event_type: str, resource_type: str, resource: Any) -> None:
        """Queue one event to the account's notify_url, signed per §4.5 method B, retried until 2xx."""
        url = account.get("notify_url")
        if not url:
            return
        event_id = f"WH-{_pp_id(8)}-{_pp_id(17)}"
        with self.sandbox.lock:
            envelope = {
                "id": event_id,
                "event_version": "1.0",
                "create_time": _ts(self.sandbox.now()),
                "resource_type": resource_type,
                "resource_version": "2.0",
                "event_type": event_type,
                "summary": f"{event_type.replace('.', ' ').title()}",
                "resource": resource(),
                "links": [
                    {
                        "href": f"{account['base_url']}/v1/notifications/webhooks-events/{event_id}",
                        "rel": "self",
                        "method": "GET",
                    }
                ],
            }
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        client_id = account["client_id"]

        def build() -> tuple[dict[str, str], bytes]:
            transmission_id = str(uuid.uuid1())
            transmission_time = _ts(self.sandbox.now())
            crc = zlib.crc32(body) & 0xFFFFFFFF
            message = f"{transmission_id}|{transmission_time}|{account['webhook_id']}|{crc}"
            key = self._keys[client_id]
            signature = key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
            fault = self.sandbox.api_fault("paypal", f"webhook:{event_type}")
            if fault is not None and fault.kind == "bad_signature":
                signature = bytes([signature[0] ^ 0x01]) + signature[1:]
            headers = {
                "Content-Type": "application/json",
                "PAYPAL-TRANSMISSION-ID": transmission_id,
                "PAYPAL-TRANSMISSION-TIME": transmission_time,
                "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode("ascii"),
                "PAYPAL-CERT-URL": account["cert_url"],
                "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            }
            return headers, body

        self.sandbox.notify(
            "paypal",
            url,
            build,
            WEBHOOK_SCHEDULE,
            lambda status, _: 200 <= status < 300,
            key=f"{event_type}:{event_id}",
        )

    def _verify_webhook(self, req: SandboxRequest, account: dict[str, Any]) -> SandboxResponse:
        """Method A: check the signature over the event bytes exactly as embedded in the request."""
        try:
            fields, raw_event = _split_verify_body(req.body)
        except ValueError:
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from None
        missing = [
            k
            for k in ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id")
            if not isinstance(fields.get(k), str)
        ]
        if missing or raw_event is None:
            raise _bad_request("MISSING_REQUIRED_PARAMETER", f"missing {missing or ['webhook_event']}")
        failure = SandboxResponse.json(200, {"verification_status": "FAILURE"})
        fault = req.fault
        if fault is not None and fault.kind == "bad_signature":
            return failure
        if fields["auth_algo"] != "SHA256withRSA" or fields["webhook_id"] != account["webhook_id"]:
            return failure
        name = fields["cert_url"].rpartition("/")[2].removesuffix(".pem")
        if fields["cert_url"] != f"{account['base_url']}/certs/{name}.pem" or name not in self._certs:
            return failure
        cert = x509.load_pem_x509_certificate(self._certs[name])
        message = (
            f"{fields['transmission_id']}|{fields['transmission_time']}|{account['webhook_id']}|"
            f"{zlib.crc32(raw_event) & 0xFFFFFFFF}"
        )
        try:
            signature = base64.b64decode(fields["transmission_sig"], validate=True)
            cert.public_key().verify(signature, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return failure
        return SandboxResponse.json(200, {"verification_status": "SUCCESS"})

    # --- reporting -----------------------------------------------------------------------
    def _transactions(self, req: SandboxRequest, account: dict[str, Any]) -> SandboxResponse:
        params = req.params
        try:
            start = datetime.fromisoformat(params["start_date"])
            end = datetime.fromisoformat(params["end_date"])
            page = int(params.get("page", "1"))
            page_size = int(params.get("page_size", "100"))
        except (KeyError, ValueError):
            raise _bad_request("INVALID_REQUEST", "start_date and end_date (RFC 3339) are required.") from None
        if start.tzinfo is None or end.tzinfo is None or end < start:
            raise _bad_request("INVALID_REQUEST", "Dates need an offset and end_date >= start_date.")
        if end - start > timedelta(days=MAX_REPORT_DAYS):
            raise _bad_request("INVALID_REQUEST", "Date range is greater than 31 days.")
        if page < 1 or not 1 <= page_size <= 500:
            raise _bad_request("INVALID_REQUEST", "page starts at 1; page_size is 1..500.")
        if account["report_page_size"]:
            page_size = min(page_size, int(account["report_page_size"]))
        rows = [r for r in self._report_rows(account) if start <= r[0] <= end]
        rows.sort(key=lambda r: (r[0], r[1]["transaction_id"]))
        total_pages = max(1, -(-len(rows) // page_size))
        chunk = rows[(page - 1) * page_size : page * page_size]
        return SandboxResponse.json(
            200,
            {
                "transaction_details": [{"transaction_info": info} for _, info in chunk],
                "account_number": "SANDBOXMERCHANT1",
                "start_date": _report_ts(start),
                "end_date": _report_ts(end),
                "last_refreshed_datetime": _report_ts(self.sandbox.now()),
                "page": page,
                "total_items": len(rows),
                "total_pages": total_pages,
                "links": [
                    {
                        "href": f"{account['base_url']}/v1/reporting/transactions?{req.query}",
                        "rel": "self",
                        "method": "GET",
                    }
                ],
            },
        )

    def _report_rows(self, account: dict[str, Any]) -> list[tuple[datetime, dict[str, Any]]]:
        out: list[tuple[datetime, dict[str, Any]]] = []
        with self.sandbox.lock:
            for trade in self._trades.values():
                if trade["client_id"] != account["client_id"]:
                    continue
                currency = trade["currency"]
                for capture in trade["captures"]:
                    if capture["status"] == "DECLINED":
                        continue  # not balance affecting
                    info = {
                        "paypal_account_id": "SANDBOXPAYER01",
                        "transaction_id": capture["id"],
                        "paypal_reference_id": trade["order_id"],
                        "paypal_reference_id_type": "ODR",
                        "transaction_event_code": "T0006",
                        "transaction_initiation_date": _report_ts(capture["create_time"]),
                        "transaction_updated_date": _report_ts(capture["update_time"]),
                        "transaction_amount": {
                            "currency_code": currency,
                            "value": _fmt_signed(capture["amount"], currency),
                        },
                        "fee_amount": {"currency_code": currency, "value": _fmt_signed(-capture["fee"], currency)},
                        "transaction_status": "P"
                        if capture["status"] == "PENDING"
                        else "V"
                        if capture["reversed"]
                        else "S",
                        "protection_eligibility": "01",
                    }
                    if trade.get("invoice_id"):
                        info["invoice_id"] = trade["invoice_id"]
                    if trade.get("custom_id"):
                        info["custom_field"] = trade["custom_id"]
                    out.append((capture["create_time"], info))
                for refund_id in trade["refund_ids"]:
                    refund = self._refunds.get(refund_id)
                    if refund is None:
                        continue
                    info = {
                        "paypal_account_id": "SANDBOXPAYER01",
                        "transaction_id": refund["id"],
                        "paypal_reference_id": refund["capture_id"],
                        "paypal_reference_id_type": "TXN",
                        "transaction_event_code": "T1107",
                        "transaction_initiation_date": _report_ts(refund["create_time"]),
                        "transaction_updated_date": _report_ts(refund["update_time"]),
                        "transaction_amount": {
                            "currency_code": currency,
                            "value": _fmt_signed(-refund["amount"], currency),
                        },
                        "fee_amount": {"currency_code": currency, "value": _fmt_signed(0, currency)},
                        "transaction_status": "P" if refund["status"] == "PENDING" else "S",
                    }
                    if refund.get("invoice_id"):
                        info["invoice_id"] = refund["invoice_id"]
                    if refund.get("custom_id"):
                        info["custom_field"] = refund["custom_id"]
                    out.append((refund["create_time"], info))
        return out


def _split_verify_body(body: bytes) -> tuple[dict[str, Any], bytes | None]:
    """Parse the top-level object of a verify-webhook-signature body, keeping ``webhook_event``'s
    exact bytes (PayPal checks the CRC32 of the event as embedded, §4.5)."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()
    fields: dict[str, Any] = {}
    raw_event: bytes | None = None

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not an object")
    i = skip(i + 1)
    if text[i : i + 1] == "}":
        return fields, raw_event
    while True:
        key, i = decoder.raw_decode(text, skip(i))
        i = skip(i)
        if text[i : i + 1] != ":":
            raise ValueError("expected ':'")
        start = skip(i + 1)
        value, end = decoder.raw_decode(text, start)
        if key == "webhook_event":
            raw_event = text[start:end].encode("utf-8")
        fields[key] = value
        i = skip(end)
        if text[i : i + 1] == ",":
            i += 1
            continue
        if text[i : i + 1] == "}":
            break
        raise ValueError("expected ',' or '}'")
    return fields, raw_event
