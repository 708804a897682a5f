"""Payments end to end over real HTTP with the sandbox gateway and real signatures."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from channels.models import ChannelAccount
from orders.models import Order
from paycore.errors import ChannelUnavailableError, IllegalTransition
from paycore.models import EventSource
from payments.models import Payment, PaymentEvent, PaymentOrderMap
from payments.services import payment_client_report, payment_close, payment_sync_from_channel
from tests.factories import make_order, make_payment

# Transactional: on_commit work (superseded closes, sync tasks) runs as in production.
pytestmark = pytest.mark.django_db(transaction=True)


def create_payment(
    api: APIClient,
    orders: list[Order],
    *,
    channel: str = "wechat",
    method: str = "app",
    customer_ref: str = "cust-1",
    **extra: Any,
) -> Any:
    return api.post(
        "/api/v1/payments",
        {
            "order_nos": [o.order_no for o in orders],
            "customer_ref": customer_ref,
            "channel": channel,
            "method": method,
            **extra,
        },
        format="json",
    )


def test_creating_a_payment_places_it_at_the_channel(api: APIClient, wechat_account: ChannelAccount) -> None:
    orders = [make_order(amount=1000), make_order(amount=250)]
    response = create_payment(api, orders)
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["status"] == "PENDING" and body["amount"] == 1250 and body["currency"] == "CNY"
    assert body["prepay"]["prepayid"].startswith("wx") and body["prepay"]["sign"]
    assert {o["order_no"] for o in body["orders"]} == {o.order_no for o in orders}
    payment = Payment.objects.get(payment_no=body["payment_no"])
    assert list(payment.events.values_list("from_status", "to_status")) == [("CREATED", "PENDING")]
    assert sum(m.amount for m in payment.maps.all()) == payment.amount


def test_the_same_channel_and_method_gets_the_pending_payment_back(
    api: APIClient, wechat_account: ChannelAccount
) -> None:
    order = make_order()
    first = create_payment(api, [order]).json()
    again = create_payment(api, [order])
    assert again.status_code == 200 and again.json()["payment_no"] == first["payment_no"]
    assert Payment.objects.count() == 1


def test_switching_channel_supersedes_and_closes_the_older_payment(
    api: APIClient, wechat_account: ChannelAccount, channel_account: Any, gateway_client: Any
) -> None:
    channel_account("alipay")
    order = make_order()
    wechat = create_payment(api, [order]).json()
    alipay = create_payment(api, [order], channel="alipay", method="app")
    assert alipay.status_code == 201, alipay.json()
    assert Payment.objects.get(payment_no=wechat["payment_no"]).status == "CLOSED"
    current = PaymentOrderMap.objects.get(order=order, is_current=True)
    assert current.payment.payment_no == alipay.json()["payment_no"]
    closed_at_channel = [t for t in gateway_client.trades() if t.get("out_trade_no") == wechat["payment_no"]]
    assert closed_at_channel and closed_at_channel[0]["trade_state"] == "CLOSED"


def test_a_paid_order_cannot_be_paid_again(api: APIClient, wechat_account: ChannelAccount, gateway_client: Any) -> None:
    order = make_order()
    payment = make_payment(account=wechat_account, orders=[order])
    gateway_client.pay("wechat", payment.payment_no)
    payment_sync_from_channel(payment_id=payment.pk)
    response = create_payment(api, [order], channel="wechat", method="native")
    assert response.status_code == 409 and response.json()["code"] == "order_not_payable"
    assert response.json()["extra"] == {"order_no": order.order_no, "reason": "paid"}
    assert Payment.objects.count() == 1


def test_orders_that_cannot_be_paid_are_refused(api: APIClient, wechat_account: ChannelAccount) -> None:
    cny, usd = make_order(currency="CNY"), make_order(currency="USD")
    mixed = create_payment(api, [cny, usd])
    assert mixed.status_code == 400 and mixed.json()["code"] == "currency_mismatch"
    suspended = make_order()
    suspended.merchant.status = "SUSPENDED"
    suspended.merchant.save()
    refused = create_payment(api, [suspended])
    assert refused.status_code == 409 and refused.json()["code"] == "merchant_suspended"
    Order.objects.filter(pk=cny.pk).update(status="CLOSED")
    closed = create_payment(api, [cny])
    assert closed.status_code == 409 and closed.json()["extra"]["reason"] == "closed"


def test_an_expired_order_is_refused(api: APIClient, wechat_account: ChannelAccount) -> None:
    from datetime import timedelta

    from django.utils import timezone

    order = make_order()
    Order.objects.filter(pk=order.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    response = create_payment(api, [order])
    assert response.status_code == 409 and response.json()["extra"]["reason"] == "expired"
    assert not Payment.objects.exists()


def test_a_paid_payment_is_confirmed_only_by_the_channel(wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=wechat_account)
    payment_client_report(payment_id=payment.pk, result="success")  # the sync task finds it unpaid
    payment.refresh_from_db()
    assert payment.status == "CLIENT_REPORTED"
    gateway_client.pay("wechat", payment.payment_no)
    payment = payment_sync_from_channel(payment_id=payment.pk, source=EventSource.SCHEDULER)
    assert payment.status == "SUCCEEDED" and payment.channel_trade_no and payment.paid_at
    order = payment.maps.get().order
    assert order.status == "PAID"
    assert list(payment.events.values_list("to_status", flat=True)) == ["PENDING", "CLIENT_REPORTED", "SUCCEEDED"]
    again = payment_sync_from_channel(payment_id=payment.pk)
    assert again.status == "SUCCEEDED" and PaymentEvent.objects.filter(payment=payment).count() == 3


def test_get_payment_by_either_number(api: APIClient, wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=wechat_account)
    gateway_client.pay("wechat", payment.payment_no)
    payment = payment_sync_from_channel(payment_id=payment.pk)
    by_no = api.get(f"/api/v1/payments/{payment.payment_no}").json()
    by_trade = api.get(f"/api/v1/payments/by-channel-trade-no/{payment.channel_trade_no}").json()
    assert by_no == by_trade and by_no["status"] == "SUCCEEDED"
    assert api.get("/api/v1/payments/by-channel-trade-no/nope").status_code == 404


def test_closing_a_payment_closes_it_at_the_channel_first(
    api: APIClient, wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=wechat_account)
    response = api.post(f"/api/v1/payments/{payment.payment_no}/close", {"reason": "user cancelled"}, format="json")
    assert response.status_code == 200 and response.json()["status"] == "CLOSED"
    again = api.post(f"/api/v1/payments/{payment.payment_no}/close", {}, format="json")
    assert again.status_code == 200 and again.json()["status"] == "CLOSED"
    assert payment.events.filter(to_status="CLOSED").count() == 1


def test_closing_a_payment_the_payer_already_paid_records_the_payment(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=wechat_account)
    gateway_client.pay("wechat", payment.payment_no)
    payment = payment_close(payment_id=payment.pk, reason="timeout")
    assert payment.status == "SUCCEEDED"
    with pytest.raises(IllegalTransition):
        payment_close(payment_id=payment.pk, reason="again")


def test_a_channel_outage_during_close_changes_nothing(wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=wechat_account)
    gateway_client.add_fault(channel="wechat", kind="http_500", count=None)
    with pytest.raises(ChannelUnavailableError):
        payment_close(payment_id=payment.pk, reason="timeout")
    payment.refresh_from_db()
    assert payment.status == "PENDING"


def test_a_channel_outage_at_prepay_answers_503_and_a_retry_succeeds(
    api: APIClient, wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    order = make_order()
    gateway_client.add_fault(channel="wechat", kind="http_503", count=1)
    failed = create_payment(api, [order], HTTP_IDEMPOTENCY_KEY="k-outage")
    assert failed.status_code == 503 and failed.json()["code"] == "channel_unavailable"
    assert Payment.objects.get().status == "CREATED"
    retried = create_payment(api, [order], HTTP_IDEMPOTENCY_KEY="k-outage")
    assert retried.status_code == 200 and retried.json()["status"] == "PENDING"
    assert Payment.objects.count() == 1


def test_the_cashier_offers_the_enabled_channels_for_the_currency(
    api: APIClient, wechat_account: ChannelAccount, channel_account: Any
) -> None:
    channel_account("paypal")
    cny, usd = make_order(currency="CNY"), make_order(currency="USD")
    offers = api.post("/api/v1/cashier", {"order_nos": [cny.order_no], "customer_ref": "cust-1"}, format="json")
    assert {(m["channel"], m["method"]) for m in offers.json()["methods"]} >= {("wechat", "app"), ("wechat", "native")}
    usd_offers = api.post("/api/v1/cashier", {"order_nos": [usd.order_no], "customer_ref": "cust-1"}, format="json")
    assert {m["channel"] for m in usd_offers.json()["methods"]} == {"paypal"}
    mixed = api.post(
        "/api/v1/cashier", {"order_nos": [cny.order_no, usd.order_no], "customer_ref": "cust-1"}, format="json"
    )
    assert mixed.status_code == 400 and mixed.json()["code"] == "currency_mismatch"


def test_the_client_report_is_recorded_but_never_proof(api: APIClient, wechat_account: ChannelAccount) -> None:
    payment = make_payment(account=wechat_account)
    response = api.post(
        f"/api/v1/payments/{payment.payment_no}/client-report",
        {"result": "success", "detail": {"errCode": 0}},
        format="json",
    )
    assert response.status_code == 200 and response.json()["status"] == "CLIENT_REPORTED"
    event = payment.events.get(to_status="CLIENT_REPORTED")
    assert event.source == "client-sync" and event.evidence["detail"] == {"errCode": 0}
    assert not payment.events.filter(to_status="SUCCEEDED").exists()  # the sync query found it unpaid
    bad = api.post(f"/api/v1/payments/{payment.payment_no}/client-report", {"result": "paid!"}, format="json")
    assert bad.status_code == 400 and bad.json()["code"] == "invalid_request"


def test_payment_lists_are_paginated(api: APIClient, wechat_account: ChannelAccount) -> None:
    orders = [make_order() for _ in range(3)]
    for order in orders:
        make_payment(account=wechat_account, orders=[order])
    page = api.get("/api/v1/payments", {"page_size": 2}).json()
    assert page["count"] == 3 and len(page["results"]) == 2 and page["next"]
    by_order = api.get("/api/v1/payments", {"order_no": orders[0].order_no}).json()
    assert [p["orders"][0]["order_no"] for p in by_order["results"]] == [orders[0].order_no]


@pytest.mark.parametrize(
    ("method", "extra", "field"),
    [
        ("native", {}, "code_url"),
        ("h5", {"client_ip": "203.0.113.7"}, "h5_url"),
        ("jsapi", {"payer_id": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"}, "paySign"),
    ],
)
def test_each_wechat_scene_returns_what_its_client_needs(
    api: APIClient, wechat_account: ChannelAccount, method: str, extra: dict[str, str], field: str
) -> None:
    response = create_payment(api, [make_order()], method=method, **extra)
    assert response.status_code == 201, response.json()
    assert response.json()["prepay"][field]


@pytest.mark.parametrize(("method", "field"), [("app", "order_string"), ("page", "url"), ("h5", "url")])
def test_each_alipay_method_returns_what_its_client_needs(
    api: APIClient, channel_account: Any, method: str, field: str
) -> None:
    channel_account("alipay")
    extra = {"client_ip": "203.0.113.7", "return_url": "https://app.example/done"} if method != "app" else {}
    response = create_payment(api, [make_order()], channel="alipay", method=method, **extra)
    assert response.status_code == 201, response.json()
    assert "sign=" in response.json()["prepay"][field]


def test_paying_a_superseded_payment_wins_and_closes_the_newer_one(
    api: APIClient, wechat_account: ChannelAccount, channel_account: Any, gateway_client: Any
) -> None:
    channel_account("alipay")
    order = make_order()
    wechat = create_payment(api, [order]).json()  # the user starts on WeChat...
    gateway_client.add_fault(channel="wechat", kind="http_503", path="/close", count=None)
    alipay = create_payment(api, [order], channel="alipay", method="app").json()  # ...switches to Alipay
    assert Payment.objects.get(payment_no=wechat["payment_no"]).status == "PENDING"  # WeChat close failed
    gateway_client.clear_faults()
    gateway_client.pay("wechat", wechat["payment_no"])  # ...but had already paid on WeChat
    paid = payment_sync_from_channel(payment_id=Payment.objects.get(payment_no=wechat["payment_no"]).pk)
    assert paid.status == "SUCCEEDED"
    current = PaymentOrderMap.objects.get(order=order, is_current=True)
    assert current.payment_id == paid.pk
    assert Order.objects.get(pk=order.pk).status == "PAID"
    assert Payment.objects.get(payment_no=alipay["payment_no"]).status == "CLOSED"
