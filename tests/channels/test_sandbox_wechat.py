"""The WeChat Pay simulator, checked from the merchant side with hand-built signatures.

Every signing string here is assembled by hand from WeChat Pay's API v3 and v2 signing rules
and checked with ``cryptography`` directly: these tests do not use paycore's adapter.
"""

from __future__ import annotations

import base64
import csv
import gzip
import hashlib
import hmac
import io
import json
import os
import secrets
import tempfile
import time
from typing import Any
from urllib.parse import urlsplit

import pytest
import requests
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from channels.base import AccountConfig
from sandbox.client import SandboxClient
from sandbox.wechat import v2_sign

APP = "/v3/pay/transactions/app"


# --- merchant-side helpers built from the spec ---------------------------------------------
def _target(url: str) -> str:
    parts = urlsplit(url)
    return parts.path + (f"?{parts.query}" if parts.query else "")


def v3(
    acct: AccountConfig,
    method: str,
    path: str,
    body: Any = None,
    *,
    ts: int | None = None,
    tamper: bytes | None = None,
    serial_no: str | None = None,
    wechatpay_serial: str | None = None,
    url: str | None = None,
    auth: bool = True,
) -> requests.Response:
    """One v3 call signed as API v3 prescribes: METHOD\\nTARGET\\nTS\\nNONCE\\nBODY\\n with the merchant key."""
    url = url or acct.base_url + path
    raw = b"" if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
    stamp, nonce = str(ts if ts is not None else int(time.time())), secrets.token_hex(16).upper()
    message = f"{method}\n{_target(url)}\n{stamp}\n{nonce}\n{raw.decode()}\n".encode()
    key = serialization.load_pem_private_key(acct.credentials["merchant_private_key"].encode(), None)
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    headers = {"Accept": "application/json", "Content-Type": "application/json"}
    if auth:
        headers["Authorization"] = (
            f'WECHATPAY2-SHA256-RSA2048 mchid="{acct.ids["mchid"]}",nonce_str="{nonce}",signature="{signature}",'
            f'timestamp="{stamp}",serial_no="{serial_no or acct.ids["merchant_serial_no"]}"'
        )
    if wechatpay_serial:
        headers["Wechatpay-Serial"] = wechatpay_serial
    return requests.request(method, url, data=tamper if tamper is not None else raw, headers=headers, timeout=10)


def platform_key(acct: AccountConfig, serial: str):
    if serial.startswith("PUB_KEY_ID_"):
        assert serial == acct.options["wechatpay_public_key_id"]
        return serialization.load_pem_public_key(acct.options["wechatpay_public_key"].encode())
    pem = acct.options["platform_certificates"][serial]
    return x509.load_pem_x509_certificate(pem.encode()).public_key()


def verify(acct: AccountConfig, headers: Any, body: bytes) -> str:
    """As API v3 prescribes: verify ts\\nnonce\\nbody\\n with the key named by Wechatpay-Serial; returns the serial."""
    assert headers["Wechatpay-Signature-Type"] == "WECHATPAY2-SHA256-RSA2048"
    assert abs(int(headers["Wechatpay-Timestamp"]) - time.time()) < 300
    message = f"{headers['Wechatpay-Timestamp']}\n{headers['Wechatpay-Nonce']}\n".encode() + body + b"\n"
    serial = headers["Wechatpay-Serial"]
    platform_key(acct, serial).verify(
        base64.b64decode(headers["Wechatpay-Signature"]), message, padding.PKCS1v15(), hashes.SHA256()
    )
    return serial


def decrypt(acct: AccountConfig, resource: dict[str, str]) -> bytes:
    """API v3 resource decryption: AES-256-GCM, key = APIv3 key bytes, nonce/AAD as UTF-8, tag = last 16 bytes."""
    return AESGCM(acct.credentials["apiv3_key"].encode()).decrypt(
        resource["nonce"].encode(), base64.b64decode(resource["ciphertext"]), resource["associated_data"].encode()
    )


def order(
    acct: AccountConfig,
    out_trade_no: str,
    notify_url: str = "https://pay.example.com/cb/wechat",
    total: int = 990,
    **extra: Any,
) -> dict[str, Any]:
    return {
        "appid": acct.ids["appid"],
        "mchid": acct.ids["mchid"],
        "description": "Coffee",
        "out_trade_no": out_trade_no,
        "notify_url": notify_url,
        "amount": {"total": total, "currency": "CNY"},
        **extra,
    }


