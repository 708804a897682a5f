"""Reconciling one channel account's day: plan it, load its bill, match it, record the run."""

from __future__ import annotations

import logging
import time
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, date, datetime, timedelta, tzinfo
from datetime import time as dtime
from decimal import Decimal, InvalidOperation

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels.base import BillNotReady
from channels.models import ChannelAccount
from channels.registry import adapter_class
from paycore.errors import Conflict
from reconciliation.models import ChannelBill, ReconciliationRun
from reconciliation.services.load import bill_fetch, bill_load
from reconciliation.services.match import FEE_RATE_DECIMALS, FEE_ROUNDINGS, MatchScope, match_bill
from reconciliation.services.phases import recording, summary
from reconciliation.services.support import ReconciliationUnsupported, reconciliation_supported, unsupported_message

log = logging.getLogger(__name__)

DEFAULT_HOLD_SECONDS = 1800
# When each channel's bill for a day can be asked for, counted from the day's end in its zone
# (WeChat and Alipay publish by 10:00 Beijing time, PayPal's reporting lags up to 3 hours);
# an account may say otherwise in options ``bill_ready_after_seconds``.
BILL_READY_AFTER: dict[str, timedelta] = {
    "wechat": timedelta(hours=10),
    "alipay": timedelta(hours=10),
    "paypal": timedelta(hours=3),
    "points": timedelta(hours=1),
}


def hold_seconds() -> int:
    return int(getattr(settings, "RECONCILIATION_HOLD_SECONDS", DEFAULT_HOLD_SECONDS))


def retry_seconds() -> int:
    """How long to wait before asking again for a bill the channel says is not ready."""
    return int(getattr(settings, "RECONCILIATION_RETRY_SECONDS", 1800))


def bill_zone(account: ChannelAccount) -> tzinfo:
    return adapter_class(account.channel).bill_timezone


def day_window(account: ChannelAccount, bill_date: date) -> tuple[datetime, datetime]:
    start = datetime.combine(bill_date, dtime(0), tzinfo=bill_zone(account))
    return start, start + timedelta(days=1)


def bill_ready_at(account: ChannelAccount, bill_date: date) -> datetime:
    after = account.options.get("bill_ready_after_seconds")
    delay = timedelta(seconds=int(after)) if after is not None else BILL_READY_AFTER.get(account.channel, timedelta())
    return day_window(account, bill_date)[1] + delay


def bill_for(*, account: ChannelAccount, bill_date: date) -> ChannelBill:
    """The account's bill row for the day (created PENDING, due when the channel publishes)."""
    bill, _ = ChannelBill.objects.get_or_create(
        channel_account=account,
        bill_date=bill_date,
        defaults={"next_check_at": bill_ready_at(account, bill_date)},
    )
    return bill


def bills_plan(*, now: datetime | None = None, days_back: int = 3) -> int:
    """Make sure every enabled account has a bill row for each of the last ``days_back`` ended
    days (in its channel's zone). Idempotent; returns how many rows it created."""
    now = now or timezone.now()
    created = 0
    for account in ChannelAccount.objects.filter(is_enabled=True):
        today = now.astimezone(bill_zone(account)).date()
        for back in range(1, days_back + 1):
            day = today - timedelta(days=back)
            _, made = ChannelBill.objects.get_or_create(
                channel_account=account, bill_date=day, defaults={"next_check_at": bill_ready_at(account, day)}
            )
            created += made
    return created


@contextmanager
def _bill_lock(bill_id: int) -> Iterator[None]:
    """One reconciliation of a bill at a time (sweep, command and admin alike). An advisory
    lock: it guards no row, so holding it while the channel streams the file blocks nobody."""
    key = (7001 << 32) | zlib.crc32(f"reconciliation:{bill_id}".encode())  # one bigint key
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_try_advisory_lock(%s)", [key])
        (got,) = cursor.fetchone()
    if not got:
        raise Conflict("this bill is being reconciled right now", extra={"bill_id": bill_id})
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_unlock(%s)", [key])


def _fee_rule(account: ChannelAccount) -> tuple[Decimal | None, str, str]:
    """The account's published fee rate (options ``fee_rate`` e.g. "0.006", at most six
    decimals; ``fee_rounding`` half_up | down), and how line fees will be checked, in words for
    the run."""
    rate_text = account.options.get("fee_rate")
    rounding = str(account.options.get("fee_rounding") or "half_up")
    if rate_text in (None, ""):
        return (
            None,
            rounding,
            (
                "line fees stored, not checked: no fee_rate in the account's options; "
                "the bill's fee total was checked against its lines at load"
            ),
        )
    try:
        rate = Decimal(str(rate_text))
    except InvalidOperation:
        rate = None
    usable = rate is not None and rate.is_finite() and 0 <= rate < 1 and (rate * 10**FEE_RATE_DECIMALS) % 1 == 0
    if rate is None or not usable or rounding not in FEE_ROUNDINGS:
        return None, rounding, f"line fees not checked: unusable fee_rate {rate_text!r} / fee_rounding {rounding!r}"
    return rate, rounding, f"payment line fees checked against fee_rate {rate} ({rounding}); bill fee total at load"


