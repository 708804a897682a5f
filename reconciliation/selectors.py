"""Reads for the ops console: what needs a person now, and how each channel's days reconciled."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any

from django.db.models import BigIntegerField, Count, F, IntegerField, OuterRef, QuerySet, Subquery, Value
from django.db.models.functions import Cast
from django.utils import timezone

from inbox.models import InboundNotification
from payments.models import Payment
from payments.states import OPEN_STATES
from reconciliation.models import (
    PAYMENTS_PER_BLOCK,
    Discrepancy,
    ReconciledPaymentBlock,
    ReconciledRefund,
    ReconciliationRun,
)
from refunds.models import Refund


@dataclass(frozen=True)
class Attention:
    label: str
    count: int
    url: str  # the admin changelist, filtered to these rows
    urgent: bool = False


def ops_attention(*, now: datetime | None = None) -> list[Attention]:
    """Counts of what needs a person, each with the admin list that shows them."""
    now = now or timezone.now()
    since = now - timedelta(hours=24)
    open_discrepancies = dict(
        Discrepancy.objects.filter(status=Discrepancy.Status.OPEN)
        .values_list("kind")
        .annotate(n=Count("pk"))
        .values_list("kind", "n")
    )
    base = "/admin/reconciliation/discrepancy/?status__exact=OPEN"
    rows = [
        Attention(
            "Open discrepancies: money the channel moved that paycore does not show",
            open_discrepancies.get(Discrepancy.Kind.MISSING_LOCALLY, 0),
            f"{base}&kind__exact=MISSING_LOCALLY",
            urgent=True,
        ),
        Attention("Open discrepancies: all kinds", sum(open_discrepancies.values()), base),
        Attention(
            "Payments needing attention",
            Payment.objects.filter(status=Payment.Status.NEEDS_ATTENTION).count(),
            "/admin/payments/payment/?status__exact=NEEDS_ATTENTION",
            urgent=True,
        ),
        Attention(
            "Refunds needing attention",
            Refund.objects.filter(status=Refund.Status.NEEDS_ATTENTION).count(),
            "/admin/refunds/refund/?status__exact=NEEDS_ATTENTION",
            urgent=True,
        ),
        Attention(
            "Notifications needing attention",
            InboundNotification.objects.filter(outcome=InboundNotification.Outcome.NEEDS_ATTENTION).count(),
            "/admin/inbox/inboundnotification/?outcome__exact=NEEDS_ATTENTION",
        ),
        Attention(
            "Notifications rejected in the last 24 h",
            InboundNotification.objects.filter(
                verification=InboundNotification.Verification.REJECTED, received_at__gte=since
            ).count(),
            "/admin/inbox/inboundnotification/?verification__exact=REJECTED",
        ),
        Attention(
            "Stuck payments (still open past their expiry)",
            Payment.objects.filter(status__in=OPEN_STATES, expires_at__lt=now).count(),
            "/admin/payments/payment/?status__in=" + ",".join(sorted(OPEN_STATES)),
        ),
    ]
    return rows


@dataclass
class DayPoint:
    day: date
    matched: int = 0
    discrepant: int = 0
    matched_amount: int = 0
    discrepant_amount: int = 0


@dataclass
class ChannelSeries:
    channel: str
    currency: str
    days: list[DayPoint] = field(default_factory=list)


def reconciliation_series(*, days: int = 30, today: date | None = None) -> list[ChannelSeries]:
    """Per channel and currency, per bill day of the last ``days``: matched vs discrepant counts
    and amounts, from the latest finished run of each account's day."""
    today = today or timezone.now().date()
    first = today - timedelta(days=days - 1)
    runs = (
        ReconciliationRun.objects.filter(status=ReconciliationRun.Status.SUCCEEDED, bill_date__gte=first)
        .select_related("channel_account")
        .order_by("channel_account_id", "bill_date", "-pk")
    )
    latest: dict[tuple[int, date], ReconciliationRun] = {}
    for run in runs:
        latest.setdefault((run.channel_account_id, run.bill_date), run)
    grid: dict[tuple[str, str], dict[date, DayPoint]] = defaultdict(dict)
    for run in latest.values():
        totals: dict[str, Any] = run.totals or {}
        currencies = [c for c in totals if c] or [""]
        for currency in currencies:
            point = grid[(run.channel_account.channel, currency)].setdefault(run.bill_date, DayPoint(run.bill_date))
            part = totals.get(currency, {})
            if currency == currencies[0]:  # counts once per run
                point.matched += run.matched
                point.discrepant += run.discrepancies
            point.matched_amount += int(part.get("matched_amount", 0))
            point.discrepant_amount += int(part.get("discrepant_amount", 0))
    series = []
    for (channel, currency), by_day in sorted(grid.items()):
        points = [by_day.get(first + timedelta(days=i), DayPoint(first + timedelta(days=i))) for i in range(days)]
        series.append(ChannelSeries(channel, currency, points))
    return series


def _stamps_of(payment_id: Any) -> QuerySet[ReconciledPaymentBlock]:
    """The block rows with the bit of ``payment_id`` (an expression) set, earliest first."""
    bit = Cast(payment_id % PAYMENTS_PER_BLOCK, IntegerField())
    mask = Cast(Value(1), BigIntegerField()).bitleftshift(bit)  # a bigint 1: an int 1 << 40 wraps
    stamps = ReconciledPaymentBlock.objects.filter(block=payment_id / PAYMENTS_PER_BLOCK)
    return stamps.annotate(hit=F("bits").bitand(mask)).exclude(hit=0).order_by("reconciled_at")


def payment_reconciled_at(payment_id: int) -> datetime | None:
    """When a bill first matched the payment (None: not yet)."""
    stamps = _stamps_of(Value(payment_id, output_field=BigIntegerField()))
    return stamps.values_list("reconciled_at", flat=True).first()


def refund_reconciled_at(refund_id: int) -> datetime | None:
    """When a bill first matched the refund or revocation (None: not yet)."""
    return ReconciledRefund.objects.filter(refund_id=refund_id).values_list("reconciled_at", flat=True).first()


def with_reconciled_at(payments: QuerySet[Payment]) -> QuerySet[Payment]:
    """Payments annotated ``bill_reconciled_at`` (their block's stamp), for lists and filters."""
    stamp = _stamps_of(OuterRef("pk")).values("reconciled_at")[:1]
    return payments.annotate(bill_reconciled_at=Subquery(stamp))