def new_no(prefix: str = "T") -> str:
    return prefix + secrets.token_hex(8).upper()


@pytest.fixture
def wx(sandbox_account) -> AccountConfig:
    return sandbox_account("wechat")


# --- accounts ------------------------------------------------------------------------------
def test_account_carries_merchant_key_platform_certificate_and_public_key(wx):
    assert len(wx.ids["mchid"]) == 10 and wx.ids["appid"].startswith("wx")
    key = serialization.load_pem_private_key(wx.credentials["merchant_private_key"].encode(), None)
    assert key.key_size == 2048
    assert len(wx.credentials["apiv3_key"]) == 32 and len(wx.credentials["api_v2_key"]) == 32
    [(serial, pem)] = wx.options["platform_certificates"].items()
    cert = x509.load_pem_x509_certificate(pem.encode())
    assert serial == f"{cert.serial_number:040X}" and serial == serial.upper()
    assert wx.options["wechatpay_public_key_id"].startswith("PUB_KEY_ID_")
    assert wx.options["wechatpay_public_key_id"][len("PUB_KEY_ID_") :].isdigit()
    assert "PRIVATE" not in wx.options["wechatpay_public_key"]


def test_certificate_mode_and_public_key_mode_expose_only_their_key(sandbox_account):
    cert_only = sandbox_account("wechat", mode="certificate")
    assert cert_only.options["platform_certificates"] and "wechatpay_public_key" not in cert_only.options
    key_only = sandbox_account("wechat", mode="public_key")
    assert "platform_certificates" not in key_only.options and key_only.options["wechatpay_public_key_id"]
    resp = v3(key_only, "POST", APP, order(key_only, new_no()))
    assert resp.status_code == 200
    assert verify(key_only, resp.headers, resp.content).startswith("PUB_KEY_ID_")


# --- request authentication ----------------------------------------------------------------
def test_valid_request_gets_a_prepay_id_signed_by_the_platform_certificate(wx):
    resp = v3(wx, "POST", APP, order(wx, new_no()))
    assert resp.status_code == 200, resp.text
    assert resp.json()["prepay_id"].startswith("wx")
    assert verify(wx, resp.headers, resp.content) in wx.options["platform_certificates"]


def test_response_is_signed_with_the_public_key_when_the_request_names_it(wx):
    pub_id = wx.options["wechatpay_public_key_id"]
    resp = v3(wx, "POST", APP, order(wx, new_no()), wechatpay_serial=pub_id)
    assert resp.status_code == 200
    assert verify(wx, resp.headers, resp.content) == pub_id


def test_one_byte_change_to_body_is_rejected_with_sign_error(wx):
    body = order(wx, new_no())
    raw = json.dumps(body, separators=(",", ":")).encode()
    resp = v3(wx, "POST", APP, body, tamper=raw.replace(b'"total":990', b'"total":991'))
    assert resp.status_code == 401
    assert resp.json()["code"] == "SIGN_ERROR"
    assert "Wechatpay-Signature" not in resp.headers


def test_stale_timestamp_is_rejected(wx):
    resp = v3(wx, "POST", APP, order(wx, new_no()), ts=int(time.time()) - 301)
    assert (resp.status_code, resp.json()["code"]) == (401, "SIGN_ERROR")
    resp = v3(wx, "POST", APP, order(wx, new_no()), ts=int(time.time()) + 400)
    assert resp.status_code == 401


def test_wrong_merchant_serial_and_missing_authorization_are_rejected(wx):
    assert v3(wx, "POST", APP, order(wx, new_no()), serial_no="00" * 20).status_code == 401
    resp = v3(wx, "POST", APP, order(wx, new_no()), auth=False)
    assert (resp.status_code, resp.json()["code"]) == (401, "SIGN_ERROR")


def test_signature_from_another_merchant_key_is_rejected(wx, sandbox_account):
    other = sandbox_account("wechat")
    forged = AccountConfig(
        channel="wechat",
        account_id=0,
        base_url=wx.base_url,
        ids=wx.ids,
        credentials={**wx.credentials, "merchant_private_key": other.credentials["merchant_private_key"]},
    )
    assert v3(forged, "POST", APP, order(wx, new_no())).status_code == 401


