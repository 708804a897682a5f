"""The partner side of the loyalty-points pattern (paycore's own generic protocol), for the sandbox.

An independent implementation: it shares no code with ``channels/points.py``. Wire shapes are
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

import csv
import hashlib
import hmac
import io
import json
import re
import secrets
import time
from datetime import date, datetime, timedelta, timezone
from typing import Any, ClassVar
from urllib.parse import urlsplit

from sandbox.bills import BillHooks, apply_bill_faults
from sandbox.core import ChannelSimulator, SandboxError, SandboxRequest, SandboxResponse

CHANNEL = "points"
WINDOW_SECONDS = 300
NONCE_SECONDS = 600
INITIAL_POINTS = 100_000
POOR_POINTS = 10
REFUND_SECONDS = 5.0
CALLBACK_SCHEDULE = [15.0, 15.0, 30.0, 180.0, 600.0, 1800.0, 3600.0]
STATEMENT_HEADER = [
    "type",
    "request_no",
    "deduction_id",
    "refund_request_no",
    "refund_id",
    "points",
    "status",
    "created_at",
    "completed_at",
]
PARTNER_TZ = timezone(timedelta(hours=8))

_HEX_NONCE = re.compile(r"[0-9a-f]{16,32}")
_DIGITS = re.compile(r"[0-9]{1,12}")
_BINDING_PATH = re.compile(r"/v1/bindings/([^/]+)")
_BALANCE_PATH = re.compile(r"/v1/bindings/([^/]+)/balance")

_DEDUCTION_FIELDS = (
    "deduction_id",
    "request_no",
    "binding_id",
    "order_no",
    "points",
    "refunded_points",
    "status",
    "fail_code",
    "created_at",
    "completed_at",
)
_REFUND_FIELDS = (
    "refund_id",
    "refund_request_no",
    "deduction_id",
    "request_no",
    "points",
    "status",
    "fail_code",
    "created_at",
    "completed_at",
)


class _Refused(Exception):
    """An API error answered as ``{"code", "message"}`` (signed when the app is known)."""

    def __init__(self, status: int, code: str, message: str = "") -> None:
        super().__init__(message or code)
        self.status, self.code, self.message = status, code, message or code


def _hmac_hex(secret: str, method: str, target: str, timestamp: str, nonce: str, body: bytes) -> str:
    text = "\n".join([method, target, timestamp, nonce, hashlib.sha256(body).hexdigest()]) + "\n"
    return hmac.new(secret.encode("utf-8"), text.encode("utf-8"), hashlib.sha256).hexdigest()


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def _text(value: Any) -> bool:
    return isinstance(value, str) and 0 < len(value) <= 64


class PointsSimulator(ChannelSimulator):
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

    # --- accounts -------------------------------------------------------------------------
    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        rate = options.get("points_per_minor_unit", 1)
        if not _positive_int(rate):
            raise SandboxError(400, "BAD_REQUEST", "points_per_minor_unit must be a positive integer")
        app_id = f"app_{secrets.token_hex(8)}"
        key_id = f"key_{secrets.token_hex(4)}"
        secret = secrets.token_bytes(32).hex()
        keys = {key_id: secret}
        credentials = {"shared_secret": secret}
        sign_key_id = key_id
        if options.get("rotation"):
            previous_id, previous_secret = f"key_{secrets.token_hex(4)}", secrets.token_bytes(32).hex()
            keys[previous_id] = previous_secret
            credentials.update(previous_key_id=previous_id, previous_shared_secret=previous_secret)
            sign_key_id = previous_id
        with self.sandbox.lock:
            self._accounts[app_id] = {
                "app_id": app_id,
                "keys": keys,
                "sign_key_id": sign_key_id,
                "notify_url": notify_url,
            }
        account_options: dict[str, Any] = {"points_per_minor_unit": rate}
        if notify_url:
            account_options["notify_url"] = notify_url
        return {
            "channel": CHANNEL,
            "ids": {"app_id": app_id, "key_id": key_id},
            "credentials": credentials,
            "options": account_options,
        }

    # --- signatures -----------------------------------------------------------------------
    def _signed_headers(
        self, account: dict[str, Any], method: str, target: str, body: bytes, *, wrong: bool = False
    ) -> dict[str, str]:
        key_id = account["sign_key_id"]
        secret = account["keys"][key_id]
        timestamp, nonce = str(int(time.time())), secrets.token_hex(16)
        signature = _hmac_hex(secret + ("-wrong" if wrong else ""), method, target, timestamp, nonce, body)
        return {
            "X-App-Id": account["app_id"],
            "X-Key-Id": key_id,
            "X-Timestamp": timestamp,
            "X-Nonce": nonce,
            "X-Signature": signature,
        }

    def _authenticate(self, req: SandboxRequest) -> dict[str, Any]:
        """The calling account, once the request's signature, time and nonce check out."""
        h = req.headers
        app_id, key_id = h.get("X-App-Id"), h.get("X-Key-Id")
        timestamp, nonce, signature = h.get("X-Timestamp"), h.get("X-Nonce"), h.get("X-Signature")
        if not (app_id and key_id and timestamp and nonce and signature):
            raise _Refused(401, "SIGNATURE_INVALID", "missing signature headers")
        account = self._accounts.get(app_id)
        if account is None:
            raise _Refused(401, "APP_NOT_FOUND", "unknown X-App-Id")
        secret = account["keys"].get(key_id)
        if secret is None:
            raise _Refused(401, "KEY_NOT_FOUND", "unknown X-Key-Id")
        now = time.time()
        if not _DIGITS.fullmatch(timestamp) or abs(now - int(timestamp)) > WINDOW_SECONDS:
            raise _Refused(401, "TIMESTAMP_EXPIRED", "X-Timestamp outside the 300 s window")
        if not _HEX_NONCE.fullmatch(nonce):
            raise _Refused(401, "SIGNATURE_INVALID", "X-Nonce must be 16-32 lower-case hex digits")
        expected = _hmac_hex(secret, req.method, req.target, timestamp, nonce, req.body)
        if not hmac.compare_digest(expected.encode(), signature.encode("utf-8", "replace")):
            raise _Refused(401, "SIGNATURE_INVALID", "signature mismatch")
        self._nonces = {k: exp for k, exp in self._nonces.items() if exp > now}
        if (app_id, nonce) in self._nonces:
            raise _Refused(401, "NONCE_REPLAYED", "X-Nonce already used")
        self._nonces[(app_id, nonce)] = now + NONCE_SECONDS
        return account

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

    # --- bindings -------------------------------------------------------------------------
    def _bind(self, account: dict[str, Any], data: dict[str, Any]) -> tuple[int, Any]:
        bind_no, user_ref = data.get("bind_request_no"), data.get("user_ref")
        user_id = data.get("our_user_id")
        if not (_text(bind_no) and _text(user_ref) and _text(user_id)):
            raise _Refused(400, "INVALID_REQUEST", "bind_request_no, user_ref and our_user_id are required")
        existing = self._bind_requests.get((account["app_id"], bind_no))
        if existing is not None:
            binding = self._bindings[existing]
            if (binding["user_ref"], binding["our_user_id"]) != (user_ref, user_id):
                raise _Refused(409, "REQUEST_NO_CONFLICT", "bind_request_no reused with different content")
            return 200, self._binding_json(binding)
        if user_ref.startswith("invalid-"):
            raise _Refused(422, "USER_REF_INVALID", "the partner does not know this user")
        binding_id = f"B{secrets.token_hex(10)}"
        binding = {
            "binding_id": binding_id,
            "app_id": account["app_id"],
            "user_ref": user_ref,
            "our_user_id": user_id,
            "status": "ACTIVE",
            "frozen_points": 0,
            "points": POOR_POINTS if user_ref.startswith("poor-") else INITIAL_POINTS,
        }
        self._bindings[binding_id] = binding
        self._bind_requests[(account["app_id"], bind_no)] = binding_id
        return 200, self._binding_json(binding)

    @staticmethod
    def _binding_json(binding: dict[str, Any]) -> dict[str, Any]:
        return {k: binding[k] for k in ("binding_id", "user_ref", "our_user_id", "status")}

    def _binding(self, account: dict[str, Any], binding_id: str) -> dict[str, Any]:
        binding = self._bindings.get(binding_id)
        if binding is None or binding["app_id"] != account["app_id"]:
            raise _Refused(404, "BINDING_NOT_FOUND", "no such binding")
        return binding

    # --- deductions -----------------------------------------------------------------------
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

    # --- refunds --------------------------------------------------------------------------
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

    # --- callbacks ------------------------------------------------------------------------
    def _callback(self, app_id: str, event_type: str, name: str, obj: dict[str, Any], number: str) -> None:
        account = self._accounts.get(app_id)
        if account is None or not account.get("notify_url"):
            return
        url = account["notify_url"]
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        event = {"event_id": f"EV{secrets.token_hex(10)}", "type": event_type, "created_at": self._stamp(), name: obj}
        body = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()

        def build() -> tuple[dict[str, str], bytes]:  # signed afresh for every attempt
            headers = self._signed_headers(account, "POST", target, body)
            return {**headers, "Content-Type": "application/json; charset=utf-8"}, body

        def is_ack(status: int, answer: bytes) -> bool:
            try:
                return status == 200 and json.loads(answer.decode("utf-8")).get("code") == "SUCCESS"
            except (ValueError, UnicodeDecodeError, AttributeError):
                return False

        self.sandbox.notify(CHANNEL, url, build, CALLBACK_SCHEDULE, is_ack, key=f"{event_type}:{number}")

    # --- statement ------------------------------------------------------------------------
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

    # --- payer ----------------------------------------------------------------------------
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
