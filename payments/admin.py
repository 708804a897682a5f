from django.contrib import admin, messages

from orders.admin import OrderAdmin
from orders.models import Order
from paycore.admin_tools import (
    NoteActionForm,
    ReadOnlyAdmin,
    ReadOnlyInline,
    action_note,
    money_display,
    run_service_action,
)
from paycore.models import EventSource
from payments.models import Payment, PaymentEvent, PaymentOrderMap
from payments.services import (
    paycode_resolve_revoked,
    paycode_revoke,
    payment_close,
    payment_return_to_sweeps,
    payment_sync_from_channel,
)


class PaymentMapInline(ReadOnlyInline):
    model = PaymentOrderMap
    fields = ["order", "share", "is_current", "outcome", "created_at"]
    share = money_display("amount", "payment__currency", "share")
    raw_id_fields = ["order"]


class PaymentEventInline(ReadOnlyInline):
    model = PaymentEvent
    fields = ["created_at", "from_status", "to_status", "source", "actor", "evidence"]


@admin.register(Payment)
class PaymentAdmin(ReadOnlyAdmin):
    list_display = ["payment_no", "channel", "method", "shown_amount", "status", "channel_trade_no", "created_at"]
    shown_amount = money_display()
    exclude = ["amount"]
    list_filter = ["status", "channel", "method", "currency"]
    list_select_related = ["channel_account"]
    search_fields = ["payment_no", "channel_trade_no", "maps__order__merchant_order_no", "maps__order__order_no"]
    raw_id_fields = ["channel_account"]
    inlines = [PaymentMapInline, PaymentEventInline]
    readonly_fields = ["shown_amount", "next_check_at", "check_failures", "last_check_error", "watch_until"]
    action_form = NoteActionForm
    actions = ["sync_from_channel", "close", "return_to_sweeps", "retry_revocation", "resolve_revoked"]

    @admin.action(description="Query the channel and apply its answer", permissions=["operate"])
    def sync_from_channel(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            "synced",
            lambda p, actor: payment_sync_from_channel(
                payment_id=p.pk, source=EventSource.OPS, evidence={"actor": actor}
            ),
        )

    @admin.action(description="Hand back to the automatic checks (needs attention -> pending)", permissions=["operate"])
    def return_to_sweeps(self, request, queryset):
        note = action_note(request)
        run_service_action(
            self,
            request,
            queryset,
            "handed back",
            lambda p, actor: payment_return_to_sweeps(payment_id=p.pk, actor=actor, note=note),
        )

    @admin.action(description="Payment code: revoke again at the channel", permissions=["operate"])
    def retry_revocation(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            "revocation tried",
            lambda p, actor: paycode_revoke(payment_id=p.pk, reason="ops", source=EventSource.OPS, actor=actor),
        )

    @admin.action(
        description="Payment code: resolve as revoked outside paycore (needs a note)", permissions=["operate"]
    )
    def resolve_revoked(self, request, queryset):
        note = action_note(request)
        if not note:
            self.message_user(request, "write a note: it is recorded with the decision", messages.ERROR)
            return
        run_service_action(
            self,
            request,
            queryset,
            "resolved",
            lambda p, actor: paycode_resolve_revoked(payment_id=p.pk, note=note, actor=actor),
        )

    @admin.action(description="Close (at the channel, then here)", permissions=["operate"])
    def close(self, request, queryset):
        run_service_action(
            self,
            request,
            queryset,
            "closed",
            lambda p, actor: payment_close(payment_id=p.pk, reason="ops", source=EventSource.OPS, actor=actor),
        )


@admin.register(PaymentEvent)
class PaymentEventAdmin(ReadOnlyAdmin):
    list_display = ["payment", "from_status", "to_status", "source", "actor", "created_at"]
    list_filter = ["source", "to_status"]
    list_select_related = ["payment"]
    search_fields = ["payment__payment_no"]


@admin.register(PaymentOrderMap)
class PaymentOrderMapAdmin(ReadOnlyAdmin):
    list_display = ["payment", "order", "share", "is_current", "outcome", "created_at"]
    share = money_display("amount", "payment__currency", "share")
    exclude = ["amount"]
    readonly_fields = ["share"]
    list_filter = ["is_current", "outcome"]
    list_select_related = ["payment", "order"]
    search_fields = ["payment__payment_no", "order__order_no", "order__merchant_order_no"]


class OrderMapInline(ReadOnlyInline):
    model = PaymentOrderMap
    fields = ["payment", "share", "is_current", "outcome", "created_at"]
    share = money_display("amount", "payment__currency", "share")
    raw_id_fields = ["payment"]


# Payments sit above orders, so the order page learns of the payments tried for it here.
admin.site.unregister(Order)


@admin.register(Order)
class OrderWithPaymentsAdmin(OrderAdmin):
    inlines = [*OrderAdmin.inlines, OrderMapInline]