# --- prepay --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("change", "status", "code"),
    [
        ({"out_trade_no": "T#1234"}, 400, "PARAM_ERROR"),
        ({"out_trade_no": "T1"}, 400, "PARAM_ERROR"),
        ({"amount": {"total": 0, "currency": "CNY"}}, 400, "PARAM_ERROR"),
        ({"amount": {"total": 9.9, "currency": "CNY"}}, 400, "PARAM_ERROR"),
        ({"notify_url": "https://pay.example.com/cb?x=1"}, 400, "PARAM_ERROR"),
        ({"description": None}, 400, "PARAM_ERROR"),
        ({"appid": "wx0000000000000001"}, 400, "APPID_MCHID_NOT_MATCH"),
        ({"mchid": "1900000001"}, 400, "PARAM_ERROR"),
    ],
)
def test_invalid_prepay_is_refused(wx, change, status, code):
    body = {**order(wx, new_no()), **change}
    resp = v3(wx, "POST", APP, {k: v for k, v in body.items() if v is not None})
    assert (resp.status_code, resp.json()["code"]) == (status, code)


def test_jsapi_needs_openid_and_h5_needs_scene_info(wx):
    no = new_no()
    assert v3(wx, "POST", "/v3/pay/transactions/jsapi", order(wx, no)).status_code == 400
    ok = v3(wx, "POST", "/v3/pay/transactions/jsapi", order(wx, no, payer={"openid": "oUser1"}))
    assert ok.status_code == 200 and ok.json()["prepay_id"]
    assert v3(wx, "POST", "/v3/pay/transactions/h5", order(wx, new_no())).status_code == 400
    h5 = v3(
        wx,
        "POST",
        "/v3/pay/transactions/h5",
        order(wx, new_no(), scene_info={"payer_client_ip": "10.0.0.8", "h5_info": {"type": "Wap"}}),
    )
    assert h5.status_code == 200 and h5.json()["h5_url"].startswith("https://")
    native = v3(wx, "POST", "/v3/pay/transactions/native", order(wx, new_no()))
    assert native.json()["code_url"].startswith("weixin://wxpay/bizpayurl?pr=")


def test_identical_repost_gets_a_fresh_prepay_id_and_changed_content_is_refused(wx):
    body = order(wx, new_no())
    first, second = v3(wx, "POST", APP, body), v3(wx, "POST", APP, body)
    assert first.status_code == second.status_code == 200
    assert first.json()["prepay_id"] != second.json()["prepay_id"]
    changed = v3(wx, "POST", APP, {**body, "amount": {"total": 991, "currency": "CNY"}})
    assert (changed.status_code, changed.json()["code"]) == (403, "OUT_TRADE_NO_USED")


# --- query, pay, notification ----------------------------------------------------------------
def test_query_unknown_order_is_404_order_not_exist(wx):
    resp = v3(wx, "GET", f"/v3/pay/transactions/out-trade-no/{new_no()}?mchid={wx.ids['mchid']}")
    assert (resp.status_code, resp.json()["code"]) == (404, "ORDER_NOT_EXIST")


