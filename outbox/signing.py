"""Webhook signatures: HMAC-SHA256 over ``"{timestamp}.{raw body}"`` with the merchant's secret.

Headers (docs/webhooks.md shows a receiver's check in plain Python):

- ``X-Paycore-Timestamp``: Unix seconds when this attempt was signed;
- ``X-Paycore-Signature``: ``v1=<hex>``, or ``v1=<hex>, v1=<hex>`` while a rotated secret is in
  its overlap window (one signature per secret; a receiver accepts if any matches its secret);
- ``X-Paycore-Event-Id`` and ``X-Paycore-Event-Type``: the event's id and topic (also in the body).
"""

from __future__ import annotations

import hashlib
import hmac
import time
from collections.abc import Iterable, Mapping

TIMESTAMP_HEADER = "X-Paycore-Timestamp"
SIGNATURE_HEADER = "X-Paycore-Signature"
EVENT_ID_HEADER = "X-Paycore-Event-Id"
EVENT_TYPE_HEADER = "X-Paycore-Event-Type"
SCHEME = "v1"
# How old a signature a receiver should accept; docs/webhooks.md recommends the same.
TOLERANCE_SECONDS = 300


def signature(secret: str, timestamp: int, body: bytes) -> str:
    message = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), message, hashlib.sha256).hexdigest()


def signature_headers(*, secrets: Iterable[str], timestamp: int, body: bytes) -> dict[str, str]:
    sigs = [f"{SCHEME}={signature(s, timestamp, body)}" for s in secrets if s]
    if not sigs:
        raise ValueError("no secret to sign with")
    return {TIMESTAMP_HEADER: str(timestamp), SIGNATURE_HEADER: ", ".join(sigs)}


def verify(
    *,
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    now: float | None = None,
    tolerance: int = TOLERANCE_SECONDS,
) -> bool:
    """What a receiver does (the reference for docs/webhooks.md and the tests)."""
    lowered = {k.lower(): v for k, v in headers.items()}
    raw_ts = lowered.get(TIMESTAMP_HEADER.lower(), "")
    if not raw_ts.isdigit():
        return False
    timestamp = int(raw_ts)
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = signature(secret, timestamp, body)
    for part in lowered.get(SIGNATURE_HEADER.lower(), "").split(","):
        scheme, _, value = part.strip().partition("=")
        if scheme == SCHEME and hmac.compare_digest(value, expected):
            return True
    return False
