"""Two merchants share one payment (the app's cart spans both). A merchant key sees only its own
part of it, refunds only its own orders' share, and changes only its own orders."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from channels.models import ChannelAccount
from orders.models import Order
from payments.models import Payment
from refunds.models import Refund
from refunds.services import refund_sync_from_channel
from tests.factories import make_merchant, make_order, make_paid_payment, wait_until

pytestmark = pytest.mark.django_db(transaction=True)

ALL_SCOPES = ("orders:read", "orders:write", "payments:read", "payments:write", "refunds:read", "refunds:write")


@pytest.fixture
def shared(wechat_account: ChannelAccount, gateway_client: Any, api_with_scopes: Any) -> dict[str, Any]:
    a, b = make_merchant(code="shop-a"), make_merchant(code="shop-b")
    order_a, order_b = make_order(merchant=a, amount=9_000), make_order(merchant=b, amount=1_000)
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client, orders=[order_a, order_b])
    return {
        "payment": payment,
        "order_a": order_a,
        "order_b": order_b,
        "key_a": api_with_scopes(*ALL_SCOPES, merchant=a),
        "key_b": api_with_scopes(*ALL_SCOPES, merchant=b),
    }


def _numbers_in(value: Any) -> list[int]:
    """Every integer anywhere in an answer: searching the text for "9000" also matches random ids."""
    if isinstance(value, dict):
        return [n for item in value.values() for n in _numbers_in(item)]
    if isinstance(value, list):
        return [n for item in value for n in _numbers_in(item)]
    return [value] if isinstance(value, int) and not isinstance(value, bool) else []


def test_a_merchant_sees_only_its_own_part_of_a_shared_payment(shared: dict[str, Any]) -> None:
    payment, key_b = shared["payment"], shared["key_b"]
    for url in (
        f"/api/v1/payments/{payment.payment_no}",
        f"/api/v1/payments/by-channel-trade-no/{payment.channel_trade_no}",
    ):
        body = key_b.get(url).json()
        assert body["amount"] == 1_000
        assert [o["order_no"] for o in body["orders"]] == [shared["order_b"].order_no]
        assert shared["order_a"].order_no not in str(body)
        assert not {9_000, 10_000} & set(_numbers_in(body)), "another merchant's amount or the payment's total leaked"
    listed = key_b.get("/api/v1/payments").json()["results"]
    assert [(p["payment_no"], p["amount"]) for p in listed] == [(payment.payment_no, 1_000)]
    assert key_b.get(f"/api/v1/orders/{shared['order_a'].order_no}").status_code == 404


def test_a_platform_key_sees_the_whole_payment(shared: dict[str, Any], api: APIClient) -> None:
    body = api.get(f"/api/v1/payments/{shared['payment'].payment_no}").json()
    assert body["amount"] == 10_000 and len(body["orders"]) == 2


def test_a_merchant_refunds_only_its_own_share_and_only_its_order_changes(shared: dict[str, Any]) -> None:
    payment, key_b = shared["payment"], shared["key_b"]
    too_much = key_b.post(
        "/api/v1/refunds", {"payment_no": payment.payment_no, "refund_no": "b-all", "amount": 10_000}, format="json"
    )
    assert too_much.status_code == 409 and too_much.json()["code"] == "refund_exceeds_payment"
    assert too_much.json()["extra"]["refundable"] == 1_000
    own = key_b.post(
        "/api/v1/refunds", {"payment_no": payment.payment_no, "refund_no": "b-own", "amount": 1_000}, format="json"
    )
    assert own.status_code == 201, own.json()
    assert own.json()["orders"] == [{"order_no": shared["order_b"].order_no, "amount": 1_000}]
    refund = Refund.objects.get(refund_no="b-own")
    assert wait_until(lambda: refund_sync_from_channel(refund_id=refund.pk).status == "SUCCEEDED")
    assert Order.objects.get(pk=shared["order_b"].pk).status == "REFUNDED"
    assert Order.objects.get(pk=shared["order_a"].pk).status == "PAID"
    again = key_b.post(
        "/api/v1/refunds", {"payment_no": payment.payment_no, "refund_no": "b-more", "amount": 1}, format="json"
    )
    assert again.status_code == 409 and again.json()["extra"]["refundable"] == 0


def test_a_merchant_cannot_name_another_merchants_order_in_a_refund(shared: dict[str, Any]) -> None:
    answer = shared["key_b"].post(
        "/api/v1/refunds",
        {
            "payment_no": shared["payment"].payment_no,
            "refund_no": "b-steal",
            "amount": 500,
            "order_nos": [shared["order_a"].order_no],
        },
        format="json",
    )
    assert answer.status_code == 404
    assert not Refund.objects.exists()


def test_a_merchant_sees_only_its_part_of_a_platform_refund(shared: dict[str, Any], api: APIClient) -> None:
    payment = shared["payment"]
    made = api.post(
        "/api/v1/refunds", {"payment_no": payment.payment_no, "refund_no": "p-all", "amount": 10_000}, format="json"
    )
    assert made.status_code == 201, made.json()
    assert {o["order_no"]: o["amount"] for o in made.json()["orders"]} == {
        shared["order_a"].order_no: 9_000,
        shared["order_b"].order_no: 1_000,
    }
    seen_by_b = shared["key_b"].get("/api/v1/refunds/p-all").json()
    assert seen_by_b["amount"] == 1_000
    assert seen_by_b["orders"] == [{"order_no": shared["order_b"].order_no, "amount": 1_000}]


def test_a_merchant_cannot_close_a_payment_shared_with_another(
    wechat_account: ChannelAccount, api_with_scopes: Any
) -> None:
    from tests.factories import make_payment

    a, b = make_merchant(code="shop-c"), make_merchant(code="shop-d")
    payment = make_payment(account=wechat_account, orders=[make_order(merchant=a), make_order(merchant=b)])
    key_b = api_with_scopes(*ALL_SCOPES, merchant=b)
    answer = key_b.post(f"/api/v1/payments/{payment.payment_no}/close", {}, format="json")
    assert answer.status_code == 403 and answer.json()["code"] == "payment_shared"
    assert Payment.objects.get(pk=payment.pk).status == "PENDING"
