"""The refund sweep against the sandbox over HTTP: refunds never submitted are submitted, outages
are retried, refusals are tried again under new request numbers until the budget is spent, and
ops can retry or resolve what the automation gave up on."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.admin.models import LogEntry
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from channels.models import ChannelAccount
from config.celery import app
from paycore.sweeps import sweep_run
from refunds.models import Refund
from refunds.services import refund_request
from refunds.sweeps import REFUND
from tests.factories import make_paid_payment

pytestmark = pytest.mark.django_db(transaction=True)

# A WeChat refund with this reason stays PROCESSING at the sandbox until the test decides.
HOLD = "SANDBOX_PROCESSING"


def due_now(refund: Refund) -> None:
    Refund.objects.filter(pk=refund.pk).update(next_check_at=timezone.now())


def request_numbers(refund: Refund) -> list[str]:
    return list(refund.attempts.order_by("number").values_list("request_no", flat=True))


def test_a_refund_failing_with_5xx_is_retried_and_succeeds(wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    gateway_client.add_fault(channel="wechat", path="/refund/", kind="http_500", count=None)
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-5xx", amount=400)
    refund.refresh_from_db()
    assert refund.status == "PENDING"  # the submit task's own retries all met the outage
    due_now(refund)
    report = sweep_run(REFUND)
    refund.refresh_from_db()
    assert report.failed == 1 and refund.check_failures == 1 and refund.next_check_at > timezone.now()
    gateway_client.clear_faults()
    due_now(refund)
    sweep_run(REFUND)
    refund.refresh_from_db()
    assert refund.status in ("PROCESSING", "SUCCEEDED") and request_numbers(refund) == ["r-5xx"]


def test_a_refund_accepted_while_the_broker_is_down_is_submitted_by_the_sweep(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    app.conf.task_always_eager = False
    app.conf.broker_url, saved = "redis://127.0.0.1:1/0", app.conf.broker_url  # nothing listens there
    app.conf.broker_connection_retry = app.conf.task_publish_retry = False
    try:
        refund, created = refund_request(payment_id=payment.pk, refund_no="r-no-broker", amount=300)
    finally:
        app.conf.task_always_eager, app.conf.broker_url = True, saved
        app.conf.broker_connection_retry = app.conf.task_publish_retry = True
    assert created
    refund.refresh_from_db()
    assert refund.status == "PENDING" and not [t for t in gateway_client.trades() if t["kind"] == "refund"]
    due_now(refund)
    sweep_run(REFUND)
    refund.refresh_from_db()
    assert refund.status in ("PROCESSING", "SUCCEEDED")
    assert [t["out_refund_no"] for t in gateway_client.trades() if t["kind"] == "refund"] == ["r-no-broker"]


def close_at_sandbox(gateway: Any, refund: Refund) -> None:
    """The channel gives up on the refund's current attempt (WeChat: refund CLOSED)."""
    gateway.act("wechat", request_numbers(refund)[-1], "refund_closed")


def test_a_refund_refused_twice_succeeds_on_its_third_request_number(
    wechat_account: ChannelAccount, gateway_client: Any, settings: Any
) -> None:
    settings.REFUND_MAX_ATTEMPTS = 3
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-thrice", amount=500, note=HOLD)
    for _ in range(2):
        refund.refresh_from_db()
        assert refund.status == "PROCESSING"
        close_at_sandbox(gateway_client, refund)
        due_now(refund)
        sweep_run(REFUND)  # asks: FAILED, with its retry due later
        due_now(refund)
        sweep_run(REFUND)  # the retry: a new attempt, submitted
    refund.refresh_from_db()
    numbers = request_numbers(refund)
    assert len(numbers) == 3 and numbers[0] == "r-thrice" and len(set(numbers)) == 3
    gateway_client.act("wechat", numbers[-1], "refund_success")
    due_now(refund)
    sweep_run(REFUND)
    refund.refresh_from_db()
    assert refund.status == "SUCCEEDED"
    assert list(refund.attempts.values_list("status", flat=True)) == ["FAILED", "FAILED", "SUCCEEDED"]
    assert payment.maps.get().order.status == "PARTIALLY_REFUNDED"


def test_a_refund_refused_past_its_budget_needs_attention_and_ops_can_resolve_it(
    wechat_account: ChannelAccount, gateway_client: Any, settings: Any
) -> None:
    settings.REFUND_MAX_ATTEMPTS = 2
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-budget", amount=1000, note=HOLD)
    for _ in range(2):
        refund.refresh_from_db()
        close_at_sandbox(gateway_client, refund)
        due_now(refund)
        sweep_run(REFUND)
        due_now(refund)
        sweep_run(REFUND)
    refund.refresh_from_db()
    assert refund.status == "NEEDS_ATTENTION" and refund.attempts.count() == 2
    due_now(refund)
    assert sweep_run(REFUND).claimed == 0  # the automation stopped: a person decides

    ops = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client = Client()
    client.force_login(ops)
    url = reverse("admin:refunds_refund_changelist")
    answer = client.post(
        url,
        {"action": "resolve_refunded", "_selected_action": [refund.pk], "note": "refunded by bank transfer"},
    )
    assert answer.status_code == 302
    refund.refresh_from_db()
    event = refund.events.last()
    assert refund.status == "SUCCEEDED" and event.actor == "ops:ops"
    assert event.evidence == {"note": "refunded by bank transfer"}
    assert payment.maps.get().order.status == "REFUNDED"
    assert LogEntry.objects.filter(user=ops, object_id=str(refund.pk)).exists()  # the admin's own history


def test_ops_retry_a_refund_under_a_new_request_number(
    wechat_account: ChannelAccount, gateway_client: Any, settings: Any
) -> None:
    settings.REFUND_MAX_ATTEMPTS = 1
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-ops", amount=200, note=HOLD)
    close_at_sandbox(gateway_client, refund)
    due_now(refund)
    sweep_run(REFUND)
    due_now(refund)
    sweep_run(REFUND)
    refund.refresh_from_db()
    assert refund.status == "NEEDS_ATTENTION"
    ops = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client = Client()
    client.force_login(ops)
    client.post(reverse("admin:refunds_refund_changelist"), {"action": "retry", "_selected_action": [refund.pk]})
    refund.refresh_from_db()
    assert refund.status == "PROCESSING" and refund.attempts.count() == 2
    assert refund.events.filter(actor="ops:ops", to_status="PENDING").exists()


def test_a_refund_resolved_without_a_note_is_refused(
    wechat_account: ChannelAccount, gateway_client: Any, settings: Any
) -> None:
    settings.REFUND_MAX_ATTEMPTS = 1
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-nonote", amount=200, note=HOLD)
    close_at_sandbox(gateway_client, refund)
    for _ in range(2):
        due_now(refund)
        sweep_run(REFUND)
    ops = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client = Client()
    client.force_login(ops)
    client.post(
        reverse("admin:refunds_refund_changelist"), {"action": "resolve_abandoned", "_selected_action": [refund.pk]}
    )
    refund.refresh_from_db()
    assert refund.status == "NEEDS_ATTENTION"
