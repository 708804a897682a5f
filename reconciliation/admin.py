"""Reconciliation in the admin: bills, runs with their summary, discrepancies with the actions
that settle them (each calls a service and records the acting user), a CSV export of a run's
discrepancies, and the ops console (linked from the admin index)."""

from __future__ import annotations

import csv
from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import get_object_or_404
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html, format_html_join

from paycore.admin_tools import (
    NoteActionForm,
    ReadOnlyAdmin,
    ReadOnlyInline,
    action_note,
    money_display,
    run_service_action,
)
from paycore.errors import PaycoreError
from paycore.money import format_money
from reconciliation.charts import series_svg
from reconciliation.models import BillLine, ChannelBill, Discrepancy, DiscrepancyAction, ReconciliationRun
from reconciliation.selectors import ops_attention, reconciliation_series
from reconciliation.services import (
    discrepancy_apply_channel_truth,
    discrepancy_ignore,
    discrepancy_refund,
    discrepancy_resolve,
    reconcile_day,
)

# The admin index shows the ops console's counts and links to its page.
admin.site.index_template = "admin/reconciliation/index.html"

CSV_COLUMNS = [
    "id",
    "bill_date",
    "account",
    "kind",
    "status",
    "ref",
    "payment_no",
    "refund_no",
    "channel_trade_no",
    "channel_refund_no",
    "currency",
    "channel_amount",
    "local_amount",
    "channel_status",
    "local_status",
    "channel_fee",
    "expected_fee",
    "line_count",
    "resolved_by",
    "resolved_at",
    "resolution_note",
]


class _Echo:
    def write(self, value: str) -> str:
        return value


def discrepancies_csv(rows: QuerySet[Discrepancy], filename: str) -> StreamingHttpResponse:
    """Amounts in minor units (exact, for spreadsheets), with the currency beside them."""
    writer = csv.writer(_Echo())

    def lines() -> Any:
        yield writer.writerow(CSV_COLUMNS)
        for item in rows.select_related("channel_account").order_by("pk").iterator():
            values = {**{c: getattr(item, c, "") for c in CSV_COLUMNS}, "account": item.channel_account.name}
            yield writer.writerow(["" if values[c] is None else values[c] for c in CSV_COLUMNS])

    response = StreamingHttpResponse(lines(), content_type="text/csv; charset=utf-8")
    response["Content-Disposition"] = f'attachment; filename="{filename}"'
    return response


@admin.register(ChannelBill)
class ChannelBillAdmin(ReadOnlyAdmin):
    list_display = ["bill_date", "channel_account", "status", "line_count", "payments", "refunds", "fees", "loaded_at"]
    list_filter = ["status", "channel_account__channel", "bill_date"]
    list_select_related = ["channel_account"]
    search_fields = ["channel_account__name", "digest"]
    date_hierarchy = "bill_date"
    exclude = ["payment_amount", "refund_amount", "fee_total"]
    readonly_fields = ["payments", "refunds", "fees"]

    def _currency(self, obj: ChannelBill) -> str | None:
        line = BillLine.objects.filter(bill=obj).values_list("currency", flat=True).first()
        return line

    @admin.display(description="payments")
    def payments(self, obj: ChannelBill) -> str:
        return f"{obj.payment_count} / {format_money(obj.payment_amount, self._currency(obj))}"

    @admin.display(description="refunds")
    def refunds(self, obj: ChannelBill) -> str:
        return f"{obj.refund_count} / {format_money(obj.refund_amount, self._currency(obj))}"

    @admin.display(description="fees")
    def fees(self, obj: ChannelBill) -> str:
        return format_money(obj.fee_total, self._currency(obj))


class DiscrepancyActionInline(ReadOnlyInline):
    model = DiscrepancyAction
    fields = ["created_at", "action", "actor", "note", "outcome"]


