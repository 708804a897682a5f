"""Trades: the cashier (APP/page/WAP), query, close, expiry, and the payer's actions."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from sandbox.alipay.common import (
    BEIJING,
    PAGE_METHODS,
    PAYER_ACTIONS,
    TIME_FMT,
    _ApiError,
    _beijing,
    _biz_error,
    _digits,
    _from_yuan,
    _invalid,
    _missing,
    _to_yuan,
)
from sandbox.core import SandboxError


class TradesMixin:
    """Trades and payer actions of ``AlipaySimulator``."""

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
                self._settle(found)
            return found

    def _settle(self, trade: dict[str, Any]) -> None:
        """Apply what the sandbox clock says happened since: the payer typed a payment code's
        password (scenario 71NN), or the trade's time_expire passed while unpaid (closed)."""
        with self.sandbox.lock:
            if trade.get("stub") or trade["trade_status"] != "WAIT_BUYER_PAY":
                return
            now, expire, auto = _beijing(self.sandbox.now()), trade.get("time_expire"), trade.get("auto_pay_at")
            if auto and auto <= now and (not expire or auto < expire):
                trade["auto_pay_at"] = None
                self._pay(trade, at=auto)
            elif expire and now >= expire:
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
        time_expire = biz.get("time_expire")
        if time_expire is not None:
            try:
                datetime.strptime(time_expire, TIME_FMT)
            except (TypeError, ValueError):
                raise _invalid("isv.invalid-parameter", "time_expire 格式错误") from None
        elif biz.get("timeout_express") is not None:  # relative to the trade's creation
            time_expire = _beijing(_timeout_express_deadline(str(biz["timeout_express"]), self.sandbox.now()))
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
            "time_expire": time_expire,
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
            if trade is None and fresh["time_expire"] and _beijing(self.sandbox.now()) >= fresh["time_expire"]:
                # The order string was payable until its time_expire: too late now, no trade is made.
                raise _biz_error("ACQ.TRADE_HAS_CLOSE", "交易已经关闭")
            if trade is None:
                self._trades[key] = trade = fresh
                self.sandbox.record(trade, "cashier_opened", method=api)
            elif trade["order_amount"] != fresh["order_amount"] or trade["api"] != api:
                raise _biz_error("ACQ.CONTEXT_INCONSISTENT", "交易信息被篡改")
            self._settle(trade)
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

    def _pay(
        self, trade: dict[str, Any], *, amount: int | None = None, buyer_id: str | None = None, at: str | None = None
    ) -> bool:
        """The payer pays (``at``: when, Beijing time text; default now). False when not payable."""
        with self.sandbox.lock:
            self._settle(trade)
            if trade["trade_status"] != "WAIT_BUYER_PAY":
                return False
            trade["trade_status"] = "TRADE_SUCCESS"
            if amount is not None:
                trade["total_amount"] = int(amount)
            trade["gmt_payment"] = at or _beijing(self.sandbox.now())
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

    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        trade = self._payer_trade(payment_no, params)
        after = float(params.get("after_seconds") or 0)

        def act() -> None:
            with self.sandbox.lock:
                self._settle(trade)
            if action in ("pay", "password"):
                if action == "password" and trade["api"] != "alipay.trade.pay":
                    raise SandboxError(409, "NOT_PAYCODE", "password is for payment-code trades")
                if trade["api"] == "alipay.trade.pay" and not trade.get("password_accepted", True):
                    raise SandboxError(409, "NO_PASSWORD", f"scenario {trade['scenario']}: the payer never types it")
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
                account = self._authenticate(order_params, check_time=False)
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


_EXPRESS = re.compile(r"(\d{1,4})([mhdc])")


def _timeout_express_deadline(express: str, created: datetime) -> datetime:
    """``90m`` / ``2h`` / ``15d`` after creation; ``1c``: the end of the (Beijing) day of creation."""
    match = _EXPRESS.fullmatch(express)
    if match is None or int(match.group(1)) < 1:
        raise _invalid("isv.invalid-parameter", "timeout_express 格式错误（如 90m、2h、1d、1c）")
    n, unit = int(match.group(1)), match.group(2)
    if unit == "c":
        local = created.astimezone(BEIJING)
        return datetime(local.year, local.month, local.day, 23, 59, 59, tzinfo=BEIJING) + timedelta(days=n - 1)
    units = {"m": "minutes", "h": "hours", "d": "days"}
    return created + timedelta(**{units[unit]: n})
