"""Asynchronous notifications: signed forms, re-sent on Alipay's schedule until ``success``."""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlencode

from sandbox.alipay.common import (
    NOTIFIES,
    RETRY_SCHEDULE,
    _beijing,
    _digits,
    _notify_sign_content,
    _rsa2_sign,
    _to_yuan,
)


class NotificationsMixin:
    """Notifications of ``AlipaySimulator``."""

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
