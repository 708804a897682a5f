"""Channel callbacks over real HTTP: the sandbox notifies a live paycore server."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from channels.models import ChannelAccount
from inbox.models import InboundNotification
from inbox.sweeps import INBOX
from paycore.errors import ChannelUnavailableError
from paycore.sweeps import sweep_run
from payments.models import Payment, PaymentEvent
from payments.services import payment_sync_from_channel
from tests.factories import make_payment, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
N = InboundNotification


@pytest.fixture
def live_wechat(live_server: Any, settings: Any, channel_account: Callable[..., ChannelAccount]) -> ChannelAccount:
    settings.PAYCORE_PUBLIC_BASE_URL = live_server.url
    return channel_account("wechat")


def status_of(payment: Payment) -> str:
    return Payment.objects.values_list("status", flat=True).get(pk=payment.pk)


def test_a_paid_notification_marks_the_payment_succeeded(live_wechat: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=live_wechat)
    gateway_client.pay("wechat", payment.payment_no)
    assert wait_until(lambda: status_of(payment) == "SUCCEEDED")
    inbound = N.objects.get(payment=payment)
    assert (inbound.verification, inbound.kind, inbound.event_type) == ("VERIFIED", "PAYMENT", "TRANSACTION.SUCCESS")
    assert wait_until(lambda: N.objects.get(pk=inbound.pk).outcome == "APPLIED")
    event = PaymentEvent.objects.get(payment=payment, to_status="SUCCEEDED")
    assert event.source == "channel-notify" and event.evidence["notification_id"] == inbound.pk
    assert payment.maps.get().order.status == "PAID"


def test_a_duplicate_notification_applies_once(live_wechat: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=live_wechat)
    gateway_client.add_fault(channel="wechat", kind="duplicate", count=1)
    gateway_client.pay("wechat", payment.payment_no)
    assert wait_until(lambda: N.objects.filter(payment=payment).count() == 2)
    assert wait_until(lambda: not N.objects.filter(payment=payment, outcome="PENDING").exists())
    assert status_of(payment) == "SUCCEEDED"
    assert PaymentEvent.objects.filter(payment=payment, to_status="SUCCEEDED").count() == 1
    assert set(N.objects.filter(payment=payment).values_list("dedupe_key", flat=True)).__len__() == 1
    copies = N.objects.filter(payment=payment).order_by("pk")
    assert [(n.is_duplicate, n.outcome) for n in copies] == [(False, "APPLIED"), (True, "DUPLICATE")]
    assert copies[0].body_bytes == copies[1].body_bytes  # the copy is kept, byte for byte


def test_a_dropped_notification_is_caught_by_the_query(live_wechat: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=live_wechat)
    gateway_client.add_fault(channel="wechat", kind="drop", count=None)
    gateway_client.pay("wechat", payment.payment_no)
    assert gateway_client.wait_idle()
    assert status_of(payment) == "PENDING" and not N.objects.exists()
    assert payment_sync_from_channel(payment_id=payment.pk).status == "SUCCEEDED"


def test_a_forged_notification_is_stored_rejected_and_changes_nothing(live_wechat: ChannelAccount) -> None:
    payment = make_payment(account=live_wechat)
    body = (
        b'{"id":"EV-forged","event_type":"TRANSACTION.SUCCESS","resource_type":"encrypt-resource",'
        b'"resource":{"algorithm":"AEAD_AES_256_GCM","ciphertext":"AAAA","nonce":"nonce1234567",'
        b'"associated_data":"transaction"}}'
    )
    response = Client().post(
        f"/callbacks/wechat/{live_wechat.pk}",
        body,
        content_type="application/json",
        HTTP_WECHATPAY_TIMESTAMP=str(int(time.time())),
        HTTP_WECHATPAY_NONCE="n",
        HTTP_WECHATPAY_SIGNATURE="Zm9yZ2Vk",
        HTTP_WECHATPAY_SERIAL="PUB_KEY_ID_0",
        HTTP_WECHATPAY_SIGNATURE_TYPE="WECHATPAY2-SHA256-RSA2048",
    )
    assert 400 <= response.status_code < 600 and b"FAIL" in response.content
    inbound = N.objects.get()
    assert (inbound.verification, inbound.outcome) == ("REJECTED", "REJECTED")
    assert inbound.body_bytes == body and inbound.reject_reason
    assert status_of(payment) == "PENDING" and not PaymentEvent.objects.filter(to_status="SUCCEEDED").exists()


def test_a_notification_from_outside_the_allowlist_is_rejected(
    live_wechat: ChannelAccount, gateway_client: Any
) -> None:
    ChannelAccount.objects.filter(pk=live_wechat.pk).update(callback_ip_allowlist=["10.9.9.0/24"])
    payment = make_payment(account=live_wechat)
    gateway_client.pay("wechat", payment.payment_no)
    assert wait_until(lambda: N.objects.filter(verification="REJECTED").exists())
    assert "allowlist" in N.objects.filter(verification="REJECTED").first().reject_reason
    assert status_of(payment) == "PENDING"


def test_a_callback_for_an_unknown_account_is_stored_and_refused(db: None) -> None:
    response = Client().post("/callbacks/wechat/999999", b'{"id": "EV-1"}', content_type="application/json")
    assert response.status_code == 404
    inbound = N.objects.get()
    assert inbound.reject_reason == "unknown or disabled channel account" and inbound.verification == "REJECTED"
    assert inbound.body_bytes == b'{"id": "EV-1"}' and inbound.channel_account is None


def test_a_notification_with_a_wrong_amount_is_only_a_hint(live_wechat: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=live_wechat)
    gateway_client.pay("wechat", payment.payment_no, amount=1)  # a validly signed notification saying 0.01
    assert wait_until(lambda: status_of(payment) == "SUCCEEDED")
    event = PaymentEvent.objects.get(payment=payment, to_status="SUCCEEDED")
    assert event.evidence["trade"]["paid_amount"] == payment.amount == 1000


def test_a_tampered_query_answer_changes_nothing(wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=wechat_account)
    gateway_client.pay("wechat", payment.payment_no)
    gateway_client.add_fault(channel="wechat", kind="tamper_amount", amount=1, count=1)
    with pytest.raises(ChannelUnavailableError):
        payment_sync_from_channel(payment_id=payment.pk)
    assert status_of(payment) == "PENDING"
    assert payment_sync_from_channel(payment_id=payment.pk).status == "SUCCEEDED"


def test_a_signed_answer_with_another_amount_is_flagged_for_ops(channel_account: Any, gateway_client: Any) -> None:
    account = channel_account("alipay")
    payment = make_payment(account=account)
    gateway_client.pay("alipay", payment.payment_no, order_string=payment.prepay_data["order_string"])
    gateway_client.add_fault(channel="alipay", kind="tamper_amount", amount=1, count=1)
    payment_sync_from_channel(payment_id=payment.pk)
    assert status_of(payment) == "NEEDS_ATTENTION" and not PaymentEvent.objects.filter(to_status="SUCCEEDED").exists()
    flagged = PaymentEvent.objects.get(payment=payment, to_status="NEEDS_ATTENTION")
    assert flagged.evidence["problem"] == "amount 1 instead of 1000"


def test_a_notification_left_unapplied_by_an_outage_is_applied_by_the_inbox_sweep(
    live_wechat: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=live_wechat)
    gateway_client.add_fault(channel="wechat", kind="http_500", path="/out-trade-no/", count=None)
    gateway_client.pay("wechat", payment.payment_no)
    assert wait_until(lambda: N.objects.filter(payment=payment, outcome="FAILED").exists())
    inbound = N.objects.get(payment=payment)
    assert inbound.verification == "VERIFIED" and "channel_unavailable" in inbound.last_error
    assert status_of(payment) == "PENDING"
    gateway_client.clear_faults()
    later = timezone.now() + timedelta(hours=2)  # past the row's back-off
    assert sweep_run(INBOX, now=later).outcomes == {"applied": 1}
    assert status_of(payment) == "SUCCEEDED"
    assert N.objects.get(pk=inbound.pk).outcome == "APPLIED"
    assert sweep_run(INBOX, now=later).claimed == 0
