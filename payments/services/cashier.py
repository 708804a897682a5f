"""Which payment methods the app may offer for a set of orders."""

from __future__ import annotations

from dataclasses import dataclass

from channels.models import ChannelAccount
from channels.registry import adapter_class
from channels.services import account_offers
from orders.models import Order
from paycore.errors import CurrencyMismatch, CustomerMismatch


@dataclass(frozen=True, slots=True)
class MethodOffer:
    channel: str
    method: str
    currency: str
    amount: int


def cashier_methods(*, orders: list[Order], customer_ref: str) -> list[MethodOffer]:
    foreign = [o.order_no for o in orders if o.customer_ref != customer_ref]
    if foreign:
        raise CustomerMismatch("the order belongs to another customer", extra={"order_nos": foreign})
    currencies = {order.currency for order in orders}
    if len(currencies) != 1:
        raise CurrencyMismatch("the orders are in different currencies", extra={"currencies": sorted(currencies)})
    currency = currencies.pop()
    amount = sum(order.amount for order in orders)
    offers: dict[tuple[str, str], MethodOffer] = {}
    for account in ChannelAccount.objects.filter(is_enabled=True).order_by("channel", "pk"):
        for method in sorted(adapter_class(account.channel).methods):
            if (account.channel, method) not in offers and account_offers(account, method=method, currency=currency):
                offers[(account.channel, method)] = MethodOffer(account.channel, method, currency, amount)
    return list(offers.values())
