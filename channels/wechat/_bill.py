"""WeChat Pay trade bill files (WeChat Pay API v3, "download the trade bill").

A bill is a detail header row, detail rows whose every cell starts with one backtick, then a
summary header (first cell ``总交易单数``) and one summary row. Column order differs between
``ALL``, ``SUCCESS``, ``REFUND`` and the legacy layout, so cells are read by header name only.
Amounts are yuan with two decimals and are converted to fen exactly; the fee column carries
five decimals and is rounded half-up to whole fen (the exact text stays in ``raw``).
"""

from __future__ import annotations

import gzip
import hashlib
import hmac
import io
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from channels.base import BillRow, BillRowKind
from paycore import money

CURRENCY = "CNY"
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
SUMMARY_FIRST_CELL = "总交易单数"
_MAX_BILL_BYTES = 256 * 1024 * 1024


class BillError(ValueError):
    """The bill cannot be read: the caller must not reconcile against a partial file."""


# 交易状态 -> the row kind; any other value raises.
_ROW_KINDS: dict[str, BillRowKind] = {
    "SUCCESS": BillRowKind.PAYMENT,
    "REFUND": BillRowKind.REFUND,
    "REVOKED": BillRowKind.REVOKED,
}

# Current and legacy spellings of the columns read, in order of preference.
_ORDER_AMOUNT = ("订单金额", "应结订单金额", "总金额")
_REFUND_AMOUNT = ("申请退款金额", "退款金额")


def check_and_decompress(content: bytes, hash_type: str, hash_value: str) -> bytes:
    """Check the hash against the downloaded bytes or, for gzip, the decompressed bytes.

    WeChat's docs do not say which of the two the hash covers, so either is accepted.
    """
    if hash_type.upper() != "SHA1":
        raise BillError(f"unsupported bill hash_type {hash_type!r}")
    expected = hash_value.strip().lower().encode()
    plain = _gunzip(content) if content[:2] == b"\x1f\x8b" else content
    for candidate in {content, plain}:
        if hmac.compare_digest(hashlib.sha1(candidate, usedforsecurity=False).hexdigest().encode(), expected):
            return plain
    raise BillError("bill hash mismatch")


def _gunzip(content: bytes) -> bytes:
    try:
        with gzip.GzipFile(fileobj=io.BytesIO(content)) as stream:
            data = stream.read(_MAX_BILL_BYTES + 1)
    except (OSError, EOFError) as exc:
        raise BillError(f"bad gzip bill: {exc}") from exc
    if len(data) > _MAX_BILL_BYTES:
        raise BillError("bill too large")
    return data


def yuan_to_fen(text: str) -> int:
    """``"9.90"`` -> ``990``; more than two significant decimals is an error, never rounded."""
    try:
        return money.decimal_to_minor(text.strip(), CURRENCY)
    except ValueError as exc:
        raise BillError(f"bad amount {text!r}: {exc}") from None


def fee_to_fen(text: str) -> int:
    """The fee column has five decimals (``"0.00540"``): rounded half-up to whole fen."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise BillError(f"bad fee {text!r}") from exc
    if not value.is_finite():
        raise BillError(f"bad fee {text!r}")
    return int(value.scaleb(money.exponent(CURRENCY)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _cells(line: str) -> list[str]:
    return [cell[1:] if cell.startswith("`") else cell for cell in line.split(",")]


def _first(row: dict[str, str], names: tuple[str, ...]) -> str | None:
    for name in names:
        if row.get(name, "") != "":
            return row[name]
    return None


def parse_bill(data: bytes) -> Iterator[BillRow]:
    """Yield payment, refund and revoked rows; stop at the summary header."""
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise BillError("bill is not UTF-8") from exc
    lines = [line for line in text.splitlines() if line.strip()]
    if not lines:
        return
    header = [name.strip() for name in _cells(lines[0])]
    if "交易状态" not in header or "商户订单号" not in header:
        raise BillError("bill header lacks 交易状态/商户订单号")
    for number, line in enumerate(lines[1:], start=2):
        cells = _cells(line)
        if cells[0].strip() == SUMMARY_FIRST_CELL:
            return
        if len(cells) != len(header):
            raise BillError(f"bill line {number} has {len(cells)} cells, header has {len(header)}")
        yield _row(dict(zip(header, (c.strip() for c in cells), strict=True)))
    raise BillError("bill has no summary row: file truncated?")


def _row(row: dict[str, str]) -> BillRow:
    state = row["交易状态"]
    try:
        kind = _ROW_KINDS[state]
    except KeyError:
        raise BillError(f"unknown bill 交易状态 {state!r}") from None
    occurred = row.get("交易时间", "")
    occurred_at = None
    if occurred:
        try:
            occurred_at = datetime.strptime(occurred, "%Y-%m-%d %H:%M:%S").replace(tzinfo=BEIJING)
        except ValueError as exc:
            raise BillError(f"bad 交易时间 {occurred!r}") from exc
    fee = row.get("手续费", "")
    refund_no = channel_refund_no = None
    if kind is BillRowKind.REFUND:
        amount_text = _first(row, _REFUND_AMOUNT)
        refund_no, channel_refund_no = row.get("商户退款单号") or None, row.get("微信退款单号") or None
        status = row.get("退款状态", "")
    else:
        amount_text = _first(row, _ORDER_AMOUNT)
        status = state
    if amount_text is None:
        raise BillError(f"bill row for {row['商户订单号']!r} has no amount column")
    return BillRow(
        kind=kind,
        payment_no=row["商户订单号"],
        channel_trade_no=row.get("微信订单号", ""),
        amount=yuan_to_fen(amount_text),
        currency=row.get("货币种类") or CURRENCY,
        occurred_at=occurred_at,
        refund_no=refund_no,
        channel_refund_no=channel_refund_no,
        fee=fee_to_fen(fee) if fee else None,
        status=status,
        raw=row,
    )
