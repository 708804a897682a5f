"""Delivering the outbox: merchant webhooks, consumers inside paycore, and the risk rules."""

from outbox.services.consumers import (
    Consumer,
    consumer_register,
    consumer_skip_event,
    consumer_unregister,
    consumers_run,
)
from outbox.services.dispatch import outbox_wake
from outbox.services.risk import risk_velocity_decide
from outbox.services.secrets import webhook_secret_rotate
from outbox.services.webhooks import (
    SCHEDULE,
    WEBHOOKS,
    events_after,
    webhook_attempt,
    webhook_body,
    webhook_replay,
    webhook_resend,
    webhooks_dispatch,
)

__all__ = [
    "SCHEDULE",
    "WEBHOOKS",
    "Consumer",
    "consumer_register",
    "consumer_skip_event",
    "consumer_unregister",
    "consumers_run",
    "events_after",
    "outbox_wake",
    "risk_velocity_decide",
    "webhook_attempt",
    "webhook_body",
    "webhook_replay",
    "webhook_resend",
    "webhook_secret_rotate",
    "webhooks_dispatch",
]
