"""Callbacks: signed events to the app's notify_url, retried until answered ``SUCCESS``."""

from __future__ import annotations

import json
import secrets
from typing import Any
from urllib.parse import urlsplit

from sandbox.points.common import CALLBACK_SCHEDULE, CHANNEL


class CallbacksMixin:
    """Callbacks of ``PointsSimulator``."""

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
