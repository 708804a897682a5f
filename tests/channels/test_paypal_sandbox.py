"""PayPal adapter against the sandbox gateway over real HTTP: tokens, orders, capture-on-query,
webhooks signed as PayPal signs them and delivered to a local sink, refunds, Transaction Search and faults."""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests

from channels.base import (
    AccountConfig,
    BillRowKind,
    ChannelRejected,
    ChannelUnavailable,
    Notification,
    NotificationKind,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundStatus,
    SignatureInvalid,
    TradeStatus,
)
from channels.paypal import PaypalAdapter
from channels.paypal import adapter as paypal

_numbers = itertools.count(1)


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    paypal.clear_caches()
    yield
    paypal.clear_caches()


def _payment_no() -> str:
    return f"PP{datetime.now(UTC):%Y%m%d%H%M%S}{next(_numbers):05d}"


def _prepay(adapter: PaypalAdapter, payment_no: str, amount: int = 990, currency: str = "USD") -> PrepayResult:
    return adapter.prepay(
        PrepayRequest(
            payment_no=payment_no,
            amount=amount,
            currency=currency,
            description="Coffee",
            method="app",
            notify_url="https://paycore.example.com/callbacks/paypal",
            expires_at=datetime.now(UTC) + timedelta(hours=1),
            return_url="https://app.example.com/pp/return",
            cancel_url="https://app.example.com/pp/cancel",
        )
    )


def _refund(
    adapter: PaypalAdapter, payment_no: str, order_id: str, refund_no: str, amount: int, total: int = 990
) -> Any:
    return adapter.refund(
        RefundRequest(
            refund_no=refund_no,
            payment_no=payment_no,
            channel_trade_no=order_id,
            amount=amount,
            total_amount=total,
            currency="USD",
            reason="returned",
        )
    )


def _event_type(req: Any) -> str:
    return json.loads(req.body)["event_type"]


def _wait_event(sink: Any, event_type: str, n: int = 1, timeout: float = 5.0) -> list[Any]:
    """The first ``n`` deliveries of ``event_type`` at the sink (waiting for them)."""
    deadline = time.monotonic() + timeout
    while True:
        got = [r for r in sink.received if _event_type(r) == event_type]
        if len(got) >= n:
            return got[:n]
        if time.monotonic() > deadline:
            raise AssertionError(f"expected {n} {event_type} webhooks, got {len(got)}")
        sink.wait_for(len(sink.received) + 1, timeout=max(0.01, deadline - time.monotonic()))


def _parse(adapter: PaypalAdapter, req: Any) -> Notification:
    return adapter.parse_notification(dict(req.headers), req.body)


class _Counting(requests.Session):
    """A session that counts token and search requests (the adapter's own HTTP, no stubbing)."""

    def __init__(self) -> None:
        super().__init__()
        self.token_requests = 0
        self.searches = 0

    def request(self, method: str, url: str, *args: Any, **kwargs: Any) -> requests.Response:  # type: ignore[override]
        if url.endswith("/v1/oauth2/token"):
            self.token_requests += 1
        if url.endswith("/v1/reporting/transactions"):
            self.searches += 1
        return super().request(method, url, *args, **kwargs)


@pytest.fixture
def account(sandbox_account: Callable[..., AccountConfig], notification_sink: Any) -> AccountConfig:
    return sandbox_account("paypal", notify_url=notification_sink.url("/callbacks/paypal"))


