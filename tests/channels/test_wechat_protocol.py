"""WeChat Pay protocol pieces without a gateway: the doc's known-answer vectors, v3 signature
verification (and its rejections), error mapping, v2 XML, and trade-bill parsing.

Keys are generated here; expected strings and signatures are built by hand from
the WeChat Pay v3 and v2 documentation and checked with ``cryptography`` directly, not with the adapter's
own helpers. HTTP appears only where the adapter itself must be driven: a local recording server
for request signing and ``responses`` stubs for the certificate download and bill parser.
"""

from __future__ import annotations

import base64
import dataclasses
import gzip
import hashlib
import hmac
import ipaddress
import itertools
import json
import os
import re
import ssl
import stat
import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

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
from channels.wechat import WechatAdapter, _bill, _crypto, _v3, _xml

NOW = 1735689600  # 2025-01-01T00:00:00Z
APIV3_KEY = "0123456789abcdefABCDEF0123456789"
MCHID, APPID = "1900000001", "wx0000000000000001"
PUB_KEY_ID = "PUB_KEY_ID_0000000000000000000000000001"
SIG_TYPE = "WECHATPAY2-SHA256-RSA2048"
BASE = "https://wechat.test/wechat"
_ids = itertools.count(90_000)


# --------------------------------------------------------------------------------------------
# keys and helpers
# --------------------------------------------------------------------------------------------
def _rsa() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_public(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _certificate(key: rsa.RSAPrivateKey, serial: int) -> str:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Tenpay.com Root CA (test)")])
    start = datetime(2024, 1, 1, tzinfo=UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + timedelta(days=3650))
        .sign(key, hashes.SHA256())
    )
    return cert.public_bytes(serialization.Encoding.PEM).decode()


class Keys:
    def __init__(self) -> None:
        self.merchant = _rsa()
        self.platform = _rsa()
        self.platform_serial_int = 0x5A0B7C2D9E1F3344556677889900AABBCCDDEEFF
        self.platform_serial = f"{self.platform_serial_int:X}"
        self.platform_cert = _certificate(self.platform, self.platform_serial_int)
        self.pubkey = _rsa()
        self.rotated = _rsa()
        self.rotated_serial_int = 0x1122334455667788
        self.rotated_serial = f"{self.rotated_serial_int:X}"
        self.rotated_cert = _certificate(self.rotated, self.rotated_serial_int)


@pytest.fixture(scope="module")
def keys() -> Keys:
    return Keys()


@pytest.fixture(autouse=True)
def _clean_certificate_cache() -> Iterator[None]:
    _v3._PLATFORM.clear()
    yield
    _v3._PLATFORM.clear()


def make_adapter(
    keys: Keys, *, base_url: str = BASE, public_key: bool = True, certificates: bool = True
) -> WechatAdapter:
    options: dict[str, Any] = {"v2_sign_type": "HMAC-SHA256"}
    if certificates:
        options["platform_certificates"] = {keys.platform_serial: keys.platform_cert}
    if public_key:
        options["wechatpay_public_key_id"] = PUB_KEY_ID
        options["wechatpay_public_key"] = _pem_public(keys.pubkey)
    config = AccountConfig(
        channel="wechat",
        account_id=next(_ids),
        base_url=base_url,
        ids={"appid": APPID, "mchid": MCHID, "merchant_serial_no": "3775B6A45ACD588826D15E583A95F5DD"},
        credentials={
            "merchant_private_key": _pem_private(keys.merchant),
            "apiv3_key": APIV3_KEY,
            "api_v2_key": "ApiKeyDemo0123456789abcdefABCDEF",
        },
        options=options,
    )
    adapter = WechatAdapter(config)
    adapter.clock = lambda: float(NOW)
    return adapter


def sign_headers(
    key: rsa.RSAPrivateKey,
    serial: str,
    body: bytes,
    *,
    timestamp: int = NOW,
    nonce: str = "c0ffee42c0ffee42c0ffee42c0ffee42",
) -> dict[str, str]:
    """The response signature built by hand: ``timestamp\\nnonce\\nbody\\n`` signed SHA256withRSA."""
    message = f"{timestamp}\n{nonce}\n".encode() + body + b"\n"
    signature = base64.b64encode(key.sign(message, padding.PKCS1v15(), hashes.SHA256())).decode()
    return {
        "Wechatpay-Timestamp": str(timestamp),
        "Wechatpay-Nonce": nonce,
        "Wechatpay-Signature": signature,
        "Wechatpay-Serial": serial,
        "Wechatpay-Signature-Type": SIG_TYPE,
        "Request-ID": "req-1",
    }


def encrypt(plaintext: bytes, *, aad: str, nonce: str = "nonce1234567", key: str = APIV3_KEY) -> str:
    return base64.b64encode(AESGCM(key.encode()).encrypt(nonce.encode(), plaintext, aad.encode())).decode()


def transaction_notification(**overrides: Any) -> bytes:
    tx = {
        "appid": APPID,
        "mchid": MCHID,
        "out_trade_no": "T20250101001",
        "transaction_id": "4200000001202501010000000001",
        "trade_type": "APP",
        "trade_state": "SUCCESS",
        "success_time": "2025-01-01T12:00:05+08:00",
        "amount": {"total": 990, "payer_total": 990, "currency": "CNY", "payer_currency": "CNY"},
    }
    tx.update(overrides)
    envelope = {
        "id": "EV-2018022511223320873",
        "create_time": "2025-01-01T12:00:05+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "TRANSACTION.SUCCESS",
        "summary": "支付成功",
        "resource": {
            "original_type": "transaction",
            "algorithm": "AEAD_AES_256_GCM",
            "ciphertext": encrypt(json.dumps(tx).encode(), aad="transaction"),
            "associated_data": "transaction",
            "nonce": "nonce1234567",
        },
    }
    return json.dumps(envelope, ensure_ascii=False).encode()


# --------------------------------------------------------------------------------------------
# request signing
# --------------------------------------------------------------------------------------------
DOC_REQUEST_STRING = (
    "POST\n"
    "/v3/pay/transactions/app\n"
    "1735689600\n"
    "593BEC0C930BF1AFEB40B4A08C8FB242\n"
    '{"appid":"wx0000000000000001","mchid":"1900000001","description":"Coffee",'
    '"out_trade_no":"T20250101001","notify_url":"https://pay.example.com/cb/wechat",'
    '"amount":{"total":990,"currency":"CNY"}}\n'
)


def test_request_signing_string_matches_the_doc_example() -> None:
    body = (
        b'{"appid":"wx0000000000000001","mchid":"1900000001","description":"Coffee",'
        b'"out_trade_no":"T20250101001","notify_url":"https://pay.example.com/cb/wechat",'
        b'"amount":{"total":990,"currency":"CNY"}}'
    )
    message = _crypto.request_message(
        "POST", "/v3/pay/transactions/app", "1735689600", "593BEC0C930BF1AFEB40B4A08C8FB242", body
    )
    assert message == DOC_REQUEST_STRING.encode()


def test_request_signature_verifies_with_an_independent_key() -> None:
    key = _rsa()
    signature = _crypto.rsa_sign(key, DOC_REQUEST_STRING.encode())
    raw = base64.b64decode(signature)
    assert len(raw) == 256  # RSA-2048, PKCS#1 v1.5
    key.public_key().verify(raw, DOC_REQUEST_STRING.encode(), padding.PKCS1v15(), hashes.SHA256())  # raises if wrong


def test_get_request_signs_an_empty_body_line() -> None:
    message = _crypto.request_message("get", "/v3/certificates", "1", "N", b"")
    assert message == b"GET\n/v3/certificates\n1\nN\n\n"


def _parse_authorization(value: str) -> tuple[str, dict[str, str]]:
    scheme, _, rest = value.partition(" ")
    return scheme, dict(re.findall(r'(\w+)="([^"]*)"', rest))


def test_sent_request_is_signed_over_the_exact_bytes_and_prefixed_path(keys: Keys, notification_sink) -> None:
    adapter = make_adapter(keys, base_url=notification_sink.url("/wechat"))
    req = PrepayRequest(
        payment_no="T20250101001",
        amount=990,
        currency="CNY",
        description="咖啡 Coffee",
        method="app",
        notify_url="https://pay.example.com/cb/wechat",
        expires_at=datetime(2025, 1, 1, 4, 30, tzinfo=UTC),
    )
    with pytest.raises(ChannelUnavailable):  # the recorder answers unsigned: treated as forged
        adapter.prepay(req)
    sent = notification_sink.wait_for(1)[0]
    assert sent.path == "/wechat/v3/pay/transactions/app"
    scheme, auth = _parse_authorization(sent.headers["Authorization"])
    assert scheme == SIG_TYPE
    assert auth["mchid"] == MCHID and auth["serial_no"] == "3775B6A45ACD588826D15E583A95F5DD"
    assert auth["timestamp"] == str(NOW)
    assert sent.headers["Wechatpay-Serial"] == PUB_KEY_ID
    message = f"POST\n{sent.path}\n{auth['timestamp']}\n{auth['nonce_str']}\n".encode() + sent.body + b"\n"
    keys.merchant.public_key().verify(base64.b64decode(auth["signature"]), message, padding.PKCS1v15(), hashes.SHA256())
    body = json.loads(sent.body)
    assert body["out_trade_no"] == "T20250101001"
    assert body["amount"] == {"total": 990, "currency": "CNY"}
    assert body["time_expire"] == "2025-01-01T12:30:00+08:00"
    assert "咖啡".encode() in sent.body  # serialized once, UTF-8, not re-encoded


