"""Orders for the app backend."""

from __future__ import annotations

from drf_spectacular.utils import extend_schema
from rest_framework import status
from rest_framework.request import Request
from rest_framework.response import Response

from orders.selectors import merchant_for_client, order_get_for_client, orders_visible_to, with_items
from orders.serializers import OrderCreateInput, OrderListQuery, OrderOutput
from orders.services import ItemInput, order_existing, order_insert, order_new
from paycore.api import IDEMPOTENCY_KEY_HEADER, ApiView, Pagination, validated, validated_query
from paycore.models import Scope


class OrderCollectionApi(ApiView):
    scopes = {"GET": Scope.ORDERS_READ, "POST": Scope.ORDERS_WRITE}
    creates = True
    atomic_post = True
    pagination_class = Pagination

    @extend_schema(
        request=OrderCreateInput, responses={201: OrderOutput, 200: OrderOutput}, parameters=[IDEMPOTENCY_KEY_HEADER]
    )
    def post(self, request: Request) -> Response:
        data = validated(OrderCreateInput, request.data)
        merchant = merchant_for_client(client=self.client, code=data.get("merchant"))
        order = order_new(
            merchant=merchant,
            merchant_order_no=data["merchant_order_no"],
            customer_ref=data["customer_ref"],
            description=data["description"],
            currency=data["currency"],
            items=[ItemInput(**item) for item in data["items"]],
            expires_at=data.get("expires_at"),
            shipping_address=data["shipping_address"],
            phone=data["phone"],
        )
        answer = self.answer(status.HTTP_201_CREATED, lambda: OrderOutput(order).data)
        if order_insert(order, with_rows=answer.rows):
            return answer.response()
        earlier = order_existing(order)  # a repeat: the earlier order, read as it is now
        return Response(OrderOutput(order_get_for_client(client=self.client, order_no=earlier.order_no)).data)

    @extend_schema(responses=OrderOutput(many=True), parameters=[OrderListQuery])
    def get(self, request: Request) -> Response:
        query = validated_query(OrderListQuery, request)
        qs = with_items(orders_visible_to(self.client)).order_by("-pk")
        if "customer_ref" in query:
            qs = qs.filter(customer_ref=query["customer_ref"])
        if "status" in query:
            qs = qs.filter(status=query["status"])
        paginator = Pagination()
        page = paginator.paginate_queryset(qs, request, view=self)
        return paginator.get_paginated_response(OrderOutput(page, many=True).data)


class OrderDetailApi(ApiView):
    scopes = {"GET": Scope.ORDERS_READ}

    @extend_schema(responses=OrderOutput)
    def get(self, request: Request, order_no: str) -> Response:
        return Response(OrderOutput(order_get_for_client(client=self.client, order_no=order_no)).data)
