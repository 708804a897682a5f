"""Payment codes in the sandbox: mutual TLS on WeChat ``/secapi/``, the scenarios chosen by the
scanned code's last four digits (sandbox/paycode.py), and revocation faults.

Requests are built and signed by hand (WeChat v2 MD5/HMAC, Alipay RSA2) and answers verified
with ``cryptography``; paycore's adapters are not used.
"""

from __future__ import annotations

import base64
import json
import os
import tempfile
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest
import requests
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.x509.oid import NameOID

from channels.base import AccountConfig
from tests.channels.test_sandbox_wechat import _micropay, new_no, post_secapi, v2

BEIJING = timezone(timedelta(hours=8))
WX_PAID = "134567890123456789"
ALI_PAID = "286543210987654321"


def wx_code(suffix: str) -> str:
    return "13456789012345" + suffix


def ali_code(suffix: str) -> str:
    return "28654321098765" + suffix


@pytest.fixture
def wx(sandbox_account) -> AccountConfig:
    return sandbox_account("wechat")


@pytest.fixture
def ali(sandbox_account) -> AccountConfig:
    return sandbox_account("alipay")


def _state(sandbox, channel: str, no: str) -> dict[str, Any]:
    return next(t for t in sandbox.trades() if t["channel"] == channel and t.get("out_trade_no") == no)


# --- Alipay, signed by hand (RSA2 over the sorted parameters; answers over the node's text) ----
def alipay(acct: AccountConfig, method: str, biz: dict[str, Any]) -> dict[str, Any]:
    params = {
        "app_id": acct.ids["app_id"],
        "method": method,
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "biz_content": json.dumps(biz, separators=(",", ":")),
    }
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")
    key = serialization.load_pem_private_key(acct.credentials["app_private_key"].encode(), None)
    params["sign"] = base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    resp = requests.post(acct.base_url + "/gateway.do", data=params, timeout=10)
    assert resp.status_code == 200
    text, name = resp.text, method.replace(".", "_") + "_response"
    start = text.index(f'"{name}":') + len(name) + 3
    node_text = text[start : text.rindex(',"sign":"')]
    public = serialization.load_pem_public_key(acct.options["alipay_public_key"].encode())
    public.verify(base64.b64decode(json.loads(text)["sign"]), node_text.encode(), padding.PKCS1v15(), hashes.SHA256())
    return json.loads(text)[name]


def ali_pay(acct: AccountConfig, no: str, auth_code: str, **extra: Any) -> dict[str, Any]:
    biz = {"out_trade_no": no, "scene": "bar_code", "auth_code": auth_code, "subject": "Tea", "total_amount": "0.01"}
    return alipay(acct, "alipay.trade.pay", {**biz, **extra})


def ali_query(acct: AccountConfig, no: str) -> dict[str, Any]:
    return alipay(acct, "alipay.trade.query", {"out_trade_no": no})


def ali_cancel(acct: AccountConfig, no: str) -> dict[str, Any]:
    return alipay(acct, "alipay.trade.cancel", {"out_trade_no": no})


def wx_query(acct: AccountConfig, no: str) -> dict[str, str]:
    return v2(acct, "/pay/orderquery", out_trade_no=no)


def wx_reverse(acct: AccountConfig, no: str, **kwargs: Any) -> dict[str, str]:
    return v2(acct, "/secapi/pay/reverse", out_trade_no=no, **kwargs)


# --- mutual TLS on /secapi/ ----------------------------------------------------------------
def test_wechat_account_carries_a_client_certificate_from_the_sandbox_ca(wx):
    cert = x509.load_pem_x509_certificate(wx.credentials["merchant_certificate"].encode())
    ca = x509.load_pem_x509_certificate(wx.options["secapi_ca_certificate"].encode())
    key = serialization.load_pem_private_key(wx.credentials["merchant_private_key"].encode(), None)
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    assert cert.public_key().public_bytes(serialization.Encoding.DER, spki) == key.public_key().public_bytes(
        serialization.Encoding.DER, spki
    )
    cert.verify_directly_issued_by(ca)
    assert f"{cert.serial_number:040X}" == wx.ids["merchant_serial_no"]
    assert cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == wx.ids["mchid"]
    assert wx.options["secapi_base_url"].startswith("https://127.0.0.1:")
    assert wx.options["secapi_base_url"].endswith("/wechat")


