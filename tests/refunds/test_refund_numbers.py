"""A refund number the channel cannot take is refused when the refund is asked for, before
anything is written, instead of failing later deep in the adapter."""

from __future__ import annotations

from typing import Any

import pytest
from rest_framework.test import APIClient

from refunds.models import Refund
from tests.factories import make_paid_payment

pytestmark = pytest.mark.django_db(transaction=True)


def ask(api: APIClient, payment_no: str, refund_no: str) -> Any:
    return api.post("/api/v1/refunds", {"payment_no": payment_no, "refund_no": refund_no, "amount": 100}, format="json")


def test_alipay_refuses_a_refund_number_equal_to_the_payment_number(
    api: APIClient, channel_account: Any, gateway_client: Any
) -> None:
    payment = make_paid_payment(account=channel_account("alipay"), gateway=gateway_client)
    answer = ask(api, payment.payment_no, payment.payment_no)
    assert answer.status_code == 400
    assert answer.json()["extra"]["fields"]["refund_no"][0]["code"] == "refund_no_unsupported"
    assert not Refund.objects.exists()


def test_wechat_refuses_characters_outside_its_alphabet(
    api: APIClient, wechat_account: Any, gateway_client: Any
) -> None:
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    answer = ask(api, payment.payment_no, "r" * 65)
    assert answer.status_code == 400 and not Refund.objects.exists()


def test_numbers_of_paycores_own_refunds_are_reserved(api: APIClient, wechat_account: Any, gateway_client: Any) -> None:
    payment = make_paid_payment(account=wechat_account, gateway=gateway_client)
    answer = ask(api, payment.payment_no, "PC-D123")
    assert answer.status_code == 400 and "refund_no" in answer.json()["extra"]["fields"]
