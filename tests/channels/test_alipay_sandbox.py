"""Alipay adapter against the sandbox gateway over real HTTP, real RSA2 signatures both ways.

The sandbox's Alipay simulator is an independent implementation of the Alipay OpenAPI, so a
round trip here checks that both sides read the spec the same way. Payment-code auth codes
follow the simulator's conventions (``sandbox/alipay.py``): ``…0000`` waits for the
password, ``…1111`` has no balance, ``…2222`` pays but answers 20000, ``…3333`` makes the first
cancel answer ``retry_flag=Y``.
"""

from __future__ import annotations

import dataclasses
import uuid
from datetime import UTC, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlsplit

import pytest
import requests

from channels.alipay import AlipayAdapter
from channels.base import (
    AccountConfig,
    BillRowKind,
    ChannelRejected,
    ChannelUnavailable,
    ChargeRequest,
    NotificationKind,
    PrepayRequest,
    RefundRequest,
    RefundStatus,
    TradeStatus,
)

BEIJING = timezone(timedelta(hours=8))
AUTH_OK, AUTH_WAIT, AUTH_POOR, AUTH_UNKNOWN, AUTH_RETRY = (
    "281234567890123456",
    "281234567890120000",
    "281234567890121111",
    "281234567890122222",
    "281234567890123333",
)


@pytest.fixture
def sink(notification_sink):
    notification_sink.respond_with(200, "success", content_type="text/plain")
    return notification_sink


@pytest.fixture
def account(sandbox_account, sink) -> AccountConfig:
    return sandbox_account("alipay", notify_url=sink.url("/cb/alipay"))


@pytest.fixture
def alipay(account) -> AlipayAdapter:
    return AlipayAdapter(account)


def new_no(prefix: str = "P") -> str:
    return prefix + uuid.uuid4().hex[:20]


def prepay(adapter: AlipayAdapter, sink, method: str = "app", amount: int = 990, payment_no: str | None = None):
    return adapter.prepay(
        PrepayRequest(
            payment_no=payment_no or new_no(),
            amount=amount,
            currency="CNY",
            description="Coffee 咖啡",
            method=method,
            notify_url=sink.url("/cb/alipay"),
            expires_at=datetime.now(UTC) + timedelta(minutes=30),
            return_url="https://shop.example.com/back" if method != "app" else None,
        )
    )


def refund(adapter: AlipayAdapter, payment_no: str, refund_no: str, amount: int, total: int = 990):
    return adapter.refund(
        RefundRequest(
            refund_no=refund_no,
            payment_no=payment_no,
            channel_trade_no=None,
            amount=amount,
            total_amount=total,
            currency="CNY",
            reason="return",
        )
    )


def charge(adapter: AlipayAdapter, auth_code: str, amount: int = 500, payment_no: str | None = None):
    return adapter.charge(
        ChargeRequest(
            payment_no=payment_no or new_no("C"),
            amount=amount,
            currency="CNY",
            description="Sandwich",
            auth_code=auth_code,
        )
    )


def notifications(adapter: AlipayAdapter, sink, n: int):
    """The first ``n`` notifications that reached the sink, verified and parsed by the adapter."""
    return [adapter.parse_notification(r.headers, r.body) for r in sink.wait_for(n)[:n]]


