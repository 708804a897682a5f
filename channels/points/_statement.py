"""The partner's daily statement: a UTF-8 CSV of the deductions and refunds of one day.

Header row exactly ``STATEMENT_COLUMNS``; ``type`` is ``DEDUCTION`` or ``REFUND`` (refund columns
empty on deduction rows), ``points`` a positive integer, times RFC 3339. Only ``SUCCESS`` rows
moved points, so only they become bill rows. The statement publishes no totals of its own.

The reply is read as it streams in: each row is yielded once its line is complete, and the body
is hashed on the way. Its signature covers ``hex(SHA-256(body))``, so it is verified from that
hash once the stream has ended (``verify_streamed``, the same rules as ``_sign.verify``); a
signature that fails then voids the rows already yielded.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import hmac
import io
from collections.abc import Callable, Iterable, Iterator, Mapping

from channels.base import Bill, BillRow, BillRowKind, BillSummary, SignatureInvalid, normalize_headers
from channels.points import _sign
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
    """Rows of a whole statement (tests and tools)."""
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise unreadable("statement is not UTF-8") from None
    return _rows(io.StringIO(text, newline=""), to_minor=to_minor, currency=currency)


def read_statement(
    bill: Bill,
    chunks: Iterable[bytes],
    *,
    to_minor: Callable[[int], int],
    currency: str,
    verify: Callable[[str], None],
) -> Iterator[BillRow]:
    """Rows of a streamed statement; ``verify(body_sha256_hex)`` authenticates the whole body at
    the end, then ``bill.digest`` (that same hash), ``bill.size`` and ``bill.summary`` are set."""
    digest = hashlib.sha256()
    size = 0

    def lines() -> Iterator[str]:
        nonlocal size
        decoder = codecs.getincrementaldecoder("utf-8-sig")()
        pending = ""
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            try:
                text = pending + decoder.decode(chunk)
            except UnicodeDecodeError:
                raise unreadable("statement is not UTF-8") from None
            *complete, pending = text.split("\n")
            for line in complete:
                yield line + "\n"
        try:
            pending += decoder.decode(b"", True)
        except UnicodeDecodeError:
            raise unreadable("statement is not UTF-8") from None
        if pending:
            yield pending

    yield from _rows(lines(), to_minor=to_minor, currency=currency)
    verify(digest.hexdigest())
    bill.digest, bill.size, bill.summary = digest.hexdigest(), size, BillSummary()


def _rows(lines: Iterable[str], *, to_minor: Callable[[int], int], currency: str) -> Iterator[BillRow]:
    reader = csv.reader(lines)
    header = next(reader, None)
    if tuple(header or ()) != STATEMENT_COLUMNS:
        raise unreadable(f"statement header {header!r}")
    width = len(STATEMENT_COLUMNS)
    for line in reader:
        if not line:
            continue
        if len(line) != width:
            raise unreadable(f"statement row with {len(line)} columns")
        kind_text, request_no, deduction_id, refund_request_no, refund_id, points, status, created, completed = line
        kind = _STATEMENT_KIND.get(kind_text)
        if kind is None or status not in _STATEMENT_STATUSES or not points.isdigit():
            raise unreadable(f"statement row {kind_text!r}/{status!r}/{points!r}")
        if status != "SUCCESS":
            continue
        is_refund = kind == BillRowKind.REFUND
        yield BillRow(
            kind=kind,
            payment_no=request_no,
            channel_trade_no=deduction_id,
            amount=to_minor(int(points)),
            currency=currency,
            occurred_at=parse_time(completed) or parse_time(created),
            refund_no=refund_request_no if is_refund else None,
            channel_refund_no=refund_id if is_refund else None,
            fee=0,
            status=status,
            raw=dict(zip(STATEMENT_COLUMNS, line, strict=True)),
        )


def verify_streamed(
    headers: Mapping[str, str],
    *,
    method: str,
    path_and_query: str,
    body_sha256: str,
    app_id: str,
    secret_for: Callable[[str], str],
    now: float,
) -> None:
    """``_sign.verify`` for a body known by its SHA-256 only (a streamed statement)."""
    h = normalize_headers(headers)
    try:
        got_app_id, key_id, timestamp, nonce, signature = (
            h["x-app-id"],
            h["x-key-id"],
            h["x-timestamp"],
            h["x-nonce"],
            h["x-signature"],
        )
    except KeyError as missing:
        raise SignatureInvalid(f"points: missing header {missing}", code="SIGNATURE_MISSING") from None
    if got_app_id != app_id:
        raise SignatureInvalid("points: app id mismatch", code="APP_ID_MISMATCH")
    secret = secret_for(key_id)
    if not timestamp.isdigit() or len(timestamp) > 12:
        raise SignatureInvalid("points: malformed timestamp", code="TIMESTAMP_INVALID")
    # The window applies to when the reply was signed: a long statement may take a while to read.
    if abs(now - int(timestamp)) > _sign.TIMESTAMP_WINDOW_SECONDS:
        raise SignatureInvalid("points: timestamp outside the 300 s window", code="TIMESTAMP_EXPIRED")
    message = f"{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{body_sha256}\n"
    expected = hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()
    if not hmac.compare_digest(expected, signature):
        raise SignatureInvalid("points: signature mismatch", code="SIGNATURE_INVALID")
    if not _sign.SEEN_NONCES.add(app_id, nonce, now):
        raise SignatureInvalid("points: nonce replayed", code="NONCE_REPLAYED")
