"""Channel callbacks: store raw, verify, acknowledge; apply later as a hint confirmed by query.

Order of work (design.md "Inbound notifications"): the raw request is committed before anything
is trusted; verification happens outside any transaction; a verified notification is committed
to the inbox and acknowledged at once; a task then confirms it by an active query and applies
the result under the payment lock. The inbox sweep retries whatever was verified but not applied.
"""

from __future__ import annotations

import ipaddress
import logging
from collections.abc import Mapping

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.base import Ack, ChannelError, Notification, NotificationKind
from channels.models import ChannelAccount
from channels.services import adapter_for
from inbox.locks import notification_lock
from inbox.models import InboundNotification
from paycore.errors import PaycoreError
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.sweeps import backoff
from payments.models import Payment
from payments.services import payment_sync_from_channel
from refunds.models import Refund
from refunds.services import refund_sync_from_channel

log = logging.getLogger(__name__)
N = InboundNotification


def notification_receive(
    *, channel: str, account_id: int, headers: Mapping[str, str], body: bytes, remote_addr: str | None
) -> tuple[InboundNotification, Ack]:
    with transaction.atomic(durable=True):
        inbound = N.objects.create(channel=channel, headers=dict(headers), body=body, remote_addr=remote_addr)
    account = ChannelAccount.objects.filter(pk=account_id, channel=channel).first()
    if account is None or not account.is_enabled:
        return _reject(inbound, "unknown or disabled channel account"), Ack(status=404)
    inbound.channel_account = account
    adapter = adapter_for(account)
    if not _ip_allowed(remote_addr, account.callback_ip_allowlist):
        reason = f"address {remote_addr} is not on the account's allowlist"
        return _reject(inbound, reason), adapter.ack(False, "forbidden")
    try:
        parsed = adapter.parse_notification(headers, body)
    except (ChannelError, ValueError, KeyError, TypeError) as exc:
        reason = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        return _reject(inbound, reason[:300]), adapter.ack(False, "verification failed")
    with transaction.atomic(durable=True):
        _record_verified(inbound, parsed)
    if inbound.outcome == N.Outcome.PENDING:
        from inbox.tasks import notification_process as notification_process_task

        transaction.on_commit(lambda: notification_process_task.delay(inbound.pk), robust=True)
    return inbound, adapter.ack(True)


def notification_process(*, notification_id: int) -> InboundNotification:
    """Apply a verified notification: confirm by query, then apply under the payment lock.
    Failures are recorded on the row; past its retry budget the row is retired to ops."""
    inbound = N.objects.select_related("payment", "refund").get(pk=notification_id)
    if inbound.verification != N.Verification.VERIFIED or inbound.outcome not in (N.Outcome.PENDING, N.Outcome.FAILED):
        return inbound
    if inbound.attempts >= settings.INBOX_MAX_ATTEMPTS:
        return _retire(notification_id)
    try:
        outcome, error = _apply(inbound), ""
    except PaycoreError as exc:
        outcome, error = N.Outcome.FAILED, f"{exc.code}: {exc.message}"
    with transaction.atomic(durable=True):
        inbound = notification_lock(notification_id)
        inbound.outcome, inbound.last_error = outcome, error
        inbound.attempts += 1
        inbound.processed_at = timezone.now()
        inbound.next_check_at = timezone.now() + backoff(inbound.attempts) if outcome == N.Outcome.FAILED else None
        inbound.save(update_fields=["outcome", "last_error", "attempts", "processed_at", "next_check_at"])
    return inbound


@transaction.atomic(durable=True)
def _retire(notification_id: int) -> InboundNotification:
    inbound = notification_lock(notification_id)
    if inbound.outcome in (N.Outcome.PENDING, N.Outcome.FAILED):
        inbound.outcome, inbound.next_check_at = N.Outcome.NEEDS_ATTENTION, None
        inbound.save(update_fields=["outcome", "next_check_at"])
        log.warning("notification %s retired to ops after %s attempts", inbound.pk, inbound.attempts)
    return inbound


