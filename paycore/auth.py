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
    """Views declare ``scopes = {"GET": "orders:read", "POST": "orders:write"}``."""

    def has_permission(self, request: Request, view: Any) -> bool:
        client = request.auth
        if not isinstance(client, ApiClient):
            raise exceptions.NotAuthenticated("an API key is required", code="unauthenticated")
        needed = getattr(view, "scopes", {}).get(request.method)
        if needed and not client.has_scope(needed):
            raise exceptions.PermissionDenied(f"the API key lacks the scope {needed}", code="insufficient_scope")
        return True
