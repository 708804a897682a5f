"""``Idempotency-Key`` on POST: same key + same body replays the stored response; same key +
other body is a conflict; two concurrent requests with one key never both execute.

The unique (client, key) row is inserted, and committed, before the request executes: that insert
is the lock. A request that finds the row in progress is told to retry; one that finds it
completed gets the stored response. Server errors (5xx) release the key so a retry executes
again. A row left in progress by a crashed process is taken over once it is stale.

A view whose work is database writes only (``ApiView.atomic_post``) writes the row once,
completed, with the work: on PostgreSQL in the work's own statement (``idempotency_answered``
fills the row in; ``paycore.writes.insert_family`` writes it with the order), elsewhere, or when
that statement finds the key taken (``idempotency_key_taken``), at the end of the work's
transaction (``idempotency_complete``). The work and its stored answer commit together or not at
all, so no row is ever left in progress. Two such requests with one key may both run, but only
one commits: the other's insert finds the key taken (waiting for the first transaction if it is
still open), its work is rolled back, and it answers what the key holds (the stored answer, or a
conflict). A claim left in progress by a crashed request of the same content is taken over once
stale, as above. One write per request instead of a claim and a completion: the order-creating
POST is the API's busiest.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError
from django.utils import timezone

from paycore.errors import IdempotencyInProgress, IdempotencyKeyReused, InvalidRequest
from paycore.models import IDEMPOTENCY_KEY_CONSTRAINT, ApiClient, IdempotencyRecord
from paycore.writes import insert_unless_exists, update_columns

MAX_KEY_LENGTH = 255


class Replay(Exception):
    """Control flow: the stored response of a completed request is to be sent again."""

    def __init__(self, status: int, body: Any) -> None:
        super().__init__("replay")
        self.status, self.body = status, body


def request_fingerprint(method: str, path: str, body: bytes) -> str:
    try:
        canonical = json.dumps(json.loads(body or b"null"), sort_keys=True, separators=(",", ":")).encode()
    except (ValueError, UnicodeDecodeError, RecursionError):
        canonical = body
    return hashlib.sha256(method.encode() + b" " + path.encode() + b"\n" + canonical).hexdigest()


class KeyTaken(Exception):
    """Control flow: another request holds this key; roll the work back, then raise ``answer``."""

    def __init__(self, answer: Exception) -> None:
        super().__init__("idempotency key taken")
        self.answer = answer


def idempotency_request(*, client: ApiClient, key: str, method: str, path: str, body: bytes) -> IdempotencyRecord:
    """The key's record for this request, not yet written (a malformed key is refused)."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters", extra={"header": "Idempotency-Key"}
        )
    fingerprint = request_fingerprint(method, path, body)
    return IdempotencyRecord(client=client, key=key, method=method, path=path, request_hash=fingerprint)


def idempotency_begin(*, client: ApiClient, key: str, method: str, path: str, body: bytes) -> IdempotencyRecord:
    """Claim the key or raise ``Replay`` / ``IdempotencyKeyReused`` / ``IdempotencyInProgress``."""
    claim = idempotency_request(client=client, key=key, method=method, path=path, body=body)
    if not insert_unless_exists(claim, conflict_fields=("client", "key")):
        answer = _settle(claim)
        if answer is not None:
            raise answer
    return claim


def idempotency_finish(record: IdempotencyRecord, *, status: int, body: Any) -> None:
    if status >= 500:
        IdempotencyRecord.objects.filter(pk=record.pk).delete()
        return
    update_columns(
        IdempotencyRecord,
        record.pk,
        state=IdempotencyRecord.State.COMPLETED,
        response_status=status,
        response_body=body,
        completed_at=timezone.now(),
    )


def idempotency_answered(record: IdempotencyRecord, *, status: int, body: Any) -> None:
    """Complete the (unwritten) record with its answer, for writing with the request's work."""
    record.state, record.response_status, record.response_body = IdempotencyRecord.State.COMPLETED, status, body
    record.completed_at = timezone.now()


def idempotency_key_taken(error: IntegrityError) -> bool:
    """Whether a statement writing a record with its work failed on the key alone (PostgreSQL)."""
    return getattr(getattr(error.__cause__, "diag", None), "constraint_name", None) == IDEMPOTENCY_KEY_CONSTRAINT


def idempotency_complete(record: IdempotencyRecord, *, status: int, body: Any) -> None:
    """Store the answer of a request whose work runs in the current transaction, in one write,
    or raise ``KeyTaken`` (the caller rolls the work back and raises its answer). A server error
    stores nothing, so a retry runs again."""
    if status >= 500:
        return
    idempotency_answered(record, status=status, body=body)
    if not insert_unless_exists(record, conflict_fields=("client", "key")):
        answer = _settle(record)
        if answer is not None:
            raise KeyTaken(answer)


def _settle(record: IdempotencyRecord) -> Exception | None:
    """A request found its key taken. None if it takes the key over from a request of the same
    content that crashed holding it (in progress past ``IDEMPOTENCY_STALE_SECONDS``): the row
    becomes ``record``'s, completed at once if it carries an answer. Otherwise the answer, as the
    exception to raise: ``Replay`` (the stored answer), ``IdempotencyKeyReused`` (another
    request's key) or ``IdempotencyInProgress``."""
    stored = IdempotencyRecord.objects.get(client=record.client, key=record.key)
    if stored.request_hash != record.request_hash:
        return IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", extra={"idempotency_key": record.key}
        )
    if stored.state == IdempotencyRecord.State.COMPLETED:
        return Replay(stored.response_status or 200, stored.response_body)
    stale_before = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS)
    taken = IdempotencyRecord.objects.filter(
        pk=stored.pk, state=IdempotencyRecord.State.IN_PROGRESS, created_at__lt=stale_before
    ).update(
        created_at=timezone.now(),
        state=record.state,
        response_status=record.response_status,
        response_body=record.response_body,
        completed_at=record.completed_at,
    )
    if taken:
        record.pk = stored.pk
        return None
    return IdempotencyInProgress(
        "a request with this Idempotency-Key is still being processed; retry shortly",
        extra={"idempotency_key": record.key},
    )
