"""Reads of refunds, scoped like payments: a merchant key sees a refund that refunds any of its
orders, and only its own part of it (its orders, and as the amount what they got back)."""

from __future__ import annotations

from django.db.models import Exists, F, OuterRef, Prefetch, Q, QuerySet, Sum

from paycore.errors import NotFound
from paycore.models import ApiClient
from refunds.models import Refund, RefundAllocation


def refunds_visible_to(client: ApiClient) -> QuerySet[Refund]:
    allocations = RefundAllocation.objects.select_related("payment_map__order").order_by("payment_map__order_id")
    qs = Refund.objects.select_related("payment")
    if not client.merchant_id:
        return qs.prefetch_related(Prefetch("allocations", queryset=allocations)).annotate(shown_amount=F("amount"))
    own = Q(payment_map__order__merchant_id=client.merchant_id)
    return (
        qs.filter(Exists(RefundAllocation.objects.filter(own, refund=OuterRef("pk"))))
        .prefetch_related(Prefetch("allocations", queryset=allocations.filter(own)))
        .annotate(
            shown_amount=Sum(
                "allocations__amount", filter=Q(allocations__payment_map__order__merchant_id=client.merchant_id)
            )
        )
    )


def refund_get_for_client(*, client: ApiClient, refund_no: str) -> Refund:
    refund = refunds_visible_to(client).filter(refund_no=refund_no).first()
    if refund is None:
        raise NotFound("no such refund", extra={"refund_no": refund_no})
    return refund
