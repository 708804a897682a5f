"""Input and output shapes of the events API; no business rules here."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from paycore.models import OutboxEvent
from paycore.serializers import InputSerializer, StrictCharField


class EventListQuery(InputSerializer):
    after = serializers.UUIDField(required=False, help_text="Only events after this event id (oldest first).")
    merchant = StrictCharField(max_length=32, required=False, help_text="Platform keys: one merchant's events.")
    type = StrictCharField(max_length=100, required=False, help_text="Only events of this type.")


class EventReplayInput(InputSerializer):
    after = serializers.UUIDField(help_text="Send again every event after this one (oldest first).")
    merchant = StrictCharField(max_length=32, required=False, help_text="Platform keys: whose events.")
    limit = serializers.IntegerField(min_value=1, max_value=1000, default=500)


class EventDeliveryOutput(serializers.Serializer):
    status = serializers.CharField(source="delivery_status")
    attempts = serializers.IntegerField()
    delivered_at = serializers.DateTimeField(allow_null=True)
    next_attempt_at = serializers.DateTimeField(allow_null=True)


class EventOutput(serializers.Serializer):
    """The event exactly as the webhook body carries it, plus where its delivery stands."""

    id = serializers.UUIDField(source="event_id")
    type = serializers.CharField(source="topic")
    created_at = serializers.DateTimeField()
    merchant = serializers.CharField(source="merchant.code")
    data = serializers.SerializerMethodField()
    delivery = EventDeliveryOutput(source="*")

    def get_data(self, event: OutboxEvent) -> dict[str, Any]:
        return dict(event.payload)


class EventReplayOutput(serializers.Serializer):
    replayed = serializers.IntegerField()
    event_ids = serializers.ListField(child=serializers.UUIDField())
