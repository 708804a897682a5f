"""PayPal REST as the platform plays it: OAuth2 tokens, Orders v2, captures, refunds, webhooks,
webhook signature verification and Transaction Search, as PayPal's REST APIs define them.

An independent implementation: it does not import ``channels.paypal``. Paths are relative to
the ``/paypal`` prefix, exactly as PayPal's (``/v1/oauth2/token``, ``/v2/checkout/orders``...).

Per account the simulator generates a client id and secret, a webhook id, a private CA and a
leaf signing certificate (CN ``messageverificationcerts.sandbox.paypal.com``) served at
``{gw}/paypal/certs/<name>.pem``; webhooks are signed with the leaf key as PayPal signs them
(SHA256withRSA over the transmission id, time, webhook id and the body's CRC32).

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

import html
import threading
from typing import Any

from sandbox.core import ChannelSimulator, SandboxRequest, SandboxResponse
from sandbox.paypal.accounts import AccountsMixin
from sandbox.paypal.common import _ApiError, _not_found
from sandbox.paypal.orders import OrdersMixin
from sandbox.paypal.refunds import RefundsMixin
from sandbox.paypal.reporting import ReportingMixin
from sandbox.paypal.webhooks import WebhooksMixin

__all__ = ["PaypalSimulator"]


class PaypalSimulator(AccountsMixin, OrdersMixin, RefundsMixin, WebhooksMixin, ReportingMixin, ChannelSimulator):
    """PayPal's REST platform, composed of one mixin per thing the platform does."""

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
