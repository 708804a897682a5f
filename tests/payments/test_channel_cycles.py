"""The full cycle through paycore's API for every channel, over real HTTP with the sandbox:
create -> prepay -> the payer pays -> the channel notifies a live paycore -> confirmed by query
-> refunded in two parts (confirmed by the channel's answer or its refund notification) -> an
over-refund is refused."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from channels.models import ChannelAccount
from channels.services import adapter_for
from inbox.models import InboundNotification
from payments.models import Payment
from refunds.models import Refund
from tests.factories import make_order, wait_until

pytestmark = pytest.mark.django_db(transaction=True)


def _pay_wechat(gateway: Any, payment: dict[str, Any], account: ChannelAccount) -> None:
    gateway.pay("wechat", payment["payment_no"])


def _pay_alipay(gateway: Any, payment: dict[str, Any], account: ChannelAccount) -> None:
    # Alipay's trade exists only once the payer opens the cashier with the signed order string.
    gateway.pay("alipay", payment["payment_no"], order_string=payment["prepay"]["order_string"])


def _pay_paypal(gateway: Any, payment: dict[str, Any], account: ChannelAccount) -> None:
    gateway.pay("paypal", payment["payment_no"])  # approve; paycore captures when it confirms


CYCLES = {
    "wechat": {"method": "app", "currency": "CNY", "pay": _pay_wechat},
    "alipay": {"method": "app", "currency": "CNY", "pay": _pay_alipay},
    "paypal": {"method": "page", "currency": "USD", "pay": _pay_paypal, "return_url": "https://app.example/pp"},
    "points": {"method": "points", "currency": "CNY", "pay": None},
}


@pytest.fixture
def live_account(
    live_server: Any, settings: Any, channel_account: Callable[..., ChannelAccount]
) -> Callable[[str], ChannelAccount]:
    settings.PAYCORE_PUBLIC_BASE_URL = live_server.url
    return channel_account


def status_of(payment_no: str) -> str:
    return Payment.objects.values_list("status", flat=True).get(payment_no=payment_no)


def refund_status(refund_no: str) -> str:
    return Refund.objects.values_list("status", flat=True).get(refund_no=refund_no)


@pytest.mark.parametrize("channel", list(CYCLES))
def test_pay_notify_confirm_and_refund(
    channel: str, live_account: Callable[[str], ChannelAccount], api: APIClient, gateway_client: Any
) -> None:
    spec = CYCLES[channel]
    account = live_account(channel)
    order = make_order(amount=1000, currency=spec["currency"])
    extra: dict[str, Any] = {}
    if channel == "points":
        extra["payer_id"] = adapter_for(account).bind("bind-1", "member-42", "cust-1")
    if "return_url" in spec:
        extra["return_url"] = spec["return_url"]
    created = api.post(
        "/api/v1/payments",
        {
            "order_nos": [order.order_no],
            "customer_ref": "cust-1",
            "channel": channel,
            "method": spec["method"],
            **extra,
        },
        format="json",
    )
    assert created.status_code == 201, created.json()
    payment = created.json()
    if spec["pay"] is not None:
        assert payment["status"] == "PENDING"
        spec["pay"](gateway_client, payment, account)
    assert wait_until(lambda: status_of(payment["payment_no"]) == "SUCCEEDED"), gateway_client.notifications()[-3:]
    order.refresh_from_db()
    assert order.status == "PAID"
    if spec["pay"] is not None:
        assert InboundNotification.objects.filter(
            payment__payment_no=payment["payment_no"], verification="VERIFIED"
        ).exists()

    first = api.post(
        "/api/v1/refunds",
        {"payment_no": payment["payment_no"], "refund_no": f"{channel}-r1", "amount": 400},
        format="json",
    )
    assert first.status_code == 201, first.json()
    assert wait_until(lambda: refund_status(f"{channel}-r1") == "SUCCEEDED")
    too_much = api.post(
        "/api/v1/refunds",
        {"payment_no": payment["payment_no"], "refund_no": f"{channel}-r2", "amount": 601},
        format="json",
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "refund_exceeds_payment"
    rest = api.post(
        "/api/v1/refunds",
        {"payment_no": payment["payment_no"], "refund_no": f"{channel}-r3", "amount": 600},
        format="json",
    )
    assert rest.status_code == 201
    assert wait_until(lambda: refund_status(f"{channel}-r3") == "SUCCEEDED")
    order.refresh_from_db()
    assert order.status == "REFUNDED"
    repeat = api.post(
        "/api/v1/refunds",
        {"payment_no": payment["payment_no"], "refund_no": f"{channel}-r1", "amount": 400},
        format="json",
    )
    assert repeat.status_code == 200 and Refund.objects.count() == 2


def test_a_paypal_order_approved_after_paycore_closed_it_is_never_captured(
    live_account: Callable[[str], ChannelAccount], api: APIClient, gateway_client: Any
) -> None:
    account = live_account("paypal")
    order = make_order(amount=1000, currency="USD")
    payment = api.post(
        "/api/v1/payments",
        {
            "order_nos": [order.order_no],
            "customer_ref": "cust-1",
            "channel": "paypal",
            "method": "page",
            "return_url": "https://app.example/pp",
        },
        format="json",
    ).json()
    closed = api.post(f"/api/v1/payments/{payment['payment_no']}/close", {}, format="json")
    assert closed.json()["status"] == "CLOSED"
    gateway_client.pay("paypal", payment["payment_no"])  # the buyer approves anyway
    assert wait_until(
        lambda: InboundNotification.objects.filter(
            channel_account=account, event_type="CHECKOUT.ORDER.APPROVED", outcome="APPLIED"
        ).exists()
    )
    assert status_of(payment["payment_no"]) == "CLOSED"
    at_paypal = [t for t in gateway_client.trades() if t["kind"] == "trade" and t["key"] == payment["payment_no"]]
    assert [t["status"] for t in at_paypal] == ["APPROVED"]  # approved, never captured
