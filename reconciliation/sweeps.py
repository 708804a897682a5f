"""The daily reconciliation sweep (see paycore.sweeps for the mechanics).

Each enabled channel account gets a bill row per ended day (``bills_plan``, run at every claim:
idempotent, a few rows a day), due when its channel publishes the bill. A due row is reconciled:
its bill loaded and matched. A bill the channel says is not ready yet is asked for again after
``RECONCILIATION_RETRY_SECONDS``; an unreachable channel or a broken download is recorded on the
row and retried with the sweeps' back-off. A LOADED or REFUSED bill is never due again: a rerun
is ops' decision (``manage.py reconcile --account X --date D [--reload]``).

On a database reconciliation cannot run on (SQLite, the development default) the sweep finds
nothing due and says so once per process, rather than failing on every bill at every beat.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from django.db.models import Q

from paycore.sweeps import Done, Sweep
from reconciliation.models import ChannelBill
from reconciliation.services import bill_reconcile_due, bills_plan
from reconciliation.services.support import reconciliation_supported, unsupported_message

log = logging.getLogger(__name__)
_warned = False


def _pending_bills(now: datetime) -> Q:
    global _warned  # one warning per process is the point
    if not reconciliation_supported():
        if not _warned:
            log.warning("reconcile sweep skipped: %s", unsupported_message())
            _warned = True
        return Q(pk__in=[])
    bills_plan(now=now)  # the rows for days that have just ended (the claim then picks the due ones)
    return Q(status=ChannelBill.Status.PENDING)


def _reconcile(pk: int) -> Done:
    outcome, next_at = bill_reconcile_due(bill_id=pk)
    return Done(outcome, next_at)


# Retries of an unreachable channel: every 10 minutes at first, then hourly.
_FAILURES = (timedelta(minutes=10), timedelta(minutes=30), timedelta(hours=1))

RECONCILE = Sweep(
    name="reconcile",
    model=ChannelBill,
    due=_pending_bills,
    work=_reconcile,
    batch=4,  # a bill can hold millions of lines: few per run, the beat comes back soon
    lease=timedelta(hours=1),
    failure_schedule=_FAILURES,
    time_budget=180.0,
)
