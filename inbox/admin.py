from django.contrib import admin

from inbox.models import InboundNotification
from inbox.services import notification_reprocess
from paycore.admin_tools import ReadOnlyAdmin, run_service_action


@admin.register(InboundNotification)
class InboundNotificationAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "channel",
        "channel_account",
        "verification",
        "outcome",
        "event_type",
        "payment",
        "received_at",
    ]
    list_filter = ["channel", "verification", "outcome"]
    list_select_related = ["channel_account", "payment"]
    search_fields = ["payment__payment_no", "dedupe_key", "refund__refund_no"]
    exclude = ["body"]
    readonly_fields = ["body_text"]
    actions = ["reprocess"]

    @admin.display(description="body")
    def body_text(self, obj):
        return obj.body_bytes.decode("utf-8", "replace")

    @admin.action(description="Reprocess (verified notifications not yet applied)", permissions=["operate"])
    def reprocess(self, request, queryset):
        run_service_action(
            self, request, queryset, "reprocessed", lambda n, actor: notification_reprocess(notification_id=n.pk)
        )