def test_reverse_over_mutual_tls_with_the_merchant_certificate_succeeds(sandbox, wx):
    no = new_no("P")
    _micropay(wx, no, WX_PAID)
    out = wx_reverse(wx, no)
    assert (out["return_code"], out["result_code"], out["recall"]) == ("SUCCESS", "SUCCESS", "N")
    assert wx_query(wx, no)["trade_state"] == "REVOKED"


def test_secapi_on_the_plain_listener_is_refused_and_nothing_is_done(wx):
    no = new_no("P")
    _micropay(wx, no, WX_PAID)
    out = wx_reverse(wx, no, plain=True)
    assert out["return_code"] == "FAIL" and "TLS" in out["return_msg"]
    assert wx_query(wx, no)["trade_state"] == "SUCCESS"


def test_tls_without_a_client_certificate_fails_in_the_handshake(wx):
    no = new_no("P")
    _micropay(wx, no, WX_PAID)
    with tempfile.TemporaryDirectory() as folder:
        ca = os.path.join(folder, "ca.pem")
        with open(ca, "w", encoding="ascii") as out:
            out.write(wx.options["secapi_ca_certificate"])
        with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
            requests.post(wx.options["secapi_base_url"] + "/secapi/pay/reverse", data=b"<xml/>", verify=ca, timeout=10)
    assert wx_query(wx, no)["trade_state"] == "SUCCESS"


def test_a_certificate_not_issued_by_the_sandbox_ca_fails_in_the_handshake(wx):
    key = serialization.load_pem_private_key(wx.credentials["merchant_private_key"].encode(), None)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, wx.ids["mchid"])])
    now = datetime.now(UTC)
    forged = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .sign(key, hashes.SHA256())
    )
    self_signed = AccountConfig(
        channel=wx.channel,
        account_id=wx.account_id,
        base_url=wx.base_url,
        ids=wx.ids,
        credentials={
            **wx.credentials,
            "merchant_certificate": forged.public_bytes(serialization.Encoding.PEM).decode(),
        },
        options=wx.options,
    )
    with pytest.raises((requests.exceptions.SSLError, requests.exceptions.ConnectionError)):
        post_secapi(wx, "/secapi/pay/reverse", b"<xml/>", cert_of=self_signed)


def test_another_merchants_certificate_is_refused_for_this_mch_id(sandbox_account, wx):
    other = sandbox_account("wechat")
    no = new_no("P")
    _micropay(wx, no, WX_PAID)
    out = wx_reverse(wx, no, cert_of=other)
    assert out["return_code"] == "FAIL" and "证书" in out["return_msg"]
    assert wx_query(wx, no)["trade_state"] == "SUCCESS"


def test_the_tls_listener_serves_only_secapi(wx):
    with tempfile.TemporaryDirectory() as folder:
        paths = {}
        for name, text in (
            ("cert", wx.credentials["merchant_certificate"]),
            ("key", wx.credentials["merchant_private_key"]),
            ("ca", wx.options["secapi_ca_certificate"]),
        ):
            paths[name] = os.path.join(folder, name)
            with open(paths[name], "w", encoding="ascii") as out:
                out.write(text)
        resp = requests.post(
            wx.options["secapi_base_url"] + "/pay/micropay",
            data=b"<xml/>",
            cert=(paths["cert"], paths["key"]),
            verify=paths["ca"],
            timeout=10,
        )
    assert resp.status_code == 404


def test_the_tls_server_certificate_is_valid_for_localhost_too(wx):
    localhost = AccountConfig(
        channel=wx.channel,
        account_id=wx.account_id,
        base_url=wx.base_url,
        ids=wx.ids,
        credentials=wx.credentials,
        options={**wx.options, "secapi_base_url": wx.options["secapi_base_url"].replace("127.0.0.1", "localhost")},
    )
    resp = post_secapi(localhost, "/secapi/pay/reverse", b"<xml/>")  # hostname checked against the SANs
    assert resp.status_code == 200 and b"FAIL" in resp.content


# --- scenarios -----------------------------------------------------------------------------
def test_any_other_code_pays_at_once(wx, ali):
    wx_no, ali_no = new_no("P"), new_no("P")
    assert _micropay(wx, wx_no, wx_code("1234"))["result_code"] == "SUCCESS"
    assert wx_query(wx, wx_no)["trade_state"] == "SUCCESS"
    assert ali_pay(ali, ali_no, ali_code("1234"))["code"] == "10000"
    assert ali_query(ali, ali_no)["trade_status"] == "TRADE_SUCCESS"


