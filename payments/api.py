"""Payments for the app backend: the cashier (methods on offer), create (and place at the channel),
get, client report, close."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from orders.selectors import order_get_for_client, orders_get_for_client
from orders.serializers import OrderOutput
from paycore.api import IDEMPOTENCY_KEY_HEADER, ApiView, Pagination, validated, validated_query
from paycore.errors import PaymentShared
from paycore.models import EventSource, Scope
from payments.selectors import payment_get_for_client, payment_is_shared_beyond, payments_visible_to
from payments.serializers import (
    CashierInput,
    CashierOutput,
    MethodOfferOutput,
    PaycodeCreateInput,
    PaymentClientReportInput,
    PaymentCloseInput,
    PaymentCreateInput,
    PaymentListQuery,
    PaymentOutput,
)
from payments.services import (
    cashier_methods,
    order_cancel,
    paycode_channel,
    paycode_place,
    paycode_wait,
    payment_client_report,
    payment_close,
    payment_place,
)


class PaymentCollectionApi(ApiView):
    scopes = {"GET": Scope.PAYMENTS_READ, "POST": Scope.PAYMENTS_WRITE}
    creates = True
    talks_to_channel = True
    pagination_class = Pagination

    @extend_schema(
        request=PaymentCreateInput,
        responses={201: PaymentOutput, 200: PaymentOutput},
        parameters=[IDEMPOTENCY_KEY_HEADER],
    )
    def post(self, request: Request) -> Response:
        data = validated(PaymentCreateInput, request.data)
        orders = orders_get_for_client(client=self.client, order_nos=data["order_nos"])
        payment, created = payment_place(
            order_ids=[o.pk for o in orders],
            customer_ref=data["customer_ref"],
            channel=data["channel"],
            method=data["method"],
            payer_id=data["payer_id"],
            client_ip=data["client_ip"],
            return_url=data["return_url"],
        )
        payment = payment_get_for_client(client=self.client, payment_no=payment.payment_no)
        return Response(PaymentOutput(payment).data, status=status.HTTP_201_CREATED if created else status.HTTP_200_OK)

    @extend_schema(responses=PaymentOutput(many=True), parameters=[PaymentListQuery])
    def get(self, request: Request) -> Response:
        query = validated_query(PaymentListQuery, request)
        qs = payments_visible_to(self.client).order_by("-pk")
        if "order_no" in query:
            qs = qs.filter(maps__order__order_no=query["order_no"])
        if "customer_ref" in query:
            qs = qs.filter(customer_ref=query["customer_ref"])
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(PaymentOutput(page, many=True).data)


class PaycodeCreateApi(ApiView):
    """A payment code scanned at a shop counter: charged at once. The answer comes back at once
    with the status (SUCCEEDED, FAILED, or USER_PAYING while the payer confirms or the outcome is
    unknown) and where to ask again; ``wait_seconds`` holds it a few seconds at most."""

    scopes = {"POST": Scope.PAYMENTS_WRITE}
    creates = True
    talks_to_channel = True

    @extend_schema(
        request=PaycodeCreateInput,
        responses={201: PaymentOutput, 200: PaymentOutput},
        parameters=[IDEMPOTENCY_KEY_HEADER],
    )
    def post(self, request: Request) -> Response:
        data = validated(PaycodeCreateInput, request.data)
        paycode_channel(data["auth_code"], data.get("channel"))  # an unknown code is a 400 before any lookup
        orders = orders_get_for_client(client=self.client, order_nos=data["order_nos"])
        payment, created = paycode_place(
            order_ids=[o.pk for o in orders],
            customer_ref=data["customer_ref"],
            auth_code=data["auth_code"],
            channel=data.get("channel"),
            store_id=data["store_id"],
            device_id=data["device_id"],
            operator_id=data["operator_id"],
            client_ip=data["client_ip"],
        )
        if data["wait_seconds"]:
            paycode_wait(payment_id=payment.pk, seconds=data["wait_seconds"])
        payment = payment_get_for_client(client=self.client, payment_no=payment.payment_no)
        body = PaymentOutput(payment).data
        code = status.HTTP_201_CREATED if created else status.HTTP_200_OK
        return Response(body, status=code, headers={"Location": body["status_url"]})


class PaymentDetailApi(ApiView):
    scopes = {"GET": Scope.PAYMENTS_READ}

    @extend_schema(responses=PaymentOutput)
    def get(self, request: Request, payment_no: str) -> Response:
        return Response(PaymentOutput(payment_get_for_client(client=self.client, payment_no=payment_no)).data)


class PaymentByChannelTradeNoApi(ApiView):
    scopes = {"GET": Scope.PAYMENTS_READ}

    @extend_schema(responses=PaymentOutput)
    def get(self, request: Request, channel_trade_no: str) -> Response:
        payment = payment_get_for_client(client=self.client, channel_trade_no=channel_trade_no)
        return Response(PaymentOutput(payment).data)


class PaymentClientReportApi(ApiView):
    scopes = {"POST": Scope.PAYMENTS_WRITE}

    @extend_schema(request=PaymentClientReportInput, responses=PaymentOutput)
    def post(self, request: Request, payment_no: str) -> Response:
        data = validated(PaymentClientReportInput, request.data)
        payment = payment_get_for_client(client=self.client, payment_no=payment_no)
        payment_client_report(payment_id=payment.pk, result=data["result"], detail=data["detail"])
        return Response(PaymentOutput(payment_get_for_client(client=self.client, payment_no=payment_no)).data)


class PaymentCloseApi(ApiView):
    scopes = {"POST": Scope.PAYMENTS_WRITE}
    talks_to_channel = True

    @extend_schema(request=PaymentCloseInput, responses=PaymentOutput)
    def post(self, request: Request, payment_no: str) -> Response:
        data = validated(PaymentCloseInput, request.data)
        payment = payment_get_for_client(client=self.client, payment_no=payment_no)
        if payment_is_shared_beyond(payment, self.client):
            raise PaymentShared(
                "this payment also pays other merchants' orders; only a platform key may close it",
                extra={"payment_no": payment_no},
            )
        payment_close(
            payment_id=payment.pk, reason=data["reason"], source=EventSource.API, actor=f"api:{self.client.name}"
        )
        return Response(PaymentOutput(payment_get_for_client(client=self.client, payment_no=payment_no)).data)


class CashierApi(ApiView):
    """The payment methods on offer for a set of orders (POST because it takes a list)."""

    scopes = {"POST": Scope.ORDERS_READ}

    @extend_schema(request=CashierInput, responses=CashierOutput)
    def post(self, request: Request) -> Response:
        data = validated(CashierInput, request.data)
        orders = orders_get_for_client(client=self.client, order_nos=data["order_nos"])
        offers = cashier_methods(orders=orders, customer_ref=data["customer_ref"])
        return Response({"methods": MethodOfferOutput(offers, many=True).data})


class OrderCancelApi(ApiView):
    """The app backend gives an unpaid order up: its open payments are closed at their channels,
    then the order. Lives with payments because cancelling is closing payments first."""

    scopes = {"POST": Scope.ORDERS_WRITE}
    talks_to_channel = True

    @extend_schema(request=None, responses=OrderOutput)
    def post(self, request: Request, order_no: str) -> Response:
        order = order_get_for_client(client=self.client, order_no=order_no)
        order_cancel(order_id=order.pk, actor=f"api:{self.client.name}")
        return Response(OrderOutput(order_get_for_client(client=self.client, order_no=order_no)).data)
