"""What wakes after a commit that wrote events: the webhook dispatcher for the new events and
each consumer that wants one of their topics, as separate tasks, so a slow or failing consumer
never delays the webhooks or another consumer. If this never runs (a crash right after the
commit), the webhook sweep and the consumers sweep deliver the events all the same."""

from __future__ import annotations

from paycore.models import OutboxEvent


def outbox_wake(event_pks: list[int]) -> None:
    from outbox.services.consumers import consumers_interested
    from outbox.tasks import consumer_run as consumer_run_task
    from outbox.tasks import webhooks_dispatch as webhooks_dispatch_task

    rows = list(OutboxEvent.objects.filter(pk__in=event_pks).values_list("pk", "topic", "delivery_status"))
    pending = [pk for pk, _, status in rows if status == OutboxEvent.DeliveryStatus.PENDING]
    if pending:
        webhooks_dispatch_task.delay(event_pks=pending)
    for name in consumers_interested({topic for _, topic, _ in rows}):
        consumer_run_task.delay(name)
