"""Transaction Search (``GET /v1/reporting/transactions``), built from the sandbox's own captures and refunds."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from typing import Any

from sandbox.bills import BillHooks, apply_bill_faults
from sandbox.core import SandboxRequest, SandboxResponse
from sandbox.paypal.common import MAX_REPORT_DAYS, _bad_request, _fmt_signed, _pp_id, _report_ts, capture_fee


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
        # Data exists only for days that have ended (UTC, by the sandbox clock).
        now = self.sandbox.now().astimezone(UTC)
        refreshed = datetime(now.year, now.month, now.day, tzinfo=UTC)
        if start >= refreshed:
            raise _bad_request("INVALID_REQUEST", "Data for the given start date is not available.")
        rows = [r for r in self._report_rows(account) if start <= r[0] <= end and r[0] < refreshed]
        rows = self._with_bill_faults(account, rows, start, min(end, refreshed))
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
                "last_refreshed_datetime": _report_ts(refreshed),
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

    def _with_bill_faults(self, account: dict[str, Any], rows: list[Row], start: datetime, end: datetime) -> list[Row]:
        """Bill faults, day by day (UTC) over the range asked for."""
        out: list[Row] = []
        day = start.astimezone(UTC).date()
        while datetime(day.year, day.month, day.day, tzinfo=UTC) <= end:
            todays = [r for r in rows if r[0].astimezone(UTC).date() == day]
            faults = self.sandbox.bill_faults(self.channel, account["client_id"], day.isoformat())
            out += apply_bill_faults(todays, faults, _bill_hooks(day)) if faults else todays
            day += timedelta(days=1)
        return out

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


Row = tuple[datetime, dict[str, Any]]


def _bill_hooks(day: date) -> BillHooks[Row]:
    def with_value(row: Row, field: str, minor: int) -> Row:
        info = row[1]
        currency = info[field]["currency_code"]
        return row[0], {**info, field: {"currency_code": currency, "value": _fmt_signed(minor, currency)}}

    def extra(invoice_id: str, minor: int) -> Row:
        at = datetime(day.year, day.month, day.day, 12, tzinfo=UTC)
        return at, {
            "paypal_account_id": "SANDBOXPAYER01",
            "transaction_id": _pp_id(17),
            "paypal_reference_id": _pp_id(17),
            "paypal_reference_id_type": "ODR",
            "transaction_event_code": "T0006",
            "transaction_initiation_date": _report_ts(at),
            "transaction_updated_date": _report_ts(at),
            "transaction_amount": {"currency_code": "USD", "value": _fmt_signed(minor, "USD")},
            "fee_amount": {"currency_code": "USD", "value": _fmt_signed(-capture_fee(minor), "USD")},
            "transaction_status": "S",
            "protection_eligibility": "01",
            "invoice_id": invoice_id,
            "custom_field": invoice_id,
        }

    return BillHooks(
        trade_of=lambda row: row[1].get("invoice_id", ""),
        is_payment=lambda row: row[1]["transaction_event_code"] == "T0006",
        with_amount=lambda row, minor: with_value(row, "transaction_amount", minor),
        with_fee=lambda row, minor: with_value(row, "fee_amount", -minor),
        extra_line=extra,
    )