def reconcile_day(
    *,
    account_id: int,
    bill_date: date,
    reload: bool = False,
    trigger: str = "command",
    actor: str = "",
    progress: Callable[[int], None] | None = None,
) -> ReconciliationRun:
    """Load the day's bill (unless already LOADED and ``reload`` is False) and match it.

    Raises ``BillNotReady`` (nothing recorded but the failed run) and channel errors for the
    caller to retry; a bill that contradicts itself ends as a REFUSED run. Rerunning a day is
    idempotent: the same discrepancies (found again, not duplicated), the same stamps. On a
    database other than PostgreSQL the run is recorded FAILED, saying so, and
    ``ReconciliationUnsupported`` raised: nothing is fetched, loaded or matched.
    """
    account = ChannelAccount.objects.get(pk=account_id)
    bill = bill_for(account=account, bill_date=bill_date)
    if not reconciliation_supported():
        message = unsupported_message()
        ReconciliationRun.objects.create(
            channel_account=account,
            bill=bill,
            bill_date=bill_date,
            trigger=trigger,
            actor=actor,
            status=ReconciliationRun.Status.FAILED,
            error=message,
            finished_at=timezone.now(),
        )
        raise ReconciliationUnsupported(message, extra={"bill_id": bill.pk})
    with _bill_lock(bill.pk), recording() as phases:
        bill.refresh_from_db()
        started = time.monotonic()
        must_load = reload or bill.status != ChannelBill.Status.LOADED
        # Asked first: a bill the channel has not published yet leaves no run behind.
        fetched = bill_fetch(bill_id=bill.pk) if must_load else None
        run = ReconciliationRun.objects.create(
            channel_account=account, bill=bill, bill_date=bill_date, trigger=trigger, actor=actor
        )
        try:
            if fetched is not None:
                bill = bill_load(bill_id=bill.pk, bill=fetched, progress=progress)
                run.reloaded = True
                run.load_seconds = time.monotonic() - started
            if bill.status == ChannelBill.Status.REFUSED:
                return _end(run, ReconciliationRun.Status.REFUSED, error=bill.refuse_reason)
            return _match(run, account, bill, phases)
        except BaseException as exc:
            _end(run, ReconciliationRun.Status.FAILED, error=f"{type(exc).__name__}: {getattr(exc, 'message', exc)}")
            raise


def _match(
    run: ReconciliationRun, account: ChannelAccount, bill: ChannelBill, phases: dict[str, float]
) -> ReconciliationRun:
    started = time.monotonic()
    start, end = day_window(account, bill.bill_date)
    hold = timedelta(seconds=hold_seconds())
    day_before_done = ChannelBill.objects.filter(
        channel_account=account, bill_date=bill.bill_date - timedelta(days=1), reconciled_at__isnull=False
    ).exists()
    rate, rounding, fee_check = _fee_rule(account)
    now = timezone.now()
    scope = MatchScope(
        account_id=account.pk,
        bill_id=bill.pk,
        bill_date=bill.bill_date,
        run_id=run.pk,
        window_start=start.astimezone(UTC),
        window_end=end.astimezone(UTC),
        expected_from=(start - hold if day_before_done else start).astimezone(UTC),
        hold=hold,
        now=now,
        fee_rate=rate,
        fee_rounding=rounding,
        bill_totals=bill.line_totals,
    )
    with transaction.atomic(durable=True):
        result = match_bill(scope)
        ChannelBill.objects.filter(pk=bill.pk).update(reconciled_at=now, updated_at=now)
        run.lines = bill.line_count
        run.matched, run.held = result.matched, result.held
        run.discrepancies, run.new_discrepancies = result.found, result.new
        run.auto_resolved, run.counts, run.totals = result.auto_resolved, result.counts, result.totals
        run.fee_check = fee_check
        run.match_seconds = time.monotonic() - started
        run.status, run.finished_at = ReconciliationRun.Status.SUCCEEDED, timezone.now()
        run.save()
    log.info(
        "reconciliation account=%s date=%s run=%s lines=%s matched=%s held=%s discrepancies=%s new=%s %s",
        account.pk,
        bill.bill_date,
        run.pk,
        run.lines,
        run.matched,
        run.held,
        run.discrepancies,
        run.new_discrepancies,
        " ".join(f"{k}={v}" for k, v in sorted(run.counts.items())),
    )
    log.info("reconciliation run=%s phases: %s", run.pk, summary(phases))
    return run


def _end(run: ReconciliationRun, status: str, *, error: str) -> ReconciliationRun:
    run.status, run.error, run.finished_at = status, error[:2000], timezone.now()
    run.save(update_fields=["status", "error", "finished_at", "reloaded", "load_seconds"])
    return run


def bill_reconcile_due(*, bill_id: int) -> tuple[str, datetime | None]:
    """The sweep's work on one PENDING bill: reconcile it, or say when to ask again."""
    bill = ChannelBill.objects.select_related("channel_account").get(pk=bill_id)
    if bill.status != ChannelBill.Status.PENDING:
        return "already_" + bill.status.lower(), None
    try:
        run = reconcile_day(account_id=bill.channel_account_id, bill_date=bill.bill_date, trigger="sweep")
    except BillNotReady:
        return "not_ready", timezone.now() + timedelta(seconds=retry_seconds())
    return run.status.lower(), None