@admin.register(Discrepancy)
class DiscrepancyAdmin(ReadOnlyAdmin):
    list_display = [
        "kind",
        "status",
        "bill_date",
        "channel_account",
        "payment_no",
        "refund_no",
        "shown_channel_amount",
        "shown_local_amount",
        "channel_status",
        "local_status",
        "last_run",
    ]
    list_filter = ["status", "kind", "channel_account__channel", "line_kind", "bill_date"]
    list_select_related = ["channel_account", "last_run"]
    search_fields = ["payment_no", "refund_no", "channel_trade_no", "channel_refund_no", "ref"]
    raw_id_fields = ["payment", "refund", "run", "last_run", "channel_account"]
    date_hierarchy = "bill_date"
    shown_channel_amount = money_display("channel_amount", "currency", "channel amount")
    shown_local_amount = money_display("local_amount", "currency", "paycore amount")
    shown_channel_fee = money_display("channel_fee", "currency", "channel fee")
    shown_expected_fee = money_display("expected_fee", "currency", "expected fee")
    exclude = ["channel_amount", "local_amount", "channel_fee", "expected_fee"]
    readonly_fields = ["shown_channel_amount", "shown_local_amount", "shown_channel_fee", "shown_expected_fee"]
    inlines = [DiscrepancyActionInline]
    action_form = NoteActionForm
    actions = ["apply_channel_truth", "refund", "mark_resolved", "mark_ignored", "export_csv"]

    @admin.action(description="Apply the channel's truth (query it, record what it says)", permissions=["operate"])
    def apply_channel_truth(self, request: HttpRequest, queryset: QuerySet[Discrepancy]) -> None:
        note = action_note(request)
        run_service_action(
            self,
            request,
            queryset,
            "channel's truth applied",
            lambda d, actor: discrepancy_apply_channel_truth(discrepancy_id=d.pk, actor=actor, note=note),
        )

    @admin.action(description="Refund the payment (the amount the channel's bill shows)", permissions=["operate"])
    def refund(self, request: HttpRequest, queryset: QuerySet[Discrepancy]) -> None:
        note = action_note(request)
        run_service_action(
            self,
            request,
            queryset,
            "refund requested",
            lambda d, actor: discrepancy_refund(discrepancy_id=d.pk, actor=actor, note=note),
        )

    @admin.action(description="Mark resolved (with a note)", permissions=["operate"])
    def mark_resolved(self, request: HttpRequest, queryset: QuerySet[Discrepancy]) -> None:
        note = action_note(request)
        run_service_action(
            self,
            request,
            queryset,
            "resolved",
            lambda d, actor: discrepancy_resolve(discrepancy_id=d.pk, actor=actor, note=note),
        )

    @admin.action(description="Mark ignored (with a note)", permissions=["operate"])
    def mark_ignored(self, request: HttpRequest, queryset: QuerySet[Discrepancy]) -> None:
        note = action_note(request)
        run_service_action(
            self,
            request,
            queryset,
            "ignored",
            lambda d, actor: discrepancy_ignore(discrepancy_id=d.pk, actor=actor, note=note),
        )

    @admin.action(description="Export the selected as CSV")
    def export_csv(self, request: HttpRequest, queryset: QuerySet[Discrepancy]) -> StreamingHttpResponse:
        return discrepancies_csv(queryset, "discrepancies.csv")


