"""Payment code (face to face): ``alipay.trade.pay`` with ``scene=bar_code`` and ``alipay.trade.cancel``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.alipay.common import AUTH_CODE_RE, _ApiError, _beijing, _biz_error, _invalid, _to_yuan


class PaycodeMixin:
    """Payment-code pay and cancel of ``AlipaySimulator``."""

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
