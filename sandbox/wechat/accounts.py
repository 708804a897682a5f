"""Merchant accounts: their keys, v3 request authentication, response signing, platform certificates."""

from __future__ import annotations

import base64
import secrets
import string
from dataclasses import dataclass, field
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.core import SandboxError, SandboxRequest, SandboxResponse
from sandbox.wechat.common import (
    _ALNUM,
    _AUTH_PARAM,
    SIGNATURE_TYPE,
    TIMESTAMP_WINDOW,
    _aead_encrypt,
    _dumps,
    _error,
    _nonce,
    _pem_private,
    _pem_public,
    _random,
    _Reject,
    _rfc3339,
    _rsa_sign,
    _self_signed,
    _serial_hex,
    _tampered,
)


@dataclass
class WechatAccount:
    appid: str
    mchid: str
    merchant_serial: str
    merchant_public_key: rsa.RSAPublicKey
    apiv3_key: str
    api_v2_key: str
    platform_key: rsa.RSAPrivateKey
    platform_cert: x509.Certificate
    platform_serial: str
    pubkey_private: rsa.RSAPrivateKey
    pubkey_id: str
    mode: str
    merchant_cert_der: bytes = b""  # the merchant API certificate: the mTLS client certificate on /secapi/
    notify_url: str | None = None
    notifications_sent: int = 0
    bill_tokens: dict[str, tuple[bytes, float]] = field(default_factory=dict)

    def response_key(self, wechatpay_serial: str | None) -> tuple[str, rsa.RSAPrivateKey]:
        if self.mode == "public_key" or (self.mode == "both" and wechatpay_serial == self.pubkey_id):
            return self.pubkey_id, self.pubkey_private
        return self.platform_serial, self.platform_key

    def notification_key(self) -> tuple[str, rsa.RSAPrivateKey]:
        self.notifications_sent += 1
        if self.mode == "public_key" or (self.mode == "both" and self.notifications_sent % 2 == 0):
            return self.pubkey_id, self.pubkey_private
        return self.platform_serial, self.platform_key


