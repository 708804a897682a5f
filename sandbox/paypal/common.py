"""Currencies, identifiers, time formats and API errors shared by the PayPal simulator's modules (package-internal)."""

from __future__ import annotations

import re
import secrets
import string
import uuid
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from sandbox.core import SandboxResponse

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

# Webhook retries: 25 sends over 3 days (PayPal's webhook docs; one source only); sandbox seconds between sends.
WEBHOOK_SCHEDULE: list[float] = [60, 120, 300, 600, 1200, 1800] + [3600] * 6 + [7200] * 6 + [31720] * 6

SIGNING_CN = "messageverificationcerts.sandbox.paypal.com"
IDEMPOTENCY_SECONDS = {"create": 6 * 3600, "capture": 6 * 3600, "refund": 45 * 86400}
DEFAULT_TOKEN_SECONDS = 32400
DEFAULT_REFUND_DELAY = 5.0
MAX_REPORT_DAYS = 31
FEE_PERMILLE = 29  # PayPal's fee on a completed capture: 2.9 %, rounded down to the minor unit


def capture_fee(minor: int) -> int:
    return minor * FEE_PERMILLE // 1000


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
