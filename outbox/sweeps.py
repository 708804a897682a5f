"""The outbox's sweeps, by the names the beat runs them under (schedulers.registry)."""

from outbox.services.consumers import CONSUMERS
from outbox.services.webhooks import WEBHOOKS

__all__ = ["CONSUMERS", "WEBHOOKS"]
