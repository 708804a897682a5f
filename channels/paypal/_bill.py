"""PayPal Transaction Search rows -> bill rows (PayPal REST, "Transaction Search").

Only the event codes paycore books are kept: captures (``T0003``, ``T0006``) and refunds
(``T1107``); fees, withdrawals, currency conversions and holds are not paycore's trades. Denied
rows (status ``D``) moved no money and are skipped. A refund row names its capture through
``paypal_reference_id``; a capture row seen earlier in the same read gives the order and payment
(paycore also sends the payment number as the refund's ``custom_id``, which wins when present).

Pages are read one at a time, as the caller iterates: only the captures of the day are kept in
memory (capture id -> order id and payment number), never the report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

from channels.base import BillRow, BillRowKind
from channels.paypal._wire import money_of, parse_time

_BILL_PAYMENT_CODES = frozenset({"T0003", "T0006"})
_BILL_REFUND_CODES = frozenset({"T1107"})


def bill_rows(infos: Iterable[Mapping[str, Any]]) -> Iterator[BillRow]:
    """Bill rows of Transaction Search ``transaction_info`` objects, in report order."""
    # captures seen in this report: capture id -> (order id, payment_no), for refund rows
    captures: dict[str, tuple[str, str]] = {}
    for info in infos:
        code = info.get("transaction_event_code")
        status = str(info.get("transaction_status") or "")
        if code not in _BILL_PAYMENT_CODES and code not in _BILL_REFUND_CODES:
            continue
        transaction_id = str(info.get("transaction_id") or "")
        if code in _BILL_PAYMENT_CODES:
            payment_no = str(info.get("invoice_id") or info.get("custom_field") or "")
            captures[transaction_id] = (_bill_order_id(info), payment_no)
        if status == "D":  # denied: no money moved
            continue
        amount, currency = money_of(info.get("transaction_amount"))
        fee = None
        if isinstance(info.get("fee_amount"), Mapping):
            fee = -money_of(info["fee_amount"])[0]
        occurred_at = parse_time(info.get("transaction_initiation_date"))
        raw = {
            k: (v if isinstance(v, str) else json.dumps(v, separators=(",", ":"), sort_keys=True))
            for k, v in info.items()
        }
        if code in _BILL_PAYMENT_CODES:
            yield BillRow(
                kind=BillRowKind.PAYMENT,
                payment_no=captures[transaction_id][1],
                channel_trade_no=captures[transaction_id][0],
                amount=abs(amount),
                currency=currency,
                occurred_at=occurred_at,
                fee=fee,
                status=status,
                raw=raw,
            )
        else:
            capture_id = str(info.get("paypal_reference_id") or "")
            order_id, capture_payment_no = captures.get(capture_id, (capture_id, ""))
            yield BillRow(
                kind=BillRowKind.REFUND,
                payment_no=str(info.get("custom_field") or capture_payment_no),
                channel_trade_no=order_id,
                amount=abs(amount),
                currency=currency,
                occurred_at=occurred_at,
                refund_no=str(info.get("invoice_id") or "") or None,
                channel_refund_no=transaction_id or None,
                fee=fee,
                status=status,
                raw=raw,
            )


def _bill_order_id(info: Mapping[str, Any]) -> str:
    """A capture row names its order through ``paypal_reference_id`` of type ``ODR``."""
    if info.get("paypal_reference_id_type") == "ODR" and info.get("paypal_reference_id"):
        return str(info["paypal_reference_id"])
    return str(info.get("transaction_id") or "")
