"""WeChat Pay round trips over real HTTP against the sandbox gateway (sandbox/wechat.py).

Everything here is signed and verified for real: the adapter signs with the merchant key the
sandbox generated, the sandbox signs answers and notifications with its platform certificate
or public key, and notifications reach a local sink over HTTP. Payment-code conventions of the
simulator: the ``auth_code``'s last four digits choose the outcome (``0000`` password needed,
``0001`` NOTENOUGH, ``0003`` SYSTEMERROR although paid, anything else paid at once).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests

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
    SignatureInvalid,
    TradeStatus,
)
from channels.wechat import WechatAdapter

BEIJING = timezone(timedelta(hours=8))
PAID_CODE = "134567890123456789"
PASSWORD_CODE = "134567890123450000"
NOTENOUGH_CODE = "134567890123450001"
SYSTEMERROR_CODE = "134567890123450003"
BANKERROR_CODE = "134567890123450004"


def _no(prefix: str = "WX") -> str:
    return prefix + uuid.uuid4().hex[:24]


def _adapter(config: AccountConfig) -> WechatAdapter:
    return WechatAdapter(config)


@pytest.fixture
def wechat(sandbox_account: Callable[..., AccountConfig]) -> Callable[..., WechatAdapter]:
    """``wechat(mode="both", v2_sign_type="HMAC-SHA256")`` -> an adapter on a fresh sandbox account."""

    def make(**extra: str) -> WechatAdapter:
        return _adapter(sandbox_account("wechat", **extra))

    return make


def _prepay(adapter: WechatAdapter, sink, method: str = "app", amount: int = 990, **extra) -> PrepayRequest:
    req = PrepayRequest(
        payment_no=_no(),
        amount=amount,
        currency="CNY",
        description="Coffee 咖啡",
        method=method,
        notify_url=sink.url("/cb/wechat"),
        expires_at=datetime.now(UTC) + timedelta(minutes=30),
        **extra,
    )
    return req


def _pay_and_parse(adapter: WechatAdapter, sandbox, sink, payment_no: str, n: int = 1, **params):
    sandbox.pay("wechat", payment_no, **params)
    received = sink.wait_for(n)[n - 1]
    return received, adapter.parse_notification(received.headers, received.body)


_EXTRA = {
    "app": {},
    "native": {},
    "jsapi": {"payer_id": "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"},
    "h5": {"client_ip": "203.0.113.7"},
}


@pytest.mark.parametrize("method", ["app", "jsapi", "native", "h5"])
def test_each_scene_prepays_is_paid_notified_and_queried(wechat, sandbox, notification_sink, method: str) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, method, **_EXTRA[method])
    result = adapter.prepay(req)
    expected_keys = {
        "app": {"appid", "partnerid", "prepayid", "package", "noncestr", "timestamp", "sign"},
        "jsapi": {"appId", "timeStamp", "nonceStr", "package", "signType", "paySign"},
        "native": {"code_url"},
        "h5": {"h5_url"},
    }[method]
    assert set(result.client_params) == expected_keys
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.NOT_PAID

    _, note = _pay_and_parse(adapter, sandbox, notification_sink, req.payment_no)
    assert note.kind is NotificationKind.PAYMENT and note.event_type == "TRANSACTION.SUCCESS"
    assert note.payment_no == req.payment_no and note.dedupe_key.startswith("EV-")
    assert note.trade is not None and note.trade.status is TradeStatus.PAID and note.trade.paid_amount == 990

    by_no = adapter.query(payment_no=req.payment_no)
    assert (by_no.status, by_no.paid_amount, by_no.channel_trade_no) == (TradeStatus.PAID, 990, note.channel_trade_no)
    by_id = adapter.query(channel_trade_no=note.channel_trade_no)
    assert by_id.payment_no == req.payment_no and by_id.status is TradeStatus.PAID


def test_identical_prepay_repost_is_a_safe_retry(wechat, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "app")
    first, second = adapter.prepay(req), adapter.prepay(req)
    assert first.client_params["prepayid"] != second.client_params["prepayid"]
    with pytest.raises(ChannelRejected) as caught:
        adapter.prepay(replace(req, amount=991))
    assert caught.value.code == "OUT_TRADE_NO_USED"


def test_payment_refund_notifications_and_bill_round_trip(wechat, sandbox, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "app", amount=1000)
    adapter.prepay(req)
    _, paid = _pay_and_parse(adapter, sandbox, notification_sink, req.payment_no)
    assert adapter.ack(True).status == 200

    refund_req = RefundRequest(
        refund_no=_no("RF"),
        payment_no=req.payment_no,
        channel_trade_no=paid.channel_trade_no,
        amount=400,
        total_amount=1000,
        currency="CNY",
        reason="退货",
        notify_url=notification_sink.url("/cb/refund"),
    )
    created = adapter.refund(refund_req)
    assert created.refund_no == refund_req.refund_no and created.amount == 400
    assert created.status in (RefundStatus.PROCESSING, RefundStatus.SUCCEEDED)
    assert adapter.refund(refund_req).channel_refund_no == created.channel_refund_no  # same number, no 2nd refund

    received = notification_sink.wait_for(2)[1]
    assert received.path == "/cb/refund"
    note = adapter.parse_notification(received.headers, received.body)
    assert note.kind is NotificationKind.REFUND and note.event_type == "REFUND.SUCCESS"
    assert note.refund is not None and note.refund.status is RefundStatus.SUCCEEDED
    assert note.refund.refund_no == refund_req.refund_no and note.refund.amount == 400

    queried = adapter.query_refund(refund_no=refund_req.refund_no, payment_no=req.payment_no)
    assert queried.status is RefundStatus.SUCCEEDED and queried.succeeded_at is not None
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.PAID  # trade_state REFUND

    sandbox.end_day(8)  # bills exist only for days that have ended (sandbox clock)
    rows = list(adapter.fetch_bill(datetime.now(BEIJING).date()))
    payments = [r for r in rows if r.kind is BillRowKind.PAYMENT and r.payment_no == req.payment_no]
    refunds = [r for r in rows if r.kind is BillRowKind.REFUND and r.refund_no == refund_req.refund_no]
    assert [(r.amount, r.channel_trade_no) for r in payments] == [(1000, paid.channel_trade_no)]
    assert [(r.amount, r.payment_no, r.channel_refund_no) for r in refunds] == [
        (400, req.payment_no, created.channel_refund_no)
    ]


def test_refund_query_of_an_unknown_refund_is_not_found(wechat) -> None:
    state = wechat().query_refund(refund_no=_no("RF"), payment_no=_no())
    assert state.status is RefundStatus.NOT_FOUND


def test_refund_held_processing_then_abnormal(wechat, sandbox, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "native")
    adapter.prepay(req)
    _pay_and_parse(adapter, sandbox, notification_sink, req.payment_no)
    refund_req = RefundRequest(
        refund_no=_no("RF"),
        payment_no=req.payment_no,
        channel_trade_no=None,
        amount=990,
        total_amount=990,
        currency="CNY",
        reason="SANDBOX_PROCESSING",
    )
    assert adapter.refund(refund_req).status is RefundStatus.PROCESSING
    sandbox.act("wechat", refund_req.refund_no, "refund_abnormal")
    state = adapter.query_refund(refund_no=refund_req.refund_no, payment_no=req.payment_no)
    assert state.status is RefundStatus.ABNORMAL and state.fail_code == "ABNORMAL"


def test_query_of_an_unknown_order_is_not_found(wechat) -> None:
    payment_no = _no()
    state = wechat().query(payment_no=payment_no)
    assert state.status is TradeStatus.NOT_FOUND and state.payment_no == payment_no


def test_close_of_an_unpaid_trade(wechat, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "native")
    adapter.prepay(req)
    adapter.close(payment_no=req.payment_no)
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.CLOSED


def test_close_of_a_paid_trade_is_rejected(wechat, sandbox, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "native")
    adapter.prepay(req)
    sandbox.pay("wechat", req.payment_no, notify=False)
    with pytest.raises(ChannelRejected) as caught:
        adapter.close(payment_no=req.payment_no)
    assert caught.value.code == "ORDERPAID"


@pytest.mark.parametrize("mode", ["certificate", "public_key", "both"])
def test_each_key_mode_verifies_responses_and_notifications(wechat, sandbox, notification_sink, mode: str) -> None:
    adapter = wechat(mode=mode)
    assert ("wechatpay_public_key_id" in adapter.config.options) == (mode != "certificate")
    req = _prepay(adapter, notification_sink, "app")
    adapter.prepay(req)
    for n in (1, 2):  # in "both" mode notifications alternate between the two keys
        payment_no = req.payment_no if n == 1 else _no()
        if n == 2:
            adapter.prepay(replace(req, payment_no=payment_no))
        received, note = _pay_and_parse(adapter, sandbox, notification_sink, payment_no, n=n)
        assert note.trade is not None and note.trade.status is TradeStatus.PAID
        serial = received.headers["Wechatpay-Serial"]
        assert serial.startswith("PUB_KEY_ID_") == (mode == "public_key" or (mode == "both" and n == 2))
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.PAID


def test_certificate_mode_without_configured_certificates_downloads_them(sandbox_account, notification_sink) -> None:
    config = sandbox_account("wechat", mode="certificate")
    bare = replace(config, options={k: v for k, v in config.options.items() if k != "platform_certificates"})
    adapter = _adapter(bare)
    req = _prepay(adapter, notification_sink, "native")
    adapter.prepay(req)  # the answer's serial is unknown: one /v3/certificates download
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.NOT_PAID


class _CountingSession(requests.Session):
    """One session shared by every adapter of the test (as the registry's pool does), counting paths."""

    def __init__(self) -> None:
        super().__init__()
        self.paths: list[str] = []
        self._lock = threading.Lock()

    def send(self, request: requests.PreparedRequest, **kwargs: Any) -> requests.Response:
        with self._lock:
            self.paths.append(urlsplit(request.url or "").path)
        return super().send(request, **kwargs)


def test_concurrent_callers_wait_for_one_certificate_download_and_all_verify(
    sandbox_account, sandbox, notification_sink
) -> None:
    config = sandbox_account("wechat", mode="certificate")
    bare = replace(config, options={k: v for k, v in config.options.items() if k != "platform_certificates"})
    # The download is slow, so every other caller meets an unknown serial while it is in flight.
    sandbox.add_fault(kind="timeout", channel="wechat", path="/v3/certificates", seconds=0.5, count=1)
    session, threads = _CountingSession(), 8
    start = threading.Barrier(threads)

    def place(_: int) -> str:
        adapter = WechatAdapter(bare, http=session)  # adapters are built per call
        req = _prepay(adapter, notification_sink, "native")
        start.wait()
        return adapter.prepay(req).client_params["code_url"]  # the signed answer needs the platform key

    with ThreadPoolExecutor(max_workers=threads) as pool:
        outcomes = list(pool.map(place, range(threads)))  # an "unknown serial" would raise here
    assert len(outcomes) == threads and all(url.startswith("weixin://") for url in outcomes)
    assert sum(path.endswith("/v3/certificates") for path in session.paths) == 1


def test_bad_signature_fault_makes_responses_unavailable(wechat, sandbox, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "native")
    adapter.prepay(req)
    sandbox.add_fault(kind="bad_signature", channel="wechat", path="/v3/pay/transactions/out-trade-no", count=1)
    with pytest.raises(ChannelUnavailable, match="bad signature"):
        adapter.query(payment_no=req.payment_no)
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.NOT_PAID  # fault used up


def test_tampered_amount_in_a_response_is_unavailable(wechat, sandbox, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "native")
    adapter.prepay(req)
    sandbox.pay("wechat", req.payment_no, notify=False)
    sandbox.add_fault(kind="tamper_amount", channel="wechat", path="/v3/pay/transactions", amount=1, count=1)
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no=req.payment_no)


