"""Bad input is answered 4xx with a stable code, and changes nothing."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from orders.models import Order
from paycore.models import IdempotencyRecord
from payments.models import Payment
from refunds.models import Refund
from tests.factories import make_merchant, make_order, order_body

pytestmark = pytest.mark.django_db


def item(**overrides: Any) -> list[dict[str, Any]]:
    return [{"name": "Latte", "unit_price": 1500, "quantity": 1, **overrides}]


@pytest.mark.parametrize(
    ("overrides", "field"),
    [
        ({"items": item(unit_price=0)}, "items"),  # zero total
        ({"items": item(unit_price=-1)}, "items"),
        ({"items": item(quantity=0)}, "items"),
        ({"items": item(quantity=-3)}, "items"),
        ({"items": item(unit_price=10**12 + 1)}, "items"),  # over the per-amount limit
        ({"items": item(unit_price=2**63)}, "items"),  # overflows BIGINT
        ({"items": item(unit_price="1500")}, "items"),  # a string is not an amount
        ({"items": item(unit_price=15.5)}, "items"),  # nor is a float
        ({"items": item(unit_price=True)}, "items"),  # nor a boolean
        ({"items": item(quantity="2")}, "items"),
        ({"items": []}, "items"),
        ({"items": "latte"}, "items"),
        ({"items": [item()[0]] * 101}, "items"),
        ({"currency": "XXQ"}, "currency"),
        ({"currency": "cny"}, "currency"),
        ({"currency": 156}, "currency"),
        ({"merchant_order_no": "x" * 65}, "merchant_order_no"),
        ({"merchant_order_no": "has space"}, "merchant_order_no"),
        ({"description": "d" * 128}, "description"),
        ({"customer_ref": ""}, "customer_ref"),
        ({"customer_ref": 42}, "customer_ref"),
        ({"expires_at": "yesterday"}, "expires_at"),
        ({"phone": "call me"}, "phone"),
    ],
)
def test_invalid_order_fields_are_rejected(api: APIClient, overrides: dict[str, Any], field: str) -> None:
    merchant = make_merchant()
    response = api.post("/api/v1/orders", order_body(merchant, **overrides), format="json")
    assert response.status_code == 400, response.json()
    body = response.json()
    assert body["code"] == "invalid_request"
    assert field in body["extra"]["fields"]
    assert not Order.objects.exists()


def test_an_order_total_over_the_limit_is_rejected(api: APIClient) -> None:
    merchant = make_merchant()
    lines = [{"name": "Gold", "unit_price": 10**12, "quantity": 2}]
    response = api.post("/api/v1/orders", order_body(merchant, items=lines), format="json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_request"
    assert response.json()["extra"]["fields"]["items"][0]["code"] == "max_value"
    assert not Order.objects.exists()


def test_an_expiry_in_the_past_is_rejected(api: APIClient) -> None:
    response = api.post("/api/v1/orders", order_body(make_merchant(), expires_at="2020-01-01T00:00:00Z"), format="json")
    assert response.status_code == 400 and "expires_at" in response.json()["extra"]["fields"]


def test_an_unknown_merchant_is_not_found(api: APIClient) -> None:
    response = api.post("/api/v1/orders", {**order_body(make_merchant()), "merchant": "nobody"}, format="json")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.mark.parametrize(
    ("body", "content_type"),
    [
        (b'{"merchant": "m1", ', "application/json"),
        (b"\xff\xfe not json", "application/json"),
    ],
)
def test_malformed_json_is_rejected(api: APIClient, body: bytes, content_type: str) -> None:
    response = api.generic("POST", "/api/v1/orders", body, content_type=content_type)
    assert response.status_code == 400
    assert response.json()["code"] == "malformed_request"
    assert not Order.objects.exists()


@pytest.mark.parametrize("body", [b"[]", b"42", b"null", b'"text"'])
def test_a_body_that_is_not_an_object_is_rejected(api: APIClient, body: bytes) -> None:
    response = api.generic("POST", "/api/v1/orders", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "invalid_request"


def test_a_form_body_is_an_unsupported_media_type(api: APIClient) -> None:
    response = api.post("/api/v1/orders", {"a": "b"})
    assert response.status_code == 415 and response.json()["code"] == "unsupported_media_type"


def test_an_over_long_idempotency_key_is_rejected(api: APIClient) -> None:
    response = api.post("/api/v1/orders", order_body(make_merchant()), format="json", HTTP_IDEMPOTENCY_KEY="k" * 256)
    assert response.status_code == 400 and response.json()["extra"]["header"] == "Idempotency-Key"
    assert not Order.objects.exists() and not IdempotencyRecord.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"order_nos": ["O-does-not-exist"]}, 404, "not_found"),
        ({"order_nos": []}, 400, "invalid_request"),
        ({"order_nos": "O1"}, 400, "invalid_request"),
        ({"channel": "bitcoin"}, 400, "invalid_request"),
        ({"method": "telepathy"}, 400, "invalid_request"),
        ({"customer_ref": "someone-else"}, 409, "customer_mismatch"),
        ({"client_ip": "not-an-ip"}, 400, "invalid_request"),
        ({"channel": "wechat", "method": "page"}, 400, "method_not_offered"),
        ({"channel": "wechat", "method": "jsapi"}, 400, "invalid_request"),
        ({"channel": "wechat", "method": "h5"}, 400, "invalid_request"),
        ({"channel": "points", "method": "points"}, 400, "invalid_request"),
    ],
)
def test_bad_payment_requests_are_rejected(api: APIClient, overrides: dict[str, Any], status: int, code: str) -> None:
    order = make_order(customer_ref="cust-1")
    body = {"order_nos": [order.order_no], "customer_ref": "cust-1", "channel": "wechat", "method": "app", **overrides}
    response = api.post("/api/v1/payments", body, format="json")
    assert response.status_code == status, response.json()
    assert response.json()["code"] == code
    assert not Payment.objects.exists()


def test_a_payment_for_a_foreign_merchants_order_is_not_found(api_with_scopes: Any) -> None:
    mine, theirs = make_merchant(), make_merchant()
    client = api_with_scopes("payments:write", merchant=mine)
    foreign = make_order(merchant=theirs)
    response = client.post(
        "/api/v1/payments",
        {"order_nos": [foreign.order_no], "customer_ref": "cust-1", "channel": "wechat", "method": "app"},
        format="json",
    )
    assert response.status_code == 404 and response.json()["extra"]["order_nos"] == [foreign.order_no]
    assert not Payment.objects.exists()


@pytest.mark.parametrize(
    ("overrides", "status", "code"),
    [
        ({"amount": 0}, 400, "invalid_request"),
        ({"amount": -5}, 400, "invalid_request"),
        ({"amount": "5"}, 400, "invalid_request"),
        ({"amount": 10**13}, 400, "invalid_request"),
        ({"refund_no": "r" * 65}, 400, "invalid_request"),
        ({"refund_no": "bad no"}, 400, "invalid_request"),
        ({"reason": "DUPLICATE_PAYMENT"}, 400, "invalid_request"),
        ({"payment_no": "P-unknown"}, 404, "not_found"),
    ],
)
def test_bad_refund_requests_are_rejected(api: APIClient, overrides: dict[str, Any], status: int, code: str) -> None:
    body = {"payment_no": "P-unknown", "refund_no": "r-1", "amount": 100, **overrides}
    response = api.post("/api/v1/refunds", body, format="json")
    assert response.status_code == status and response.json()["code"] == code
    assert not Refund.objects.exists()


def test_unknown_api_paths_answer_json_404(api: APIClient, settings: Any) -> None:
    settings.DEBUG = False
    response = api.get("/api/v1/nothing-here")
    assert response.status_code == 404 and response.json()["code"] == "not_found"


GET_PATHS = [
    "/api/v1/orders/%00",
    "/api/v1/payments/%00",
    "/api/v1/payments/by-channel-trade-no/%00",
    "/api/v1/refunds/%00",
    "/api/v1/orders?customer_ref=%00",
    "/api/v1/orders?status=%00",
    "/api/v1/payments?order_no=a%00b",
    "/api/v1/payments?customer_ref=%00",
    "/api/v1/orders?customer_ref=%FF%FE",
]


@pytest.mark.parametrize("path", GET_PATHS)
def test_nul_bytes_and_invalid_utf8_in_a_url_are_a_400(api: APIClient, path: str) -> None:
    response = api.get(path)
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"


def test_invalid_utf8_in_a_path_is_a_4xx_in_the_json_shape(api: APIClient) -> None:
    response = api.get("/api/v1/orders/%FF%FE")  # Django re-percent-encodes it: simply no such order
    assert response.status_code == 404 and response.json()["code"] == "not_found"


@pytest.mark.parametrize("path", ["/api/v1/payments/P%00/close", "/api/v1/payments/P%00/client-report"])
def test_nul_bytes_in_a_post_path_are_a_400(api: APIClient, path: str) -> None:
    response = api.post(path, {}, format="json")
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"


def test_json_nested_a_thousand_deep_is_a_400(api: APIClient) -> None:
    body = b'{"a":' * 1000 + b"1" + b"}" * 1000
    response = api.generic("POST", "/api/v1/orders", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"
    assert not Order.objects.exists()


@pytest.mark.parametrize("body", [b'{"merchant": "m\\u0000"}', b'{"k\\u0000": 1}', b'{"amount": NaN}'])
def test_nul_characters_and_non_numbers_in_json_are_a_400(api: APIClient, body: bytes) -> None:
    response = api.generic("POST", "/api/v1/orders", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"


def test_a_nul_in_a_client_report_detail_is_a_400_and_changes_nothing(api: APIClient) -> None:
    body = b'{"result": "success", "detail": {"sdk": "ok\\u0000"}}'
    response = api.generic("POST", "/api/v1/payments/P1/client-report", body, content_type="application/json")
    assert response.status_code == 400 and response.json()["code"] == "malformed_request"


def test_a_body_over_the_limit_is_a_413_in_the_json_shape(api: APIClient) -> None:
    body = b'{"pad": "' + b"x" * (10 * 1024 * 1024) + b'"}'
    response = api.generic("POST", "/api/v1/orders", body, content_type="application/json")
    assert response.status_code == 413
    assert response.json()["code"] == "request_too_large"


def test_a_callback_over_the_limit_is_a_413_too(client: Any) -> None:
    response = client.generic("POST", "/callbacks/wechat/1", b"x" * (2 * 1024 * 1024), content_type="application/json")
    assert response.status_code == 413 and response.json()["code"] == "request_too_large"


def test_an_unknown_list_filter_is_a_400_not_a_silently_wider_list(api: APIClient) -> None:
    response = api.get("/api/v1/orders", {"statu": "PAID"})
    assert response.status_code == 400 and "statu" in response.json()["extra"]["fields"]
    assert api.get("/api/v1/orders", {"status": "NOPE"}).status_code == 400
    assert api.get("/api/v1/orders", {"page_size": "0"}).status_code == 400