def test_password_then_paid_by_the_payer_action(sandbox, wx, ali):
    wx_no, ali_no = new_no("P"), new_no("P")
    assert _micropay(wx, wx_no, wx_code("0000"))["err_code"] == "USERPAYING"
    assert ali_pay(ali, ali_no, ali_code("0000"))["code"] == "10003"
    assert wx_query(wx, wx_no)["trade_state"] == "USERPAYING"
    assert ali_query(ali, ali_no)["trade_status"] == "WAIT_BUYER_PAY"
    sandbox.password("wechat", wx_no)
    sandbox.password("alipay", ali_no)
    assert wx_query(wx, wx_no)["trade_state"] == "SUCCESS"
    assert ali_query(ali, ali_no)["trade_status"] == "TRADE_SUCCESS"


def _eventually(check, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_password_typed_by_itself_n_seconds_later(wx, ali):
    wx_no, ali_no = new_no("P"), new_no("P")
    assert _micropay(wx, wx_no, wx_code("7101"))["err_code"] == "USERPAYING"
    assert ali_pay(ali, ali_no, ali_code("7101"))["code"] == "10003"
    _eventually(lambda: wx_query(wx, wx_no)["trade_state"] == "SUCCESS")
    _eventually(lambda: ali_query(ali, ali_no)["trade_status"] == "TRADE_SUCCESS")


def test_password_asked_forever_refuses_the_payers_password(sandbox, wx, ali):
    wx_no, ali_no = new_no("P"), new_no("P")
    assert _micropay(wx, wx_no, wx_code("7200"))["err_code"] == "USERPAYING"
    assert ali_pay(ali, ali_no, ali_code("7200"))["code"] == "10003"
    for channel, no in (("wechat", wx_no), ("alipay", ali_no)):
        with pytest.raises(Exception, match="NO_PASSWORD"):
            sandbox.password(channel, no)
    assert wx_query(wx, wx_no)["trade_state"] == "USERPAYING"
    assert ali_query(ali, ali_no)["trade_status"] == "WAIT_BUYER_PAY"


@pytest.mark.parametrize(
    ("suffix", "wx_err", "ali_sub"),
    [
        ("7301", "AUTHCODEEXPIRE", "ACQ.PAYMENT_AUTH_CODE_INVALID"),
        ("7302", "NOTENOUGH", "ACQ.BUYER_BALANCE_NOT_ENOUGH"),
    ],
)
def test_definite_failures_carry_the_channels_codes(wx, ali, suffix, wx_err, ali_sub):
    wx_no, ali_no = new_no("P"), new_no("P")
    out = _micropay(wx, wx_no, wx_code(suffix))
    assert (out["result_code"], out["err_code"]) == ("FAIL", wx_err)
    assert wx_query(wx, wx_no)["trade_state"] == "PAYERROR"
    node = ali_pay(ali, ali_no, ali_code(suffix))
    assert (node["code"], node["sub_code"]) == ("40004", ali_sub)
    query = ali_query(ali, ali_no)
    assert query.get("trade_status", query.get("sub_code")) in ("TRADE_CLOSED", "ACQ.TRADE_NOT_EXIST")


def test_systemerror_but_the_money_was_taken(wx, ali):
    wx_no, ali_no = new_no("P"), new_no("P")
    assert _micropay(wx, wx_no, wx_code("7400"))["err_code"] == "SYSTEMERROR"
    assert wx_query(wx, wx_no)["trade_state"] == "SUCCESS"
    assert ali_pay(ali, ali_no, ali_code("7400"))["code"] == "20000"
    assert ali_query(ali, ali_no)["trade_status"] == "TRADE_SUCCESS"


def test_systemerror_never_finishing_while_paying(sandbox, wx, ali):
    wx_no, ali_no = new_no("P"), new_no("P")
    assert _micropay(wx, wx_no, wx_code("7500"))["err_code"] == "SYSTEMERROR"
    assert ali_pay(ali, ali_no, ali_code("7500"))["code"] == "20000"
    assert wx_query(wx, wx_no)["trade_state"] == "USERPAYING"
    assert ali_query(ali, ali_no)["trade_status"] == "WAIT_BUYER_PAY"
    with pytest.raises(Exception, match="NO_PASSWORD"):
        sandbox.password("wechat", wx_no)


def test_systemerror_never_finishing_while_not_paid(wx, ali):
    wx_no, ali_no = new_no("P"), new_no("P")
    assert _micropay(wx, wx_no, wx_code("7501"))["err_code"] == "SYSTEMERROR"
    assert ali_pay(ali, ali_no, ali_code("7501"))["code"] == "20000"
    query = wx_query(wx, wx_no)
    assert (query["trade_state"], query["trade_state_desc"]) == ("NOTPAY", "订单未支付")
    assert ali_query(ali, ali_no)["sub_code"] == "ACQ.TRADE_NOT_EXIST"
    assert wx_reverse(wx, wx_no)["result_code"] == "SUCCESS"
    assert wx_query(wx, wx_no)["trade_state"] == "REVOKED"
    assert ali_cancel(ali, ali_no)["retry_flag"] == "N"


# --- revocation faults ---------------------------------------------------------------------
def test_wechat_reverse_asks_to_recall_n_times_for_one_trade(sandbox, wx):
    no, other = new_no("P"), new_no("P")
    _micropay(wx, no, WX_PAID)
    _micropay(wx, other, WX_PAID)
    sandbox.add_fault(kind="revoke_retry", channel="wechat", trade=no, count=2)
    assert wx_reverse(wx, other)["result_code"] == "SUCCESS"  # another trade: unaffected
    for _ in range(2):
        out = wx_reverse(wx, no)
        assert (out["result_code"], out["err_code"], out["recall"]) == ("FAIL", "SYSTEMERROR", "Y")
        assert wx_query(wx, no)["trade_state"] == "SUCCESS"  # nothing was done
    assert (wx_reverse(wx, no)["result_code"], wx_query(wx, no)["trade_state"]) == ("SUCCESS", "REVOKED")


def test_wechat_reverse_fails_with_systemerror_n_times_for_an_account(sandbox, wx):
    no = new_no("P")
    _micropay(wx, no, wx_code("0000"))
    sandbox.add_fault(kind="revoke_error", channel="wechat", account=wx.ids["mchid"], count=1)
    out = wx_reverse(wx, no)
    assert (out["result_code"], out["err_code"]) == ("FAIL", "SYSTEMERROR") and "recall" not in out
    assert wx_query(wx, no)["trade_state"] == "USERPAYING"
    assert wx_reverse(wx, no)["err_code"] == "USERPAYING"  # the payer is mid-payment: recall=Y
    assert wx_reverse(wx, no)["result_code"] == "SUCCESS"


def test_alipay_cancel_asks_to_retry_n_times_then_closes(sandbox, ali):
    no = new_no("P")
    ali_pay(ali, no, ali_code("0000"))
    sandbox.add_fault(kind="revoke_retry", channel="alipay", trade=no, count=2)
    for _ in range(2):
        node = ali_cancel(ali, no)
        assert (node["code"], node["retry_flag"]) == ("10000", "Y") and "action" not in node
        assert ali_query(ali, no)["trade_status"] == "WAIT_BUYER_PAY"
    node = ali_cancel(ali, no)
    assert (node["retry_flag"], node["action"]) == ("N", "close")
    assert ali_query(ali, no)["trade_status"] == "TRADE_CLOSED"


def test_alipay_cancel_fails_with_20000_n_times(sandbox, ali):
    no = new_no("P")
    ali_pay(ali, no, ALI_PAID)
    sandbox.add_fault(kind="revoke_error", channel="alipay", account=ali.ids["app_id"], count=2)
    for _ in range(2):
        node = ali_cancel(ali, no)
        assert (node["code"], node["sub_code"]) == ("20000", "ACQ.SYSTEM_ERROR")
    assert ali_query(ali, no)["trade_status"] == "TRADE_SUCCESS"
    node = ali_cancel(ali, no)
    assert (node["code"], node["retry_flag"], node["action"]) == ("10000", "N", "refund")


def test_alipay_cancel_of_a_paid_trade_refunds_it_with_the_order_number(ali):
    no = new_no("P")
    ali_pay(ali, no, ALI_PAID)
    node = ali_cancel(ali, no)
    assert (node["retry_flag"], node["action"]) == ("N", "refund")
    assert ali_query(ali, no)["trade_status"] == "TRADE_CLOSED"
    refund = alipay(ali, "alipay.trade.fastpay.refund.query", {"out_trade_no": no, "out_request_no": no})
    assert (refund["refund_amount"], refund["refund_status"]) == ("0.01", "REFUND_SUCCESS")
    assert ali_cancel(ali, no)["action"] == "refund"  # a repeat answers the same


def test_revocation_faults_need_a_payment_code_channel(sandbox):
    with pytest.raises(Exception, match="BAD_FAULT"):
        sandbox.add_fault(kind="revoke_retry", channel="paypal", count=1)
    with pytest.raises(Exception, match="BAD_FAULT"):
        sandbox.add_fault(kind="http_500", channel="wechat", trade="X")
