"""paycore.negotiation answers exactly as DRF's negotiation does, for every Accept header."""

from __future__ import annotations

import pytest
from django.http import Http404
from rest_framework.exceptions import NotAcceptable
from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer, BrowsableAPIRenderer, JSONRenderer
from rest_framework.request import Request
from rest_framework.test import APIRequestFactory

from paycore.negotiation import ContentNegotiation

ACCEPTS = [
    None,
    "*/*",
    "application/json",
    "application/json; indent=4",
    "text/html",
    "text/html,application/json;q=0.9",
    "application/*",
    "image/png",
]


def _answer(
    negotiation: DefaultContentNegotiation, accept: str | None, path: str, renderers: list[BaseRenderer]
) -> object:
    headers = {} if accept is None else {"HTTP_ACCEPT": accept}
    request = Request(APIRequestFactory().get(path, **headers))
    try:
        renderer, media_type = negotiation.select_renderer(request, renderers)
    except NotAcceptable:
        return "406"
    except Http404:  # a ?format= no renderer offers
        return "404"
    return type(renderer), media_type


@pytest.mark.parametrize("accept", ACCEPTS)
@pytest.mark.parametrize("path", ["/api/v1/orders", "/api/v1/orders?format=api"])
@pytest.mark.parametrize("renderers", [[JSONRenderer()], [BrowsableAPIRenderer(), JSONRenderer()]])
def test_the_shortcut_answers_as_the_full_negotiation(
    accept: str | None, path: str, renderers: list[BaseRenderer]
) -> None:
    assert _answer(ContentNegotiation(), accept, path, renderers) == _answer(
        DefaultContentNegotiation(), accept, path, renderers
    )
