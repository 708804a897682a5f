"""Merchant webhooks over real HTTP, to receivers on the sandbox gateway: retries on the schedule
until a 2xx, every attempt logged, nothing lost to a crash after commit, signatures that verify
with the documented algorithm, per-merchant order, each merchant told only its own part."""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.db import transaction
from django.test import Client
from django.urls import reverse
from django.utils import timezone

import paycore.outbox
from channels.models import ChannelAccount
from outbox.models import WebhookAttempt
from outbox.services import SCHEDULE, WEBHOOKS, webhook_secret_rotate
from paycore.models import OutboxEvent
from paycore.outbox import outbox_add
from paycore.sweeps import sweep_run
from payments.services import payment_close
from tests.factories import make_order, make_paid_payment, make_payment
from tests.outbox.conftest import Receiver, raw

pytestmark = pytest.mark.django_db(transaction=True)
D = OutboxEvent.DeliveryStatus


def verify(secret: str, headers: dict[str, str], body: bytes, *, now: float | None = None) -> bool:
    """docs/webhooks.md's receiver check, as a merchant would write it (standard library only)."""
    timestamp = headers.get("X-Paycore-Timestamp", "")
    if not timestamp.isdigit() or abs((now or time.time()) - int(timestamp)) > 300:
        return False
    expected = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    candidates = [p.strip()[3:] for p in headers.get("X-Paycore-Signature", "").split(",") if p.strip()[:3] == "v1="]
    return any(hmac.compare_digest(expected, c) for c in candidates)


def later(**delta: float) -> Any:
    return timezone.now() + timedelta(**delta)


def ping(receiver: Receiver, n: int = 1) -> OutboxEvent:
    with transaction.atomic():
        (event,) = outbox_add(topic="test.ping", key=f"k{n}", merchant_id=receiver.merchant.pk, payload={"n": n})
    return event


