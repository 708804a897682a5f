"""Refunds: ``alipay.trade.refund`` and ``alipay.trade.fastpay.refund.query``."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sandbox.alipay.common import BEIJING, TIME_FMT, _beijing, _biz_error, _from_yuan, _invalid, _missing, _to_yuan


class RefundsMixin:
    """Refunds of ``AlipaySimulator``."""

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
