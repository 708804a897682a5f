"""Requests, responses and errors as simulators see them, and JSON helpers shared by the core."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs

from requests.structures import CaseInsensitiveDict

if TYPE_CHECKING:
    from sandbox.core.faults import FaultRule


class SandboxError(Exception):
    """Raised by the core or a simulator to answer a control call with a JSON error."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message

    def to_response(self) -> SandboxResponse:
        return SandboxResponse.json(self.status, {"code": self.code, "message": self.message})


class SimulatorUnavailable(SandboxError):
    """The channel is known but its simulator module could not be imported."""


@dataclass
class SandboxRequest:
    """One HTTP request to a channel prefix, as the simulator sees it.

    ``path`` is relative to the channel prefix (``/v3/pay/transactions/app``); ``raw_path`` is the
    path exactly as sent, prefix included, which is what request signatures cover. ``query`` is
    the raw query string without ``?``. ``base_url`` is the channel's base URL as the client
    reached it (``http://127.0.0.1:8100/wechat``), for links such as bill download URLs.
    ``fault`` is the API fault the core selected for this request (see ``Sandbox.api_fault``).
    ``tls``/``client_certificate``: the request came through the mutual-TLS listener with that
    certificate (DER, already verified against the sandbox CA).
    """

    method: str
    path: str
    query: str
    headers: Mapping[str, str]
    body: bytes
    remote_addr: str = ""
    channel: str = ""
    raw_path: str = ""
    base_url: str = ""
    fault: FaultRule | None = None
    tls: bool = False  # reached through the mutual-TLS listener
    client_certificate: bytes | None = None  # the verified client certificate (DER), TLS only

    @property
    def target(self) -> str:
        """Path and query exactly as sent (prefix included): the WeChat canonical URL."""
        path = self.raw_path or self.path
        return f"{path}?{self.query}" if self.query else path

    @property
    def params(self) -> dict[str, str]:
        """Query parameters, first value of each."""
        return {k: v[0] for k, v in parse_qs(self.query, keep_blank_values=True).items()}

    def json(self) -> Any:
        """The body parsed as JSON; a malformed body raises ``ValueError``."""
        return json.loads(self.body.decode("utf-8")) if self.body else None


@dataclass
class SandboxResponse:
    status: int
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)

    @classmethod
    def json(cls, status: int, obj: Any, headers: Mapping[str, str] | None = None) -> SandboxResponse:
        body = json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=json_default).encode()
        return cls(status, body, {"Content-Type": "application/json; charset=utf-8", **(headers or {})})

    @classmethod
    def text(
        cls,
        status: int,
        text: str | bytes,
        content_type: str = "text/plain; charset=utf-8",
        headers: Mapping[str, str] | None = None,
    ) -> SandboxResponse:
        body = text.encode() if isinstance(text, str) else text
        return cls(status, body, {"Content-Type": content_type, **(headers or {})})

    @classmethod
    def empty(cls, status: int = 204, headers: Mapping[str, str] | None = None) -> SandboxResponse:
        return cls(status, b"", dict(headers or {}))


class Disconnect(Exception):
    """Raised as a response marker: the server closes the connection without answering."""


def jsonable(obj: Any) -> dict[str, Any]:
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "to_json"):
        return obj.to_json()
    if isinstance(obj, Mapping):
        return dict(obj)
    return {"value": str(obj)}


def json_default(obj: Any) -> Any:
    if isinstance(obj, datetime):
        return obj.isoformat()
    if isinstance(obj, bytes):
        return obj.decode("utf-8", "replace")
    if isinstance(obj, (set, frozenset, tuple)):
        return list(obj)
    if callable(obj):
        return None
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    return str(obj)


def case_insensitive(headers: Mapping[str, str]) -> CaseInsensitiveDict[str]:
    return CaseInsensitiveDict(headers)
