"""Write outbox rows inside the caller's transaction; after it commits, whoever listens is woken.

Every app writes its events here, so the kernel knows no app. What an event says to each
merchant is decided by a *fan-out* registered for its topic's family (``payment.``, ``refund.``)
by the app that delivers events (outbox.apps): it is given the subject (the locked, saved row
the change is about) and returns one draft per merchant concerned, each with only that
merchant's part. Without a fan-out the event is written as given.

A crash between the commit and the wake-up loses nothing: the rows are committed, and the
webhook sweep and the consumers' sweep pick them up.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import connections, transaction

from paycore.models import OutboxEvent

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class EventDraft:
    """One event as it will be stored: who it is for, what they are sent, what stays inside."""

    merchant_id: int | None
    payload: dict[str, Any]
    context: dict[str, Any] = field(default_factory=dict)


# (topic, key, subject, payload) -> the drafts to write
FanOut = Callable[[str, str, Any, dict[str, Any]], Iterable[EventDraft]]
Listener = Callable[[list[int]], None]

_FAN_OUTS: dict[str, FanOut] = {}
_LISTENERS: list[Listener] = []


def outbox_register_fan_out(family: str, fan_out: FanOut) -> None:
    """``family`` is a topic prefix ending in a dot (``"payment."``)."""
    if not family.endswith("."):
        raise ValueError("a fan-out is registered for a topic family such as 'payment.'")
    _FAN_OUTS[family] = fan_out


def outbox_listen(listener: Listener) -> None:
    """Call ``listener(event_pks)`` after each commit that wrote events (robust: a failing
    listener is logged and never undoes or blocks the commit)."""
    if listener not in _LISTENERS:
        _LISTENERS.append(listener)


def outbox_add(
    *,
    topic: str,
    key: str,
    payload: dict[str, Any] | None = None,
    subject: Any = None,
    merchant_id: int | None = None,
    context: dict[str, Any] | None = None,
) -> list[OutboxEvent]:
    """Write the event (one row per merchant concerned) in the current transaction."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("outbox_add must run inside the transaction of the state change")
    fan_out = _FAN_OUTS.get(topic.split(".", 1)[0] + ".")
    if fan_out is not None:
        drafts = list(fan_out(topic, key, subject, dict(payload or {})))
    else:
        drafts = [EventDraft(merchant_id=merchant_id, payload=dict(payload or {}), context=dict(context or {}))]
    if context:
        drafts = [EventDraft(d.merchant_id, d.payload, {**context, **d.context}) for d in drafts]
    txid = _current_txid(connection.alias)
    events = [
        OutboxEvent.objects.create(
            topic=topic,
            key=key,
            merchant_id=d.merchant_id,
            payload=d.payload,
            context=d.context,
            txid=txid,
            delivery_status=OutboxEvent.DeliveryStatus.PENDING
            if d.merchant_id is not None
            else OutboxEvent.DeliveryStatus.NOT_SENT,
        )
        for d in drafts
    ]
    pks = [e.pk for e in events]
    if pks and _LISTENERS:
        transaction.on_commit(lambda: _wake(pks), robust=True)
    return events


def outbox_stream_horizon(using: str = "default") -> int | None:
    """The smallest transaction id that may still commit events: every event with a smaller
    ``txid`` is visible now and no more will appear below it. None: no limit (a database with a
    single writer). Read it in a statement of its own, before the events.

    Transaction ids are shared by every database of a PostgreSQL cluster: a transaction known
    (from pg_stat_activity) to run in another database cannot write this outbox and is left out;
    any other, including one whose session this role may not see, holds the horizon back."""
    connection = connections[using]
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(_HORIZON_SQL)
        return int(cursor.fetchone()[0])


_HORIZON_SQL = """
WITH snap AS (SELECT pg_current_snapshot() AS s),
elsewhere AS (
    SELECT backend_xid::text::bigint AS xid FROM pg_stat_activity
    WHERE backend_xid IS NOT NULL AND datid <> (SELECT oid FROM pg_database WHERE datname = current_database())
)
SELECT LEAST(
    pg_snapshot_xmax(s)::text::bigint,
    (SELECT min(x::text::bigint) FROM pg_snapshot_xip(s) AS x
     WHERE x::text::bigint % 4294967296 NOT IN (SELECT xid FROM elsewhere))
) FROM snap
"""


def _current_txid(using: str) -> int:
    connection = connections[using]
    if connection.vendor != "postgresql":
        return 0
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_current_xact_id()::text::bigint")
        return int(cursor.fetchone()[0])


def _wake(pks: list[int]) -> None:
    for listener in list(_LISTENERS):
        try:
            listener(pks)
        except Exception:  # a listener's trouble never reaches the committed change; sweeps catch up
            log.exception("outbox listener %r failed for events %s", listener, pks)