# --- the full cycle -------------------------------------------------------------------------
def test_full_cycle_prepay_approve_capture_refund_bill(
    account: AccountConfig, sandbox: Any, notification_sink: Any
) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    prepay = _prepay(adapter, payment_no)
    order_id = prepay.channel_trade_no
    assert order_id and prepay.client_params["order_id"] == order_id
    assert prepay.client_params["approve_url"].endswith(f"checkoutnow?token={order_id}")
    assert adapter.settle(payment_no=payment_no, channel_trade_no=order_id).status == TradeStatus.NOT_PAID

    sandbox.pay("paypal", payment_no)
    approved = _parse(adapter, _wait_event(notification_sink, "CHECKOUT.ORDER.APPROVED")[0])
    assert approved.kind == NotificationKind.PAYMENT
    assert approved.payment_no == payment_no and approved.channel_trade_no == order_id
    assert approved.trade is not None and approved.trade.status == TradeStatus.NOT_PAID

    # a plain query never captures; settling (what the service does for an open payment) does
    looked = adapter.query(payment_no=payment_no, channel_trade_no=order_id)
    assert looked.status == TradeStatus.NOT_PAID and looked.raw["order_status"] == "APPROVED"
    paid = adapter.settle(payment_no=payment_no, channel_trade_no=order_id)
    assert (paid.status, paid.paid_amount, paid.currency) == (TradeStatus.PAID, 990, "USD")
    capture_id = paid.raw["capture_id"]
    assert capture_id and paid.paid_at is not None
    completed = _parse(adapter, _wait_event(notification_sink, "PAYMENT.CAPTURE.COMPLETED")[0])
    assert completed.trade is not None
    assert (completed.trade.status, completed.trade.paid_amount) == (TradeStatus.PAID, 990)
    assert completed.trade.raw["capture_id"] == capture_id
    assert completed.channel_trade_no == order_id
    # settling again does not capture twice
    again = adapter.settle(payment_no=payment_no, channel_trade_no=order_id)
    assert (again.status, again.raw["capture_id"]) == (TradeStatus.PAID, capture_id)

    first = _refund(adapter, payment_no, order_id, f"R{payment_no}a", 300)
    assert first.status in (RefundStatus.PROCESSING, RefundStatus.SUCCEEDED)
    assert first.amount == 300 and first.channel_refund_no
    rest = _refund(adapter, payment_no, order_id, f"R{payment_no}b", 690)
    assert rest.amount == 690
    with pytest.raises(ChannelRejected) as excess:
        _refund(adapter, payment_no, order_id, f"R{payment_no}c", 1)
    assert excess.value.code in ("CAPTURE_FULLY_REFUNDED", "REFUND_AMOUNT_EXCEEDED")

    refunded = [_parse(adapter, r) for r in _wait_event(notification_sink, "PAYMENT.CAPTURE.REFUNDED", 2)]
    assert all(n.kind == NotificationKind.REFUND for n in refunded)
    assert {(n.refund.refund_no, n.refund.amount, n.refund.status) for n in refunded if n.refund} == {
        (f"R{payment_no}a", 300, RefundStatus.SUCCEEDED),
        (f"R{payment_no}b", 690, RefundStatus.SUCCEEDED),
    }
    assert {n.payment_no for n in refunded} == {payment_no}

    by_id = adapter.query_refund(
        refund_no=f"R{payment_no}a", payment_no=payment_no, channel_refund_no=first.channel_refund_no
    )
    by_number = adapter.query_refund(refund_no=f"R{payment_no}b", payment_no=payment_no, channel_trade_no=order_id)
    assert (by_id.status, by_id.amount) == (RefundStatus.SUCCEEDED, 300)
    assert (by_number.status, by_number.channel_refund_no) == (RefundStatus.SUCCEEDED, rest.channel_refund_no)
    missing = adapter.query_refund(refund_no="R-never-sent", payment_no=payment_no, channel_trade_no=order_id)
    assert missing.status == RefundStatus.NOT_FOUND

    sandbox.end_day(0)  # Transaction Search has data only for days that have ended (sandbox clock)
    rows = list(adapter.fetch_bill(datetime.now(UTC).date()))
    payments = [r for r in rows if r.kind == BillRowKind.PAYMENT]
    refunds = sorted((r for r in rows if r.kind == BillRowKind.REFUND), key=lambda r: r.amount)
    assert [(r.payment_no, r.channel_trade_no, r.amount, r.currency) for r in payments] == [
        (payment_no, order_id, 990, "USD")
    ]
    assert payments[0].fee is not None and payments[0].fee > 0
    assert [(r.refund_no, r.payment_no, r.amount, r.channel_trade_no) for r in refunds] == [
        (f"R{payment_no}a", payment_no, 300, order_id),
        (f"R{payment_no}b", payment_no, 690, order_id),
    ]


