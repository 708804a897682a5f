"""Refunds in the admin. Money rows are read-only; ops act through actions that call services
and record the acting user. Refunds the automation gave up on (NEEDS_ATTENTION) can be retried
or resolved with a note."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest

from paycore.admin_tools import (
    NoteActionForm,
    ReadOnlyAdmin,
    ReadOnlyInline,
    action_note,
    money_display,
    run_service_action,
)
from paycore.models import EventSource
from refunds.models import Refund, RefundAllocation, RefundAttempt, RefundEvent
from refunds.services import refund_resolve, refund_retry, refund_sync_from_channel


class RefundEventInline(ReadOnlyInline):
    model = RefundEvent
    fields = ["created_at", "from_status", "to_status", "source", "actor", "evidence"]


class RefundAttemptInline(ReadOnlyInline):
    model = RefundAttempt
    fields = ["number", "request_no", "channel_refund_no", "status", "fail_code", "created_at", "finished_at"]


class RefundAllocationInline(ReadOnlyInline):
    model = RefundAllocation
    fields = ["payment_map", "share"]
    share = money_display("amount", "refund__currency", "share")


@admin.register(Refund)
class RefundAdmin(ReadOnlyAdmin):
    list_display = ["refund_no", "payment", "shown_amount", "reason", "status", "created_at"]
    shown_amount = money_display()
    exclude = ["amount"]
    readonly_fields = ["shown_amount"]
    list_filter = ["status", "reason", "currency"]
    list_select_related = ["payment"]
    search_fields = ["refund_no", "channel_refund_no", "attempts__request_no", "payment__payment_no"]
    raw_id_fields = ["payment"]
    inlines = [RefundAllocationInline, RefundAttemptInline, RefundEventInline]
    action_form = NoteActionForm
    actions = ["sync_from_channel", "retry", "resolve_refunded", "resolve_abandoned"]

    @admin.action(description="Query the channel and apply its answer", permissions=["operate"])
    def sync_from_channel(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        run_service_action(
            self,
            request,
            queryset,
            "synced",
            lambda r, actor: refund_sync_from_channel(refund_id=r.pk, source=EventSource.OPS),
        )

    @admin.action(description="Retry under a new request number (failed or needing attention)", permissions=["operate"])
    def retry(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        run_service_action(
            self,
            request,
            queryset,
            "retried",
            lambda r, actor: refund_retry(refund_id=r.pk, source=EventSource.OPS, actor=actor),
        )

    @admin.action(description="Resolve: refunded outside paycore (needs a note)", permissions=["operate"])
    def resolve_refunded(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        self._resolve(request, queryset, refunded=True)

    @admin.action(description="Resolve: abandon the refund (needs a note)", permissions=["operate"])
    def resolve_abandoned(self, request: HttpRequest, queryset: QuerySet[Refund]) -> None:
        self._resolve(request, queryset, refunded=False)

    def _resolve(self, request: HttpRequest, queryset: QuerySet[Refund], *, refunded: bool) -> None:
        note = action_note(request)
        if not note:
            self.message_user(request, "write a note: it is recorded with the decision", messages.ERROR)
            return
        run_service_action(
            self,
            request,
            queryset,
            "resolved",
            lambda r, actor: refund_resolve(refund_id=r.pk, refunded=refunded, note=note, actor=actor),
        )


@admin.register(RefundEvent)
class RefundEventAdmin(ReadOnlyAdmin):
    list_display = ["refund", "from_status", "to_status", "source", "actor", "created_at"]
    list_filter = ["source", "to_status"]
    search_fields = ["refund__refund_no"]


@admin.register(RefundAttempt)
class RefundAttemptAdmin(ReadOnlyAdmin):
    list_display = ["refund", "number", "request_no", "status", "fail_code", "created_at"]
    list_filter = ["status"]
    list_select_related = ["refund"]
    search_fields = ["refund__refund_no", "request_no", "channel_refund_no"]


@admin.register(RefundAllocation)
class RefundAllocationAdmin(ReadOnlyAdmin):
    list_display = ["refund", "payment_map", "share"]
    share = money_display("amount", "refund__currency", "share")
    exclude = ["amount"]
    readonly_fields = ["share"]
    list_select_related = ["refund", "payment_map"]
    search_fields = ["refund__refund_no", "payment_map__order__order_no"]
