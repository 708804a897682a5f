"""Alipay adapter against the wire rules of the Alipay OpenAPI (RSA2 gateway), without a gateway.

Signing strings are written out by hand from the spec (or copied from its worked examples) and
signed / verified with ``cryptography`` directly, so the adapter is checked against the spec
rather than against itself. ``responses`` stubs stand in for the gateway only to feed the
response parser exact bytes.
"""

from __future__ import annotations

import base64
import dataclasses
import io
import json
import zipfile
from datetime import UTC, date, datetime, timedelta, timezone
from urllib.parse import parse_qsl, urlencode, urlsplit

import pytest
import requests
import responses
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.alipay import AlipayAdapter
from channels.alipay._bill import parse_bill_zip
from channels.base import (
    AccountConfig,
    BillRowKind,
    ChannelRejected,
    ChannelUnavailable,
    ChargeRequest,
    NotificationKind,
    NotSupported,
    PrepayRequest,
    RefundRequest,
    RefundStatus,
    SignatureInvalid,
    TradeStatus,
)

BEIJING = timezone(timedelta(hours=8))
GATEWAY = "https://openapi.example.test/gateway.do"
APP_ID, SELLER_ID = "2021000000000001", "2088000000000002"

# The request-signing worked example of the Alipay docs, copied verbatim.
DOC_REQUEST_STRING = (
    'app_id=2021000000000001&biz_content={"out_trade_no":"T20250101001","total_amount":"9.90",'
    '"subject":"Coffee","product_code":"QUICK_MSECURITY_PAY"}&charset=utf-8&format=JSON'
    "&method=alipay.trade.app.pay&notify_url=https://pay.example.com/cb/alipay&sign_type=RSA2"
    "&timestamp=2025-01-01 12:00:00&version=1.0"
)
# The documented query response node, as it appears in the body.
DOC_QUERY_NODE = (
    '{"code":"10000","msg":"Success","trade_no":"2025010122001400001234567890",'
    '"out_trade_no":"T20250101001","trade_status":"TRADE_SUCCESS","total_amount":"9.90"}'
)
# The documented notification string to verify, and the fields it is made of.
DOC_NOTIFY_STRING = (
    "app_id=2021000000000001&buyer_id=2088000000000001&charset=utf-8&gmt_create=2025-01-01 12:00:03"
    "&gmt_payment=2025-01-01 12:00:05&notify_id=2025010100222120005000001234567890"
    "&notify_time=2025-01-01 12:00:06&notify_type=trade_status_sync&out_trade_no=T20250101001"
    "&receipt_amount=9.90&seller_id=2088000000000002&subject=Coffee&total_amount=9.90"
    "&trade_no=2025010122001400001234567890&trade_status=TRADE_SUCCESS&version=1.0"
)
DOC_NOTIFY_FIELDS = dict(pair.split("=", 1) for pair in DOC_NOTIFY_STRING.split("&"))


# --- keys and helpers ----------------------------------------------------------------------
@pytest.fixture(scope="module")
def app_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def alipay_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def rsa2(key: rsa.RSAPrivateKey, text: str | bytes) -> str:
    data = text.encode("utf-8") if isinstance(text, str) else text
    return base64.b64encode(key.sign(data, padding.PKCS1v15(), hashes.SHA256())).decode()


