"""The sweeps drive payments and orders to the channel's truth when messages are lost, over real
HTTP with the sandbox. Notifications go to an address where nothing listens (no live server
here), so every outcome below is reached by the sweeps alone."""

from __future__ import annotations

from typing import Any

import pytest

from channels.models import ChannelAccount
from paycore.sweeps import sweep_run
from payments.models import Payment, PaymentEvent
from payments.services import payment_client_report
from payments.sweeps import CLOSE_ORDERS, CLOSE_PAYMENTS, SUCCESS
from refunds.models import Refund
from refunds.sweeps import REFUND, REPEAT
from tests.factories import let_time_pass, make_order, make_payment, pay_at_sandbox

pytestmark = pytest.mark.django_db(transaction=True)


def refresh(*rows: Any) -> None:
    for row in rows:
        row.refresh_from_db()


def sandbox_trade(gateway: Any, channel: str, payment_no: str) -> dict[str, Any]:
    return next(
        t for t in gateway.trades() if t["channel"] == channel and t["kind"] == "trade" and payment_no in t["key"]
    )


def test_a_dropped_notification_ends_succeeded_through_the_success_sweep(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=wechat_account)
    pay_at_sandbox(gateway_client, payment)  # its notification never reaches paycore
    let_time_pass(payment, seconds=20)  # the first check (15 s) is due
    report = sweep_run(SUCCESS)
    refresh(payment)
    assert report.outcomes == {"succeeded": 1}
    assert payment.status == "SUCCEEDED" and payment.next_check_at is None
    assert payment.events.get(to_status="SUCCEEDED").source == "scheduler"
    assert payment.maps.get().order.status == "PAID"


def test_an_unpaid_payment_is_asked_about_again_later_not_at_once(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=wechat_account)
    let_time_pass(payment, seconds=20)
    assert sweep_run(SUCCESS).outcomes == {"pending": 1}
    assert sweep_run(SUCCESS).claimed == 0  # not due again until its next step
    refresh(payment)
    assert payment.status == "PENDING" and payment.next_check_at is not None


def test_a_client_report_the_channel_keeps_calling_unpaid_is_withdrawn(
    wechat_account: ChannelAccount, gateway_client: Any, settings: Any
) -> None:
    settings.CLIENT_REPORT_TRUST_SECONDS = 0
    payment = make_payment(account=wechat_account)
    payment_client_report(payment_id=payment.pk, result="success")
    refresh(payment)
    assert payment.status == "CLIENT_REPORTED"
    let_time_pass(payment, seconds=20)
    sweep_run(SUCCESS)
    refresh(payment)
    assert payment.status == "PENDING"
    assert payment.events.last().evidence["reason"] == "the channel says unpaid"


def test_an_expired_payment_is_closed_at_the_channel_and_here_and_its_order_closed(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=wechat_account)
    order = payment.maps.get().order
    let_time_pass(payment, order, seconds=24 * 3600)
    assert sweep_run(CLOSE_PAYMENTS).outcomes == {"closed": 1}
    assert sweep_run(CLOSE_ORDERS).outcomes == {"closed": 1}
    refresh(payment, order)
    assert payment.status == "CLOSED" and payment.watch_until is None  # the channel confirmed the close
    assert order.status == "CLOSED" and order.events.get().to_status == "CLOSED"
    assert sandbox_trade(gateway_client, "wechat", payment.payment_no)["trade_state"] == "CLOSED"


