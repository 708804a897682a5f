"""Channel notification endpoints: verify -> store with the result -> acknowledge in the channel's
format. Applying happens in a task published after the answer; nothing here changes a payment."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from inbox.services import client_address, notification_receive


@csrf_exempt
@require_POST
def notify(request: HttpRequest, channel: str, account_id: int) -> HttpResponse:
    _, ack = notification_receive(
        channel=channel,
        account_id=account_id,
        headers=dict(request.headers),
        body=request.body,
        remote_addr=client_address(request.META.get("REMOTE_ADDR"), request.META.get("HTTP_X_FORWARDED_FOR")),
    )
    return HttpResponse(ack.body, status=ack.status, content_type=ack.content_type)
