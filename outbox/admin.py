"""Ops' view of the outbox: webhook deliveries (FAILED ones to resend), each consumer's cursor,
the risk rules' decisions, and suspended merchants with the evidence and the action that lifts
a suspension. Every action calls a service and records the acting user."""

from django.contrib import admin
from django.db.models import OuterRef, Subquery

from orders.models import Merchant
from orders.services import merchant_set_status
from outbox.models import ConsumerCursor, RiskDecision, SuspendedMerchant, WebhookAttempt, WebhookDelivery
from outbox.services import consumer_skip_event, webhook_resend
from paycore.admin_tools import NoteActionForm, ReadOnlyAdmin, ReadOnlyInline, action_note, run_service_action
from paycore.models import OutboxEvent


class WebhookAttemptInline(ReadOnlyInline):
    model = WebhookAttempt
    fields = ["number", "started_at", "status_code", "latency_ms", "error", "response_excerpt", "url"]


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(ReadOnlyAdmin):
    list_display = [
        "event_id",
        "topic",
        "key",
        "merchant",
        "delivery_status",
        "attempts",
        "next_attempt_at",
        "created_at",
    ]
    list_filter = ["delivery_status", "topic"]
    list_select_related = ["merchant"]
    search_fields = ["event_id", "key", "merchant__code"]
    raw_id_fields = ["merchant"]
    exclude = ["context"]
    readonly_fields = ["shown_context"]
    inlines = [WebhookAttemptInline]
    actions = ["resend"]

    @admin.display(description="context (inside paycore only)")
    def shown_context(self, obj):
        return obj.context

    @admin.action(description="Resend to the merchant (from the start of the schedule)", permissions=["operate"])
    def resend(self, request, queryset):
        run_service_action(
            self, request, queryset, "resent", lambda e, actor: webhook_resend(event_pks=[e.pk], actor=actor)
        )


@admin.register(ConsumerCursor)
class ConsumerCursorAdmin(ReadOnlyAdmin):
    list_display = ["name", "last_txid", "last_event_pk", "handled", "check_failures", "next_check_at", "updated_at"]
    readonly_fields = ["last_check_error"]
    actions = ["skip_failing_event"]

    @admin.action(description="Skip the event the consumer keeps failing on", permissions=["operate"])
    def skip_failing_event(self, request, queryset):
        run_service_action(
            self, request, queryset, "skipped one event", lambda c, actor: consumer_skip_event(name=c.name, actor=actor)
        )


@admin.register(RiskDecision)
class RiskDecisionAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "rule", "merchant", "outcome", "shown_reasons", "applied_at"]
    list_filter = ["outcome", "rule"]
    list_select_related = ["merchant"]
    search_fields = ["merchant__code"]
    raw_id_fields = ["merchant", "event"]

    @admin.display(description="reasons")
    def shown_reasons(self, obj):
        return "; ".join(obj.reasons) or "-"


@admin.register(SuspendedMerchant)
class SuspendedMerchantAdmin(ReadOnlyAdmin):
    """Suspended merchants, with the suspension's reason, who made it and its evidence."""

    list_display = ["code", "name", "suspended_at", "suspended_by", "evidence"]
    search_fields = ["code", "name"]
    fields = ["code", "name", "status", "suspended_at", "suspended_by", "evidence"]
    readonly_fields = fields
    action_form = NoteActionForm
    actions = ["lift"]

    def get_queryset(self, request):
        last = OutboxEvent.objects.filter(merchant=OuterRef("pk"), topic="merchant.suspended").order_by("-pk")
        return (
            super()
            .get_queryset(request)
            .filter(status=Merchant.Status.SUSPENDED)
            .annotate(
                suspended_at=Subquery(last.values("created_at")[:1]),
                suspension_context=Subquery(last.values("context")[:1]),
            )
        )

    @admin.display(description="suspended at")
    def suspended_at(self, obj):
        return obj.suspended_at

    @admin.display(description="by")
    def suspended_by(self, obj):
        return (obj.suspension_context or {}).get("actor", "")

    @admin.display(description="evidence")
    def evidence(self, obj):
        return (obj.suspension_context or {}).get("evidence", {})

    @admin.action(description="Lift the suspension (reinstate)", permissions=["operate"])
    def lift(self, request, queryset):
        note = action_note(request)
        run_service_action(
            self,
            request,
            queryset,
            "reinstated",
            lambda m, actor: merchant_set_status(
                merchant_id=m.pk, status=Merchant.Status.ACTIVE, actor=actor, reason="reviewed", evidence={"note": note}
            ),
        )
