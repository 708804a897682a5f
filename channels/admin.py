"""Channel accounts in the admin. Credentials are write-only: the form takes new JSON and keeps
the stored value when left blank; nothing secret is ever rendered back."""

from __future__ import annotations

import json

from django import forms
from django.contrib import admin

from channels.models import ChannelAccount


class ChannelAccountForm(forms.ModelForm):
    new_credentials = forms.CharField(
        required=False,
        widget=forms.PasswordInput(render_value=False),
        help_text="JSON object of secrets (private keys, API keys). Leave blank to keep the stored ones.",
    )

    class Meta:
        model = ChannelAccount
        fields = ["channel", "name", "base_url", "ids", "options", "is_enabled", "callback_ip_allowlist"]

    def clean_new_credentials(self) -> dict | None:
        raw = self.cleaned_data.get("new_credentials")
        if not raw:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            raise forms.ValidationError("not valid JSON") from None
        if not isinstance(value, dict) or not all(isinstance(v, str) for v in value.values()):
            raise forms.ValidationError("a JSON object of strings is expected")
        return value

    def save(self, commit: bool = True) -> ChannelAccount:
        account = super().save(commit=False)
        if self.cleaned_data.get("new_credentials") is not None:
            account.credentials = self.cleaned_data["new_credentials"]
        if commit:
            account.save()
        return account


@admin.register(ChannelAccount)
class ChannelAccountAdmin(admin.ModelAdmin):
    form = ChannelAccountForm
    list_display = ["name", "channel", "base_url", "is_enabled", "credential_names"]
    list_filter = ["channel", "is_enabled"]
    search_fields = ["name"]

    @admin.display(description="credentials held")
    def credential_names(self, obj: ChannelAccount) -> str:
        return ", ".join(sorted(obj.credentials)) or "-"
