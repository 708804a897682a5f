"""DRF authentication by API key and authorisation by scope."""

from __future__ import annotations

from typing import Any

from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication, get_authorization_header
from rest_framework.permissions import BasePermission
from rest_framework.request import Request

from paycore.apikeys import api_client_for_key
from paycore.models import ApiClient


class ApiKeyAuthentication(BaseAuthentication):
    keyword = "Bearer"

    def authenticate(self, request: Request) -> tuple[ApiClient, ApiClient] | None:
        header = get_authorization_header(request).split()
        if not header:
            return None
        if header[0].decode(errors="replace") != self.keyword or len(header) != 2:
            raise exceptions.AuthenticationFailed("use 'Authorization: Bearer <api key>'", code="invalid_api_key")
        client = api_client_for_key(header[1].decode(errors="replace"))
        if client is None:
            raise exceptions.AuthenticationFailed("the API key is not valid", code="invalid_api_key")
        return client, client

    def authenticate_header(self, request: Request) -> str:
        return self.keyword


class HasScope(BasePermission):
    """Views declare ``scopes = {"GET": "orders:read", "POST": "orders:write"}``.

    Every method is checked: HEAD and OPTIONS are reads, with the scope of the view's GET (or,
    on a view that only writes, the read scope of the same resource); a method the view does
    not declare is refused before DRF even looks for a handler."""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            raise exceptions.NotAuthenticated("an API key is required", code="unauthenticated")
        needed = required_scope(getattr(view, "scopes", {}), request.method or "")
        if needed is None:
            raise exceptions.MethodNotAllowed(request.method or "")
        if not client.has_scope(needed):
            raise exceptions.PermissionDenied(f"the API key lacks the scope {needed}", code="insufficient_scope")
        return True


def required_scope(scopes: dict[str, str], method: str) -> str | None:
    if method in ("HEAD", "OPTIONS"):
        if "GET" in scopes:
            return scopes["GET"]
        resource = next(iter(scopes.values()), "")
        return resource.replace(":write", ":read") if resource else None
    return scopes.get(method)
