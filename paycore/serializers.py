"""Field types shared by the apps' serializers. Money is strict: a JSON integer, nothing else."""

from __future__ import annotations

from typing import Any

from django.utils.functional import cached_property
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from paycore import money


@extend_schema_field(OpenApiTypes.INT64)
class MoneyAmountField(serializers.Field):
    """An integer number of minor units. Rejects strings, floats and booleans outright, so
    "12.5", 12.5 and true can never be read as an amount."""

    default_error_messages = {
        "type": "must be an integer number of minor units",
        "min": "must be at least {min}",
        "max": "must be at most {max}",
    }

    def __init__(self, *, min_value: int = 1, max_value: int = money.MAX_AMOUNT, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.min_value, self.max_value = min_value, max_value

    def to_internal_value(self, data: Any) -> int:
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("type")
        if data < self.min_value:
            self.fail("min", min=self.min_value)
        if data > self.max_value:
            self.fail("max", max=self.max_value)
        return data

    def to_representation(self, value: int) -> int:
        return int(value)


class StrictIntegerField(MoneyAmountField):
    default_error_messages = {**MoneyAmountField.default_error_messages, "type": "must be an integer"}


class CurrencyField(serializers.CharField):
    def __init__(self, **kwargs: Any) -> None:
        super().__init__(min_length=3, max_length=3, **kwargs)

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        value = super().to_internal_value(data)
        if not money.is_currency(value):
            raise serializers.ValidationError("is not an ISO 4217 currency code", code="unknown_currency")
        return value


class StrictCharField(serializers.CharField):
    """CharField that refuses numbers and booleans instead of silently stringifying them."""

    def to_internal_value(self, data: Any) -> str:
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class SharedFields:
    """Fields built and bound once per serializer class instead of once per instance.

    DRF deep-copies every declared field (and introspects the model, for a ModelSerializer) on
    each instance: a third of the CPU of a GET of a payment, a tenth of a POST of an order. A
    field's ``to_representation`` and ``run_validation`` read only the value they are given, so
    one bound set, parented by a context-free prototype, serves every instance and thread:
    nothing in such a serializer may read ``self.context``, ``partial`` or per-instance state
    from a field (SerializerMethodFields included).
    """

    @cached_property
    def fields(self) -> Any:
        cls = type(self)
        shared = cls.__dict__.get("_shared_fields")
        if shared is None:
            shared = serializers.Serializer.fields.func(cls())  # type: ignore[attr-defined]
            cls._shared_fields = shared  # type: ignore[attr-defined]
        return shared


class OutputModelSerializer(SharedFields, serializers.ModelSerializer):
    """A ModelSerializer for responses (see ``SharedFields``)."""


class InputSerializer(SharedFields, serializers.Serializer):
    """A request body or query string's serializer (see ``SharedFields``)."""
