"""In-store payment code: the merchant scans the payer's code and paycore charges it at once."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from channels.models import ChannelAccount
from payments.models import Payment
from payments.services import payment_sync_from_channel
from tests.factories import make_order

pytestmark = pytest.mark.django_db(transaction=True)


def charge(api: APIClient, channel: str, auth_code: str) -> Any:
    order = make_order(amount=2500)
    return api.post(
        "/api/v1/payments",
        {
            "order_nos": [order.order_no],
            "customer_ref": "cust-1",
            "channel": channel,
            "method": "paycode",
            "auth_code": auth_code,
            "client_ip": "10.0.0.8",
        },
        format="json",
    )


@pytest.mark.parametrize(("channel", "auth_code"), [("wechat", "134567890123451234"), ("alipay", "286543210987651234")])
def test_a_scanned_code_is_charged_at_once(api: APIClient, channel_account: Any, channel: str, auth_code: str) -> None:
    channel_account(channel)
    response = charge(api, channel, auth_code)
    assert response.status_code == 201, response.json()
    assert response.json()["status"] == "SUCCEEDED" and response.json()["channel_trade_no"]
    assert Payment.objects.get().maps.get().order.status == "PAID"


@pytest.mark.parametrize(("channel", "auth_code"), [("wechat", "134567890123450000"), ("alipay", "286543210987650000")])
def test_a_payer_entering_a_password_is_confirmed_by_query(
    api: APIClient, channel_account: Any, gateway_client: Any, channel: str, auth_code: str
) -> None:
    channel_account(channel)
    response = charge(api, channel, auth_code)
    assert response.status_code == 201 and response.json()["status"] == "USER_PAYING"
    payment = Payment.objects.get()
    gateway_client.password(channel, payment.payment_no)
    assert payment_sync_from_channel(payment_id=payment.pk).status == "SUCCEEDED"


def test_a_declined_code_fails_the_payment(api: APIClient, wechat_account: ChannelAccount) -> None:
    response = charge(api, "wechat", "134567890123450001")  # the sandbox's NOTENOUGH code
    assert response.status_code == 422 and response.json()["code"] == "channel_rejected"
    assert response.json()["extra"]["channel_code"] == "NOTENOUGH"
    assert Payment.objects.get().status == "FAILED"


def test_a_payment_code_payment_needs_the_code(api: APIClient, wechat_account: ChannelAccount) -> None:
    response = charge(api, "wechat", "")
    assert response.status_code == 400 and "auth_code" in response.json()["extra"]["fields"]
    assert not Payment.objects.exists()
