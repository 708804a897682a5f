"""The API root: a map of the v1 endpoints, open without a key so a newcomer can find the docs."""

from django.http import HttpRequest, JsonResponse
from django.urls import reverse


def api_root(request: HttpRequest) -> JsonResponse:
    return JsonResponse(
        {
            "name": "paycore",
            "version": "v1",
            "docs": request.build_absolute_uri(reverse("v1:docs")),
            "schema": request.build_absolute_uri(reverse("v1:schema")),
            "authentication": "Authorization: Bearer <api key>",
        }
    )
