"""Alipay OpenAPI gateway simulator (the platform side of docs/channel-protocols.md §3).

Written from the protocol reference only; it shares no code with ``channels/alipay.py``.

Endpoints under the ``/alipay`` prefix:

- ``POST /gateway.do`` (form body and/or query string): every API call. The RSA2 request
  signature is checked against the app's public key; answers are ``{"<method>_response": {...},
  "sign": "..."}`` signed over the node's raw text (which escapes ``/`` as ``\\/``, as some
  gateways do, so that clients must verify the text as sent). Gateway-level failures (bad
  signature, unknown app, missing parameters) come as an unsigned ``error_response``.
- ``GET /gateway.do?<signed page/wap parameters>``: the payer's browser opening the cashier;
  ``POST /gateway.do`` with ``method=alipay.trade.app.pay`` (the APP order string as body): the
  app SDK opening the cashier. Either creates the trade in ``WAIT_BUYER_PAY``; before that the
  trade does not exist and queries answer ``40004 ACQ.TRADE_NOT_EXIST`` (§3.4).
- ``GET /bills/<token>``: bill zip downloads (links live 30 *real* seconds).

Payer actions (``POST /_sandbox/alipay/trades/{out_trade_no}/{action}``, JSON body):

- ``open`` ``{"order_string"|"url"}``: open the cashier for a prepaid order (the APP order
  string, or the page/WAP URL from ``client_params``).
- ``pay`` ``{"order_string"|"url"?, "after_seconds"?, "amount"?, "buyer_id"?}``: pay it (opening
  it first when given the order); ``amount`` (fen) makes Alipay report a different amount.
  On a payment-code trade waiting for the password, ``pay`` is the same as ``password``.
- ``password``: the payer confirms a payment-code trade that answered ``10003``.
- ``fail``: the payment fails for good: an unpaid trade becomes ``TRADE_CLOSED``.
- ``cancel``: the payer walks away: the trade stays ``WAIT_BUYER_PAY`` (the merchant has to
  close or cancel it).
- ``expire``: ``time_expire`` passes now: an unpaid trade becomes ``TRADE_CLOSED``.

Payment-code conventions (``alipay.trade.pay``, ``scene=bar_code``): an ``auth_code`` must have
the 25–30 prefix and 16–24 digits (else ``ACQ.PAYMENT_AUTH_CODE_INVALID``). By its last four
digits: ``0000`` -> ``10003`` waiting for the password; ``1111`` -> ``40004
ACQ.BUYER_BALANCE_NOT_ENOUGH``; ``2222`` -> the payment happens but the answer is ``20000``
(outcome unknown to the merchant); ``3333`` -> ``10003`` and the first ``alipay.trade.cancel``
answers ``retry_flag=Y`` without acting; anything else -> ``10000`` paid at once.

Sandbox relaxations: a bill is served for any date (today included); it lists the day's
payments and refunds (UTC+8) and ``isp.bill_not_exist`` means the day had none.
"""

from __future__ import annotations

import base64
import csv
import io
import json
import re
import secrets
import threading
import time
import zipfile
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from sandbox.core import ChannelSimulator, SandboxError, SandboxRequest, SandboxResponse

BEIJING = timezone(timedelta(hours=8))
TIME_FMT = "%Y-%m-%d %H:%M:%S"
RETRY_SCHEDULE = [240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0]  # 8 sends in ~25 h
PAYER_ACTIONS = ("open", "pay", "password", "fail", "cancel", "expire")
TIMESTAMP_TOLERANCE = timedelta(minutes=15)
BILL_LINK_SECONDS = 30.0  # real seconds, not divided by time_factor
FEE_RATE = Decimal("0.006")

# Products: which trade_status values notify by default (§3.5), and the pay API they belong to.
PAGE_METHODS = {
    "alipay.trade.app.pay": ("QUICK_MSECURITY_PAY",),
    "alipay.trade.page.pay": ("FAST_INSTANT_TRADE_PAY",),
    "alipay.trade.wap.pay": ("QUICK_WAP_WAY", "QUICK_WAP_PAY"),  # docs vs python-alipay-sdk ⚠
}
NOTIFIES = {
    "QUICK_MSECURITY_PAY": {"TRADE_SUCCESS", "TRADE_CLOSED", "TRADE_FINISHED"},
    "FAST_INSTANT_TRADE_PAY": {"TRADE_SUCCESS"},
    "QUICK_WAP_WAY": {"TRADE_SUCCESS", "TRADE_CLOSED"},
    "QUICK_WAP_PAY": {"TRADE_SUCCESS", "TRADE_CLOSED"},
    "FACE_TO_FACE_PAYMENT": {"TRADE_SUCCESS"},
}
AMOUNT_RE = re.compile(r"\d{1,9}(\.\d{1,2})?")
AUTH_CODE_RE = re.compile(r"(2[5-9]|30)\d{14,22}")

DETAIL_HEADER = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
]
SUMMARY_HEADER = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
]


