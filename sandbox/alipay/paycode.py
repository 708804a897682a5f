"""Payment code (face to face): ``alipay.trade.pay`` with ``scene=bar_code`` and ``alipay.trade.cancel``."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from typing import Any

from sandbox import paycode
from sandbox.alipay.common import AUTH_CODE_RE, REVOCATION_REASON, _ApiError, _beijing, _biz_error, _invalid, _to_yuan
from sandbox.paycode import scenario_for


class PaycodeMixin:
    """Payment-code pay and cancel of ``AlipaySimulator``."""

    def _api_pay(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        if biz.get("scene") != "bar_code":
            raise _invalid("isv.invalid-parameter", "scene 仅支持 bar_code")
        auth_code = str(biz.get("auth_code") or "")
        scenario = scenario_for(self.channel, auth_code)
        if not AUTH_CODE_RE.fullmatch(auth_code) or scenario.kind == paycode.EXPIRED_CODE:
            raise _biz_error(
                "ACQ.PAYMENT_AUTH_CODE_INVALID", "支付失败，获取顾客账户信息失败，请顾客刷新付款码后重新收款"
            )
        fresh = self._new_trade(
            account, params, biz, biz.get("product_code") or "FACE_TO_FACE_PAYMENT", "alipay.trade.pay"
        )
        key = f"{account['app_id']}:{fresh['out_trade_no']}"
        kind = scenario.kind
        with self.sandbox.lock:
            trade = self._trades.get(key)
            if trade is not None:
                self._settle(trade)
                closed_unpaid = trade["trade_status"] == "TRADE_CLOSED" and not trade["gmt_payment"]
                if trade.get("stub") or closed_unpaid:
                    raise _biz_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
                if trade["gmt_payment"]:
                    raise _biz_error("ACQ.TRADE_HAS_SUCCESS", "交易已被支付")
                return self._waiting_node(trade)
            if kind == paycode.UNKNOWN_UNPAID:  # the answer is lost and Alipay never made the trade
                raise _system_error()
            fresh.update(
                scenario=kind,
                password_accepted=scenario.password_accepted,
                cancel_retries=scenario.cancel_retries,
                auto_pay_at=_beijing(self.sandbox.now() + timedelta(seconds=scenario.auto_after))
                if scenario.auto_after
                else None,
            )
            self._trades[key] = trade = fresh
            self.sandbox.record(trade, "created", scene="bar_code", scenario=kind)
            if kind == paycode.NO_BALANCE:
                self._close(trade, "balance_not_enough")
                raise _biz_error("ACQ.BUYER_BALANCE_NOT_ENOUGH", "买家余额不足", out_trade_no=trade["out_trade_no"])
            if scenario.waits_for_password:
                if kind == paycode.UNKNOWN_PAYING:
                    raise _system_error()
                return self._waiting_node(trade)
        self._pay(trade)
        if kind == paycode.UNKNOWN_PAID:
            raise _system_error()
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
        out_trade_no = trade["out_trade_no"] if trade is not None else str(biz.get("out_trade_no") or "")
        fault = self.sandbox.revocation_fault(self.channel, account=account["app_id"], trade=out_trade_no)
        if fault is not None and fault.kind == "revoke_error":
            if trade is not None:
                self.sandbox.record(trade, "cancel_failed", fault=fault.id)
            raise _system_error()
        if fault is not None:  # revoke_retry: call again, nothing was done
            if trade is not None:
                self.sandbox.record(trade, "cancel_asked_retry", fault=fault.id)
            node = {"code": "10000", "msg": "Success", "out_trade_no": out_trade_no, "retry_flag": "Y"}
            return {**node, "trade_no": trade["trade_no"]} if trade is not None and trade["trade_no"] else node
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
                    self._add_refund(trade, trade["out_trade_no"], remaining, REVOCATION_REASON)
                trade["trade_status"] = "TRADE_CLOSED"
                trade["gmt_close"] = trade["gmt_close"] or _beijing(self.sandbox.now())
            elif status == "TRADE_CLOSED" and not trade["gmt_payment"]:
                trade["cancel_action"] = "close"
            else:
                raise _biz_error("ACQ.TRADE_STATUS_ERROR", "交易状态不合法")
            self.sandbox.record(trade, "cancelled", action=trade["cancel_action"])
            return {**base, "retry_flag": "N", "action": trade["cancel_action"]}


def _system_error() -> _ApiError:
    """``20000``: the outcome is unknown to the merchant."""
    return _ApiError("20000", "Service Currently Unavailable", "ACQ.SYSTEM_ERROR", "系统异常")
