"""Refunds for the app backend."""

from __future__ import annotations

from django.db.models import Exists, OuterRef, QuerySet
from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from paycore.api import IDEMPOTENCY_KEY_HEADER, ApiView, validated
from paycore.errors import NotFound
from paycore.models import ApiClient, EventSource, Scope
from payments.models import PaymentOrderMap
from payments.selectors import payment_get_for_client
from refunds.models import Refund
from refunds.serializers import RefundCreateInput, RefundOutput
from refunds.services import refund_request


def refunds_visible_to(client: ApiClient) -> QuerySet[Refund]:
    qs = Refund.objects.select_related("payment")
    if client.merchant_id:
        qs = qs.filter(
            Exists(
                PaymentOrderMap.objects.filter(payment=OuterRef("payment_id"), order__merchant_id=client.merchant_id)
            )
        )
    return qs


def refund_get_for_client(*, client: ApiClient, refund_no: str) -> Refund:
    refund = refunds_visible_to(client).filter(refund_no=refund_no).first()
    if refund is None:
        raise NotFound("no such refund", extra={"refund_no": refund_no})
    return refund


class RefundCollectionApi(ApiView):
    scopes = {"POST": Scope.REFUNDS_WRITE}
    creates = True

    @extend_schema(
        request=RefundCreateInput, responses={201: RefundOutput, 200: RefundOutput}, parameters=[IDEMPOTENCY_KEY_HEADER]
    )
    def post(self, request: Request) -> Response:
        data = validated(RefundCreateInput, request.data)
        payment = payment_get_for_client(client=self.client, payment_no=data["payment_no"])
        refund, created = refund_request(
            payment_id=payment.pk,
            refund_no=data["refund_no"],
            amount=data["amount"],
            reason=data["reason"],
            note=data["note"],
            source=EventSource.API,
            actor=f"api:{self.client.name}",
        )
        refund = refund_get_for_client(client=self.client, refund_no=refund.refund_no)
        return Response(RefundOutput(refund).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)


class RefundDetailApi(ApiView):
    scopes = {"GET": Scope.REFUNDS_READ}

    @extend_schema(responses=RefundOutput)
    def get(self, request: Request, refund_no: str) -> Response:
        return Response(RefundOutput(refund_get_for_client(client=self.client, refund_no=refund_no)).data)