class _ApiError(Exception):
    """An Alipay result other than success; ``gateway`` ones come as an unsigned error_response."""

    def __init__(
        self,
        code: str,
        msg: str,
        sub_code: str,
        sub_msg: str,
        *,
        gateway: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(sub_msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg
        self.gateway, self.extra = gateway, dict(extra or {})

    def node(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg, "sub_code": self.sub_code, "sub_msg": self.sub_msg, **self.extra}


def _biz_error(sub_code: str, sub_msg: str, **extra: Any) -> _ApiError:
    return _ApiError("40004", "Business Failed", sub_code, sub_msg, extra=extra)


def _invalid(sub_code: str, sub_msg: str, *, gateway: bool = False) -> _ApiError:
    return _ApiError("40002", "Invalid Arguments", sub_code, sub_msg, gateway=gateway)


def _missing(name: str, *, gateway: bool = False) -> _ApiError:
    return _ApiError(
        "40001",
        "Missing Required Arguments",
        f"isv.missing-{name.replace('_', '-')}",
        f"缺少必选参数 {name}",
        gateway=gateway,
    )


# --- small wire helpers (independent of paycore's adapter) ---------------------------------------
def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _rsa2_sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def _rsa2_ok(key: rsa.RSAPublicKey, text: str, sign: str) -> bool:
    try:
        key.verify(base64.b64decode(sign, validate=True), text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _request_sign_content(params: Mapping[str, str]) -> str:
    """§3.2: everything but ``sign``, empty values dropped, ``sign_type`` kept, sorted, raw."""
    pairs = sorted((k, v) for k, v in params.items() if k != "sign" and v != "")
    return "&".join(f"{k}={v}" for k, v in pairs)


def _notify_sign_content(fields: Mapping[str, str]) -> str:
    """§3.5: everything but ``sign`` and ``sign_type``, empty values KEPT, sorted, raw."""
    pairs = sorted((k, v) for k, v in fields.items() if k not in ("sign", "sign_type"))
    return "&".join(f"{k}={v}" for k, v in pairs)


def _to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def _from_yuan(text: Any, field: str) -> int:
    if not isinstance(text, str) or not AMOUNT_RE.fullmatch(text):
        raise _invalid("isv.invalid-parameter", f"{field} 金额格式错误: {text!r}")
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _fee(fen: int) -> int:
    """The service fee the bill shows for an amount (rate fixed for the sandbox), half-up to the fen."""
    return int((Decimal(fen) * FEE_RATE).quantize(Decimal(1), ROUND_HALF_UP))


def _beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FMT)


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _node_text(node: Mapping[str, Any]) -> str:
    """The node as this gateway writes it: compact, UTF-8 text kept, ``/`` escaped as ``\\/``."""
    return json.dumps(node, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")


class AlipaySimulator(ChannelSimulator):
    channel: ClassVar[str] = "alipay"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        # app_id -> (app public key, Alipay private key); bill token -> (expiry, file name, zip)
        self._keys: dict[str, tuple[rsa.RSAPublicKey, rsa.RSAPrivateKey]] = {}
        self._bill_links: dict[str, tuple[float, str, bytes]] = {}
        self._seq_lock = threading.Lock()
        self._seq = 0

    def reset(self) -> None:
        self._keys.clear()
        self._bill_links.clear()

    # --- accounts -----------------------------------------------------------------------
    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        app_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        platform_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        app_id, seller_id = "2021" + _digits(12), "2088" + _digits(12)
        with self.sandbox.lock:
            self._accounts[app_id] = {
                "app_id": app_id,
                "seller_id": seller_id,
                "notify_url": notify_url,
                "seller_email": f"merchant{seller_id[-4:]}@sandbox.example.com",
            }
            self._keys[app_id] = (app_key.public_key(), platform_key)
        return {
            "channel": self.channel,
            "ids": {"app_id": app_id, "seller_id": seller_id},
            "credentials": {"app_private_key": _pem_private(app_key)},
            "options": {"alipay_public_key": _pem_public(platform_key.public_key())},
        }

    # --- HTTP ----------------------------------------------------------------------------
    def handle(self, req: SandboxRequest) -> SandboxResponse:
        if req.path.startswith("/bills/") and req.method == "GET":
            return self._download_bill(req.path[len("/bills/") :])
        if req.path != "/gateway.do":
            return SandboxResponse.text(404, "not found")
        try:
            params = self._read_params(req)
        except _ApiError as exc:
            return self._answer("", None, exc, req)
        method = params.get("method", "")
        try:
            account = self._authenticate(params)
            if method in PAGE_METHODS:
                trade = self._open_cashier(account, params)
                if req.method == "GET":
                    return SandboxResponse.text(200, self._cashier_html(trade), "text/html; charset=utf-8")
                return self._answer(method, account, self._trade_node(trade), req)
            biz = self._biz(params)
            handler = self._API.get(method)
            if handler is None:
                raise _invalid("isv.invalid-method", f"不存在的方法名 {method}", gateway=True)
            node = handler(self, account, params, biz)
        except _ApiError as exc:
            account = self._accounts.get(params.get("app_id", ""))
            return self._answer(method, account, exc, req)
        return self._answer(method, account, node, req)

    def _read_params(self, req: SandboxRequest) -> dict[str, str]:
        pairs = parse_qsl(req.query, keep_blank_values=True)
        if req.body:
            try:
                text = req.body.decode("ascii")
            except UnicodeDecodeError:
                raise _invalid("isv.invalid-charset", "请求体必须是 URL 编码", gateway=True) from None
            pairs += parse_qsl(text, keep_blank_values=True, encoding="utf-8")
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                raise _invalid("isv.invalid-parameter", f"重复的参数 {key}", gateway=True)
            params[key] = value
        return params

    def _authenticate(self, params: Mapping[str, str]) -> dict[str, Any]:
        """Gateway checks in the order a gateway would make them; failures are unsigned."""
        for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version", "charset"):
            if not params.get(name):
                raise _missing(name, gateway=True)
        account = self._accounts.get(params["app_id"])
        if account is None:
            raise _invalid("isv.invalid-app-id", "无效的AppID参数", gateway=True)
        if params["charset"].lower() not in ("utf-8", "utf8"):
            raise _invalid("isv.invalid-charset", "字符集错误", gateway=True)
        if params["version"] != "1.0":
            raise _invalid("isv.invalid-version", "版本号错误", gateway=True)
        if params["sign_type"] != "RSA2":
            raise _invalid("isv.invalid-signature-type", "签名类型错误", gateway=True)
        try:
            sent = datetime.strptime(params["timestamp"], TIME_FMT).replace(tzinfo=BEIJING)
        except ValueError:
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数", gateway=True) from None
        if abs(sent - self.sandbox.now()) > TIMESTAMP_TOLERANCE:
            raise _invalid("isv.invalid-timestamp", "时间戳与网关时间相差超过15分钟(应为北京时间)", gateway=True)
        app_public, _ = self._keys[account["app_id"]]
        content = _request_sign_content(params)
        if not _rsa2_ok(app_public, content, params["sign"]):
            raise _invalid(
                "isv.invalid-signature",
                f"验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}",
                gateway=True,
            )
        return account

    @staticmethod
    def _biz(params: Mapping[str, str]) -> dict[str, Any]:
        text = params.get("biz_content")
        if not text:
            raise _missing("biz_content")
        try:
            biz = json.loads(text)
        except ValueError:
            raise _invalid("isv.invalid-parameter", "biz_content 不是合法的 JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("isv.invalid-parameter", "biz_content 必须是 JSON 对象")
        return biz

    def _answer(
        self, method: str, account: Mapping[str, Any] | None, result: dict[str, Any] | _ApiError, req: SandboxRequest
    ) -> SandboxResponse:
        """Sign the node over its exact text; apply ``bad_signature`` / ``tamper_amount`` faults."""
        if isinstance(result, _ApiError):
            node, name = result.node(), "error_response" if result.gateway else None
            if result.gateway or account is None:
                return SandboxResponse.json(200, {"error_response": node})
        else:
            node, name = result, None
        name = name or method.replace(".", "_") + "_response"
        fault = req.fault
        if fault is not None and fault.kind == "tamper_amount" and "total_amount" in node:
            tampered = _to_yuan(int(fault.amount if fault.amount is not None else 1))
            for key in ("total_amount", "receipt_amount", "buyer_pay_amount", "invoice_amount"):
                if key in node:
                    node[key] = tampered
        text = _node_text(node)
        _, platform_key = self._keys[account["app_id"]]  # type: ignore[index]
        sign = _rsa2_sign(platform_key, text)
        if fault is not None and fault.kind == "bad_signature":
            sign = _rsa2_sign(platform_key, text + " ")
        body = f'{{"{name}":{text},"sign":"{sign}"}}'
        return SandboxResponse.text(200, body.encode("utf-8"), "text/html;charset=utf-8")

    # --- trades ---------------------------------------------------------------------------
    def _next_trade_no(self) -> str:
        with self._seq_lock:
            self._seq += 1
            seq = self._seq
        return f"{_beijing(self.sandbox.now())[:10].replace('-', '')}22001{seq:05d}{_digits(10)}"

    def _find(self, app_id: str, biz: Mapping[str, Any]) -> dict[str, Any] | None:
        trade_no, out_trade_no = biz.get("trade_no"), biz.get("out_trade_no")
        if not trade_no and not out_trade_no:
            raise _missing("out_trade_no")
        with self.sandbox.lock:
            if trade_no:  # trade_no wins
                found = next(
                    (t for t in self._trades.values() if t["app_id"] == app_id and t["trade_no"] == trade_no), None
                )
            else:
                found = self._trades.get(f"{app_id}:{out_trade_no}")
            if found is not None:
                self._expire_if_due(found)
            return found

    def _expire_if_due(self, trade: dict[str, Any]) -> None:
        expire = trade.get("time_expire")
        if trade["trade_status"] != "WAIT_BUYER_PAY" or not expire:
            return
        if _beijing(self.sandbox.now()) >= expire:
            self._close(trade, "expired")

    def _close(self, trade: dict[str, Any], why: str) -> None:
        with self.sandbox.lock:
            trade["trade_status"] = "TRADE_CLOSED"
            trade["gmt_close"] = _beijing(self.sandbox.now())
            self.sandbox.record(trade, "closed", reason=why)
        self._notify(trade, "TRADE_CLOSED")

    def _new_trade(
        self, account: Mapping[str, Any], params: Mapping[str, str], biz: Mapping[str, Any], product_code: str, api: str
    ) -> dict[str, Any]:
        out_trade_no = biz.get("out_trade_no")
        if not out_trade_no:
            raise _missing("out_trade_no")
        if not isinstance(out_trade_no, str) or not re.fullmatch(r"[A-Za-z0-9_]{1,64}", out_trade_no):
            raise _invalid("isv.invalid-parameter", "out_trade_no 格式错误")
        for name in ("total_amount", "subject"):
            if not biz.get(name):
                raise _missing(name)
        amount = _from_yuan(biz["total_amount"], "total_amount")
        if not 1 <= amount <= 100_000_000_00:
            raise _invalid("isv.invalid-parameter", "total_amount 超出范围")
        if biz.get("time_expire") is not None:
            try:
                datetime.strptime(biz["time_expire"], TIME_FMT)
            except (TypeError, ValueError):
                raise _invalid("isv.invalid-parameter", "time_expire 格式错误") from None
        now = _beijing(self.sandbox.now())
        return {
            "app_id": account["app_id"],
            "seller_id": account["seller_id"],
            "out_trade_no": out_trade_no,
            "trade_no": self._next_trade_no(),
            "api": api,
            "product_code": product_code,
            "trade_status": "WAIT_BUYER_PAY",
            "order_amount": amount,
            "total_amount": amount,
            "subject": str(biz["subject"]),
            "body": str(biz.get("body") or ""),
            "time_expire": biz.get("time_expire"),
            "notify_url": params.get("notify_url") or account.get("notify_url"),
            "return_url": params.get("return_url"),
            "auth_code": biz.get("auth_code"),
            "gmt_create": now,
            "gmt_payment": None,
            "gmt_close": None,
            "buyer_id": None,
            "buyer_logon_id": None,
            "refund_fee": 0,
            "cancel_action": None,
            "cancel_retries": 0,
            "biz_content": params.get("biz_content"),
        }

    def _open_cashier(self, account: Mapping[str, Any], params: Mapping[str, str]) -> dict[str, Any]:
        """The payer reached the cashier with a signed page/wap/app order: the trade now exists."""
        biz = self._biz(params)
        api = params["method"]
        product_code = biz.get("product_code")
        if product_code not in PAGE_METHODS[api]:
            raise _invalid("isv.invalid-parameter", f"product_code {product_code!r} 与 {api} 不符")
        fresh = self._new_trade(account, params, biz, product_code, api)
        key = f"{account['app_id']}:{fresh['out_trade_no']}"
        with self.sandbox.lock:
            trade = self._trades.get(key)
            if trade is None:
                self._trades[key] = trade = fresh
                self.sandbox.record(trade, "cashier_opened", method=api)
            elif trade["order_amount"] != fresh["order_amount"] or trade["api"] != api:
                raise _biz_error("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            self._expire_if_due(trade)
            return trade

    def _cashier_html(self, trade: Mapping[str, Any]) -> str:
        return (
            f"<!doctype html><meta charset='utf-8'><title>Sandbox cashier</title>"
            f"<h1>支付宝 sandbox cashier</h1><p>{trade['out_trade_no']}: "
            f"{_to_yuan(trade['total_amount'])} CNY, {trade['trade_status']}</p>"
        )

    def _trade_node(self, trade: Mapping[str, Any]) -> dict[str, Any]:
        node = {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "trade_status": trade["trade_status"],
            "total_amount": _to_yuan(trade["total_amount"]),
        }
        return node

    def _pay(self, trade: dict[str, Any], *, amount: int | None = None, buyer_id: str | None = None) -> bool:
        with self.sandbox.lock:
            self._expire_if_due(trade)
            if trade["trade_status"] != "WAIT_BUYER_PAY":
                return False
            trade["trade_status"] = "TRADE_SUCCESS"
            if amount is not None:
                trade["total_amount"] = int(amount)
            trade["gmt_payment"] = _beijing(self.sandbox.now())
            trade["buyer_id"] = buyer_id or "2088" + _digits(12)
            trade["buyer_logon_id"] = "sb***@example.com"
            self.sandbox.record(trade, "paid", amount=trade["total_amount"])
        self._notify(trade, "TRADE_SUCCESS")
        return True

    # --- API methods ---------------------------------------------------------------------
    def _api_query(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        trade = self._find(account["app_id"], biz)
        if trade is None or trade.get("stub"):
            raise _biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        with self.sandbox.lock:
            node = self._trade_node(trade)
            paid = trade["gmt_payment"] is not None
            node.update(
                {
                    "buyer_logon_id": trade["buyer_logon_id"] or "",
                    "buyer_user_id": trade["buyer_id"] or "",
                    "buyer_pay_amount": _to_yuan(trade["total_amount"] if paid else 0),
                    "receipt_amount": _to_yuan(trade["total_amount"] if paid else 0),
                    "invoice_amount": _to_yuan(trade["total_amount"] if paid else 0),
                    "point_amount": "0.00",
                }
            )
            if not trade["buyer_id"]:
                del node["buyer_logon_id"], node["buyer_user_id"]
            if paid:
                node["send_pay_date"] = trade["gmt_payment"]
                node["fund_bill_list"] = [{"fund_channel": "ALIPAYACCOUNT", "amount": _to_yuan(trade["total_amount"])}]
            return node

    def _api_close(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        trade = self._find(account["app_id"], biz)
        if trade is None or trade.get("stub"):
            raise _biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        with self.sandbox.lock:
            if trade["trade_status"] != "WAIT_BUYER_PAY":
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            self._close(trade, "merchant_close")
            return {
                "code": "10000",
                "msg": "Success",
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
            }

    def _api_pay(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        if biz.get("scene") != "bar_code":
            raise _invalid("isv.invalid-parameter", "scene 仅支持 bar_code")
        auth_code = str(biz.get("auth_code") or "")
        if not AUTH_CODE_RE.fullmatch(auth_code):
            raise _biz_error(
                "ACQ.PAYMENT_AUTH_CODE_INVALID", "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款"
            )
        fresh = self._new_trade(
            account, params, biz, biz.get("product_code") or "FACE_TO_FACE_PAYMENT", "alipay.trade.pay"
        )
        key = f"{account['app_id']}:{fresh['out_trade_no']}"
        with self.sandbox.lock:
            trade = self._trades.get(key)
            if trade is not None:
                self._expire_if_due(trade)
                closed_unpaid = trade["trade_status"] == "TRADE_CLOSED" and not trade["gmt_payment"]
                if trade.get("stub") or closed_unpaid:
                    raise _biz_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
                if trade["gmt_payment"]:
                    raise _biz_error("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                return self._waiting_node(trade)
            self._trades[key] = trade = fresh
            self.sandbox.record(trade, "created", scene="bar_code")
            suffix = auth_code[-4:]
            if suffix == "1111":
                self._close(trade, "balance_not_enough")
                raise _biz_error("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足", out_trade_no=trade["out_trade_no"])
            if suffix in ("0000", "3333"):
                trade["cancel_retries"] = 1 if suffix == "3333" else 0
                return self._waiting_node(trade)
        self._pay(trade)
        if suffix == "2222":
            raise _ApiError("20000", "Service Currently Unavailable", "ACQ.SYSTEM_ERROR", "系统异常")
        with self.sandbox.lock:
            amount = _to_yuan(trade["total_amount"])
            return {
                "code": "10000",
                "msg": "Success",
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
                "buyer_logon_id": trade["buyer_logon_id"],
                "buyer_user_id": trade["buyer_id"],
                "total_amount": amount,
                "receipt_amount": amount,
                "buyer_pay_amount": amount,
                "point_amount": "0.00",
                "invoice_amount": amount,
                "gmt_payment": trade["gmt_payment"],
                "fund_bill_list": [{"fund_channel": "ALIPAYACCOUNT", "amount": amount}],
            }

    @staticmethod
    def _waiting_node(trade: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "code": "10003",
            "msg": "order success pay inprocess",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "total_amount": _to_yuan(trade["total_amount"]),
        }

    def _api_refund(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        if not biz.get("refund_amount"):
            raise _missing("refund_amount")
        amount = _from_yuan(biz["refund_amount"], "refund_amount")
        if amount <= 0:
            raise _invalid("isv.invalid-parameter", "refund_amount 必须大于0")
        trade = self._find(account["app_id"], biz)
        if trade is None or trade.get("stub"):
            raise _biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = str(biz.get("out_request_no") or trade["out_trade_no"])
        key = f"{account['app_id']}:{trade['out_trade_no']}:{request_no}"
        with self.sandbox.lock:
            existing = self._refunds.get(key)
            if existing is not None:
                if existing["refund_amount"] != amount:
                    raise _biz_error("ACQ.CONTEXT_INCONSISTENT", "退款请求号已存在且金额不一致")
                return self._refund_node(trade, existing, fund_change="N")
            if trade["trade_status"] != "TRADE_SUCCESS":
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            if trade["refund_fee"] + amount > trade["total_amount"]:
                raise _biz_error("ACQ.REFUND_AMT_NOT_EQUAL_TOTAL", "退款金额超限")
            refund = self._add_refund(trade, request_no, amount, str(biz.get("refund_reason") or ""))
        full = trade["refund_fee"] == trade["total_amount"]
        self._notify(trade, "TRADE_CLOSED" if full else "TRADE_SUCCESS", refund=refund)
        return self._refund_node(trade, refund, fund_change="Y")

    def _add_refund(self, trade: dict[str, Any], request_no: str, amount: int, reason: str) -> dict[str, Any]:
        now = self.sandbox.now()
        refund = {
            "app_id": trade["app_id"],
            "out_trade_no": trade["out_trade_no"],
            "trade_no": trade["trade_no"],
            "out_request_no": request_no,
            "refund_amount": amount,
            "refund_reason": reason,
            "refund_status": "REFUND_SUCCESS",
            "gmt_refund_pay": _beijing(now),
            "gmt_refund": now.astimezone(BEIJING).strftime(TIME_FMT + ".%f")[:-3],
        }
        self._refunds[f"{trade['app_id']}:{trade['out_trade_no']}:{request_no}"] = refund
        trade["refund_fee"] += amount
        self.sandbox.record(refund, "refunded", amount=amount)
        self.sandbox.record(trade, "refunded", out_request_no=request_no, amount=amount)
        if trade["refund_fee"] == trade["total_amount"]:
            trade["trade_status"] = "TRADE_CLOSED"
            trade["gmt_close"] = _beijing(now)
            self.sandbox.record(trade, "closed", reason="fully_refunded")
        return refund

    @staticmethod
    def _refund_node(trade: Mapping[str, Any], refund: Mapping[str, Any], *, fund_change: str) -> dict:
        return {
            "code": "10000",
            "msg": "Success",
            "trade_no": trade["trade_no"],
            "out_trade_no": trade["out_trade_no"],
            "buyer_logon_id": trade["buyer_logon_id"] or "",
            "fund_change": fund_change,
            "refund_fee": _to_yuan(trade["refund_fee"]),
            "gmt_refund_pay": refund["gmt_refund_pay"],
            "buyer_user_id": trade["buyer_id"] or "",
            "send_back_fee": _to_yuan(refund["refund_amount"]),
        }

    def _api_refund_query(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        trade = self._find(account["app_id"], biz)
        if trade is None or trade.get("stub"):
            raise _biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
        request_no = str(biz.get("out_request_no") or trade["out_trade_no"])
        with self.sandbox.lock:
            refund = self._refunds.get(f"{account['app_id']}:{trade['out_trade_no']}:{request_no}")
            node: dict[str, Any] = {"code": "10000", "msg": "Success"}
            if refund is None:
                return node  # the query ran; there is no such refund
            node.update(
                {
                    "trade_no": trade["trade_no"],
                    "out_trade_no": trade["out_trade_no"],
                    "out_request_no": request_no,
                    "total_amount": _to_yuan(trade["total_amount"]),
                    "refund_amount": _to_yuan(refund["refund_amount"]),
                    "refund_status": refund["refund_status"],
                }
            )
            if refund["refund_reason"]:
                node["refund_reason"] = refund["refund_reason"]
            if "gmt_refund_pay" in (biz.get("query_options") or []):
                node["gmt_refund_pay"] = refund["gmt_refund_pay"]
            return node

    def _api_cancel(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        trade = self._find(account["app_id"], biz)
        if trade is None:
            if biz.get("trade_no"):
                raise _biz_error("ACQ.TRADE_NOT_EXIST", "交易不存在")
            # Unknown out_trade_no: Alipay answers success and blocks the number from now on.
            key = f"{account['app_id']}:{biz['out_trade_no']}"
            with self.sandbox.lock:
                self._trades.setdefault(
                    key,
                    {
                        "app_id": account["app_id"],
                        "out_trade_no": biz["out_trade_no"],
                        "trade_no": "",
                        "stub": True,
                        "trade_status": "TRADE_CLOSED",
                        "gmt_payment": None,
                        "total_amount": 0,
                        "refund_fee": 0,
                        "product_code": "",
                        "api": "alipay.trade.cancel",
                    },
                )
            return {"code": "10000", "msg": "Success", "out_trade_no": biz["out_trade_no"], "retry_flag": "N"}
        with self.sandbox.lock:
            base = {
                "code": "10000",
                "msg": "Success",
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
            }
            if trade.get("stub"):
                return {**base, "retry_flag": "N"}
            if trade["cancel_retries"] > 0:
                trade["cancel_retries"] -= 1
                self.sandbox.record(trade, "cancel_asked_retry")
                return {**base, "retry_flag": "Y"}
            if trade["cancel_action"]:
                return {**base, "retry_flag": "N", "action": trade["cancel_action"]}
            status = trade["trade_status"]
            if status == "WAIT_BUYER_PAY":
                trade["cancel_action"] = "close"
                self._close(trade, "cancelled")
            elif status == "TRADE_SUCCESS":
                trade["cancel_action"] = "refund"
                remaining = trade["total_amount"] - trade["refund_fee"]
                if remaining > 0:  # a revocation refunds with the order number as request number
                    self._add_refund(trade, trade["out_trade_no"], remaining, "revoked")
                trade["trade_status"] = "TRADE_CLOSED"
                trade["gmt_close"] = trade["gmt_close"] or _beijing(self.sandbox.now())
            elif status == "TRADE_CLOSED" and not trade["gmt_payment"]:
                trade["cancel_action"] = "close"
            else:
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            self.sandbox.record(trade, "cancelled", action=trade["cancel_action"])
            return {**base, "retry_flag": "N", "action": trade["cancel_action"]}

    def _api_bill_url(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        bill_type, bill_date = biz.get("bill_type"), str(biz.get("bill_date") or "")
        if bill_type not in ("trade", "signcustomer"):
            raise _invalid("isv.invalid-parameter", "bill_type 错误")
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", bill_date):
            raise _invalid("isv.invalid-parameter", "bill_date 格式错误")
        if bill_type != "trade":
            raise _biz_error("isp.bill_not_exist", "账单不存在")
        payload = self._build_bill(account, bill_date)
        if payload is None:
            raise _biz_error("isp.bill_not_exist", "账单不存在")
        token = secrets.token_urlsafe(16)
        name = f"{account['seller_id']}0156_{bill_date.replace('-', '')}.csv.zip"
        with self.sandbox.lock:
            self._bill_links[token] = (time.monotonic() + BILL_LINK_SECONDS, name, payload)
        base = f"{self.sandbox.current_base_url()}/{self.channel}"
        return {"code": "10000", "msg": "Success", "bill_download_url": f"{base}/bills/{token}?downloadFileName={name}"}

    _API: ClassVar[dict[str, Any]] = {
        "alipay.trade.query": _api_query,
        "alipay.trade.close": _api_close,
        "alipay.trade.pay": _api_pay,
        "alipay.trade.refund": _api_refund,
        "alipay.trade.fastpay.refund.query": _api_refund_query,
        "alipay.trade.cancel": _api_cancel,
        "alipay.data.dataservice.bill.downloadurl.query": _api_bill_url,
    }

    # --- bills ------------------------------------------------------------------------------
    def _download_bill(self, token: str) -> SandboxResponse:
        with self.sandbox.lock:
            link = self._bill_links.get(token)
        if link is None or time.monotonic() > link[0]:
            return SandboxResponse.text(200, "下载超时")
        return SandboxResponse.text(
            200, link[2], "application/oct-stream", headers={"Content-Disposition": f"attachment; filename={link[1]}"}
        )

    def _build_bill(self, account: Mapping[str, Any], bill_date: str) -> bytes | None:
        """Zip of GBK CSVs (detail and summary) in the §3.10 layout, from what happened that day."""
        app_id = account["app_id"]
        rows: list[list[str]] = []
        n_trades = n_refunds = 0
        paid_total = refund_total = fee_total = 0
        with self.sandbox.lock:
            trades = [t for t in self._trades.values() if t["app_id"] == app_id and not t.get("stub")]
            by_no = {t["out_trade_no"]: t for t in trades}
            for trade in trades:
                if trade["gmt_payment"] and trade["gmt_payment"].startswith(bill_date):
                    fee = _fee(trade["total_amount"])
                    amount = _to_yuan(trade["total_amount"])
                    rows.append(
                        self._bill_line(
                            trade, "交易", trade["gmt_create"], trade["gmt_payment"], amount, "", _to_yuan(-fee)
                        )
                    )
                    n_trades, paid_total = n_trades + 1, paid_total + trade["total_amount"]
                    fee_total += fee
            for refund in self._refunds.values():
                trade = by_no.get(refund["out_trade_no"])
                if refund["app_id"] != app_id or trade is None:
                    continue
                if refund["gmt_refund_pay"].startswith(bill_date):
                    fee, when = _fee(refund["refund_amount"]), refund["gmt_refund_pay"]
                    rows.append(
                        self._bill_line(
                            trade,
                            "退款",
                            when,
                            when,
                            _to_yuan(-refund["refund_amount"]),
                            refund["out_request_no"],
                            _to_yuan(fee),
                        )
                    )
                    n_refunds, refund_total = n_refunds + 1, refund_total + refund["refund_amount"]
                    fee_total -= fee
        if not rows:
            return None
        rows.sort(key=lambda r: r[5])
        day = bill_date.replace("-", "")
        start = datetime.strptime(bill_date if len(bill_date) == 10 else bill_date + "-01", "%Y-%m-%d")
        if len(bill_date) == 10:
            end = start + timedelta(days=1)
        else:
            end = (start + timedelta(days=32)).replace(day=1)
        period = f"#起始日期：[{start:%Y年%m月%d日} 00:00:00]   终止日期：[{end:%Y年%m月%d日} 00:00:00]"
        exported = f"#导出时间：[{self.sandbox.now().astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]"
        account_line = f"#账号：[{account['seller_id']}0156]"
        detail = io.StringIO()
        detail.write("#支付宝业务明细查询\n" + account_line + "\n" + period + "\n")
        detail.write("#-----------------------------------------业务明细列表----------------------------------------\n")
        csv.writer(detail, lineterminator="\n").writerows([DETAIL_HEADER, *rows])
        detail.write("#-----------------------------------------业务明细列表结束------------------------------------\n")
        detail.write(f"#交易合计：{n_trades}笔，商家实收共{_to_yuan(paid_total)}元，商家优惠共0.00元\n")
        detail.write(f"#退款合计：{n_refunds}笔，商家实收退款共{_to_yuan(-refund_total)}元，商家优惠退款共0.00元\n")
        detail.write(exported + "\n")
        summary = io.StringIO()
        summary.write("#支付宝业务汇总查询\n" + account_line + "\n" + period + "\n")
        summary.write(
            "#-----------------------------------------业务汇总列表----------------------------------------\n"
        )
        net = paid_total - refund_total - fee_total
        total_line = [
            "合计",
            "",
            str(n_trades),
            str(n_refunds),
            _to_yuan(paid_total - refund_total),
            _to_yuan(paid_total - refund_total),
            "0.00",
            "0.00",
            "0.00",
            _to_yuan(-fee_total),
            "0.00",
            _to_yuan(net),
        ]
        csv.writer(summary, lineterminator="\n").writerows([SUMMARY_HEADER, total_line])
        summary.write(
            "#-----------------------------------------业务汇总列表结束------------------------------------\n"
        )
        summary.write(exported + "\n")
        buffer = io.BytesIO()
        pid = f"{account['seller_id']}0156"
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            # Summary first: clients must find the detail file by its first line, not by order.
            archive.writestr(f"{pid}_{day}_业务明细(汇总).csv", summary.getvalue().encode("gbk", "replace"))
            archive.writestr(f"{pid}_{day}_业务明细.csv", detail.getvalue().encode("gbk", "replace"))
        return buffer.getvalue()

    @staticmethod
    def _bill_line(
        trade: Mapping[str, Any], kind: str, created: str, finished: str, amount: str, request_no: str, fee: str
    ) -> list[str]:
        return [
            trade["trade_no"] + "\t",
            trade["out_trade_no"] + "\t",
            kind,
            trade["subject"],
            created,
            finished,
            "",
            "",
            "",
            "",
            trade["buyer_logon_id"] or "",
            amount,
            amount,
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "0.00",
            "",
            "0.00",
            "0.00",
            request_no + ("\t" if request_no else ""),
            fee,
            "0.00",
            "",
        ]

    # --- notifications -----------------------------------------------------------------------
    def _notify(self, trade: dict[str, Any], trade_status: str, *, refund: Mapping[str, Any] | None = None) -> None:
        url = trade.get("notify_url")
        if not url or trade_status not in NOTIFIES.get(trade.get("product_code", ""), ()):
            return
        account = self._accounts.get(trade["app_id"])
        if account is None:
            return
        notify_id = f"{_beijing(self.sandbox.now())[:10].replace('-', '')}00222{_digits(25)}"
        with self.sandbox.lock:  # the message's content is fixed when the event happens
            fields = {
                "notify_type": "trade_status_sync",
                "notify_id": notify_id,
                "app_id": trade["app_id"],
                "auth_app_id": trade["app_id"],
                "charset": "utf-8",
                "version": "1.0",
                "trade_no": trade["trade_no"],
                "out_trade_no": trade["out_trade_no"],
                "buyer_id": trade["buyer_id"] or "",
                "buyer_logon_id": trade["buyer_logon_id"] or "",
                "seller_id": account["seller_id"],
                "seller_email": account["seller_email"],
                "trade_status": trade_status,
                "subject": trade["subject"],
                "body": trade["body"],
                "total_amount": _to_yuan(trade["total_amount"]),
                "gmt_create": trade["gmt_create"],
            }
            if trade["gmt_payment"]:
                amount = _to_yuan(trade["total_amount"])
                fields.update(
                    {
                        "receipt_amount": amount,
                        "invoice_amount": amount,
                        "buyer_pay_amount": amount,
                        "point_amount": "0.00",
                        "gmt_payment": trade["gmt_payment"],
                        "fund_bill_list": json.dumps(
                            [{"amount": amount, "fundChannel": "ALIPAYACCOUNT"}], separators=(",", ":")
                        ),
                    }
                )
            if trade_status == "TRADE_CLOSED" and trade["gmt_close"]:
                fields["gmt_close"] = trade["gmt_close"]
            if refund is not None:
                fields.update(
                    {
                        "out_biz_no": refund["out_request_no"],
                        "refund_fee": _to_yuan(trade["refund_fee"]),
                        "gmt_refund": refund["gmt_refund"],
                    }
                )
            self.sandbox.record(trade, "notify", trade_status=trade_status, notify_id=notify_id)
        _, platform_key = self._keys[trade["app_id"]]

        def build() -> tuple[dict[str, str], bytes]:
            message = {**fields, "notify_time": _beijing(self.sandbox.now()), "sign_type": "RSA2"}
            message["sign"] = _rsa2_sign(platform_key, _notify_sign_content(message))
            return (
                {"Content-Type": "application/x-www-form-urlencoded; charset=utf-8"},
                urlencode(message, encoding="utf-8").encode("ascii"),
            )

        key = f"{trade['out_trade_no']}:{trade_status}" + (f":{refund['out_request_no']}" if refund else "")
        self.sandbox.notify(
            self.channel, url, build, RETRY_SCHEDULE, lambda status, body: status == 200 and body == b"success", key
        )

    # --- payer actions ---------------------------------------------------------------------
    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        trade = self._payer_trade(payment_no, params)
        after = float(params.get("after_seconds") or 0)

        def act() -> None:
            with self.sandbox.lock:
                self._expire_if_due(trade)
            if action in ("pay", "password"):
                if action == "password" and trade["api"] != "alipay.trade.pay":
                    raise SandboxError(409, "NOT_PAYCODE", "password is for payment-code trades")
                amount = params.get("amount")
                self._pay(trade, amount=int(amount) if amount is not None else None, buyer_id=params.get("buyer_id"))
            elif action in ("fail", "expire"):
                with self.sandbox.lock:
                    unpaid = trade["trade_status"] == "WAIT_BUYER_PAY"
                if unpaid:
                    self._close(trade, "payment_failed" if action == "fail" else "expired")
            elif action == "cancel":
                self.sandbox.record(trade, "payer_left_cashier")

        if action not in PAYER_ACTIONS:
            raise SandboxError(
                400, "UNKNOWN_ACTION", f"alipay payer actions: {', '.join(PAYER_ACTIONS)}; not {action!r}"
            )
        if action != "open":
            if after > 0:
                self.sandbox.later(after, act)
            else:
                act()
        with self.sandbox.lock:
            return json.loads(json.dumps(trade, default=str))

    def _payer_trade(self, payment_no: str, params: Mapping[str, Any]) -> dict[str, Any]:
        order = params.get("order_string") or params.get("url")
        if order:
            text = urlsplit(order).query if "://" in order else order
            order_params: dict[str, str] = {}
            for key, value in parse_qsl(text, keep_blank_values=True, encoding="utf-8"):
                order_params[key] = value
            try:
                account = self._authenticate(order_params)
                if order_params.get("method") not in PAGE_METHODS:
                    raise _invalid("isv.invalid-method", "not a cashier order (app/page/wap pay)")
                trade = self._open_cashier(account, order_params)
            except _ApiError as exc:
                raise SandboxError(400, exc.sub_code, exc.sub_msg) from None
            if trade["out_trade_no"] != payment_no:
                raise SandboxError(400, "WRONG_ORDER", "the order string is for another out_trade_no")
            return trade
        with self.sandbox.lock:
            found = [t for t in self._trades.values() if t["out_trade_no"] == payment_no and not t.get("stub")]
        if not found:
            raise SandboxError(
                404,
                "TRADE_NOT_OPENED",
                f"no alipay trade {payment_no!r}: the payer has not opened the cashier; pass "
                "order_string (APP) or url (page/WAP) from the prepay client_params",
            )
        if len(found) > 1 and params.get("app_id"):
            found = [t for t in found if t["app_id"] == params["app_id"]]
        return found[-1]
