"""The sandbox gateway's HTTP front: routing to channel simulators and the control API.

``SandboxGateway`` serves on a ``ThreadingHTTPServer`` in a background thread (tests) or in
the foreground (``python -m sandbox``). Everything under ``/_sandbox/`` is the control
API (JSON, see CONTRACT.md); ``/{channel}/...`` goes to that channel's simulator with the path
relative to the prefix.
"""

from __future__ import annotations

import json
import ssl
import sys
import threading
import traceback
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import unquote, urlsplit

from requests.structures import CaseInsensitiveDict

from sandbox.core import (
    SIMULATORS,
    Disconnect,
    Sandbox,
    SandboxError,
    SandboxRequest,
    SandboxResponse,
)
from sandbox.keys import KeyPool
from sandbox.tls import DEFAULT_TLS_HOSTS, TLSServer

_MAX_BODY = 10 * 1024 * 1024
# What the mutual-TLS listener serves (everything else is on the plain listener).
TLS_PATHS = ("/wechat/secapi/",)


class SandboxGateway:
    """The sandbox as a server. ``port=0`` picks a free port; see ``base_url`` after ``start()``.

    Two listeners: plain HTTP on ``port`` (every channel and the control API) and mutual TLS on
    ``tls_port`` (``0`` = any free port; ``None`` = none), which serves WeChat ``/secapi/`` only,
    to clients presenting a certificate issued by the sandbox CA (see ``sandbox/tls.py``).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        time_factor: float = 1.0,
        *,
        verbose: bool = False,
        key_pool: KeyPool | None = None,
        tls_port: int | None = 0,
        tls_hosts: tuple[str, ...] = DEFAULT_TLS_HOSTS,
    ) -> None:
        self.sandbox = Sandbox(time_factor=time_factor, key_pool=key_pool)
        self._host, self._port, self._verbose = host, port, verbose
        self._tls_port, self._tls_hosts = tls_port, tls_hosts
        self._server: ThreadingHTTPServer | None = None
        self._tls_server: TLSServer | None = None
        self._threads: list[threading.Thread] = []

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the gateway is not started")
        return _url("http", self._server)

    @property
    def tls_base_url(self) -> str | None:
        """``https://127.0.0.1:<tls port>`` (the mutual-TLS listener), or None without one."""
        return _url("https", self._tls_server) if self._tls_server is not None else None

    def bind(self) -> SandboxGateway:
        """Open the listening sockets (``base_url`` is known from here on) without serving yet."""
        if self._server is None:
            self._make_servers()
        return self

    def _make_servers(self) -> None:
        server = ThreadingHTTPServer((self._host, self._port), _Handler)
        server.daemon_threads = True
        server.sandbox = self.sandbox  # type: ignore[attr-defined]
        server.verbose = self._verbose  # type: ignore[attr-defined]
        self._server = server
        self.sandbox.base_url = self.base_url
        if self._tls_port is not None:
            context = self.sandbox.ca.server_context(self._tls_hosts)
            tls = TLSServer((self._host, self._tls_port), _Handler, context)
            tls.sandbox = self.sandbox  # type: ignore[attr-defined]
            tls.verbose = self._verbose  # type: ignore[attr-defined]
            self._tls_server = tls
            self.sandbox.tls_port, self.sandbox.tls_hosts = tls.server_address[1], self._tls_hosts

    def _serve_in_background(self, server: ThreadingHTTPServer, name: str) -> None:
        thread = threading.Thread(target=server.serve_forever, name=name, daemon=True)
        thread.start()
        self._threads.append(thread)

    def start(self) -> SandboxGateway:
        """Serve in background threads and return at once."""
        self.bind()
        assert self._server is not None
        self._serve_in_background(self._server, "sandbox-gateway")
        if self._tls_server is not None:
            self._serve_in_background(self._tls_server, "sandbox-gateway-tls")
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the TLS listener in a background thread) until interrupted."""
        self.bind()
        assert self._server is not None
        if self._tls_server is not None:
            self._serve_in_background(self._tls_server, "sandbox-gateway-tls")
        try:
            self._server.serve_forever()
        finally:
            self._close_servers()
            self.sandbox.close()

    def _close_servers(self) -> None:
        for server in (self._tls_server, self._server):
            if server is not None:
                server.server_close()

    def stop(self) -> None:
        for server in (self._server, self._tls_server):
            if server is not None:
                server.shutdown()
        self._close_servers()
        for thread in self._threads:
            thread.join(timeout=5)
        self.sandbox.close()

    def __enter__(self) -> SandboxGateway:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _url(scheme: str, server: ThreadingHTTPServer) -> str:
    host, port = server.server_address[:2]
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host  # noqa: S104 - only a display name
    if ":" in shown:
        shown = f"[{shown}]"
    return f"{scheme}://{shown}:{port}"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # The headers and the body go out in two writes on a kept-alive connection: with Nagle on, the
    # body waits for the client's (delayed) ACK of the headers, milliseconds per answer.
    disable_nagle_algorithm = True
    server_version = "paycore-sandbox/1"

    def log_message(self, format: str, *args: Any) -> None:
        if getattr(self.server, "verbose", False):
            super().log_message(format, *args)

    def do_GET(self) -> None:
        self._handle()

    def do_POST(self) -> None:
        self._handle()

    def do_PUT(self) -> None:
        self._handle()

    def do_PATCH(self) -> None:
        self._handle()

    def do_DELETE(self) -> None:
        self._handle()

    # ------------------------------------------------------------------------------------
    def _read_body(self) -> bytes:
        if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                        pass
                    break
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
            return b"".join(chunks)
        length = int(self.headers.get("Content-Length") or 0)
        if length > _MAX_BODY:
            raise SandboxError(413, "TOO_LARGE", "request body too large")
        return self.rfile.read(length) if length else b""

    @property
    def _tls(self) -> bool:
        return isinstance(self.connection, ssl.SSLSocket)

    def _handle(self) -> None:
        sandbox: Sandbox = self.server.sandbox  # type: ignore[attr-defined]
        host = self.headers.get("Host")
        sandbox.bind_base_url(f"http://{host}" if host and not self._tls else None)
        try:
            body = self._read_body()
            split = urlsplit(self.path)
            path, query = split.path, split.query
            if self._tls and not path.startswith(TLS_PATHS):
                raise SandboxError(404, "NOT_FOUND", f"the TLS listener serves only {', '.join(TLS_PATHS)}")
            if path == "/_sandbox" or path.startswith("/_sandbox/"):
                headers = dict(self.headers.items())
                resp = _control(sandbox, self.command, path[len("/_sandbox") :], query, body, headers)
            else:
                resp = self._channel(sandbox, path, query, body)
        except Disconnect:
            self.close_connection = True
            return
        except SandboxError as exc:
            resp = exc.to_response()
        except Exception as exc:
            traceback.print_exc(file=sys.stderr)
            message = f"{type(exc).__name__}: {exc}"
            resp = SandboxResponse.json(500, {"code": "SANDBOX_ERROR", "message": message})
        finally:
            sandbox.bind_base_url(None)
        self._write(resp)

    def _channel(self, sandbox: Sandbox, path: str, query: str, body: bytes) -> SandboxResponse:
        _, _, rest = path.partition("/")
        channel, slash, tail = rest.partition("/")
        if channel not in SIMULATORS:
            raise SandboxError(404, "UNKNOWN_CHANNEL", f"no channel prefix {channel!r}; known: {sorted(SIMULATORS)}")
        host, scheme = self.headers.get("Host"), "https" if self._tls else "http"
        req = SandboxRequest(
            method=self.command.upper(),
            path=slash + tail if slash else "/",
            query=query,
            headers=CaseInsensitiveDict(dict(self.headers.items())),
            body=body,
            remote_addr=self.client_address[0],
            channel=channel,
            raw_path=path,
            base_url=f"{scheme}://{host}/{channel}" if host else f"{sandbox.base_url}/{channel}",
            tls=self._tls,
            client_certificate=self.connection.getpeercert(binary_form=True) if self._tls else None,
        )
        return sandbox.dispatch_channel(req)

    def _write(self, resp: SandboxResponse) -> None:
        try:
            self.send_response(resp.status)
            headers = dict(resp.headers)
            if not any(k.lower() == "content-length" for k in headers):
                headers["Content-Length"] = str(len(resp.body))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD" and resp.body:
                self.wfile.write(resp.body)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


# --------------------------------------------------------------------------------------------
# Control API
# --------------------------------------------------------------------------------------------
def _json_body(body: bytes) -> dict[str, Any]:
    if not body.strip():
        return {}
    try:
        data = json.loads(body)
    except ValueError:
        raise SandboxError(400, "BAD_JSON", "control API bodies are JSON objects") from None
    if not isinstance(data, dict):
        raise SandboxError(400, "BAD_JSON", "control API bodies are JSON objects")
    return data


def _control(
    sandbox: Sandbox, method: str, path: str, query: str, body: bytes, headers: dict[str, str]
) -> SandboxResponse:
    parts = [unquote(p) for p in path.strip("/").split("/") if p]
    ok = SandboxResponse.json
    if parts[:1] == ["merchants"]:
        return _merchants(sandbox, method, parts[1:], path, query, body, headers)
    match (method, parts):
        case ("GET", []):
            from sandbox.page import render_page

            return SandboxResponse.text(200, render_page(sandbox), "text/html; charset=utf-8")
        case ("GET", ["health"]):
            return ok(200, {"status": "ok", "time_factor": sandbox.time_factor})
        case ("POST", ["accounts"]):
            data = _json_body(body)
            channel = data.pop("channel", None)
            if not isinstance(channel, str):
                raise SandboxError(400, "BAD_REQUEST", "channel is required")
            notify_url = data.pop("notify_url", None)
            return ok(201, sandbox.create_account(channel, notify_url=notify_url, options=data))
        case ("POST", [channel, "trades", payment_no, action]):
            result = sandbox.payer_action(channel, payment_no, action, _json_body(body))
            return ok(200, result)
        case ("GET", ["trades"]):
            return ok(200, sandbox.snapshot())
        case ("GET", ["notifications"]):
            with sandbox.lock:
                return ok(200, list(sandbox.notification_log))
        case ("GET", ["notifications", "states"]):
            return ok(200, sandbox.notification_states())
        case ("POST", ["notifications", "cancel"]):
            return ok(200, {"cancelled": sandbox.cancel_notifications()})
        case ("POST", ["notifications", "flush"]):
            return ok(200, {"released": sandbox.flush_held()})
        case ("POST", ["wait_idle"]):
            timeout = float(_json_body(body).get("timeout", 5))
            return ok(200, {"idle": sandbox.wait_idle(min(timeout, 60.0))})
        case ("GET", ["faults"]):
            with sandbox.lock:
                return ok(200, [f.to_json() for f in sandbox.faults])
        case ("POST", ["faults"]):
            return ok(201, sandbox.add_fault(_json_body(body)).to_json())
        case ("DELETE", ["faults"]):
            sandbox.clear_faults()
            return SandboxResponse.empty(204)
        case ("GET", ["clock"]):
            return ok(200, sandbox.clock())
        case ("POST", ["clock"]):
            data = _json_body(body)
            if data.get("reset"):
                sandbox.reset_clock()
            elif "advance_seconds" in data:
                seconds = data["advance_seconds"]
                if isinstance(seconds, bool) or not isinstance(seconds, int | float) or seconds < 0:
                    raise SandboxError(400, "BAD_REQUEST", "advance_seconds must be a non-negative number")
                sandbox.advance_clock(float(seconds))
            else:
                raise SandboxError(400, "BAD_REQUEST", 'send {"advance_seconds": N} or {"reset": true}')
            return ok(200, sandbox.clock())
        case ("POST", ["reset"]):
            sandbox.reset()
            return ok(200, {"reset": True})
    raise SandboxError(404, "NOT_FOUND", f"no control endpoint {method} /_sandbox{path}")


def _merchants(
    sandbox: Sandbox, method: str, parts: list[str], path: str, query: str, body: bytes, headers: dict[str, str]
) -> SandboxResponse:
    """Merchant webhook receivers (see sandbox/merchants.py)."""
    ok = SandboxResponse.json
    match (method, parts):
        case ("POST", []):
            return ok(201, sandbox.create_merchant().to_json())
        case (_, [merchant_id, "notify", *_]):  # the merchant's server: any method, any sub-path
            return sandbox.merchant(merchant_id).receive(sandbox, method, "/_sandbox" + path, query, headers, body)
        case ("GET", [merchant_id]):
            return ok(200, sandbox.merchant(merchant_id).to_json())
        case ("GET", [merchant_id, "requests"]):
            return ok(200, sandbox.merchant(merchant_id).requests_json())
        case ("DELETE", [merchant_id, "requests"]):
            sandbox.merchant(merchant_id).clear_requests()
            return SandboxResponse.empty(204)
        case ("POST", [merchant_id, "behaviours"]):
            return ok(201, sandbox.merchant(merchant_id).add_behaviour(_json_body(body)).to_json())
        case ("DELETE", [merchant_id, "behaviours"]):
            sandbox.merchant(merchant_id).clear_behaviours()
            return SandboxResponse.empty(204)
        case ("POST", [merchant_id, "wait"]):
            data = _json_body(body)
            receiver = sandbox.merchant(merchant_id)
            count, timeout = int(data.get("count", 1)), min(float(data.get("timeout", 5)), 60.0)
            return ok(200, {"received": receiver.wait_for(count, timeout), "count": len(receiver.requests)})
    raise SandboxError(404, "NOT_FOUND", f"no control endpoint {method} /_sandbox/merchants/{'/'.join(parts)}")
