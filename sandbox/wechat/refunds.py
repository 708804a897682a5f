"""v3 domestic refunds: create, query, asynchronous completion and the refund payer actions."""

from __future__ import annotations

import string
from typing import Any

from sandbox.core import SandboxError, SandboxRequest, SandboxResponse
from sandbox.wechat.accounts import WechatAccount
from sandbox.wechat.common import (
    _OUT_REFUND_NO,
    HOLD_REFUND_REASON,
    REFUND_DELAY,
    _error,
    _param_error,
    _random,
    _Reject,
    _rfc3339,
)


class RefundsMixin:
    """The refund endpoints of ``WechatSimulator``."""

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