def test_pay_sends_an_encrypted_signed_notification_and_query_shows_success(
    sandbox, sandbox_account, notification_sink
):
    wx = sandbox_account("wechat")
    no = new_no()
    v3(wx, "POST", APP, order(wx, no, notify_url=notification_sink.url("/cb/wechat"), attach="a1"))
    before = v3(wx, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={wx.ids['mchid']}").json()
    assert before["trade_state"] == "NOTPAY" and "transaction_id" not in before
    sandbox.pay("wechat", no)
    [note] = notification_sink.wait_for(1)
    verify(wx, note.headers, note.body)
    envelope = json.loads(note.body)
    assert envelope["event_type"] == "TRANSACTION.SUCCESS" and envelope["resource_type"] == "encrypt-resource"
    assert envelope["resource"]["algorithm"] == "AEAD_AES_256_GCM"
    tx = json.loads(decrypt(wx, envelope["resource"]))
    assert (tx["out_trade_no"], tx["trade_state"], tx["amount"]["total"]) == (no, "SUCCESS", 990)
    assert (tx["mchid"], tx["appid"], tx["attach"]) == (wx.ids["mchid"], wx.ids["appid"], "a1")
    by_id = v3(wx, "GET", f"/v3/pay/transactions/id/{tx['transaction_id']}?mchid={wx.ids['mchid']}")
    verify(wx, by_id.headers, by_id.content)
    assert by_id.json()["trade_state"] == "SUCCESS" and by_id.json()["amount"]["payer_total"] == 990


def test_notification_is_retried_until_answered_200(sandbox, wx, notification_sink):
    notification_sink.respond_with(500, b'{"code":"FAIL","message":"busy"}', times=2)
    no = new_no()
    v3(wx, "POST", APP, order(wx, no, notify_url=notification_sink.url()))
    sandbox.pay("wechat", no)
    received = notification_sink.wait_for(3)
    assert sandbox.wait_idle(5)
    assert len({json.loads(r.body)["id"] for r in received}) == 1  # the same notification each time
    log = [e for e in sandbox.notifications() if e["key"] == no]
    assert [(e["attempt"], e["status"]) for e in log] == [(1, 500), (2, 500), (3, 200)]


def test_both_mode_notifications_alternate_between_certificate_and_public_key(sandbox, wx, notification_sink):
    for _ in range(2):
        no = new_no()
        v3(wx, "POST", APP, order(wx, no, notify_url=notification_sink.url()))
        sandbox.pay("wechat", no)
    serials = {verify(wx, r.headers, r.body) for r in notification_sink.wait_for(2)}
    assert serials == {wx.options["wechatpay_public_key_id"], *wx.options["platform_certificates"]}


def test_payer_amount_param_tampers_the_notified_amount(sandbox, wx, notification_sink):
    no = new_no()
    v3(wx, "POST", APP, order(wx, no, notify_url=notification_sink.url()))
    sandbox.pay("wechat", no, amount=1)
    [note] = notification_sink.wait_for(1)
    verify(wx, note.headers, note.body)
    assert json.loads(decrypt(wx, json.loads(note.body)["resource"]))["amount"]["total"] == 1


def test_signtest_probe_does_not_verify(sandbox, wx, notification_sink):
    no = new_no()
    v3(wx, "POST", APP, order(wx, no, notify_url=notification_sink.url()))
    sandbox.pay("wechat", no, signtest=True)
    [note] = notification_sink.wait_for(1)
    assert note.headers["Wechatpay-Signature"].startswith("WECHATPAY/SIGNTEST/")
    with pytest.raises((InvalidSignature, ValueError)):
        verify(wx, note.headers, note.body)


def test_delayed_pay_happens_after_the_scaled_delay(sandbox, wx, notification_sink):
    no = new_no()
    v3(wx, "POST", APP, order(wx, no, notify_url=notification_sink.url()))
    assert sandbox.pay("wechat", no, after_seconds=50)["scheduled"] is True
    [note] = notification_sink.wait_for(1)
    assert json.loads(decrypt(wx, json.loads(note.body)["resource"]))["trade_state"] == "SUCCESS"


# --- close ---------------------------------------------------------------------------------
def test_close_answers_signed_204_and_a_closed_order_cannot_be_paid(sandbox, wx):
    no = new_no()
    v3(wx, "POST", APP, order(wx, no))
    resp = v3(wx, "POST", f"/v3/pay/transactions/out-trade-no/{no}/close", {"mchid": wx.ids["mchid"]})
    assert resp.status_code == 204 and resp.content == b""
    verify(wx, resp.headers, b"")
    query = v3(wx, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={wx.ids['mchid']}")
    assert query.json()["trade_state"] == "CLOSED"
    with pytest.raises(Exception, match="409"):
        sandbox.pay("wechat", no)


def test_closing_a_paid_order_is_an_error(sandbox, wx):
    no = new_no()
    v3(wx, "POST", APP, order(wx, no))
    sandbox.pay("wechat", no, notify=False)
    resp = v3(wx, "POST", f"/v3/pay/transactions/out-trade-no/{no}/close", {"mchid": wx.ids["mchid"]})
    assert (resp.status_code, resp.json()["code"]) == (400, "ORDERPAID")


# --- refunds -------------------------------------------------------------------------------
def _paid(sandbox, wx, total: int = 990) -> str:
    no = new_no()
    v3(wx, "POST", APP, order(wx, no, total=total))
    sandbox.pay("wechat", no, notify=False)
    return no


def _refund_body(no: str, refund_no: str, refund: int, total: int = 990, **extra: Any) -> dict[str, Any]:
    return {
        "out_trade_no": no,
        "out_refund_no": refund_no,
        "amount": {"refund": refund, "total": total, "currency": "CNY"},
        **extra,
    }


def test_refund_completes_asynchronously_and_notifies(sandbox, wx, notification_sink):
    no, rno = _paid(sandbox, wx), new_no("R")
    resp = v3(
        wx,
        "POST",
        "/v3/refund/domestic/refunds",
        _refund_body(no, rno, 300, notify_url=notification_sink.url("/cb/refund")),
    )
    assert resp.status_code == 200
    verify(wx, resp.headers, resp.content)
    assert resp.json()["status"] == "PROCESSING" and resp.json()["amount"]["refund"] == 300
    [note] = notification_sink.wait_for(1)
    verify(wx, note.headers, note.body)
    envelope = json.loads(note.body)
    assert envelope["event_type"] == "REFUND.SUCCESS"
    refund = json.loads(decrypt(wx, envelope["resource"]))
    assert (refund["out_refund_no"], refund["refund_status"], refund["amount"]["refund"]) == (rno, "SUCCESS", 300)
    query = v3(wx, "GET", f"/v3/refund/domestic/refunds/{rno}")
    assert query.json()["status"] == "SUCCESS" and query.json()["success_time"]


def test_same_out_refund_no_never_refunds_twice(sandbox, wx):
    no, rno = _paid(sandbox, wx), new_no("R")
    first = v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, rno, 600))
    again = v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, rno, 600))
    assert first.json()["refund_id"] == again.json()["refund_id"]
    # 600 refunded once: another 390 fits, 391 would not.
    too_much = v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, new_no("R"), 391))
    assert (too_much.status_code, too_much.json()["code"]) == (400, "INVALID_REQUEST")
    assert v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, new_no("R"), 390)).status_code == 200