# --- the full cycle ----------------------------------------------------------------------------
def test_app_payment_full_cycle_over_http(alipay, sink, sandbox):
    result = prepay(alipay, sink, "app")
    payment_no = result.payment_no
    assert alipay.query(payment_no=payment_no).status is TradeStatus.NOT_FOUND  # cashier not opened

    sandbox.pay("alipay", payment_no, order_string=result.client_params["order_string"])
    (paid,) = notifications(alipay, sink, 1)
    assert paid.kind is NotificationKind.PAYMENT
    assert paid.payment_no == payment_no
    assert paid.trade is not None
    assert (paid.trade.status, paid.trade.paid_amount) == (TradeStatus.PAID, 990)
    assert sandbox.wait_idle()
    assert any(n["outcome"] == "acked" and n["key"].startswith(payment_no) for n in sandbox.notifications())

    state = alipay.query(payment_no=payment_no)
    assert (state.status, state.paid_amount, state.channel_trade_no) == (TradeStatus.PAID, 990, paid.channel_trade_no)
    assert alipay.query(channel_trade_no=state.channel_trade_no).payment_no == payment_no

    first = refund(alipay, payment_no, "R1" + payment_no, 300)
    assert (first.status, first.amount) == (RefundStatus.SUCCEEDED, 300)
    again = refund(alipay, payment_no, "R1" + payment_no, 300)  # fund_change=N: not an error
    assert again.status is RefundStatus.SUCCEEDED
    rest = refund(alipay, payment_no, "R2" + payment_no, 690)
    assert rest.status is RefundStatus.SUCCEEDED
    with pytest.raises(ChannelRejected):
        refund(alipay, payment_no, "R3" + payment_no, 1)  # nothing left to refund

    queried = alipay.query_refund(refund_no="R1" + payment_no, payment_no=payment_no)
    assert (queried.status, queried.amount) == (RefundStatus.SUCCEEDED, 300)
    assert queried.succeeded_at is not None
    missing = alipay.query_refund(refund_no="R9" + payment_no, payment_no=payment_no)
    assert missing.status is RefundStatus.NOT_FOUND
    assert alipay.query(payment_no=payment_no).status is TradeStatus.PAID  # TRADE_CLOSED, but it was paid

    refunded = {n.refund.refund_no: n for n in notifications(alipay, sink, 3) if n.refund is not None}
    partial, full = refunded["R1" + payment_no], refunded["R2" + payment_no]
    assert (partial.kind, partial.event_type, partial.refund.refund_no) == (
        NotificationKind.REFUND,
        "TRADE_SUCCESS",
        "R1" + payment_no,
    )
    assert (full.kind, full.event_type, full.refund.refund_no) == (
        NotificationKind.REFUND,
        "TRADE_CLOSED",
        "R2" + payment_no,
    )
    assert full.trade.status is TradeStatus.PAID

    sandbox.end_day(8)  # bills exist only for days that have ended (sandbox clock)
    rows = list(alipay.fetch_bill(datetime.now(BEIJING).date()))
    assert [(r.kind, r.amount, r.refund_no) for r in rows] == [
        (BillRowKind.PAYMENT, 990, None),
        (BillRowKind.REFUND, 300, "R1" + payment_no),
        (BillRowKind.REFUND, 690, "R2" + payment_no),
    ]
    assert {r.payment_no for r in rows} == {payment_no}
    assert rows[0].fee is not None and rows[0].fee > 0


@pytest.mark.parametrize("method", ["page", "h5"])
def test_page_and_wap_cashier_open_from_the_signed_url(alipay, sink, sandbox, method):
    result = prepay(alipay, sink, method, amount=1234)
    url = result.client_params["url"]
    sent = dict(parse_qsl(urlsplit(url).query))
    assert sent["method"] == {"page": "alipay.trade.page.pay", "h5": "alipay.trade.wap.pay"}[method]

    opened = requests.get(url, timeout=5)  # the payer's browser reaches the cashier
    assert opened.status_code == 200
    assert alipay.query(payment_no=result.payment_no).status is TradeStatus.NOT_PAID

    sandbox.pay("alipay", result.payment_no)
    (paid,) = notifications(alipay, sink, 1)
    assert paid.trade is not None
    assert paid.trade.paid_amount == 1234
    assert alipay.query(payment_no=result.payment_no).status is TradeStatus.PAID


def test_notification_is_resent_until_answered_success(alipay, sink, sandbox):
    sink.respond_with(200, "fail", times=2, content_type="text/plain")
    result = prepay(alipay, sink)
    sandbox.pay("alipay", result.payment_no, order_string=result.client_params["order_string"])
    attempts = notifications(alipay, sink, 3)
    assert len({n.dedupe_key for n in attempts}) == 1  # same notify_id and status each time
    assert sandbox.wait_idle()
    log = [n for n in sandbox.notifications() if n["key"].startswith(result.payment_no)]
    assert [n["outcome"] for n in log] == ["not_acked", "not_acked", "acked"]


