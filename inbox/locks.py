"""The one lock of the inbox: a notification row, while its outcome is recorded."""

from inbox.models import InboundNotification


def notification_lock(notification_id: int) -> InboundNotification:
    return InboundNotification.objects.select_for_update(of=("self",), no_key=True).get(pk=notification_id)
