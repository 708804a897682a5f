"""Every route, every method, every scope: a key is let through exactly when it holds the scope
the route declares for that method. HEAD and OPTIONS are reads, never a way around a scope."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from django.urls import URLPattern, get_resolver
from rest_framework.test import APIClient

from paycore.api import ApiView
from paycore.apikeys import api_client_create
from paycore.auth import required_scope
from paycore.models import Scope

pytestmark = pytest.mark.django_db

METHODS = ["GET", "HEAD", "OPTIONS", "POST", "PUT", "PATCH", "DELETE"]


def api_routes() -> Iterator[tuple[str, type[ApiView]]]:
    """Every v1 route served by an ApiView, with sample values for its path parameters."""
    resolver = get_resolver()
    for pattern in resolver.url_patterns:
        if getattr(pattern, "namespace", None) != "v1":
            continue
        for route in pattern.url_patterns:
            view = getattr(getattr(route, "callback", None), "view_class", None)
            if isinstance(route, URLPattern) and view is not None and issubclass(view, ApiView):
                path = str(route.pattern).replace("<str:", "{").replace(">", "}")
                yield (
                    "/api/v1/" + path.format(order_no="O1", payment_no="P1", refund_no="r1", channel_trade_no="42"),
                    view,
                )


ROUTES = sorted(api_routes(), key=lambda r: r[0])


def test_the_walk_covers_every_endpoint() -> None:
    assert len(ROUTES) >= 11


@pytest.mark.parametrize("scope", Scope.values)
def test_every_route_lets_a_key_through_exactly_with_its_scope(scope: str) -> None:
    _, key = api_client_create(name=f"only-{scope}", scopes=[scope])
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_IDEMPOTENCY_KEY="walk")
    for path, view in ROUTES:
        for method in METHODS:
            needed = required_scope(view.scopes, method)
            response = client.generic(method, path, b"{}", content_type="application/json")
            if needed is None:
                assert response.status_code == 405, (path, method)
            elif needed == scope:
                assert response.status_code != 403, (path, method, response.status_code)
            else:
                assert response.status_code == 403, (path, method, scope)
                if method != "HEAD":
                    assert response.json()["code"] == "insufficient_scope", (path, method)