def test_query_signs_path_and_query_string_as_sent(keys: Keys, notification_sink) -> None:
    adapter = make_adapter(keys, base_url=notification_sink.url("/wechat"), public_key=False)
    with pytest.raises(ChannelUnavailable):
        adapter.query(payment_no="T-1*x")
    sent = notification_sink.wait_for(1)[0]
    assert sent.method == "GET" and sent.body == b""
    assert sent.path == "/wechat/v3/pay/transactions/out-trade-no/T-1%2Ax?mchid=1900000001"
    assert "Wechatpay-Serial" not in sent.headers  # certificate mode: no public key id to name
    _, auth = _parse_authorization(sent.headers["Authorization"])
    message = f"GET\n{sent.path}\n{auth['timestamp']}\n{auth['nonce_str']}\n\n".encode()
    keys.merchant.public_key().verify(base64.b64decode(auth["signature"]), message, padding.PKCS1v15(), hashes.SHA256())


# --------------------------------------------------------------------------------------------
# client invoke parameters
# --------------------------------------------------------------------------------------------
PREPAY_ID = "wx201410272009395522657a690389285100"


def test_app_pay_string_matches_the_doc_example() -> None:
    assert (
        _crypto.app_pay_message(APPID, "1735689600", "c0ffee42c0ffee42", PREPAY_ID)
        == b"wx0000000000000001\n1735689600\nc0ffee42c0ffee42\nwx201410272009395522657a690389285100\n"
    )


def test_jsapi_pay_string_matches_the_doc_example() -> None:
    assert (
        _crypto.jsapi_pay_message(APPID, "1735689600", "c0ffee42c0ffee42", PREPAY_ID)
        == b"wx0000000000000001\n1735689600\nc0ffee42c0ffee42\n"
        b"prepay_id=wx201410272009395522657a690389285100\n"
    )


def test_app_client_params_are_signed_with_the_merchant_key(keys: Keys) -> None:
    params = make_adapter(keys)._client_params("app", {"prepay_id": PREPAY_ID})
    assert params["appid"] == APPID and params["partnerid"] == MCHID and params["prepayid"] == PREPAY_ID
    assert params["package"] == "Sign=WXPay" and params["timestamp"] == "1735689600"
    message = f"{APPID}\n{params['timestamp']}\n{params['noncestr']}\n{PREPAY_ID}\n".encode()
    keys.merchant.public_key().verify(base64.b64decode(params["sign"]), message, padding.PKCS1v15(), hashes.SHA256())


def test_jsapi_client_params_are_signed_with_the_merchant_key(keys: Keys) -> None:
    params = make_adapter(keys)._client_params("jsapi", {"prepay_id": PREPAY_ID})
    assert params["appId"] == APPID and params["signType"] == "RSA"
    assert params["package"] == f"prepay_id={PREPAY_ID}"
    message = f"{APPID}\n{params['timeStamp']}\n{params['nonceStr']}\nprepay_id={PREPAY_ID}\n".encode()
    keys.merchant.public_key().verify(base64.b64decode(params["paySign"]), message, padding.PKCS1v15(), hashes.SHA256())


def test_native_and_h5_client_params_carry_the_urls(keys: Keys) -> None:
    adapter = make_adapter(keys)
    assert adapter._client_params("native", {"code_url": "weixin://wxpay/bizpayurl?pr=x"}) == {
        "code_url": "weixin://wxpay/bizpayurl?pr=x"
    }
    assert adapter._client_params("h5", {"h5_url": "https://wx.tenpay.com/x"}) == {"h5_url": "https://wx.tenpay.com/x"}


# --------------------------------------------------------------------------------------------
# AES-GCM
# --------------------------------------------------------------------------------------------
DOC_CIPHERTEXT = (
    "YA3jv7COQhmErJ1nLLlpUldQRNkGEHQUceVIhf5aB7cPFRzJuOy7Rw6axxAQBa92LDlLO5YLuumKREXAnxVOIg2UXeYLSA2zgqnedpaU9xpWPg=="
)


def test_aes_gcm_vector_decrypts_to_the_exact_plaintext() -> None:
    plain = _crypto.aes_gcm_decrypt(
        APIV3_KEY, nonce="nonce1234567", associated_data="transaction", ciphertext_b64=DOC_CIPHERTEXT
    )
    assert plain == b'{"out_trade_no":"T1","trade_state":"SUCCESS","amount":{"total":1}}'
    assert len(base64.b64decode(DOC_CIPHERTEXT)) == 82


def test_aes_gcm_with_wrong_associated_data_is_refused() -> None:
    with pytest.raises(ValueError):
        _crypto.aes_gcm_decrypt(
            APIV3_KEY, nonce="nonce1234567", associated_data="refund", ciphertext_b64=DOC_CIPHERTEXT
        )


# --------------------------------------------------------------------------------------------
# v2 signatures
# --------------------------------------------------------------------------------------------
V2_KEY = "ApiKeyDemo0123456789abcdefABCDEF"
V2_REQUEST = {
    "appid": "wx0000000000000001",
    "auth_code": "134567890123456789",
    "body": "coffee",
    "mch_id": "1900000001",
    "nonce_str": "n0nce42",
    "out_trade_no": "T20250101001",
    "spbill_create_ip": "10.0.0.8",
    "total_fee": "1",
}


def test_v2_md5_vector() -> None:
    assert _crypto.v2_string_a(V2_REQUEST) == (
        "appid=wx0000000000000001&auth_code=134567890123456789&body=coffee&mch_id=1900000001"
        "&nonce_str=n0nce42&out_trade_no=T20250101001&spbill_create_ip=10.0.0.8&total_fee=1"
    )
    assert _crypto.v2_sign(V2_REQUEST, V2_KEY, "MD5") == "5EBFCE4DA2BC6625B024AF5600840C0B"


def test_v2_hmac_sha256_vector_includes_sign_type() -> None:
    params = {**V2_REQUEST, "sign_type": "HMAC-SHA256"}
    assert "&sign_type=HMAC-SHA256&" in _crypto.v2_string_a(params)
    assert _crypto.v2_sign(params, V2_KEY, "HMAC-SHA256") == (
        "7082AF0A948EBEE6B7753BDBE4D70B9EBEB4FEFDD2BFB1CD700CF72B702B5A3E"
    )


LEGACY = {
    "appid": "wxd930ea5d5a258f4f",
    "body": "test",
    "device_info": "1000",
    "mch_id": "10000100",
    "nonce_str": "ibuaiVcKdpRxkhJA",
}
LEGACY_KEY = "192006250b4c09247ec02edce69f6a2d"


def test_v2_long_standing_documentation_example_md5() -> None:
    assert _crypto.v2_sign(LEGACY, LEGACY_KEY, "MD5") == "9A0A8659F005D6984697E2CA0A9CF3B7"


def test_v2_long_standing_documentation_example_hmac_sha256() -> None:
    assert _crypto.v2_sign(LEGACY, LEGACY_KEY, "HMAC-SHA256") == (
        "6A9AE1657590FD6257D693A078E1C3E4BB6BA4DC30B23E0EE2496E54170DACD6"
    )


def test_v2_signature_ignores_sign_and_empty_values_and_verifies() -> None:
    params = {**LEGACY, "attach": "", "sign": "9A0A8659F005D6984697E2CA0A9CF3B7"}
    assert _crypto.v2_verify(params, LEGACY_KEY, "MD5")
    assert not _crypto.v2_verify({**params, "body": "test2"}, LEGACY_KEY, "MD5")
    assert not _crypto.v2_verify(params, LEGACY_KEY, "HMAC-SHA256")


