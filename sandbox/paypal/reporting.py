"""Transaction Search (``GET /v1/reporting/transactions``), built from the sandbox's own captures and refunds."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sandbox.core import SandboxRequest, SandboxResponse
from sandbox.paypal.common import MAX_REPORT_DAYS, _bad_request, _fmt_signed, _report_ts


class ReportingMixin:
    """Transaction Search of ``PaypalSimulator``."""

    def _transactions(self, req: SandboxRequest, account: dict[str, Any]) -> SandboxResponse:
        params = req.params
        try:
            start = datetime.fromisoformat(params["start_date"])
            end = datetime.fromisoformat(params["end_date"])
            page = int(params.get("page", "1"))
            page_size = int(params.get("page_size", "100"))
        except (KeyError, ValueError):
            raise _bad_request("INVALID_REQUEST", "start_date and end_date (RFC 3339) are required.") from None
        if start.tzinfo is None or end.tzinfo is None or end < start:
            raise _bad_request("INVALID_REQUEST", "Dates need an offset and end_date >= start_date.")
        if end - start > timedelta(days=MAX_REPORT_DAYS):
            raise _bad_request("INVALID_REQUEST", "Date range is greater than 31 days.")
        if page < 1 or not 1 <= page_size <= 500:
            raise _bad_request("INVALID_REQUEST", "page starts at 1; page_size is 1..500.")
        if account["report_page_size"]:
            page_size = min(page_size, int(account["report_page_size"]))
        rows = [r for r in self._report_rows(account) if start <= r[0] <= end]
        rows.sort(key=lambda r: (r[0], r[1]["transaction_id"]))
        total_pages = max(1, -(-len(rows) // page_size))
        chunk = rows[(page - 1) * page_size : page * page_size]
        return SandboxResponse.json(
            200,
            {
                "transaction_details": [{"transaction_info": info} for _, info in chunk],
                "account_number": "SANDBOXMERCHANT1",
                "start_date": _report_ts(start),
                "end_date": _report_ts(end),
                "last_refreshed_datetime": _report_ts(self.sandbox.now()),
                "page": page,
                "total_items": len(rows),
                "total_pages": total_pages,
                "links": [
                    {
                        "href": f"{account['base_url']}/v1/reporting/transactions?{req.query}",
                        "rel": "self",
                        "method": "GET",
                    }
                ],
            },
        )

    def _report_rows(self, account: dict[str, Any]) -> list[tuple[datetime, dict[str, Any]]]:
        out: list[tuple[datetime, dict[str, Any]]] = []
        with self.sandbox.lock:
            for trade in self._trades.values():
                if trade["client_id"] != account["client_id"]:
                    continue
                currency = trade["currency"]
                for capture in trade["captures"]:
                    if capture["status"] == "DECLINED":
                        continue  # not balance affecting
                    info = {
                        "paypal_account_id": "SANDBOXPAYER01",
                        "transaction_id": capture["id"],
                        "paypal_reference_id": trade["order_id"],
                        "paypal_reference_id_type": "ODR",
                        "transaction_event_code": "T0006",
                        "transaction_initiation_date": _report_ts(capture["create_time"]),
                        "transaction_updated_date": _report_ts(capture["update_time"]),
                        "transaction_amount": {
                            "currency_code": currency,
                            "value": _fmt_signed(capture["amount"], currency),
                        },
                        "fee_amount": {"currency_code": currency, "value": _fmt_signed(-capture["fee"], currency)},
                        "transaction_status": "P"
                        if capture["status"] == "PENDING"
                        else "V"
                        if capture["reversed"]
                        else "S",
                        "protection_eligibility": "01",
                    }
                    if trade.get("invoice_id"):
                        info["invoice_id"] = trade["invoice_id"]
                    if trade.get("custom_id"):
                        info["custom_field"] = trade["custom_id"]
                    out.append((capture["create_time"], info))
                for refund_id in trade["refund_ids"]:
                    refund = self._refunds.get(refund_id)
                    if refund is None:
                        continue
                    info = {
                        "paypal_account_id": "SANDBOXPAYER01",
                        "transaction_id": refund["id"],
                        "paypal_reference_id": refund["capture_id"],
                        "paypal_reference_id_type": "TXN",
                        "transaction_event_code": "T1107",
                        "transaction_initiation_date": _report_ts(refund["create_time"]),
                        "transaction_updated_date": _report_ts(refund["update_time"]),
                        "transaction_amount": {
                            "currency_code": currency,
                            "value": _fmt_signed(-refund["amount"], currency),
                        },
                        "fee_amount": {"currency_code": currency, "value": _fmt_signed(0, currency)},
                        "transaction_status": "P" if refund["status"] == "PENDING" else "S",
                    }
                    if refund.get("invoice_id"):
                        info["invoice_id"] = refund["invoice_id"]
                    if refund.get("custom_id"):
                        info["custom_field"] = refund["custom_id"]
                    out.append((refund["create_time"], info))
        return out
