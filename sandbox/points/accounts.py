"""Partner apps: account creation (keys, rotation), request authentication and signed answers."""

from __future__ import annotations

import hmac
import secrets
import time
from typing import Any

from sandbox.core import SandboxError, SandboxRequest
from sandbox.points.common import (
    _DIGITS,
    _HEX_NONCE,
    CHANNEL,
    NONCE_SECONDS,
    WINDOW_SECONDS,
    _hmac_hex,
    _positive_int,
    _Refused,
)


class AccountsMixin:
    """Accounts and signatures of ``PointsSimulator``."""

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
