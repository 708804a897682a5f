"""Points adapter: signing and verification (paycore's points protocol), callbacks, statement parsing.

Expected signatures are built here by hand from the spec's string-to-sign, independently of the
adapter's helpers; the protocol's worked example is the known-answer vector.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import secrets
import time
from datetime import UTC, datetime, timedelta, timezone

import pytest

from channels.base import (
    AccountConfig,
    BillRowKind,
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    NotificationKind,
    NotSupported,
    PrepayRequest,
    RefundStatus,
    SignatureInvalid,
    TradeStatus,
)
from channels.points import PointsAdapter
from channels.points._sign import sign as _sign
from channels.points._sign import string_to_sign as _string_to_sign
from channels.points._statement import statement_rows

SECRET = "test-secret-" + "0" * 20  # obviously fake
OLD_SECRET = "old-test-secret-" + "1" * 16
NOTIFY_PATH = "/callbacks/points/7?src=partner"


def make_adapter(**options: object) -> PointsAdapter:
    return PointsAdapter(
        AccountConfig(
            channel="points",
            account_id=7,
            base_url="http://127.0.0.1:9/points",
            ids={"app_id": "app_test", "key_id": "k2"},
            credentials={"shared_secret": SECRET, "previous_key_id": "k1", "previous_shared_secret": OLD_SECRET},
            options={"points_per_minor_unit": 100, "notify_url": f"https://paycore.example{NOTIFY_PATH}", **options},
        )
    )


def hand_sign(
    body: bytes,
    *,
    secret: str = SECRET,
    key_id: str = "k2",
    path: str = NOTIFY_PATH,
    method: str = "POST",
    timestamp: int | None = None,
    nonce: str | None = None,
    app_id: str = "app_test",
) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    nonce = nonce or secrets.token_hex(16)
    text = f"{method}\n{path}\n{ts}\n{nonce}\n{hashlib.sha256(body).hexdigest()}\n"
    signature = hmac.new(secret.encode(), text.encode(), hashlib.sha256).hexdigest()
    return {"X-App-Id": app_id, "X-Key-Id": key_id, "X-Timestamp": ts, "X-Nonce": nonce, "X-Signature": signature}


def deduction(**overrides: object) -> dict[str, object]:
    return {
        "deduction_id": "D001",
        "request_no": "P20250101000001",
        "binding_id": "B1",
        "order_no": "P20250101000001",
        "points": 99000,
        "refunded_points": 0,
        "status": "SUCCESS",
        "fail_code": None,
        "created_at": "2025-01-01T10:00:00+08:00",
        "completed_at": "2025-01-01T10:00:01+08:00",
        **overrides,
    }


def callback_body(**deduction_overrides: object) -> bytes:
    event = {
        "event_id": "EV" + secrets.token_hex(6),
        "type": "DEDUCTION.SUCCESS",
        "created_at": "2025-01-01T10:00:01+08:00",
        "deduction": deduction(**deduction_overrides),
    }
    return json.dumps(event, separators=(",", ":")).encode()


def _statement_rows(content: bytes) -> list:
    """The statement parser as ``make_adapter()`` calls it (100 points per fen, CNY)."""
    adapter = make_adapter()
    return list(statement_rows(content, to_minor=adapter._to_minor, currency=adapter._currency))


# --- the known-answer vector ------------------------------------------------------------------
def test_known_answer_vector_from_the_protocol_reference() -> None:
    body = b'{"request_no":"DED20250101000001","points":500}'
    assert hashlib.sha256(body).hexdigest() == "3d78237317292baab6b3e0d12dca9b866569acc909d0e9cbda07d21f81709b97"
    text = _string_to_sign("POST", "/v1/points/deductions", "1735689600", "7f3c9a1e2b4d", body)
    assert text == (
        "POST\n/v1/points/deductions\n1735689600\n7f3c9a1e2b4d\n"
        "3d78237317292baab6b3e0d12dca9b866569acc909d0e9cbda07d21f81709b97\n"
    )
    assert _sign("demo-shared-secret", "POST", "/v1/points/deductions", "1735689600", "7f3c9a1e2b4d", body) == (
        "1aea4605729a1cd26da159be6dbcd3fd2550c25b3db32e35b058b6a9555df1e3"
    )


def test_hand_signed_callback_matches_the_adapters_signature() -> None:
    body = callback_body()
    headers = hand_sign(body, timestamp=1735689600, nonce="a" * 16)
    assert _sign(SECRET, "POST", NOTIFY_PATH, "1735689600", "a" * 16, body) == headers["X-Signature"]


# --- requests we send ---------------------------------------------------------------------------
def test_requests_are_signed_over_the_exact_path_query_and_body_sent(notification_sink) -> None:
    notification_sink.respond_with(200, b"{}")  # unsigned: the adapter must refuse to trust it
    adapter = PointsAdapter(
        AccountConfig(
            channel="points",
            account_id=1,
            base_url=notification_sink.url("/points"),
            ids={"app_id": "app_test", "key_id": "k2"},
            credentials={"shared_secret": SECRET},
        )
    )
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="P 1&x=ü")
    with pytest.raises(ChannelUnavailable):
        adapter.bind("BR-1", "user-ü", "u-1")
    query_req, bind_req = notification_sink.wait_for(2)

    for req, method in ((query_req, "GET"), (bind_req, "POST")):
        h = req.headers
        assert req.method == method
        assert h["X-App-Id"] == "app_test" and h["X-Key-Id"] == "k2"
        assert 16 <= len(h["X-Nonce"]) <= 32 and all(c in "0123456789abcdef" for c in h["X-Nonce"])
        assert abs(int(h["X-Timestamp"]) - time.time()) < 60
        text = f"{method}\n{req.path}\n{h['X-Timestamp']}\n{h['X-Nonce']}\n{hashlib.sha256(req.body).hexdigest()}\n"
        assert h["X-Signature"] == hmac.new(SECRET.encode(), text.encode(), hashlib.sha256).hexdigest()
    assert query_req.path.startswith("/points/v1/points/deductions?request_no=")
    assert "%26x%3D" in query_req.path  # the query is signed as encoded on the wire
    assert query_req.body == b""
    assert json.loads(bind_req.body) == {"bind_request_no": "BR-1", "user_ref": "user-ü", "our_user_id": "u-1"}
    assert query_req.headers["X-Nonce"] != bind_req.headers["X-Nonce"]


# --- callbacks and their verification -------------------------------------------------------------
def test_signed_callback_is_parsed_with_points_converted_to_minor_units() -> None:
    body = callback_body()
    note = make_adapter().parse_notification(hand_sign(body), body)
    assert note.kind == NotificationKind.PAYMENT
    assert note.dedupe_key == json.loads(body)["event_id"]
    assert note.event_type == "DEDUCTION.SUCCESS"
    assert (note.payment_no, note.channel_trade_no) == ("P20250101000001", "D001")
    assert note.trade is not None
    assert note.trade.status == TradeStatus.PAID
    assert note.trade.paid_amount == 990  # 99000 points at 100 points per fen
    assert note.trade.paid_at == datetime(2025, 1, 1, 2, 0, 1, tzinfo=UTC)


def test_one_byte_change_to_body_is_rejected() -> None:
    body = callback_body()
    headers = hand_sign(body)
    tampered = body.replace(b'"points":99000', b'"points":99001')
    assert tampered != body
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(headers, tampered)


def test_callback_signed_for_another_path_is_rejected() -> None:
    body = callback_body()
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(hand_sign(body, path="/callbacks/points/8?src=partner"), body)
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(hand_sign(body, method="PUT"), body)


def test_timestamp_changed_after_signing_is_rejected() -> None:
    body = callback_body()
    headers = hand_sign(body)
    headers["X-Timestamp"] = str(int(headers["X-Timestamp"]) - 1)
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(headers, body)


def test_nonce_changed_after_signing_is_rejected() -> None:
    body = callback_body()
    headers = hand_sign(body)
    headers["X-Nonce"] = secrets.token_hex(16)
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(headers, body)


@pytest.mark.parametrize("age", [301, -301, 100_000])
def test_timestamp_outside_the_window_is_rejected_even_when_correctly_signed(age: int) -> None:
    body = callback_body()
    headers = hand_sign(body, timestamp=int(time.time()) - age)
    with pytest.raises(SignatureInvalid) as exc:
        make_adapter().parse_notification(headers, body)
    assert exc.value.code == "TIMESTAMP_EXPIRED"


def test_timestamp_inside_the_window_is_accepted() -> None:
    body = callback_body()
    note = make_adapter().parse_notification(hand_sign(body, timestamp=int(time.time()) - 290), body)
    assert note.trade is not None and note.trade.status == TradeStatus.PAID


def test_replayed_nonce_is_rejected() -> None:
    body = callback_body()
    headers = hand_sign(body)
    adapter = make_adapter()
    assert adapter.parse_notification(headers, body).kind == NotificationKind.PAYMENT
    with pytest.raises(SignatureInvalid) as exc:
        make_adapter().parse_notification(dict(headers), body)  # another instance: the cache is shared
    assert exc.value.code == "NONCE_REPLAYED"


def test_forged_message_does_not_burn_the_nonce() -> None:
    body = callback_body()
    headers = hand_sign(body)
    forged = dict(headers, **{"X-Signature": "0" * 64})
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(forged, body)
    assert make_adapter().parse_notification(headers, body).kind == NotificationKind.PAYMENT


@pytest.mark.parametrize("nonce", ["7f3c9a1e2b4d", "A" * 16, "g" * 16, "a" * 33])
def test_malformed_nonce_is_rejected(nonce: str) -> None:
    body = callback_body()
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(hand_sign(body, nonce=nonce), body)


def test_upper_case_signature_is_rejected() -> None:
    body = callback_body()
    headers = hand_sign(body)
    headers["X-Signature"] = headers["X-Signature"].upper()
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(headers, body)


def test_missing_signature_header_is_rejected() -> None:
    body = callback_body()
    headers = hand_sign(body)
    del headers["X-Signature"]
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(headers, body)


def test_other_app_id_is_rejected() -> None:
    body = callback_body()
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(hand_sign(body, app_id="app_other"), body)


def test_message_signed_under_the_previous_key_is_accepted_during_rotation() -> None:
    body = callback_body()
    note = make_adapter().parse_notification(hand_sign(body, secret=OLD_SECRET, key_id="k1"), body)
    assert note.trade is not None and note.trade.status == TradeStatus.PAID


def test_previous_key_id_with_the_wrong_secret_is_rejected() -> None:
    body = callback_body()
    with pytest.raises(SignatureInvalid):
        make_adapter().parse_notification(hand_sign(body, secret=SECRET, key_id="k1"), body)


def test_unknown_key_id_is_rejected() -> None:
    body = callback_body()
    with pytest.raises(SignatureInvalid) as exc:
        make_adapter().parse_notification(hand_sign(body, key_id="k0"), body)
    assert exc.value.code == "KEY_NOT_FOUND"


def test_previous_key_is_refused_once_rotation_is_over() -> None:
    adapter = PointsAdapter(
        AccountConfig(
            channel="points",
            account_id=7,
            base_url="http://127.0.0.1:9/points",
            ids={"app_id": "app_test", "key_id": "k2"},
            credentials={"shared_secret": SECRET},
            options={"notify_url": f"https://paycore.example{NOTIFY_PATH}"},
        )
    )
    body = callback_body()
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification(hand_sign(body, secret=OLD_SECRET, key_id="k1"), body)


def test_django_meta_style_header_names_are_accepted() -> None:
    body = callback_body()
    meta = {"HTTP_" + k.upper().replace("-", "_"): v for k, v in hand_sign(body).items()}
    assert make_adapter().parse_notification(meta, body).kind == NotificationKind.PAYMENT


def test_refund_callback_is_parsed_to_a_refund_state() -> None:
    event = {
        "event_id": "EV-r1",
        "type": "REFUND.SUCCESS",
        "created_at": "2025-01-02T10:00:00+08:00",
        "refund": {
            "refund_id": "R9",
            "refund_request_no": "RF1",
            "deduction_id": "D001",
            "request_no": "P20250101000001",
            "points": 30000,
            "status": "SUCCESS",
            "fail_code": None,
            "created_at": "2025-01-02T09:59:00+08:00",
            "completed_at": "2025-01-02T10:00:00+08:00",
        },
    }
    body = json.dumps(event).encode()
    note = make_adapter().parse_notification(hand_sign(body), body)
    assert note.kind == NotificationKind.REFUND
    assert (note.payment_no, note.channel_trade_no) == ("P20250101000001", "D001")
    assert note.refund is not None
    assert (note.refund.refund_no, note.refund.channel_refund_no) == ("RF1", "R9")
    assert note.refund.status == RefundStatus.SUCCEEDED and note.refund.amount == 300
    assert note.refund.succeeded_at == datetime(2025, 1, 2, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def test_unknown_deduction_status_raises_instead_of_meaning_failed() -> None:
    body = callback_body(status="REVERSED")
    with pytest.raises(ChannelUnavailable):
        make_adapter().parse_notification(hand_sign(body), body)


def test_points_not_a_whole_number_of_minor_units_are_refused() -> None:
    body = callback_body(points=99050)
    with pytest.raises(ChannelUnavailable):
        make_adapter().parse_notification(hand_sign(body), body)


def test_callback_without_a_configured_notify_url_cannot_be_verified() -> None:
    adapter = PointsAdapter(
        AccountConfig(
            channel="points",
            account_id=1,
            base_url="http://127.0.0.1:9",
            ids={"app_id": "app_test", "key_id": "k2"},
            credentials={"shared_secret": SECRET},
        )
    )
    body = callback_body()
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification(hand_sign(body), body)


def test_ack_answers_in_the_partners_format() -> None:
    ok, fail = make_adapter().ack(True), make_adapter().ack(False, "bad signature")
    assert (ok.status, json.loads(ok.body)) == (200, {"code": "SUCCESS"})
    assert fail.status == 400 and json.loads(fail.body)["code"] == "FAIL"
    assert ok.content_type == "application/json"


# --- statement parsing ------------------------------------------------------------------------------
HEADER = "type,request_no,deduction_id,refund_request_no,refund_id,points,status,created_at,completed_at\n"


def test_statement_rows_become_bill_rows_in_minor_units() -> None:
    csv_text = HEADER + (
        "DEDUCTION,P1,D1,,,99000,SUCCESS,2025-01-01T10:00:00+08:00,2025-01-01T10:00:01+08:00\n"
        "DEDUCTION,P2,D2,,,500,FAILED,2025-01-01T11:00:00+08:00,2025-01-01T11:00:00+08:00\n"
        "REFUND,P1,D1,RF1,R1,30000,SUCCESS,2025-01-01T12:00:00+08:00,2025-01-01T12:00:05+08:00\n"
        "REFUND,P1,D1,RF2,R2,1000,PROCESSING,2025-01-01T23:59:00+08:00,\n"
    )
    rows = list(_statement_rows(csv_text.encode()))
    assert [(r.kind, r.payment_no, r.channel_trade_no, r.amount, r.refund_no, r.channel_refund_no) for r in rows] == [
        (BillRowKind.PAYMENT, "P1", "D1", 990, None, None),
        (BillRowKind.REFUND, "P1", "D1", 300, "RF1", "R1"),
    ]
    assert rows[0].currency == "CNY" and rows[0].status == "SUCCESS"
    assert rows[1].occurred_at == datetime(2025, 1, 1, 4, 0, 5, tzinfo=UTC)
    assert rows[1].raw["refund_request_no"] == "RF1"


def test_statement_with_unexpected_columns_is_unreadable() -> None:
    with pytest.raises(ChannelUnavailable):
        list(_statement_rows(b"type,request_no,points\nDEDUCTION,P1,100\n"))


def test_statement_with_unknown_status_is_unreadable() -> None:
    text = HEADER + "DEDUCTION,P1,D1,,,100,REVERSED,2025-01-01T10:00:00+08:00,\n"
    with pytest.raises(ChannelUnavailable):
        list(_statement_rows(text.encode()))


# --- errors stay inside the contract --------------------------------------------------------------
def _prepay_request(**change: object) -> PrepayRequest:
    fields: dict = {
        "payment_no": "P1",
        "amount": 990,
        "currency": "CNY",
        "description": "x",
        "method": "points",
        "notify_url": "https://pay.example.com/cb",
        "expires_at": datetime.now(UTC) + timedelta(hours=1),
        "payer_id": "B1",
    }
    return PrepayRequest(**{**fields, **change})


def test_malformed_prepay_input_is_refused_inside_the_contract() -> None:
    with pytest.raises(NotSupported):
        make_adapter().prepay(_prepay_request(method="app"))
    for change, code in (({"payer_id": None}, "PAYER_ID_REQUIRED"), ({"amount": 0}, "INVALID_AMOUNT")):
        with pytest.raises(ChannelRejected) as caught:
            make_adapter().prepay(_prepay_request(**change))
        assert caught.value.code == code


def test_a_query_naming_no_deduction_is_rejected() -> None:
    with pytest.raises(ChannelRejected) as caught:
        make_adapter().query()
    assert caught.value.code == "TRADE_REF_REQUIRED"


def test_a_bad_points_rate_is_a_configuration_error() -> None:
    with pytest.raises(ChannelError) as caught:
        make_adapter(points_per_minor_unit=0).prepay(_prepay_request())
    assert caught.value.code == "CONFIG"


# --- currencies ---------------------------------------------------------------------------------
def test_points_price_only_the_accounts_currency() -> None:
    assert PointsAdapter.currencies == frozenset({"CNY"})
    assert PointsAdapter.priced_currencies(make_adapter().config) == frozenset({"CNY"})
    assert PointsAdapter.priced_currencies(make_adapter(currency="USD").config) == frozenset({"USD"})
    with pytest.raises(ChannelRejected) as caught:  # never deducted and reported as CNY
        make_adapter().prepay(_prepay_request(currency="USD"))
    assert caught.value.code == "CURRENCY_NOT_SUPPORTED"
    with pytest.raises(ChannelRejected):
        make_adapter(currency="USD").prepay(_prepay_request(currency="CNY"))


def test_an_unknown_account_currency_is_a_configuration_error() -> None:
    with pytest.raises(ChannelError) as caught:
        PointsAdapter.priced_currencies(make_adapter(currency="POINTS").config)
    assert caught.value.code == "CONFIG"
