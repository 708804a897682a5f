"""Consumers inside paycore on the event stream: the hook point for risk, campaigns, reporting.

Each consumer registers a handler and the topics it wants (``consumer_register``, usually in
its app's ``ready()``) and gets a cursor of its own (``ConsumerCursor``): it reads the stream in
order, one event at a time, and only its own cursor moves. A handler that raises stops only its
own consumer, which is retried with back-off from the same event (the error is on the cursor row
in the admin); the others and the merchant webhooks go on. Delivery is at least once: a handler
must be idempotent (e.g. a unique row per event it acts on).

The stream is read by (transaction id, event id), and only below the oldest transaction still
running (``outbox_stream_horizon``): an event whose transaction commits late, with a smaller
event id than events already read, is therefore never skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from outbox.models import ConsumerCursor
from paycore.models import OutboxEvent
from paycore.outbox import outbox_stream_horizon
from paycore.sweeps import Done, Sweep, SweepReport, sweep_run

log = logging.getLogger(__name__)

Handler = Callable[[OutboxEvent], None]

# Events one run of a consumer handles before it lets the others have the worker.
BATCH = 200


@dataclass(frozen=True)
class Consumer:
    name: str
    handle: Handler
    topics: frozenset[str] | None = None  # None: every topic


_CONSUMERS: dict[str, Consumer] = {}


def consumer_register(name: str, handle: Handler, *, topics: frozenset[str] | set[str] | None = None) -> Consumer:
    """Register (or replace) a consumer. Its cursor starts at the beginning of the stream."""
    consumer = Consumer(name=name, handle=handle, topics=frozenset(topics) if topics is not None else None)
    _CONSUMERS[name] = consumer
    return consumer


def consumer_unregister(name: str) -> None:
    _CONSUMERS.pop(name, None)


def consumers_registered() -> dict[str, Consumer]:
    return dict(_CONSUMERS)


def consumers_interested(topics: set[str]) -> list[str]:
    return [c.name for c in _CONSUMERS.values() if c.topics is None or c.topics & topics]


def consumer_cursors_ensure() -> None:
    ConsumerCursor.objects.bulk_create(
        [ConsumerCursor(name=name) for name in _CONSUMERS], ignore_conflicts=True, batch_size=100
    )


def consumer_step(cursor_pk: int) -> Done:
    """One run of one consumer (the consumers sweep's work on its cursor row): handle up to
    ``BATCH`` events after the cursor, moving it after each. A failing handler raises out of
    here with the cursor on the event before, so the sweep records the failure on the row and
    retries it with back-off."""
    cursor = ConsumerCursor.objects.get(pk=cursor_pk)
    consumer = _CONSUMERS.get(cursor.name)
    if consumer is None:
        return Done("unregistered")
    horizon = outbox_stream_horizon()
    events = OutboxEvent.objects.filter(
        Q(txid__gt=cursor.last_txid) | Q(txid=cursor.last_txid, pk__gt=cursor.last_event_pk)
    ).order_by("txid", "pk")
    if horizon is not None:
        events = events.filter(txid__lt=horizon)
    if consumer.topics is not None:
        events = events.filter(topic__in=consumer.topics)
    handled = 0
    for event in events.select_related("merchant")[:BATCH]:
        consumer.handle(event)
        ConsumerCursor.objects.filter(pk=cursor_pk).update(
            last_txid=event.txid, last_event_pk=event.pk, handled=cursor.handled + handled + 1
        )
        handled += 1
    # A full batch: more may be waiting, so due again at once; else when woken or swept.
    return Done("handled" if handled else "idle", timezone.now() if handled == BATCH else None)


CONSUMERS = Sweep(
    name="consumers",
    model=ConsumerCursor,
    due=lambda now: Q(name__in=list(_CONSUMERS)),
    work=consumer_step,
    batch=20,
    lease=timedelta(minutes=5),
    null_is_due=True,  # an idle consumer is looked at by every run
)


def consumers_run(*, names: list[str] | None = None) -> SweepReport:
    """Run the consumers (those named, else all) once each: what the sweep and the wake-up do."""
    consumer_cursors_ensure()
    sweep = CONSUMERS if names is None else replace(CONSUMERS, due=lambda now: Q(name__in=names))
    return sweep_run(sweep)


def consumer_skip_event(*, name: str, actor: str) -> OutboxEvent | None:
    """Ops move a stuck consumer past the event its handler keeps failing on (logged)."""
    cursor = ConsumerCursor.objects.get(name=name)
    consumer = _CONSUMERS.get(name)
    events = OutboxEvent.objects.filter(
        Q(txid__gt=cursor.last_txid) | Q(txid=cursor.last_txid, pk__gt=cursor.last_event_pk)
    ).order_by("txid", "pk")
    if consumer is not None and consumer.topics is not None:
        events = events.filter(topic__in=consumer.topics)
    event = events.first()
    if event is None:
        return None
    ConsumerCursor.objects.filter(pk=cursor.pk).update(
        last_txid=event.txid,
        last_event_pk=event.pk,
        next_check_at=None,
        check_failures=0,
        last_check_error=f"skipped event {event.event_id} by {actor}"[:1000],
    )
    log.warning("consumer %s skipped event %s (%s) by %s", name, event.event_id, event.topic, actor)
    return event