def notification_reprocess(*, notification_id: int) -> InboundNotification:
    """Ops give a retired (or failed) notification another try, with a fresh budget."""
    with transaction.atomic(durable=True):
        inbound = notification_lock(notification_id)
        if inbound.verification == N.Verification.VERIFIED and inbound.outcome in (
            N.Outcome.FAILED,
            N.Outcome.NEEDS_ATTENTION,
        ):
            inbound.outcome, inbound.attempts, inbound.next_check_at = N.Outcome.PENDING, 0, timezone.now()
            inbound.save(update_fields=["outcome", "attempts", "next_check_at"])
    return notification_process(notification_id=notification_id)


def _apply(inbound: InboundNotification) -> str:
    evidence = {"notification_id": inbound.pk, "event_type": inbound.event_type}
    if inbound.kind == NotificationKind.PAYMENT and inbound.payment_id:
        payment_sync_from_channel(payment_id=inbound.payment_id, source=EventSource.CHANNEL_NOTIFY, evidence=evidence)
        return N.Outcome.APPLIED
    if inbound.kind == NotificationKind.REFUND and inbound.refund_id:
        refund_sync_from_channel(refund_id=inbound.refund_id, source=EventSource.CHANNEL_NOTIFY)
        return N.Outcome.APPLIED
    return N.Outcome.IGNORED


def _record_verified(inbound: InboundNotification, parsed: Notification) -> None:
    inbound.verification = N.Verification.VERIFIED
    inbound.kind, inbound.event_type = parsed.kind.value, parsed.event_type[:64]
    inbound.dedupe_key = parsed.dedupe_key[:200]
    inbound.parsed = jsonable(
        {
            "payment_no": parsed.payment_no,
            "channel_trade_no": parsed.channel_trade_no,
            "trade": parsed.trade,
            "refund": parsed.refund,
        }
    )
    payments = Payment.objects.filter(channel_account=inbound.channel_account)
    if parsed.payment_no:
        inbound.payment = payments.filter(payment_no=parsed.payment_no).first()
    if inbound.payment is None and parsed.channel_trade_no:
        inbound.payment = payments.filter(channel_trade_no=parsed.channel_trade_no).first()
    if parsed.refund is not None:
        # Channels name a refund by the request number of the attempt they were sent.
        inbound.refund = Refund.objects.filter(
            attempts__request_no=parsed.refund.refund_no, payment__channel_account=inbound.channel_account
        ).first()
    already = (
        N.objects.filter(
            channel=inbound.channel,
            dedupe_key=inbound.dedupe_key,
            verification=N.Verification.VERIFIED,
            outcome=N.Outcome.APPLIED,
        )
        .exclude(pk=inbound.pk)
        .exists()
    )
    if already:
        inbound.outcome = N.Outcome.DUPLICATE
    elif inbound.payment is None and inbound.refund is None:
        inbound.outcome = N.Outcome.IGNORED
        log.warning("verified %s notification %s names nothing of ours", inbound.channel, inbound.pk)
    else:
        # The safety net: the inbox sweep applies it if the task after commit never runs.
        inbound.next_check_at = timezone.now() + backoff(2)
    inbound.save()


def _reject(inbound: InboundNotification, reason: str) -> InboundNotification:
    inbound.verification = N.Verification.REJECTED
    inbound.outcome = N.Outcome.REJECTED
    inbound.reject_reason = reason
    inbound.save(update_fields=["channel_account", "verification", "outcome", "reject_reason"])
    log.warning("rejected %s notification %s: %s", inbound.channel, inbound.pk, reason)
    return inbound


def _ip_allowed(remote_addr: str | None, allowlist: list[str]) -> bool:
    if not allowlist:
        return True
    if not remote_addr:
        return False
    address = ipaddress.ip_address(remote_addr)
    return any(address in ipaddress.ip_network(entry, strict=False) for entry in allowlist)
