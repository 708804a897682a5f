"""The partner side of the loyalty-points pattern (paycore's own generic protocol), for the sandbox.

An independent implementation: it shares no code with paycore's ``channels/points`` adapter. Wire shapes are
the ones that adapter documents (deduction / refund / error objects, callbacks, the statement
CSV); signatures are the pattern's HMAC-SHA256 in both directions. Responses are signed over the METHOD
and PATH_AND_QUERY of the request they answer; callbacks as ``POST`` to the registered
``notify_url``'s path and query. Error answers are signed too, whenever the app id is known.

Sandbox behaviour:

- ``create_account(notify_url, points_per_minor_unit=1, rotation=False)``: a fresh ``app_id``,
  ``key_id`` and 32 random bytes as hex for the secret. With ``rotation=True`` the account also
  has a previous key (returned as ``previous_key_id`` / ``previous_shared_secret``) and the
  partner keeps signing with that previous key, as a partner that has not switched yet would.
- Bindings start with 100000 points; a ``user_ref`` starting ``poor-`` gets 10 points (so a
  deduction fails with ``INSUFFICIENT_POINTS``); one starting ``invalid-`` is refused.
- Deductions complete at once unless a payer action was set up first for that ``request_no``:
  ``hold`` (stay PROCESSING until ``pay``/``fail``), ``pay``/``fail`` with ``after_seconds`` (stay
  PROCESSING that many sandbox seconds), ``fail`` (end FAILED, ``fail_code`` param or
  ``DEDUCTION_DECLINED``). On a PROCESSING deduction ``pay``/``fail`` finish it.
- Refunds answer PROCESSING and complete ``REFUND_SECONDS`` sandbox seconds later.
- Every final deduction or refund is called back to ``notify_url`` (if any) with retries.
- API faults: ``bad_signature`` signs the answer with a wrong key; ``tamper_amount`` replaces
  ``points`` in the answered object with the fault's ``amount`` (signed correctly).
- Request numbers are unique across the sandbox (the real partner scopes them per app).
"""

from __future__ import annotations

import json
from typing import Any, ClassVar

from sandbox.core import ChannelSimulator, SandboxRequest, SandboxResponse
from sandbox.points.accounts import AccountsMixin
from sandbox.points.bindings import BindingsMixin
from sandbox.points.callbacks import CallbacksMixin
from sandbox.points.common import (
    _BALANCE_PATH,
    _BINDING_PATH,
    _DEDUCTION_FIELDS,
    _REFUND_FIELDS,
    CHANNEL,
    PARTNER_TZ,
    _Refused,
)
from sandbox.points.deductions import DeductionsMixin
from sandbox.points.refunds import RefundsMixin
from sandbox.points.statements import StatementsMixin

__all__ = ["PointsSimulator"]


class PointsSimulator(
    AccountsMixin, BindingsMixin, DeductionsMixin, RefundsMixin, CallbacksMixin, StatementsMixin, ChannelSimulator
):
    """The partner's points platform, composed of one mixin per thing it does."""

    channel: ClassVar[str] = CHANNEL

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        self.reset()

    def reset(self) -> None:
        self._bindings: dict[str, dict[str, Any]] = {}
        self._bind_requests: dict[tuple[str, str], str] = {}
        self._presets: dict[str, dict[str, Any]] = {}
        self._nonces: dict[tuple[str, str], float] = {}

    # --- state helpers (call under sandbox.lock) -------------------------------------------
    def _stamp(self) -> str:
        return self.sandbox.now().astimezone(PARTNER_TZ).isoformat(timespec="seconds")

    @staticmethod
    def _public(obj: dict[str, Any], fields: tuple[str, ...]) -> dict[str, Any]:
        return {name: obj.get(name) for name in fields}

    # --- HTTP -----------------------------------------------------------------------------
    def handle(self, req: SandboxRequest) -> SandboxResponse:
        fault = req.fault
        account: dict[str, Any] | None = None
        with self.sandbox.lock:
            try:
                account = self._authenticate(req)
                status, obj = self._route(account, req)
            except _Refused as refused:
                status, obj = refused.status, {"code": refused.code, "message": refused.message}
                if account is None:
                    account = self._accounts.get(req.headers.get("X-App-Id", ""))
        if isinstance(obj, bytes):
            body, ctype = obj, "text/csv; charset=utf-8"
        else:
            tamper = fault is not None and fault.kind == "tamper_amount"
            if tamper and isinstance(obj, dict) and "points" in obj:
                obj = {**obj, "points": fault.amount if fault.amount is not None else obj["points"] + 1}
            body = b"" if obj is None else json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode()
            ctype = "application/json; charset=utf-8"
        headers = {"Content-Type": ctype} if body else {}
        if account is not None:
            wrong = fault is not None and fault.kind == "bad_signature"
            headers.update(self._signed_headers(account, req.method, req.target, body, wrong=wrong))
        return SandboxResponse(status, body, headers)

    def _route(self, account: dict[str, Any], req: SandboxRequest) -> tuple[int, Any]:
        method, path = req.method, req.path
        if method == "POST" and path == "/v1/bindings":
            return self._bind(account, self._payload(req))
        if method == "GET" and (m := _BALANCE_PATH.fullmatch(path)):
            binding = self._binding(account, m.group(1))
            return 200, {
                "binding_id": binding["binding_id"],
                "points": binding["points"],
                "frozen_points": binding["frozen_points"],
                "status": binding["status"],
            }
        if method == "DELETE" and (m := _BINDING_PATH.fullmatch(path)):
            binding = self._binding(account, m.group(1))
            binding["status"] = "UNBOUND"
            return 204, None
        if method == "POST" and path == "/v1/points/deductions":
            return self._deduct(account, self._payload(req))
        if method == "GET" and path == "/v1/points/deductions":
            return 200, self._public(self._find_deduction(account, req.params), _DEDUCTION_FIELDS)
        if method == "POST" and path == "/v1/points/refunds":
            return self._refund(account, self._payload(req))
        if method == "GET" and path == "/v1/points/refunds":
            return 200, self._public(self._find_refund(account, req.params), _REFUND_FIELDS)
        if method == "GET" and path == "/v1/statements":
            return 200, self._statement(account, req.params.get("date", ""))
        raise _Refused(404, "NOT_FOUND", f"no endpoint {method} {path}")

    @staticmethod
    def _payload(req: SandboxRequest) -> dict[str, Any]:
        try:
            data = req.json()
        except (UnicodeDecodeError, ValueError):
            raise _Refused(400, "INVALID_REQUEST", "body is not JSON") from None
        if not isinstance(data, dict):
            raise _Refused(400, "INVALID_REQUEST", "body must be a JSON object")
        return data
