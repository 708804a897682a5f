"""Points adapter against the sandbox's partner simulator, over real HTTP with real signatures."""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
import requests

from channels.base import (
    AccountConfig,
    BillRowKind,
    ChannelRejected,
    ChannelUnavailable,
    NotificationKind,
    PrepayRequest,
    RefundRequest,
    RefundStatus,
    TradeStatus,
)
from channels.points import PointsAdapter
from sandbox.client import SandboxClient, SandboxClientError

RATE = 10  # points per minor unit
INITIAL_POINTS = 100_000  # what the sandbox gives a new binding
ACK = json.dumps({"code": "SUCCESS"}).encode()


def new_no(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(8)}"


def prepay_request(payment_no: str, binding_id: str, amount: int = 1000, description: str = "order") -> PrepayRequest:
    return PrepayRequest(
        payment_no=payment_no,
        amount=amount,
        currency="CNY",
        description=description,
        method="points",
        notify_url="",
        expires_at=datetime.now(UTC) + timedelta(minutes=15),
        payer_id=binding_id,
    )


def refund_request(
    refund_no: str, payment_no: str, deduction_id: str | None, amount: int, total: int = 1000
) -> RefundRequest:
    return RefundRequest(
        refund_no=refund_no,
        payment_no=payment_no,
        channel_trade_no=deduction_id,
        amount=amount,
        total_amount=total,
        currency="CNY",
        reason="return",
    )


def events(sink, n: int, adapter: PointsAdapter) -> list:
    """The first ``n`` callbacks at the sink, verified and parsed by the adapter."""
    return [adapter.parse_notification(r.headers, r.body) for r in sink.wait_for(n)[:n]]


@pytest.fixture
def points_account(sandbox_account, notification_sink) -> AccountConfig:
    notification_sink.respond_with(200, ACK)
    return sandbox_account(
        "points", notify_url=notification_sink.url("/callbacks/points/1"), points_per_minor_unit=RATE
    )


@pytest.fixture
def adapter(points_account) -> PointsAdapter:
    return PointsAdapter(points_account)


@pytest.fixture
def bound(adapter) -> Callable[..., str]:
    def make(user_ref: str = "member-1") -> str:
        return adapter.bind(new_no("BR"), f"{user_ref}-{secrets.token_hex(3)}", new_no("U"))

    return make


