"""Celery entry points: the dispatcher woken after each commit and one consumer's run. Each takes
ids and names only and calls an idempotent service (delivery is at least once)."""

from __future__ import annotations

from celery import shared_task


@shared_task(name="paycore.outbox.dispatch", soft_time_limit=150, time_limit=180)
def webhooks_dispatch(event_pks: list[int] | None = None, merchant_ids: list[int] | None = None) -> int:
    from outbox.services.webhooks import webhooks_dispatch as dispatch

    return sum(r.worked for r in dispatch(event_pks=event_pks, merchant_ids=merchant_ids))


@shared_task(name="paycore.outbox.consume", soft_time_limit=240, time_limit=270)
def consumer_run(name: str) -> int:
    from outbox.services.consumers import consumers_run

    return consumers_run(names=[name]).worked
