"""PayPal JSON values -> paycore values: amounts, times, captures and refunds.

Amounts travel as ``{"currency_code": "USD", "value": "9.90"}`` with the currency's minor-unit
precision (PayPal REST, "Currency codes"); the exponent comes from paycore's one ISO 4217
table. Decisions are made on the *capture*, never on the order: an order can be ``COMPLETED``
with a ``DECLINED`` or ``PENDING`` capture (PayPal Orders v2, "Capture payment for order").
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from channels.base import (
    ChannelRejected,
    ChannelUnavailable,
    RefundState,
    RefundStatus,
    TradeState,
    TradeStatus,
    map_status,
)
from paycore import money

# The currencies this adapter prices. HUF and TWD are left out on purpose: ISO gives them 2
# decimals but PayPal rejects decimals for them, so paycore's minor units cannot be sent as they are.
CURRENCIES: frozenset[str] = frozenset(
    {
        *("JPY", "KRW"),
        *("BHD", "KWD", "JOD", "OMR", "TND"),
        *("USD", "EUR", "GBP", "CNY", "HKD", "SGD", "AUD", "CAD", "NZD", "CHF", "SEK", "NOK", "DKK"),
        *("PLN", "CZK", "ILS", "MXN", "BRL", "MYR", "PHP", "THB", "INR", "AED", "SAR", "ZAR"),
    }
)

# Capture status -> trade status. Refunds afterwards do not undo PAID.
CAPTURE_STATUS: dict[str, TradeStatus] = {
    "COMPLETED": TradeStatus.PAID,
    "PARTIALLY_REFUNDED": TradeStatus.PAID,
    "REFUNDED": TradeStatus.PAID,
    "PENDING": TradeStatus.NOT_PAID,
    "DECLINED": TradeStatus.FAILED,
    "FAILED": TradeStatus.FAILED,
}

_REFUND_STATUS: dict[str, RefundStatus] = {
    "COMPLETED": RefundStatus.SUCCEEDED,
    "PENDING": RefundStatus.PROCESSING,
    "FAILED": RefundStatus.FAILED,
    "CANCELLED": RefundStatus.FAILED,
}


def _currency(currency: str) -> str:
    code = currency.upper()
    if code not in CURRENCIES:
        raise ValueError(f"currency {currency!r} has no known minor-unit exponent for PayPal")
    return code


def format_amount(amount: int, currency: str) -> str:
    """Minor units -> PayPal's decimal string (``990`` USD -> ``"9.90"``, ``990`` JPY -> ``"990"``)."""
    return money.minor_to_decimal(amount, _currency(currency))


def parse_amount(value: str, currency: str) -> int:
    """PayPal's decimal string -> minor units; a value with more precision than the currency raises."""
    code = _currency(currency)
    try:
        return money.decimal_to_minor(str(value), code)
    except ValueError:
        raise ChannelUnavailable(f"unreadable {code} amount {value!r}") from None


def money_of(obj: Any) -> tuple[int, str]:
    """``{"currency_code": "USD", "value": "9.90"}`` -> (990, "USD")."""
    if not isinstance(obj, Mapping) or "value" not in obj or "currency_code" not in obj:
        raise ChannelUnavailable("reply carries no readable amount")
    currency = str(obj["currency_code"]).upper()
    try:
        return parse_amount(obj["value"], currency), currency
    except ValueError as exc:  # unknown currency in a reply: unreadable
        raise ChannelUnavailable(str(exc)) from None


def parse_time(value: Any) -> datetime | None:
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError:
        raise ChannelUnavailable(f"unreadable time {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def captures(order: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    out: list[Mapping[str, Any]] = []
    for unit in order.get("purchase_units") or []:
        if isinstance(unit, Mapping):
            out.extend(c for c in ((unit.get("payments") or {}).get("captures") or []) if isinstance(c, Mapping))
    return out


def paid_capture(order: Mapping[str, Any]) -> Mapping[str, Any] | None:
    for capture in captures(order):
        if CAPTURE_STATUS.get(str(capture.get("status"))) == TradeStatus.PAID and capture.get("id"):
            return capture
    return None


def trade_from_capture(order: dict[str, Any], payment_no: str, order_id: str) -> TradeState:
    found = captures(order)
    if not found:
        raise ChannelUnavailable("completed order carries no capture", raw=order)
    capture = paid_capture(order) or found[-1]
    capture_status = str(capture.get("status", ""))
    status = map_status(CAPTURE_STATUS, capture_status, what="capture status", raw=order)
    paid_amount = currency = paid_at = None
    if status == TradeStatus.PAID:
        paid_amount, currency = money_of(capture.get("amount"))
        paid_at = parse_time(capture.get("create_time") or capture.get("update_time"))
    raw = {
        "order_id": order_id,
        "order_status": order.get("status"),
        "capture_id": capture.get("id"),
        "capture_status": capture_status,
        "order": order,
    }
    return TradeState(
        payment_no=payment_no,
        status=status,
        channel_trade_no=order_id,
        paid_amount=paid_amount,
        currency=currency,
        paid_at=paid_at,
        raw=raw,
    )


def refund_state(refund: dict[str, Any], refund_no: str, capture_id: str | None = None) -> RefundState:
    refund_id = refund.get("id")
    if not isinstance(refund_id, str) or not refund_id:
        raise ChannelUnavailable("refund reply has no id", raw=refund)
    found = refund.get("invoice_id")
    if found and refund_no and found != refund_no:
        raise ChannelRejected(f"refund {refund_id} belongs to {found}, not {refund_no}", code="REFUND_MISMATCH")
    raw_status = str(refund.get("status", ""))
    status = map_status(_REFUND_STATUS, raw_status, what="refund status", raw=refund)
    amount = money_of(refund["amount"])[0] if "amount" in refund else None
    details = refund.get("status_details")
    reason = details.get("reason") if isinstance(details, Mapping) else None
    raw = dict(refund)
    if capture_id:
        raw["capture_id"] = capture_id
    return RefundState(
        refund_no=refund_no or str(found or ""),
        status=status,
        channel_refund_no=refund_id,
        amount=amount,
        succeeded_at=parse_time(refund.get("update_time") or refund.get("create_time"))
        if status == RefundStatus.SUCCEEDED
        else None,
        fail_code=str(reason or raw_status) if status == RefundStatus.FAILED else None,
        raw=raw,
    )
