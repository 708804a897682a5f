"""The reads every app backend polls cost one query each: the key is known to the process, the
payment, its maps and its orders come back in one statement. A regression here is a regression
of the status endpoint's throughput (bench/api.py measures the figure)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from channels.models import ChannelAccount
from paycore.models import Scope
from tests.factories import make_merchant, make_order, make_payment

pytestmark = pytest.mark.django_db


def test_a_platform_key_reads_a_whole_payment_in_one_query(
    wechat_account: ChannelAccount, api_with_scopes: Callable[..., Any], django_assert_num_queries: Any
) -> None:
    a, b = make_merchant(), make_merchant()
    payment = make_payment(
        account=wechat_account,
        orders=[make_order(merchant=a, amount=700), make_order(merchant=b, amount=300)],
        start=False,
    )
    api = api_with_scopes(Scope.PAYMENTS_READ)
    api.get(f"/api/v1/payments/{payment.payment_no}")  # the key is read once, then known
    with django_assert_num_queries(1):
        body = api.get(f"/api/v1/payments/{payment.payment_no}").json()
    assert body["amount"] == 1000
    assert len(body["orders"]) == 2


def test_a_merchant_key_reads_its_own_share_of_a_shared_payment_in_one_query(
    wechat_account: ChannelAccount, api_with_scopes: Callable[..., Any], django_assert_num_queries: Any
) -> None:
    a, b = make_merchant(), make_merchant()
    own = make_order(merchant=a, amount=700)
    payment = make_payment(account=wechat_account, orders=[own, make_order(merchant=b, amount=300)], start=False)
    api = api_with_scopes(Scope.PAYMENTS_READ, merchant=a)
    api.get(f"/api/v1/payments/{payment.payment_no}")
    with django_assert_num_queries(1):
        body = api.get(f"/api/v1/payments/{payment.payment_no}").json()
    assert body["amount"] == 700
    assert [o["order_no"] for o in body["orders"]] == [own.order_no]


def test_a_merchant_key_is_told_no_such_payment_for_one_that_pays_none_of_its_orders(
    wechat_account: ChannelAccount, api_with_scopes: Callable[..., Any]
) -> None:
    payment = make_payment(account=wechat_account, start=False)
    api = api_with_scopes(Scope.PAYMENTS_READ, merchant=make_merchant())
    response = api.get(f"/api/v1/payments/{payment.payment_no}")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
