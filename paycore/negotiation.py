"""Content negotiation with a shortcut for the Accept headers API clients send.

Every API request runs DRF's negotiation, which parses the Accept header into media types and
matches them against the view's renderers: measurable CPU on the hot paths, for an answer that
is the same every time for a missing Accept, ``*/*`` or the first renderer's own media type.
Those three are answered directly, exactly as the full negotiation would answer them; anything
else (``?format=``, quality values, other types) goes through it unchanged.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from rest_framework.negotiation import DefaultContentNegotiation
from rest_framework.renderers import BaseRenderer
from rest_framework.request import Request


class ContentNegotiation(DefaultContentNegotiation):
    def select_renderer(
        self, request: Request, renderers: Iterable[BaseRenderer], format_suffix: str | None = None
    ) -> tuple[BaseRenderer, str] | Any:
        renderers = list(renderers)
        accept = request.META.get("HTTP_ACCEPT", "*/*")
        if renderers and not format_suffix and self.settings.URL_FORMAT_OVERRIDE not in request.query_params:
            first = renderers[0]
            if accept == "*/*" or accept == first.media_type:
                return first, first.media_type
        return super().select_renderer(request, renderers, format_suffix)
