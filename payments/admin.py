from django.contrib import admin

from paycore.admin_tools import ReadOnlyAdmin, ReadOnlyInline, run_service_action
from payments.models import EventSource, InboundNotification, Payment, PaymentEvent, PaymentOrderMap
from payments.services import notification_process, payment_close, payment_sync_from_channel


class PaymentMapInline(ReadOnlyInline):
    model = PaymentOrderMap
    fields = ["order", "amount", "is_current", "created_at"]
    raw_id_fields = ["order"]


class PaymentEventInline(ReadOnlyInline):
    model = PaymentEvent
    fields = ["created_at", "from_status", "to_status", "source", "actor", "evidence"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["payment_no", "channel", "method", "amount", "currency", "status", "channel_trade_no",
                    "created_at"]
    list_filter = ["status", "channel", "method", "currency"]
    list_select_related = ["channel_account"]
    search_fields = ["payment_no", "channel_trade_no", "maps__order__merchant_order_no", "maps__order__order_no"]
    raw_id_fields = ["channel_account"]
    inlines = [PaymentMapInline, PaymentEventInline]
    actions = ["sync_from_channel", "close"]

    @admin.action(description="Query the channel and apply its answer", permissions=["operate"])
    def sync_from_channel(self, request, queryset):
        run_service_action(self, request, queryset, "synced", lambda p, actor: payment_sync_from_channel(
            payment_id=p.pk, source=EventSource.OPS, evidence={"actor": actor}))

    @admin.action(description="Close (at the channel, then here)", permissions=["operate"])
    def close(self, request, queryset):
        run_service_action(self, request, queryset, "closed", lambda p, actor: payment_close(
            payment_id=p.pk, reason="ops", source=EventSource.OPS, actor=actor))


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ["payment", "from_status", "to_status", "source", "actor", "created_at"]
    list_filter = ["source", "to_status"]
    list_select_related = ["payment"]
    search_fields = ["payment__payment_no"]


@admin.register(PaymentOrderMap)
class PaymentOrderMapAdmin(ReadOnlyAdmin):
    list_display = ["payment", "order", "amount", "is_current", "created_at"]
    list_filter = ["is_current"]
    list_select_related = ["payment", "order"]
    search_fields = ["payment__payment_no", "order__order_no", "order__merchant_order_no"]


@admin.register(InboundNotification)
class InboundNotificationAdmin(ReadOnlyAdmin):
    list_display = ["id", "channel", "channel_account", "verification", "outcome", "event_type", "payment",
                    "received_at"]
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
        run_service_action(self, request, queryset, "reprocessed",
                           lambda n, actor: notification_process(notification_id=n.pk))