@pytest.mark.parametrize("kind", ["http_500", "http_503", "disconnect"])
def test_server_errors_are_unavailable(wechat, sandbox, notification_sink, kind: str) -> None:
    adapter = wechat()
    sandbox.add_fault(kind=kind, channel="wechat", path="/v3/pay/transactions/native", count=1)
    with pytest.raises(ChannelUnavailable):
        adapter.prepay(_prepay(adapter, notification_sink, "native"))


def test_read_timeout_is_unavailable(wechat, sandbox, notification_sink) -> None:
    adapter = wechat()
    adapter.timeout = (2.0, 0.3)
    sandbox.add_fault(kind="timeout", channel="wechat", path="/v3/pay/transactions/app", seconds=1.0, count=1)
    with pytest.raises(ChannelUnavailable, match="Timeout"):
        adapter.prepay(_prepay(adapter, notification_sink, "app"))


def test_bill_of_a_day_without_activity_is_empty(wechat, sandbox) -> None:
    adapter = wechat()
    sandbox.end_day(8)  # bills exist only for days that have ended (sandbox clock)
    assert list(adapter.fetch_bill(datetime.now(BEIJING).date())) == []


def test_tampered_notification_body_is_signature_invalid(wechat, sandbox, notification_sink) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "app")
    adapter.prepay(req)
    sandbox.pay("wechat", req.payment_no)
    received = notification_sink.wait_for(1)[0]
    tampered = received.body.replace(b'"TRANSACTION.SUCCESS"', b'"TRANSACTION.SUCCESs"')
    assert tampered != received.body
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification(received.headers, tampered)
    assert adapter.parse_notification(received.headers, received.body).kind is NotificationKind.PAYMENT