# --------------------------------------------------------------------------------------------
# verification of notifications (and, through them, of responses)
# --------------------------------------------------------------------------------------------
def test_notification_signed_by_the_platform_certificate_is_accepted(keys: Keys) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body)
    note = make_adapter(keys).parse_notification(headers, body)
    assert note.kind is NotificationKind.PAYMENT
    assert note.dedupe_key == "EV-2018022511223320873"
    assert note.payment_no == "T20250101001"
    assert note.trade is not None and note.trade.status is TradeStatus.PAID
    assert note.trade.paid_amount == 990
    assert note.trade.paid_at == datetime(2025, 1, 1, 4, 0, 5, tzinfo=UTC)


def test_notification_signed_by_the_public_key_is_accepted(keys: Keys) -> None:
    body = transaction_notification()
    note = make_adapter(keys).parse_notification(sign_headers(keys.pubkey, PUB_KEY_ID, body), body)
    assert note.trade is not None and note.trade.channel_trade_no == "4200000001202501010000000001"


def test_django_meta_style_header_names_are_understood(keys: Keys) -> None:
    body = transaction_notification()
    meta = {
        "HTTP_" + k.upper().replace("-", "_"): v
        for k, v in sign_headers(keys.platform, keys.platform_serial, body).items()
    }
    assert make_adapter(keys).parse_notification(meta, body).kind is NotificationKind.PAYMENT


def test_one_byte_change_to_body_is_rejected(keys: Keys) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body)
    tampered = body.replace(b'"summary"', b'"summarY"')
    assert len(tampered) == len(body) and tampered != body
    with pytest.raises(SignatureInvalid):
        make_adapter(keys).parse_notification(headers, tampered)


def test_one_byte_change_to_timestamp_header_is_rejected(keys: Keys) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body)
    headers["Wechatpay-Timestamp"] = str(NOW + 1)
    with pytest.raises(SignatureInvalid):
        make_adapter(keys).parse_notification(headers, body)


def test_one_byte_change_to_signature_is_rejected(keys: Keys) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body)
    raw = bytearray(base64.b64decode(headers["Wechatpay-Signature"]))
    raw[10] ^= 0x01
    headers["Wechatpay-Signature"] = base64.b64encode(bytes(raw)).decode()
    with pytest.raises(SignatureInvalid):
        make_adapter(keys).parse_notification(headers, body)


def test_signature_by_another_key_under_a_known_serial_is_rejected(keys: Keys) -> None:
    body = transaction_notification()
    with pytest.raises(SignatureInvalid):
        make_adapter(keys).parse_notification(sign_headers(keys.pubkey, keys.platform_serial, body), body)


@pytest.mark.parametrize("skew", [300, -300, 3600])
def test_stale_or_future_timestamp_is_rejected(keys: Keys, skew: int) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body, timestamp=NOW - skew)
    with pytest.raises(SignatureInvalid, match="300 s"):
        make_adapter(keys).parse_notification(headers, body)


def test_timestamp_just_inside_the_window_is_accepted(keys: Keys) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body, timestamp=NOW - 299)
    assert make_adapter(keys).parse_notification(headers, body).kind is NotificationKind.PAYMENT


def test_signtest_probe_is_rejected(keys: Keys) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body)
    headers["Wechatpay-Signature"] = "WECHATPAY/SIGNTEST/" + headers["Wechatpay-Signature"]
    with pytest.raises(SignatureInvalid, match="SIGNTEST"):
        make_adapter(keys).parse_notification(headers, body)


@pytest.mark.parametrize("value", ["WECHATPAY2-SHA256-RSA4096", "wechatpay2-sha256-rsa2048", "", None])
def test_wrong_or_missing_signature_type_is_rejected(keys: Keys, value: str | None) -> None:
    body = transaction_notification()
    headers = sign_headers(keys.platform, keys.platform_serial, body)
    if value is None:
        del headers["Wechatpay-Signature-Type"]
    else:
        headers["Wechatpay-Signature-Type"] = value
    with pytest.raises(SignatureInvalid, match="Signature-Type"):
        make_adapter(keys).parse_notification(headers, body)


def test_unknown_public_key_id_is_rejected_without_refresh(keys: Keys) -> None:
    body = transaction_notification()
    with responses.RequestsMock() as stub:  # any HTTP call would fail the test
        with pytest.raises(SignatureInvalid, match="public key"):
            make_adapter(keys).parse_notification(sign_headers(keys.pubkey, "PUB_KEY_ID_OTHER", body), body)
        assert len(stub.calls) == 0


def _certificates_reply(
    keys: Keys, items: list[tuple[str, str]], *, signer: rsa.RSAPrivateKey, serial: str
) -> tuple[bytes, dict[str, str]]:
    data = [
        {
            "serial_no": s,
            "effective_time": "2024-01-01T00:00:00+08:00",
            "expire_time": "2034-01-01T00:00:00+08:00",
            "encrypt_certificate": {
                "algorithm": "AEAD_AES_256_GCM",
                "nonce": "certnonce123",
                "associated_data": "certificate",
                "ciphertext": encrypt(pem.encode(), aad="certificate", nonce="certnonce123"),
            },
        }
        for s, pem in items
    ]
    body = json.dumps({"data": data}).encode()
    return body, sign_headers(signer, serial, body)


def test_unknown_serial_triggers_one_refresh_and_then_verifies(keys: Keys) -> None:
    adapter = make_adapter(keys)
    reply, headers = _certificates_reply(
        keys,
        [(keys.platform_serial, keys.platform_cert), (keys.rotated_serial, keys.rotated_cert)],
        signer=keys.rotated,
        serial=keys.rotated_serial,
    )
    body = transaction_notification()
    with responses.RequestsMock() as stub:
        stub.get(f"{BASE}/v3/certificates", body=reply, headers=headers, content_type="application/json")
        note = adapter.parse_notification(sign_headers(keys.rotated, keys.rotated_serial, body), body)
        assert len(stub.calls) == 1
        assert stub.calls[0].request.headers["Authorization"].startswith(SIG_TYPE)
        # now cached: a second notification needs no download
        again = adapter.parse_notification(sign_headers(keys.rotated, keys.rotated_serial, body), body)
        assert len(stub.calls) == 1
    assert note.kind is NotificationKind.PAYMENT and again.dedupe_key == note.dedupe_key


def test_unknown_serial_still_unknown_after_refresh_is_rejected(keys: Keys) -> None:
    reply, headers = _certificates_reply(
        keys, [(keys.platform_serial, keys.platform_cert)], signer=keys.platform, serial=keys.platform_serial
    )
    body = transaction_notification()
    with responses.RequestsMock() as stub:
        stub.get(f"{BASE}/v3/certificates", body=reply, headers=headers, content_type="application/json")
        with pytest.raises(SignatureInvalid, match="unknown platform certificate"):
            make_adapter(keys).parse_notification(sign_headers(keys.rotated, "DEADBEEF", body), body)
        assert len(stub.calls) == 1


def test_certificate_download_with_a_forged_certificate_is_not_trusted(keys: Keys) -> None:
    reply, _headers = _certificates_reply(
        keys, [(keys.rotated_serial, keys.rotated_cert)], signer=keys.rotated, serial=keys.rotated_serial
    )
    forged = json.loads(reply)
    forged["data"][0]["encrypt_certificate"]["ciphertext"] = encrypt(
        keys.rotated_cert.encode(), aad="certificate", nonce="certnonce123", key="X" * 32
    )
    forged_body = json.dumps(forged).encode()
    body = transaction_notification()
    with responses.RequestsMock() as stub:
        stub.get(
            f"{BASE}/v3/certificates",
            body=forged_body,
            headers=sign_headers(keys.rotated, keys.rotated_serial, forged_body),
        )
        with pytest.raises(SignatureInvalid):
            make_adapter(keys).parse_notification(sign_headers(keys.rotated, keys.rotated_serial, body), body)


def test_notification_for_another_merchant_is_rejected(keys: Keys) -> None:
    body = transaction_notification(mchid="1900000002")
    with pytest.raises(SignatureInvalid, match="mchid"):
        make_adapter(keys).parse_notification(sign_headers(keys.platform, keys.platform_serial, body), body)


def test_notification_for_another_appid_is_rejected(keys: Keys) -> None:
    body = transaction_notification(appid="wx0000000000000009")
    with pytest.raises(SignatureInvalid, match="appid"):
        make_adapter(keys).parse_notification(sign_headers(keys.platform, keys.platform_serial, body), body)


def test_notification_with_plain_resource_type_is_rejected(keys: Keys) -> None:
    envelope = json.loads(transaction_notification())
    envelope["resource_type"] = "plain-resource"
    body = json.dumps(envelope).encode()
    with pytest.raises(SignatureInvalid, match="encrypt-resource"):
        make_adapter(keys).parse_notification(sign_headers(keys.platform, keys.platform_serial, body), body)


