"""The one lock of the inbox: a notification row, while its outcome is recorded."""

from inbox.models import InboundNotification


def notification_lock(notification_id: int) -> InboundNotification:
    """Lock the row (not its payment or refund); the raw request is not loaded, nor ever saved."""
    return (
        InboundNotification.objects.select_for_update(of=("self",), no_key=True)
        .defer("headers", "body", "parsed")
        .get(pk=notification_id)
    )
