"""Admin building blocks: read-only money rows, and actions that call services."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.admin.helpers import ActionForm
from django.http import HttpRequest

from paycore.errors import PaycoreError
from paycore.money import format_money


class ReadOnlyAdmin(admin.ModelAdmin):
    """Money and history rows: visible, never edited by hand; state changes go through actions."""

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_operate_permission(self, request: HttpRequest) -> bool:
        """Actions that call services need the model's change permission (granted to ops
        groups), even though no field can be edited by hand."""
        opts = self.opts
        return request.user.has_perm(f"{opts.app_label}.change_{opts.model_name}")


class ReadOnlyInline(admin.TabularInline):
    extra = 0
    can_delete = False

    def get_readonly_fields(self, request: HttpRequest, obj: Any = None) -> Any:
        return self.fields or [f.name for f in self.model._meta.fields]

    def has_add_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


class NoteActionForm(ActionForm):
    """The admin's action bar with a note: decisions that settle money by hand say why."""

    note = forms.CharField(required=False, max_length=200, label="Note (recorded with the decision)")


def action_note(request: HttpRequest) -> str:
    return str(request.POST.get("note", "")).strip()


def money_display(
    amount_field: str = "amount", currency: str = "currency", description: str = "amount"
) -> Callable[[Any, Any], str]:
    """An admin column showing an amount in major units with its currency ("15.00 CNY", never
    "1500"); ``currency`` is a field or a double-underscore path to one (``payment__currency``)."""

    @admin.display(description=description, ordering=amount_field)
    def show(modeladmin: Any, obj: Any) -> str:
        value: Any = obj
        for part in currency.split("__"):
            value = getattr(value, part, None)
        return format_money(getattr(obj, amount_field), value)

    return show


def run_service_action(modeladmin: admin.ModelAdmin, request: HttpRequest, rows: Any, label: str, call: Any) -> None:
    """Call ``call(row, actor)`` for each row; report successes and errors to the ops user."""
    actor = f"ops:{request.user.get_username()}"
    done = 0
    for row in rows:
        try:
            call(row, actor)
            done += 1
            modeladmin.log_change(request, row, f"{label} by {actor}")  # Django's admin history
        except PaycoreError as exc:
            modeladmin.message_user(request, f"{row}: {exc.code}: {exc.message}", messages.ERROR)
    if done:
        modeladmin.message_user(request, f"{label}: {done} done", messages.SUCCESS)


def mask(value: str, keep: int = 4) -> str:
    return "" if not value else ("*" * max(len(value) - keep, 0)) + value[-keep:]
