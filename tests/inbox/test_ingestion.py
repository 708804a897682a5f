"""How a callback is taken in: verified in memory, stored with its result in one INSERT, resolved
by indexed lookups, duplicates recognised by the unique index, the apply task published after the
answer. Genuine notifications are replayed from the sandbox's own delivery log."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
import redis
from django.conf import settings as django_settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from channels.base import PrepayRequest
from channels.models import ChannelAccount
from channels.services import adapter_for, channel_notify_url
from inbox import dispatch
from inbox.models import InboundNotification
from inbox.sweeps import INBOX
from paycore.sweeps import sweep_run
from payments.models import Payment, PaymentEvent
from refunds.services import refund_request
from tests.factories import make_paid_payment, make_payment, wait_until
from tests.queries import executed

pytestmark = pytest.mark.django_db(transaction=True)
N = InboundNotification


@pytest.fixture
def wechat(settings: Any, channel_account: Callable[..., ChannelAccount]) -> ChannelAccount:
    # Deliveries go to a reserved host the sandbox never contacts but logs: each test replays
    # the genuine request itself, through Django's test client.
    settings.PAYCORE_PUBLIC_BASE_URL = "http://paycore.invalid"
    return channel_account("wechat")


def genuine(gateway: Any, key: str) -> tuple[str, dict[str, str], bytes]:
    """(path, headers, body) of the first notification the sandbox built for ``key``."""
    assert wait_until(lambda: any(n["key"] == key for n in gateway.notifications()))
    sent = next(n for n in gateway.notifications() if n["key"] == key)
    gateway.cancel_notifications()  # no retry schedule left running
    return sent["url"].removeprefix("http://paycore.invalid"), sent["request_headers"], sent["request_body"].encode()


def deliver(path: str, headers: dict[str, str], body: bytes, **extra: Any) -> Any:
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in headers.items() if k.lower() != "content-type"}
    return Client().post(path, body, content_type=headers.get("Content-Type", "application/json"), **meta, **extra)


def statements(queries: CaptureQueriesContext) -> list[str]:
    return [sql.split()[0].upper() for sql in executed(queries)]


def test_a_genuine_notification_is_taken_in_by_one_insert(wechat: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=wechat)
    gateway_client.pay("wechat", payment.payment_no)
    path, headers, body = genuine(gateway_client, payment.payment_no)
    with CaptureQueriesContext(connection) as queries:
        response = deliver(path, headers, body)
    assert response.status_code == 200
    # The apply task ran inline (eager in tests) once the row was stored: count what came before
    # it. The account is read (tests keep no account cache); one INSERT finds the payment by its
    # number (the unique index) and stores the row unless a first copy is already stored.
    sql = executed(queries)
    taken_in = sql[: next(i for i, text in enumerate(sql) if text.startswith("INSERT")) + 1]
    assert [text.split()[0] for text in taken_in] == ["SELECT", "INSERT"]
    assert "WHERE payment_no = " in taken_in[1] and "ON CONFLICT" in taken_in[1]
    assert not any("EXISTS" in text for text in taken_in)
    inbound = N.objects.get()
    assert (inbound.verification, inbound.kind, inbound.payment_id, inbound.is_duplicate) == (
        "VERIFIED",
        "PAYMENT",
        payment.pk,
        False,
    )
    assert inbound.outcome == "APPLIED" and Payment.objects.get(pk=payment.pk).status == "SUCCEEDED"
    assert inbound.parsed["payment_no"] == payment.payment_no and inbound.parsed["trade"]["status"] == "PAID"


def test_a_web_process_reads_the_account_again_only_after_its_cache_time(
    wechat: ChannelAccount, gateway_client: Any, settings: Any
) -> None:
    settings.INBOX_ACCOUNT_CACHE_SECONDS = 3600
    payments = [make_payment(account=wechat) for _ in range(3)]
    notes = []
    for payment in payments:
        gateway_client.pay("wechat", payment.payment_no)
        notes.append(genuine(gateway_client, payment.payment_no))
    assert deliver(*notes[0]).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert deliver(*notes[1]).status_code == 200
    assert statements(queries)[0] == "INSERT"  # no read of the account
    ChannelAccount.objects.filter(pk=wechat.pk).update(is_enabled=False)
    assert deliver(*notes[2]).status_code == 200  # still the cached, enabled account
    settings.INBOX_ACCOUNT_CACHE_SECONDS = 0
    assert deliver(*notes[2]).status_code == 404  # read again: disabled now
    assert N.objects.filter(payment_id__in=[p.pk for p in payments], verification="VERIFIED").count() == 3


def test_the_raw_body_is_never_rewritten_after_the_insert(wechat: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=wechat)
    gateway_client.pay("wechat", payment.payment_no)
    path, headers, body = genuine(gateway_client, payment.payment_no)
    with CaptureQueriesContext(connection) as queries:
        deliver(path, headers, body)
    updates = [sql for sql in executed(queries) if sql.startswith("UPDATE") and N._meta.db_table in sql]
    assert updates and all('"body"' not in sql and '"headers"' not in sql for sql in updates)


def test_a_rejected_callback_is_stored_in_one_insert(wechat: ChannelAccount) -> None:
    with CaptureQueriesContext(connection) as queries:
        response = deliver(f"/callbacks/wechat/{wechat.pk}", {"Wechatpay-Signature": "Zm9yZ2Vk"}, b'{"id": "EV-x"}')
    assert response.status_code == 400
    assert statements(queries) == ["SELECT", "INSERT"]
    inbound = N.objects.get()
    assert (inbound.verification, inbound.outcome, inbound.channel_account_id) == ("REJECTED", "REJECTED", wechat.pk)
    assert inbound.reject_reason and inbound.body_bytes == b'{"id": "EV-x"}'


def test_a_replayed_notification_is_stored_as_a_duplicate_and_applied_once(
    wechat: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=wechat)
    gateway_client.pay("wechat", payment.payment_no)
    path, headers, body = genuine(gateway_client, payment.payment_no)
    assert deliver(path, headers, body).status_code == 200
    with CaptureQueriesContext(connection) as queries:
        assert deliver(path, headers, body).status_code == 200  # acknowledged: the channel may stop
    # The account, the first copy's INSERT that conflicts, the copy's INSERT: no EXISTS query,
    # no apply.
    assert statements(queries) == ["SELECT", "INSERT", "INSERT"]
    first, copy = N.objects.order_by("pk")
    assert (first.is_duplicate, first.outcome) == (False, "APPLIED")
    assert (copy.is_duplicate, copy.outcome, copy.next_check_at, copy.dedupe_key) == (
        True,
        "DUPLICATE",
        None,
        first.dedupe_key,
    )
    assert PaymentEvent.objects.filter(payment=payment, to_status="SUCCEEDED").count() == 1
    assert sweep_run(INBOX).claimed == 0


def test_a_refund_notification_is_resolved_by_the_attempts_request_number(
    settings: Any, channel_account: Callable[..., ChannelAccount], gateway_client: Any
) -> None:
    settings.PAYCORE_PUBLIC_BASE_URL = "http://paycore.invalid"
    account = channel_account("wechat")
    payment = make_paid_payment(account=account, gateway=gateway_client)
    gateway_client.cancel_notifications()
    refund, _ = refund_request(payment_id=payment.pk, refund_no="r-inbox-1", amount=300)
    request_no = refund.attempts.get().request_no
    path, headers, body = genuine(gateway_client, request_no)
    assert deliver(path, headers, body).status_code == 200
    inbound = N.objects.get(kind="REFUND")
    assert (inbound.refund_id, inbound.payment_id) == (refund.pk, payment.pk)
    assert inbound.parsed["refund"]["refund_no"] == request_no


def test_a_notification_naming_nothing_of_ours_is_kept_and_ignored(wechat: ChannelAccount, gateway_client: Any) -> None:
    # A trade paycore never created (placed at the channel by someone holding the merchant keys).
    adapter_for(wechat).prepay(
        PrepayRequest(
            payment_no="NOTOURS0001",
            amount=100,
            currency="CNY",
            description="not ours",
            method="app",
            notify_url=channel_notify_url(wechat),
            expires_at=timezone.now() + timedelta(minutes=15),
        )
    )
    gateway_client.pay("wechat", "NOTOURS0001")
    path, headers, body = genuine(gateway_client, "NOTOURS0001")
    assert deliver(path, headers, body).status_code == 200
    inbound = N.objects.get()
    assert (inbound.verification, inbound.outcome, inbound.payment_id, inbound.next_check_at) == (
        "VERIFIED",
        "IGNORED",
        None,
        None,
    )


def test_the_apply_task_is_published_to_the_broker_after_the_answer(
    wechat: ChannelAccount, gateway_client: Any, settings: Any
) -> None:
    settings.CELERY_TASK_ALWAYS_EAGER = False
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("celery")
    payment = make_payment(account=wechat)
    gateway_client.pay("wechat", payment.payment_no)
    path, headers, body = genuine(gateway_client, payment.payment_no)
    try:
        assert deliver(path, headers, body).status_code == 200
        assert dispatch.dispatch_idle(timeout=10)
        inbound = N.objects.get()
        assert inbound.outcome == "PENDING" and inbound.next_check_at is not None  # the sweep's safety net
        messages = [json.loads(m) for m in broker.lrange("celery", 0, -1)]
        assert [(m["headers"]["task"], m["headers"]["argsrepr"]) for m in messages] == [
            ("paycore.notifications.process", f"({inbound.pk},)")
        ]
    finally:
        broker.delete("celery")


def test_a_broker_outage_never_fails_the_callback_and_the_sweep_applies_it(
    wechat: ChannelAccount, gateway_client: Any, settings: Any, monkeypatch: Any
) -> None:
    from inbox.tasks import notification_process

    settings.CELERY_TASK_ALWAYS_EAGER = False

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise ConnectionError("Error 111 connecting to redis: Connection refused")

    monkeypatch.setattr(notification_process, "delay", broker_down)
    payment = make_payment(account=wechat)
    gateway_client.pay("wechat", payment.payment_no)
    path, headers, body = genuine(gateway_client, payment.payment_no)
    assert deliver(path, headers, body).status_code == 200
    assert dispatch.dispatch_idle(timeout=10)
    inbound = N.objects.get()
    assert inbound.outcome == "PENDING" and Payment.objects.get(pk=payment.pk).status == "PENDING"
    assert sweep_run(INBOX, now=inbound.next_check_at).outcomes == {"applied": 1}
    assert Payment.objects.get(pk=payment.pk).status == "SUCCEEDED"


def test_notifications_gathered_by_a_busy_publisher_go_as_one_message_and_each_is_applied(
    wechat: ChannelAccount, gateway_client: Any, settings: Any, monkeypatch: Any
) -> None:
    from inbox.tasks import notification_process, notifications_process

    settings.CELERY_TASK_ALWAYS_EAGER = False
    monkeypatch.setattr(notification_process, "delay", lambda *a: None)  # left for the test to apply
    payments = [make_payment(account=wechat) for _ in range(2)]
    for payment in payments:
        gateway_client.pay("wechat", payment.payment_no)
        assert deliver(*genuine(gateway_client, payment.payment_no)).status_code == 200
    assert dispatch.dispatch_idle(timeout=10)
    ids = list(N.objects.order_by("pk").values_list("pk", flat=True))
    broker = redis.Redis.from_url(django_settings.CELERY_BROKER_URL)
    broker.delete("celery")
    try:
        dispatch._publish(ids)
        [message] = [json.loads(m) for m in broker.lrange("celery", 0, -1)]
        assert message["headers"]["task"] == "paycore.notifications.process_many"
        assert message["headers"]["argsrepr"] == f"({ids},)"
    finally:
        broker.delete("celery")
    notifications_process([999_999_999, *ids])  # a row that cannot be applied stops none of the others
    assert set(N.objects.values_list("outcome", flat=True)) == {"APPLIED"}
    assert {p.status for p in Payment.objects.filter(pk__in=[p.pk for p in payments])} == {"SUCCEEDED"}


def test_an_adapter_is_reused_only_with_the_cached_account_it_was_built_from(
    wechat: ChannelAccount, settings: Any
) -> None:
    from inbox.services import _account, _adapter

    settings.INBOX_ACCOUNT_CACHE_SECONDS = 3600
    account = _account(wechat.pk, "wechat")
    assert account is not None and _adapter(account) is _adapter(account)
    fresh = ChannelAccount.objects.get(pk=wechat.pk)  # re-read (e.g. its keys rotated): built anew
    assert _adapter(fresh) is not _adapter(account) and _adapter(fresh).config == fresh.as_config()
