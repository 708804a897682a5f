"""The velocity rule on the event stream: a burst suspends the merchant, its next payment is
refused with a stable code, payments already started finish, other merchants go on, every
decision is stored with its figures, and ops see the evidence and lift the suspension."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from rest_framework.test import APIClient

from channels.models import ChannelAccount
from orders.models import Merchant, Order, OrderEvent
from outbox.models import RiskDecision
from outbox.services.risk import velocity_figures, velocity_reasons
from paycore.models import OutboxEvent
from payments.services import payment_sync_from_channel
from tests.factories import make_order, make_paid_payment, make_payment, pay_at_sandbox
from tests.outbox.conftest import Receiver

pytestmark = pytest.mark.django_db(transaction=True)
Outcome = RiskDecision.Outcome


@pytest.fixture
def burst_limits(settings: Any) -> None:
    settings.RISK_VELOCITY_MAX_COUNT = 3  # a fourth paid order in the window suspends
    settings.RISK_BASELINE_MIN_COUNT = 1000  # the baseline rule is tested on its own below


def record_paid(order: Order, at: Any) -> None:
    """History without a week of payments: the order's PAID event, dated as if recorded then."""
    OrderEvent.objects.create(order=order, from_status=order.status, to_status="PAID", source="scheduler")
    OrderEvent.objects.filter(order=order, to_status="PAID").update(created_at=at)


def pay(api: APIClient, order: Order) -> Any:
    body = {"order_nos": [order.order_no], "customer_ref": "cust-1", "channel": "wechat", "method": "app"}
    return api.post("/api/v1/payments", body, format="json")


def test_a_burst_suspends_the_merchant_and_only_its_new_payments_are_refused(
    burst_limits: None,
    receiver: Callable[..., Receiver],
    wechat_account: ChannelAccount,
    gateway_client: Any,
    api: APIClient,
) -> None:
    shop, other = receiver(), receiver()
    started = make_payment(account=wechat_account, orders=[make_order(merchant=shop.merchant)])
    waiting = make_order(merchant=shop.merchant)
    for _ in range(4):
        make_paid_payment(account=wechat_account, gateway=gateway_client, orders=[make_order(merchant=shop.merchant)])
    shop.merchant.refresh_from_db()
    assert shop.merchant.status == Merchant.Status.SUSPENDED
    decisions = list(RiskDecision.objects.filter(merchant=shop.merchant).order_by("pk"))
    assert [d.outcome for d in decisions] == [Outcome.ALLOW, Outcome.ALLOW, Outcome.ALLOW, Outcome.SUSPEND]
    assert [d.figures["count"] for d in decisions] == [1, 2, 3, 4]
    assert decisions[-1].reasons == ["count 4 > limit 3"] and decisions[-1].applied_at is not None

    refused = pay(api, waiting)
    assert refused.status_code == 409 and refused.json()["code"] == "merchant_suspended"
    assert pay(api, make_order(merchant=other.merchant)).status_code == 201

    pay_at_sandbox(gateway_client, started)  # started before the suspension: finishes and is recorded
    assert payment_sync_from_channel(payment_id=started.pk).status == "SUCCEEDED"
    assert Order.objects.get(payment_maps__payment=started).status == Order.Status.PAID
    assert (
        RiskDecision.objects.filter(merchant=shop.merchant).order_by("pk").last().outcome == Outcome.ALREADY_SUSPENDED
    )

    told = [b for b in shop.accepted() if b["type"] == "merchant.suspended"]
    assert [b["data"] for b in told] == [
        {"merchant": shop.merchant.code, "status": "SUSPENDED", "previous_status": "ACTIVE", "reason": "risk_review"}
    ]
    suspension = OutboxEvent.objects.get(merchant=shop.merchant, topic="merchant.suspended")
    assert suspension.context["actor"] == "risk:velocity"
    assert suspension.context["evidence"]["figures"]["count"] == 4


def test_ops_see_the_evidence_and_lift_the_suspension(
    burst_limits: None, receiver: Callable[..., Receiver], wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    shop = receiver()
    for _ in range(4):
        make_paid_payment(account=wechat_account, gateway=gateway_client, orders=[make_order(merchant=shop.merchant)])
    ops = Client()
    ops.force_login(get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123"))
    url = reverse("admin:outbox_suspendedmerchant_changelist")
    page = ops.get(url).content.decode()
    assert shop.merchant.code in page and "risk:velocity" in page and "count 4 &gt; limit 3" in page
    ops.post(url, {"action": "lift", "_selected_action": [shop.merchant.pk], "note": "known promotion"})
    shop.merchant.refresh_from_db()
    assert shop.merchant.status == Merchant.Status.ACTIVE
    lifted = OutboxEvent.objects.get(merchant=shop.merchant, topic="merchant.reinstated")
    assert lifted.context == {"actor": "ops:ops", "evidence": {"note": "known promotion"}}
    # The payments ops reviewed do not count again: the window starts at the reinstatement.
    make_paid_payment(account=wechat_account, gateway=gateway_client, orders=[make_order(merchant=shop.merchant)])
    latest = RiskDecision.objects.filter(merchant=shop.merchant).first()
    assert latest is not None and latest.outcome == Outcome.ALLOW and latest.figures["count"] == 1
    shop.merchant.refresh_from_db()
    assert shop.merchant.status == Merchant.Status.ACTIVE


def test_the_baseline_rule_compares_the_window_with_the_merchants_usual_days(
    settings: Any, wechat_account: ChannelAccount, gateway_client: Any, merchant: Merchant
) -> None:
    settings.RISK_VELOCITY_WINDOW_SECONDS = 3600
    settings.RISK_BASELINE_MULTIPLE = 5
    settings.RISK_BASELINE_MIN_COUNT = 2
    history = []
    for _ in range(7 * 24):  # 24 orders a day for the previous week: one an hour
        history.append(make_order(merchant=merchant, amount=100))
    today = timezone.now().replace(hour=0, minute=0, second=0, microsecond=0)
    for n, order in enumerate(history):
        record_paid(order, today - timedelta(hours=n + 1))
    end = timezone.now()
    calm = velocity_figures(merchant=merchant, currency="CNY", end=end)
    assert calm["baseline_daily_count"] == 24 and calm["baseline_window_count"] == 1
    assert velocity_reasons(calm) == []
    for _ in range(6):
        record_paid(make_order(merchant=merchant, amount=100), end - timedelta(minutes=1))
    figures = velocity_figures(merchant=merchant, currency="CNY", end=end)
    assert figures["count"] == 6
    assert velocity_reasons(figures) == ["count 6 > 5 x baseline 1.0", "amount 600 > 5 x baseline 100.0"]
