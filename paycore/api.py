"""What every API view shares: one error shape, pagination, Idempotency-Key handling."""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any

from django.core.exceptions import RequestDataTooBig
from django.db import IntegrityError, connection, transaction
from django.http import Http404, JsonResponse
from drf_spectacular.utils import OpenApiParameter
from rest_framework import exceptions, serializers
from rest_framework.pagination import PageNumberPagination
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView
from rest_framework.views import exception_handler as drf_exception_handler

from paycore.errors import IdempotencyKeyRequired, InvalidRequest, PaycoreError, error_body
from paycore.idempotency import (
    KeyTaken,
    Replay,
    idempotency_answered,
    idempotency_begin,
    idempotency_complete,
    idempotency_finish,
    idempotency_key_taken,
    idempotency_request,
)
from paycore.models import ApiClient, IdempotencyRecord

log = logging.getLogger(__name__)

# DRF exception class -> stable code, used unless the raiser chose a code of its own.
_DRF_CODES: dict[type[exceptions.APIException], str] = {
    exceptions.ParseError: "malformed_request",
    exceptions.AuthenticationFailed: "invalid_api_key",
    exceptions.NotAuthenticated: "unauthenticated",
    exceptions.PermissionDenied: "forbidden",
    exceptions.NotFound: "not_found",
    exceptions.MethodNotAllowed: "method_not_allowed",
    exceptions.NotAcceptable: "not_acceptable",
    exceptions.UnsupportedMediaType: "unsupported_media_type",
    exceptions.Throttled: "rate_limited",
}


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    if isinstance(exc, Replay):
        return Response(exc.body, status=exc.status, headers={"Idempotent-Replayed": "true"})
    if isinstance(exc, PaycoreError):
        return Response(error_body(exc.code, exc.message, exc.extra), status=exc.http_status)
    if isinstance(exc, RequestDataTooBig):
        return Response(error_body("request_too_large", "the body is too large"), status=413)
    if isinstance(exc, Http404):
        exc = exceptions.NotFound()
    if isinstance(exc, exceptions.ValidationError):
        return Response(
            error_body(
                "invalid_request", "the request is not valid", {"fields": _field_errors(exc.get_full_details())}
            ),
            status=400,
        )
    response = drf_exception_handler(exc, context)
    if response is None:
        return None
    detail = getattr(exc, "detail", "")
    code: str | None = getattr(detail, "code", None)
    if code is None or code == getattr(exc, "default_code", None):  # DRF's generic code: use our stable one
        code = next((c for cls, c in _DRF_CODES.items() if type(exc) is cls), "error")
    response.data = error_body(code, str(detail) or "error")
    return response


def _field_errors(details: Any) -> Any:
    """DRF's nested {"field": [{"message", "code"}]} kept as is, with a list-of-errors at the top
    level (a non-object body) folded under "non_field_errors"."""
    if isinstance(details, list) and details and isinstance(details[0], dict) and "code" in details[0]:
        return {"non_field_errors": details}
    return details


class Pagination(PageNumberPagination):
    page_size_query_param = "page_size"
    max_page_size = 200

    def get_page_size(self, request: Request) -> int | None:
        """A page size that is not a whole number from 1 to the maximum is refused, not ignored."""
        raw = request.query_params.get(self.page_size_query_param)
        if raw is None:
            return self.page_size
        if not raw.isdigit() or not 1 <= int(raw) <= self.max_page_size:
            raise InvalidRequest.field(
                self.page_size_query_param, f"must be a whole number from 1 to {self.max_page_size}"
            )
        return int(raw)