def test_full_cycle_bind_deduct_query_refund_callbacks_and_bill(adapter, bound, notification_sink, sandbox) -> None:
    binding_id = bound()
    assert adapter.balance(binding_id).points == INITIAL_POINTS
    payment_no = new_no("P")

    result = adapter.prepay(prepay_request(payment_no, binding_id, amount=1000))
    assert result.status == TradeStatus.PAID
    deduction_id = result.channel_trade_no
    assert deduction_id
    assert result.client_params == {"deduction_id": deduction_id, "points": 10_000, "status": "PAID"}
    assert adapter.balance(binding_id).points == INITIAL_POINTS - 10_000

    by_no = adapter.query(payment_no=payment_no)
    by_id = adapter.query(channel_trade_no=deduction_id)
    assert by_no == by_id
    assert (by_no.payment_no, by_no.status, by_no.paid_amount) == (payment_no, TradeStatus.PAID, 1000)

    first = adapter.refund(refund_request(new_no("RF"), payment_no, deduction_id, amount=300))
    assert first.status == RefundStatus.PROCESSING and first.amount == 300
    notification_sink.wait_for(2)  # the deduction's and the first refund's callbacks
    assert adapter.query_refund(refund_no=first.refund_no, payment_no=payment_no).status == RefundStatus.SUCCEEDED

    rest = adapter.refund(refund_request(new_no("RF"), payment_no, None, amount=700))  # by request_no
    with pytest.raises(ChannelRejected) as over:
        adapter.refund(refund_request(new_no("RF"), payment_no, deduction_id, amount=1))
    assert over.value.code == "REFUND_EXCEEDS_DEDUCTION"
    notes = sorted(events(notification_sink, 3, adapter), key=lambda n: (n.event_type, n.refund and n.refund.amount))
    deducted, refunded_once, refunded_rest = notes
    by_refund_id = adapter.query_refund(
        refund_no=rest.refund_no, payment_no=payment_no, channel_refund_no=rest.channel_refund_no
    )
    assert (by_refund_id.status, by_refund_id.amount) == (RefundStatus.SUCCEEDED, 700)
    assert adapter.balance(binding_id).points == INITIAL_POINTS

    assert (deducted.kind, deducted.event_type) == (NotificationKind.PAYMENT, "DEDUCTION.SUCCESS")
    assert deducted.trade is not None
    assert (deducted.payment_no, deducted.channel_trade_no, deducted.trade.paid_amount) == (
        payment_no,
        deduction_id,
        1000,
    )
    assert [(n.kind, n.refund.refund_no, n.refund.status, n.refund.amount) for n in (refunded_once, refunded_rest)] == [
        (NotificationKind.REFUND, first.refund_no, RefundStatus.SUCCEEDED, 300),
        (NotificationKind.REFUND, rest.refund_no, RefundStatus.SUCCEEDED, 700),
    ]
    assert len({deducted.dedupe_key, refunded_once.dedupe_key, refunded_rest.dedupe_key}) == 3

    bill_date = datetime.fromisoformat(by_no.raw["completed_at"]).date()
    sandbox.end_day(8)  # statements exist only for days that have ended (sandbox clock)
    rows = [r for r in adapter.fetch_bill(bill_date) if r.payment_no == payment_no]
    assert sorted((r.kind, r.amount, r.refund_no or "") for r in rows) == sorted(
        [
            (BillRowKind.PAYMENT, 1000, ""),
            (BillRowKind.REFUND, 300, first.refund_no),
            (BillRowKind.REFUND, 700, rest.refund_no),
        ]
    )
    assert {r.channel_trade_no for r in rows} == {deduction_id}


def test_repeating_a_deduction_returns_the_original_and_deducts_once(adapter, bound) -> None:
    binding_id, payment_no = bound(), new_no("P")
    first = adapter.prepay(prepay_request(payment_no, binding_id))
    again = adapter.prepay(prepay_request(payment_no, binding_id))
    assert again.channel_trade_no == first.channel_trade_no
    assert again.status == TradeStatus.PAID
    assert adapter.balance(binding_id).points == INITIAL_POINTS - 1000 * RATE


def test_same_request_no_with_different_content_is_a_conflict(adapter, bound) -> None:
    binding_id, payment_no = bound(), new_no("P")
    adapter.prepay(prepay_request(payment_no, binding_id, amount=1000))
    with pytest.raises(ChannelRejected) as exc:
        adapter.prepay(prepay_request(payment_no, binding_id, amount=1001))
    assert exc.value.code == "REQUEST_NO_CONFLICT"
    assert adapter.balance(binding_id).points == INITIAL_POINTS - 1000 * RATE


def test_refund_number_reused_with_another_amount_is_a_conflict(adapter, bound) -> None:
    binding_id, payment_no, refund_no = bound(), new_no("P"), new_no("RF")
    deduction_id = adapter.prepay(prepay_request(payment_no, binding_id)).channel_trade_no
    first = adapter.refund(refund_request(refund_no, payment_no, deduction_id, amount=100))
    repeat = adapter.refund(refund_request(refund_no, payment_no, deduction_id, amount=100))
    assert repeat.channel_refund_no == first.channel_refund_no
    with pytest.raises(ChannelRejected) as exc:
        adapter.refund(refund_request(refund_no, payment_no, deduction_id, amount=200))
    assert exc.value.code == "REQUEST_NO_CONFLICT"