def test_refund_of_unknown_or_unpaid_order_and_unknown_refund_query_fail(wx):
    missing = v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(new_no(), new_no("R"), 1))
    assert missing.status_code == 404
    no = new_no()
    v3(wx, "POST", APP, order(wx, no))
    assert v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, new_no("R"), 1)).status_code == 400
    assert v3(wx, "GET", f"/v3/refund/domestic/refunds/{new_no('R')}").status_code == 404


def test_held_refund_can_be_made_abnormal(sandbox, wx):
    no, rno = _paid(sandbox, wx), new_no("R")
    v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, rno, 100, reason="SANDBOX_PROCESSING"))
    assert sandbox.act("wechat", rno, "refund_abnormal")["status"] == "ABNORMAL"
    assert v3(wx, "GET", f"/v3/refund/domestic/refunds/{rno}").json()["status"] == "ABNORMAL"


# --- certificates --------------------------------------------------------------------------
def test_certificate_download_decrypts_with_the_apiv3_key(wx):
    resp = v3(wx, "GET", "/v3/certificates")
    assert resp.status_code == 200
    verify(wx, resp.headers, resp.content)
    [item] = resp.json()["data"]
    enc = item["encrypt_certificate"]
    assert (enc["algorithm"], enc["associated_data"]) == ("AEAD_AES_256_GCM", "certificate")
    pem = decrypt(wx, enc).decode()
    assert pem == wx.options["platform_certificates"][item["serial_no"]]


