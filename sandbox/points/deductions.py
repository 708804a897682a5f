"""Deductions (the payments): create, finish, query, and the payer's presets and actions."""

from __future__ import annotations

import secrets
from typing import Any

from sandbox.core import SandboxError
from sandbox.points.common import _DEDUCTION_FIELDS, _positive_int, _Refused, _text


class DeductionsMixin:
    """Deductions and payer actions of ``PointsSimulator``."""

    def _deduct(self, account: dict[str, Any], data: dict[str, Any]) -> tuple[int, Any]:
        request_no, binding_id, points = data.get("request_no"), data.get("binding_id"), data.get("points")
        order_no, description = data.get("order_no", ""), data.get("description", "")
        if not (
            _text(request_no)
            and _text(binding_id)
            and _positive_int(points)
            and isinstance(order_no, str)
            and isinstance(description, str)
        ):
            raise _Refused(400, "INVALID_REQUEST", "request_no, binding_id and positive points required")
        content = {"binding_id": binding_id, "points": points, "order_no": order_no, "description": description}
        existing = self._trades.get(request_no)
        if existing is not None:
            if existing["app_id"] != account["app_id"] or existing["content"] != content:
                raise _Refused(409, "REQUEST_NO_CONFLICT", "request_no reused with different content")
            self.sandbox.record(existing, "repeat")
            return 200, self._public(existing, _DEDUCTION_FIELDS)
        binding = self._binding(account, binding_id)
        if binding["status"] != "ACTIVE":
            raise _Refused(422, "BINDING_INACTIVE", "the binding was revoked")
        deduction = {
            "deduction_id": f"D{secrets.token_hex(10)}",
            "request_no": request_no,
            "binding_id": binding_id,
            "order_no": order_no,
            "points": points,
            "refunded_points": 0,
            "status": "PROCESSING",
            "fail_code": None,
            "created_at": self._stamp(),
            "completed_at": None,
            "app_id": account["app_id"],
            "content": content,
        }
        self._trades[request_no] = deduction
        self.sandbox.record(deduction, "created", points=points)
        preset = self._presets.pop(request_no, None)
        if binding["points"] < points:
            self._finish(deduction, "FAILED", fail_code="INSUFFICIENT_POINTS")
        else:
            binding["points"] -= points
            binding["frozen_points"] += points
            deduction["frozen"] = True
            if preset is None:
                self._finish(deduction, "SUCCESS")
            elif preset["action"] != "hold":
                outcome = "SUCCESS" if preset["action"] == "pay" else "FAILED"
                after = preset.get("after_seconds")
                if after:
                    self.sandbox.later(
                        float(after), lambda: self._finish_later(request_no, outcome, preset.get("fail_code"))
                    )
                else:
                    self._finish(deduction, outcome, fail_code=preset.get("fail_code"))
        return 200, self._public(deduction, _DEDUCTION_FIELDS)

    def _finish_later(self, request_no: str, outcome: str, fail_code: str | None) -> None:
        with self.sandbox.lock:
            deduction = self._trades.get(request_no)
            if deduction is not None and deduction["status"] == "PROCESSING":
                self._finish(deduction, outcome, fail_code=fail_code)

    def _finish(self, deduction: dict[str, Any], outcome: str, *, fail_code: str | None = None) -> None:
        """Move a PROCESSING deduction to SUCCESS or FAILED, settle the points, call back."""
        binding = self._bindings[deduction["binding_id"]]
        points = deduction["points"]
        if deduction.pop("frozen", False):  # not frozen: refused for lack of points
            binding["frozen_points"] -= points
            if outcome != "SUCCESS":
                binding["points"] += points
        if outcome != "SUCCESS":
            fail_code = fail_code or "DEDUCTION_DECLINED"
        deduction.update(
            status=outcome, fail_code=fail_code if outcome == "FAILED" else None, completed_at=self._stamp()
        )
        self.sandbox.record(deduction, outcome.lower(), fail_code=deduction["fail_code"])
        self._callback(
            deduction["app_id"],
            f"DEDUCTION.{outcome}",
            "deduction",
            self._public(deduction, _DEDUCTION_FIELDS),
            deduction["request_no"],
        )

    def _find_deduction(self, account: dict[str, Any], params: dict[str, str]) -> dict[str, Any]:
        if params.get("deduction_id"):
            wanted = params["deduction_id"]
            found = next((d for d in self._trades.values() if d["deduction_id"] == wanted), None)
        elif params.get("request_no"):
            found = self._trades.get(params["request_no"])
        else:
            raise _Refused(400, "INVALID_REQUEST", "request_no or deduction_id is required")
        if found is None or found["app_id"] != account["app_id"]:
            raise _Refused(404, "DEDUCTION_NOT_FOUND", "no such deduction")
        return found

    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        if action not in ("pay", "fail", "hold"):
            raise SandboxError(400, "UNKNOWN_ACTION", "points payer actions: pay, fail, hold")
        after = params.get("after_seconds")
        if after is not None and (isinstance(after, bool) or not isinstance(after, int | float) or after < 0):
            raise SandboxError(400, "BAD_REQUEST", "after_seconds must be a non-negative number")
        fail_code = params.get("fail_code")
        with self.sandbox.lock:
            deduction = self._trades.get(payment_no)
            if deduction is None:
                # Points are taken at once; an action before the deduction sets up its outcome.
                self._presets[payment_no] = {"action": action, "after_seconds": after, "fail_code": fail_code}
                return {"request_no": payment_no, "status": "PRESET", "action": action, "after_seconds": after}
            if deduction["status"] != "PROCESSING":
                raise SandboxError(409, "TRADE_FINAL", f"deduction is already {deduction['status']}")
            if action != "hold":
                outcome = "SUCCESS" if action == "pay" else "FAILED"
                if after:
                    self.sandbox.later(float(after), lambda: self._finish_later(payment_no, outcome, fail_code))
                else:
                    self._finish(deduction, outcome, fail_code=fail_code)
            return self._public(deduction, _DEDUCTION_FIELDS)
