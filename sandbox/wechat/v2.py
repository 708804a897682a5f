"""API v2 payment code: ``/pay/micropay``, ``/pay/orderquery`` and ``/secapi/pay/reverse`` (XML, MD5/HMAC-SHA256)."""

from __future__ import annotations

import hashlib
import hmac
import re
import string
from datetime import datetime, timedelta
from typing import Any

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError
from defusedxml.ElementTree import fromstring as defused_fromstring

from sandbox import paycode
from sandbox.core import SandboxRequest, SandboxResponse
from sandbox.paycode import scenario_for
from sandbox.wechat.accounts import WechatAccount
from sandbox.wechat.common import _ALNUM, _AUTH_CODE, _STATE_DESC, CN_TZ, _random


def v2_sign(params: dict[str, str], key: str, sign_type: str) -> str:
    """v2 signing: sorted non-empty params except ``sign``, ``&key=``; MD5 or HMAC-SHA256, upper hex."""
    text = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if k != "sign" and v not in ("", None))
    text += f"&key={key}"
    if sign_type == "HMAC-SHA256":
        return hmac.new(key.encode(), text.encode(), hashlib.sha256).hexdigest().upper()
    return hashlib.md5(text.encode()).hexdigest().upper()  # noqa: S324 - the protocol's MD5


class V2XmlError(ValueError):
    """A v2 request body the simulator refuses to read (the answer is ``return_code=FAIL``)."""