# --- API faults ----------------------------------------------------------------------------
def test_bad_signature_fault_makes_the_response_unverifiable(sandbox, wx):
    no = new_no()
    v3(wx, "POST", APP, order(wx, no))
    sandbox.add_fault(kind="bad_signature", channel="wechat", count=1)
    resp = v3(wx, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={wx.ids['mchid']}")
    assert resp.status_code == 200
    with pytest.raises(InvalidSignature):
        verify(wx, resp.headers, resp.content)


def test_tamper_amount_fault_changes_the_amount_after_signing(sandbox, wx):
    no = _paid(sandbox, wx)
    sandbox.add_fault(kind="tamper_amount", channel="wechat", path="/out-trade-no/", amount=1, count=1)
    resp = v3(wx, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={wx.ids['mchid']}")
    assert resp.json()["amount"]["total"] == 1
    with pytest.raises(InvalidSignature):
        verify(wx, resp.headers, resp.content)


# --- bills ---------------------------------------------------------------------------------
def end_today(acct: AccountConfig) -> str:
    """End the real (Beijing) day on the sandbox clock, once: bills exist only for ended days.
    Returns that day, YYYY-MM-DD."""
    today = time.strftime("%Y-%m-%d", time.gmtime(time.time() + 8 * 3600))
    client = SandboxClient(acct.base_url.rsplit("/", 1)[0])
    if client.clock()["now"] < f"{today}T16:00:00+00:00":  # the sandbox is still on that Beijing day
        client.end_day(8)
    return today


def _bill(wx, bill_type: str, gz: bool) -> tuple[list[list[str]], bytes, dict[str, Any]]:
    today = end_today(wx)
    query = f"bill_date={today}&bill_type={bill_type}" + ("&tar_type=GZIP" if gz else "")
    apply = v3(wx, "GET", f"/v3/bill/tradebill?{query}")
    assert apply.status_code == 200, apply.text
    verify(wx, apply.headers, apply.content)
    info = apply.json()
    download = v3(wx, "GET", "", url=info["download_url"])
    assert download.status_code == 200
    assert "Wechatpay-Signature" not in download.headers
    assert hashlib.sha1(download.content).hexdigest() == info["hash_value"]
    text = (gzip.decompress(download.content) if gz else download.content).decode("utf-8")
    return list(csv.reader(io.StringIO(text))), download.content, info


def test_trade_bill_lists_payments_and_refunds_with_backtick_cells(sandbox, wx):
    no = _paid(sandbox, wx)
    rno = new_no("R")
    v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, rno, 100))
    rows, _, info = _bill(wx, "ALL", gz=True)
    assert info["hash_type"] == "SHA1"
    header, *details = rows[: rows.index(next(r for r in rows if r[0] == "总交易单数"))]
    assert header[:3] == ["交易时间", "公众账号ID", "商户号"] and len(header) == 27
    assert all(cell.startswith("`") for row in details for cell in row)
    by = [dict(zip(header, (c[1:] for c in row), strict=True)) for row in details]
    payment = next(r for r in by if r["交易状态"] == "SUCCESS")
    refund = next(r for r in by if r["交易状态"] == "REFUND")
    assert (payment["商户订单号"], payment["订单金额"], payment["商户退款单号"]) == (no, "9.90", "0")
    assert (refund["商户订单号"], refund["商户退款单号"], refund["退款金额"]) == (no, rno, "1.00")
    assert refund["应结订单金额"] == "0.00"
    summary_header, summary = rows[-2], rows[-1]
    summary_map = dict(zip(summary_header, (c[1:] for c in summary), strict=True))
    assert summary_map["总交易单数"] == "2" and summary_map["退款总金额"] == "1.00"


def test_bill_types_have_their_own_columns_and_plain_download_works(sandbox, wx):
    _paid(sandbox, wx)
    success_rows, raw, _ = _bill(wx, "SUCCESS", gz=False)
    assert raw.startswith("交易时间".encode())
    assert "微信退款单号" not in success_rows[0] and "申请退款金额" not in success_rows[0]
    assert success_rows[-2] == ["总交易单数", "应结订单总金额", "手续费总金额", "订单总金额"]


def test_bill_without_activity_is_no_statement_exist(wx):
    resp = v3(wx, "GET", "/v3/bill/tradebill?bill_date=2020-01-01&bill_type=ALL")
    assert (resp.status_code, resp.json()["code"]) == (400, "NO_STATEMENT_EXIST")


def test_bill_download_needs_authorization(sandbox, wx):
    _paid(sandbox, wx)
    today = end_today(wx)
    info = v3(wx, "GET", f"/v3/bill/tradebill?bill_date={today}").json()
    assert v3(wx, "GET", "", url=info["download_url"], auth=False).status_code == 401


# --- v2 payment code -------------------------------------------------------------------------
def test_v2_sign_matches_the_documented_vectors():
    params = {
        "appid": "wx0000000000000001",
        "auth_code": "134567890123456789",
        "body": "coffee",
        "mch_id": "1900000001",
        "nonce_str": "n0nce42",
        "out_trade_no": "T20250101001",
        "spbill_create_ip": "10.0.0.8",
        "total_fee": "1",
    }
    key = "ApiKeyDemo0123456789abcdefABCDEF"
    assert v2_sign(params, key, "MD5") == "5EBFCE4DA2BC6625B024AF5600840C0B"
    assert v2_sign({**params, "sign_type": "HMAC-SHA256"}, key, "HMAC-SHA256") == (
        "7082AF0A948EBEE6B7753BDBE4D70B9EBEB4FEFDD2BFB1CD700CF72B702B5A3E"
    )
    legacy = {
        "appid": "wxd930ea5d5a258f4f",
        "body": "test",
        "device_info": "1000",
        "mch_id": "10000100",
        "nonce_str": "ibuaiVcKdpRxkhJA",
    }
    assert v2_sign(legacy, "192006250b4c09247ec02edce69f6a2d", "MD5") == "9A0A8659F005D6984697E2CA0A9CF3B7"


