"""v3 transactions: prepay, query, close, and the payer's actions on them."""

from __future__ import annotations

import json
import secrets
import string
from datetime import datetime, timedelta
from typing import Any

from sandbox.core import SandboxError, SandboxRequest, SandboxResponse
from sandbox.wechat.accounts import WechatAccount
from sandbox.wechat.common import (
    _ALNUM,
    _OUT_TRADE_NO,
    _STATE_DESC,
    _TRADE_TYPES,
    CN_TZ,
    _error,
    _param_error,
    _random,
    _Reject,
    _rfc3339,
)

# time_expire is the payment deadline (not a close); without one it is 7 days after placement.
DEFAULT_PAY_WINDOW = timedelta(days=7)


class TradesMixin:
    """The v3 transaction endpoints and payer actions of ``WechatSimulator``."""

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
        else:  # without time_expire an unpaid order can no longer be paid after 7 days
            expires_at = self.sandbox.now() + DEFAULT_PAY_WINDOW
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
                if datetime.fromisoformat(trade["expires_at"]) <= self.sandbox.now():
                    raise _Reject(_error(400, "ORDER_CLOSED", "订单已过支付期限，请使用新的商户订单号"))
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
            found = None
            if transaction_id is not None:
                found = next(
                    (t for t in trades.values() if t["mchid"] == acct.mchid and t["transaction_id"] == transaction_id),
                    None,
                )
            elif out_trade_no is not None:
                found = trades.get(f"{acct.mchid}/{out_trade_no}")
            if found is not None:
                self._settle(found)
                return found
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
            self._settle(trade)
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
                if state == "CLOSED" and trade["api"] == "v2" and trade["expires_at"]:
                    raise SandboxError(409, "EXPIRED", "the payment code's time_expire has passed")
                if state != "USERPAYING":
                    raise SandboxError(409, "BAD_STATE", f"trade is {state}, no password expected")
                if not trade.get("password_accepted", True):
                    raise SandboxError(409, "NO_PASSWORD", f"scenario {trade['scenario']}: the payer never types it")
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

    def _mark_paid(self, trade: dict[str, Any], at: datetime | None = None) -> None:
        now = at or self.sandbox.now()
        trade["transaction_id"] = "42000" + now.astimezone(CN_TZ).strftime("%Y%m%d") + _random(string.digits, 15)
        trade["success_time"] = _rfc3339(now)
        trade["paid_at"] = now.isoformat()
        trade["openid"] = trade.get("openid") or "o" + _random(_ALNUM, 27)
        self._set_state(trade, "SUCCESS")
        self.sandbox.record(trade, "paid", transaction_id=trade["transaction_id"])