def rsa2_verifies(key: rsa.RSAPublicKey, text: str, sign: str) -> bool:
    try:
        key.verify(base64.b64decode(sign), text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


@pytest.fixture
def adapter(app_key: rsa.RSAPrivateKey, alipay_key: rsa.RSAPrivateKey) -> AlipayAdapter:
    config = AccountConfig(
        channel="alipay",
        account_id=1,
        base_url="https://openapi.example.test",
        ids={"app_id": APP_ID, "seller_id": SELLER_ID},
        credentials={"app_private_key": pem_private(app_key)},
        options={"alipay_public_key": pem_public(alipay_key.public_key())},
    )
    adapter = AlipayAdapter(config)
    adapter._now = lambda: datetime(2025, 1, 1, 12, 0, 0, tzinfo=BEIJING)  # type: ignore[method-assign]
    return adapter


def prepay_request(method: str = "app", amount: int = 990, **extra: object) -> PrepayRequest:
    fields: dict = {
        "payment_no": "T20250101001",
        "amount": amount,
        "currency": "CNY",
        "description": "Coffee",
        "method": method,
        "notify_url": "https://pay.example.com/cb/alipay",
        "expires_at": datetime(2025, 1, 1, 4, 30, 0, tzinfo=UTC),
    }
    fields.update(extra)
    return PrepayRequest(**fields)


def signing_string(params: dict[str, str]) -> str:
    """The request string to sign by hand: drop sign and empty values, keep sign_type, sort, join raw."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")


# --- request signing --------------------------------------------------------------------------
def test_request_signature_covers_the_documented_signing_string(adapter, app_key):
    biz = {
        "out_trade_no": "T20250101001",
        "total_amount": "9.90",
        "subject": "Coffee",
        "product_code": "QUICK_MSECURITY_PAY",
    }
    params = adapter._signed_params("alipay.trade.app.pay", biz, notify_url="https://pay.example.com/cb/alipay")
    assert params["biz_content"] == json.dumps(biz, separators=(",", ":"))
    assert rsa2_verifies(app_key.public_key(), DOC_REQUEST_STRING, params["sign"])


def test_app_order_string_is_signed_over_the_transmitted_values(adapter, app_key):
    result = adapter.prepay(prepay_request())
    order_string = result.client_params["order_string"]
    pairs = parse_qsl(order_string, keep_blank_values=True)
    assert pairs[-1][0] == "sign"
    params = dict(pairs)
    assert params["timestamp"] == "2025-01-01 12:00:00"  # UTC+8, with its literal space
    assert "+" in order_string.split("timestamp=")[1].split("&")[0]  # quote_plus on the wire
    biz = json.loads(params["biz_content"])
    assert biz == {
        "out_trade_no": "T20250101001",
        "total_amount": "9.90",
        "subject": "Coffee",
        "product_code": "QUICK_MSECURITY_PAY",
        "time_expire": "2025-01-01 12:30:00",
    }
    assert "return_url" not in params  # empty values are not sent
    assert rsa2_verifies(app_key.public_key(), signing_string(params), params["sign"])


@pytest.mark.parametrize(
    ("method", "api", "product_code"),
    [
        ("page", "alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
        ("h5", "alipay.trade.wap.pay", "QUICK_WAP_WAY"),
    ],
)
def test_page_and_wap_pay_give_a_signed_gateway_url(adapter, app_key, method, api, product_code):
    result = adapter.prepay(prepay_request(method, return_url="https://shop.example.com/done?x=1"))
    url = urlsplit(result.client_params["url"])
    assert f"{url.scheme}://{url.netloc}{url.path}" == GATEWAY
    params = dict(parse_qsl(url.query, keep_blank_values=True))
    assert params["method"] == api
    assert params["return_url"] == "https://shop.example.com/done?x=1"
    assert json.loads(params["biz_content"])["product_code"] == product_code
    assert rsa2_verifies(app_key.public_key(), signing_string(params), params["sign"])


@pytest.mark.parametrize(
    ("fen", "yuan"),
    [(1, "0.01"), (10, "0.10"), (100, "1.00"), (990, "9.90"), (123456789, "1234567.89"), (10000000000, "100000000.00")],
)
def test_amounts_are_sent_as_exact_yuan(adapter, fen, yuan):
    params = dict(parse_qsl(adapter.prepay(prepay_request(amount=fen)).client_params["order_string"]))
    assert json.loads(params["biz_content"])["total_amount"] == yuan


def test_prepay_refuses_other_currencies_and_payment_code(adapter):
    with pytest.raises(NotSupported):
        adapter.prepay(prepay_request(currency="USD"))
    with pytest.raises(NotSupported):
        adapter.prepay(prepay_request("paycode"))


# --- response verification ------------------------------------------------------------------
def query_body(alipay_key: rsa.RSAPrivateKey, node: str = DOC_QUERY_NODE, *, sep: str = "") -> bytes:
    sign = rsa2(alipay_key, node)
    return f'{{"alipay_trade_query_response"{sep}:{sep}{node}{sep},"sign":"{sign}"}}'.encode()


def sent_params(n: int) -> dict[str, str]:
    """The form parameters of the n-th request the stubbed gateway received."""
    body = responses.calls[n].request.body
    return dict(parse_qsl(body.decode() if isinstance(body, bytes) else body, keep_blank_values=True))


def stub(body: bytes | Exception, status: int = 200) -> None:
    if isinstance(body, Exception):
        responses.add(responses.POST, GATEWAY, body=body)
    else:
        responses.add(responses.POST, GATEWAY, body=body, status=status, content_type="text/html;charset=utf-8")


@responses.activate
def test_documented_query_response_verifies_over_the_raw_node(adapter, alipay_key):
    stub(query_body(alipay_key))
    state = adapter.query(payment_no="T20250101001")
    assert state.status is TradeStatus.PAID
    assert state.paid_amount == 990
    assert state.channel_trade_no == "2025010122001400001234567890"
    sent = sent_params(0)
    assert sent["method"] == "alipay.trade.query"
    assert json.loads(sent["biz_content"]) == {"out_trade_no": "T20250101001"}


@responses.activate
def test_escapes_and_whitespace_are_verified_as_sent(adapter, alipay_key):
    node = (
        '{"code":"10000","msg":"Success","trade_no":"2025010122001400001234567890",'
        '"out_trade_no":"T20250101001","trade_status":"WAIT_BUYER_PAY","total_amount":"9.90",'
        '"subject":"a\\/b \\u5496\\u5561 {\\"x\\"}"}'
    )
    stub(query_body(alipay_key, node, sep=" \n"))
    state = adapter.query(payment_no="T20250101001")
    assert state.status is TradeStatus.NOT_PAID
    assert state.raw["subject"] == 'a/b 咖啡 {"x"}'


@responses.activate
def test_sign_may_come_before_the_node(adapter, alipay_key):
    stub(f'{{"sign":"{rsa2(alipay_key, DOC_QUERY_NODE)}","alipay_trade_query_response":{DOC_QUERY_NODE}}}'.encode())
    assert adapter.query(payment_no="T20250101001").status is TradeStatus.PAID


@responses.activate
def test_one_byte_change_to_response_body_is_rejected(adapter, alipay_key):
    body = query_body(alipay_key).replace(b'"total_amount":"9.90"', b'"total_amount":"9.91"')
    stub(body)
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@responses.activate
def test_one_byte_change_to_response_sign_is_rejected(adapter, alipay_key):
    body = query_body(alipay_key)
    sign = json.loads(body)["sign"]
    flipped = sign[:10] + ("A" if sign[10] != "A" else "B") + sign[11:]
    stub(body.replace(sign.encode(), flipped.encode()))
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@responses.activate
def test_success_response_without_sign_is_unavailable(adapter):
    stub(f'{{"alipay_trade_query_response":{DOC_QUERY_NODE}}}'.encode())
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@responses.activate
def test_response_with_a_duplicated_node_is_unavailable(adapter, alipay_key):
    sign = rsa2(alipay_key, DOC_QUERY_NODE)
    forged = DOC_QUERY_NODE.replace("9.90", "0.01")
    stub(
        f'{{"alipay_trade_query_response":{DOC_QUERY_NODE},"alipay_trade_query_response":{forged},'
        f'"sign":"{sign}"}}'.encode()
    )
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@responses.activate
def test_unsigned_gateway_error_is_a_rejection_with_its_sub_code(adapter):
    stub(
        b'{"error_response":{"code":"40002","msg":"Invalid Arguments","sub_code":"isv.invalid-signature",'
        b'"sub_msg":"\\u9a8c\\u7b7e\\u51fa\\u9519"}}'
    )
    with pytest.raises(ChannelRejected) as exc:
        adapter.query(payment_no="T20250101001")
    assert exc.value.code == "isv.invalid-signature"


@responses.activate
def test_trade_not_exist_is_not_found_rather_than_an_error(adapter, alipay_key):
    node = '{"code":"40004","msg":"Business Failed","sub_code":"ACQ.TRADE_NOT_EXIST","sub_msg":"交易不存在"}'
    stub(query_body(alipay_key, node))
    assert adapter.query(payment_no="T20250101001").status is TradeStatus.NOT_FOUND


@pytest.mark.parametrize(
    ("extra", "expected"),
    [
        (',"send_pay_date":"2025-01-01 12:00:05","receipt_amount":"9.90"', TradeStatus.PAID),  # refunded
        (',"receipt_amount":"0.00"', TradeStatus.CLOSED),  # never paid
    ],
)
@responses.activate
def test_closed_trade_is_paid_only_when_the_payload_shows_payment(adapter, alipay_key, extra, expected):
    node = DOC_QUERY_NODE.replace("TRADE_SUCCESS", "TRADE_CLOSED")[:-1] + extra + "}"
    stub(query_body(alipay_key, node))
    assert adapter.query(payment_no="T20250101001").status is expected


@responses.activate
def test_unknown_trade_status_raises_instead_of_guessing(adapter, alipay_key):
    stub(query_body(alipay_key, DOC_QUERY_NODE.replace("TRADE_SUCCESS", "TRADE_PENDING")))
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@pytest.mark.parametrize(
    "node",
    [
        '{"code":"20000","msg":"Service Currently Unavailable","sub_code":"isp.unknow-error"}',
        '{"code":"40004","msg":"Business Failed","sub_code":"ACQ.SYSTEM_ERROR"}',
        '{"code":"99999","msg":"?"}',
    ],
)
@responses.activate
def test_unknown_outcomes_are_unavailable(adapter, alipay_key, node):
    stub(query_body(alipay_key, node))
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@responses.activate
def test_http_errors_and_timeouts_are_unavailable(adapter):
    stub(b"oops", status=502)
    stub(requests.ReadTimeout("slow"))
    for _ in range(2):
        with pytest.raises(ChannelUnavailable):
            adapter.query(payment_no="T20250101001")


@responses.activate
def test_refund_always_sends_its_own_request_number(adapter, alipay_key):
    node = (
        '{"code":"10000","msg":"Success","trade_no":"2025010122001400001234567890",'
        '"out_trade_no":"T20250101001","fund_change":"Y","refund_fee":"1.00"}'
    )
    responses.add(
        responses.POST, GATEWAY, body=f'{{"alipay_trade_refund_response":{node},"sign":"{rsa2(alipay_key, node)}"}}'
    )
    state = adapter.refund(
        RefundRequest(
            refund_no="R1",
            payment_no="T20250101001",
            channel_trade_no=None,
            amount=100,
            total_amount=990,
            currency="CNY",
            reason="return",
        )
    )
    assert state.status is RefundStatus.SUCCEEDED
    assert state.amount == 100
    biz = json.loads(sent_params(0)["biz_content"])
    assert biz == {
        "out_trade_no": "T20250101001",
        "refund_amount": "1.00",
        "out_request_no": "R1",
        "refund_reason": "return",
    }
    with pytest.raises(ChannelRejected) as refused:
        adapter.refund(
            RefundRequest(
                refund_no="T20250101001",
                payment_no="T20250101001",
                channel_trade_no=None,
                amount=100,
                total_amount=990,
                currency="CNY",
                reason="",
            )
        )
    assert refused.value.code == "INVALID_REFUND_NO" and len(responses.calls) == 1  # refused before sending


# --- notifications --------------------------------------------------------------------------
def notification(
    alipay_key: rsa.RSAPrivateKey, fields: dict[str, str], *, signed_text: str | None = None, charset: str = "utf-8"
) -> bytes:
    """A form body signed over ``signed_text`` (default: built by hand, empty values kept)."""
    text = signed_text if signed_text is not None else "&".join(f"{k}={fields[k]}" for k in sorted(fields))
    sign = rsa2(alipay_key, text.encode(charset))
    return urlencode({**fields, "sign": sign, "sign_type": "RSA2"}, encoding=charset).encode("ascii")


def test_documented_notification_verifies(adapter, alipay_key):
    body = notification(alipay_key, DOC_NOTIFY_FIELDS, signed_text=DOC_NOTIFY_STRING)
    note = adapter.parse_notification({"Content-Type": "application/x-www-form-urlencoded"}, body)
    assert note.kind is NotificationKind.PAYMENT
    assert note.dedupe_key == "2025010100222120005000001234567890:TRADE_SUCCESS"
    assert note.payment_no == "T20250101001"
    assert note.trade is not None
    assert note.trade.status is TradeStatus.PAID
    assert note.trade.paid_amount == 990
    assert note.trade.paid_at == datetime(2025, 1, 1, 4, 0, 5, tzinfo=UTC)


def test_empty_valued_notification_field_stays_in_the_signed_string(adapter, alipay_key):
    fields = {**DOC_NOTIFY_FIELDS, "body": ""}
    text = DOC_NOTIFY_STRING.replace("&buyer_id=", "&body=&buyer_id=")
    assert adapter.parse_notification({}, notification(alipay_key, fields, signed_text=text)).trade is not None
    dropped = notification(alipay_key, fields, signed_text=DOC_NOTIFY_STRING)  # signer that dropped it
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification({}, dropped)


def test_one_byte_change_to_notification_is_rejected(adapter, alipay_key):
    body = notification(alipay_key, DOC_NOTIFY_FIELDS)
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification({}, body.replace(b"total_amount=9.90", b"total_amount=9.91"))


def test_one_byte_change_to_notification_sign_is_rejected(adapter, alipay_key):
    fields = dict(parse_qsl(notification(alipay_key, DOC_NOTIFY_FIELDS).decode()))
    fields["sign"] = fields["sign"][:-6] + ("A" if fields["sign"][-6] != "A" else "B") + fields["sign"][-5:]
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification({}, urlencode(fields).encode())


def test_notification_without_sign_is_rejected(adapter):
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification({}, urlencode(DOC_NOTIFY_FIELDS).encode())


@pytest.mark.parametrize(("field", "value"), [("app_id", "2021000000009999"), ("seller_id", "2088000000009999")])
def test_genuine_notification_for_another_app_or_seller_is_rejected(adapter, alipay_key, field, value):
    body = notification(alipay_key, {**DOC_NOTIFY_FIELDS, field: value})
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification({}, body)


def test_gbk_notification_is_verified_in_its_declared_charset(adapter, alipay_key):
    fields = {**DOC_NOTIFY_FIELDS, "charset": "gbk", "subject": "咖啡"}
    note = adapter.parse_notification({}, notification(alipay_key, fields, charset="gbk"))
    assert note.raw["subject"] == "咖啡"


def test_partial_refund_notification_is_a_refund(adapter, alipay_key):
    fields = {
        **DOC_NOTIFY_FIELDS,
        "out_biz_no": "R1",
        "refund_fee": "1.00",
        "gmt_refund": "2025-01-01 13:00:00.123",
        "notify_id": "n-2",
    }
    note = adapter.parse_notification({}, notification(alipay_key, fields))
    assert note.kind is NotificationKind.REFUND
    assert note.refund is not None
    assert note.refund.refund_no == "R1"
    assert note.refund.succeeded_at == datetime(2025, 1, 1, 5, 0, 0, 123000, tzinfo=UTC)
    assert note.trade is not None
    assert note.trade.status is TradeStatus.PAID


def test_full_refund_closes_a_trade_that_still_counts_as_paid(adapter, alipay_key):
    fields = {
        **DOC_NOTIFY_FIELDS,
        "trade_status": "TRADE_CLOSED",
        "out_biz_no": "R2",
        "refund_fee": "9.90",
        "gmt_close": "2025-01-01 14:00:00",
        "gmt_refund": "2025-01-01 14:00:00.000",
    }
    note = adapter.parse_notification({}, notification(alipay_key, fields))
    assert note.kind is NotificationKind.REFUND
    assert note.dedupe_key.endswith(":TRADE_CLOSED")
    assert note.trade is not None
    assert note.trade.status is TradeStatus.PAID


def test_closed_unpaid_notification_is_closed(adapter, alipay_key):
    fields = {k: v for k, v in DOC_NOTIFY_FIELDS.items() if k not in ("gmt_payment", "receipt_amount")}
    fields["trade_status"] = "TRADE_CLOSED"
    note = adapter.parse_notification({}, notification(alipay_key, fields))
    assert note.kind is NotificationKind.PAYMENT
    assert note.trade is not None
    assert note.trade.status is TradeStatus.CLOSED


def test_ack_is_exactly_success_or_fail(adapter):
    assert (adapter.ack(True).status, adapter.ack(True).body) == (200, b"success")
    assert (adapter.ack(False).status, adapter.ack(False).body) == (200, b"fail")


# --- bills ------------------------------------------------------------------------------------
HEADER = (
    "支付宝交易号,商户订单号,业务类型,商品名称,创建时间,完成时间,门店编号,门店名称,操作员,终端号,对方账户,"
    "订单金额（元）,商家实收（元）,支付宝红包（元）,集分宝（元）,支付宝优惠（元）,商家优惠（元）,券核销金额（元）,"
    "券名称,商家红包消费金额（元）,卡消费金额（元）,退款批次号/请求号,服务费（元）,分润（元）,备注"
)
DETAIL = (
    "\n".join(
        [
            "#支付宝业务明细查询",
            "#账号：[20880000000000020156]",
            "#起始日期：[2025年01月01日 00:00:00]   终止日期：[2025年01月02日 00:00:00]",
            "#-----------------------------------------业务明细列表----------------------------------------",
            HEADER,
            "2025010122001400001234567890\t,T20250101001\t,交易,Coffee,2025-01-01 12:00:03,2025-01-01 12:00:05,,,,,"
            "xx***@example.com,9.90,9.90,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,,-0.06,0.00,",
            "2025010122001400001234567890\t,T20250101001\t,退款,Coffee,2025-01-01 15:00:00,2025-01-01 15:00:01,,,,,"
            "xx***@example.com,-2.50,-2.50,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,R20250101001\t ,0.02,0.00,",
            "2025010122001400009999999999\t,T20250101002\t,退款,Tea,2025-01-01 16:00:00,2025-01-01 16:00:00,,,,,"
            "yy***@example.com,-5.00,-5.00,0.00,0.00,0.00,0.00,0.00,,0.00,0.00,T20250101002\t,0.03,0.00,",
            "#-----------------------------------------业务明细列表结束------------------------------------",
            "#交易合计：1笔，商家实收共9.90元，商家优惠共0.00元",
            "#退款合计：2笔，商家实收退款共-7.50元，商家优惠退款共0.00元",
            "#导出时间：[2025年01月02日 09:31:12]",
        ]
    )
    + "\n"
)
SUMMARY = "#支付宝业务汇总查询\n#账号：[20880000000000020156]\n门店编号,门店名称,交易订单总笔数\n合计,,1\n"


def bill_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr("20880000000000020156_20250101_业务明细(汇总).csv", SUMMARY.encode("gbk"))
        archive.writestr("20880000000000020156_20250101_业务明细.csv", DETAIL.encode("gbk"))
    return buffer.getvalue()


def test_bill_detail_is_found_by_its_first_line_and_parsed():
    payment, refund, revocation = parse_bill_zip(bill_zip())
    assert payment.kind is BillRowKind.PAYMENT
    assert (payment.payment_no, payment.channel_trade_no) == ("T20250101001", "2025010122001400001234567890")
    assert (payment.amount, payment.fee, payment.currency) == (990, 6, "CNY")
    assert payment.occurred_at == datetime(2025, 1, 1, 4, 0, 5, tzinfo=UTC)
    assert refund.kind is BillRowKind.REFUND
    assert (refund.amount, refund.refund_no, refund.fee) == (250, "R20250101001", -2)
    assert revocation.kind is BillRowKind.REVOKED  # batch no = order no: a revocation's refund
    assert revocation.amount == 500


@responses.activate
def test_fetch_bill_downloads_the_zip_from_the_returned_url(adapter, alipay_key):
    node = (
        '{"code":"10000","msg":"Success","bill_download_url":'
        '"https:\\/\\/dl.example.test\\/bill?token=abc&downloadFileName=x.csv.zip"}'
    )
    responses.add(
        responses.POST,
        GATEWAY,
        body=f'{{"alipay_data_dataservice_bill_downloadurl_query_response":{node},"sign":"{rsa2(alipay_key, node)}"}}',
    )
    responses.add(responses.GET, "https://dl.example.test/bill", body=bill_zip())
    rows = list(adapter.fetch_bill(date(2025, 1, 1)))
    assert [r.kind for r in rows] == [BillRowKind.PAYMENT, BillRowKind.REFUND, BillRowKind.REVOKED]
    biz = json.loads(sent_params(0)["biz_content"])
    assert biz == {"bill_type": "trade", "bill_date": "2025-01-01"}


@responses.activate
def test_missing_bill_is_empty(adapter, alipay_key):
    node = '{"code":"40004","msg":"Business Failed","sub_code":"isp.bill_not_exist","sub_msg":"账单不存在"}'
    responses.add(
        responses.POST,
        GATEWAY,
        body=f'{{"alipay_data_dataservice_bill_downloadurl_query_response":{node},"sign":"{rsa2(alipay_key, node)}"}}',
    )
    assert list(adapter.fetch_bill(date(2025, 1, 1))) == []


def test_expired_bill_link_answer_is_unavailable():
    with pytest.raises(ChannelUnavailable):
        parse_bill_zip("下载超时".encode())


# --- per-process key cache ------------------------------------------------------------------------
def test_keys_are_parsed_once_per_process_and_again_when_they_change(adapter, alipay_key):
    again = AlipayAdapter(adapter.config)  # adapters are built per call
    assert again._private_key is adapter._private_key
    assert again._alipay_public_key is adapter._alipay_public_key
    new_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    rotated = AlipayAdapter(dataclasses.replace(adapter.config, credentials={"app_private_key": pem_private(new_key)}))
    assert rotated._private_key.private_numbers() == new_key.private_numbers()
    assert rotated._alipay_public_key is adapter._alipay_public_key  # unchanged option, same object


# --- errors stay inside the contract ------------------------------------------------------------
def test_refund_no_problems_are_reported_before_any_refund_is_written(adapter):
    assert adapter.refund_no_problem(refund_no="R1", payment_no="T1") is None
    assert "differ" in adapter.refund_no_problem(refund_no="T1", payment_no="T1")
    assert "64" in adapter.refund_no_problem(refund_no="R" * 65, payment_no="T1")
    assert adapter.refund_no_problem(refund_no="", payment_no="T1") is not None


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"amount": 0}, "INVALID_AMOUNT"),
        ({"amount": "990"}, "INVALID_AMOUNT"),
        ({"amount": 100_000_000_01}, "INVALID_AMOUNT"),
        ({"expires_at": datetime(2025, 1, 1, 12, 0)}, "INVALID_TIME"),
    ],
)
def test_malformed_prepay_input_is_rejected_with_a_stable_code(adapter, change, code):
    with pytest.raises(ChannelRejected) as caught:
        adapter.prepay(prepay_request(**change))
    assert caught.value.code == code


def test_a_query_naming_no_trade_is_rejected(adapter):
    with pytest.raises(ChannelRejected) as caught:
        adapter.query()
    assert caught.value.code == "TRADE_REF_REQUIRED"


def test_a_code_that_is_not_an_alipay_payment_code_is_refused_without_a_call(adapter):
    with pytest.raises(ChannelRejected) as caught:
        adapter.charge(
            ChargeRequest(payment_no="T1", amount=100, currency="CNY", description="x", auth_code="134567890123456789")
        )
    assert caught.value.code == "ACQ.PAYMENT_AUTH_CODE_INVALID"


@responses.activate
@pytest.mark.parametrize(
    "body",
    [
        b'{"alipay_trade_query_response":{"code":"10000"},"sign":nonsense}',
        b'{"alipay_trade_query_response":[1,2],"sign":"abc"}',
        b'{"alipay_trade_query_response":{"code":"10000","trade_status":["TRADE_SUCCESS"]},"sign":"abc"}',
        b"\xff\xfe not utf-8",
    ],
)
def test_malformed_replies_are_unavailable_never_a_stray_error(adapter, body):
    stub(body)
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@responses.activate
def test_a_signed_reply_of_an_unexpected_shape_is_unavailable(adapter, alipay_key):
    node = '{"code":"10000","trade_status":"TRADE_SUCCESS","total_amount":{"value":"9.90"}}'
    stub(query_body(alipay_key, node))
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T20250101001")


@responses.activate
def test_a_paid_trade_without_its_amount_is_unavailable(adapter, alipay_key):
    stub(query_body(alipay_key, '{"code":"10000","out_trade_no":"T20250101001","trade_status":"TRADE_SUCCESS"}'))
    with pytest.raises(ChannelUnavailable, match="total_amount"):
        adapter.query(payment_no="T20250101001")


# --- payment code: every answer classified ----------------------------------------------------------
def signed_answer(alipay_key: rsa.RSAPrivateKey, api: str, node: dict) -> bytes:
    text = json.dumps(node, ensure_ascii=False, separators=(",", ":"))
    return f'{{"{api.replace(".", "_")}_response":{text},"sign":"{rsa2(alipay_key, text)}"}}'.encode()


def bar_code(adapter):
    return adapter.charge(
        ChargeRequest(payment_no="T1", amount=500, currency="CNY", description="x", auth_code="284567890123456789")
    )


PAID_NODE = {"code": "10000", "msg": "Success", "trade_no": "2025T1", "out_trade_no": "T1", "total_amount": "5.00"}


@responses.activate
def test_bar_code_paid_and_waiting_answers(adapter, alipay_key):
    stub(signed_answer(alipay_key, "alipay.trade.pay", PAID_NODE))
    state = bar_code(adapter)
    assert (state.status, state.paid_amount, state.currency) == (TradeStatus.PAID, 500, "CNY")
    waiting = {"code": "10003", "msg": "order success pay inprocess", "trade_no": "2025T1", "out_trade_no": "T1"}
    stub(signed_answer(alipay_key, "alipay.trade.pay", waiting))
    assert bar_code(adapter).status is TradeStatus.USER_PAYING


@responses.activate
@pytest.mark.parametrize(
    "sub_code",
    [
        "ACQ.PAYMENT_AUTH_CODE_INVALID",
        "ACQ.BUYER_BALANCE_NOT_ENOUGH",
        "ACQ.BUYER_BANKCARD_BALANCE_NOT_ENOUGH",
        "ACQ.TRADE_HAS_CLOSE",
        "ACQ.BUYER_PAYMENT_AMOUNT_DAY_LIMIT_ERROR",
    ],
)
def test_bar_code_definite_failures_are_rejected_with_the_sub_code(adapter, alipay_key, sub_code):
    stub(
        signed_answer(alipay_key, "alipay.trade.pay", {"code": "40004", "msg": "Business Failed", "sub_code": sub_code})
    )
    with pytest.raises(ChannelRejected) as caught:
        bar_code(adapter)
    assert caught.value.code == sub_code


@responses.activate
@pytest.mark.parametrize(
    "node",
    [
        {"code": "20000", "msg": "Service Currently Unavailable", "sub_code": "isp.unknow-error"},
        {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.SYSTEM_ERROR"},
        {"code": "99999", "msg": "?"},
        {**PAID_NODE, "total_amount": ""},
    ],
    ids=["20000", "ACQ.SYSTEM_ERROR", "unknown code", "paid without amount"],
)
def test_bar_code_unknown_outcomes_are_unavailable(adapter, alipay_key, node):
    stub(signed_answer(alipay_key, "alipay.trade.pay", node))
    with pytest.raises(ChannelUnavailable):
        bar_code(adapter)


@responses.activate
@pytest.mark.parametrize("failure", [b"oops", requests.ReadTimeout("slow")])
def test_bar_code_transport_failures_are_unavailable(adapter, failure):
    stub(failure, status=502 if isinstance(failure, bytes) else 200)
    with pytest.raises(ChannelUnavailable):
        bar_code(adapter)


@responses.activate
def test_bar_code_already_paid_is_read_back_with_a_query(adapter, alipay_key):
    stub(signed_answer(alipay_key, "alipay.trade.pay", {"code": "40004", "sub_code": "ACQ.TRADE_HAS_SUCCESS"}))
    stub(signed_answer(alipay_key, "alipay.trade.query", {**PAID_NODE, "trade_status": "TRADE_SUCCESS"}))
    assert bar_code(adapter).status is TradeStatus.PAID
    assert sent_params(1)["method"] == "alipay.trade.query"


@responses.activate
@pytest.mark.parametrize(
    ("trade", "expected"),
    [
        ({"trade_status": "TRADE_SUCCESS"}, TradeStatus.PAID),
        ({"trade_status": "TRADE_FINISHED"}, TradeStatus.PAID),
        ({"trade_status": "WAIT_BUYER_PAY"}, TradeStatus.NOT_PAID),
        ({"trade_status": "TRADE_CLOSED"}, TradeStatus.CLOSED),
        ({"trade_status": "TRADE_CLOSED", "send_pay_date": "2025-01-01 12:00:05"}, TradeStatus.CLOSED),
        ({"code": "40004", "sub_code": "ACQ.TRADE_NOT_EXIST"}, TradeStatus.NOT_FOUND),
    ],
)
def test_query_charge_maps_every_trade_status(adapter, alipay_key, trade, expected):
    stub(signed_answer(alipay_key, "alipay.trade.query", {**PAID_NODE, **trade}))
    state = adapter.query_charge(payment_no="T1")
    assert state.status is expected
    assert (state.paid_amount is not None) is (expected is TradeStatus.PAID)


@responses.activate
@pytest.mark.parametrize(
    ("node", "expected"),
    [
        ({"retry_flag": "N", "action": "close"}, (True, False, False)),
        ({"retry_flag": "N", "action": "refund"}, (True, False, True)),
        ({"retry_flag": "Y"}, (False, True, False)),
        ({"code": "20000", "sub_code": "ACQ.SYSTEM_ERROR", "retry_flag": "Y"}, (False, True, False)),
    ],
)
def test_cancel_answers_become_one_revoke_result_each(adapter, alipay_key, node, expected):
    stub(signed_answer(alipay_key, "alipay.trade.cancel", {"code": "10000", "out_trade_no": "T1", **node}))
    result = adapter.revoke(payment_no="T1")
    assert (result.done, result.retry, result.refunded) == expected
    assert len(responses.calls) == 1  # never loops


@responses.activate
def test_cancel_refusal_is_rejected_and_unknown_outcome_unavailable(adapter, alipay_key):
    refusal = {"code": "40004", "msg": "Business Failed", "sub_code": "ACQ.REASON_TRADE_BEEN_FREEZEN"}
    stub(signed_answer(alipay_key, "alipay.trade.cancel", refusal))
    with pytest.raises(ChannelRejected) as caught:
        adapter.revoke(payment_no="T1")
    assert caught.value.code == "ACQ.REASON_TRADE_BEEN_FREEZEN"
    stub(signed_answer(alipay_key, "alipay.trade.cancel", {"code": "20000", "sub_code": "ACQ.SYSTEM_ERROR"}))
    with pytest.raises(ChannelUnavailable):
        adapter.revoke(payment_no="T1")
