"""The webhook bench runs end to end on a small load: every event reaches the receiver and the
figures are printed. Correctness only; the bench's times are never asserted."""

from __future__ import annotations

import pytest

from bench.webhooks import Config, report, run
from paycore.models import OutboxEvent

pytestmark = pytest.mark.django_db(transaction=True)


def test_the_webhook_bench_delivers_every_event_once() -> None:
    config = Config(events=60, merchants=4, failure_rate=0.2, producers=2, workers=2, time_scale=0.001, timeout=60)
    result = run(config)
    assert result.delivered == 60 and result.duplicates == 0
    assert result.requests == 60 + result.failures_answered
    assert not OutboxEvent.objects.filter(topic="bench.ping").exclude(delivery_status="DELIVERED").exists()
    assert "delivered/s" in report(config, result)
