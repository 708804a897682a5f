"""Merchant webhooks: each event POSTed to its merchant's notify URL, signed, retried on a fixed
schedule until a 2xx, every attempt logged; FAILED for ops after the schedule (docs/webhooks.md).

The wait before the next attempt lives in the row (``next_attempt_at``), never in the broker:
the webhook sweep (``outbox.sweeps.WEBHOOKS``) claims what is due with paycore's sweep mechanics,
and the dispatcher woken after each commit runs the same sweep narrowed to the new events.

Per merchant, events go out in order where that is cheap: an event is not sent while an earlier
event of the same merchant is still pending and younger than ``ORDER_WINDOW`` (in flight, or
waiting for its first retries). After that the earlier one no longer holds the rest back, so one
broken event cannot stop a merchant's stream for a day. Receivers dedupe by event id.
"""

from __future__ import annotations

import contextvars
import json
import logging
import threading
import time
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import requests
from django.db import transaction
from django.db.models import Exists, OuterRef, Q
from django.utils import timezone

from orders.models import Merchant
from outbox.models import WebhookAttempt, WebhookSecretOverlap
from outbox.signing import EVENT_ID_HEADER, EVENT_TYPE_HEADER, signature_headers
from paycore.errors import NotFound
from paycore.models import OutboxEvent
from paycore.sweeps import Done, Sweep, SweepReport, sweep_run

log = logging.getLogger(__name__)
D = OutboxEvent.DeliveryStatus

# The wait before each attempt, counted from the previous one: attempt 1 at once, attempt 2
# 15 s after the first failed, ... attempt 9 twelve hours after the eighth (22 h 21 min after
# the first). After the ninth failure the delivery is FAILED and waits for ops.
SCHEDULE: tuple[timedelta, ...] = (
    timedelta(0),
    timedelta(seconds=15),
    timedelta(minutes=1),
    timedelta(minutes=5),
    timedelta(minutes=15),
    timedelta(hours=1),
    timedelta(hours=3),
    timedelta(hours=6),
    timedelta(hours=12),
)
# How long a pending event holds back later events of the same merchant.
ORDER_WINDOW = timedelta(minutes=5)
TIMEOUT = (3.05, 10)  # (connect, read) seconds
EXCERPT = 500  # bytes of the answer kept in the attempt log
# Events of one merchant delivered one after another by one dispatcher run before it leaves the
# rest to the sweep (or to the next dispatcher).
FOLLOW_LIMIT = 200

_http = threading.local()
# Set while a dispatcher runs: merchants it delivered to (it follows up on them itself).
_delivered: contextvars.ContextVar[set[int] | None] = contextvars.ContextVar("outbox_delivered", default=None)