def test_refund_notification_is_parsed(keys: Keys) -> None:
    refund = {
        "mchid": MCHID,
        "out_trade_no": "T20250101001",
        "transaction_id": "4200000001",
        "out_refund_no": "R1",
        "refund_id": "50000000382019052709732678859",
        "refund_status": "SUCCESS",
        "success_time": "2025-01-02T10:00:00+08:00",
        "user_received_account": "招商银行信用卡0403",
        "amount": {"total": 990, "refund": 500, "payer_total": 990, "payer_refund": 500},
    }
    envelope = {
        "id": "EV-R1",
        "create_time": "2025-01-02T10:00:00+08:00",
        "resource_type": "encrypt-resource",
        "event_type": "REFUND.SUCCESS",
        "summary": "退款成功",
        "resource": {
            "original_type": "refund",
            "algorithm": "AEAD_AES_256_GCM",
            "associated_data": "refund",
            "nonce": "nonce1234567",
            "ciphertext": encrypt(json.dumps(refund).encode(), aad="refund"),
        },
    }
    body = json.dumps(envelope).encode()
    headers = sign_headers(keys.platform, keys.platform_serial, body)
    note = make_adapter(keys).parse_notification(headers, body)
    assert note.kind is NotificationKind.REFUND and note.dedupe_key == "EV-R1"
    assert note.refund is not None
    assert (note.refund.refund_no, note.refund.status) == ("R1", RefundStatus.SUCCEEDED)
    assert note.refund.amount == 500
    assert note.refund.channel_refund_no == "50000000382019052709732678859"


def test_ack_accepts_with_empty_200_and_refuses_with_fail_json(keys: Keys) -> None:
    adapter = make_adapter(keys)
    ok = adapter.ack(True)
    assert (ok.status, ok.body) == (200, b"")
    bad = adapter.ack(False, "签名错误")
    assert 400 <= bad.status < 500
    assert json.loads(bad.body) == {"code": "FAIL", "message": "签名错误"}


def test_unsigned_2xx_response_is_treated_as_forged(keys: Keys) -> None:
    with responses.RequestsMock() as stub:
        stub.get(f"{BASE}/v3/pay/transactions/out-trade-no/T1", json={"trade_state": "SUCCESS"})
        with pytest.raises(ChannelUnavailable, match="missing Wechatpay signature headers"):
            make_adapter(keys).query(payment_no="T1")


def test_signed_204_with_empty_body_verifies(keys: Keys) -> None:
    with responses.RequestsMock() as stub:
        stub.post(
            f"{BASE}/v3/pay/transactions/out-trade-no/T1/close",
            status=204,
            body=b"",
            headers=sign_headers(keys.pubkey, PUB_KEY_ID, b""),
        )
        make_adapter(keys).close(payment_no="T1")
        assert json.loads(stub.calls[0].request.body) == {"mchid": MCHID}


# --------------------------------------------------------------------------------------------
# status and error maps
# --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("state", "expected"),
    [
        ("NOTPAY", TradeStatus.NOT_PAID),
        ("USERPAYING", TradeStatus.USER_PAYING),
        ("SUCCESS", TradeStatus.PAID),
        ("REFUND", TradeStatus.PAID),
        ("CLOSED", TradeStatus.CLOSED),
        ("REVOKED", TradeStatus.REVOKED),
        ("PAYERROR", TradeStatus.FAILED),
        ("ACCEPT", TradeStatus.NOT_PAID),
    ],
)
def test_trade_states_map_explicitly(keys: Keys, state: str, expected: TradeStatus) -> None:
    trade = make_adapter(keys)._trade_state(
        {"mchid": MCHID, "out_trade_no": "T1", "trade_state": state, "amount": {"total": 5}}
    )
    assert trade.status is expected
    assert trade.paid_amount == (5 if expected is TradeStatus.PAID else None)


def test_unknown_trade_state_raises_instead_of_guessing(keys: Keys) -> None:
    with pytest.raises(ChannelUnavailable, match="trade_state"):
        make_adapter(keys)._trade_state({"mchid": MCHID, "out_trade_no": "T1", "trade_state": "WEIRD"})


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("PROCESSING", RefundStatus.PROCESSING),
        ("SUCCESS", RefundStatus.SUCCEEDED),
        ("CLOSED", RefundStatus.FAILED),
        ("ABNORMAL", RefundStatus.ABNORMAL),
    ],
)
def test_refund_states_map_explicitly(keys: Keys, status: str, expected: RefundStatus) -> None:
    data = {"out_refund_no": "R1", "status": status, "amount": {"refund": 1}}
    state = make_adapter(keys)._refund_state(data, expected_refund_no="R1")
    assert state.status is expected


def test_unknown_refund_status_raises(keys: Keys) -> None:
    with pytest.raises(ChannelUnavailable):
        make_adapter(keys)._refund_state({"out_refund_no": "R1", "status": "PENDING"}, expected_refund_no="R1")


@pytest.mark.parametrize(
    ("http", "code", "error", "canonical"),
    [
        (404, "ORDER_NOT_EXIST", ChannelRejected, "ORDER_NOT_EXIST"),
        (404, "ORDERNOTEXIST", ChannelRejected, "ORDER_NOT_EXIST"),
        (403, "NO_AUTH", ChannelRejected, "NO_AUTH"),
        (403, "NOAUTH", ChannelRejected, "NO_AUTH"),
        (403, "RULELIMIT", ChannelRejected, "RULE_LIMIT"),
        (403, "NOTENOUGH", ChannelRejected, "NOT_ENOUGH"),
        (403, "ACCOUNTERROR", ChannelRejected, "ACCOUNT_ERROR"),
        (400, "PARAM_ERROR", ChannelRejected, "PARAM_ERROR"),
        (401, "SIGN_ERROR", ChannelRejected, "SIGN_ERROR"),
        (500, "SYSTEM_ERROR", ChannelUnavailable, "SYSTEM_ERROR"),
        (500, "SYSTEMERROR", ChannelUnavailable, "SYSTEM_ERROR"),
        (500, "BANKERROR", ChannelUnavailable, "BANK_ERROR"),
        (429, "FREQUENCY_LIMITED", ChannelUnavailable, "FREQUENCY_LIMITED"),
        (429, "RATELIMIT_EXCEEDED", ChannelUnavailable, "RATELIMIT_EXCEEDED"),
        (503, "SERVICE_UNAVAILABLE", ChannelUnavailable, "SERVICE_UNAVAILABLE"),
    ],
)
def test_error_codes_map_by_status_then_code_in_both_spellings(
    http: int, code: str, error: type, canonical: str
) -> None:
    with pytest.raises(error) as caught:
        _v3.WechatBase._raise_for_error(http, json.dumps({"code": code, "message": "m"}).encode())
    assert caught.value.code == canonical
    assert caught.value.raw["http_status"] == http


def test_error_reply_without_a_readable_code_is_unavailable() -> None:
    with pytest.raises(ChannelUnavailable):
        _v3.WechatBase._raise_for_error(400, b"<html>bad gateway</html>")


def test_query_of_an_unknown_order_is_not_found(keys: Keys) -> None:
    with responses.RequestsMock() as stub:
        stub.get(
            f"{BASE}/v3/pay/transactions/out-trade-no/T404",
            status=404,
            json={"code": "ORDERNOTEXIST", "message": "订单不存在"},
        )
        state = make_adapter(keys).query(payment_no="T404")
    assert state.status is TradeStatus.NOT_FOUND and state.payment_no == "T404"


def test_time_expire_is_rfc3339_in_beijing_time() -> None:
    moment = datetime(2025, 1, 1, 4, 30, 0, 123, tzinfo=UTC)
    assert _v3._rfc3339_beijing(moment) == "2025-01-01T12:30:00+08:00"
    with pytest.raises(ValueError):
        _v3._rfc3339_beijing(datetime(2025, 1, 1, 4, 30))  # naive


# --------------------------------------------------------------------------------------------
# v2 XML
# --------------------------------------------------------------------------------------------
def test_v2_xml_round_trip_with_cdata() -> None:
    parsed = _xml.parse(
        b"<xml><return_code><![CDATA[SUCCESS]]></return_code><body>a &amp; b</body><attach></attach></xml>"
    )
    assert parsed == {"return_code": "SUCCESS", "body": "a & b", "attach": ""}
    assert _xml.parse(_xml.build({"body": "<x> & y"})) == {"body": "<x> & y"}


