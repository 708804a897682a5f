"""Alipay wire values: yuan amounts, Beijing-time timestamps, trade references, form encoding.

Amounts are strings in yuan with at most two decimals (``"9.90"``); paycore's integers are fen.
Both directions are exact (``paycore.money``); an amount that is not a whole number of fen is an
unreadable reply, never rounded. Timestamps are ``yyyy-MM-dd HH:mm:ss`` in Beijing time.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from urllib.parse import urlencode

from channels.base import ChannelUnavailable, check_aware, trade_ref_required
from paycore import money

CURRENCY = "CNY"
CST = timezone(timedelta(hours=8), "UTC+08:00")  # Alipay's timestamps are Beijing time
TIME_FORMAT = "%Y-%m-%d %H:%M:%S"
MAX_FEN = 100_000_000_00  # 100000000.00 yuan per trade


def yuan(fen: int) -> str:
    """Exact fen -> yuan string with two decimals (``990`` -> ``"9.90"``)."""
    return money.minor_to_decimal(fen, CURRENCY)


def fen(text: object) -> int:
    """Exact yuan string -> fen; anything that is not a plain amount in whole fen is unreadable."""
    try:
        return money.decimal_to_minor(str(text).strip(), CURRENCY)
    except ValueError:
        raise ChannelUnavailable(f"unreadable amount {text!r}") from None


def cst(moment: datetime) -> str:
    return check_aware(moment).astimezone(CST).strftime(TIME_FORMAT)


def parse_time(value: str | None) -> datetime | None:
    if not value:
        return None
    for fmt in (TIME_FORMAT, TIME_FORMAT + ".%f"):
        try:
            return datetime.strptime(value, fmt).replace(tzinfo=CST)
        except ValueError:
            continue
    raise ChannelUnavailable(f"unreadable time {value!r}")


def trade_ref(payment_no: str | None, channel_trade_no: str | None) -> dict[str, str]:
    trade_ref_required(payment_no, channel_trade_no)
    if channel_trade_no:
        return {"trade_no": channel_trade_no}  # trade_no wins at Alipay anyway
    return {"out_trade_no": str(payment_no)}


def encode(params: Mapping[str, str]) -> str:
    """Sorted ``k=v`` pairs URL-encoded (``quote_plus``), ``sign`` last, as the SDKs print them."""
    keys = sorted(k for k in params if k != "sign") + (["sign"] if "sign" in params else [])
    return urlencode([(k, params[k]) for k in keys], encoding="utf-8")