def test_an_endpoint_failing_five_times_gets_the_event_once_after_six_attempts(
    receiver: Callable[..., Receiver], wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    shop = receiver()
    gateway_client.merchant_fail(shop.id, count=5, status=503, body="busy")
    payment = make_paid_payment(
        account=wechat_account, gateway=gateway_client, orders=[make_order(merchant=shop.merchant)]
    )
    (event,) = OutboxEvent.objects.filter(topic="payment.succeeded", merchant=shop.merchant)
    assert event.attempts == 1 and event.delivery_status == D.PENDING  # the dispatcher tried at once
    for step in range(1, 6):  # drive time forward instead of sleeping
        sweep_run(WEBHOOKS, now=later(days=step))
    event.refresh_from_db()
    assert event.delivery_status == D.DELIVERED and event.attempts == 6
    attempts = list(WebhookAttempt.objects.filter(event=event).order_by("number"))
    assert [a.status_code for a in attempts] == [503] * 5 + [200]
    assert attempts[0].response_excerpt == "busy" and all(a.latency_ms >= 0 for a in attempts)
    assert [r["answer_status"] for r in shop.requests()] == [503] * 5 + [200]
    (accepted,) = shop.accepted()
    assert accepted["id"] == str(event.event_id) and accepted["data"]["payment_no"] == payment.payment_no


def test_the_retry_schedule_spans_about_a_day_then_the_delivery_is_failed_and_resent_by_ops(
    receiver: Callable[..., Receiver], gateway_client: Any
) -> None:
    shop = receiver()
    gateway_client.merchant_fail(shop.id, count=None, status=500)
    event = ping(shop)
    waits = []
    while True:
        event.refresh_from_db()
        if event.delivery_status != D.PENDING:
            break
        waits.append(event.next_attempt_at - timezone.now())
        sweep_run(WEBHOOKS, now=event.next_attempt_at + timedelta(seconds=1))
    assert event.delivery_status == D.FAILED and event.attempts == len(SCHEDULE) == 9
    assert timedelta(hours=20) < sum(SCHEDULE, timedelta()) < timedelta(hours=26)
    assert [round(w.total_seconds() / 5) * 5 for w in waits] == [s.total_seconds() for s in SCHEDULE[1:]]
    gateway_client.clear_merchant_behaviours(shop.id)
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    ops = Client()
    ops.force_login(user)
    url = reverse("admin:outbox_webhookdelivery_changelist")
    assert str(event.event_id) in ops.get(url, {"delivery_status__exact": "FAILED"}).content.decode()
    ops.post(url, {"action": "resend", "_selected_action": [event.pk]})
    event.refresh_from_db()
    assert event.delivery_status == D.DELIVERED and event.requeued_by == "ops:ops"
    assert WebhookAttempt.objects.filter(event=event).count() == 10
    assert [r["answer_status"] for r in shop.requests()][-2:] == [500, 200]


def test_a_crash_between_commit_and_dispatch_loses_nothing(
    receiver: Callable[..., Receiver], wechat_account: ChannelAccount, gateway_client: Any, monkeypatch: Any
) -> None:
    shop = receiver()
    monkeypatch.setattr(paycore.outbox, "_LISTENERS", [])  # the process dies right after the commit
    make_paid_payment(account=wechat_account, gateway=gateway_client, orders=[make_order(merchant=shop.merchant)])
    (event,) = OutboxEvent.objects.filter(merchant=shop.merchant)
    assert event.delivery_status == D.PENDING and shop.requests() == []
    report = sweep_run(WEBHOOKS)
    assert report.outcomes == {"delivered": 1}
    event.refresh_from_db()
    assert event.delivery_status == D.DELIVERED
    assert [b["id"] for b in shop.accepted()] == [str(event.event_id)]


def test_signatures_verify_with_the_documented_algorithm_and_fail_when_tampered_or_stale(
    receiver: Callable[..., Receiver],
) -> None:
    shop = receiver()
    event = ping(shop)
    (request,) = shop.requests()
    headers, body = request["headers"], raw(request)
    assert headers["X-Paycore-Event-Id"] == str(event.event_id) and headers["X-Paycore-Event-Type"] == "test.ping"
    assert json.loads(body)["id"] == str(event.event_id)
    assert verify(shop.secret, headers, body)
    assert not verify(shop.secret, headers, body.replace(b'"n":1', b'"n":2'))
    assert not verify("another secret", headers, body)
    assert not verify(shop.secret, {**headers, "X-Paycore-Timestamp": str(int(time.time()) - 3600)}, body)
    assert not verify(shop.secret, headers, body, now=time.time() + 301)


def test_during_a_secret_rotation_both_secrets_sign_until_the_overlap_ends(
    receiver: Callable[..., Receiver],
) -> None:
    shop = receiver()
    new = webhook_secret_rotate(merchant_id=shop.merchant.pk, actor="ops:alice", overlap=timedelta(hours=1))
    ping(shop, 1)
    headers, body = shop.requests()[-1]["headers"], raw(shop.requests()[-1])
    assert headers["X-Paycore-Signature"].count("v1=") == 2
    assert verify(new, headers, body) and verify(shop.secret, headers, body)
    shop.merchant.webhook_secret_overlap.valid_until = timezone.now() - timedelta(seconds=1)
    shop.merchant.webhook_secret_overlap.save()
    ping(shop, 2)
    headers, body = shop.requests()[-1]["headers"], raw(shop.requests()[-1])
    assert verify(new, headers, body) and not verify(shop.secret, headers, body)


def test_a_merchant_gets_its_events_in_order_while_an_earlier_one_is_retried(
    receiver: Callable[..., Receiver], gateway_client: Any
) -> None:
    shop = receiver()
    gateway_client.merchant_fail(shop.id, count=1, status=500)
    first = ping(shop, 1)
    second = ping(shop, 2)  # the first is waiting for its retry: this one waits too
    assert [json.loads(raw(r))["data"]["n"] for r in shop.requests()] == [1]
    second.refresh_from_db()
    assert second.delivery_status == D.PENDING and second.attempts == 0
    sweep_run(WEBHOOKS, now=later(seconds=20))  # the retry of the first, then the second follows
    assert [json.loads(raw(r))["data"]["n"] for r in shop.requests()] == [1, 1, 2]
    assert [b["id"] for b in shop.accepted()] == [str(first.event_id), str(second.event_id)]


def test_a_shared_payment_tells_each_merchant_only_its_own_part(
    receiver: Callable[..., Receiver], wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    tea, cake = receiver(), receiver()
    orders = [
        make_order(merchant=tea.merchant, amount=1000),
        make_order(merchant=tea.merchant, amount=500),
        make_order(merchant=cake.merchant, amount=700),
    ]
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client, orders=orders)
    assert payment.amount == 2200
    (tea_event,) = tea.accepted()
    (cake_event,) = cake.accepted()
    assert tea_event["id"] != cake_event["id"]
    assert tea_event["type"] == cake_event["type"] == "payment.succeeded"
    assert tea_event["data"]["amount"] == 1500 and cake_event["data"]["amount"] == 700
    assert {o["order_no"] for o in tea_event["data"]["orders"]} == {orders[0].order_no, orders[1].order_no}
    assert [o["order_no"] for o in cake_event["data"]["orders"]] == [orders[2].order_no]
    assert [o["amount"] for o in cake_event["data"]["orders"]] == [700]
    data = cake_event["data"]
    assert data["payment_no"] == payment.payment_no and data["currency"] == "CNY" and data["channel"] == "wechat"
    assert data["paid_at"] and data["channel_account"]["name"] == wechat_account.name
    text = json.dumps(cake_event)
    for private in ("cust-1", "payer_id", "client_ip", "credentials", cake.secret, tea.secret):
        assert private not in text
    assert orders[0].order_no not in text and orders[1].order_no not in text
    assert 2200 not in [data["amount"], *[o["amount"] for o in data["orders"]]]  # never the whole payment


def test_closing_a_payment_tells_its_merchant(
    receiver: Callable[..., Receiver], wechat_account: ChannelAccount
) -> None:
    shop = receiver()
    payment = make_payment(account=wechat_account, orders=[make_order(merchant=shop.merchant)])
    payment_close(payment_id=payment.pk, reason="user cancelled")
    (event,) = shop.accepted()
    assert event["type"] == "payment.closed" and event["data"]["status"] == "CLOSED"
    assert event["data"]["paid_at"] is None and event["data"]["amount"] == 1000


def test_a_merchant_without_a_notify_url_is_not_sent_anything(db: None) -> None:
    from orders.services import merchant_create

    quiet = merchant_create(code="quiet", name="Quiet", notify_url="", webhook_secret="s")
    with transaction.atomic():
        (event,) = outbox_add(topic="test.ping", key="k", merchant_id=quiet.pk)
    event.refresh_from_db()
    assert event.delivery_status == D.NOT_SENT and not WebhookAttempt.objects.exists()


def test_a_refund_of_a_shared_payment_tells_each_merchant_what_was_refunded_of_its_orders(
    receiver: Callable[..., Receiver], wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    from refunds.services import refund_request, refund_sync_from_channel
    from tests.factories import wait_until

    tea, cake = receiver(), receiver()
    orders = [make_order(merchant=tea.merchant, amount=1000), make_order(merchant=cake.merchant, amount=700)]
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client, orders=orders)
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-cake", amount=300, merchant_id=cake.merchant.pk)
    assert wait_until(lambda: refund_sync_from_channel(refund_id=refund.pk).status == "SUCCEEDED")
    (told,) = [b for b in cake.accepted() if b["type"] == "refund.succeeded"]
    assert told["data"]["refund_no"] == "r-cake" and told["data"]["amount"] == 300
    assert told["data"]["orders"] == [
        {"order_no": orders[1].order_no, "merchant_order_no": orders[1].merchant_order_no, "amount": 300}
    ]
    assert [b["type"] for b in tea.accepted()] == ["payment.succeeded"]


def test_a_revoked_payment_code_tells_its_merchant_with_the_store_and_device(
    receiver: Callable[..., Receiver], channel_account: Callable[..., ChannelAccount], api: Any
) -> None:
    from payments.models import Payment
    from payments.sweeps import PAYCODE
    from tests.factories import let_time_pass

    channel_account("alipay")
    shop = receiver()
    order = make_order(merchant=shop.merchant, amount=2500)
    body = {
        "order_nos": [order.order_no],
        "customer_ref": "cust-1",
        "auth_code": "28654321098765" + "07200",  # the payer never confirms
        "store_id": "S-01",
        "device_id": "POS-7",
        "operator_id": "alice",
    }
    assert api.post("/api/v1/payments/paycode", body, format="json").json()["status"] == "USER_PAYING"
    payment = Payment.objects.get()
    for _ in range(5):
        let_time_pass(payment, seconds=60)
        sweep_run(PAYCODE)
        if payment.status == "REVOKED":
            break
    (told,) = [b for b in shop.accepted() if b["type"] == "payment.revoked"]
    assert told["data"]["payment_no"] == payment.payment_no and told["data"]["status"] == "REVOKED"
    assert (told["data"]["store_id"], told["data"]["device_id"]) == ("S-01", "POS-7")
    assert told["data"]["method"] == "paycode" and told["data"]["paid_at"] is None