_INTERNAL_ENTITY = '<!DOCTYPE xml [<!ENTITY a "EXPANDED">]><xml><return_code>&a;</return_code></xml>'
_BILLION_LAUGHS = (
    '<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY lol "lol">'
    + "".join(f'<!ENTITY lol{i} "{f"&lol{i - 1};" * 10 if i > 1 else "&lol;" * 10}">' for i in range(1, 10))
    + "]><xml><return_code>&lol9;</return_code></xml>"
).encode()
HOSTILE_XML = {
    "external entity": b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
    b"<xml><a>&e;</a></xml>",
    "external parameter entity": b'<?xml version="1.0"?><!DOCTYPE xml [<!ENTITY % p SYSTEM "http://127.0.0.1:9/x.dtd">'
    b" %p;]><xml/>",
    "external DTD": b'<?xml version="1.0"?><!DOCTYPE xml SYSTEM "http://127.0.0.1:9/x.dtd"><xml/>',
    "nested entities": b'<!DOCTYPE xml [<!ENTITY a "aaaaaaaaaa"><!ENTITY b "&a;&a;&a;&a;">]><xml><a>&b;</a></xml>',
    "billion laughs": _BILLION_LAUGHS,
    "lower-case doctype": b"<!doctype xml><xml><a>1</a></xml>",
    "utf-16 with bom": ('<?xml version="1.0" encoding="UTF-16"?>' + _INTERNAL_ENTITY).encode("utf-16"),
    "utf-16le without bom": ('<?xml version="1.0" encoding="UTF-16LE"?>' + _INTERNAL_ENTITY).encode("utf-16-le"),
    "utf-16be without bom": ('<?xml version="1.0" encoding="UTF-16BE"?>' + _INTERNAL_ENTITY).encode("utf-16-be"),
    "utf-32 with bom": ('<?xml version="1.0" encoding="UTF-32"?>' + _INTERNAL_ENTITY).encode("utf-32"),
    "utf-32le without bom": ('<?xml version="1.0" encoding="UTF-32LE"?>' + _INTERNAL_ENTITY).encode("utf-32-le"),
}


@pytest.mark.parametrize("doc", HOSTILE_XML.values(), ids=HOSTILE_XML.keys())
def test_v2_xml_with_doctype_or_entities_is_refused_in_any_encoding(doc: bytes) -> None:
    with pytest.raises(_xml.XmlError) as caught:
        _xml.parse(doc)
    assert "EXPANDED" not in str(caught.value) and "lollol" not in str(caught.value)


def test_a_utf16_document_without_doctype_is_still_read() -> None:
    assert _xml.parse("<xml><return_code>SUCCESS</return_code></xml>".encode("utf-16")) == {"return_code": "SUCCESS"}


@pytest.mark.parametrize("doc", HOSTILE_XML.values(), ids=HOSTILE_XML.keys())
def test_hostile_v2_reply_is_an_unreadable_answer_never_expanded(keys: Keys, doc: bytes) -> None:
    with responses.RequestsMock() as rsps:
        rsps.add(responses.POST, f"{BASE}/pay/micropay", body=doc, content_type="text/xml")
        with pytest.raises(ChannelUnavailable, match="unreadable wechat v2 reply") as caught:
            make_adapter(keys).charge(
                ChargeRequest(
                    payment_no="T20250101009",
                    amount=1,
                    currency="CNY",
                    description="coffee",
                    auth_code="134567890123456789",
                )
            )
    assert caught.value.raw == {} and "EXPANDED" not in caught.value.message


# --------------------------------------------------------------------------------------------
# bills
# --------------------------------------------------------------------------------------------
ALL_HEADER = ",".join(
    [
        "交易时间",
        "公众账号ID",
        "商户号",
        "特约商户号",
        "设备号",
        "微信订单号",
        "商户订单号",
        "用户标识",
        "交易类型",
        "交易状态",
        "付款银行",
        "货币种类",
        "应结订单金额",
        "代金券金额",
        "微信退款单号",
        "商户退款单号",
        "退款金额",
        "充值券退款金额",
        "退款类型",
        "退款状态",
        "商品名称",
        "商户数据包",
        "手续费",
        "费率",
        "订单金额",
        "申请退款金额",
        "费率备注",
    ]
)


def _row(*cells: str) -> str:
    return ",".join("`" + c for c in cells)


ALL_BILL = "\r\n".join(
    [
        ALL_HEADER,
        _row(
            "2025-01-01 12:00:05",
            APPID,
            MCHID,
            "0",
            "",
            "4200000001",
            "T20250101001",
            "oUser1",
            "APP",
            "SUCCESS",
            "CMB_DEBIT",
            "CNY",
            "9.90",
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            "Coffee",
            "",
            "0.05940",
            "0.60%",
            "9.90",
            "0.00",
            "",
        ),
        _row(
            "2025-01-01 13:00:00",
            APPID,
            MCHID,
            "0",
            "",
            "4200000001",
            "T20250101001",
            "oUser1",
            "APP",
            "REFUND",
            "CMB_DEBIT",
            "CNY",
            "0.00",
            "0.00",
            "50000000382019052709732678859",
            "R1",
            "5.00",
            "0.00",
            "ORIGINAL",
            "SUCCESS",
            "Coffee",
            "",
            "-0.03000",
            "0.60%",
            "0.00",
            "5.00",
            "",
        ),
        _row(
            "2025-01-01 14:00:00",
            APPID,
            MCHID,
            "0",
            "POS-1",
            "4200000002",
            "T20250101002",
            "oUser2",
            "MICROPAY",
            "REVOKED",
            "OTHERS",
            "CNY",
            "1.00",
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            "Tea",
            "",
            "0.00600",
            "0.60%",
            "1.00",
            "0.00",
            "",
        ),
        "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额",
        _row("3", "10.90", "5.00", "0.00", "0.03540", "10.90", "5.00"),
        "",
    ]
).encode()

LEGACY_BILL = "\n".join(
    [
        "交易时间,公众账号ID,商户号,子商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
        "总金额,企业红包金额,微信退款单号,商户退款单号,退款金额,企业红包退款金额,退款类型,退款状态,商品名称,商户数据包,"
        "手续费,费率",
        _row(
            "2025-01-01 12:00:05",
            APPID,
            MCHID,
            "0",
            "",
            "4200000009",
            "T9",
            "oUser9",
            "NATIVE",
            "SUCCESS",
            "CFT",
            "CNY",
            "123.45",
            "0.00",
            "0",
            "0",
            "0.00",
            "0.00",
            "",
            "",
            "Book",
            "",
            "0.74000",
            "0.60%",
        ),
        "总交易单数,总交易额,总退款金额,总企业红包退款金额,手续费总金额",
        _row("1", "123.45", "0.00", "0.00", "0.74000"),
    ]
).encode()


def test_all_bill_rows_are_read_by_header_name_and_stop_at_the_summary() -> None:
    rows = list(_bill.parse_bill(ALL_BILL))
    assert [r.kind for r in rows] == [BillRowKind.PAYMENT, BillRowKind.REFUND, BillRowKind.REVOKED]
    pay, refund, revoked = rows
    assert (pay.payment_no, pay.channel_trade_no, pay.amount, pay.fee, pay.currency) == (
        "T20250101001",
        "4200000001",
        990,
        6,
        "CNY",
    )
    assert pay.occurred_at == datetime(2025, 1, 1, 12, 0, 5, tzinfo=timezone(timedelta(hours=8)))
    assert (refund.payment_no, refund.refund_no, refund.channel_refund_no, refund.amount, refund.status) == (
        "T20250101001",
        "R1",
        "50000000382019052709732678859",
        500,
        "SUCCESS",
    )
    assert refund.fee == -3
    assert (revoked.payment_no, revoked.amount, revoked.status) == ("T20250101002", 100, "REVOKED")
    assert revoked.raw["设备号"] == "POS-1"


def test_legacy_bill_header_set_is_understood() -> None:
    [row] = list(_bill.parse_bill(LEGACY_BILL))
    assert (row.kind, row.payment_no, row.amount, row.fee) == (BillRowKind.PAYMENT, "T9", 12345, 74)


def test_bill_without_summary_row_is_refused_as_truncated() -> None:
    truncated = b"\n".join(ALL_BILL.split(b"\r\n")[:2])
    with pytest.raises(_bill.BillError, match="summary"):
        list(_bill.parse_bill(truncated))


def test_bill_row_with_unknown_trade_status_is_refused() -> None:
    odd = ALL_BILL.replace(b"`REVOKED", b"`FROZEN")
    with pytest.raises(_bill.BillError, match="FROZEN"):
        list(_bill.parse_bill(odd))


@pytest.mark.parametrize(("text", "fen"), [("9.90", 990), ("0.01", 1), ("123.4", 12340), ("7", 700)])
def test_yuan_converts_to_fen_exactly(text: str, fen: int) -> None:
    assert _bill.yuan_to_fen(text) == fen


@pytest.mark.parametrize("text", ["1.005", "abc", "NaN", "0.001"])
def test_yuan_with_fractions_of_a_fen_is_refused(text: str) -> None:
    with pytest.raises(_bill.BillError):
        _bill.yuan_to_fen(text)


