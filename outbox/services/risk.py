"""Risk rules on the event stream: the velocity rule suspends a merchant whose paid volume jumps.

For each ``payment.succeeded`` event (one per merchant, carrying that merchant's part), the rule
counts the merchant's orders recorded paid (their PAID order events, on paycore's clock) in the
sliding window that ends at the event (``RISK_VELOCITY_WINDOW_SECONDS``), and their amount in the
event's currency, and compares:

- with absolute limits: more than ``RISK_VELOCITY_MAX_COUNT`` orders, or more than
  ``RISK_VELOCITY_MAX_AMOUNT`` minor units (per currency in ``RISK_VELOCITY_MAX_AMOUNTS``);
- with the merchant's own baseline: the median of its daily figures over the previous
  ``RISK_BASELINE_DAYS`` days (days without sales count as zero), scaled to the window. The
  window passing ``RISK_BASELINE_MULTIPLE`` times that baseline suspends, once the window holds
  at least ``RISK_BASELINE_MIN_COUNT`` orders (so a new merchant's first sales never do).

A window never reaches back before the merchant's last reinstatement: ops lifting a suspension
are not overruled by the very payments they reviewed. Every decision, suspend or not, is stored
(``RiskDecision``, unique per rule and event, so a replayed event decides once) and logged.
Suspending goes through ``orders.services.merchant_set_status``: new payments are refused with
``merchant_suspended``; payments already started finish and are recorded as usual.
"""

from __future__ import annotations

import logging
import statistics
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Sum
from django.db.models.functions import TruncDate
from django.utils import timezone

from orders.models import Merchant, Order, OrderEvent
from orders.services import merchant_set_status
from outbox.models import RiskDecision
from paycore.models import OutboxEvent

log = logging.getLogger(__name__)
RULE = "velocity"
ACTOR = "risk:velocity"


def risk_handle(event: OutboxEvent) -> None:
    """The risk consumer's handler (registered in outbox.apps)."""
    if event.topic == "payment.succeeded" and event.merchant_id is not None:
        risk_velocity_decide(event=event)


def risk_velocity_decide(*, event: OutboxEvent) -> RiskDecision:
    existing = RiskDecision.objects.filter(rule=RULE, event=event).first()
    if existing is None:
        existing = _decide(event)
    if existing.outcome == RiskDecision.Outcome.SUSPEND and existing.applied_at is None:
        _suspend(existing)
    return existing


def velocity_figures(*, merchant: Merchant, currency: str, end: datetime) -> dict[str, Any]:
    window = timedelta(seconds=settings.RISK_VELOCITY_WINDOW_SECONDS)
    start = end - window
    reinstated = (
        OutboxEvent.objects.filter(merchant=merchant, topic="merchant.reinstated", created_at__lte=end)
        .order_by("-pk")
        .values_list("created_at", flat=True)
        .first()
    )
    if reinstated is not None and reinstated > start:
        start = reinstated
    # When paycore recorded each order paid (its PAID event), on paycore's own clock.
    paid = OrderEvent.objects.filter(order__merchant=merchant, to_status=Order.Status.PAID)
    window_paid = paid.filter(created_at__gt=start, created_at__lte=end)
    in_window = window_paid.filter(order__currency=currency).aggregate(count=Count("pk"), amount=Sum("order__amount"))
    count_all = window_paid.count()
    days = settings.RISK_BASELINE_DAYS
    day_end = end.replace(hour=0, minute=0, second=0, microsecond=0)
    daily = {
        row["day"]: (row["count"], row["amount"] or 0)
        for row in paid.filter(
            order__currency=currency, created_at__gte=day_end - timedelta(days=days), created_at__lt=day_end
        )
        .annotate(day=TruncDate("created_at"))
        .values("day")
        .annotate(count=Count("pk"), amount=Sum("order__amount"))
    }
    counts = [c for c, _ in daily.values()] + [0] * (days - len(daily))
    amounts = [a for _, a in daily.values()] + [0] * (days - len(daily))
    scale = window.total_seconds() / 86400
    return {
        "currency": currency,
        "window_start": start.isoformat(),
        "window_end": end.isoformat(),
        "window_seconds": int(window.total_seconds()),
        "count": in_window["count"],
        "count_all_currencies": count_all,
        "amount": in_window["amount"] or 0,
        "baseline_days": days,
        "baseline_daily_count": statistics.median(counts) if counts else 0,
        "baseline_daily_amount": statistics.median(amounts) if amounts else 0,
        "baseline_window_count": round((statistics.median(counts) if counts else 0) * scale, 3),
        "baseline_window_amount": round((statistics.median(amounts) if amounts else 0) * scale, 3),
    }


