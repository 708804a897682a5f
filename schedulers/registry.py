"""Every sweep by the name ops and the beat know it. A name may run several sweeps in turn (the
close sweep closes payments first, then the orders they leave without hope)."""

from __future__ import annotations

from datetime import timedelta

from inbox.sweeps import INBOX
from outbox.sweeps import CONSUMERS, WEBHOOKS
from paycore.sweeps import Sweep
from payments.sweeps import CLOSE_ORDERS, CLOSE_PAYMENTS, PAYCODE, SUCCESS
from reconciliation.sweeps import RECONCILE
from refunds.sweeps import REFUND, REPEAT

SWEEPS: dict[str, tuple[Sweep, ...]] = {
    "close": (CLOSE_PAYMENTS, CLOSE_ORDERS),
    "success": (SUCCESS,),
    "paycode": (PAYCODE,),
    "repeat": (REPEAT,),
    "refund": (REFUND,),
    "inbox": (INBOX,),
    "reconcile": (RECONCILE,),
    "webhooks": (WEBHOOKS,),
    "consumers": (CONSUMERS,),
}

# How often the beat runs each sweep unless ops change it in the admin (django-celery-beat).
DEFAULT_INTERVALS: dict[str, timedelta] = {
    "close": timedelta(minutes=1),
    "success": timedelta(seconds=15),
    "paycode": timedelta(seconds=2),
    "repeat": timedelta(minutes=1),
    "refund": timedelta(seconds=30),
    "inbox": timedelta(minutes=1),
    # Bills are due once a day per account (and while a channel says "not ready"): a look every
    # 10 minutes starts each soon after it is published.
    "reconcile": timedelta(minutes=10),
    # Merchant webhooks due for a retry, and anything a crash left unsent after its commit.
    "webhooks": timedelta(seconds=10),
    # Consumers inside paycore (risk...): each reads on from its own cursor.
    "consumers": timedelta(seconds=5),
}
