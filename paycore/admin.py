from typing import Any

from django.contrib import admin
from django.http import HttpRequest

from paycore.admin_tools import ReadOnlyAdmin
from paycore.models import ApiClient, IdempotencyRecord, OutboxEvent


@admin.register(ApiClient)
class ApiClientAdmin(admin.ModelAdmin):
    """Keys are created by `manage.py create_api_key` (shown once); here ops can only see and
    deactivate clients."""

    list_display = ["name", "merchant", "key_prefix", "is_active", "last_used_at", "created_at"]
    list_filter = ["is_active"]
    search_fields = ["name", "key_prefix"]
    fields = ["name", "merchant", "key_prefix", "scopes", "is_active", "last_used_at", "created_at"]
    readonly_fields = ["name", "merchant", "key_prefix", "scopes", "last_used_at", "created_at"]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(IdempotencyRecord)
class IdempotencyRecordAdmin(ReadOnlyAdmin):
    list_display = ["key", "client", "method", "path", "state", "response_status", "created_at"]
    list_filter = ["state"]
    search_fields = ["key"]
    exclude = ["response_body"]


@admin.register(OutboxEvent)
class OutboxEventAdmin(ReadOnlyAdmin):
    """The raw event stream; deliveries and their resend action are under the outbox app."""

    list_display = ["topic", "key", "merchant", "delivery_status", "created_at", "delivered_at", "attempts"]
    list_filter = ["topic", "delivery_status"]
    list_select_related = ["merchant"]
    raw_id_fields = ["merchant"]
    search_fields = ["key"]