def test_timeout_is_resolved_by_query_never_by_a_second_deduction(adapter, bound, sandbox) -> None:
    binding_id, payment_no = bound(), new_no("P")
    sandbox.add_fault(kind="timeout", channel="points", path="/v1/points/deductions", count=1, seconds=1.5)
    adapter.timeout = (2.0, 0.5)
    with pytest.raises(ChannelUnavailable):
        adapter.prepay(prepay_request(payment_no, binding_id))

    state = adapter.query(payment_no=payment_no)  # the partner did take the points
    assert state.status == TradeStatus.PAID and state.paid_amount == 1000
    again = adapter.prepay(prepay_request(payment_no, binding_id))  # same number: the original
    assert again.channel_trade_no == state.channel_trade_no
    assert adapter.balance(binding_id).points == INITIAL_POINTS - 1000 * RATE
    trades = [t for t in sandbox.trades() if t["channel"] == "points" and t.get("request_no") == payment_no]
    assert len(trades) == 1


@pytest.mark.parametrize("kind", ["http_500", "http_503", "bad_signature"])
def test_server_error_or_forged_reply_is_an_unknown_outcome(adapter, bound, sandbox, kind: str) -> None:
    binding_id, payment_no = bound(), new_no("P")
    sandbox.add_fault(kind=kind, channel="points", path="/v1/points/deductions", count=1, process=True)
    with pytest.raises(ChannelUnavailable):
        adapter.prepay(prepay_request(payment_no, binding_id))
    assert adapter.query(payment_no=payment_no).status == TradeStatus.PAID


def test_tampered_points_in_a_reply_are_not_trusted(adapter, bound, sandbox) -> None:
    binding_id, payment_no = bound(), new_no("P")
    sandbox.add_fault(kind="tamper_amount", channel="points", path="/v1/points/deductions", count=1, amount=1)
    with pytest.raises(ChannelUnavailable):
        adapter.prepay(prepay_request(payment_no, binding_id))


def test_unknown_deduction_and_refund_are_not_found(adapter) -> None:
    state = adapter.query(payment_no=new_no("P"))
    assert state.status == TradeStatus.NOT_FOUND and state.paid_amount is None
    refund = adapter.query_refund(refund_no=new_no("RF"), payment_no=new_no("P"))
    assert refund.status == RefundStatus.NOT_FOUND


def test_insufficient_points_fail_the_deduction(adapter, bound, notification_sink) -> None:
    binding_id, payment_no = bound("poor-member"), new_no("P")
    result = adapter.prepay(prepay_request(payment_no, binding_id, amount=1000))
    assert result.status == TradeStatus.FAILED
    assert result.raw["fail_code"] == "INSUFFICIENT_POINTS"
    assert adapter.query(channel_trade_no=result.channel_trade_no).status == TradeStatus.FAILED
    assert adapter.balance(binding_id).points == 10
    (note,) = events(notification_sink, 1, adapter)
    assert note.event_type == "DEDUCTION.FAILED" and note.trade.status == TradeStatus.FAILED
    adapter.close(payment_no=payment_no)  # nothing was taken: closing is fine
    with pytest.raises(ChannelRejected) as exc:
        adapter.refund(refund_request(new_no("RF"), payment_no, result.channel_trade_no, amount=1))
    assert exc.value.code == "DEDUCTION_NOT_SUCCESS"


def test_close_of_unknown_is_a_noop_and_of_a_paid_deduction_is_rejected(adapter, bound) -> None:
    adapter.close(payment_no=new_no("P"))
    binding_id, payment_no = bound(), new_no("P")
    adapter.prepay(prepay_request(payment_no, binding_id))
    with pytest.raises(ChannelRejected) as exc:
        adapter.close(payment_no=payment_no)
    assert exc.value.code == "TRADE_PAID"


