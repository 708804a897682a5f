"""Raw callbacks carry payer identifiers: the inbox keeps them encrypted at rest with the field
key ring, shows them decrypted only to ops with the change permission, and can verify a stored
request again."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.contrib.auth.models import Permission
from django.db import connection
from django.test import Client
from django.urls import reverse

from channels.models import ChannelAccount
from inbox.models import InboundNotification
from inbox.services import notification_reverify
from payments.models import Payment
from tests.factories import make_order, make_payment, pay_at_sandbox, wait_until

pytestmark = pytest.mark.django_db(transaction=True)
N = InboundNotification

OPENID = "oPAYERopenid0000000000000042"
ALIPAY_BUYER = "2088000011112222"
PAYPAL_PAYER = ("buyer@example.com", "SANDBOXPAYER01")


@pytest.fixture
def live_account(
    live_server: Any, settings: Any, channel_account: Callable[..., ChannelAccount]
) -> Callable[[str], ChannelAccount]:
    settings.PAYCORE_PUBLIC_BASE_URL = live_server.url
    return channel_account


def _inbox_table_dump() -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT row_to_json(t)::text FROM {N._meta.db_table} AS t ORDER BY id")
        return "\n".join(row[0] for row in cursor.fetchall())


def _paid(payment: Payment) -> bool:
    return Payment.objects.values_list("status", flat=True).get(pk=payment.pk) == "SUCCEEDED"


def test_no_payer_identifier_is_stored_in_plaintext(
    live_account: Callable[[str], ChannelAccount], gateway_client: Any
) -> None:
    wechat, alipay = live_account("wechat"), live_account("alipay")
    paypal = live_account("paypal")
    by_wechat = make_payment(account=wechat)
    gateway_client.pay("wechat", by_wechat.payment_no, openid=OPENID)
    by_alipay = make_payment(account=alipay)
    pay_at_sandbox(gateway_client, by_alipay, buyer_id=ALIPAY_BUYER)
    by_paypal = make_payment(
        account=paypal, orders=[make_order(currency="USD")], method="page", return_url="https://app.example/r"
    )
    gateway_client.pay("paypal", by_paypal.payment_no)
    for payment in (by_wechat, by_alipay, by_paypal):
        assert wait_until(lambda p=payment: _paid(p), timeout=20), payment.channel
    assert gateway_client.wait_idle()

    rows = list(N.objects.all())
    assert {n.channel for n in rows if n.verification == "VERIFIED"} == {"wechat", "alipay", "paypal"}
    decrypted = "\n".join(n.body_bytes.decode("utf-8", "replace") + repr(n.headers) for n in rows)
    assert ALIPAY_BUYER in decrypted and PAYPAL_PAYER[0] in decrypted  # what the channels sent us
    dump = _inbox_table_dump()
    for identifier in (OPENID, ALIPAY_BUYER, "sb***@example.com", *PAYPAL_PAYER):
        assert identifier not in dump, identifier
    assert "Wechatpay-Signature" not in dump and "buyer_logon_id" not in dump


@pytest.fixture
def stored(live_account: Callable[[str], ChannelAccount], gateway_client: Any) -> InboundNotification:
    payment = make_payment(account=live_account("alipay"))
    pay_at_sandbox(gateway_client, payment, buyer_id=ALIPAY_BUYER)
    assert wait_until(lambda: N.objects.filter(payment=payment, verification="VERIFIED").exists())
    assert gateway_client.wait_idle()
    return N.objects.filter(payment=payment, verification="VERIFIED").first()


def test_a_stored_request_verifies_again_after_decryption(stored: InboundNotification) -> None:
    assert notification_reverify(notification_id=stored.pk).startswith("verifies: PAYMENT TRADE_SUCCESS")
    N.objects.filter(pk=stored.pk).update(body=stored.body_bytes.replace(b"TRADE_SUCCESS", b"TRADE_CLOSED"))
    assert notification_reverify(notification_id=stored.pk).startswith("does not verify: SignatureInvalid")


def _staff(*perms: str) -> Client:
    user = get_user_model().objects.create_user(f"u-{len(perms)}", password="pw-123456789", is_staff=True)
    user.user_permissions.set(Permission.objects.filter(codename__in=perms))
    client = Client()
    client.force_login(user)
    return client


def test_only_ops_with_the_change_permission_see_the_decrypted_request(stored: InboundNotification) -> None:
    page = reverse("admin:inbox_inboundnotification_change", args=[stored.pk])
    viewer = _staff("view_inboundnotification").get(page)
    assert viewer.status_code == 200 and ALIPAY_BUYER.encode() not in viewer.content
    assert b"(decrypted)" not in viewer.content
    ops = _staff("view_inboundnotification", "change_inboundnotification").get(page)
    assert ops.status_code == 200 and b"Body (decrypted)" in ops.content and ALIPAY_BUYER.encode() in ops.content


def test_the_reverify_action_reports_and_changes_nothing(stored: InboundNotification) -> None:
    ops = _staff("view_inboundnotification", "change_inboundnotification")
    before = N.objects.values().get(pk=stored.pk)
    response = ops.post(
        reverse("admin:inbox_inboundnotification_changelist"),
        {"action": "reverify", "_selected_action": [stored.pk]},
        follow=True,
    )
    assert response.status_code == 200 and b"verifies: PAYMENT TRADE_SUCCESS" in response.content
    assert N.objects.values().get(pk=stored.pk) == before
    viewer = _staff("view_inboundnotification").post(
        reverse("admin:inbox_inboundnotification_changelist"),
        {"action": "reverify", "_selected_action": [stored.pk]},
        follow=True,
    )
    assert b"verifies" not in viewer.content  # the action is not offered without the permission
