"""WeChat Pay simulator: API v3 (direct merchant) and API v2 payment code, platform side.

Written from the protocol reference (§1 and §2 of channel-protocols.md), independently of
paycore's adapter. What it checks and answers:

- Every v3 call must carry a valid ``Authorization: WECHATPAY2-SHA256-RSA2048 ...`` signed with
  the merchant key over ``METHOD\\nTARGET\\nTIMESTAMP\\nNONCE\\nBODY\\n`` (TARGET = path as sent,
  ``/wechat`` prefix included, plus ``?query``); timestamp within 300 s; ``mchid`` known and
  ``serial_no`` equal to the merchant certificate serial. Otherwise ``401 SIGN_ERROR``.
- Every 2xx v3 answer is signed (``Wechatpay-Timestamp/Nonce/Signature/Serial/Signature-Type``
  over ``ts\\nnonce\\nbody\\n``). Key choice by account ``mode``: ``certificate`` -> platform
  certificate, ``public_key`` -> WeChat Pay public key (``PUB_KEY_ID_...``), ``both`` -> the
  public key when the request's ``Wechatpay-Serial`` names its id, else the platform certificate;
  notifications alternate between the two in ``both`` mode. Error answers are not signed.
- Faults: ``bad_signature`` signs a different string; ``tamper_amount`` rewrites ``amount``
  after signing (transactions: ``total``/``payer_total``; refunds: ``refund``/``payer_refund``;
  v2: ``total_fee``/``cash_fee``), so the signature no longer matches.

Sandbox conventions and relaxations (documented so tests can rely on them):

- ``notify_url`` may be ``http://`` (tests run a local sink); it must still have no query string.
- Close or re-post of a paid order answers ``400 ORDERPAID``; of a closed one ``400 ORDER_CLOSED``.
  Unknown refund / refund of an unknown order: ``404 RESOURCE_NOT_EXISTS``; refunding more than
  what is left: ``400 INVALID_REQUEST``; refund of an unpaid order: ``400 INVALID_REQUEST``.
- Refunds complete ``REFUND_DELAY`` sandbox seconds after creation (-> ``SUCCESS`` and a
  ``REFUND.SUCCESS`` notification to the refund's ``notify_url`` when given). A refund whose
  ``reason`` is ``SANDBOX_PROCESSING`` stays ``PROCESSING`` until the payer actions
  ``refund_success`` / ``refund_abnormal`` / ``refund_closed`` are applied to its ``out_refund_no``.
- Bills are served for any date including today, built from what happened in the sandbox.
  ``hash_value`` is the SHA-1 of the bytes served (the gzip stream when ``tar_type=GZIP``).
  A payment-code order reversed after payment is listed with 交易状态 ``REVOKED`` on its payment
  date instead of ``SUCCESS``. Refund rows carry a negative (returned) fee.
- Payer actions (``POST /_sandbox/wechat/trades/{out_trade_no}/{action}``): ``pay`` (params
  ``after_seconds``, ``amount`` = tampered notification amount, ``openid``, ``notify`` false to
  skip the notification, ``signtest`` true to send a ``WECHATPAY/SIGNTEST/`` probe instead,
  ``bad_signature`` true to sign the notification wrongly), ``fail`` / ``cancel`` (v3: the trade
  stays ``NOTPAY``, as a payer's failed attempt changes nothing; payment code: ``PAYERROR``),
  ``password`` (payment code ``USERPAYING`` -> ``SUCCESS``). ``mchid`` picks the account when two
  accounts used the same ``out_trade_no``.
- v2 ``auth_code`` convention (the code must match ``^1[0-5]\\d{16}$``, else ``AUTH_CODE_INVALID``),
  by its last four digits: ``0000`` -> ``USERPAYING`` (the payer must enter a password: payer
  action ``password``), ``0001`` -> ``NOTENOUGH``, ``0002`` -> ``AUTHCODEEXPIRE`` (both definite,
  the trade becomes ``PAYERROR``), ``0003`` -> ``SYSTEMERROR`` (unknown; the trade is in fact
  paid), ``0004`` -> ``BANKERROR`` (unknown; the trade in fact failed, ``PAYERROR``); anything
  else pays at once.
- v2 reverse of a ``USERPAYING`` order first answers ``FAIL USERPAYING`` with ``recall=Y``; the
  next reverse of it succeeds (the payer's password prompt is withdrawn). Reverse of an unknown
  order answers ``SUCCESS``; of a v3 (non payment-code) order ``INVALID_REQUEST``.
- Not simulated: mutual TLS on ``/secapi/*`` (a plain HTTP request is accepted), the 7-day and
  15-second reverse windows, rate limits, the 5-minute close advice, bill date limits.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import hmac
import json
import re
import secrets
import string
import xml.etree.ElementTree as ET  # DOCTYPE/ENTITY are refused before parsing (parse_v2_xml)
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import unquote

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.x509.oid import NameOID

from sandbox.core import ChannelSimulator, SandboxError, SandboxRequest, SandboxResponse

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

BILL_ALL = [
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
_REFUND_ONLY = {"微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态", "申请退款金额"}
BILL_SUCCESS = [c for c in BILL_ALL if c not in _REFUND_ONLY]
BILL_REFUND = [*BILL_ALL[:14], "退款申请时间", "退款成功时间", *BILL_ALL[14:]]
SUMMARY_ALL = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
]
SUMMARY_SUCCESS = ["总交易单数", "应结订单总金额", "手续费总金额", "订单总金额"]
FEE_RATE = Decimal("0.006")


# --------------------------------------------------------------------------------------------
# Small helpers
# --------------------------------------------------------------------------------------------
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


def v2_sign(params: dict[str, str], key: str, sign_type: str) -> str:
    """§2.2: sorted non-empty params except ``sign``, ``&key=``; MD5 or HMAC-SHA256, upper hex."""
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v not in ("", None))
    text += f"&key={key}"
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    return hashlib.md5(text.encode()).hexdigest().upper()  # noqa: S324 - the protocol's MD5


def parse_v2_xml(body: bytes) -> dict[str, str]:
    """A flat ``<xml>`` document -> dict. DOCTYPE and entity declarations are refused outright."""
    lowered = body.lower()
    if b"<!doctype" in lowered or b"<!entity" in lowered:
        raise ValueError("DOCTYPE/ENTITY not allowed")
    root = ET.fromstring(body)  # noqa: S314 - no DTD can reach the parser (checked above)
    if root.tag != "xml":
        raise ValueError("root element must be <xml>")
    return {child.tag: (child.text or "") for child in root}


def build_v2_xml(params: dict[str, str]) -> bytes:
    parts = ["<xml>"]
    for k, v in params.items():
        text = str(v)
        if text.isdigit():
            parts.append(f"<{k}>{text}</{k}>")
        else:
            parts.append(f"<{k}><![CDATA[{text.replace(']]>', ']]]]><![CDATA[>')}]]></{k}>")
    parts.append("</xml>")
    return "".join(parts).encode()


# --------------------------------------------------------------------------------------------
# Accounts
# --------------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------------
# The simulator
# --------------------------------------------------------------------------------------------
class WechatSimulator(ChannelSimulator):
    channel = "wechat"

    # --- accounts -------------------------------------------------------------------------
    def create_account(
        self, *, notify_url: str | None, mode: str = "both", v2_sign_type: str = "HMAC-SHA256", **_: Any
    ) -> dict[str, Any]:
        if mode not in ("certificate", "public_key", "both"):
            raise SandboxError(400, "BAD_REQUEST", "mode must be certificate, public_key or both")
        if v2_sign_type not in ("MD5", "HMAC-SHA256"):
            raise SandboxError(400, "BAD_REQUEST", "v2_sign_type must be MD5 or HMAC-SHA256")
        merchant_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pubkey_private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        merchant_cert = _self_signed(merchant_key, "sandbox merchant", "paycore sandbox merchant")
        platform_cert = _self_signed(platform_key, "Tenpay.com Root CA (sandbox)", "Tenpay.com")
        with self.sandbox.lock:
            accounts = self.sandbox.accounts[self.channel]
            while True:
                mchid = "19" + _random(string.digits, 8)
                if mchid not in accounts:
                    break
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
                notify_url=notify_url,
            )
            accounts[mchid] = acct
        options: dict[str, Any] = {"v2_sign_type": v2_sign_type, "mode": mode}
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
                "apiv3_key": acct.apiv3_key,
                "api_v2_key": acct.api_v2_key,
            },
            "options": options,
        }

    def _account(self, mchid: str) -> WechatAccount | None:
        with self.sandbox.lock:
            return self.sandbox.accounts[self.channel].get(mchid)

    # --- dispatch -------------------------------------------------------------------------
    def handle(self, req: SandboxRequest) -> SandboxResponse:
        try:
            if req.path in ("/pay/micropay", "/pay/orderquery", "/secapi/pay/reverse"):
                return self._v2(req)
            acct = self._authenticate(req)
            return self._v3(req, acct)
        except _Reject as rej:
            return rej.response

    def _v3(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        parts = [unquote(p) for p in req.path.strip("/").split("/")]
        method = req.method
        match (method, parts):
            case ("POST", ["v3", "pay", "transactions", scene]) if scene in _TRADE_TYPES:
                return self._prepay(req, acct, scene)
            case ("GET", ["v3", "pay", "transactions", "id", transaction_id]):
                self._check_query_mchid(req, acct)
                return self._signed(
                    req, acct, 200, self._transaction_json(self._find_trade(acct, transaction_id=transaction_id))
                )
            case ("GET", ["v3", "pay", "transactions", "out-trade-no", out_trade_no]):
                self._check_query_mchid(req, acct)
                return self._signed(
                    req, acct, 200, self._transaction_json(self._find_trade(acct, out_trade_no=out_trade_no))
                )
            case ("POST", ["v3", "pay", "transactions", "out-trade-no", out_trade_no, "close"]):
                return self._close(req, acct, out_trade_no)
            case ("POST", ["v3", "refund", "domestic", "refunds"]):
                return self._refund(req, acct)
            case ("GET", ["v3", "refund", "domestic", "refunds", out_refund_no]):
                with self.sandbox.lock:
                    refund = self.sandbox.refunds[self.channel].get(f"{acct.mchid}/{out_refund_no}")
                    if refund is None:
                        raise _Reject(_error(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
                    return self._signed(req, acct, 200, self._refund_json(refund))
            case ("GET", ["v3", "certificates"]):
                return self._certificates(req, acct)
            case ("GET", ["v3", "bill", "tradebill"]):
                return self._bill_apply(req, acct)
            case ("GET", ["v3", "billdownload", "file"]):
                return self._bill_download(req, acct)
        return _error(404, "NOT_FOUND", f"no such API: {method} {req.path}")

    # --- v3 authentication and response signing -------------------------------------------
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
        if abs(int(self.sandbox.now().timestamp()) - ts) >= TIMESTAMP_WINDOW:
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
        ts, nonce = str(int(self.sandbox.now().timestamp())), _nonce()
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

    # --- prepay ---------------------------------------------------------------------------
    def _prepay(self, req: SandboxRequest, acct: WechatAccount, scene: str) -> SandboxResponse:
        data = self._json_body(req)
        for name in ("appid", "mchid", "description", "out_trade_no", "notify_url"):
            if not isinstance(data.get(name), str) or not data[name]:
                raise _param_error(name, "必填参数缺失或格式错误", data.get(name))
        if data["mchid"] != acct.mchid:
            raise _Reject(
                _error(
                    400,
                    "PARAM_ERROR",
                    "mchid 与请求头中的商户号不一致",
                    {"field": "mchid", "value": data["mchid"], "issue": "不一致"},
                )
            )
        if data["appid"] != acct.appid:
            raise _Reject(_error(400, "APPID_MCHID_NOT_MATCH", "appid 和 mch_id 不匹配"))
        if len(data["description"]) > 127:
            raise _param_error("description", "长度超过127", data["description"])
        if not _OUT_TRADE_NO.match(data["out_trade_no"]):
            raise _param_error("out_trade_no", "须为6-32位数字、字母、_-*|", data["out_trade_no"])
        notify_url = data["notify_url"]
        if not notify_url.startswith(("https://", "http://")) or "?" in notify_url or len(notify_url) > 255:
            raise _param_error("notify_url", "须为不带参数的 http(s) 地址，长度不超过255", notify_url)
        if len(data.get("attach") or "") > 128:
            raise _param_error("attach", "长度超过128")
        amount = data.get("amount")
        total = amount.get("total") if isinstance(amount, dict) else None
        if not isinstance(total, int) or isinstance(total, bool) or total <= 0:
            raise _param_error("amount.total", "须为大于0的整数（分）", total)
        if amount.get("currency", "CNY") != "CNY":
            raise _param_error("amount.currency", "仅支持 CNY", amount.get("currency"))
        openid = None
        if scene == "jsapi":
            payer = data.get("payer")
            openid = payer.get("openid") if isinstance(payer, dict) else None
            if not isinstance(openid, str) or not openid:
                raise _param_error("payer.openid", "JSAPI 下单须提供 payer.openid")
        if scene == "h5":
            scene_info = data.get("scene_info") if isinstance(data.get("scene_info"), dict) else {}
            if not scene_info.get("payer_client_ip"):
                raise _param_error("scene_info.payer_client_ip", "H5 下单须提供 payer_client_ip")
            h5_info = scene_info.get("h5_info")
            if not isinstance(h5_info, dict) or not h5_info.get("type"):
                raise _param_error("scene_info.h5_info.type", "H5 下单须提供 h5_info.type")
        expires_at = None
        if data.get("time_expire") is not None:
            try:
                expires_at = datetime.fromisoformat(data["time_expire"])
            except (TypeError, ValueError):
                raise _param_error("time_expire", "须为 RFC3339 格式", data["time_expire"]) from None
            if expires_at.tzinfo is None:
                raise _param_error("time_expire", "须带时区", data["time_expire"])
            now = self.sandbox.now()
            expires_at = min(max(expires_at, now + timedelta(minutes=1)), now + timedelta(days=90))
        key = f"{acct.mchid}/{data['out_trade_no']}"
        prepay_id = "wx" + self.sandbox.now().astimezone(CN_TZ).strftime("%d%H%M%S") + secrets.token_hex(13)
        with self.sandbox.lock:
            trade = self.sandbox.trades[self.channel].get(key)
            if trade is not None:
                if trade["api"] != "v3" or trade["request"] != data or trade["scene"] != scene:
                    raise _Reject(_error(403, "OUT_TRADE_NO_USED", "商户订单号重复"))
                if trade["trade_state"] in ("SUCCESS", "REFUND"):
                    raise _Reject(_error(400, "ORDERPAID", "该订单已支付"))
                if trade["trade_state"] != "NOTPAY":
                    raise _Reject(_error(400, "ORDER_CLOSED", "订单已关闭"))
                trade["prepay_ids"].append(prepay_id)
                self.sandbox.record(trade, "prepay_repeated", prepay_id=prepay_id)
            else:
                trade = {
                    "api": "v3",
                    "scene": scene,
                    "request": data,
                    "mchid": acct.mchid,
                    "appid": acct.appid,
                    "out_trade_no": data["out_trade_no"],
                    "trade_type": _TRADE_TYPES[scene],
                    "trade_state": "NOTPAY",
                    "status": "NOTPAY",
                    "description": data["description"],
                    "attach": data.get("attach", ""),
                    "notify_url": notify_url,
                    "total": total,
                    "currency": "CNY",
                    "openid": openid,
                    "transaction_id": None,
                    "success_time": None,
                    "created_at": self.sandbox.now().isoformat(),
                    "expires_at": expires_at.isoformat() if expires_at else None,
                    "prepay_ids": [prepay_id],
                    "refunded": 0,
                    "revoked_after_payment": False,
                    "history": [],
                }
                self.sandbox.trades[self.channel][key] = trade
                self.sandbox.record(trade, "prepay", prepay_id=prepay_id, scene=scene)
        if scene == "native":
            result = {"code_url": f"weixin://wxpay/bizpayurl?pr={_random(_ALNUM, 7)}"}
        elif scene == "h5":
            result = {
                "h5_url": "https://wx.tenpay.com/cgi-bin/mmpayweb-bin/checkmweb?"
                f"prepay_id={prepay_id}&package={_random(string.digits, 10)}"
            }
        else:
            result = {"prepay_id": prepay_id}
        return self._signed(req, acct, 200, result)

    def _json_body(self, req: SandboxRequest) -> dict[str, Any]:
        try:
            data = json.loads(req.body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            raise _Reject(_error(400, "PARAM_ERROR", "请求体不是合法的 JSON")) from None
        if not isinstance(data, dict):
            raise _Reject(_error(400, "PARAM_ERROR", "请求体须为 JSON 对象"))
        return data

    # --- query / close ------------------------------------------------------------------------
    def _check_query_mchid(self, req: SandboxRequest, acct: WechatAccount) -> None:
        mchid = req.params.get("mchid")
        if not mchid:
            raise _Reject(
                _error(400, "PARAM_ERROR", "缺少 mchid 参数", {"field": "mchid", "issue": "必填", "location": "query"})
            )
        if mchid != acct.mchid:
            raise _Reject(
                _error(
                    400,
                    "PARAM_ERROR",
                    "mchid 与请求头中的商户号不一致",
                    {"field": "mchid", "value": mchid, "issue": "不一致", "location": "query"},
                )
            )

    def _find_trade(
        self, acct: WechatAccount, *, out_trade_no: str | None = None, transaction_id: str | None = None
    ) -> dict[str, Any]:
        with self.sandbox.lock:
            trades = self.sandbox.trades[self.channel]
            if transaction_id is not None:
                for trade in trades.values():
                    if trade["mchid"] == acct.mchid and trade["transaction_id"] == transaction_id:
                        return trade
            elif out_trade_no is not None and (trade := trades.get(f"{acct.mchid}/{out_trade_no}")):
                return trade
        raise _Reject(_error(404, "ORDER_NOT_EXIST", "订单不存在"))

    def _transaction_json(self, trade: dict[str, Any]) -> dict[str, Any]:
        with self.sandbox.lock:
            paid = trade["transaction_id"] is not None
            out: dict[str, Any] = {
                "appid": trade["appid"],
                "mchid": trade["mchid"],
                "out_trade_no": trade["out_trade_no"],
            }
            if paid:
                out["transaction_id"] = trade["transaction_id"]
            out.update(
                trade_type=trade["trade_type"],
                trade_state=trade["trade_state"],
                trade_state_desc=_STATE_DESC[trade["trade_state"]],
            )
            if paid:
                out["bank_type"] = "OTHERS"
            out["attach"] = trade["attach"] if paid else ""
            if paid:
                out["success_time"] = trade["success_time"]
            if trade.get("openid"):
                out["payer"] = {"openid": trade["openid"]}
            amount: dict[str, Any] = {"total": trade["total"], "currency": trade["currency"]}
            if paid:
                amount["payer_total"] = trade["total"]
            amount["payer_currency"] = "CNY"
            out["amount"] = amount
            out["scene_info"] = {"device_id": ""}
            out["promotion_detail"] = []
            return out

    def _close(self, req: SandboxRequest, acct: WechatAccount, out_trade_no: str) -> SandboxResponse:
        data = self._json_body(req)
        if data.get("mchid") != acct.mchid:
            raise _param_error("mchid", "须与请求头中的商户号一致", data.get("mchid"))
        trade = self._find_trade(acct, out_trade_no=out_trade_no)
        with self.sandbox.lock:
            state = trade["trade_state"]
            if state in ("SUCCESS", "REFUND"):
                raise _Reject(_error(400, "ORDERPAID", "订单已支付，不能关闭"))
            if state == "REVOKED":
                raise _Reject(_error(400, "ORDERREVERSED", "订单已撤销"))
            if trade["api"] != "v3":
                raise _Reject(_error(400, "INVALID_REQUEST", "付款码订单请使用撤销接口"))
            if state == "NOTPAY":
                self._set_state(trade, "CLOSED")
                self.sandbox.record(trade, "closed")
        return self._signed(req, acct, 204, None)

    def _set_state(self, trade: dict[str, Any], state: str) -> None:
        trade["trade_state"] = state
        trade["status"] = state

    # --- payer actions --------------------------------------------------------------------
    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action in ("refund_success", "refund_abnormal", "refund_closed"):
            return self._refund_action(payment_no, action, params)
        trade = self._trade_for_payer(payment_no, params.get("mchid"))
        after = float(params.get("after_seconds") or 0)
        if action not in ("pay", "fail", "cancel", "password"):
            raise SandboxError(400, "BAD_ACTION", f"unknown action {action!r}")
        if after > 0:
            self.sandbox.later(after, lambda: self._guarded_action(trade, action, params))
            with self.sandbox.lock:
                self.sandbox.record(trade, f"{action}_scheduled", after_seconds=after)
                return {**self._transaction_json(trade), "scheduled": True}
        self._apply_action(trade, action, params)
        return self._transaction_json(trade)

    def _trade_for_payer(self, payment_no: str, mchid: str | None) -> dict[str, Any]:
        with self.sandbox.lock:
            matches = [
                t
                for t in self.sandbox.trades[self.channel].values()
                if t["out_trade_no"] == payment_no and (mchid is None or t["mchid"] == mchid)
            ]
        if not matches:
            raise SandboxError(404, "ORDER_NOT_EXIST", f"no WeChat trade {payment_no!r}")
        return max(matches, key=lambda t: t["created_at"])

    def _guarded_action(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        try:
            self._apply_action(trade, action, params)
        except SandboxError as exc:
            with self.sandbox.lock:
                self.sandbox.record(trade, f"{action}_refused", reason=exc.message)

    def _apply_action(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            state = trade["trade_state"]
            if action == "pay":
                if trade["api"] == "v2":
                    raise SandboxError(409, "BAD_STATE", "payment-code orders are paid by password")
                if state != "NOTPAY":
                    raise SandboxError(409, "BAD_STATE", f"trade is {state}, cannot pay")
                if trade["expires_at"] and datetime.fromisoformat(trade["expires_at"]) < self.sandbox.now():
                    raise SandboxError(409, "EXPIRED", "the order's time_expire has passed")
                if params.get("openid"):
                    trade["openid"] = params["openid"]
                self._mark_paid(trade)
            elif action == "password":
                if state != "USERPAYING":
                    raise SandboxError(409, "BAD_STATE", f"trade is {state}, no password expected")
                self._mark_paid(trade)
                return
            else:  # fail / cancel
                if trade["api"] == "v2":
                    if state != "USERPAYING":
                        raise SandboxError(409, "BAD_STATE", f"trade is {state}")
                    self._set_state(trade, "PAYERROR")
                    self.sandbox.record(trade, "payer_" + action)
                elif state != "NOTPAY":
                    raise SandboxError(409, "BAD_STATE", f"trade is {state}")
                else:
                    self.sandbox.record(trade, "payer_" + action, note="trade stays NOTPAY")
                return
        if params.get("notify", True) is not False:
            self._notify_transaction(trade, params)

    def _mark_paid(self, trade: dict[str, Any]) -> None:
        now = self.sandbox.now()
        trade["transaction_id"] = "42000" + now.astimezone(CN_TZ).strftime("%Y%m%d") + _random(string.digits, 15)
        trade["success_time"] = _rfc3339(now)
        trade["paid_at"] = now.isoformat()
        trade["openid"] = trade.get("openid") or "o" + _random(_ALNUM, 27)
        self._set_state(trade, "SUCCESS")
        self.sandbox.record(trade, "paid", transaction_id=trade["transaction_id"])

    # --- notifications --------------------------------------------------------------------
    def _notify_transaction(self, trade: dict[str, Any], params: dict[str, Any]) -> None:
        acct = self._account(trade["mchid"])
        if acct is None:
            return
        resource = self._transaction_json(trade)
        if params.get("amount") is not None:
            resource["amount"]["total"] = resource["amount"]["payer_total"] = int(params["amount"])
        self._send(
            acct,
            trade["notify_url"],
            "TRANSACTION.SUCCESS",
            "支付成功",
            "transaction",
            resource,
            key=trade["out_trade_no"],
            signtest=bool(params.get("signtest")),
            bad_signature=bool(params.get("bad_signature")),
        )

    def _send(
        self,
        acct: WechatAccount,
        url: str,
        event_type: str,
        summary: str,
        original_type: str,
        resource: dict[str, Any],
        *,
        key: str,
        signtest: bool = False,
        bad_signature: bool = False,
    ) -> str:
        envelope = {
            "id": "EV-" + self.sandbox.now().astimezone(CN_TZ).strftime("%Y%m%d%H%M%S") + _random(string.digits, 8),
            "create_time": _rfc3339(self.sandbox.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                **_aead_encrypt(acct.apiv3_key, _dumps(resource), original_type),
            },
        }
        # Reorder the resource keys as WeChat shows them.
        res = envelope["resource"]
        envelope["resource"] = {
            "original_type": res["original_type"],
            "algorithm": res["algorithm"],
            "ciphertext": res["ciphertext"],
            "associated_data": res["associated_data"],
            "nonce": res["nonce"],
        }
        body = _dumps(envelope)
        with self.sandbox.lock:
            serial, private_key = acct.notification_key()

        def build() -> tuple[dict[str, str], bytes]:
            ts, nonce = str(int(self.sandbox.now().timestamp())), _nonce()
            if signtest:
                signature = "WECHATPAY/SIGNTEST/" + base64.b64encode(secrets.token_bytes(192)).decode()
            else:
                message = f"{ts}\n{nonce}\n{body.decode()}\n" + ("sandbox-bad-signature" if bad_signature else "")
                signature = _rsa_sign(private_key, message)
            return (
                {
                    "Content-Type": "application/json",
                    "Wechatpay-Timestamp": ts,
                    "Wechatpay-Nonce": nonce,
                    "Wechatpay-Signature": signature,
                    "Wechatpay-Serial": serial,
                    "Wechatpay-Signature-Type": SIGNATURE_TYPE,
                    "Request-ID": _nonce(),
                    "User-Agent": "Mozilla/4.0",
                },
                body,
            )

        schedule = [] if signtest else NOTIFY_SCHEDULE
        return self.sandbox.notify(
            self.channel, url, build, schedule, lambda status, _answer: status in (200, 204), key=key
        )

    # --- refunds --------------------------------------------------------------------------
    def _refund(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        data = self._json_body(req)
        out_refund_no = data.get("out_refund_no")
        if not isinstance(out_refund_no, str) or not _OUT_REFUND_NO.match(out_refund_no):
            raise _param_error("out_refund_no", "必填，1-64位数字、字母、_-|*@", out_refund_no)
        if len(data.get("reason") or "") > 80:
            raise _param_error("reason", "长度超过80")
        notify_url = data.get("notify_url")
        if notify_url is not None and (
            not isinstance(notify_url, str) or "?" in notify_url or not notify_url.startswith(("https://", "http://"))
        ):
            raise _param_error("notify_url", "须为不带参数的 http(s) 地址", notify_url)
        amount = data.get("amount")
        if not isinstance(amount, dict):
            raise _param_error("amount", "必填")
        refund_amt, total = amount.get("refund"), amount.get("total")
        for name, value in (("amount.refund", refund_amt), ("amount.total", total)):
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise _param_error(name, "须为大于0的整数（分）", value)
        if amount.get("currency") != "CNY":
            raise _param_error("amount.currency", "必填，仅支持 CNY", amount.get("currency"))
        if data.get("transaction_id"):
            trade = self._find_refund_trade(acct, transaction_id=data["transaction_id"])
        elif data.get("out_trade_no"):
            trade = self._find_refund_trade(acct, out_trade_no=data["out_trade_no"])
        else:
            raise _param_error("out_trade_no", "transaction_id 与 out_trade_no 须二选一")
        key = f"{acct.mchid}/{out_refund_no}"
        with self.sandbox.lock:
            existing = self.sandbox.refunds[self.channel].get(key)
            if existing is not None:
                if existing["out_trade_no"] != trade["out_trade_no"] or existing["refund"] != refund_amt:
                    raise _Reject(_error(400, "PARAM_ERROR", "退款单号已存在，且退款金额或订单与之前请求不一致"))
                self.sandbox.record(existing, "refund_repeated")
                return self._signed(req, acct, 200, self._refund_json(existing))
            if trade["trade_state"] not in ("SUCCESS", "REFUND"):
                raise _Reject(_error(400, "INVALID_REQUEST", f"订单状态为 {trade['trade_state']}，不能退款"))
            if total != trade["total"]:
                raise _param_error("amount.total", "与原订单金额不一致", total)
            if trade["refunded"] + refund_amt > trade["total"]:
                raise _Reject(_error(400, "INVALID_REQUEST", "退款金额超过订单可退金额"))
            now = self.sandbox.now()
            refund = {
                "mchid": acct.mchid,
                "out_refund_no": out_refund_no,
                "refund_id": "50" + _random(string.digits, 27),
                "transaction_id": trade["transaction_id"],
                "out_trade_no": trade["out_trade_no"],
                "status": "PROCESSING",
                "refund": refund_amt,
                "total": trade["total"],
                "reason": data.get("reason", ""),
                "notify_url": notify_url,
                "create_time": _rfc3339(now),
                "created_at": now.isoformat(),
                "success_time": None,
                "history": [],
            }
            self.sandbox.refunds[self.channel][key] = refund
            trade["refunded"] += refund_amt
            self._set_state(trade, "REFUND")
            self.sandbox.record(refund, "refund_created", amount=refund_amt)
            self.sandbox.record(trade, "refund_created", out_refund_no=out_refund_no, amount=refund_amt)
            body = self._refund_json(refund)
        if data.get("reason") != HOLD_REFUND_REASON:
            self.sandbox.later(REFUND_DELAY, lambda: self._finish_refund(refund, "SUCCESS"))
        return self._signed(req, acct, 200, body)

    def _find_refund_trade(self, acct: WechatAccount, **by: str) -> dict[str, Any]:
        try:
            return self._find_trade(acct, **by)
        except _Reject:
            raise _Reject(_error(404, "RESOURCE_NOT_EXISTS", "订单不存在")) from None

    def _refund_json(self, refund: dict[str, Any]) -> dict[str, Any]:
        out: dict[str, Any] = {
            "refund_id": refund["refund_id"],
            "out_refund_no": refund["out_refund_no"],
            "transaction_id": refund["transaction_id"],
            "out_trade_no": refund["out_trade_no"],
            "channel": "ORIGINAL",
            "user_received_account": "支付用户零钱",
        }
        if refund["success_time"]:
            out["success_time"] = refund["success_time"]
        out.update(create_time=refund["create_time"], status=refund["status"], funds_account="AVAILABLE")
        out["amount"] = {
            "total": refund["total"],
            "refund": refund["refund"],
            "from": [],
            "payer_total": refund["total"],
            "payer_refund": refund["refund"],
            "settlement_refund": refund["refund"],
            "settlement_total": refund["total"],
            "discount_refund": 0,
            "currency": "CNY",
            "refund_fee": 0,
        }
        out["promotion_detail"] = []
        return out

    def _finish_refund(self, refund: dict[str, Any], status: str) -> None:
        with self.sandbox.lock:
            if refund["status"] != "PROCESSING":
                return
            refund["status"] = status
            if status == "SUCCESS":
                refund["success_time"] = _rfc3339(self.sandbox.now())
            if status == "CLOSED":  # the money goes back to what can be refunded
                trade = self.sandbox.trades[self.channel].get(f"{refund['mchid']}/{refund['out_trade_no']}")
                if trade is not None:
                    trade["refunded"] -= refund["refund"]
            self.sandbox.record(refund, f"refund_{status.lower()}")
            acct = self._account(refund["mchid"])
            url = refund["notify_url"]
            resource = {
                "mchid": refund["mchid"],
                "out_trade_no": refund["out_trade_no"],
                "transaction_id": refund["transaction_id"],
                "out_refund_no": refund["out_refund_no"],
                "refund_id": refund["refund_id"],
                "refund_status": status,
                "user_received_account": "支付用户零钱",
                "amount": {
                    "total": refund["total"],
                    "refund": refund["refund"],
                    "payer_total": refund["total"],
                    "payer_refund": refund["refund"],
                },
            }
            if refund["success_time"]:
                resource["success_time"] = refund["success_time"]
        if acct is not None and url:
            summaries = {"SUCCESS": "退款成功", "ABNORMAL": "退款异常", "CLOSED": "退款关闭"}
            self._send(
                acct, url, f"REFUND.{status}", summaries[status], "refund", resource, key=refund["out_refund_no"]
            )

    def _refund_action(self, out_refund_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        with self.sandbox.lock:
            matches = [
                r
                for r in self.sandbox.refunds[self.channel].values()
                if r["out_refund_no"] == out_refund_no
                and (params.get("mchid") is None or r["mchid"] == params["mchid"])
            ]
        if not matches:
            raise SandboxError(404, "RESOURCE_NOT_EXISTS", f"no WeChat refund {out_refund_no!r}")
        refund = max(matches, key=lambda r: r["created_at"])
        status = {"refund_success": "SUCCESS", "refund_abnormal": "ABNORMAL", "refund_closed": "CLOSED"}[action]
        if refund["status"] not in ("PROCESSING", "ABNORMAL"):
            raise SandboxError(409, "BAD_STATE", f"refund is {refund['status']}")
        with self.sandbox.lock:
            refund["status"] = "PROCESSING"  # ABNORMAL may still be resolved
        self._finish_refund(refund, status)
        with self.sandbox.lock:
            return self._refund_json(refund)

    # --- platform certificates ------------------------------------------------------------
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

    # --- bills ----------------------------------------------------------------------------
    def _bill_apply(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        params = req.params
        try:
            bill_date = date.fromisoformat(params.get("bill_date", ""))
        except ValueError:
            raise _Reject(
                _error(
                    400,
                    "PARAM_ERROR",
                    "bill_date 须为 YYYY-MM-DD",
                    {"field": "bill_date", "issue": "格式错误", "location": "query"},
                )
            ) from None
        bill_type = params.get("bill_type", "ALL")
        tar_type = params.get("tar_type")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise _Reject(_error(400, "PARAM_ERROR", "bill_type 须为 ALL/SUCCESS/REFUND"))
        if tar_type not in (None, "GZIP"):
            raise _Reject(_error(400, "PARAM_ERROR", "tar_type 仅支持 GZIP"))
        content = self.bill_csv(acct.mchid, bill_date, bill_type)
        if content is None:
            raise _Reject(_error(400, "NO_STATEMENT_EXIST", "该日期无交易，账单不存在"))
        raw = content.encode("utf-8")
        served = gzip.compress(raw, mtime=0) if tar_type == "GZIP" else raw
        token = secrets.token_urlsafe(24)
        with self.sandbox.lock:
            acct.bill_tokens[token] = (served, self.sandbox.now().timestamp() + BILL_URL_LIFETIME)
        return self._signed(
            req,
            acct,
            200,
            {
                "hash_type": "SHA1",
                "hash_value": hashlib.sha1(served).hexdigest(),  # noqa: S324 - protocol
                "download_url": f"{req.base_url}/v3/billdownload/file?token={token}",
            },
        )

    def _bill_download(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        token = req.params.get("token", "")
        with self.sandbox.lock:
            entry = acct.bill_tokens.get(token)
        if entry is None or entry[1] < self.sandbox.now().timestamp():
            return _error(400, "INVALID_REQUEST", "下载链接无效或已过期")
        return SandboxResponse(200, entry[0], {"Content-Type": "application/octet-stream", "Request-ID": _nonce()})

    def bill_csv(self, mchid: str, bill_date: date, bill_type: str) -> str | None:
        """The §1.9 trade bill text for one merchant and day, or None when nothing happened."""
        rows: list[dict[str, str]] = []
        with self.sandbox.lock:
            trades = [t for t in self.sandbox.trades[self.channel].values() if t["mchid"] == mchid]
            refunds = [r for r in self.sandbox.refunds[self.channel].values() if r["mchid"] == mchid]
            by_no = {t["out_trade_no"]: t for t in trades}
            if bill_type in ("ALL", "SUCCESS"):
                for t in trades:
                    if not t.get("paid_at"):
                        continue
                    paid_at = datetime.fromisoformat(t["paid_at"]).astimezone(CN_TZ)
                    if paid_at.date() != bill_date:
                        continue
                    rows.append(self._payment_row(t, paid_at))
            if bill_type in ("ALL", "REFUND"):
                for r in refunds:
                    created = datetime.fromisoformat(r["created_at"]).astimezone(CN_TZ)
                    if created.date() == bill_date and r["out_trade_no"] in by_no:
                        rows.append(self._refund_row(by_no[r["out_trade_no"]], r, created))
        if not rows:
            return None
        columns = {"ALL": BILL_ALL, "SUCCESS": BILL_SUCCESS, "REFUND": BILL_REFUND}[bill_type]
        summary_cols = SUMMARY_SUCCESS if bill_type == "SUCCESS" else SUMMARY_ALL
        rows.sort(key=lambda row: row["交易时间"])

        def total(col: str, places: int = 2) -> str:
            return str(sum((Decimal(row[col]) for row in rows), Decimal(0)).quantize(Decimal(1).scaleb(-places)))

        summary = {
            "总交易单数": str(len(rows)),
            "应结订单总金额": total("应结订单金额"),
            "退款总金额": total("退款金额"),
            "充值券退款总金额": total("充值券退款金额"),
            "手续费总金额": total("手续费", 5),
            "订单总金额": total("订单金额"),
            "申请退款总金额": total("申请退款金额"),
        }
        lines = [",".join(columns)]
        lines += [",".join("`" + row[c] for c in columns) for row in rows]
        lines.append(",".join(summary_cols))
        lines.append(",".join("`" + summary[c] for c in summary_cols))
        return "\r\n".join(lines) + "\r\n"

    def _base_row(self, t: dict[str, Any], at: datetime) -> dict[str, str]:
        return {
            "交易时间": at.strftime("%Y-%m-%d %H:%M:%S"),
            "公众账号ID": t["appid"],
            "商户号": t["mchid"],
            "特约商户号": "0",
            "设备号": "",
            "微信订单号": t["transaction_id"] or "",
            "商户订单号": t["out_trade_no"],
            "用户标识": t.get("openid") or "",
            "交易类型": t["trade_type"],
            "付款银行": "OTHERS",
            "货币种类": "CNY",
            "代金券金额": "0.00",
            "充值券退款金额": "0.00",
            "商品名称": _bill_text(t["description"]),
            "商户数据包": _bill_text(t.get("attach") or ""),
            "费率": "0.60%",
            "费率备注": "",
        }

    def _payment_row(self, t: dict[str, Any], paid_at: datetime) -> dict[str, str]:
        row = self._base_row(t, paid_at)
        row.update(
            {
                "交易状态": "REVOKED" if t.get("revoked_after_payment") else "SUCCESS",
                "应结订单金额": _yuan(t["total"]),
                "微信退款单号": "0",
                "商户退款单号": "0",
                "退款金额": "0.00",
                "退款类型": "",
                "退款状态": "",
                "手续费": str((Decimal(t["total"]) * FEE_RATE / 100).quantize(Decimal("0.00001"))),
                "订单金额": _yuan(t["total"]),
                "申请退款金额": "0.00",
                "退款申请时间": "",
                "退款成功时间": "",
            }
        )
        return row

    def _refund_row(self, t: dict[str, Any], r: dict[str, Any], created: datetime) -> dict[str, str]:
        row = self._base_row(t, created)
        success = ""
        if r["success_time"]:
            success = datetime.fromisoformat(r["success_time"]).strftime("%Y-%m-%d %H:%M:%S")
        row.update(
            {
                "交易状态": "REFUND",
                "应结订单金额": "0.00",
                "微信退款单号": r["refund_id"],
                "商户退款单号": r["out_refund_no"],
                "退款金额": _yuan(r["refund"]),
                "退款类型": "ORIGINAL",
                "退款状态": r["status"],
                "手续费": str((-Decimal(r["refund"]) * FEE_RATE / 100).quantize(Decimal("0.00001"))),
                "订单金额": "0.00",
                "申请退款金额": _yuan(r["refund"]),
                "退款申请时间": created.strftime("%Y-%m-%d %H:%M:%S"),
                "退款成功时间": success,
            }
        )
        return row

    # --- v2 payment code ------------------------------------------------------------------
    def _v2(self, req: SandboxRequest) -> SandboxResponse:
        if req.method != "POST":
            return self._v2_fail("请使用 POST")
        try:
            params = parse_v2_xml(req.body)
        except (ValueError, ET.ParseError):
            return self._v2_fail("XML 格式错误")
        acct = self._account(params.get("mch_id", ""))
        if acct is None:
            return self._v2_fail("mch_id 参数错误")
        sign_type = params.get("sign_type") or "MD5"
        if sign_type not in ("MD5", "HMAC-SHA256"):
            return self._v2_fail("sign_type 参数错误")
        if not params.get("nonce_str") or len(params["nonce_str"]) > 32:
            return self._v2_fail("nonce_str 参数错误")
        expected = v2_sign(params, acct.api_v2_key, sign_type)
        if not hmac.compare_digest(expected, params.get("sign", "")):
            return self._v2_fail("签名错误")
        if params.get("appid") != acct.appid:
            return self._v2_result(
                req, acct, sign_type, {"err_code": "APPID_MCHID_NOT_MATCH", "err_code_des": "appid和mch_id不匹配"}
            )
        if req.path == "/pay/micropay":
            return self._micropay(req, acct, sign_type, params)
        if req.path == "/pay/orderquery":
            return self._orderquery(req, acct, sign_type, params)
        return self._reverse(req, acct, sign_type, params)

    def _v2_fail(self, message: str) -> SandboxResponse:
        return SandboxResponse.text(200, build_v2_xml({"return_code": "FAIL", "return_msg": message}), "text/xml")

    def _v2_result(
        self, req: SandboxRequest, acct: WechatAccount, sign_type: str, fields: dict[str, str]
    ) -> SandboxResponse:
        """A signed ``return_code=SUCCESS`` answer; ``err_code`` in ``fields`` makes it a business FAIL."""
        out = {
            "return_code": "SUCCESS",
            "return_msg": "OK",
            "appid": acct.appid,
            "mch_id": acct.mchid,
            "nonce_str": _random(_ALNUM, 16),
        }
        out["result_code"] = "FAIL" if "err_code" in fields else "SUCCESS"
        out.update({k: str(v) for k, v in fields.items() if v is not None})
        fault = req.fault
        sign_key = acct.api_v2_key + ("x" if fault is not None and fault.kind == "bad_signature" else "")
        out["sign"] = v2_sign(out, sign_key, sign_type)
        if fault is not None and fault.kind == "tamper_amount" and "total_fee" in out:
            out["total_fee"] = out["cash_fee"] = str(fault.amount if fault.amount is not None else 1)
        return SandboxResponse.text(200, build_v2_xml(out), "text/xml")

    def _v2_trade_fields(self, t: dict[str, Any]) -> dict[str, str]:
        out = {
            "device_info": "",
            "openid": t.get("openid") or "",
            "is_subscribe": "N",
            "trade_type": t["trade_type"],
            "out_trade_no": t["out_trade_no"],
            "attach": t.get("attach") or "",
        }
        if t["transaction_id"]:
            out.update(
                {
                    "bank_type": "OTHERS",
                    "total_fee": str(t["total"]),
                    "fee_type": "CNY",
                    "cash_fee": str(t["total"]),
                    "cash_fee_type": "CNY",
                    "settlement_total_fee": str(t["total"]),
                    "coupon_fee": "0",
                    "transaction_id": t["transaction_id"],
                    "time_end": datetime.fromisoformat(t["paid_at"]).astimezone(CN_TZ).strftime("%Y%m%d%H%M%S"),
                }
            )
        return out

    def _micropay(
        self, req: SandboxRequest, acct: WechatAccount, sign_type: str, params: dict[str, str]
    ) -> SandboxResponse:
        def fail(code: str, des: str) -> SandboxResponse:
            return self._v2_result(req, acct, sign_type, {"err_code": code, "err_code_des": des})

        for name in ("body", "out_trade_no", "total_fee", "spbill_create_ip", "auth_code"):
            if not params.get(name):
                return fail("PARAM_ERROR", f"{name} 参数缺失")
        if len(params["out_trade_no"]) > 32 or len(params["body"]) > 127:
            return fail("PARAM_ERROR", "out_trade_no 或 body 长度错误")
        if not params["total_fee"].isdigit() or int(params["total_fee"]) <= 0:
            return fail("PARAM_ERROR", "total_fee 须为大于0的整数")
        if params.get("fee_type", "CNY") != "CNY":
            return fail("PARAM_ERROR", "fee_type 仅支持 CNY")
        auth_code = params["auth_code"]
        if not _AUTH_CODE.match(auth_code):
            return fail("AUTH_CODE_INVALID", "付款码无效，请重新扫码")
        key = f"{acct.mchid}/{params['out_trade_no']}"
        total = int(params["total_fee"])
        with self.sandbox.lock:
            trade = self.sandbox.trades[self.channel].get(key)
            if trade is not None:
                if trade["api"] != "v2" or trade["auth_code"] != auth_code or trade["total"] != total:
                    return fail("OUT_TRADE_NO_USED", "商户订单号重复")
                state = trade["trade_state"]
                if state == "SUCCESS" or state == "REFUND":
                    return fail("ORDERPAID", "订单已支付")
                if state == "USERPAYING":
                    return fail("USERPAYING", "需要用户输入支付密码")
                if state == "REVOKED":
                    return fail("ORDERREVERSED", "订单已撤销")
                return fail("ORDERCLOSED", "订单已关闭")
            trade = {
                "api": "v2",
                "scene": "micropay",
                "request": params,
                "mchid": acct.mchid,
                "appid": acct.appid,
                "out_trade_no": params["out_trade_no"],
                "trade_type": "MICROPAY",
                "trade_state": "USERPAYING",
                "status": "USERPAYING",
                "description": params["body"],
                "attach": params.get("attach", ""),
                "notify_url": None,
                "total": total,
                "currency": "CNY",
                "openid": None,
                "transaction_id": None,
                "success_time": None,
                "created_at": self.sandbox.now().isoformat(),
                "expires_at": None,
                "prepay_ids": [],
                "refunded": 0,
                "auth_code": auth_code,
                "revoked_after_payment": False,
                "reverse_requested": False,
                "history": [],
            }
            self.sandbox.trades[self.channel][key] = trade
            self.sandbox.record(trade, "micropay", auth_code=auth_code)
            suffix = auth_code[-4:]
            if suffix == "0000":
                return fail("USERPAYING", "需要用户输入支付密码")
            if suffix in ("0001", "0002", "0004"):
                self._set_state(trade, "PAYERROR")
                self.sandbox.record(trade, "payerror", suffix=suffix)
                if suffix == "0001":
                    return fail("NOTENOUGH", "余额不足")
                if suffix == "0002":
                    return fail("AUTHCODEEXPIRE", "二维码已过期，请用户在微信上刷新后再试")
                return fail("BANKERROR", "银行系统异常")
            self._mark_paid(trade)
            if suffix == "0003":
                return fail("SYSTEMERROR", "系统超时")
            return self._v2_result(req, acct, sign_type, self._v2_trade_fields(trade))

    def _v2_find(self, acct: WechatAccount, params: dict[str, str]) -> dict[str, Any] | None:
        with self.sandbox.lock:
            trades = self.sandbox.trades[self.channel]
            if params.get("transaction_id"):
                return next(
                    (
                        t
                        for t in trades.values()
                        if t["mchid"] == acct.mchid and t["transaction_id"] == params["transaction_id"]
                    ),
                    None,
                )
            if params.get("out_trade_no"):
                return trades.get(f"{acct.mchid}/{params['out_trade_no']}")
        return None

    def _orderquery(
        self, req: SandboxRequest, acct: WechatAccount, sign_type: str, params: dict[str, str]
    ) -> SandboxResponse:
        if not params.get("transaction_id") and not params.get("out_trade_no"):
            return self._v2_result(
                req,
                acct,
                sign_type,
                {"err_code": "PARAM_ERROR", "err_code_des": "transaction_id 与 out_trade_no 须二选一"},
            )
        trade = self._v2_find(acct, params)
        if trade is None:
            return self._v2_result(
                req, acct, sign_type, {"err_code": "ORDERNOTEXIST", "err_code_des": "此交易订单号不存在"}
            )
        with self.sandbox.lock:
            fields = self._v2_trade_fields(trade)
            fields.update(trade_state=trade["trade_state"], trade_state_desc=_STATE_DESC[trade["trade_state"]])
            if not trade["transaction_id"]:
                fields["total_fee"] = str(trade["total"])
        return self._v2_result(req, acct, sign_type, fields)

    def _reverse(
        self, req: SandboxRequest, acct: WechatAccount, sign_type: str, params: dict[str, str]
    ) -> SandboxResponse:
        if not params.get("transaction_id") and not params.get("out_trade_no"):
            return self._v2_result(
                req,
                acct,
                sign_type,
                {"err_code": "PARAM_ERROR", "err_code_des": "transaction_id 与 out_trade_no 须二选一", "recall": "N"},
            )
        trade = self._v2_find(acct, params)
        if trade is None:
            return self._v2_result(req, acct, sign_type, {"recall": "N"})
        with self.sandbox.lock:
            if trade["api"] != "v2":
                return self._v2_result(
                    req,
                    acct,
                    sign_type,
                    {"err_code": "INVALID_REQUEST", "err_code_des": "订单的支付场景不支持该请求", "recall": "N"},
                )
            state = trade["trade_state"]
            if state == "USERPAYING" and not trade["reverse_requested"]:
                trade["reverse_requested"] = True
                self.sandbox.record(trade, "reverse_refused_userpaying")
                return self._v2_result(
                    req,
                    acct,
                    sign_type,
                    {"err_code": "USERPAYING", "err_code_des": "用户支付中，请稍后再试", "recall": "Y"},
                )
            if state != "REVOKED":
                trade["revoked_after_payment"] = trade["transaction_id"] is not None
                self._set_state(trade, "REVOKED")
                self.sandbox.record(trade, "revoked", money_returned=trade["revoked_after_payment"])
        return self._v2_result(req, acct, sign_type, {"recall": "N"})


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


def _bill_text(text: str) -> str:
    """Free text in bills: commas and line breaks escaped so that a plain split on ',' is safe."""
    return text.replace("\r", "").replace("\n", "\\n").replace(",", "\\ ")