def webhook_body(event: OutboxEvent) -> bytes:
    """The exact bytes POSTed (and signed): the same for every attempt of the event."""
    envelope = {
        "id": str(event.event_id),
        "type": event.topic,
        "created_at": event.created_at.isoformat(),
        "merchant": event.merchant.code if event.merchant else None,
        "data": event.payload,
    }
    return json.dumps(envelope, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def webhook_secrets(merchant: Merchant, *, now: datetime | None = None) -> list[str]:
    """The current secret, then the previous one while its overlap window lasts."""
    now = now or timezone.now()
    secrets = [merchant.webhook_secret] if merchant.webhook_secret else []
    try:
        overlap: WebhookSecretOverlap | None = merchant.webhook_secret_overlap  # select_related by the caller
    except WebhookSecretOverlap.DoesNotExist:
        overlap = None
    if overlap is not None and overlap.valid_until > now and overlap.previous_secret not in secrets:
        secrets.append(overlap.previous_secret)
    return secrets


def webhooks_due(now: datetime) -> Q:
    earlier_pending = OutboxEvent.objects.filter(
        merchant=OuterRef("merchant"),
        pk__lt=OuterRef("pk"),
        delivery_status=D.PENDING,
        created_at__gt=now - ORDER_WINDOW,
    )
    return Q(delivery_status=D.PENDING, merchant__isnull=False) & ~Q(Exists(earlier_pending))


def webhook_attempt(event_pk: int) -> Done:
    """POST the event once and record what came of it (the webhook sweep's work on one row)."""
    event = OutboxEvent.objects.select_related("merchant__webhook_secret_overlap").get(pk=event_pk)
    merchant = event.merchant
    if event.delivery_status != D.PENDING or merchant is None:
        return Done("not_pending")
    secrets = webhook_secrets(merchant)
    if not merchant.notify_url or not secrets:
        OutboxEvent.objects.filter(pk=event_pk, delivery_status=D.PENDING).update(
            delivery_status=D.NOT_SENT, last_error="the merchant has no notify URL or no webhook secret"
        )
        return Done("not_sent")
    body = webhook_body(event)
    headers = {
        "Content-Type": "application/json",
        "User-Agent": "paycore-webhooks/1",
        EVENT_ID_HEADER: str(event.event_id),
        EVENT_TYPE_HEADER: event.topic,
        **signature_headers(secrets=secrets, timestamp=int(time.time()), body=body),
    }
    started_at, started = timezone.now(), time.monotonic()
    status: int | None = None
    excerpt = error = ""
    try:
        with _session().post(
            merchant.notify_url, data=body, headers=headers, timeout=TIMEOUT, allow_redirects=False, stream=True
        ) as response:
            status = response.status_code
            excerpt = next(response.iter_content(EXCERPT), b"").decode("utf-8", "replace")
    except requests.RequestException as exc:  # no answer: counts as a failed attempt
        error = f"{type(exc).__name__}: {exc}"[:EXCERPT]
    latency_ms = int((time.monotonic() - started) * 1000)
    delivered = status is not None and 200 <= status < 300
    done = _record_attempt(
        event_pk,
        url=merchant.notify_url,
        started_at=started_at,
        status=status,
        latency_ms=latency_ms,
        excerpt=excerpt,
        error=error,
        delivered=delivered,
    )
    if delivered:
        _follow_up(merchant.pk)
    return done


@transaction.atomic
def _record_attempt(
    event_pk: int,
    *,
    url: str,
    started_at: datetime,
    status: int | None,
    latency_ms: int,
    excerpt: str,
    error: str,
    delivered: bool,
) -> Done:
    # The row is this run's by its lease (paycore.sweeps): no lock needed to count and update it.
    event = OutboxEvent.objects.only("pk", "attempts", "delivery_status", "event_id").get(pk=event_pk)
    number = WebhookAttempt.objects.filter(event_id=event_pk).count() + 1
    WebhookAttempt.objects.create(
        event_id=event_pk,
        number=number,
        url=url[:500],
        started_at=started_at,
        status_code=status,
        latency_ms=latency_ms,
        response_excerpt=excerpt[:EXCERPT],
        error=error,
        delivered=delivered,
    )
    now = timezone.now()
    event.attempts += 1
    fields = ["attempts", "last_error"]
    if delivered:
        event.delivery_status, event.delivered_at, event.last_error = D.DELIVERED, now, ""
        fields += ["delivery_status", "delivered_at"]
        done = Done("delivered")
    else:
        event.last_error = error or f"HTTP {status}: {excerpt[:200]}"
        if event.attempts >= len(SCHEDULE):
            event.delivery_status = D.FAILED
            fields.append("delivery_status")
            log.warning("webhook %s to %s FAILED after %s attempts", event.event_id, url, event.attempts)
            done = Done("failed")
        else:
            done = Done("retry", now + SCHEDULE[event.attempts])
    event.save(update_fields=fields)
    return done


WEBHOOKS = Sweep(
    name="webhooks",
    model=OutboxEvent,
    due=webhooks_due,
    work=webhook_attempt,
    lease_field="next_attempt_at",
    attempts_field="attempts",
    error_field="last_error",
    batch=100,
    lease=timedelta(minutes=2),  # longer than one attempt's timeouts
    failure_schedule=SCHEDULE[1:],
    null_is_due=True,  # a new event is due at once
    reset_on_success=False,  # the attempt count is the delivery's own history
    time_budget=120.0,
)


def webhooks_dispatch(
    *, event_pks: list[int] | None = None, merchant_ids: list[int] | None = None, now: datetime | None = None
) -> list[SweepReport]:
    """Deliver these events (or these merchants' due events) now, then, merchant by merchant,
    the events each delivery unblocked. What is not due (back-off, held back by an earlier
    event) is left to the sweep."""
    narrow = Q()
    if event_pks is not None:
        narrow &= Q(pk__in=event_pks)
    if merchant_ids is not None:
        narrow &= Q(merchant_id__in=merchant_ids)
    reports = []
    delivered: set[int] = set()
    token = _delivered.set(delivered)
    try:
        reports.append(sweep_run(_narrowed(narrow), now=now))
        for _ in range(FOLLOW_LIMIT):
            if not delivered:
                break
            merchants = sorted(delivered)
            delivered.clear()
            reports.append(sweep_run(_narrowed(Q(merchant_id__in=merchants))))
    finally:
        _delivered.reset(token)
    return reports


def _narrowed(narrow: Q) -> Sweep:
    return replace(WEBHOOKS, due=lambda now: webhooks_due(now) & narrow)


def _follow_up(merchant_id: int) -> None:
    """An event was delivered: the merchant's next one may have been waiting on it."""
    collecting = _delivered.get()
    if collecting is not None:
        collecting.add(merchant_id)  # the dispatcher running this follows up itself
        return
    from outbox.tasks import webhooks_dispatch as webhooks_dispatch_task

    webhooks_dispatch_task.delay(merchant_ids=[merchant_id])


def _session() -> requests.Session:
    session = getattr(_http, "session", None)
    if session is None:
        session = _http.session = requests.Session()
    return session


# --- ops and merchants asking again ---------------------------------------------------------
def webhook_resend(*, event_pks: list[int], actor: str) -> int:
    """Send these events again from the start of the schedule (ops' resend, a merchant's
    replay). Delivered ones are sent again too: receivers dedupe by event id."""
    with transaction.atomic(durable=True):
        rows = list(
            OutboxEvent.objects.filter(pk__in=event_pks, merchant__isnull=False)
            .select_for_update(no_key=True, of=("self",))
            .order_by("pk")
            .values_list("pk", flat=True)
        )
        OutboxEvent.objects.filter(pk__in=rows).update(
            delivery_status=D.PENDING,
            attempts=0,
            next_attempt_at=None,
            last_error="",
            requeued_at=timezone.now(),
            requeued_by=actor[:150],
        )
        if rows:
            from outbox.tasks import webhooks_dispatch as webhooks_dispatch_task

            transaction.on_commit(lambda: webhooks_dispatch_task.delay(event_pks=rows), robust=True)
    log.info("webhook resend of %s events by %s", len(rows), actor)
    return len(rows)


def webhook_replay(*, merchant: Merchant, after_event_id: str, actor: str, limit: int = 500) -> list[str]:
    """A merchant asks for every event after one it names (the replay API); returns the ids."""
    after = events_after(merchant=merchant, after_event_id=after_event_id)[:limit]
    rows = list(after.values_list("pk", "event_id"))
    webhook_resend(event_pks=[pk for pk, _ in rows], actor=actor)
    return [str(event_id) for _, event_id in rows]


def events_after(*, merchant: Merchant | None, after_event_id: str | None) -> Any:
    """The merchant's events after the named one, oldest first (all merchants' for None)."""
    events = OutboxEvent.objects.filter(merchant__isnull=False).select_related("merchant").order_by("pk")
    if merchant is not None:
        events = events.filter(merchant=merchant)
    if after_event_id:
        start = events.filter(event_id=after_event_id).values_list("pk", flat=True).first()
        if start is None:
            raise NotFound("no such event", extra={"after": after_event_id})
        events = events.filter(pk__gt=start)
    return events
