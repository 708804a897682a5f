"""paycore's error types. Each carries a stable machine-readable ``code`` and an HTTP status.

Codes never change once published: clients branch on them.
"""

from __future__ import annotations

from typing import Any


def error_body(code: str, message: str, extra: dict[str, Any] | None = None) -> dict[str, Any]:
    """The one error shape every API answer and callback refusal uses."""
    return {"code": code, "message": message, "extra": extra or {}}


def failure_reason(exc: BaseException) -> str:
    """What ops read on a row a sweep or the inbox failed to work (``last_check_error``...): the
    error and, when it wraps a channel's (``from exc``), that one too. "the channel did not answer
    query" alone cannot tell a timeout from a refused signature or an HTTP 503; the channel
    errors' own messages name the operation and the cause, never a secret or a body."""
    text = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    cause = exc.__cause__
    if cause is not None:
        text += f" ({type(cause).__name__}: {getattr(cause, 'message', None) or cause})"
    return text[:1000]


class PaycoreError(Exception):
    code, http_status = "error", 400

    def __init__(self, message: str, *, extra: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message, self.extra = message, extra or {}


class InvalidRequest(PaycoreError):
    code = "invalid_request"

    @classmethod
    def field(cls, name: str, message: str, *, code: str = "invalid", **extra: Any) -> InvalidRequest:
        """The same ``extra`` shape as serializer errors: ``{"fields": {name: [{message, code}]}}``."""
        return cls(message, extra={"fields": {name: [{"message": message, "code": code}]}, **extra})


class NotFound(PaycoreError):
    code, http_status = "not_found", 404


class Conflict(PaycoreError):
    code, http_status = "conflict", 409


class IllegalTransition(Conflict):
    code = "illegal_transition"


class OrderNotPayable(Conflict):
    code = "order_not_payable"


class MerchantOrderNoReused(Conflict):
    code = "merchant_order_no_reused"


class OrderPaid(Conflict):
    code = "order_paid"


class MerchantSuspended(Conflict):
    code = "merchant_suspended"


class CurrencyMismatch(InvalidRequest):
    code = "currency_mismatch"


class CustomerMismatch(Conflict):
    code = "customer_mismatch"


class MethodNotOffered(InvalidRequest):
    code = "method_not_offered"


class PaymentShared(PaycoreError):
    """A merchant key may not act on the whole of a payment that also pays others' orders."""

    code, http_status = "payment_shared", 403


class PaymentConfirming(Conflict):
    code = "payment_confirming"


class RefundExceedsPayment(Conflict):
    code = "refund_exceeds_payment"


class RefundNoReused(Conflict):
    code = "refund_no_reused"


class PaymentNotRefundable(Conflict):
    code = "payment_not_refundable"


class AmountMismatch(Conflict):
    code = "amount_mismatch"


class IdempotencyKeyReused(Conflict):
    code = "idempotency_key_reused"


class IdempotencyKeyRequired(InvalidRequest):
    code = "idempotency_key_required"


class IdempotencyInProgress(Conflict):
    code = "idempotency_in_progress"


class ChannelUnavailableError(PaycoreError):
    """The channel did not answer usefully; the outcome is unknown and the client may retry."""

    code, http_status = "channel_unavailable", 503


class ChannelMisconfigured(PaycoreError):
    """The channel account's settings do not work (ops must fix them); nothing was sent."""

    code, http_status = "channel_misconfigured", 503


class ChannelRejectedError(PaycoreError):
    """The channel refused; its raw code goes in ``extra`` under a stable key, never the message."""

    code, http_status = "channel_rejected", 422
