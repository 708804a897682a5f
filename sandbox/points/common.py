"""Constants, errors and the HMAC helper shared by the points simulator's modules (package-internal)."""

from __future__ import annotations

import hashlib
import hmac
import re
from datetime import timedelta, timezone
from typing import Any

CHANNEL = "points"
WINDOW_SECONDS = 300
NONCE_SECONDS = 600
INITIAL_POINTS = 100_000
POOR_POINTS = 10
REFUND_SECONDS = 5.0
CALLBACK_SCHEDULE = [15.0, 15.0, 30.0, 180.0, 600.0, 1800.0, 3600.0]
STATEMENT_HEADER = [
    "type",
    "request_no",
    "deduction_id",
    "refund_request_no",
    "refund_id",
    "points",
    "status",
    "created_at",
    "completed_at",
]
PARTNER_TZ = timezone(timedelta(hours=8))

_HEX_NONCE = re.compile(r"[0-9a-f]{16,32}")
_DIGITS = re.compile(r"[0-9]{1,12}")
_BINDING_PATH = re.compile(r"/v1/bindings/([^/]+)")
_BALANCE_PATH = re.compile(r"/v1/bindings/([^/]+)/balance")

_DEDUCTION_FIELDS = (
    "deduction_id",
    "request_no",
    "binding_id",
    "order_no",
    "points",
    "refunded_points",
    "status",
    "fail_code",
    "created_at",
    "completed_at",
)
_REFUND_FIELDS = (
    "refund_id",
    "refund_request_no",
    "deduction_id",
    "request_no",
    "points",
    "status",
    "fail_code",
    "created_at",
    "completed_at",
)


class _Refused(Exception):
    """An API error answered as ``{"code", "message"}`` (signed when the app is known)."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.status, self.code, self.message = status, code, message or code


def _hmac_hex(secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    text = "\n".join([method, target, timestamp, nonce, hashlib.sha256(body).hexdigest()]) + "\n"
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64
