"""Reads of orders, scoped to what an API client may see."""

from __future__ import annotations

from django.db.models import Prefetch, QuerySet

from orders.models import Merchant, Order
from paycore.errors import NotFound
from paycore.models import ApiClient
from paycore.prepared import PreparedQuery


def orders_visible_to(client: ApiClient) -> QuerySet[Order]:
    qs = Order.objects.select_related("merchant")
    return qs.filter(merchant_id=client.merchant_id) if client.merchant_id else qs


def with_items(orders: QuerySet[Order]) -> QuerySet[Order]:
    """Orders with ``item_list``, the shape ``OrderOutput`` reads (``order_create`` gives a new
    order the same attribute, so answering a create needs no read back)."""
    return orders.prefetch_related(Prefetch("items", to_attr="item_list"))


def order_get_for_client(*, client: ApiClient, order_no: str) -> Order:
    order = with_items(orders_visible_to(client)).filter(order_no=order_no).first()
    if order is None:
        raise NotFound("no such order", extra={"order_no": order_no})
    return order


def orders_get_for_client(*, client: ApiClient, order_nos: list[str]) -> list[Order]:
    """All or nothing: an unknown order, or one of a merchant the client cannot see, is not found."""
    orders = _orders_by_number(nos=list(dict.fromkeys(order_nos)))
    found = {o.order_no: o for o in orders if client.sees_merchant(o.merchant_id)}
    missing = [no for no in order_nos if no not in found]
    if missing:
        raise NotFound("no such order", extra={"order_nos": missing})
    return [found[no] for no in dict.fromkeys(order_nos)]


def merchant_for_client(*, client: ApiClient, code: str | None) -> Merchant:
    """The merchant as it is now (a suspension must count at once, and the client may be a copy
    cached by authentication), without decrypting its webhook secret."""
    if client.merchant_id:
        if code and code != client.merchant.code:
            raise NotFound("no such merchant", extra={"merchant": code})
        found = _merchant_by_pk(pk=client.merchant_id)
    else:
        found = _merchant_by_code(code=code) if code else []
    if not found:
        raise NotFound("no such merchant", extra={"merchant": code})
    return found[0]


# Every POST of a payment reads its orders, every POST of an order its merchant: compiled once
# per process.
@PreparedQuery
def _orders_by_number(*, nos: list[str]) -> QuerySet[Order]:
    return Order.objects.select_related("merchant").filter(order_no__in=nos)


@PreparedQuery
def _merchant_by_pk(*, pk: int) -> QuerySet[Merchant]:
    return Merchant.objects.defer("webhook_secret").filter(pk=pk)


@PreparedQuery
def _merchant_by_code(*, code: str) -> QuerySet[Merchant]:
    return Merchant.objects.defer("webhook_secret").filter(code=code)
