"""The mechanics every sweep shares: lease-claimed batches, per-row isolation, back-off, one
summary log line.

A sweep is the last line of defence when a message was lost, so it must be correct with any
number of workers and overlapping runs. Rows are claimed, not locked across the work: no row
lock is ever held while a channel is thinking. Claiming happens in one short transaction that
picks due rows with ``FOR NO KEY UPDATE SKIP LOCKED`` and pushes their due time (the lease
column) past the lease; a second run skips them, both while the claim commits and afterwards,
because they are no longer due. Before each row is worked the lease is renewed with a
compare-and-set on the value this run wrote, so a row whose lease ran out while an earlier row
was slow is skipped rather than worked by two runs at once.

The work of one row is a plain function of the row's primary key that returns when to look at
the row next (``None``: not again until something else schedules it). Any exception is recorded
on that row (attempt count, error text, a back-off due time) and never stops the batch.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from django.db import models, transaction
from django.db.models import Case, F, Value, When
from django.utils import timezone

from paycore.errors import failure_reason

log = logging.getLogger("paycore.sweeps")

# Delays between checks of one row: the first look soon, then less and less often.
DEFAULT_SCHEDULE: tuple[timedelta, ...] = (
    timedelta(seconds=15),
    timedelta(seconds=30),
    timedelta(minutes=1),
    timedelta(minutes=3),
    timedelta(minutes=10),
    timedelta(minutes=30),
    timedelta(hours=1),
)


def backoff(attempt: int, schedule: Sequence[timedelta] = DEFAULT_SCHEDULE) -> timedelta:
    """The delay after the ``attempt``-th try (1-based); the last step repeats."""
    return schedule[min(max(attempt, 1), len(schedule)) - 1]


def next_on_schedule(start: datetime, now: datetime, schedule: Sequence[timedelta] = DEFAULT_SCHEDULE) -> datetime:
    """The first point of the schedule, counted from ``start``, that lies after ``now``; the last
    step repeats (15 s, 45 s, 1 min 45 s, ... after start, then hourly)."""
    at = start
    for step in schedule:
        at += step
        if at > now:
            return at
    steps = (now - at) // schedule[-1] + 1
    return at + steps * schedule[-1]


@dataclass(frozen=True)
class Done:
    """What one row's work decided: an outcome label for the summary, and when to look again."""

    outcome: str
    next_at: datetime | None = None


@dataclass(frozen=True)
class Sweep:
    """One sweep: which rows are due, what to do with one, and the columns that track it.

    ``due`` narrows the model's rows to those this sweep handles (status, expiry...); the lease
    column must also be due (``<= now``, or NULL when ``null_is_due``).
    """

    name: str
    model: type[models.Model]
    due: Callable[[datetime], models.Q]
    work: Callable[[int], Done]
    lease_field: str = "next_check_at"
    attempts_field: str = "check_failures"
    error_field: str = "last_check_error"
    batch: int = 50
    lease: timedelta = timedelta(minutes=5)
    failure_schedule: Sequence[timedelta] = DEFAULT_SCHEDULE
    null_is_due: bool = False
    reset_on_success: bool = True  # False where the attempt count is the row's own history
    time_budget: float = 200.0  # seconds a run may spend working before it stops claiming more


@dataclass
class SweepReport:
    name: str
    claimed: int = 0
    skipped: int = 0
    failed: int = 0
    outcomes: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def worked(self) -> int:
        return sum(self.outcomes.values())

    def line(self) -> str:
        parts = " ".join(f"{k}={v}" for k, v in sorted(self.outcomes.items()))
        return (
            f"sweep={self.name} claimed={self.claimed} worked={self.worked} failed={self.failed} "
            f"skipped={self.skipped} seconds={self.seconds:.2f}{' ' + parts if parts else ''}"
        )