_XML_DECL_ENCODING = re.compile(rb"""^<\?xml[^>]*\sencoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")


def parse_v2_xml(body: bytes) -> dict[str, str]:
    """A flat UTF-8 ``<xml>`` document -> dict.

    Parsed by defusedxml only: a DOCTYPE, an entity declaration or an external reference is
    refused whatever the document's encoding (a UTF-16 or UTF-32 DOCTYPE included), before any
    entity could be expanded. Documents that are not UTF-8 are refused too, as WeChat does.
    """
    try:
        root = defused_fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except (DefusedXmlException, ParseError) as exc:
        raise V2XmlError(f"unreadable XML: {type(exc).__name__}") from None
    declared = _XML_DECL_ENCODING.match(body)
    if b"\x00" in body or (declared is not None and declared.group(1).lower() not in (b"utf-8", b"utf8")):
        raise V2XmlError("XML must be UTF-8")
    try:
        body.decode("utf-8")
    except UnicodeDecodeError:
        raise V2XmlError("XML must be UTF-8") from None
    if root.tag != "xml":
        raise V2XmlError("root element must be <xml>")
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


# WeChat reverses payment-code orders within 7 days only (later: the refund API).
REVERSE_WINDOW = timedelta(days=7)


class V2Mixin:
    """The v2 payment-code endpoints of ``WechatSimulator``."""

    def _v2(self, req: SandboxRequest) -> SandboxResponse:
        secapi = req.path.startswith("/secapi/")
        if secapi and not req.tls:  # the real platform serves /secapi/ over mutual TLS only
            return self._v2_fail("secapi 接口须使用双向 TLS（商户证书），请改用 options.secapi_base_url")
        if req.method != "POST":
            return self._v2_fail("请使用 POST")
        try:
            params = parse_v2_xml(req.body)
        except V2XmlError:
            return self._v2_fail("XML 格式错误")  # nothing was processed
        acct = self._account(params.get("mch_id", ""))
        if acct is None:
            return self._v2_fail("mch_id 参数错误")
        if secapi and req.client_certificate != acct.merchant_cert_der:
            return self._v2_fail("证书与商户号不匹配")  # a valid certificate, but another merchant's
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
        expires_at = None
        if params.get("time_expire"):
            try:
                expires_at = datetime.strptime(params["time_expire"], "%Y%m%d%H%M%S").replace(tzinfo=CN_TZ)
            except ValueError:
                return fail("PARAM_ERROR", "time_expire 格式须为 yyyyMMddHHmmss")
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
                self._settle(trade)
                state = trade["trade_state"]
                if state == "SUCCESS" or state == "REFUND":
                    return fail("ORDERPAID", "订单已支付")
                if state == "USERPAYING":
                    return fail("USERPAYING", "需要用户输入支付密码")
                if state == "REVOKED":
                    return fail("ORDERREVERSED", "订单已撤销")
                return fail("ORDERCLOSED", "订单已关闭")
            now = self.sandbox.now()
            scenario = scenario_for(self.channel, auth_code)
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
                "created_at": now.isoformat(),
                "expires_at": expires_at.isoformat() if expires_at else None,
                "prepay_ids": [],
                "refunded": 0,
                "auth_code": auth_code,
                "scenario": scenario.kind,
                "password_accepted": scenario.password_accepted,
                "auto_pay_at": (now + timedelta(seconds=scenario.auto_after)).isoformat()
                if scenario.auto_after
                else None,
                "revoked_after_payment": False,
                "reverse_requested": False,
                "history": [],
            }
            self.sandbox.trades[self.channel][key] = trade
            self.sandbox.record(trade, "micropay", auth_code=auth_code, scenario=scenario.kind)
            kind = scenario.kind
            if scenario.waits_for_password:
                if kind == paycode.UNKNOWN_PAYING:
                    return fail("SYSTEMERROR", "系统超时")
                return fail("USERPAYING", "需要用户输入支付密码")
            if kind == paycode.UNKNOWN_UNPAID:
                self._set_state(trade, "NOTPAY")
                return fail("SYSTEMERROR", "系统超时")
            if kind in (paycode.NO_BALANCE, paycode.EXPIRED_CODE, paycode.BANK_ERROR):
                self._set_state(trade, "PAYERROR")
                self.sandbox.record(trade, "payerror", scenario=kind)
                if kind == paycode.NO_BALANCE:
                    return fail("NOTENOUGH", "余额不足")
                if kind == paycode.EXPIRED_CODE:
                    return fail("AUTHCODEEXPIRE", "二维码已过期，请用户在微信上刷新后再试")
                return fail("BANKERROR", "银行系统异常")
            self._mark_paid(trade)
            if kind == paycode.UNKNOWN_PAID:
                return fail("SYSTEMERROR", "系统超时")
            return self._v2_result(req, acct, sign_type, self._v2_trade_fields(trade))

    def _settle(self, trade: dict[str, Any]) -> None:
        """Apply what the sandbox clock says happened since: the payer typed the password (71NN),
        or the payment code's ``time_expire`` passed while unpaid (the order is closed)."""
        if trade["api"] != "v2":
            return
        with self.sandbox.lock:
            if trade["trade_state"] not in ("USERPAYING", "NOTPAY"):
                return
            now = self.sandbox.now()
            expires = datetime.fromisoformat(trade["expires_at"]) if trade["expires_at"] else None
            auto = datetime.fromisoformat(trade["auto_pay_at"]) if trade.get("auto_pay_at") else None
            if trade["trade_state"] == "USERPAYING" and auto and auto <= now and (expires is None or auto < expires):
                self._mark_paid(trade, at=auto)
            elif expires is not None and expires <= now:
                self._set_state(trade, "CLOSED")
                self.sandbox.record(trade, "expired", time_expire=trade["expires_at"])

    def _v2_find(self, acct: WechatAccount, params: dict[str, str]) -> dict[str, Any] | None:
        with self.sandbox.lock:
            trades = self.sandbox.trades[self.channel]
            found = None
            if params.get("transaction_id"):
                found = next(
                    (
                        t
                        for t in trades.values()
                        if t["mchid"] == acct.mchid and t["transaction_id"] == params["transaction_id"]
                    ),
                    None,
                )
            elif params.get("out_trade_no"):
                found = trades.get(f"{acct.mchid}/{params['out_trade_no']}")
            if found is not None:
                self._settle(found)
            return found

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
        def answer(fields: dict[str, str]) -> SandboxResponse:
            return self._v2_result(req, acct, sign_type, fields)

        if not params.get("transaction_id") and not params.get("out_trade_no"):
            return answer(
                {"err_code": "PARAM_ERROR", "err_code_des": "transaction_id 与 out_trade_no 须二选一", "recall": "N"}
            )
        trade = self._v2_find(acct, params)
        out_trade_no = trade["out_trade_no"] if trade is not None else params.get("out_trade_no", "")
        fault = self.sandbox.revocation_fault(self.channel, account=acct.mchid, trade=out_trade_no)
        if fault is not None and fault.kind == "revoke_retry":
            if trade is not None:
                self.sandbox.record(trade, "reverse_asked_recall", fault=fault.id)
            return answer({"err_code": "SYSTEMERROR", "err_code_des": "撤销处理中，请再次调用撤销", "recall": "Y"})
        if fault is not None:
            if trade is not None:
                self.sandbox.record(trade, "reverse_failed", fault=fault.id)
            return answer({"err_code": "SYSTEMERROR", "err_code_des": "系统超时"})
        if trade is None:
            return answer({"recall": "N"})  # reverse is re-entrant: an unknown order answers SUCCESS
        with self.sandbox.lock:
            if trade["api"] != "v2":
                return answer(
                    {"err_code": "INVALID_REQUEST", "err_code_des": "订单的支付场景不支持该请求", "recall": "N"}
                )
            state = trade["trade_state"]
            created = datetime.fromisoformat(trade["created_at"])
            if state != "REVOKED" and self.sandbox.now() - created > REVERSE_WINDOW:
                return answer({"err_code": "REVERSE_EXPIRE", "err_code_des": "订单已超过撤销期限", "recall": "N"})
            if state == "USERPAYING" and not trade["reverse_requested"]:
                trade["reverse_requested"] = True
                self.sandbox.record(trade, "reverse_refused_userpaying")
                return answer({"err_code": "USERPAYING", "err_code_des": "用户支付中，请稍后再试", "recall": "Y"})
            if state != "REVOKED":
                now = self.sandbox.now()
                paid = trade["transaction_id"] is not None
                trade["revoked_after_payment"] = paid
                trade["revoked_at"] = now.isoformat()
                if paid:  # the money goes back to the payer: a revocation refund
                    trade["revoke_refund_id"] = "50" + _random(string.digits, 27)
                self._set_state(trade, "REVOKED")
                self.sandbox.record(trade, "revoked", money_returned=paid)
        return answer({"recall": "N"})