class ApiView(APIView):
    """Base of every v1 view: honours ``Idempotency-Key`` on POST."""

    scopes: dict[str, str] = {}
    # Views that create something demand an Idempotency-Key on POST: a client that retries after
    # a timeout must never create twice. Other POSTs honour the key when sent.
    creates = False
    # A POST that is database work only (no call to a channel) writes its Idempotency-Key's row
    # once, completed, with the work: the work and the stored answer commit together or not at
    # all, so nothing is ever left in progress to go stale. On PostgreSQL the view writes both in
    # one statement (``answer``), atomic without a transaction; when that statement finds the key
    # taken, or elsewhere, the request runs again in one transaction whose key row is written at
    # the end (``idempotency_complete``), where a concurrent retry is rolled back when it finds the
    # key taken and replays the answer. A POST that calls a channel must not hold a transaction
    # across the call.
    atomic_post = False
    _idempotency = None
    _answer_with_work = False

    def dispatch(self, request: Any, *args: Any, **kwargs: Any) -> Any:
        if not (self.atomic_post and request.method == "POST"):
            return super().dispatch(request, *args, **kwargs)
        try:
            if connection.vendor == "postgresql":
                try:
                    with _savepoint_if_nested():
                        self._answer_with_work = True
                        return super().dispatch(request, *args, **kwargs)
                except IntegrityError as exc:
                    if not idempotency_key_taken(exc):
                        raise
                finally:
                    self._answer_with_work = False
            with transaction.atomic():
                return super().dispatch(request, *args, **kwargs)
        except KeyTaken as taken:  # the work is rolled back: answer what the key holds
            self.response = self.finalize_response(self.request, self.handle_exception(taken.answer), *args, **kwargs)
            return self.response

    def answer(self, status_code: int, body: Callable[[], Any]) -> Answer:
        """The answer of an ``atomic_post`` view that creates something, for its service to write
        with the work (``Answer.rows``) when this request's key goes in the work's statement."""
        record = self._idempotency if self._answer_with_work else None
        return Answer(record, status_code, body)

    @property
    def client(self) -> ApiClient:
        client = self.request.auth
        assert isinstance(client, ApiClient)  # HasScope let nothing else through
        return client

    def initial(self, request: Request, *args: Any, **kwargs: Any) -> None:
        body = request.body  # read before DRF parses, so the exact bytes are fingerprinted
        super().initial(request, *args, **kwargs)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is None and self.creates:
            raise IdempotencyKeyRequired(
                "send an Idempotency-Key header with every request that creates something",
                extra={"header": "Idempotency-Key"},
            )
        if request.method == "POST" and key is not None:
            begin = idempotency_request if self.atomic_post else idempotency_begin
            self._idempotency = begin(client=self.client, key=key, method=request.method, path=request.path, body=body)

    def finalize_response(self, request: Request, response: Response, *args: Any, **kwargs: Any) -> Response:
        response = super().finalize_response(request, response, *args, **kwargs)
        if self._idempotency is not None:
            record, self._idempotency = self._idempotency, None
            if record.pk is None or not self.atomic_post:  # else it was written with the work
                finish = idempotency_complete if self.atomic_post else idempotency_finish
                finish(record, status=response.status_code, body=getattr(response, "data", None))
        return response


class Answer:
    """A created resource's answer, to be stored with its Idempotency-Key and sent. The body is
    built once, when first asked for: by ``rows``, which the service creating the resource calls
    once the resource's own values (its timestamps) are set, or by ``response``."""

    def __init__(self, record: IdempotencyRecord | None, status_code: int, body: Callable[[], Any]) -> None:
        self._record, self._status, self._make_body = record, status_code, body
        self._body: Any = None

    def rows(self) -> list[IdempotencyRecord]:
        """The key's row, completed with this answer, to write with the work (none without it)."""
        if self._record is None:
            return []
        idempotency_answered(self._record, status=self._status, body=self.body)
        return [self._record]

    @property
    def body(self) -> Any:
        if self._body is None:
            self._body = self._make_body()
        return self._body

    def response(self) -> Response:
        return Response(self.body, status=self._status)


def _savepoint_if_nested() -> AbstractContextManager[Any]:
    """A statement that may fail inside the caller's transaction (a test's) needs a savepoint to
    fail alone; in autocommit it fails alone anyway, and a savepoint would cost a transaction."""
    return transaction.atomic() if connection.in_atomic_block else nullcontext()


def validated_query(serializer_class: type[serializers.Serializer], request: Request) -> dict[str, Any]:
    """The query string, checked like a body: an unknown status, an over-long filter or a
    parameter the endpoint does not know (a typo would otherwise silently widen a list) is a 400."""
    known = set(serializer_class().fields) | {Pagination.page_query_param, Pagination.page_size_query_param}
    unknown = sorted(set(request.query_params) - known)
    if unknown:
        raise InvalidRequest(
            "unknown query parameters",
            extra={"fields": {k: [{"message": "unknown", "code": "unknown"}] for k in unknown}},
        )
    params = {k: v for k, v in request.query_params.items() if k in serializer_class().fields}
    return validated(serializer_class, params)


def validated(serializer_class: type[serializers.Serializer], data: Any) -> dict[str, Any]:
    serializer = serializer_class(data=data)
    serializer.is_valid(raise_exception=True)
    return serializer.validated_data


def api_bad_request(request: Any, exception: Exception | None = None) -> JsonResponse:
    """Django's own refusals (a disallowed Host, a body over the limit read outside a view) in
    the API's error shape instead of an HTML page."""
    if isinstance(exception, RequestDataTooBig):
        return JsonResponse(error_body("request_too_large", "the body is too large"), status=413)
    return JsonResponse(error_body("malformed_request", "the request is malformed"), status=400)


def api_forbidden(request: Any, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("forbidden", "forbidden"), status=403)


def api_not_found(request: Any, exception: Exception | None = None) -> JsonResponse:
    return JsonResponse(error_body("not_found", "no such endpoint"), status=404)


def api_server_error(request: Any) -> JsonResponse:
    return JsonResponse(error_body("internal_error", "an unexpected error occurred"), status=500)


IDEMPOTENCY_KEY_HEADER = OpenApiParameter(
    "Idempotency-Key",
    location=OpenApiParameter.HEADER,
    required=True,
    description="A unique key per logical request (1-255 printable characters). A retry with the same key "
    "and body replays the first answer; the same key with another body answers 409.",
)