def test_an_expired_payment_the_channel_says_was_paid_ends_succeeded_not_closed(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payment = make_payment(account=wechat_account)
    pay_at_sandbox(gateway_client, payment)
    order = payment.maps.get().order
    let_time_pass(payment, order, seconds=24 * 3600)
    assert sweep_run(CLOSE_PAYMENTS).outcomes == {"succeeded": 1}
    assert sweep_run(CLOSE_ORDERS).claimed == 0  # the order is paid: nothing to close
    refresh(payment, order)
    assert payment.status == "SUCCEEDED" and order.status == "PAID"
    assert not PaymentEvent.objects.filter(payment=payment, to_status="CLOSED").exists()


def test_an_order_waits_for_a_payment_still_being_settled(wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payment = make_payment(account=wechat_account)
    order = payment.maps.get().order
    let_time_pass(order, seconds=24 * 3600)  # the order expired, its payment not yet
    assert sweep_run(CLOSE_ORDERS).outcomes == {"waiting_for_payments": 1}
    refresh(order)
    assert order.status == "PENDING_PAYMENT"


def test_an_order_paid_through_wechat_and_alipay_ends_with_one_refund_of_the_duplicate(
    channel_account: Any, gateway_client: Any
) -> None:
    """The customer gets an Alipay order string, switches to WeChat, pays there, then opens the
    Alipay cashier and pays that too. Alipay answers the close of a cashier never opened with
    "trade does not exist", so the superseded payment is closed here but watched: its money is
    found, and refunded exactly once."""
    wechat, alipay = channel_account("wechat"), channel_account("alipay")
    order = make_order(amount=1500)
    by_alipay = make_payment(account=alipay, orders=[order])
    by_wechat = make_payment(account=wechat, orders=[order])
    refresh(by_alipay)
    assert by_alipay.status == "CLOSED" and by_alipay.watch_until is not None
    pay_at_sandbox(gateway_client, by_wechat)
    let_time_pass(by_wechat, seconds=20)
    sweep_run(SUCCESS)
    refresh(order, by_wechat)
    assert (by_wechat.status, order.status) == ("SUCCEEDED", "PAID")
    pay_at_sandbox(gateway_client, by_alipay)  # the order string still works at Alipay
    let_time_pass(by_alipay, seconds=120)
    sweep_run(SUCCESS)
    refresh(by_alipay)
    assert by_alipay.status == "SUCCEEDED" and by_alipay.maps.get().outcome == "DUPLICATE"
    first, second = sweep_run(REPEAT), sweep_run(REPEAT)
    assert (first.outcomes, second.claimed) == ({"refunded": 1}, 0)
    refund = Refund.objects.get()
    assert (refund.payment_id, refund.amount, refund.reason, refund.status) == (
        by_alipay.pk,
        1500,
        "DUPLICATE_PAYMENT",
        "SUCCEEDED",
    )
    refresh(order)
    assert order.status == "PAID"  # a duplicate's refund changes no order


def test_a_payment_paid_after_paycore_closed_it_is_refunded_in_full_and_its_order_left_open(
    channel_account: Any, gateway_client: Any
) -> None:
    alipay = channel_account("alipay")
    order = make_order(amount=800)
    payment = make_payment(account=alipay, orders=[order])
    let_time_pass(payment, seconds=24 * 3600)
    sweep_run(CLOSE_PAYMENTS)  # Alipay: the cashier was never opened, so nothing to close there
    refresh(payment)
    assert payment.status == "CLOSED" and payment.watch_until is not None
    pay_at_sandbox(gateway_client, payment)  # late, on the order string
    Payment.objects.filter(pk=payment.pk).update(next_check_at=payment.created_at)
    sweep_run(SUCCESS)
    refresh(payment, order)
    assert payment.status == "SUCCEEDED" and payment.maps.get().outcome == "LATE"
    assert order.status == "PENDING_PAYMENT"  # paycore told everyone it gave this payment up
    sweep_run(REPEAT)
    refund = Refund.objects.get(payment=payment)
    assert (refund.amount, refund.reason, refund.status) == (800, "LATE_PAYMENT", "SUCCEEDED")


def test_a_two_merchant_payment_paid_twice_refunds_only_the_duplicated_orders_share(
    channel_account: Any, gateway_client: Any
) -> None:
    wechat, alipay = channel_account("wechat"), channel_account("alipay")
    shoes, socks = make_order(amount=10_000), make_order(amount=1_000)
    cart = make_payment(account=wechat, orders=[shoes, socks])
    socks_alone = make_payment(account=alipay, orders=[socks])  # the cart still waits for the shoes
    refresh(cart)
    assert cart.status == "PENDING"
    pay_at_sandbox(gateway_client, socks_alone)
    pay_at_sandbox(gateway_client, cart)
    let_time_pass(socks_alone, cart, seconds=20)
    sweep_run(SUCCESS)
    refresh(shoes, socks, cart, socks_alone)
    assert (cart.status, socks_alone.status) == ("SUCCEEDED", "SUCCEEDED")
    outcomes = {m.order_id: m.outcome for m in cart.maps.all()} | {
        m.order_id: m.outcome for m in socks_alone.maps.all()
    }
    assert sorted(outcomes.values()) in (["DUPLICATE", "PAID"], ["PAID", "PAID"])
    sweep_run(REPEAT)
    refund = Refund.objects.get()
    assert (refund.amount, refund.reason) == (1_000, "DUPLICATE_PAYMENT")
    assert [(a.payment_map.order_id, a.amount) for a in refund.allocations.all()] == [(socks.pk, 1_000)]
    let_time_pass(refund, seconds=3600)
    sweep_run(REFUND)
    refund.refresh_from_db()
    refresh(shoes, socks)
    assert refund.status == "SUCCEEDED"
    assert (shoes.status, socks.status) == ("PAID", "PAID")  # a duplicate's refund changes no order
    assert sweep_run(REPEAT).claimed == 0 and Refund.objects.count() == 1