def velocity_reasons(figures: dict[str, Any]) -> list[str]:
    limits = _limits(figures["currency"])
    reasons = []
    if figures["count_all_currencies"] > limits["max_count"]:
        reasons.append(f"count {figures['count_all_currencies']} > limit {limits['max_count']}")
    if figures["amount"] > limits["max_amount"]:
        reasons.append(f"amount {figures['amount']} > limit {limits['max_amount']} {figures['currency']}")
    if figures["count"] >= limits["min_count"]:
        multiple = limits["multiple"]
        if figures["count"] > multiple * figures["baseline_window_count"]:
            reasons.append(f"count {figures['count']} > {multiple} x baseline {figures['baseline_window_count']}")
        if figures["amount"] > multiple * figures["baseline_window_amount"]:
            reasons.append(f"amount {figures['amount']} > {multiple} x baseline {figures['baseline_window_amount']}")
    return reasons


def _limits(currency: str) -> dict[str, Any]:
    amounts: dict[str, int] = settings.RISK_VELOCITY_MAX_AMOUNTS
    return {
        "max_count": settings.RISK_VELOCITY_MAX_COUNT,
        "max_amount": amounts.get(currency, settings.RISK_VELOCITY_MAX_AMOUNT),
        "multiple": settings.RISK_BASELINE_MULTIPLE,
        "min_count": settings.RISK_BASELINE_MIN_COUNT,
    }


def _decide(event: OutboxEvent) -> RiskDecision:
    assert event.merchant_id is not None  # risk_handle looks only at merchants' events
    merchant = Merchant.objects.get(pk=event.merchant_id)
    end = event.created_at
    figures = velocity_figures(merchant=merchant, currency=event.payload.get("currency", ""), end=end)
    figures["limits"] = _limits(figures["currency"])
    reasons = velocity_reasons(figures)
    if merchant.status == Merchant.Status.SUSPENDED:
        outcome = RiskDecision.Outcome.ALREADY_SUSPENDED
    elif reasons:
        outcome = RiskDecision.Outcome.SUSPEND
    else:
        outcome = RiskDecision.Outcome.ALLOW
    log.info(
        "risk rule=%s merchant=%s event=%s outcome=%s count=%s amount=%s %s baseline=%s/%s reasons=%s",
        RULE,
        merchant.code,
        event.event_id,
        outcome,
        figures["count"],
        figures["amount"],
        figures["currency"],
        figures["baseline_window_count"],
        figures["baseline_window_amount"],
        "; ".join(reasons) or "-",
    )
    try:
        with transaction.atomic():
            return RiskDecision.objects.create(
                rule=RULE, merchant=merchant, event=event, outcome=outcome, reasons=reasons, figures=figures
            )
    except IntegrityError:  # decided meanwhile by another run of the consumer
        return RiskDecision.objects.get(rule=RULE, event=event)


def _suspend(decision: RiskDecision) -> None:
    merchant_set_status(
        merchant_id=decision.merchant_id,
        status=Merchant.Status.SUSPENDED,
        actor=ACTOR,
        reason="risk_review",
        evidence={
            "rule": RULE,
            "decision": decision.pk,
            "event_id": str(decision.event.event_id),
            "reasons": decision.reasons,
            "figures": decision.figures,
        },
    )
    RiskDecision.objects.filter(pk=decision.pk).update(applied_at=timezone.now())
