"""``Idempotency-Key`` on POST: same key + same body replays the stored response; same key +
other body is a conflict; two concurrent requests with one key never both execute.

The unique (client, key) row is inserted, and committed, before the request executes: that insert
is the lock. A request that finds the row in progress is told to retry; one that finds it
completed gets the stored response. Server errors (5xx) release the key so a retry executes
again. A row left in progress by a crashed process is taken over once it is stale.

A view that runs in one transaction (``ApiView.atomic_post``) inserts the row in that transaction
instead: the uncommitted row is the lock (a concurrent insert of the same key waits for the
commit, then finds the completed row), and a failure rolls the key back with the work.
"""

from __future__ import annotations

import hashlib
import json
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from paycore.errors import IdempotencyInProgress, IdempotencyKeyReused, InvalidRequest
from paycore.models import ApiClient, IdempotencyRecord
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


def idempotency_begin(*, client: ApiClient, key: str, method: str, path: str, body: bytes) -> IdempotencyRecord:
    """Claim the key or raise ``Replay`` / ``IdempotencyKeyReused`` / ``IdempotencyInProgress``."""
    if not key or len(key) > MAX_KEY_LENGTH or not key.isprintable():
        raise InvalidRequest(
            f"Idempotency-Key must be 1-{MAX_KEY_LENGTH} printable characters", extra={"header": "Idempotency-Key"}
        )
    fingerprint = request_fingerprint(method, path, body)
    claim = IdempotencyRecord(client=client, key=key, method=method, path=path, request_hash=fingerprint)
    if insert_unless_exists(claim, conflict_fields=("client", "key")):
        return claim
    record = IdempotencyRecord.objects.get(client=client, key=key)
    if record.request_hash != fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used with a different request", extra={"idempotency_key": key}
        )
    if record.state == IdempotencyRecord.State.COMPLETED:
        raise Replay(record.response_status or 200, record.response_body)
    stale_before = timezone.now() - timedelta(seconds=settings.IDEMPOTENCY_STALE_SECONDS)
    taken = IdempotencyRecord.objects.filter(
        pk=record.pk, state=IdempotencyRecord.State.IN_PROGRESS, created_at__lt=stale_before
    ).update(created_at=timezone.now())
    if taken:
        return record
    raise IdempotencyInProgress(
        "a request with this Idempotency-Key is still being processed; retry shortly", extra={"idempotency_key": key}
    )


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