@pytest.mark.parametrize("flag", ["signtest", "bad_signature"])
def test_probe_and_badly_signed_notifications_are_signature_invalid(
    wechat, sandbox, notification_sink, flag: str
) -> None:
    adapter = wechat()
    req = _prepay(adapter, notification_sink, "app")
    adapter.prepay(req)
    sandbox.pay("wechat", req.payment_no, **{flag: True})
    received = notification_sink.wait_for(1)[0]
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification(received.headers, received.body)


def test_notification_for_another_account_is_rejected(wechat, sandbox, notification_sink) -> None:
    ours, theirs = wechat(), wechat()
    req = _prepay(theirs, notification_sink, "app")
    theirs.prepay(req)
    sandbox.pay("wechat", req.payment_no)
    received = notification_sink.wait_for(1)[0]
    with pytest.raises(SignatureInvalid):
        ours.parse_notification(received.headers, received.body)


# --------------------------------------------------------------------------------------------
# payment code (v2 micropay + reverse, v3 query)
# --------------------------------------------------------------------------------------------
def _charge(auth_code: str, amount: int = 1200) -> ChargeRequest:
    return ChargeRequest(
        payment_no=_no("PC"),
        amount=amount,
        currency="CNY",
        description="Tea",
        auth_code=auth_code,
        client_ip="10.0.0.8",
        expires_at=datetime.now(UTC) + timedelta(minutes=2),
    )


