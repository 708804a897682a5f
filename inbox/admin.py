import json

from django.contrib import admin, messages

from inbox.models import InboundNotification
from inbox.services import notification_reprocess, notification_reverify
from paycore.admin_tools import ReadOnlyAdmin, run_service_action


@admin.register(InboundNotification)
class InboundNotificationAdmin(ReadOnlyAdmin):
    """Raw requests are encrypted at rest; only ops with the change permission see them decrypted
    (they carry payer identifiers), and may have a stored request verified again."""

    list_display = [
        "id",
        "channel",
        "channel_account",
        "verification",
        "outcome",
        "is_duplicate",
        "event_type",
        "payment",
        "received_at",
    ]
    list_filter = ["channel", "verification", "outcome", "is_duplicate"]
    list_select_related = ["channel_account", "payment"]
    search_fields = ["payment__payment_no", "dedupe_key", "refund__refund_no"]
    raw_id_fields = ["channel_account", "payment", "refund"]
    exclude = ["body", "headers"]
    actions = ["reprocess", "reverify"]

    def get_readonly_fields(self, request, obj=None):
        fields = list(super().get_readonly_fields(request, obj))
        if self.has_operate_permission(request):
            fields += ["headers_text", "body_text"]
        return fields

    @admin.display(description="headers (decrypted)")
    def headers_text(self, obj):
        return json.dumps(obj.headers, indent=2, sort_keys=True, ensure_ascii=False)

    @admin.display(description="body (decrypted)")
    def body_text(self, obj):
        return obj.body_bytes.decode("utf-8", "replace")

    @admin.action(description="Reprocess (verified notifications not yet applied)", permissions=["operate"])
    def reprocess(self, request, queryset):
        run_service_action(
            self, request, queryset, "reprocessed", lambda n, actor: notification_reprocess(notification_id=n.pk)
        )

    @admin.action(description="Re-verify the stored request (changes nothing)", permissions=["operate"])
    def reverify(self, request, queryset):
        for inbound in queryset:
            result = notification_reverify(notification_id=inbound.pk)
            level = messages.SUCCESS if result.startswith("verifies") else messages.WARNING
            self.message_user(request, f"{inbound}: {result}", level)