@admin.register(ReconciliationRun)
class ReconciliationRunAdmin(ReadOnlyAdmin):
    list_display = [
        "id",
        "bill_date",
        "channel_account",
        "status",
        "lines",
        "matched",
        "held",
        "discrepancies",
        "new_discrepancies",
        "trigger",
        "started_at",
        "seconds",
    ]
    list_filter = ["status", "channel_account__channel", "trigger", "bill_date"]
    list_select_related = ["channel_account"]
    date_hierarchy = "bill_date"
    readonly_fields = ["summary"]
    fields = [
        "summary",
        "channel_account",
        "bill",
        "bill_date",
        "status",
        "trigger",
        "actor",
        "started_at",
        "finished_at",
        "load_seconds",
        "match_seconds",
        "reloaded",
        "fee_check",
        "error",
    ]
    action_form = NoteActionForm
    actions = ["reconcile_again"]

    @admin.display(description="seconds")
    def seconds(self, obj: ReconciliationRun) -> str:
        return f"{(obj.load_seconds or 0) + (obj.match_seconds or 0):.2f}"

    @admin.display(description="summary")
    def summary(self, obj: ReconciliationRun) -> str:
        discrepancies = reverse("admin:reconciliation_discrepancy_changelist") + f"?last_run__id__exact={obj.pk}"
        export = reverse("admin:reconciliation_reconciliationrun_csv", args=[obj.pk])
        kinds = format_html_join("", "<li>{}: {}</li>", sorted((obj.counts or {}).items())) or "none"
        money_rows = format_html_join(
            "",
            "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
            (
                (
                    currency or "-",
                    *(
                        format_money(values.get(name, 0), currency or None)
                        for name in (
                            "bill_payments",
                            "bill_refunds",
                            "bill_fees",
                            "local_payments",
                            "local_refunds",
                            "matched_amount",
                            "discrepant_amount",
                        )
                    ),
                )
                for currency, values in sorted((obj.totals or {}).items())
            ),
        )
        return format_html(
            "<p>{} lines; {} matched, {} held for the next bill, {} discrepancies ({} new, {} resolved since).</p>"
            "<ul>{}</ul>"
            "<table><tr><th>currency</th><th>bill payments</th><th>bill refunds</th><th>bill fees</th>"
            "<th>paycore payments</th><th>paycore refunds</th><th>matched</th><th>discrepant</th></tr>{}</table>"
            '<p><a href="{}">This run\'s discrepancies</a> · <a href="{}">Export them as CSV</a></p>',
            obj.lines,
            obj.matched,
            obj.held,
            obj.discrepancies,
            obj.new_discrepancies,
            obj.auto_resolved,
            kinds,
            money_rows,
            discrepancies,
            export,
        )

    def get_urls(self) -> list[Any]:
        extra = [
            path(
                "<int:run_id>/discrepancies.csv",
                self.admin_site.admin_view(self.export_view),
                name="reconciliation_reconciliationrun_csv",
            ),
            path("console/", self.admin_site.admin_view(self.console_view), name="reconciliation_console"),
        ]
        return extra + super().get_urls()

    def export_view(self, request: HttpRequest, run_id: int) -> HttpResponse:
        if not self.has_view_permission(request):
            return HttpResponse(status=403)
        run = get_object_or_404(ReconciliationRun, pk=run_id)
        rows = Discrepancy.objects.filter(last_run=run)
        return discrepancies_csv(rows, f"run-{run.pk}-{run.bill_date}-discrepancies.csv")

    def console_view(self, request: HttpRequest) -> HttpResponse:
        charts = [
            (series, series_svg(series, amounts=False), series_svg(series, amounts=True))
            for series in reconciliation_series(days=30)
        ]
        context = {
            **self.admin_site.each_context(request),
            "title": "Ops console",
            "attention": ops_attention(),
            "charts": charts,
            "recent_runs": ReconciliationRun.objects.select_related("channel_account").order_by("-pk")[:10],
        }
        return TemplateResponse(request, "admin/reconciliation/console.html", context)

    @admin.action(description="Reconcile the day again (fetch the bill again)", permissions=["operate"])
    def reconcile_again(self, request: HttpRequest, queryset: QuerySet[ReconciliationRun]) -> None:
        actor = f"ops:{request.user.get_username()}"
        for run in queryset:
            try:
                again = reconcile_day(
                    account_id=run.channel_account_id, bill_date=run.bill_date, reload=True, trigger="ops", actor=actor
                )
            except PaycoreError as exc:
                self.message_user(request, f"{run}: {exc.code}: {exc.message}", messages.ERROR)
                continue
            except Exception as exc:  # a channel error: report it, the sweep retries later
                self.message_user(request, f"{run}: {type(exc).__name__}: {exc}", messages.ERROR)
                continue
            self.log_change(request, again, f"reconciled again by {actor}")
            self.message_user(request, f"{run.channel_account} {run.bill_date}: run {again.pk} {again.status}")