# --- close -------------------------------------------------------------------------------------
def test_close_of_an_unpaid_trade(alipay, sink, sandbox):
    never_opened = prepay(alipay, sink)
    with pytest.raises(ChannelRejected) as not_there:  # not created yet: no close to confirm
        alipay.close(payment_no=never_opened.payment_no)
    assert not_there.value.code == "ACQ.TRADE_NOT_EXIST"
    assert alipay.query(payment_no=never_opened.payment_no).status is TradeStatus.NOT_FOUND

    opened = prepay(alipay, sink)
    sandbox.act("alipay", opened.payment_no, "open", order_string=opened.client_params["order_string"])
    assert alipay.query(payment_no=opened.payment_no).status is TradeStatus.NOT_PAID
    alipay.close(payment_no=opened.payment_no)
    alipay.close(payment_no=opened.payment_no)  # closing twice is fine
    assert alipay.query(payment_no=opened.payment_no).status is TradeStatus.CLOSED
    sandbox.pay("alipay", opened.payment_no)  # too late: stays closed
    assert alipay.query(payment_no=opened.payment_no).status is TradeStatus.CLOSED


def test_close_of_a_paid_trade_is_rejected(alipay, sink, sandbox):
    result = prepay(alipay, sink)
    sandbox.pay("alipay", result.payment_no, order_string=result.client_params["order_string"])
    with pytest.raises(ChannelRejected) as exc:
        alipay.close(payment_no=result.payment_no)
    assert exc.value.code == "ACQ.TRADE_STATUS_ERROR"


# --- payment code ------------------------------------------------------------------------------
def test_payment_code_paid_at_once(alipay):
    state = charge(alipay, AUTH_OK, amount=500)
    assert (state.status, state.paid_amount) == (TradeStatus.PAID, 500)
    assert alipay.query(payment_no=state.payment_no).status is TradeStatus.PAID
    again = charge(alipay, AUTH_OK, amount=500, payment_no=state.payment_no)  # ACQ.TRADE_HAS_SUCCESS
    assert (again.status, again.channel_trade_no) == (TradeStatus.PAID, state.channel_trade_no)


def test_payment_code_waits_for_the_password(alipay, sandbox):
    state = charge(alipay, AUTH_WAIT)
    assert state.status is TradeStatus.USER_PAYING
    assert alipay.query_charge(payment_no=state.payment_no).status is TradeStatus.NOT_PAID  # still waiting
    sandbox.password("alipay", state.payment_no)
    paid = alipay.query_charge(payment_no=state.payment_no)
    assert (paid.status, paid.paid_amount, paid.currency) == (TradeStatus.PAID, 500, "CNY")


def test_query_charge_of_an_unknown_trade_is_not_found(alipay):
    assert alipay.query_charge(payment_no=new_no()).status is TradeStatus.NOT_FOUND


def test_revoke_of_a_waiting_payment_code_closes_it(alipay, sandbox):
    state = charge(alipay, AUTH_WAIT)
    result = alipay.revoke(payment_no=state.payment_no)
    assert (result.done, result.retry, result.refunded) == (True, False, False)
    assert alipay.query_charge(payment_no=state.payment_no).status is TradeStatus.CLOSED
    sandbox.password("alipay", state.payment_no)  # the payer is too late
    assert alipay.query_charge(payment_no=state.payment_no).status is TradeStatus.CLOSED


def test_revoke_of_a_paid_payment_code_refunds_it(alipay, sandbox):
    state = charge(alipay, AUTH_OK, amount=700)
    first = alipay.revoke(payment_no=state.payment_no)
    assert (first.done, first.retry, first.refunded) == (True, False, True)
    again = alipay.revoke(payment_no=state.payment_no)  # idempotent: the same answer
    assert (again.done, again.retry, again.refunded) == (True, False, True)
    assert alipay.query_charge(payment_no=state.payment_no).status is TradeStatus.CLOSED
    sandbox.end_day(8)  # bills exist only for days that have ended (sandbox clock)
    rows = list(alipay.fetch_bill(datetime.now(BEIJING).date()))
    assert [(r.kind, r.amount) for r in rows] == [(BillRowKind.PAYMENT, 700), (BillRowKind.REVOKED, 700)]