def _stub_bill(stub: responses.RequestsMock, keys: Keys, content: bytes, hash_over: bytes) -> None:
    info = json.dumps(
        {
            "hash_type": "SHA1",
            "hash_value": hashlib.sha1(hash_over).hexdigest(),
            "download_url": f"{BASE}/v3/billdownload/file?token=abc%3D",
        }
    ).encode()
    stub.get(
        f"{BASE}/v3/bill/tradebill",
        body=info,
        content_type="application/json",
        headers=sign_headers(keys.platform, keys.platform_serial, info),
        match=[
            responses.matchers.query_param_matcher({"bill_date": "2025-01-01", "bill_type": "ALL", "tar_type": "GZIP"})
        ],
    )
    stub.get(f"{BASE}/v3/billdownload/file", body=content, content_type="application/octet-stream")


@pytest.mark.parametrize("hash_scope", ["gzip", "plain"])
def test_fetch_bill_checks_sha1_over_gzip_or_plain_bytes(keys: Keys, hash_scope: str) -> None:
    packed = gzip.compress(ALL_BILL)
    with responses.RequestsMock() as stub:
        _stub_bill(stub, keys, packed, packed if hash_scope == "gzip" else ALL_BILL)
        rows = list(make_adapter(keys, public_key=False).fetch_bill(date(2025, 1, 1)))
        download = stub.calls[1].request
    assert [r.kind for r in rows] == [BillRowKind.PAYMENT, BillRowKind.REFUND, BillRowKind.REVOKED]
    _, auth = _parse_authorization(download.headers["Authorization"])
    message = (f"GET\n/wechat/v3/billdownload/file?token=abc%3D\n{auth['timestamp']}\n{auth['nonce_str']}\n\n").encode()
    keys.merchant.public_key().verify(base64.b64decode(auth["signature"]), message, padding.PKCS1v15(), hashes.SHA256())


def test_fetch_bill_with_a_hash_mismatch_is_unavailable(keys: Keys) -> None:
    packed = gzip.compress(ALL_BILL)
    with responses.RequestsMock() as stub:
        _stub_bill(stub, keys, packed, b"something else")
        bill = make_adapter(keys, public_key=False).fetch_bill(date(2025, 1, 1))
        with pytest.raises(ChannelUnavailable, match="hash"):
            list(bill)  # checked once the stream has ended: the rows read so far are void


def test_fetch_bill_on_a_day_without_statement_is_empty(keys: Keys) -> None:
    with responses.RequestsMock() as stub:
        stub.get(
            f"{BASE}/v3/bill/tradebill",
            status=400,
            json={"code": "NO_STATEMENT_EXIST", "message": "No statement exist"},
        )
        assert list(make_adapter(keys).fetch_bill(date(2025, 1, 1))) == []


def test_fetch_bill_refuses_a_download_url_on_a_foreign_host(keys: Keys) -> None:
    info = json.dumps(
        {
            "hash_type": "SHA1",
            "hash_value": "00",
            "download_url": "https://evil.example.com/v3/billdownload/file?token=x",
        }
    ).encode()
    with responses.RequestsMock() as stub:
        stub.get(
            f"{BASE}/v3/bill/tradebill", body=info, headers=sign_headers(keys.platform, keys.platform_serial, info)
        )
        with pytest.raises(ChannelUnavailable, match="download_url"):
            make_adapter(keys).fetch_bill(date(2025, 1, 1))
        assert len(stub.calls) == 1


# --------------------------------------------------------------------------------------------
# per-process key caches
# --------------------------------------------------------------------------------------------
def _counting(monkeypatch: pytest.MonkeyPatch, name: str) -> list[str]:
    """Count calls of a loader in ``_v3`` (the cache builds through it)."""
    calls: list[str] = []
    real = getattr(_v3, name)

    def counted(*args: Any) -> Any:
        calls.append(name)
        return real(*args)

    monkeypatch.setattr(_v3, name, counted)
    return calls


def _another_instance(config: AccountConfig) -> WechatAdapter:
    """A new adapter for the same account, as every call builds one (clock pinned like make_adapter)."""
    adapter = WechatAdapter(config)
    adapter.clock = lambda: float(NOW)
    return adapter


def test_merchant_key_is_parsed_once_per_process_and_again_after_rotation(
    keys: Keys, monkeypatch: pytest.MonkeyPatch
) -> None:
    loads = _counting(monkeypatch, "_load_private_key")
    first = make_adapter(keys)
    second = _another_instance(first.config)
    assert first._merchant_key() is second._merchant_key() and len(loads) == 1
    rotated = dataclasses.replace(
        first.config, credentials={**first.config.credentials, "merchant_private_key": _pem_private(keys.rotated)}
    )
    assert WechatAdapter(rotated)._merchant_key().private_numbers() == keys.rotated.private_numbers()
    assert len(loads) == 2


def test_verification_keys_are_parsed_once_per_process(keys: Keys, monkeypatch: pytest.MonkeyPatch) -> None:
    certificate_loads = _counting(monkeypatch, "_load_platform_certificates")
    public_key_loads = _counting(monkeypatch, "_load_public_key")
    config = make_adapter(keys).config
    body = transaction_notification()
    for _ in range(3):
        _another_instance(config).parse_notification(sign_headers(keys.platform, keys.platform_serial, body), body)
        _another_instance(config).parse_notification(sign_headers(keys.pubkey, PUB_KEY_ID, body), body)
    assert (len(certificate_loads), len(public_key_loads)) == (1, 1)
    renewed = dataclasses.replace(config, options={**config.options, "wechatpay_public_key": _pem_public(keys.rotated)})
    with pytest.raises(SignatureInvalid):  # the new key is used at once: the old signature fails
        _another_instance(renewed).parse_notification(sign_headers(keys.pubkey, PUB_KEY_ID, body), body)
    assert len(public_key_loads) == 2


def test_downloaded_platform_keys_are_forgotten_when_the_apiv3_key_changes(keys: Keys) -> None:
    adapter = make_adapter(keys)
    reply, headers = _certificates_reply(
        keys, [(keys.rotated_serial, keys.rotated_cert)], signer=keys.rotated, serial=keys.rotated_serial
    )
    body = transaction_notification()
    with responses.RequestsMock() as stub:
        stub.get(f"{BASE}/v3/certificates", body=reply, headers=headers, content_type="application/json")
        adapter.parse_notification(sign_headers(keys.rotated, keys.rotated_serial, body), body)
        assert len(stub.calls) == 1
    assert _another_instance(adapter.config)._known_platform_key(keys.rotated_serial) is not None
    other = dataclasses.replace(adapter.config, credentials={**adapter.config.credentials, "apiv3_key": "9" * 32})
    assert _another_instance(other)._known_platform_key(keys.rotated_serial) is None


# --------------------------------------------------------------------------------------------
# errors stay inside the contract
# --------------------------------------------------------------------------------------------
def _prepay_request(**change: Any) -> PrepayRequest:
    fields: dict[str, Any] = {
        "payment_no": "T20250101001",
        "amount": 990,
        "currency": "CNY",
        "description": "Coffee",
        "method": "app",
        "notify_url": "https://pay.example.com/cb/wechat",
        "expires_at": datetime(2025, 1, 1, 4, 30, tzinfo=UTC),
    }
    return PrepayRequest(**{**fields, **change})


@pytest.mark.parametrize(
    ("change", "code"),
    [
        ({"method": "jsapi"}, "PAYER_ID_REQUIRED"),
        ({"method": "h5"}, "CLIENT_IP_REQUIRED"),
        ({"amount": -1}, "INVALID_AMOUNT"),
        ({"amount": 9.9}, "INVALID_AMOUNT"),
        ({"expires_at": datetime(2025, 1, 1, 12, 0)}, "INVALID_TIME"),
    ],
)
def test_malformed_prepay_input_is_rejected_without_a_call(keys: Keys, change: dict, code: str) -> None:
    with responses.RequestsMock():  # any HTTP call would fail the test
        with pytest.raises(ChannelRejected) as caught:
            make_adapter(keys).prepay(_prepay_request(**change))
    assert caught.value.code == code


def test_a_query_naming_no_trade_is_rejected(keys: Keys) -> None:
    with pytest.raises(ChannelRejected) as caught:
        make_adapter(keys).query()
    assert caught.value.code == "TRADE_REF_REQUIRED"


@pytest.mark.parametrize(
    ("refund_no", "acceptable"),
    [("R2025-01_01|a*b@c", True), ("R" * 64, True), ("R" * 65, False), ("R 1", False), ("退款1", False), ("", False)],
)
def test_refund_numbers_follow_wechats_length_and_charset(keys: Keys, refund_no: str, acceptable: bool) -> None:
    adapter = make_adapter(keys)
    assert (adapter.refund_no_problem(refund_no=refund_no, payment_no="T1") is None) is acceptable
    if not acceptable:
        request = RefundRequest(
            refund_no=refund_no,
            payment_no="T1",
            channel_trade_no=None,
            amount=1,
            total_amount=1,
            currency="CNY",
            reason="",
        )
        with responses.RequestsMock(), pytest.raises(ChannelRejected) as caught:
            adapter.refund(request)
        assert caught.value.code == "INVALID_REFUND_NO"