def test_bill_pages_through_every_page(sandbox_account: Callable[..., AccountConfig], sandbox: Any) -> None:
    account = sandbox_account("paypal", report_page_size=1)  # the sandbox serves one row per page
    http = _Counting()
    adapter = PaypalAdapter(account, http=http)
    numbers = [_payment_no() for _ in range(3)]
    for number in numbers:
        order_id = _prepay(adapter, number).channel_trade_no
        sandbox.pay("paypal", number)
        assert adapter.settle(channel_trade_no=order_id).status == TradeStatus.PAID
    sandbox.end_day(0)  # Transaction Search has data only for days that have ended (sandbox clock)
    rows = list(adapter.fetch_bill(datetime.now(UTC).date()))
    assert sorted(r.payment_no for r in rows) == sorted(numbers)
    assert http.searches == 3


# --- tokens ---------------------------------------------------------------------------------
def test_one_token_serves_several_calls(account: AccountConfig) -> None:
    http = _Counting()
    adapter = PaypalAdapter(account, http=http)
    result = _prepay(adapter, _payment_no())
    for _ in range(3):
        adapter.settle(channel_trade_no=result.channel_trade_no)
    assert http.token_requests == 1
    # a second adapter instance for the same account shares the cache
    other = _Counting()
    PaypalAdapter(account, http=other).settle(channel_trade_no=result.channel_trade_no)
    assert other.token_requests == 0


def test_concurrent_calls_share_one_token_request(account: AccountConfig) -> None:
    http = _Counting()
    order_id = _prepay(PaypalAdapter(account), _payment_no()).channel_trade_no
    paypal.clear_caches()
    barrier = threading.Barrier(8)

    def call(_: int) -> TradeStatus:
        barrier.wait()
        return PaypalAdapter(account, http=http).settle(channel_trade_no=order_id).status

    with ThreadPoolExecutor(max_workers=8) as pool:
        statuses = list(pool.map(call, range(8)))
    assert statuses == [TradeStatus.NOT_PAID] * 8
    assert http.token_requests == 1


def test_revoked_token_is_refreshed_once_and_the_call_retried(account: AccountConfig, sandbox_gateway: Any) -> None:
    http = _Counting()
    adapter = PaypalAdapter(account, http=http)
    result = _prepay(adapter, _payment_no())
    assert sandbox_gateway.sandbox.simulator("paypal").revoke_tokens(account.ids["client_id"]) == 1
    assert adapter.settle(channel_trade_no=result.channel_trade_no).status == TradeStatus.NOT_PAID
    assert http.token_requests == 2


def test_token_with_less_than_five_minutes_left_is_not_reused(sandbox_account: Callable[..., AccountConfig]) -> None:
    account = sandbox_account("paypal", token_expires_in=200)
    http = _Counting()
    adapter = PaypalAdapter(account, http=http)
    result = _prepay(adapter, _payment_no())
    adapter.settle(channel_trade_no=result.channel_trade_no)
    assert http.token_requests == 2


def test_wrong_client_secret_is_rejected(account: AccountConfig) -> None:
    bad = AccountConfig(
        channel="paypal",
        account_id=account.account_id,
        base_url=account.base_url,
        ids=account.ids,
        credentials={"client_secret": "wrong"},
        options=account.options,
    )
    with pytest.raises(ChannelRejected) as exc:
        _prepay(PaypalAdapter(bad), _payment_no())
    assert exc.value.code == "invalid_client"


# --- orders ---------------------------------------------------------------------------------
def test_prepay_is_idempotent_on_the_payment_number(account: AccountConfig) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    assert _prepay(adapter, payment_no).channel_trade_no == _prepay(adapter, payment_no).channel_trade_no