@pytest.mark.parametrize("sign_type", ["HMAC-SHA256", "MD5"])
def test_paycode_charge_succeeds_and_v3_query_agrees(wechat, sign_type: str) -> None:
    adapter = wechat(v2_sign_type=sign_type)
    req = _charge(PAID_CODE)
    state = adapter.charge(req)
    assert (state.status, state.paid_amount, state.payment_no) == (TradeStatus.PAID, 1200, req.payment_no)
    assert state.channel_trade_no and state.paid_at is not None
    queried = adapter.query(payment_no=req.payment_no)
    assert (queried.status, queried.channel_trade_no) == (TradeStatus.PAID, state.channel_trade_no)


def test_paycode_user_paying_then_password(wechat, sandbox) -> None:
    adapter = wechat()
    req = _charge(PASSWORD_CODE)
    assert adapter.charge(req).status is TradeStatus.USER_PAYING
    assert adapter.query_charge(payment_no=req.payment_no).status is TradeStatus.USER_PAYING
    sandbox.password("wechat", req.payment_no)
    state = adapter.query_charge(payment_no=req.payment_no)
    assert (state.status, state.paid_amount, state.currency) == (TradeStatus.PAID, 1200, "CNY")
    assert state.channel_trade_no and state.paid_at is not None


def test_paycode_query_charge_of_an_unknown_order_is_not_found(wechat) -> None:
    assert wechat().query_charge(payment_no=_no()).status is TradeStatus.NOT_FOUND