def test_a_code_that_is_not_a_wechat_payment_code_is_refused_without_a_call(keys: Keys) -> None:
    request = ChargeRequest(payment_no="T1", amount=1, currency="CNY", description="x", auth_code="284567890123456789")
    with responses.RequestsMock(), pytest.raises(ChannelRejected) as caught:
        make_adapter(keys).charge(request)
    assert caught.value.code == "AUTH_CODE_INVALID"


@pytest.mark.parametrize(
    "tx",
    [
        {"out_trade_no": "T1", "trade_state": "SUCCESS", "amount": [990]},
        {"out_trade_no": "T1", "trade_state": "SUCCESS", "amount": {"total": "9.90", "currency": "CNY"}},
        {"out_trade_no": "T1", "trade_state": ["SUCCESS"]},
        [1, 2, 3],
    ],
)
def test_signed_replies_of_an_unexpected_shape_are_unavailable(keys: Keys, tx: Any) -> None:
    body = json.dumps(tx).encode()
    with responses.RequestsMock() as stub:
        stub.get(
            f"{BASE}/v3/pay/transactions/out-trade-no/T1",
            body=body,
            headers=sign_headers(keys.platform, keys.platform_serial, body),
            content_type="application/json",
        )
        with pytest.raises(ChannelUnavailable):
            make_adapter(keys).query(payment_no="T1")


def test_a_paid_transaction_carries_its_amount_and_currency(keys: Keys) -> None:
    adapter = make_adapter(keys)
    state = adapter._trade_state({"out_trade_no": "T1", "trade_state": "SUCCESS", "amount": {"total": 1}})
    assert (state.paid_amount, state.currency) == (1, "CNY")
    with pytest.raises(ChannelUnavailable, match=r"amount\.total"):
        adapter._trade_state({"out_trade_no": "T1", "trade_state": "SUCCESS", "amount": {"currency": "CNY"}})


# --------------------------------------------------------------------------------------------
# payment code (API v2): every answer classified
# --------------------------------------------------------------------------------------------
MICROPAY, ORDERQUERY, REVERSE = f"{BASE}/pay/micropay", f"{BASE}/pay/orderquery", f"{BASE}/secapi/pay/reverse"


def v2_reply(*, sign_key: str = V2_KEY, **fields: str) -> bytes:
    """A signed v2 answer built by hand (HMAC-SHA256 over the sorted non-empty fields + key)."""
    params = {"return_code": "SUCCESS", "return_msg": "OK", "appid": APPID, "mch_id": MCHID, "nonce_str": "n0nce"}
    params.update({"sign_type": "HMAC-SHA256", **fields})
    string_a = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")
    message = f"{string_a}&key={sign_key}".encode()
    params["sign"] = hmac.new(sign_key.encode(), message, hashlib.sha256).hexdigest().upper()
    return ("<xml>" + "".join(f"<{k}><![CDATA[{v}]]></{k}>" for k, v in params.items()) + "</xml>").encode()


PAID_FIELDS = {
    "out_trade_no": "T1",
    "transaction_id": "4200000001",
    "total_fee": "1200",
    "fee_type": "CNY",
    "time_end": "20250101120005",
}


def _charge_request(auth_code: str = "134567890123456789") -> ChargeRequest:
    return ChargeRequest(payment_no="T1", amount=1200, currency="CNY", description="coffee", auth_code=auth_code)


def _micropay(keys: Keys, body: bytes | Exception, *, status: int = 200) -> Any:
    with responses.RequestsMock() as stub:
        stub.post(MICROPAY, body=body, status=status, content_type="text/xml")
        return make_adapter(keys).charge(_charge_request())


def test_micropay_success_is_paid_with_wechats_amount_and_currency(keys: Keys) -> None:
    state = _micropay(keys, v2_reply(result_code="SUCCESS", **PAID_FIELDS))
    assert (state.status, state.paid_amount, state.currency, state.channel_trade_no) == (
        TradeStatus.PAID,
        1200,
        "CNY",
        "4200000001",
    )


def test_micropay_password_wait_is_user_paying(keys: Keys) -> None:
    state = _micropay(keys, v2_reply(result_code="FAIL", err_code="USERPAYING", out_trade_no="T1"))
    assert (state.status, state.paid_amount) == (TradeStatus.USER_PAYING, None)


@pytest.mark.parametrize(
    "err_code",
    [
        "AUTHCODEEXPIRE",
        "AUTH_CODE_ERROR",
        "AUTH_CODE_INVALID",
        "NOTENOUGH",
        "NOTSUPORTCARD",
        "BUYER_MISMATCH",
        "ORDERCLOSED",
        "ORDERREVERSED",
        "OUT_TRADE_NO_USED",
        "PARAM_ERROR",
        "NOAUTH",
    ],
)
def test_micropay_definite_failures_are_rejected_with_wechats_code(keys: Keys, err_code: str) -> None:
    with pytest.raises(ChannelRejected) as caught:
        _micropay(keys, v2_reply(result_code="FAIL", err_code=err_code))
    assert caught.value.code == err_code


@pytest.mark.parametrize(
    ("body", "status"),
    [
        (v2_reply(result_code="FAIL", err_code="SYSTEMERROR"), 200),
        (v2_reply(result_code="FAIL", err_code="BANKERROR"), 200),
        (v2_reply(result_code="FAIL", err_code="A_CODE_NOBODY_KNOWS"), 200),
        (v2_reply(result_code="MAYBE"), 200),
        (b"<xml><return_code>FAIL</return_code><return_msg>sign error</return_msg></xml>", 200),
        (v2_reply(result_code="SUCCESS", sign_key="another-key-0123456789abcdefABCD", **PAID_FIELDS), 200),
        (v2_reply(result_code="SUCCESS", **{**PAID_FIELDS, "total_fee": ""}), 200),
        (b"<html>bad gateway</html>", 502),
        (requests.ReadTimeout("slow"), 200),
        (requests.ConnectionError("reset"), 200),
    ],
    ids=[
        "SYSTEMERROR",
        "BANKERROR",
        "unknown code",
        "odd result",
        "return FAIL",
        "bad sign",
        "no fee",
        "502",
        "timeout",
        "reset",
    ],
)
def test_micropay_unknown_outcomes_are_unavailable_never_failed(keys: Keys, body: Any, status: int) -> None:
    with pytest.raises(ChannelUnavailable):
        _micropay(keys, body, status=status)


def test_micropay_orderpaid_is_read_back_with_the_v2_orderquery(keys: Keys) -> None:
    with responses.RequestsMock() as stub:
        stub.post(MICROPAY, body=v2_reply(result_code="FAIL", err_code="ORDERPAID"))
        stub.post(ORDERQUERY, body=v2_reply(result_code="SUCCESS", trade_state="SUCCESS", **PAID_FIELDS))
        state = make_adapter(keys).charge(_charge_request())
    assert (state.status, state.paid_amount) == (TradeStatus.PAID, 1200)


@pytest.mark.parametrize(
    ("trade_state", "expected"),
    [
        ("SUCCESS", TradeStatus.PAID),
        ("REFUND", TradeStatus.PAID),
        ("USERPAYING", TradeStatus.USER_PAYING),
        ("NOTPAY", TradeStatus.NOT_PAID),
        ("ACCEPT", TradeStatus.NOT_PAID),
        ("REVOKED", TradeStatus.REVOKED),
        ("CLOSED", TradeStatus.CLOSED),
        ("PAYERROR", TradeStatus.FAILED),
    ],
)
def test_query_charge_maps_every_v2_trade_state(keys: Keys, trade_state: str, expected: TradeStatus) -> None:
    with responses.RequestsMock() as stub:  # only the v2 orderquery: a v3 call would fail the test
        stub.post(ORDERQUERY, body=v2_reply(result_code="SUCCESS", trade_state=trade_state, **PAID_FIELDS))
        state = make_adapter(keys).query_charge(payment_no="T1", channel_trade_no="4200000001")
        sent = _xml.parse(stub.calls[0].request.body)
    assert state.status is expected
    assert (sent["out_trade_no"], sent["transaction_id"]) == ("T1", "4200000001")
    if expected is TradeStatus.PAID:
        assert (state.paid_amount, state.currency) == (1200, "CNY")


