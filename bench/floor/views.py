from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from bench.floor.models import FloorRequest


@csrf_exempt
def floor(request: HttpRequest, **_: object) -> HttpResponse:
    """INSERT the body, commit (autocommit), 200: whatever the method and path."""
    FloorRequest.objects.create(body=request.body)
    return HttpResponse(b"", status=200)