def sweep_run(sweep: Sweep, *, now: datetime | None = None) -> SweepReport:
    """Claim one batch of due rows and work each; returns (and logs) the summary."""
    started = time.monotonic()
    report = SweepReport(sweep.name)
    claims = _claim(sweep, now or timezone.now())
    report.claimed = len(claims)
    for pk, lease in claims:
        if time.monotonic() - started > sweep.time_budget:
            report.skipped += 1  # left leased: due again when the lease ends
            continue
        renewed = _renew(sweep, pk, lease)
        if renewed is None:
            report.skipped += 1  # another run owns it now
            continue
        lease = renewed
        try:
            done = sweep.work(pk)
        except Exception as exc:  # one row's failure is recorded on it and never stops the batch
            report.failed += 1
            _record_failure(sweep, pk, lease, exc)
            continue
        report.outcomes[done.outcome] = report.outcomes.get(done.outcome, 0) + 1
        _record_success(sweep, pk, lease, done)
    report.seconds = time.monotonic() - started
    log.info(report.line())
    return report


def sweep_drain(sweep: Sweep, *, max_runs: int = 1000) -> list[SweepReport]:
    """Run batches until one claims nothing (``manage.py sweep NAME`` without ``--once``)."""
    reports = []
    for _ in range(max_runs):
        report = sweep_run(sweep)
        reports.append(report)
        if report.claimed == 0 or report.worked + report.failed == 0:
            break
    return reports


def _due(sweep: Sweep, now: datetime) -> models.Q:
    lease_due = models.Q(**{f"{sweep.lease_field}__lte": now})
    if sweep.null_is_due:
        lease_due |= models.Q(**{f"{sweep.lease_field}__isnull": True})
    return sweep.due(now) & lease_due


def _claim(sweep: Sweep, now: datetime) -> list[tuple[Any, datetime]]:
    lease = now + sweep.lease
    manager = sweep.model._default_manager
    with transaction.atomic():
        pks = list(
            manager.filter(_due(sweep, now))
            .order_by(sweep.lease_field, "pk")
            .select_for_update(skip_locked=True, no_key=True, of=("self",))
            .values_list("pk", flat=True)[: sweep.batch]
        )
        if pks:
            manager.filter(pk__in=pks).update(**{sweep.lease_field: lease})
    return [(pk, lease) for pk in pks]


def _renew(sweep: Sweep, pk: Any, lease: datetime) -> datetime | None:
    """Compare-and-set the lease this run wrote; None when it is no longer ours."""
    renewed = timezone.now() + sweep.lease
    if renewed <= lease:
        renewed = lease + timedelta(microseconds=1)
    updated = sweep.model._default_manager.filter(pk=pk, **{sweep.lease_field: lease}).update(
        **{sweep.lease_field: renewed}
    )
    return renewed if updated else None


def _record_success(sweep: Sweep, pk: Any, lease: datetime, done: Done) -> None:
    # The next due time only if the lease is still ours: work that rescheduled the row itself
    # (a success, a close) has the last word on when it is due again.
    changes: dict[str, Any] = {
        sweep.lease_field: Case(
            When(**{sweep.lease_field: lease}, then=Value(done.next_at, output_field=models.DateTimeField())),
            default=F(sweep.lease_field),
        )
    }
    if sweep.reset_on_success:
        changes.update({sweep.attempts_field: 0, sweep.error_field: ""})
    sweep.model._default_manager.filter(pk=pk).update(**changes)


def _record_failure(sweep: Sweep, pk: Any, lease: datetime, exc: Exception) -> None:
    manager = sweep.model._default_manager
    attempts = (manager.filter(pk=pk).values_list(sweep.attempts_field, flat=True).first() or 0) + 1
    error = failure_reason(exc)
    log.warning("sweep=%s row=%s attempt=%s failed: %s", sweep.name, pk, attempts, error)
    manager.filter(pk=pk).update(
        **{
            sweep.attempts_field: attempts,
            sweep.error_field: error,
            sweep.lease_field: timezone.now() + backoff(attempts, sweep.failure_schedule),
        }
    )