def test_query_charge_of_an_unknown_order_is_not_found_and_errors_stay_in_the_contract(keys: Keys) -> None:
    with responses.RequestsMock() as stub:
        stub.post(ORDERQUERY, body=v2_reply(result_code="FAIL", err_code="ORDERNOTEXIST"))
        assert make_adapter(keys).query_charge(payment_no="T1").status is TradeStatus.NOT_FOUND
    for err_code, error in (("SYSTEMERROR", ChannelUnavailable), ("SIGNERROR", ChannelRejected)):
        with responses.RequestsMock() as stub:
            stub.post(ORDERQUERY, body=v2_reply(result_code="FAIL", err_code=err_code))
            with pytest.raises(error):
                make_adapter(keys).query_charge(payment_no="T1")
    with responses.RequestsMock() as stub:
        stub.post(ORDERQUERY, body=v2_reply(result_code="SUCCESS", trade_state="SOMETHING_NEW"))
        with pytest.raises(ChannelUnavailable):
            make_adapter(keys).query_charge(payment_no="T1")


@pytest.mark.parametrize(("paid", "refunded"), [(True, True), (False, False)])
def test_reverse_success_is_done_and_tells_whether_money_was_given_back(keys: Keys, paid: bool, refunded: bool) -> None:
    order = PAID_FIELDS if paid else {"out_trade_no": "T1"}
    with responses.RequestsMock() as stub:
        stub.post(REVERSE, body=v2_reply(result_code="SUCCESS", recall="N"))
        stub.post(ORDERQUERY, body=v2_reply(result_code="SUCCESS", trade_state="REVOKED", **order))
        result = make_adapter(keys).revoke(payment_no="T1")
        assert len(stub.calls) == 2  # one reverse, no loop
    assert (result.done, result.retry, result.refunded) == (True, False, refunded)


@pytest.mark.parametrize("err_code", ["USERPAYING", "SYSTEMERROR"])
def test_reverse_recall_is_a_retry_for_the_caller_not_a_loop(keys: Keys, err_code: str) -> None:
    with responses.RequestsMock() as stub:
        stub.post(REVERSE, body=v2_reply(result_code="FAIL", err_code=err_code, recall="Y"))
        result = make_adapter(keys).revoke(payment_no="T1")
        assert len(stub.calls) == 1
    assert (result.done, result.retry, result.refunded) == (False, True, False)


@pytest.mark.parametrize("err_code", ["REVERSE_EXPIRE", "INVALID_TRANSACTIONID", "INVALID_REQUEST", "TRADE_ERROR"])
def test_reverse_definite_refusals_are_rejected(keys: Keys, err_code: str) -> None:
    with responses.RequestsMock() as stub:
        stub.post(REVERSE, body=v2_reply(result_code="FAIL", err_code=err_code, recall="N"))
        with pytest.raises(ChannelRejected) as caught:
            make_adapter(keys).revoke(payment_no="T1")
    assert caught.value.code == err_code


@pytest.mark.parametrize(
    "body",
    [v2_reply(result_code="FAIL", err_code="SYSTEMERROR", recall="N"), requests.ReadTimeout("slow")],
    ids=["SYSTEMERROR without recall", "timeout"],
)
def test_reverse_unknown_outcomes_are_unavailable(keys: Keys, body: Any) -> None:
    with responses.RequestsMock() as stub:
        stub.post(REVERSE, body=body)
        with pytest.raises(ChannelUnavailable):
            make_adapter(keys).revoke(payment_no="T1")


# --------------------------------------------------------------------------------------------
# /secapi/ mutual TLS, against a local TLS server that requires a client certificate
# --------------------------------------------------------------------------------------------
class TlsPki:
    """A CA, a server certificate for 127.0.0.1 and a client certificate for the merchant key."""

    def __init__(self, merchant: rsa.RSAPrivateKey) -> None:
        self.ca_key = _rsa()
        self.ca = self._certificate(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "paycore test CA")]), self.ca_key, ca=True
        )
        self.ca_pem = self.ca.public_bytes(serialization.Encoding.PEM).decode()
        self.server_key = _rsa()
        self.server = self._pem(
            self._certificate(
                x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]),
                self.server_key,
                san=x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            )
        )
        self.client = self._pem(
            self._certificate(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, MCHID)]), merchant)
        )

    def _certificate(
        self, subject: x509.Name, key: rsa.RSAPrivateKey, *, ca: bool = False, san: Any = None
    ) -> x509.Certificate:
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject if ca else self.ca.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=1))
            .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        )
        if san is not None:
            builder = builder.add_extension(san, critical=False)
        return builder.sign(key if ca else self.ca_key, hashes.SHA256())

    @staticmethod
    def _pem(cert: x509.Certificate) -> str:
        return cert.public_bytes(serialization.Encoding.PEM).decode()


class MtlsServer:
    """HTTPS on 127.0.0.1 that refuses any connection without a client certificate from ``pki``'s
    CA, and answers every v2 call with ``answer``; records each client certificate's CN."""

    def __init__(self, pki: TlsPki, tmp_path: Any, answer: bytes) -> None:
        self.client_cns: list[str] = []
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        (tmp_path / "server.pem").write_text(pki.server)
        (tmp_path / "server.key").write_text(_pem_private(pki.server_key))
        context.load_cert_chain(tmp_path / "server.pem", tmp_path / "server.key")
        context.load_verify_locations(cadata=pki.ca_pem)
        context.verify_mode = ssl.CERT_REQUIRED
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, format: str, *args: Any) -> None:
                pass

            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                peer = self.connection.getpeercert() or {}
                server.client_cns.extend(v for rdn in peer.get("subject", ()) for k, v in rdn if k == "commonName")
                self.send_response(200)
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.socket = context.wrap_socket(self._httpd.socket, server_side=True)
        threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self._httpd.server_address[1]}/wechat"

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


@pytest.fixture
def mtls(keys: Keys, tmp_path: Any) -> Iterator[tuple[TlsPki, MtlsServer]]:
    pki = TlsPki(keys.merchant)
    server = MtlsServer(pki, tmp_path, v2_reply(result_code="FAIL", err_code="USERPAYING", recall="Y"))
    try:
        yield pki, server
    finally:
        server.close()


def _secapi_adapter(keys: Keys, pki: TlsPki, server: MtlsServer, **change: Any) -> WechatAdapter:
    adapter = make_adapter(keys)  # base_url stays elsewhere: only /secapi/ goes to the TLS endpoint
    credentials = {**adapter.config.credentials, "merchant_certificate": pki.client, **change.pop("credentials", {})}
    options = {
        **adapter.config.options,
        "secapi_base_url": server.url,
        "secapi_ca_certificate": pki.ca_pem,
        **change.pop("options", {}),
    }
    return _another_instance(dataclasses.replace(adapter.config, credentials=credentials, options=options))


def test_reverse_presents_the_merchant_certificate_over_mutual_tls(keys: Keys, mtls: Any) -> None:
    pki, server = mtls
    adapter = _secapi_adapter(keys, pki, server)
    result = adapter.revoke(payment_no="T1")
    assert (result.done, result.retry) == (False, True)  # the server's answer, reached over mTLS
    assert server.client_cns == [MCHID]
    again = _another_instance(adapter.config).revoke(payment_no="T1")
    assert again.retry and server.client_cns == [MCHID, MCHID]


def test_certificate_files_are_written_once_per_process_into_a_private_folder(keys: Keys, mtls: Any) -> None:
    pki, server = mtls
    adapter = _secapi_adapter(keys, pki, server)
    first = adapter._mtls()
    assert _another_instance(adapter.config)._mtls() == first  # same files, not one set per call
    cert, key = first["cert"]
    assert stat.S_IMODE(os.stat(os.path.dirname(cert)).st_mode) == 0o700
    assert {stat.S_IMODE(os.stat(path).st_mode) for path in (cert, key, first["verify"])} == {0o600}
    rotated = _secapi_adapter(keys, pki, server, options={"secapi_ca_certificate": pki.ca_pem + "\n"})
    assert rotated._mtls()["verify"] != first["verify"]  # new material, new files


def test_reverse_without_the_client_certificate_is_refused_by_the_server(keys: Keys, mtls: Any) -> None:
    pki, server = mtls
    adapter = _secapi_adapter(keys, pki, server, credentials={"merchant_certificate": ""})
    with pytest.raises(ChannelUnavailable):
        adapter.revoke(payment_no="T1")
    assert server.client_cns == []


def test_reverse_refuses_a_server_outside_the_configured_trust(keys: Keys, mtls: Any) -> None:
    pki, server = mtls
    stranger = TlsPki(keys.merchant)  # another CA: the server's certificate does not chain to it
    adapter = _secapi_adapter(keys, pki, server, options={"secapi_ca_certificate": stranger.ca_pem})
    with pytest.raises(ChannelUnavailable):
        adapter.revoke(payment_no="T1")
    assert server.client_cns == []
