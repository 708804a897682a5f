"""Orders v2 and captures: create, get, capture, their JSON views, and the buyer's actions."""

from __future__ import annotations

import json
from typing import Any

from sandbox.core import SandboxError, SandboxRequest, SandboxResponse
from sandbox.paypal.common import (
    _EXP,
    _bad_request,
    _fmt,
    _not_found,
    _parse_value,
    _pp_id,
    _ts,
    _unprocessable,
    capture_fee,
)


class OrdersMixin:
    """Orders, captures and payer actions of ``PaypalSimulator``."""

    def _order_create(self, req: SandboxRequest, account: dict[str, Any]) -> SandboxResponse:
        replay = self._replay(account, "create", req)
        if replay is not None:
            return self._tamper(req, replay)
        try:
            body = req.json()
        except ValueError:
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from None
        if not isinstance(body, dict) or body.get("intent") != "CAPTURE":
            raise _bad_request("INVALID_PARAMETER_VALUE", "intent must be CAPTURE in this sandbox.")
        units = body.get("purchase_units")
        if not isinstance(units, list) or len(units) != 1 or not isinstance(units[0], dict):
            raise _bad_request("INVALID_ARRAY_MAX_ITEMS", "Exactly one purchase unit is supported.")
        unit = units[0]
        amount = unit.get("amount") or {}
        currency = str(amount.get("currency_code", ""))
        if currency not in _EXP:
            raise _unprocessable("CURRENCY_NOT_SUPPORTED", f"Currency {currency!r} is not supported.")
        minor = _parse_value(amount.get("value"), currency)
        if minor is None or minor <= 0:
            raise _bad_request("INVALID_PARAMETER_VALUE", "amount.value is malformed for the currency.")
        payment_no = str(unit.get("invoice_id") or unit.get("custom_id") or "")
        if not payment_no:
            raise _bad_request("MISSING_REQUIRED_PARAMETER", "The sandbox needs invoice_id or custom_id.")
        context = ((body.get("payment_source") or {}).get("paypal") or {}).get("experience_context")
        now = self.sandbox.now()
        with self.sandbox.lock:
            existing = self._trades.get(payment_no)
            if existing is not None and existing["client_id"] == account["client_id"]:
                raise _unprocessable("DUPLICATE_INVOICE_ID", "Duplicate Invoice ID detected.")
            if existing is not None:
                raise _unprocessable("DUPLICATE_INVOICE_ID", "invoice_id is in use in this sandbox.")
            order_id = _pp_id(17)
            trade = {
                "order_id": order_id,
                "payment_no": payment_no,
                "client_id": account["client_id"],
                "status": "PAYER_ACTION_REQUIRED" if context is not None else "CREATED",
                "intent": "CAPTURE",
                "amount": minor,
                "currency": currency,
                "custom_id": unit.get("custom_id"),
                "invoice_id": unit.get("invoice_id"),
                "description": unit.get("description"),
                "reference_id": unit.get("reference_id", "default"),
                "experience_context": context,
                "decline": False,
                "pending": False,
                "capture_amount": None,
                "captures": [],
                "refund_ids": [],
                "create_time": now,
                "update_time": now,
            }
            self._trades[payment_no] = trade
            self._orders[order_id] = payment_no
            self.sandbox.record(trade, "created", amount=minor, currency=currency)
            view = self._order_view(trade)
            if (req.headers.get("Prefer") or "").replace(" ", "") != "return=representation":
                view = {"id": order_id, "status": trade["status"], "links": view["links"]}
            self._remember(account, "create", req, 201, view)
        return self._tamper(req, SandboxResponse.json(201, view))

    def _order(self, account: dict[str, Any], order_id: str) -> dict[str, Any]:
        with self.sandbox.lock:
            trade = self._trades.get(self._orders.get(order_id, ""))
        if trade is None or trade["client_id"] != account["client_id"]:
            raise _not_found(order_id)
        return trade

    def _order_reply(self, req: SandboxRequest, trade: dict[str, Any], status: int = 200) -> SandboxResponse:
        with self.sandbox.lock:
            view = self._order_view(trade)
        return self._tamper(req, SandboxResponse.json(status, view))

    def _order_capture(self, req: SandboxRequest, account: dict[str, Any], order_id: str) -> SandboxResponse:
        replay = self._replay(account, "capture", req)
        if replay is not None:
            return self._tamper(req, replay)
        trade = self._order(account, order_id)
        with self.sandbox.lock:
            status = trade["status"]
            if status in ("CREATED", "PAYER_ACTION_REQUIRED", "SAVED"):
                raise _unprocessable("ORDER_NOT_APPROVED", "Payer has not yet approved the Order for payment.")
            if status == "VOIDED":
                raise _unprocessable("ORDER_IS_VOIDED", "The order has been voided.")
            if status == "COMPLETED":
                raise _unprocessable("ORDER_ALREADY_CAPTURED", "Order already captured.")
            now = self.sandbox.now()
            amount = trade["capture_amount"] if trade["capture_amount"] is not None else trade["amount"]
            capture_status = "DECLINED" if trade["decline"] else "PENDING" if trade["pending"] else "COMPLETED"
            fee = capture_fee(amount) if capture_status == "COMPLETED" else 0
            capture = {
                "id": _pp_id(17),
                "status": capture_status,
                "amount": amount,
                "fee": fee,
                "create_time": now,
                "update_time": now,
                "refunded": 0,
                "reversed": False,
            }
            trade["captures"].append(capture)
            trade["status"] = "COMPLETED"
            trade["update_time"] = now
            self._captures[capture["id"]] = trade["payment_no"]
            self.sandbox.record(
                trade, "captured", capture_id=capture["id"], capture_status=capture_status, amount=amount
            )
            view = self._order_view(trade)
            self._remember(account, "capture", req, 201, view)
        event = {
            "COMPLETED": "PAYMENT.CAPTURE.COMPLETED",
            "PENDING": "PAYMENT.CAPTURE.PENDING",
            "DECLINED": "PAYMENT.CAPTURE.DECLINED",
        }[capture_status]
        self._webhook(account, event, "capture", lambda: self._capture_view(trade, capture))
        return self._tamper(req, SandboxResponse.json(201, view))

    def _tamper(self, req: SandboxRequest, resp: SandboxResponse) -> SandboxResponse:
        """``tamper_amount``: rewrite every amount value in an order reply."""
        fault = req.fault
        if fault is None or fault.kind != "tamper_amount" or resp.status >= 300:
            return resp
        data = json.loads(resp.body)
        for unit in data.get("purchase_units") or []:
            currency = unit.get("amount", {}).get("currency_code", "USD")
            forged = _fmt(int(fault.amount if fault.amount is not None else 1), currency)
            unit["amount"]["value"] = forged
            for capture in (unit.get("payments") or {}).get("captures") or []:
                capture["amount"]["value"] = forged
        return SandboxResponse.json(resp.status, data)

    # --- views ---------------------------------------------------------------------------
    def _link(self, trade: dict[str, Any], path: str, rel: str, method: str = "GET") -> dict[str, str]:
        base = self._accounts[trade["client_id"]]["base_url"]
        return {"href": f"{base}{path}", "rel": rel, "method": method}

    def _order_view(self, trade: dict[str, Any]) -> dict[str, Any]:
        order_id, currency = trade["order_id"], trade["currency"]
        unit: dict[str, Any] = {
            "reference_id": trade["reference_id"],
            "amount": {"currency_code": currency, "value": _fmt(trade["amount"], currency)},
            "payee": {"merchant_id": "SANDBOXMERCHANT1"},
        }
        for key in ("description", "custom_id", "invoice_id"):
            if trade.get(key) is not None:
                unit[key] = trade[key]
        if trade["captures"]:
            unit["payments"] = {"captures": [self._capture_view(trade, c) for c in trade["captures"]]}
            refunds = [self._refund_view(self._refunds[r]) for r in trade["refund_ids"] if r in self._refunds]
            if refunds:
                unit["payments"]["refunds"] = refunds
        links = [self._link(trade, f"/v2/checkout/orders/{order_id}", "self")]
        if trade["status"] in ("CREATED", "PAYER_ACTION_REQUIRED"):
            rel = "payer-action" if trade["status"] == "PAYER_ACTION_REQUIRED" else "approve"
            links.append(self._link(trade, f"/checkoutnow?token={order_id}", rel))
        if trade["status"] in ("CREATED", "PAYER_ACTION_REQUIRED", "APPROVED"):
            links.append(self._link(trade, f"/v2/checkout/orders/{order_id}/capture", "capture", "POST"))
        view: dict[str, Any] = {
            "id": order_id,
            "intent": "CAPTURE",
            "status": trade["status"],
            "purchase_units": [unit],
            "create_time": _ts(trade["create_time"]),
            "update_time": _ts(trade["update_time"]),
            "links": links,
        }
        if trade["status"] in ("APPROVED", "COMPLETED"):
            view["payer"] = {"payer_id": "SANDBOXPAYER01", "email_address": "buyer@example.com"}
        return view

    def _capture_view(self, trade: dict[str, Any], capture: dict[str, Any]) -> dict[str, Any]:
        currency = trade["currency"]
        status = capture["status"]
        if status == "COMPLETED" and capture["reversed"]:
            status = "REVERSED"
        elif status == "COMPLETED" and capture["refunded"] >= capture["amount"]:
            status = "REFUNDED"
        elif status == "COMPLETED" and capture["refunded"] > 0:
            status = "PARTIALLY_REFUNDED"
        view: dict[str, Any] = {
            "id": capture["id"],
            "status": status,
            "amount": {"currency_code": currency, "value": _fmt(capture["amount"], currency)},
            "final_capture": True,
            "seller_protection": {"status": "ELIGIBLE"},
            "create_time": _ts(capture["create_time"]),
            "update_time": _ts(capture["update_time"]),
            "supplementary_data": {"related_ids": {"order_id": trade["order_id"]}},
            "links": [
                self._link(trade, f"/v2/payments/captures/{capture['id']}", "self"),
                self._link(trade, f"/v2/payments/captures/{capture['id']}/refund", "refund", "POST"),
                self._link(trade, f"/v2/checkout/orders/{trade['order_id']}", "up"),
            ],
        }
        if capture["status"] == "COMPLETED":
            net = capture["amount"] - capture["fee"]
            view["seller_receivable_breakdown"] = {
                "gross_amount": {"currency_code": currency, "value": _fmt(capture["amount"], currency)},
                "paypal_fee": {"currency_code": currency, "value": _fmt(capture["fee"], currency)},
                "net_amount": {"currency_code": currency, "value": _fmt(net, currency)},
            }
        elif capture["status"] == "PENDING":
            view["status_details"] = {"reason": "PENDING_REVIEW"}
        for key in ("custom_id", "invoice_id"):
            if trade.get(key) is not None:
                view[key] = trade[key]
        return view

    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        with self.sandbox.lock:
            trade = self._trades.get(payment_no)
        if trade is None:
            raise SandboxError(404, "NO_SUCH_TRADE", f"no PayPal order for {payment_no!r}")
        actions = {
            "pay": self._approve,
            "fail": self._approve,
            "cancel": self._void,
            "complete_pending": self._complete_pending,
            "reverse": self._reverse,
        }
        if action not in actions:
            raise SandboxError(400, "BAD_ACTION", f"PayPal payer actions: {sorted(actions)}")
        after = float(params.get("after_seconds") or 0)

        def run() -> None:
            actions[action](trade, action, params)

        if after > 0:
            self.sandbox.later(after, run)
        else:
            run()
        return self._public(trade)

    def _approve(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            if trade["status"] not in ("CREATED", "PAYER_ACTION_REQUIRED"):
                raise SandboxError(409, "NOT_APPROVABLE", f"order is {trade['status']}")
            trade["status"] = "APPROVED"
            trade["decline"] = action == "fail"
            trade["pending"] = bool(params.get("pending"))
            if params.get("amount") is not None:
                trade["capture_amount"] = int(params["amount"])
            trade["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "approved", decline=trade["decline"])
            account = self._accounts[trade["client_id"]]
        self._webhook(account, "CHECKOUT.ORDER.APPROVED", "checkout-order", lambda: self._order_view(trade))

    def _void(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            if trade["status"] == "COMPLETED":
                raise SandboxError(409, "ALREADY_CAPTURED", "order is already captured")
            trade["status"] = "VOIDED"
            trade["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "voided")

    def _complete_pending(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            capture = next((c for c in trade["captures"] if c["status"] == "PENDING"), None)
            if capture is None:
                raise SandboxError(409, "NO_PENDING_CAPTURE", "no pending capture")
            capture["status"] = "COMPLETED"
            capture["fee"] = capture_fee(capture["amount"])
            capture["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "capture_completed", capture_id=capture["id"])
            account = self._accounts[trade["client_id"]]
        self._webhook(account, "PAYMENT.CAPTURE.COMPLETED", "capture", lambda: self._capture_view(trade, capture))

    def _reverse(self, trade: dict[str, Any], action: str, params: dict[str, Any]) -> None:
        with self.sandbox.lock:
            capture = next((c for c in trade["captures"] if c["status"] == "COMPLETED"), None)
            if capture is None:
                raise SandboxError(409, "NO_CAPTURE", "no completed capture")
            capture["reversed"] = True
            capture["update_time"] = self.sandbox.now()
            self.sandbox.record(trade, "capture_reversed", capture_id=capture["id"])
            account = self._accounts[trade["client_id"]]
        self._webhook(account, "PAYMENT.CAPTURE.REVERSED", "capture", lambda: self._capture_view(trade, capture))

    def _public(self, trade: dict[str, Any]) -> dict[str, Any]:
        with self.sandbox.lock:
            data = {k: v for k, v in trade.items() if k not in ("experience_context",)}
            data["refunds"] = [dict(self._refunds[r]) for r in trade["refund_ids"] if r in self._refunds]
            return json.loads(json.dumps(data, default=str))