def _hand_sign(params: dict[str, str], key: str, sign_type: str) -> str:
    text = "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "") + f"&key={key}"
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    return hashlib.md5(text.encode()).hexdigest().upper()


def post_secapi(
    acct: AccountConfig, path: str, body: bytes, *, cert_of: AccountConfig | None = None
) -> requests.Response:
    """POST to ``/secapi/...`` over mutual TLS, presenting ``cert_of``'s (default: ``acct``'s)
    merchant certificate and trusting only the sandbox CA from the account JSON."""
    owner = cert_of or acct
    with tempfile.TemporaryDirectory() as folder:
        files = {
            "cert.pem": owner.credentials["merchant_certificate"],
            "key.pem": owner.credentials["merchant_private_key"],
            "ca.pem": acct.options["secapi_ca_certificate"],
        }
        for name, text in files.items():
            with open(os.path.join(folder, name), "w", encoding="ascii") as out:
                out.write(text)
        return requests.post(
            acct.options["secapi_base_url"] + path,
            data=body,
            headers={"Content-Type": "text/xml"},
            cert=(os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")),
            verify=os.path.join(folder, "ca.pem"),
            timeout=10,
        )


def v2(
    acct: AccountConfig,
    path: str,
    sign_type: str = "HMAC-SHA256",
    raw: bytes | None = None,
    *,
    plain: bool = False,
    cert_of: AccountConfig | None = None,
    **fields: str,
) -> dict[str, str]:
    """One v2 call; ``/secapi/`` goes over mutual TLS unless ``plain`` (the plain listener)."""
    params = {"appid": acct.ids["appid"], "mch_id": acct.ids["mchid"], "nonce_str": secrets.token_hex(8), **fields}
    if sign_type != "MD5":
        params["sign_type"] = sign_type
    params["sign"] = _hand_sign(params, acct.credentials["api_v2_key"], sign_type)
    body = raw or ("<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in params.items()) + "</xml>").encode()
    if path.startswith("/secapi/") and not plain:
        resp = post_secapi(acct, path, body, cert_of=cert_of)
    else:
        resp = requests.post(acct.base_url + path, data=body, headers={"Content-Type": "text/xml"}, timeout=10)
    assert resp.status_code == 200
    import xml.etree.ElementTree as ET  # test parsing of our own sandbox's reply

    out = {child.tag: child.text or "" for child in ET.fromstring(resp.content)}
    if out["return_code"] == "SUCCESS":
        assert hmac.compare_digest(out["sign"], _hand_sign(out, acct.credentials["api_v2_key"], sign_type))
    return out


def _micropay(acct: AccountConfig, no: str, auth_code: str, sign_type: str = "HMAC-SHA256") -> dict[str, str]:
    return v2(
        acct,
        "/pay/micropay",
        sign_type,
        body="coffee",
        out_trade_no=no,
        total_fee="1",
        spbill_create_ip="10.0.0.8",
        auth_code=auth_code,
    )


@pytest.mark.parametrize("sign_type", ["MD5", "HMAC-SHA256"])
def test_micropay_pays_at_once_with_either_sign_type(wx, sign_type):
    no = new_no("P")
    out = _micropay(wx, no, "134567890123456789", sign_type)
    assert (out["return_code"], out["result_code"], out["trade_type"]) == ("SUCCESS", "SUCCESS", "MICROPAY")
    assert out["total_fee"] == "1" and out["transaction_id"]
    query = v2(wx, "/pay/orderquery", sign_type, out_trade_no=no)
    assert query["trade_state"] == "SUCCESS"


def test_micropay_with_a_bad_sign_is_a_communication_failure(wx):
    params = {
        "appid": wx.ids["appid"],
        "mch_id": wx.ids["mchid"],
        "nonce_str": "n1",
        "body": "x",
        "out_trade_no": new_no("P"),
        "total_fee": "1",
        "spbill_create_ip": "10.0.0.8",
        "auth_code": "134567890123456789",
        "sign": "0" * 32,
    }
    body = ("<xml>" + "".join(f"<{k}>{v}</{k}>" for k, v in params.items()) + "</xml>").encode()
    out = v2(wx, "/pay/micropay", "MD5", raw=body)
    assert out["return_code"] == "FAIL" and "result_code" not in out


def test_micropay_refuses_a_doctype(wx):
    body = b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY x "boom">]><xml><appid>&x;</appid></xml>'
    out = v2(wx, "/pay/micropay", raw=body)
    assert out["return_code"] == "FAIL"


def test_userpaying_until_password_then_success(sandbox, wx):
    no = new_no("P")
    out = _micropay(wx, no, "134567890123450000")
    assert (out["result_code"], out["err_code"]) == ("FAIL", "USERPAYING")
    assert v2(wx, "/pay/orderquery", out_trade_no=no)["trade_state"] == "USERPAYING"
    sandbox.password("wechat", no)
    query = v2(wx, "/pay/orderquery", out_trade_no=no)
    assert (query["trade_state"], query["total_fee"]) == ("SUCCESS", "1")


@pytest.mark.parametrize(
    ("auth_code", "err_code", "state"),
    [
        ("134567890123450001", "NOTENOUGH", "PAYERROR"),
        ("134567890123450002", "AUTHCODEEXPIRE", "PAYERROR"),
        ("134567890123450003", "SYSTEMERROR", "SUCCESS"),
        ("134567890123450004", "BANKERROR", "PAYERROR"),
        ("999", "AUTH_CODE_INVALID", None),
        ("284567890123456789", "AUTH_CODE_INVALID", None),
    ],
)
def test_auth_code_conventions(wx, auth_code, err_code, state):
    no = new_no("P")
    out = _micropay(wx, no, auth_code)
    assert (out["result_code"], out["err_code"]) == ("FAIL", err_code)
    query = v2(wx, "/pay/orderquery", out_trade_no=no)
    assert query.get("trade_state") == state or (state is None and query["err_code"] == "ORDERNOTEXIST")


def test_reverse_revokes_a_paid_order_and_is_reentrant(wx):
    no = new_no("P")
    _micropay(wx, no, "134567890123456789")
    first = v2(wx, "/secapi/pay/reverse", out_trade_no=no)
    assert (first["result_code"], first["recall"]) == ("SUCCESS", "N")
    assert v2(wx, "/pay/orderquery", out_trade_no=no)["trade_state"] == "REVOKED"
    assert v2(wx, "/secapi/pay/reverse", out_trade_no=no)["result_code"] == "SUCCESS"
    assert v2(wx, "/secapi/pay/reverse", out_trade_no=new_no("P"))["result_code"] == "SUCCESS"  # unknown


def test_reverse_while_userpaying_asks_to_recall_then_succeeds(wx):
    no = new_no("P")
    _micropay(wx, no, "134567890123450000")
    first = v2(wx, "/secapi/pay/reverse", out_trade_no=no)
    assert (first["result_code"], first["err_code"], first["recall"]) == ("FAIL", "USERPAYING", "Y")
    second = v2(wx, "/secapi/pay/reverse", out_trade_no=no)
    assert second["result_code"] == "SUCCESS"
    assert v2(wx, "/pay/orderquery", out_trade_no=no)["trade_state"] == "REVOKED"


def test_revoked_paid_order_shows_in_the_bill_as_payment_and_revocation(wx):
    no = new_no("P")
    _micropay(wx, no, "134567890123456789")
    v2(wx, "/secapi/pay/reverse", out_trade_no=no)
    rows, _, _ = _bill(wx, "ALL", gz=False)
    header = rows[0]
    mine = [dict(zip(header, (c[1:] for c in r), strict=True)) for r in rows[1:] if f"`{no}" in r]
    assert [(r["交易状态"], r["交易类型"], r["订单金额"]) for r in mine] == [
        ("SUCCESS", "MICROPAY", "0.01"),
        ("REVOKED", "MICROPAY", "0.01"),
    ]
    revoked = mine[1]
    assert (revoked["商户退款单号"], revoked["退款金额"], revoked["退款状态"]) == (no, "0.01", "SUCCESS")
    assert revoked["微信订单号"] == mine[0]["微信订单号"] and revoked["微信退款单号"] != "0"
    success_rows, _, _ = _bill(wx, "SUCCESS", gz=False)
    assert [r[9] for r in success_rows[1:] if f"`{no}" in r] == ["`SUCCESS"]  # payments only


def test_v2_tamper_amount_fault_breaks_the_reply_signature(sandbox, wx):
    sandbox.add_fault(kind="tamper_amount", channel="wechat", path="/pay/micropay", amount=2, count=1)
    with pytest.raises(AssertionError):
        _micropay(wx, new_no("P"), "134567890123456789")  # v2() checks the reply's sign