class AccountsMixin:
    """Accounts, authentication and signing of ``WechatSimulator``."""

    def create_account(
        self, *, notify_url: str | None, mode: str = "both", v2_sign_type: str = "HMAC-SHA256", **_: Any
    ) -> dict[str, Any]:
        if mode not in ("certificate", "public_key", "both"):
            raise SandboxError(400, "BAD_REQUEST", "mode must be certificate, public_key or both")
        if v2_sign_type not in ("MD5", "HMAC-SHA256"):
            raise SandboxError(400, "BAD_REQUEST", "v2_sign_type must be MD5 or HMAC-SHA256")
        merchant_key, platform_key, pubkey_private = self.sandbox.rsa_keys(3)
        platform_cert = _self_signed(platform_key, "Tenpay.com Root CA (sandbox)", "Tenpay.com")
        ca = self.sandbox.ca
        with self.sandbox.lock:
            accounts = self.sandbox.accounts[self.channel]
            while True:
                mchid = "19" + _random(string.digits, 8)
                if mchid not in accounts:
                    break
            # The merchant API certificate, issued by the sandbox CA: its serial is the
            # merchant_serial_no of v3 signatures, and it is the client certificate of /secapi/.
            merchant_cert = ca.issue_client(merchant_key, mchid, "paycore sandbox merchant")
            acct = WechatAccount(
                appid="wx" + secrets.token_hex(8),
                mchid=mchid,
                merchant_serial=_serial_hex(merchant_cert),
                merchant_public_key=merchant_key.public_key(),
                apiv3_key=_random(_ALNUM, 32),
                api_v2_key=_random(_ALNUM, 32),
                platform_key=platform_key,
                platform_cert=platform_cert,
                platform_serial=_serial_hex(platform_cert),
                pubkey_private=pubkey_private,
                pubkey_id="PUB_KEY_ID_01" + mchid + _random(string.digits, 14),
                mode=mode,
                merchant_cert_der=merchant_cert.public_bytes(serialization.Encoding.DER),
                notify_url=notify_url,
            )
            accounts[mchid] = acct
        options: dict[str, Any] = {"v2_sign_type": v2_sign_type, "mode": mode}
        secapi = self.sandbox.tls_url()
        if secapi is not None:
            options["secapi_base_url"] = f"{secapi}/{self.channel}"
        options["secapi_ca_certificate"] = ca.pem
        if mode in ("certificate", "both"):
            options["platform_certificates"] = {
                acct.platform_serial: platform_cert.public_bytes(serialization.Encoding.PEM).decode()
            }
        if mode in ("public_key", "both"):
            options["wechatpay_public_key_id"] = acct.pubkey_id
            options["wechatpay_public_key"] = _pem_public(pubkey_private.public_key())
        return {
            "channel": self.channel,
            "name": f"sandbox-wechat-{mchid}",
            "ids": {"appid": acct.appid, "mchid": mchid, "merchant_serial_no": acct.merchant_serial},
            "credentials": {
                "merchant_private_key": _pem_private(merchant_key),
                "merchant_certificate": merchant_cert.public_bytes(serialization.Encoding.PEM).decode(),
                "apiv3_key": acct.apiv3_key,
                "api_v2_key": acct.api_v2_key,
            },
            "options": options,
        }

    def _account(self, mchid: str) -> WechatAccount | None:
        with self.sandbox.lock:
            return self.sandbox.accounts[self.channel].get(mchid)

    def _authenticate(self, req: SandboxRequest) -> WechatAccount:
        auth = req.headers.get("Authorization", "")
        scheme, _, rest = auth.partition(" ")
        if scheme != SIGNATURE_TYPE:
            raise _Reject(_error(401, "SIGN_ERROR", "Authorization 认证类型错误或缺失"))
        fields = dict(_AUTH_PARAM.findall(rest))
        missing = [k for k in ("mchid", "nonce_str", "signature", "timestamp", "serial_no") if not fields.get(k)]
        if missing:
            raise _Reject(_error(401, "SIGN_ERROR", f"Authorization 缺少参数: {','.join(missing)}"))
        acct = self._account(fields["mchid"])
        if acct is None:
            raise _Reject(_error(401, "SIGN_ERROR", "商户号不存在或与证书不匹配"))
        if fields["serial_no"] != acct.merchant_serial:
            raise _Reject(_error(401, "SIGN_ERROR", "商户证书序列号有误"))
        try:
            ts = int(fields["timestamp"])
        except ValueError:
            raise _Reject(_error(401, "SIGN_ERROR", "timestamp 格式错误")) from None
        if abs(int(self.sandbox.wall_now().timestamp()) - ts) >= TIMESTAMP_WINDOW:
            raise _Reject(_error(401, "SIGN_ERROR", "请求时间戳已过期"))
        message = (
            f"{req.method}\n{req.target}\n{fields['timestamp']}\n{fields['nonce_str']}\n"
            f"{req.body.decode('utf-8', 'replace')}\n"
        )
        try:
            acct.merchant_public_key.verify(
                base64.b64decode(fields["signature"], validate=True),
                message.encode(),
                padding.PKCS1v15(),
                hashes.SHA256(),
            )
        except Exception:
            raise _Reject(_error(401, "SIGN_ERROR", "签名错误")) from None
        return acct

    def _signed(self, req: SandboxRequest, acct: WechatAccount, status: int, obj: Any | None) -> SandboxResponse:
        body = b"" if obj is None else _dumps(obj)
        serial, key = acct.response_key(req.headers.get("Wechatpay-Serial"))
        ts, nonce = str(int(self.sandbox.wall_now().timestamp())), _nonce()
        message = f"{ts}\n{nonce}\n{body.decode()}\n"
        fault = req.fault
        if fault is not None and fault.kind == "bad_signature":
            message += "sandbox-bad-signature"
        signature = _rsa_sign(key, message)
        if fault is not None and fault.kind == "tamper_amount" and isinstance(obj, dict) and "amount" in obj:
            body = _dumps(_tampered(obj, fault.amount if fault.amount is not None else 1))
        headers = {
            "Wechatpay-Timestamp": ts,
            "Wechatpay-Nonce": nonce,
            "Wechatpay-Signature": signature,
            "Wechatpay-Serial": serial,
            "Wechatpay-Signature-Type": SIGNATURE_TYPE,
            "Request-ID": _nonce(),
        }
        if obj is not None:
            headers["Content-Type"] = "application/json; charset=utf-8"
        return SandboxResponse(status, body, headers)

    def _certificates(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        data = []
        if acct.mode in ("certificate", "both"):
            cert = acct.platform_cert
            pem = cert.public_bytes(serialization.Encoding.PEM)
            data.append(
                {
                    "serial_no": acct.platform_serial,
                    "effective_time": _rfc3339(cert.not_valid_before_utc),
                    "expire_time": _rfc3339(cert.not_valid_after_utc),
                    "encrypt_certificate": _aead_encrypt(acct.apiv3_key, pem, "certificate"),
                }
            )
        return self._signed(req, acct, 200, {"data": data})
