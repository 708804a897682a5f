"""Requests no view should ever see: refused before Django's URL resolver, DRF or the database
touch them, in the API's JSON error shape.

PostgreSQL refuses a NUL character in any text value, so a ``%00`` in a path or query string
that reaches a lookup turns into a server error; a body over the size limit makes Django raise
deep inside ``request.body``. Both are the client's mistake and answered as such (400 / 413).
"""

from __future__ import annotations

from collections.abc import Callable
from urllib.parse import unquote_to_bytes

from django.conf import settings
from django.http import HttpRequest, HttpResponse, JsonResponse

from paycore.errors import error_body


class RequestGuardMiddleware:
    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        problem = _problem(request)
        if problem is not None:
            status, code, message = problem
            return JsonResponse(error_body(code, message), status=status)
        return self.get_response(request)


def _problem(request: HttpRequest) -> tuple[int, str, str] | None:
    # WSGI hands PATH_INFO over percent-decoded and QUERY_STRING raw, both as latin-1 text.
    path = _raw_bytes(request.META.get("PATH_INFO", ""))
    query = unquote_to_bytes(_raw_bytes(request.META.get("QUERY_STRING", "")).replace(b"+", b" "))
    for part, raw in (("path", path), ("query string", query)):
        if b"\x00" in raw:
            return 400, "malformed_request", f"the {part} contains a NUL character"
        try:
            raw.decode("utf-8")
        except UnicodeDecodeError:
            return 400, "malformed_request", f"the {part} is not valid UTF-8"
    length = request.META.get("CONTENT_LENGTH") or "0"
    try:
        size = int(length)
    except ValueError:
        return 400, "malformed_request", "Content-Length is not a number"
    if size > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        return 413, "request_too_large", f"the body may be at most {settings.DATA_UPLOAD_MAX_MEMORY_SIZE} bytes"
    return None


def _raw_bytes(text: str) -> bytes:
    try:
        return text.encode("latin-1")
    except UnicodeEncodeError:  # not what a WSGI server sends, but never a reason for a 500
        return text.encode("utf-8", "surrogateescape")
