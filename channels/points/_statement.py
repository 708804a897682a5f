"""The partner's daily statement: a UTF-8 CSV of the deductions and refunds of one day.

Header row exactly ``STATEMENT_COLUMNS``; ``type`` is ``DEDUCTION`` or ``REFUND`` (refund columns
empty on deduction rows), ``points`` a positive integer, times RFC 3339. Only ``SUCCESS`` rows
moved points, so only they become bill rows.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Iterator

from channels.base import BillRow, BillRowKind
from channels.points._wire import parse_time, unreadable

STATEMENT_COLUMNS: tuple[str, ...] = (
    "type",
    "request_no",
    "deduction_id",
    "refund_request_no",
    "refund_id",
    "points",
    "status",
    "created_at",
    "completed_at",
)
_STATEMENT_KIND: dict[str, BillRowKind] = {"DEDUCTION": BillRowKind.PAYMENT, "REFUND": BillRowKind.REFUND}
_STATEMENT_STATUSES = frozenset({"PROCESSING", "SUCCESS", "FAILED"})


def statement_rows(content: bytes, *, to_minor: Callable[[int], int], currency: str) -> Iterator[BillRow]:
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise unreadable("statement is not UTF-8") from None
    reader = csv.reader(io.StringIO(text, newline=""))
    header = next(reader, None)
    if tuple(header or ()) != STATEMENT_COLUMNS:
        raise unreadable(f"statement header {header!r}")
    for line in reader:
        if not line:
            continue
        if len(line) != len(STATEMENT_COLUMNS):
            raise unreadable(f"statement row with {len(line)} columns")
        row = dict(zip(STATEMENT_COLUMNS, line, strict=True))
        kind = _STATEMENT_KIND.get(row["type"])
        if kind is None or row["status"] not in _STATEMENT_STATUSES or not row["points"].isdigit():
            raise unreadable(f"statement row {row['type']!r}/{row['status']!r}/{row['points']!r}")
        if row["status"] != "SUCCESS":
            continue
        is_refund = kind == BillRowKind.REFUND
        yield BillRow(
            kind=kind,
            payment_no=row["request_no"],
            channel_trade_no=row["deduction_id"],
            amount=to_minor(int(row["points"])),
            currency=currency,
            occurred_at=parse_time(row["completed_at"]) or parse_time(row["created_at"]),
            refund_no=row["refund_request_no"] if is_refund else None,
            channel_refund_no=row["refund_id"] if is_refund else None,
            fee=0,
            status=row["status"],
            raw=row,
        )
