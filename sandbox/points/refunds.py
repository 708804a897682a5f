"""Refunds of deductions: create, asynchronous completion, query."""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.points.common import _REFUND_FIELDS, REFUND_SECONDS, _positive_int, _Refused, _text


class RefundsMixin:
    """Refunds of ``PointsSimulator``."""

    def _refund(self, account: dict[str, Any], data: dict[str, Any]) -> tuple[int, Any]:
        refund_no, points = data.get("refund_request_no"), data.get("points")
        if not (_text(refund_no) and _positive_int(points)) or not (data.get("deduction_id") or data.get("request_no")):
            raise _Refused(
                400, "INVALID_REQUEST", "refund_request_no, positive points and deduction_id or request_no required"
            )
        target = {k: str(data.get(k) or "") for k in ("deduction_id", "request_no")}
        deduction = self._find_deduction(account, target)
        existing = self._refunds.get(refund_no)
        if existing is not None:
            if (existing["app_id"], existing["deduction_id"], existing["points"]) != (
                account["app_id"],
                deduction["deduction_id"],
                points,
            ):
                raise _Refused(409, "REQUEST_NO_CONFLICT", "refund_request_no reused with different content")
            return 200, self._public(existing, _REFUND_FIELDS)
        if deduction["status"] != "SUCCESS":
            raise _Refused(422, "DEDUCTION_NOT_SUCCESS", "only a successful deduction can be refunded")
        committed = sum(
            r["points"]
            for r in self._refunds.values()
            if r["deduction_id"] == deduction["deduction_id"] and r["status"] != "FAILED"
        )
        if committed + points > deduction["points"]:
            raise _Refused(
                422, "REFUND_EXCEEDS_DEDUCTION", f"{committed} of {deduction['points']} points already refunded"
            )
        refund = {
            "refund_id": f"R{secrets.token_hex(10)}",
            "refund_request_no": refund_no,
            "deduction_id": deduction["deduction_id"],
            "request_no": deduction["request_no"],
            "points": points,
            "status": "PROCESSING",
            "fail_code": None,
            "created_at": self._stamp(),
            "completed_at": None,
            "app_id": account["app_id"],
        }
        self._refunds[refund_no] = refund
        self.sandbox.record(refund, "created", points=points)
        self.sandbox.later(REFUND_SECONDS, lambda: self._complete_refund(refund_no))
        return 200, self._public(refund, _REFUND_FIELDS)

    def _complete_refund(self, refund_no: str) -> None:
        with self.sandbox.lock:
            refund = self._refunds.get(refund_no)
            if refund is None or refund["status"] != "PROCESSING":
                return
            deduction = self._trades[refund["request_no"]]
            self._bindings[deduction["binding_id"]]["points"] += refund["points"]
            deduction["refunded_points"] += refund["points"]
            refund.update(status="SUCCESS", completed_at=self._stamp())
            self.sandbox.record(refund, "success")
            self._callback(
                refund["app_id"], "REFUND.SUCCESS", "refund", self._public(refund, _REFUND_FIELDS), refund_no
            )

    def _find_refund(self, account: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        if params.get("refund_id"):
            found = next((r for r in self._refunds.values() if r["refund_id"] == params["refund_id"]), None)
        elif params.get("refund_request_no"):
            found = self._refunds.get(params["refund_request_no"])
        else:
            raise _Refused(400, "INVALID_REQUEST", "refund_request_no or refund_id is required")
        if found is None or found["app_id"] != account["app_id"]:
            raise _Refused(404, "REFUND_NOT_FOUND", "no such refund")
        return found
