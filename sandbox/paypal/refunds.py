"""Capture refunds: create (idempotent), asynchronous completion, and the refund view."""

from __future__ import annotations

from typing import Any

from sandbox.core import SandboxRequest, SandboxResponse
from sandbox.paypal.common import _bad_request, _fmt, _not_found, _parse_value, _pp_id, _ts, _unprocessable


class RefundsMixin:
    """Refunds of ``PaypalSimulator``."""

    def _refund_view(self, refund: dict[str, Any]) -> dict[str, Any]:
        currency = refund["currency"]
        trade = self._trades[refund["payment_no"]]
        view: dict[str, Any] = {
            "id": refund["id"],
            "status": refund["status"],
            "amount": {"currency_code": currency, "value": _fmt(refund["amount"], currency)},
            "seller_payable_breakdown": {
                "gross_amount": {"currency_code": currency, "value": _fmt(refund["amount"], currency)},
                "paypal_fee": {"currency_code": currency, "value": _fmt(0, currency)},
                "net_amount": {"currency_code": currency, "value": _fmt(refund["amount"], currency)},
            },
            "create_time": _ts(refund["create_time"]),
            "update_time": _ts(refund["update_time"]),
            "supplementary_data": {"related_ids": {"order_id": trade["order_id"], "capture_id": refund["capture_id"]}},
            "links": [
                self._link(trade, f"/v2/payments/refunds/{refund['id']}", "self"),
                self._link(trade, f"/v2/payments/captures/{refund['capture_id']}", "up"),
            ],
        }
        if refund["status"] == "PENDING":
            view["status_details"] = {"reason": "ECHECK"}
        for key in ("invoice_id", "custom_id", "note_to_payer"):
            if refund.get(key) is not None:
                view[key] = refund[key]
        return view

    def _capture(self, account: dict[str, Any], capture_id: str) -> tuple[dict[str, Any], dict[str, Any]]:
        with self.sandbox.lock:
            trade = self._trades.get(self._captures.get(capture_id, ""))
            if trade is not None and trade["client_id"] == account["client_id"]:
                for capture in trade["captures"]:
                    if capture["id"] == capture_id:
                        return trade, capture
        raise _not_found(capture_id)

    def _refund_create(self, req: SandboxRequest, account: dict[str, Any], capture_id: str) -> SandboxResponse:
        replay = self._replay(account, "refund", req)
        if replay is not None:
            return replay
        trade, capture = self._capture(account, capture_id)
        try:
            body = req.json() or {}
        except ValueError:
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from None
        if not isinstance(body, dict):
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not an object.")
        currency = trade["currency"]
        now = self.sandbox.now()
        with self.sandbox.lock:
            if capture["status"] != "COMPLETED" or capture["reversed"]:
                raise _unprocessable(
                    "CAPTURE_NOT_REFUNDABLE"
                    if capture["status"] != "COMPLETED"
                    else "CAPTURE_DISPUTED_PARTIAL_REFUND_NOT_ALLOWED",
                    "The capture cannot be refunded.",
                )
            committed = sum(
                self._refunds[r]["amount"]
                for r in trade["refund_ids"]
                if r in self._refunds
                and self._refunds[r]["status"] in ("PENDING", "COMPLETED")
                and self._refunds[r]["capture_id"] == capture_id
            )
            remaining = capture["amount"] - committed
            if remaining <= 0:
                raise _unprocessable("CAPTURE_FULLY_REFUNDED", "The capture has already been fully refunded.")
            if "amount" in body:
                amount = body["amount"] if isinstance(body["amount"], dict) else {}
                if amount.get("currency_code") != currency:
                    raise _unprocessable("REFUND_CURRENCY_MISMATCH", "Refund currency must match the capture.")
                minor = _parse_value(amount.get("value"), currency)
                if minor is None or minor <= 0:
                    raise _bad_request("INVALID_PARAMETER_VALUE", "amount.value is malformed for the currency.")
            else:
                minor = remaining
            if minor > remaining:
                raise _unprocessable(
                    "REFUND_AMOUNT_EXCEEDED",
                    "The refund amount must be less than or equal to the capture amount "
                    "that has not yet been refunded.",
                )
            delay = account["refund_delay_seconds"]
            refund = {
                "id": _pp_id(17),
                "client_id": account["client_id"],
                "payment_no": trade["payment_no"],
                "capture_id": capture_id,
                "amount": minor,
                "currency": currency,
                "status": "PENDING" if delay > 0 else "COMPLETED",
                "invoice_id": body.get("invoice_id"),
                "custom_id": body.get("custom_id"),
                "note_to_payer": body.get("note_to_payer"),
                "create_time": now,
                "update_time": now,
            }
            self._refunds[refund["id"]] = refund
            trade["refund_ids"].append(refund["id"])
            self.sandbox.record(refund, "created", amount=minor)
            self.sandbox.record(trade, "refund_created", refund_id=refund["id"], amount=minor)
            if refund["status"] == "COMPLETED":
                capture["refunded"] += minor
            view = self._refund_view(refund)
            self._remember(account, "refund", req, 201, view)
        if delay > 0:
            self.sandbox.later(delay, lambda: self._complete_refund(refund["id"]))
        else:
            self._refund_webhook(account, refund)
        return SandboxResponse.json(201, view)

    def _complete_refund(self, refund_id: str) -> None:
        with self.sandbox.lock:
            refund = self._refunds.get(refund_id)
            if refund is None or refund["status"] != "PENDING":
                return
            trade = self._trades[refund["payment_no"]]
            capture = next(c for c in trade["captures"] if c["id"] == refund["capture_id"])
            refund["status"] = "COMPLETED"
            refund["update_time"] = self.sandbox.now()
            capture["refunded"] += refund["amount"]
            capture["update_time"] = refund["update_time"]
            self.sandbox.record(refund, "completed")
            account = self._accounts.get(refund["client_id"])
        if account is not None:
            self._refund_webhook(account, refund)

    def _refund_webhook(self, account: dict[str, Any], refund: dict[str, Any]) -> None:
        self._webhook(account, "PAYMENT.CAPTURE.REFUNDED", "refund", lambda: self._refund_view(refund))