def test_processing_deduction_cannot_be_closed_and_completes_later(adapter, bound, sandbox, notification_sink) -> None:
    binding_id, payment_no = bound(), new_no("P")
    sandbox.act("points", payment_no, "hold")
    result = adapter.prepay(prepay_request(payment_no, binding_id))
    assert result.status == TradeStatus.NOT_PAID
    balance = adapter.balance(binding_id)
    assert (balance.points, balance.frozen_points) == (INITIAL_POINTS - 1000 * RATE, 1000 * RATE)
    with pytest.raises(ChannelRejected) as exc:
        adapter.close(payment_no=payment_no)
    assert exc.value.code == "DEDUCTION_PROCESSING"

    sandbox.pay("points", payment_no, after_seconds=1)
    (note,) = events(notification_sink, 1, adapter)
    assert note.event_type == "DEDUCTION.SUCCESS" and note.payment_no == payment_no
    assert adapter.query(payment_no=payment_no).status == TradeStatus.PAID
    assert adapter.balance(binding_id).frozen_points == 0


def test_failed_after_processing_returns_the_frozen_points(adapter, bound, sandbox, notification_sink) -> None:
    binding_id, payment_no = bound(), new_no("P")
    sandbox.fail("points", payment_no, after_seconds=2, fail_code="RISK_CONTROL")
    assert adapter.prepay(prepay_request(payment_no, binding_id)).status == TradeStatus.NOT_PAID
    (note,) = events(notification_sink, 1, adapter)
    assert note.trade.status == TradeStatus.FAILED and note.trade.raw["fail_code"] == "RISK_CONTROL"
    balance = adapter.balance(binding_id)
    assert (balance.points, balance.frozen_points) == (INITIAL_POINTS, 0)
    adapter.close(payment_no=payment_no)


def test_unacknowledged_callback_is_retried_with_a_fresh_signature(adapter, bound, notification_sink) -> None:
    notification_sink.respond_with(400, json.dumps({"code": "FAIL"}), times=1)
    binding_id, payment_no = bound(), new_no("P")
    adapter.prepay(prepay_request(payment_no, binding_id))
    first, second = notification_sink.wait_for(2)[:2]
    assert first.body == second.body
    assert first.headers["X-Nonce"] != second.headers["X-Nonce"]
    assert adapter.parse_notification(first.headers, first.body).dedupe_key == (
        adapter.parse_notification(second.headers, second.body).dedupe_key
    )


def test_unbound_account_cannot_be_charged(adapter, bound) -> None:
    binding_id = bound()
    adapter.unbind(binding_id)
    adapter.unbind(binding_id)  # repeating is harmless
    with pytest.raises(ChannelRejected) as exc:
        adapter.prepay(prepay_request(new_no("P"), binding_id))
    assert exc.value.code == "BINDING_INACTIVE"


def test_binding_is_idempotent_by_request_number(adapter) -> None:
    bind_no = new_no("BR")
    assert adapter.bind(bind_no, "member-x", "U1") == adapter.bind(bind_no, "member-x", "U1")
    with pytest.raises(ChannelRejected) as exc:
        adapter.bind(bind_no, "member-y", "U1")
    assert exc.value.code == "REQUEST_NO_CONFLICT"


def test_partner_mid_rotation_signs_with_the_previous_key(sandbox_account, notification_sink) -> None:
    notification_sink.respond_with(200, ACK)
    config = sandbox_account("points", notify_url=notification_sink.url("/cb"), rotation=True)
    adapter = PointsAdapter(config)
    binding_id, payment_no = adapter.bind(new_no("BR"), "member-r", "U1"), new_no("P")
    assert adapter.prepay(prepay_request(payment_no, binding_id)).status == TradeStatus.PAID
    (callback,) = notification_sink.wait_for(1)[:1]
    assert callback.headers["X-Key-Id"] == config.credentials["previous_key_id"] != config.ids["key_id"]
    assert adapter.parse_notification(callback.headers, callback.body).payment_no == payment_no

    current_only = AccountConfig(
        channel="points",
        account_id=config.account_id,
        base_url=config.base_url,
        ids=config.ids,
        credentials={"shared_secret": config.credentials["shared_secret"]},
        options=config.options,
    )
    with pytest.raises(ChannelUnavailable):  # the reply is signed under a key it no longer knows
        PointsAdapter(current_only).query(payment_no=payment_no)


