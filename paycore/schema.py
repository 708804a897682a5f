"""The OpenAPI schema says what the API really does, so generated clients are right: the bearer
key, every error answer an operation can give (in the one error shape), pages for lists, and
each field's limits (lengths, item counts, amount ranges)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.extensions import OpenApiAuthenticationExtension
from drf_spectacular.openapi import AutoSchema
from drf_spectacular.plumbing import ResolvedComponent
from rest_framework import serializers

from paycore.serializers import MoneyAmountField

ERROR_COMPONENT = "Error"
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["code", "message", "extra"],
    "properties": {
        "code": {"type": "string", "description": "A stable, machine-readable code: branch on this."},
        "message": {"type": "string", "description": "For people; may change."},
        "extra": {"type": "object", "additionalProperties": True, "description": "Details (fields, numbers)."},
    },
}

_MEANINGS = {
    "400": "The request is malformed or invalid (`invalid_request`, `malformed_request`, ...).",
    "401": "No valid API key (`unauthenticated`, `invalid_api_key`).",
    "403": "The key lacks the scope or may not act on this (`insufficient_scope`, `payment_shared`).",
    "404": "No such thing visible to this key (`not_found`).",
    "405": "The endpoint does not take this method (`method_not_allowed`).",
    "406": "The answer cannot be given in the requested media type (`not_acceptable`).",
    "409": "It conflicts with the state of things (`idempotency_key_reused`, `refund_exceeds_payment`, ...).",
    "413": "The body is too large (`request_too_large`).",
    "415": "The body is not JSON (`unsupported_media_type`).",
    "422": "The channel refused (`channel_rejected`).",
    "503": "The channel did not answer; the outcome is unknown, retry (`channel_unavailable`).",
}
_ANY_METHOD = ("400", "401", "403", "404", "405", "406")
_WITH_BODY = ("409", "413", "415")
_AT_THE_CHANNEL = ("422", "503")


class PaycoreAutoSchema(AutoSchema):
    def _get_response_bodies(self, direction: Any = "response") -> Any:
        responses = super()._get_response_bodies(direction)
        self.registry.register_on_missing(
            ResolvedComponent(name=ERROR_COMPONENT, type=ResolvedComponent.SCHEMA, schema=ERROR_SCHEMA, object="Error")
        )
        codes = list(_ANY_METHOD)
        if self.method in ("POST", "PUT", "PATCH"):
            codes += _WITH_BODY
        if getattr(self.view, "talks_to_channel", False) and self.method != "GET":
            codes += _AT_THE_CHANNEL
        body = {"application/json": {"schema": {"$ref": f"#/components/schemas/{ERROR_COMPONENT}"}}}
        for code in codes:
            responses.setdefault(code, {"description": _MEANINGS[code], "content": body})
        return responses

    def _map_serializer_field(self, field: Any, direction: Any, bypass_extensions: bool = False) -> Any:
        schema = super()._map_serializer_field(field, direction, bypass_extensions)
        if not isinstance(schema, dict) or direction != "request":
            return schema
        if isinstance(field, MoneyAmountField):
            schema.update(minimum=field.min_value, maximum=field.max_value)
        elif isinstance(field, serializers.CharField) and not field.allow_blank and "minLength" not in schema:
            schema["minLength"] = max(field.min_length or 1, 1)
        elif isinstance(field, serializers.ListField) and not field.allow_empty and "minItems" not in schema:
            schema["minItems"] = max(field.min_length or 1, 1)
        return schema


class ApiKeyAuthenticationScheme(OpenApiAuthenticationExtension):
    target_class = "paycore.auth.ApiKeyAuthentication"
    name = "ApiKey"

    def get_security_definition(self, auto_schema: Any) -> dict[str, str]:
        return {"type": "http", "scheme": "bearer", "description": "An API key from `manage.py create_api_key`."}
