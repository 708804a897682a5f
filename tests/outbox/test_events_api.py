"""The events API: a merchant key lists its own events since an event id and has them sent
again; another merchant's events are neither listed nor replayed."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.db import transaction

from paycore.models import OutboxEvent
from paycore.outbox import outbox_add
from tests.outbox.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)


def ping(receiver: Receiver, n: int) -> OutboxEvent:
    with transaction.atomic():
        (event,) = outbox_add(topic="test.ping", key=f"k{n}", merchant_id=receiver.merchant.pk, payload={"n": n})
    return event


def test_a_merchant_lists_and_replays_its_events_since_an_id(
    receiver: Callable[..., Receiver], api_with_scopes: Callable[..., Any]
) -> None:
    shop, other = receiver(), receiver()
    events = [ping(shop, n) for n in range(3)]
    foreign = ping(other, 9)
    client = api_with_scopes("events:read", "events:write", merchant=shop.merchant)

    listed = client.get("/api/v1/events").json()
    assert [e["id"] for e in listed["results"]] == [str(e.event_id) for e in events]
    first = listed["results"][0]
    assert first["type"] == "test.ping" and first["data"] == {"n": 0} and first["merchant"] == shop.merchant.code
    assert first["delivery"]["status"] == "DELIVERED" and first["delivery"]["attempts"] == 1

    since = client.get("/api/v1/events", {"after": str(events[0].event_id)}).json()
    assert [e["id"] for e in since["results"]] == [str(e.event_id) for e in events[1:]]
    assert client.get("/api/v1/events", {"after": str(foreign.event_id)}).status_code == 404

    replay = client.post("/api/v1/events/replay", {"after": str(events[0].event_id)}, format="json")
    assert replay.status_code == 202
    assert replay.json() == {"replayed": 2, "event_ids": [str(e.event_id) for e in events[1:]]}
    got = [b["data"]["n"] for b in shop.bodies()]
    assert got == [0, 1, 2, 1, 2]  # sent again; the receiver dedupes by id
    assert len(shop.accepted()) == 3 and [b["data"]["n"] for b in other.bodies()] == [9]
    requeued = OutboxEvent.objects.get(pk=events[1].pk)
    assert requeued.requeued_by.startswith("api:") and requeued.delivery_status == "DELIVERED"


def test_events_need_their_scope(receiver: Callable[..., Receiver], api_with_scopes: Callable[..., Any]) -> None:
    shop = receiver()
    client = api_with_scopes("payments:read", merchant=shop.merchant)
    assert client.get("/api/v1/events").status_code == 403
    reader = api_with_scopes("events:read", merchant=shop.merchant)
    assert reader.post("/api/v1/events/replay", {"after": "x"}, format="json").status_code == 403