def test_revoke_asks_the_caller_to_call_again_and_never_loops_itself(alipay, sandbox):
    state = charge(alipay, AUTH_RETRY)
    first = alipay.revoke(payment_no=state.payment_no)
    assert (first.done, first.retry) == (False, True)
    trade = next(t for t in sandbox.trades() if t.get("out_trade_no") == state.payment_no)
    assert [h["event"] for h in trade["history"]].count("cancel_asked_retry") == 1
    second = alipay.revoke(payment_no=state.payment_no)
    assert (second.done, second.retry, second.refunded) == (True, False, False)


@pytest.mark.parametrize(
    ("auth_code", "code"), [(AUTH_POOR, "ACQ.BUYER_BALANCE_NOT_ENOUGH"), ("123456", "ACQ.PAYMENT_AUTH_CODE_INVALID")]
)
def test_payment_code_definite_failures_are_rejections(alipay, auth_code, code):
    with pytest.raises(ChannelRejected) as exc:
        charge(alipay, auth_code)
    assert exc.value.code == code


def test_payment_code_unknown_outcome_is_unavailable_and_settled_by_query(alipay):
    payment_no = new_no("C")
    with pytest.raises(ChannelUnavailable):
        charge(alipay, AUTH_UNKNOWN, payment_no=payment_no)
    assert alipay.query(payment_no=payment_no).status is TradeStatus.PAID


# --- faults and gateway checks ------------------------------------------------------------------
def test_wrongly_signed_response_is_unavailable(alipay, sandbox):
    sandbox.add_fault(channel="alipay", kind="bad_signature", count=1)
    with pytest.raises(ChannelUnavailable) as exc:
        alipay.query(payment_no=new_no())
    assert exc.value.code == "SIGNATURE_INVALID"
    assert alipay.query(payment_no=new_no()).status is TradeStatus.NOT_FOUND  # fault used up


def test_validly_signed_tampered_amount_is_reported_for_the_caller_to_catch(alipay, sandbox):
    state = charge(alipay, AUTH_OK, amount=500)
    sandbox.add_fault(channel="alipay", kind="tamper_amount", amount=1, count=1)
    assert alipay.query(payment_no=state.payment_no).paid_amount == 1


def test_http_500_after_processing_then_retry_with_the_same_refund_number(alipay, sandbox):
    state = charge(alipay, AUTH_OK, amount=500)
    sandbox.add_fault(channel="alipay", kind="http_500", body_contains="alipay.trade.refund", process=True, count=1)
    with pytest.raises(ChannelUnavailable):
        refund(alipay, state.payment_no, "R" + state.payment_no, 200, total=500)
    retried = refund(alipay, state.payment_no, "R" + state.payment_no, 200, total=500)  # fund_change=N
    assert (retried.status, retried.amount) == (RefundStatus.SUCCEEDED, 200)


def test_timeout_is_unavailable(alipay, sandbox, monkeypatch):
    alipay.timeout = (2.0, 0.3)
    sandbox.add_fault(channel="alipay", kind="timeout", seconds=1.0, count=1)
    with pytest.raises(ChannelUnavailable):
        alipay.query(payment_no=new_no())


def test_request_signed_with_another_key_is_refused_by_the_gateway(alipay, sandbox_account):
    stranger = sandbox_account("alipay")
    forged = AlipayAdapter(dataclasses.replace(alipay.config, credentials=stranger.credentials))
    with pytest.raises(ChannelRejected) as exc:
        forged.query(payment_no=new_no())
    assert exc.value.code == "isv.invalid-signature"


def test_timestamp_must_be_beijing_time(alipay, monkeypatch):
    # The python-alipay-sdk pitfall: local (here UTC) wall-clock time labelled as Beijing time.
    monkeypatch.setattr(alipay, "_now", lambda: datetime.now(UTC).replace(tzinfo=BEIJING))
    with pytest.raises(ChannelRejected) as exc:
        alipay.query(payment_no=new_no())
    assert exc.value.code == "isv.invalid-timestamp"
