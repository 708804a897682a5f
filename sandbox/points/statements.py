"""Daily statements: the CSV of a day's deductions and refunds, once the day has ended."""

from __future__ import annotations

import csv
import io
import secrets
from datetime import date, datetime
from typing import Any

from sandbox.bills import BillHooks, apply_bill_faults
from sandbox.points.common import CHANNEL, PARTNER_TZ, STATEMENT_HEADER, _Refused


class StatementsMixin:
    """Statements of ``PointsSimulator``."""

    def _statement(self, account: dict[str, Any], day: str) -> bytes:
        try:
            wanted = date.fromisoformat(day)
        except ValueError:
            raise _Refused(400, "INVALID_REQUEST", "date must be YYYY-MM-DD") from None
        if wanted >= self.sandbox.now().astimezone(PARTNER_TZ).date():
            raise _Refused(409, "STATEMENT_NOT_READY", "a day's statement is ready once the day has ended")

        def on_day(obj: dict[str, Any]) -> bool:
            stamp = obj["completed_at"] or obj["created_at"]
            return datetime.fromisoformat(stamp).astimezone(PARTNER_TZ).date() == wanted

        rows: list[tuple[str, list[str]]] = []
        for d in self._trades.values():
            if d["app_id"] == account["app_id"] and on_day(d):
                rows.append(
                    (
                        d["completed_at"] or d["created_at"],
                        [
                            "DEDUCTION",
                            d["request_no"],
                            d["deduction_id"],
                            "",
                            "",
                            str(d["points"]),
                            d["status"],
                            d["created_at"],
                            d["completed_at"] or "",
                        ],
                    )
                )
        for r in self._refunds.values():
            if r["app_id"] == account["app_id"] and on_day(r):
                rows.append(
                    (
                        r["completed_at"] or r["created_at"],
                        [
                            "REFUND",
                            r["request_no"],
                            r["deduction_id"],
                            r["refund_request_no"],
                            r["refund_id"],
                            str(r["points"]),
                            r["status"],
                            r["created_at"],
                            r["completed_at"] or "",
                        ],
                    )
                )
        faults = self.sandbox.bill_faults(CHANNEL, account["app_id"], wanted.isoformat())
        if faults:
            rows = apply_bill_faults(rows, faults, _statement_hooks(wanted))
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(STATEMENT_HEADER)
        writer.writerows(row for _, row in sorted(rows, key=lambda item: item[0]))
        return out.getvalue().encode("utf-8")


StatementRow = tuple[str, list[str]]  # (sort stamp, CSV cells in STATEMENT_HEADER order)


def _statement_hooks(day: date) -> BillHooks[StatementRow]:
    def extra(request_no: str, points: int) -> StatementRow:
        at = datetime(day.year, day.month, day.day, 12, tzinfo=PARTNER_TZ).isoformat(timespec="seconds")
        cells = ["DEDUCTION", request_no, f"D{secrets.token_hex(10)}", "", "", str(points), "SUCCESS", at, at]
        return at, cells

    def with_points(row: StatementRow, points: int) -> StatementRow:
        cells = list(row[1])
        cells[STATEMENT_HEADER.index("points")] = str(points)
        return row[0], cells

    def no_fee(row: StatementRow, _: int) -> StatementRow:  # statements carry no fee (refused earlier)
        return row

    return BillHooks(
        trade_of=lambda row: row[1][1],
        is_payment=lambda row: row[1][0] == "DEDUCTION",
        with_amount=with_points,
        with_fee=no_fee,
        extra_line=extra,
    )
