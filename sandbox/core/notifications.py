"""Asynchronous notification delivery with each channel's retry schedule and notification faults."""

from __future__ import annotations

import sys
import traceback
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import requests

from sandbox.core.faults import DEFAULT_DELAY_FAULT_SECONDS, NOTIFICATION_FAULTS

# (connect, read) seconds for notification deliveries; WeChat requires an answer within 5 s.
NOTIFY_TIMEOUT: tuple[float, float] = (2.0, 5.0)
# Notifications are never sent to reserved documentation/test names (RFC 2606/6761): a test that
# left ``https://pay.example.com/...`` as notify_url must not make the sandbox reach the network.
RESERVED_HOST_SUFFIXES = (".example", ".example.com", ".example.net", ".example.org", ".invalid", ".test")


@dataclass
class Outbound:
    id: str
    channel: str
    url: str
    key: str
    build: Callable[[], tuple[dict[str, str], bytes]]
    schedule: list[float]
    is_ack: Callable[[int, bytes], bool]
    generation: int
    state: str = "pending"  # pending / held / acked / exhausted / dropped / error / cancelled
    fault: str | None = None
    duplicate: bool = False
    attempts: int = 0
    release_after: list[Outbound] = field(default_factory=list)


class NotificationsMixin:
    """``Sandbox``'s notification delivery: queue, attempt, retry, log, and the notification faults."""

    def notify(
        self,
        channel: str,
        url: str,
        build: Callable[[], tuple[dict[str, str], bytes]],
        schedule: list[float],
        is_ack: Callable[[int, bytes], bool],
        key: str,
    ) -> str:
        """Deliver a notification asynchronously; returns its id.

        ``build`` makes the (headers, body) of one attempt; it is called per attempt.
        The first attempt is immediate; after each unaccepted attempt the next waits
        ``schedule[i]`` sandbox seconds, until ``is_ack(status, body)`` or the schedule runs out.
        Notification faults apply once per notification: ``drop`` (never sent), ``duplicate``
        (the first attempt is sent twice, byte for byte), ``delay`` (first attempt postponed),
        ``reorder`` (held back and released right after the next notification of the channel).
        """
        with self.lock:
            out = Outbound(
                id=uuid.uuid4().hex[:16],
                channel=channel,
                url=url,
                key=key,
                build=build,
                schedule=list(schedule),
                is_ack=is_ack,
                generation=self.generation,
            )
            self._outbound[out.id] = out
            rule = self._take_fault(NOTIFICATION_FAULTS, channel, url, key)
            out.fault = rule.kind if rule else None
            delay = 0.0
            if rule is not None and rule.kind == "drop":
                out.state = "dropped"
                self._log(out, attempt=0, status=None, answer=b"", outcome="dropped")
                self._idle.notify_all()
                return out.id
            if rule is not None and rule.kind == "reorder":
                out.state = "held"
                self._held.append(out)
                self._log(out, attempt=0, status=None, answer=b"", outcome="held")
                return out.id
            if rule is not None and rule.kind == "duplicate":
                out.duplicate = True
            if rule is not None and rule.kind == "delay":
                delay = self.scaled(rule.seconds if rule.seconds is not None else DEFAULT_DELAY_FAULT_SECONDS)
            out.release_after = [h for h in self._held if h.channel == channel]
            self._held = [h for h in self._held if h.channel != channel]
        self._scheduler.call_later(delay, lambda: self._attempt(out, 1))
        return out.id

    def flush_held(self) -> int:
        """Release every held (reordered) notification now; returns how many."""
        with self.lock:
            held, self._held = self._held, []
        for out in held:
            self._release(out)
        return len(held)

    def _release(self, out: Outbound) -> None:
        with self.lock:
            if out.generation != self.generation or out.state == "cancelled":
                return
            out.state = "pending"
        self._scheduler.call_later(0, lambda: self._attempt(out, 1))

    def cancel_notifications(self) -> int:
        """Stop every pending or held delivery (tests call this between tests); returns how many."""
        with self.lock:
            live = [o for o in self._outbound.values() if o.state in ("pending", "held")]
            for out in live:
                out.state = "cancelled"
            self._held.clear()
            self._idle.notify_all()
            return len(live)

    def _attempt(self, out: Outbound, attempt: int) -> None:
        if out.generation != self.generation or out.state == "cancelled":
            return
        try:
            headers, body = out.build()
        except Exception as exc:
            with self.lock:
                out.state = "error"
                self._log(out, attempt=attempt, status=None, answer=repr(exc).encode(), outcome="error")
                self._idle.notify_all()
            traceback.print_exc(file=sys.stderr)
            return
        acked = self._send(out, attempt, headers, body, duplicate=False)
        if attempt == 1 and out.duplicate:
            acked = self._send(out, attempt, headers, body, duplicate=True) or acked
        if attempt == 1:
            for held in out.release_after:
                self._release(held)
            out.release_after = []
        with self.lock:
            out.attempts = attempt
            if out.generation != self.generation or out.state == "cancelled":
                return
            if acked:
                out.state = "acked"
            elif attempt - 1 < len(out.schedule):
                self._scheduler.call_later(
                    self.scaled(out.schedule[attempt - 1]), lambda: self._attempt(out, attempt + 1)
                )
                return
            else:
                out.state = "exhausted"
            self._idle.notify_all()

    def _send(self, out: Outbound, attempt: int, headers: dict[str, str], body: bytes, *, duplicate: bool) -> bool:
        status: int | None = None
        answer = b""
        host = (urlsplit(out.url).hostname or "").lower().rstrip(".")
        if host.endswith(RESERVED_HOST_SUFFIXES) or host in {s.lstrip(".") for s in RESERVED_HOST_SUFFIXES}:
            with self.lock:
                self._log(
                    out,
                    attempt=attempt,
                    status=None,
                    answer=b"reserved host: not contacted",
                    outcome="not_acked",
                    duplicate=duplicate,
                    request_headers=headers,
                    request_body=body,
                )
            return False
        with self.lock:
            self._in_flight += 1
        try:
            resp = requests.post(out.url, data=body, headers=headers, timeout=NOTIFY_TIMEOUT, allow_redirects=False)
            status, answer = resp.status_code, resp.content
        except requests.RequestException as exc:
            answer = f"{type(exc).__name__}: {exc}".encode()
        finally:
            with self.lock:
                self._in_flight -= 1
                self._idle.notify_all()
        acked = False
        if status is not None:
            try:
                acked = bool(out.is_ack(status, answer))
            except Exception:
                traceback.print_exc(file=sys.stderr)
        with self.lock:
            if out.generation == self.generation:
                self._log(
                    out,
                    attempt=attempt,
                    status=status,
                    answer=answer,
                    outcome="acked" if acked else "not_acked",
                    duplicate=duplicate,
                    request_headers=headers,
                    request_body=body,
                )
        return acked

    def _log(
        self,
        out: Outbound,
        *,
        attempt: int,
        status: int | None,
        answer: bytes,
        outcome: str,
        duplicate: bool = False,
        request_headers: Mapping[str, str] | None = None,
        request_body: bytes = b"",
    ) -> None:
        self.notification_log.append(
            {
                "id": out.id,
                "channel": out.channel,
                "key": out.key,
                "url": out.url,
                "attempt": attempt,
                "status": status,
                "outcome": outcome,
                "fault": out.fault,
                "duplicate": duplicate,
                "answer": answer[:500].decode("utf-8", "replace"),
                "at": self.now().isoformat(),
                "request_headers": dict(request_headers or {}),
                "request_body": request_body.decode("utf-8", "replace"),
            }
        )

    def notification_states(self) -> list[dict[str, Any]]:
        with self.lock:
            return [
                {
                    "id": o.id,
                    "channel": o.channel,
                    "key": o.key,
                    "url": o.url,
                    "state": o.state,
                    "attempts": o.attempts,
                    "fault": o.fault,
                }
                for o in self._outbound.values()
            ]

    def wait_idle(self, timeout: float = 5.0) -> bool:
        """Wait until no notification is pending (held ones do not count) and no delivery request
        is on the wire, even one of a cancelled notification; False on timeout."""
        with self._idle:
            return self._idle.wait_for(
                lambda: self._in_flight == 0 and all(o.state != "pending" for o in self._outbound.values()),
                timeout=timeout,
            )
