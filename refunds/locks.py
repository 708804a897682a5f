"""Refund rows are locked after their payment (lock order: payment, orders, refunds)."""

from refunds.models import Refund


def refund_lock(refund_id: int) -> Refund:
    return Refund.objects.select_for_update(of=("self",), no_key=True).select_related("payment").get(pk=refund_id)
