"""Constants and small helpers shared by the WeChat Pay simulator's modules (package-internal)."""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from sandbox.core import SandboxResponse

CN_TZ = timezone(timedelta(hours=8))
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
TIMESTAMP_WINDOW = 300
NOTIFY_SCHEDULE = [15, 15, 30, 180, 600, 1200, 1800, 1800, 1800, 3600, 10800, 10800, 10800, 21600, 21600]
REFUND_DELAY = 10.0
HOLD_REFUND_REASON = "SANDBOX_PROCESSING"
BILL_URL_LIFETIME = 300.0

_OUT_TRADE_NO = re.compile(r"^[0-9A-Za-z_\-*|]{6,32}$")
_OUT_REFUND_NO = re.compile(r"^[0-9A-Za-z_\-|*@]{1,64}$")
_AUTH_CODE = re.compile(r"^1[0-5]\d{16}$")
_AUTH_PARAM = re.compile(r'(\w+)="([^"]*)"')
_TRADE_TYPES = {"app": "APP", "jsapi": "JSAPI", "native": "NATIVE", "h5": "MWEB"}
_STATE_DESC = {
    "NOTPAY": "订单未支付",
    "SUCCESS": "支付成功",
    "REFUND": "转入退款",
    "CLOSED": "订单已关闭",
    "REVOKED": "订单已撤销",
    "USERPAYING": "用户支付中（需要输入密码）",
    "PAYERROR": "支付失败",
}
_ALNUM = string.ascii_letters + string.digits


def _random(chars: str, n: int) -> str:
    return "".join(secrets.choice(chars) for _ in range(n))


def _nonce() -> str:
    return secrets.token_hex(16).upper()


def _rfc3339(dt: datetime) -> str:
    return dt.astimezone(CN_TZ).isoformat(timespec="seconds")


def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()


def _self_signed(key: rsa.RSAPrivateKey, common_name: str, org: str) -> x509.Certificate:
    name = x509.Name(
        [
            x509.NameAttribute(NameOID.COUNTRY_NAME, "CN"),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, org),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=5 * 365))
        .sign(key, hashes.SHA256())
    )


def _serial_hex(cert: x509.Certificate) -> str:
    return f"{cert.serial_number:040X}"


def _rsa_sign(key: rsa.RSAPrivateKey, message: str) -> str:
    return base64.b64encode(key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()


def _aead_encrypt(apiv3_key: str, plaintext: bytes, associated_data: str) -> dict[str, str]:
    nonce = _random(_ALNUM, 12)
    ct = AESGCM(apiv3_key.encode()).encrypt(nonce.encode(), plaintext, associated_data.encode())
    return {
        "algorithm": "AEAD_AES_256_GCM",
        "nonce": nonce,
        "associated_data": associated_data,
        "ciphertext": base64.b64encode(ct).decode(),
    }


def _dumps(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()


def _yuan(fen: int | Decimal, places: int = 2) -> str:
    return str((Decimal(fen) / 100).quantize(Decimal(1).scaleb(-places)))


def _error(status: int, code: str, message: str, detail: dict[str, Any] | None = None) -> SandboxResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if detail:
        body["detail"] = {**detail, "location": detail.get("location", "body")}
    return SandboxResponse.json(status, body, {"Request-ID": _nonce()})


class _Reject(Exception):
    def __init__(self, response: SandboxResponse) -> None:
        self.response = response


def _param_error(field_name: str, issue: str, value: Any = None) -> _Reject:
    detail = {"field": field_name, "value": value, "issue": issue, "location": "body"}
    return _Reject(_error(400, "PARAM_ERROR", f"{field_name}: {issue}", detail))


def _tampered(obj: dict[str, Any], amount: int) -> dict[str, Any]:
    out = json.loads(json.dumps(obj))
    amt = out["amount"]
    if "refund" in amt:
        amt["refund"] = amt["payer_refund"] = amount
    else:
        amt["total"] = amount
        if "payer_total" in amt:
            amt["payer_total"] = amount
    return out
