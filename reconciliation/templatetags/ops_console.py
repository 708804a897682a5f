"""``{% ops_attention %}``: the ops console's counts, for the admin index."""

from __future__ import annotations

from typing import Any

from django import template

from reconciliation.selectors import ops_attention as attention_rows

register = template.Library()


@register.inclusion_tag("admin/reconciliation/attention.html")
def ops_attention() -> dict[str, Any]:
    return {"attention": attention_rows()}
