from django.contrib import admin

from paycore.admin_tools import ReadOnlyAdmin, ReadOnlyInline, run_service_action
from refunds.models import Refund, RefundEvent
from refunds.services import refund_submit, refund_sync_from_channel


class RefundEventInline(ReadOnlyInline):
    model = RefundEvent
    fields = ["created_at", "from_status", "to_status", "source", "actor", "evidence"]


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["refund_no", "payment", "amount", "currency", "reason", "status", "created_at"]
    list_filter = ["status", "reason", "currency"]
    list_select_related = ["payment"]
    search_fields = ["refund_no", "channel_refund_no", "payment__payment_no", "payment__channel_trade_no"]
    raw_id_fields = ["payment"]
    inlines = [RefundEventInline]
    actions = ["sync_from_channel", "resubmit"]

    @admin.action(description="Query the channel and apply its answer", permissions=["operate"])
    def sync_from_channel(self, request, queryset):
        run_service_action(self, request, queryset, "synced", lambda r, actor: refund_sync_from_channel(refund_id=r.pk))

    @admin.action(description="Submit again (pending or failed refunds)", permissions=["operate"])
    def resubmit(self, request, queryset):
        run_service_action(self, request, queryset, "submitted", lambda r, actor: refund_submit(refund_id=r.pk))


@admin.register(RefundEvent)
class RefundEventAdmin(ReadOnlyAdmin):
    list_display = ["refund", "from_status", "to_status", "source", "actor", "created_at"]
    list_filter = ["source", "to_status"]
    search_fields = ["refund__refund_no"]
