"""Refunds for the app backend."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from orders.selectors import orders_get_for_client
from paycore.api import IDEMPOTENCY_KEY_HEADER, ApiView, validated
from paycore.models import EventSource, Scope
from payments.selectors import payment_get_for_client
from refunds.selectors import refund_get_for_client
from refunds.serializers import RefundCreateInput, RefundOutput
from refunds.services import refund_request


class RefundCollectionApi(ApiView):
    scopes = {"POST": Scope.REFUNDS_WRITE}
    creates = True

    @extend_schema(
        request=RefundCreateInput, responses={201: RefundOutput, 200: RefundOutput}, parameters=[IDEMPOTENCY_KEY_HEADER]
    )
    def post(self, request: Request) -> Response:
        data = validated(RefundCreateInput, request.data)
        payment = payment_get_for_client(client=self.client, payment_no=data["payment_no"])
        orders = orders_get_for_client(client=self.client, order_nos=data["order_nos"]) if data["order_nos"] else None
        refund, created = refund_request(
            payment_id=payment.pk,
            order_ids=None if orders is None else [o.pk for o in orders],
            merchant_id=self.client.merchant_id,
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
