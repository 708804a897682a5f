"""Each state machine has one transition table, and an illegal move raises."""

from __future__ import annotations

import pytest

from orders.models import Order
from orders.states import ORDER_TRANSITIONS
from paycore.errors import IllegalTransition
from payments.models import Payment
from payments.states import PAYMENT_TRANSITIONS
from refunds.models import Refund
from refunds.states import REFUND_TRANSITIONS

P, OS, R = Payment.Status, Order.Status, Refund.Status


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (P.CREATED, P.PENDING),
        (P.PENDING, P.CLIENT_REPORTED),
        (P.CLIENT_REPORTED, P.SUCCEEDED),
        (P.PENDING, P.CLOSED),
        (P.CLOSED, P.SUCCEEDED),
        (P.USER_PAYING, P.REVOKED),
        (P.PENDING, P.FAILED),
    ],
)
def test_legal_payment_moves_are_allowed(src: str, dst: str) -> None:
    PAYMENT_TRANSITIONS.check(src, dst)  # raises if illegal
    assert dst in PAYMENT_TRANSITIONS.targets(src)


@pytest.mark.parametrize(
    ("src", "dst"),
    [
        (P.SUCCEEDED, P.CLOSED),
        (P.SUCCEEDED, P.PENDING),
        (P.CLOSED, P.PENDING),
        (P.REVOKED, P.SUCCEEDED),
        (P.USER_PAYING, P.PENDING),
        (P.CREATED, P.CLIENT_REPORTED),
    ],
)
def test_illegal_payment_moves_raise(src: str, dst: str) -> None:
    with pytest.raises(IllegalTransition) as caught:
        PAYMENT_TRANSITIONS.check(src, dst, payment_no="P1")
    assert caught.value.code == "illegal_transition"
    assert caught.value.extra == {"from": src, "to": dst, "payment_no": "P1"}


def test_the_client_report_can_never_lead_to_success_directly() -> None:
    assert not PAYMENT_TRANSITIONS.allows(P.CREATED, P.CLIENT_REPORTED)
    assert PAYMENT_TRANSITIONS.targets(P.CLIENT_REPORTED) == {
        P.PENDING,
        P.SUCCEEDED,
        P.CLOSED,
        P.FAILED,
        P.NEEDS_ATTENTION,
    }


@pytest.mark.parametrize(
    ("src", "dst", "legal"),
    [
        (OS.PENDING_PAYMENT, OS.PAID, True),
        (OS.PAID, OS.PARTIALLY_REFUNDED, True),
        (OS.PARTIALLY_REFUNDED, OS.REFUNDED, True),
        (OS.PENDING_PAYMENT, OS.CLOSED, True),
        (OS.CLOSED, OS.PAID, False),  # late money is refunded, the order stays closed
        (OS.REFUNDED, OS.PAID, False),
        (OS.PAID, OS.CLOSED, False),
        (OS.PENDING_PAYMENT, OS.REFUNDED, False),
    ],
)
def test_order_transition_table(src: str, dst: str, legal: bool) -> None:
    assert ORDER_TRANSITIONS.allows(src, dst) is legal


@pytest.mark.parametrize(
    ("src", "dst", "legal"),
    [
        (R.PENDING, R.PROCESSING, True),
        (R.PROCESSING, R.SUCCEEDED, True),
        (R.PROCESSING, R.FAILED, True),
        (R.FAILED, R.PENDING, True),  # a new attempt under a new request number
        (R.FAILED, R.PROCESSING, False),
        (R.PROCESSING, R.NEEDS_ATTENTION, True),
        (R.SUCCEEDED, R.FAILED, False),
        (R.SUCCEEDED, R.PROCESSING, False),
    ],
)
def test_refund_transition_table(src: str, dst: str, legal: bool) -> None:
    assert REFUND_TRANSITIONS.allows(src, dst) is legal