# --- the partner's checks of our requests ------------------------------------------------------------
def signed_get(
    config: AccountConfig,
    path: str,
    *,
    secret: str | None = None,
    timestamp: int | None = None,
    nonce: str | None = None,
) -> requests.PreparedRequest:
    url = config.base_url + path
    target = requests.Request("GET", url).prepare().path_url
    ts, nonce = str(int(time.time()) if timestamp is None else timestamp), nonce or secrets.token_hex(16)
    text = f"GET\n{target}\n{ts}\n{nonce}\n{hashlib.sha256(b'').hexdigest()}\n"
    key = (secret or config.credentials["shared_secret"]).encode()
    headers = {
        "X-App-Id": config.ids["app_id"],
        "X-Key-Id": config.ids["key_id"],
        "X-Timestamp": ts,
        "X-Nonce": nonce,
        "X-Signature": hmac.new(key, text.encode(), hashlib.sha256).hexdigest(),
    }
    return requests.Request("GET", url, headers=headers).prepare()


def send(prepared: requests.PreparedRequest) -> requests.Response:
    with requests.Session() as s:
        return s.send(prepared, timeout=(5, 10))


def test_partner_accepts_a_hand_signed_request_and_rejects_its_replay(points_account, adapter, bound) -> None:
    path = f"/v1/bindings/{bound()}/balance"
    prepared = signed_get(points_account, path)
    ok = send(prepared)
    assert ok.status_code == 200 and ok.json()["points"] == INITIAL_POINTS
    replay = send(prepared)
    assert (replay.status_code, replay.json()["code"]) == (401, "NONCE_REPLAYED")


@pytest.mark.parametrize(
    ("tweak", "code"),
    [
        ({"secret": "not-the-secret"}, "SIGNATURE_INVALID"),
        ({"timestamp": int(time.time()) - 3600}, "TIMESTAMP_EXPIRED"),
        ({"nonce": "short"}, "SIGNATURE_INVALID"),
    ],
)
def test_partner_rejects_bad_signatures_with_a_signed_401(points_account, adapter, bound, tweak, code) -> None:
    path = f"/v1/bindings/{bound()}/balance"
    resp = send(signed_get(points_account, path, **tweak))
    assert (resp.status_code, resp.json()["code"]) == (401, code)
    text = (
        f"GET\n{requests.Request('GET', points_account.base_url + path).prepare().path_url}\n"
        f"{resp.headers['X-Timestamp']}\n{resp.headers['X-Nonce']}\n{hashlib.sha256(resp.content).hexdigest()}\n"
    )
    expected = hmac.new(points_account.credentials["shared_secret"].encode(), text.encode(), hashlib.sha256)
    assert resp.headers["X-Signature"] == expected.hexdigest()


def test_reply_signed_under_a_secret_we_do_not_hold_is_unverifiable(points_account) -> None:
    wrong = AccountConfig(
        channel="points",
        account_id=1,
        base_url=points_account.base_url,
        ids=points_account.ids,
        credentials={"shared_secret": "0" * 64},
        options=points_account.options,
    )
    with pytest.raises(ChannelUnavailable):  # the 401 comes back signed with the real key: unverifiable
        PointsAdapter(wrong).balance("B-any")


def test_sandbox_client_payer_action_on_a_final_deduction_is_refused(adapter, bound, sandbox: SandboxClient) -> None:
    binding_id, payment_no = bound(), new_no("P")
    adapter.prepay(prepay_request(payment_no, binding_id))
    with pytest.raises(SandboxClientError) as exc:
        sandbox.fail("points", payment_no)
    assert exc.value.status == 409