def test_paycode_bankerror_is_unavailable_and_query_charge_shows_the_failure(wechat) -> None:
    adapter = wechat()
    req = _charge(BANKERROR_CODE)
    with pytest.raises(ChannelUnavailable) as caught:
        adapter.charge(req)
    assert caught.value.code == "BANKERROR"  # unknown at the time: never FAILED without proof
    assert adapter.query_charge(payment_no=req.payment_no).status is TradeStatus.FAILED  # the proof


def test_paycode_revoke_while_user_paying_asks_to_be_called_again(wechat) -> None:
    adapter = wechat()
    req = _charge(PASSWORD_CODE)
    adapter.charge(req)
    first = adapter.revoke(payment_no=req.payment_no)  # USERPAYING, recall=Y
    assert (first.done, first.retry) == (False, True) and first.raw["err_code"] == "USERPAYING"
    second = adapter.revoke(payment_no=req.payment_no)
    assert (second.done, second.retry, second.refunded) == (True, False, False)
    assert adapter.query_charge(payment_no=req.payment_no).status is TradeStatus.REVOKED


def test_paycode_revoke_after_payment_refunds_and_shows_a_revoked_bill_row(wechat, sandbox) -> None:
    adapter = wechat()
    req = _charge(PAID_CODE)
    paid = adapter.charge(req)
    result = adapter.revoke(payment_no=req.payment_no, channel_trade_no=paid.channel_trade_no)
    assert (result.done, result.retry, result.refunded) == (True, False, True)
    again = adapter.revoke(payment_no=req.payment_no)  # re-entrant
    assert (again.done, again.refunded) == (True, True)
    assert adapter.query_charge(payment_no=req.payment_no).status is TradeStatus.REVOKED
    sandbox.end_day(8)  # bills exist only for days that have ended (sandbox clock)
    rows = [r for r in adapter.fetch_bill(datetime.now(BEIJING).date()) if r.payment_no == req.payment_no]
    assert [(r.kind, r.amount) for r in rows] == [(BillRowKind.PAYMENT, 1200), (BillRowKind.REVOKED, 1200)]


def test_paycode_definite_failure_is_rejected(wechat) -> None:
    with pytest.raises(ChannelRejected) as caught:
        wechat().charge(_charge(NOTENOUGH_CODE))
    assert caught.value.code == "NOTENOUGH"


def test_paycode_systemerror_is_unavailable_and_query_finds_the_truth(wechat) -> None:
    adapter = wechat()
    req = _charge(SYSTEMERROR_CODE)
    with pytest.raises(ChannelUnavailable) as caught:
        adapter.charge(req)
    assert caught.value.code == "SYSTEMERROR"
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.PAID


def test_paycode_repeat_of_a_paid_charge_reports_the_payment(wechat) -> None:
    adapter = wechat()
    req = _charge(PAID_CODE)
    first = adapter.charge(req)
    again = adapter.charge(req)  # ORDERPAID -> query
    assert (again.status, again.channel_trade_no) == (TradeStatus.PAID, first.channel_trade_no)


def test_paycode_bad_signature_fault_is_unavailable(wechat, sandbox) -> None:
    adapter = wechat()
    sandbox.add_fault(kind="bad_signature", channel="wechat", path="/pay/micropay", count=1)
    with pytest.raises(ChannelUnavailable, match="unverifiable"):
        adapter.charge(_charge(PAID_CODE))


def test_paycode_timeout_is_unavailable(wechat, sandbox) -> None:
    adapter = wechat()
    adapter.timeout = (2.0, 0.3)
    sandbox.add_fault(kind="timeout", channel="wechat", path="/pay/micropay", seconds=1.0, count=1)
    req = _charge(PAID_CODE)
    with pytest.raises(ChannelUnavailable, match="Timeout"):
        adapter.charge(req)
    assert adapter.query(payment_no=req.payment_no).status is TradeStatus.PAID  # it went through


def test_paycode_tampered_amount_is_unavailable(wechat, sandbox) -> None:
    adapter = wechat()
    sandbox.add_fault(kind="tamper_amount", channel="wechat", path="/pay/micropay", amount=1, count=1)
    with pytest.raises(ChannelUnavailable):
        adapter.charge(_charge(PAID_CODE))
