from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from orders.models import Order
from paycore.models import Scope
from tests.factories import make_merchant, make_order, order_body

pytestmark = pytest.mark.django_db


def test_creating_an_order_sums_its_items(api: APIClient, merchant: Any) -> None:
    response = api.post("/api/v1/orders", order_body(merchant, phone="+86 138 0000 0000"), format="json")
    assert response.status_code == 201, response.json()
    body = response.json()
    assert body["amount"] == 3990 and body["currency"] == "CNY" and body["status"] == "PENDING_PAYMENT"
    assert [i["name"] for i in body["items"]] == ["Latte", "Cake"]
    assert "phone" not in body
    assert Order.objects.get(order_no=body["order_no"]).phone == "+86 138 0000 0000"


def test_the_same_merchant_order_number_returns_the_same_order(api: APIClient, merchant: Any) -> None:
    first = api.post("/api/v1/orders", order_body(merchant), format="json").json()
    again = api.post("/api/v1/orders", order_body(merchant), format="json")
    assert again.status_code == 200 and again.json()["order_no"] == first["order_no"]
    other = api.post("/api/v1/orders", order_body(merchant, currency="USD"), format="json")
    assert other.status_code == 409 and other.json()["code"] == "merchant_order_no_reused"
    assert Order.objects.count() == 1


@pytest.mark.parametrize(
    ("change", "differs"),
    [
        ({"description": "Tea"}, ["description"]),
        ({"items": [{"name": "Latte", "unit_price": 1500, "quantity": 3}]}, ["items"]),
        (
            {
                "items": [
                    {"name": "Mocha", "unit_price": 1500, "quantity": 2},
                    {"name": "Cake", "unit_price": 990, "quantity": 1},
                ]
            },
            ["items"],
        ),
        ({"customer_ref": "someone-else"}, ["customer_ref"]),
    ],
)
def test_reusing_a_merchant_order_number_with_other_content_is_a_conflict(
    api: APIClient, merchant: Any, change: dict[str, Any], differs: list[str]
) -> None:
    first = api.post("/api/v1/orders", order_body(merchant), format="json").json()
    other = api.post("/api/v1/orders", order_body(merchant, **change), format="json")
    assert other.status_code == 409
    assert other.json()["code"] == "merchant_order_no_reused"
    assert other.json()["extra"]["differs"] == differs and other.json()["extra"]["order_no"] == first["order_no"]
    stored = Order.objects.get()
    assert (stored.description, stored.amount) == ("Coffee", 3990)


def test_get_and_list_orders(api: APIClient) -> None:
    order = make_order(customer_ref="alice")
    make_order(customer_ref="bob")
    assert api.get(f"/api/v1/orders/{order.order_no}").json()["order_no"] == order.order_no
    listed = api.get("/api/v1/orders", {"customer_ref": "alice"}).json()
    assert listed["count"] == 1 and listed["results"][0]["order_no"] == order.order_no


def test_a_merchant_key_sees_only_its_merchant(api_with_scopes: Callable[..., APIClient]) -> None:
    mine, theirs = make_merchant(), make_merchant()
    client = api_with_scopes(Scope.ORDERS_READ, Scope.ORDERS_WRITE, merchant=mine)
    foreign = make_order(merchant=theirs)
    response = client.get(f"/api/v1/orders/{foreign.order_no}")
    assert response.status_code == 404 and response.json()["code"] == "not_found"
    created = client.post("/api/v1/orders", order_body(theirs), format="json")
    assert created.status_code == 404
    created = client.post(
        "/api/v1/orders", {k: v for k, v in order_body(mine).items() if k != "merchant"}, format="json"
    )
    assert created.status_code == 201 and created.json()["merchant"] == mine.code


def test_a_suspended_merchant_cannot_take_orders(api: APIClient, merchant: Any) -> None:
    merchant.status = "SUSPENDED"
    merchant.save()
    response = api.post("/api/v1/orders", order_body(merchant), format="json")
    assert response.status_code == 409 and response.json()["code"] == "merchant_suspended"
    assert not Order.objects.exists()