def test_zero_and_three_decimal_currencies_round_trip(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    for amount, currency in ((990, "JPY"), (1234, "KWD")):
        payment_no = _payment_no()
        result = _prepay(adapter, payment_no, amount=amount, currency=currency)
        sandbox.pay("paypal", payment_no)
        state = adapter.settle(channel_trade_no=result.channel_trade_no)
        assert (state.status, state.paid_amount, state.currency) == (TradeStatus.PAID, amount, currency)


def test_declined_capture_is_failed(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    result = _prepay(adapter, payment_no)
    sandbox.fail("paypal", payment_no)
    state = adapter.settle(channel_trade_no=result.channel_trade_no)
    assert (state.status, state.paid_amount) == (TradeStatus.FAILED, None)
    assert state.raw["capture_status"] == "DECLINED"


def test_pending_capture_is_not_paid_until_it_completes(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    result = _prepay(adapter, payment_no)
    sandbox.pay("paypal", payment_no, pending=True)
    assert adapter.settle(channel_trade_no=result.channel_trade_no).status == TradeStatus.NOT_PAID
    sandbox.act("paypal", payment_no, "complete_pending")
    state = adapter.settle(channel_trade_no=result.channel_trade_no)
    assert (state.status, state.paid_amount) == (TradeStatus.PAID, 990)


def test_voided_order_is_closed_and_unknown_order_not_found(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    result = _prepay(adapter, payment_no)
    sandbox.cancel("paypal", payment_no)
    assert adapter.settle(channel_trade_no=result.channel_trade_no).status == TradeStatus.CLOSED
    assert adapter.settle(channel_trade_no="0000000000000000X").status == TradeStatus.NOT_FOUND


def test_order_of_another_payment_is_refused(account: AccountConfig) -> None:
    adapter = PaypalAdapter(account)
    result = _prepay(adapter, _payment_no())
    with pytest.raises(ChannelRejected) as exc:
        adapter.settle(payment_no="SOMEONE-ELSE", channel_trade_no=result.channel_trade_no)
    assert exc.value.code == "ORDER_MISMATCH"


def test_refund_is_idempotent_on_the_refund_number(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    order_id = _prepay(adapter, payment_no).channel_trade_no
    sandbox.pay("paypal", payment_no)
    adapter.settle(channel_trade_no=order_id)
    first = _refund(adapter, payment_no, order_id, f"R{payment_no}", 500)
    second = _refund(adapter, payment_no, order_id, f"R{payment_no}", 500)
    assert first.channel_refund_no == second.channel_refund_no
    refunds = [t for t in sandbox.trades() if t["kind"] == "refund" and t.get("invoice_id") == f"R{payment_no}"]
    assert len(refunds) == 1


def test_refund_before_capture_is_rejected(account: AccountConfig) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    order_id = _prepay(adapter, payment_no).channel_trade_no
    with pytest.raises(ChannelRejected) as exc:
        _refund(adapter, payment_no, order_id, f"R{payment_no}", 100)
    assert exc.value.code == "NOT_CAPTURED"


# --- webhooks ---------------------------------------------------------------------------------
def test_webhook_is_retried_until_acknowledged_with_the_same_event_id(
    account: AccountConfig, sandbox: Any, notification_sink: Any
) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    _prepay(adapter, payment_no)
    notification_sink.respond_with(500, times=2)
    sandbox.pay("paypal", payment_no)
    deliveries = _wait_event(notification_sink, "CHECKOUT.ORDER.APPROVED", 3)
    notes = [_parse(adapter, d) for d in deliveries]
    assert len({n.dedupe_key for n in notes}) == 1
    assert sandbox.wait_idle(5)
    states = [s for s in sandbox.notification_states() if s["key"].endswith(notes[0].dedupe_key)]
    assert states[0]["state"] == "acked" and states[0]["attempts"] == 3


def test_badly_signed_webhook_is_rejected(account: AccountConfig, sandbox: Any, notification_sink: Any) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    _prepay(adapter, payment_no)
    sandbox.add_fault(kind="bad_signature", channel="paypal", path="webhook:CHECKOUT.ORDER.APPROVED", count=1)
    sandbox.pay("paypal", payment_no)
    delivery = _wait_event(notification_sink, "CHECKOUT.ORDER.APPROVED")[0]
    with pytest.raises(SignatureInvalid):
        _parse(adapter, delivery)


def test_verification_through_the_api(
    sandbox_account: Callable[..., AccountConfig], sandbox: Any, notification_sink: Any
) -> None:
    account = sandbox_account("paypal", notify_url=notification_sink.url(), webhook_verification="api")
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    _prepay(adapter, payment_no)
    sandbox.pay("paypal", payment_no)
    delivery = _wait_event(notification_sink, "CHECKOUT.ORDER.APPROVED")[0]
    assert _parse(adapter, delivery).payment_no == payment_no
    forged = delivery.body.replace(payment_no.encode(), b"PPFORGED" + payment_no[8:].encode())
    assert forged != delivery.body
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification(dict(delivery.headers), forged)


# --- API faults -------------------------------------------------------------------------------
def test_lost_create_answer_is_unavailable_and_the_retry_finds_the_same_order(
    account: AccountConfig, sandbox: Any
) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    sandbox.add_fault(kind="http_500", channel="paypal", path="/v2/checkout/orders", count=1, process=True)
    with pytest.raises(ChannelUnavailable):
        _prepay(adapter, payment_no)
    retried = _prepay(adapter, payment_no)
    orders = [t for t in sandbox.trades() if t["kind"] == "trade" and t["key"] == payment_no]
    assert [t["order_id"] for t in orders] == [retried.channel_trade_no]


def test_dropped_connection_on_capture_is_unavailable_then_recovers(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    order_id = _prepay(adapter, payment_no).channel_trade_no
    sandbox.pay("paypal", payment_no)
    sandbox.add_fault(kind="disconnect", channel="paypal", path="/capture", count=1, process=True)
    with pytest.raises(ChannelUnavailable):
        adapter.settle(channel_trade_no=order_id)
    state = adapter.settle(channel_trade_no=order_id)
    assert (state.status, state.paid_amount) == (TradeStatus.PAID, 990)
    trade = next(t for t in sandbox.trades() if t["kind"] == "trade" and t["key"] == payment_no)
    assert len(trade["captures"]) == 1


def test_503_on_query_is_unavailable(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    order_id = _prepay(adapter, _payment_no()).channel_trade_no
    sandbox.add_fault(kind="http_503", channel="paypal", path=f"/orders/{order_id}", count=1)
    with pytest.raises(ChannelUnavailable):
        adapter.settle(channel_trade_no=order_id)
    assert adapter.settle(channel_trade_no=order_id).status == TradeStatus.NOT_PAID


def test_tampered_amount_in_create_reply_is_not_trusted(account: AccountConfig, sandbox: Any) -> None:
    adapter = PaypalAdapter(account)
    sandbox.add_fault(kind="tamper_amount", channel="paypal", path="/v2/checkout/orders", amount=1, count=1)
    with pytest.raises(ChannelUnavailable):
        _prepay(adapter, _payment_no())


def test_a_short_capture_is_reported_with_its_own_amount_and_currency(account: AccountConfig, sandbox: Any) -> None:
    """A capture of 1 cent for a 15.00 order is PAID with paid_amount=1: the service, not the
    adapter, compares it with the payment and flags it."""
    adapter = PaypalAdapter(account)
    payment_no = _payment_no()
    result = _prepay(adapter, payment_no, amount=1500)
    sandbox.pay("paypal", payment_no, amount=1)
    state = adapter.settle(payment_no=payment_no, channel_trade_no=result.channel_trade_no)
    assert (state.status, state.paid_amount, state.currency) == (TradeStatus.PAID, 1, "USD")
    again = adapter.query(payment_no=payment_no, channel_trade_no=result.channel_trade_no)
    assert (again.paid_amount, again.currency) == (1, "USD")
