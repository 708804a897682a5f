"""Every endpoint needs a valid key with the right scope; failures have stable codes."""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any

import pytest
from rest_framework.test import APIClient

from paycore.apikeys import api_client_create
from paycore.models import ApiClient, Scope

pytestmark = pytest.mark.django_db

ENDPOINTS = [
    ("get", "/api/v1/orders"),
    ("post", "/api/v1/orders"),
    ("get", "/api/v1/orders/O1"),
    ("post", "/api/v1/cashier"),
    ("get", "/api/v1/payments"),
    ("post", "/api/v1/payments"),
    ("get", "/api/v1/payments/P1"),
    ("get", "/api/v1/payments/by-channel-trade-no/42"),
    ("post", "/api/v1/payments/P1/client-report"),
    ("post", "/api/v1/payments/P1/close"),
    ("post", "/api/v1/orders/O1/cancel"),
    ("post", "/api/v1/refunds"),
    ("get", "/api/v1/refunds/r1"),
]


@pytest.mark.parametrize(("method", "path"), ENDPOINTS)
def test_a_request_without_a_key_is_unauthenticated(anonymous_api: APIClient, method: str, path: str) -> None:
    response = getattr(anonymous_api, method)(path, {}, format="json")
    assert response.status_code == 401
    assert response.json()["code"] == "unauthenticated"
    assert response["WWW-Authenticate"] == "Bearer"


@pytest.mark.parametrize("header", ["Bearer pc_nope_nope", "Bearer garbage", "Basic abc", "Bearer", "Bearer a b"])
def test_a_wrong_key_is_refused(anonymous_api: APIClient, header: str) -> None:
    api_client_create(name="real")
    anonymous_api.credentials(HTTP_AUTHORIZATION=header)
    response = anonymous_api.get("/api/v1/orders")
    assert response.status_code == 401
    assert response.json()["code"] == "invalid_api_key"


def test_a_deactivated_key_is_refused(anonymous_api: APIClient) -> None:
    client, key = api_client_create(name="gone")
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)
    anonymous_api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert anonymous_api.get("/api/v1/orders").json()["code"] == "invalid_api_key"


def test_a_key_deactivated_by_saving_it_is_refused_at_once_though_it_was_just_used(anonymous_api: APIClient) -> None:
    client, key = api_client_create(name="revoked")
    anonymous_api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert anonymous_api.get("/api/v1/orders").status_code == 200  # now in this process's cache
    client.is_active = False
    client.save()  # what the admin does
    assert anonymous_api.get("/api/v1/orders").json()["code"] == "invalid_api_key"


def test_a_deactivation_made_elsewhere_is_seen_once_the_cache_time_has_passed(
    anonymous_api: APIClient, settings: Any
) -> None:
    settings.API_KEY_CACHE_SECONDS = 0  # the time has passed: every request reads the key again
    client, key = api_client_create(name="revoked-elsewhere")
    anonymous_api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    assert anonymous_api.get("/api/v1/orders").status_code == 200
    ApiClient.objects.filter(pk=client.pk).update(is_active=False)  # another process, no signal here
    assert anonymous_api.get("/api/v1/orders").json()["code"] == "invalid_api_key"


def test_last_used_is_recorded_once_a_minute_not_on_every_request(anonymous_api: APIClient) -> None:
    client, key = api_client_create(name="busy")
    anonymous_api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    anonymous_api.get("/api/v1/orders")
    first = ApiClient.objects.get(pk=client.pk).last_used_at
    assert first is not None
    for _ in range(3):
        anonymous_api.get("/api/v1/orders")
    assert ApiClient.objects.get(pk=client.pk).last_used_at == first


def test_a_key_with_the_right_prefix_but_wrong_secret_is_refused(anonymous_api: APIClient) -> None:
    _, key = api_client_create(name="real")
    anonymous_api.credentials(HTTP_AUTHORIZATION=f"Bearer {key[:-2]}xx")
    assert anonymous_api.get("/api/v1/orders").status_code == 401


def test_keys_are_stored_only_as_hashes() -> None:
    client, key = api_client_create(name="hashed")
    client.refresh_from_db()
    secret = key.split("_", 2)[2]  # the secret itself may contain "_"
    stored = " ".join(str(v) for v in ApiClient.objects.filter(pk=client.pk).values().get().values())
    assert secret not in stored
    assert client.key_hash == hashlib.sha256(key.encode()).hexdigest()


@pytest.mark.parametrize(
    ("scope", "method", "path"),
    [
        (Scope.ORDERS_READ, "post", "/api/v1/orders"),
        (Scope.PAYMENTS_READ, "post", "/api/v1/payments"),
        (Scope.ORDERS_WRITE, "get", "/api/v1/payments/P1"),
        (Scope.PAYMENTS_WRITE, "post", "/api/v1/refunds"),
        (Scope.REFUNDS_WRITE, "get", "/api/v1/refunds/r1"),
    ],
)
def test_a_key_without_the_scope_is_forbidden(
    api_with_scopes: Callable[..., APIClient], scope: str, method: str, path: str
) -> None:
    response = getattr(api_with_scopes(scope), method)(path, {}, format="json")
    assert response.status_code == 403
    assert response.json() == {"code": "insufficient_scope", "message": response.json()["message"], "extra": {}}


def test_the_docs_and_schema_need_no_key(anonymous_api: APIClient) -> None:
    schema = anonymous_api.get("/api/v1/schema")
    assert schema.status_code == 200
    assert b"/api/v1/payments" in schema.content
    assert anonymous_api.get("/api/v1/docs").status_code == 200
    assert anonymous_api.get("/api/v1/").json()["name"] == "paycore"


def test_the_openapi_schema_is_valid_and_complete() -> None:
    from io import StringIO

    from django.core.management import call_command

    out = StringIO()
    call_command("spectacular", "--validate", "--fail-on-warn", stdout=out)
    schema = out.getvalue()
    for path in ("/api/v1/orders", "/api/v1/cashier", "/api/v1/payments/{payment_no}/close", "/api/v1/refunds"):
        assert f"{path}:" in schema
    assert "scheme: bearer" in schema
