"""Channel callbacks: verify in memory, store raw with the result in one INSERT, acknowledge;
apply later as a hint confirmed by query.

Order of work (design.md "Inbound notifications"): the account's adapter verifies the request in
memory (signature, timestamp window, ids, IP allowlist: no I/O); the raw request and the
verification result, rejected ones too, are then committed in one statement before anything is
answered, so nothing is acknowledged that is not stored. A verified notification is acknowledged
at once; the apply task is published after the answer (``inbox.dispatch``) and confirms by an
active query before applying under the payment lock. The inbox sweep retries whatever was
verified but not applied, so a lost task message loses nothing.

Per callback, one INSERT in autocommit: a payment named by its number is found inside it (an
indexed scalar subquery), and the row is skipped when a first verified copy of the same
notification is already there (``ON CONFLICT`` on the partial unique index of first copies, per
account and dedupe key: no EXISTS query); a second INSERT only stores such a duplicate. A refund
(by its attempt's request number) or a payment named only by the channel's trade number costs one
indexed read more. Plain SQL built once from the models' metadata: a single statement resolving
every case inside the INSERT (a CTE) was measured slower, PostgreSQL planning it for longer than
an extra round trip costs. The account itself is read from the database at most every
``INBOX_ACCOUNT_CACHE_SECONDS`` per process.
"""

from __future__ import annotations

import ipaddress
import logging
import time
from collections.abc import Mapping
from functools import cache, lru_cache
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from channels.base import Ack, ChannelAdapter, ChannelError, Notification, NotificationKind
from channels.models import ChannelAccount
from channels.services import adapter_for
from inbox.dispatch import notification_dispatch
from inbox.locks import notification_lock
from inbox.models import InboundNotification
from paycore import statements
from paycore.errors import PaycoreError, failure_reason
from paycore.models import EventSource
from paycore.sweeps import backoff
from paycore.writes import insert_fields, insert_plan
from payments.models import Payment
from payments.services import payment_sync_from_channel
from refunds.models import Refund, RefundAttempt
from refunds.services import refund_sync_from_channel

log = logging.getLogger(__name__)
N = InboundNotification

# What a failed verification may raise; anything else is a bug, stored and answered as a failure.
_UNVERIFIED = (ChannelError, ValueError, KeyError, TypeError)


def notification_receive(
    *, channel: str, account_id: int, headers: Mapping[str, str], body: bytes, remote_addr: str | None
) -> tuple[InboundNotification, Ack]:
    """Verify, store and answer one callback. ``remote_addr`` is the client address as resolved
    by ``client_address`` (the allowlist checks it)."""
    inbound = N(channel=channel[:20], body=body, remote_addr=remote_addr)
    inbound.headers = dict(headers)
    account = _account(account_id, channel)
    if account is None or not account.is_enabled:
        return _store_rejected(inbound, "unknown or disabled channel account"), Ack(status=404)
    inbound.channel_account = account
    adapter = _adapter(account)
    if not _ip_allowed(remote_addr, account.callback_ip_allowlist):
        reason = f"address {remote_addr} is not on the account's allowlist"
        return _store_rejected(inbound, reason), adapter.ack(False, "forbidden")
    try:
        parsed = adapter.parse_notification(headers, body)
    except _UNVERIFIED as exc:
        reason = f"{type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
        return _store_rejected(inbound, reason), adapter.ack(False, "verification failed")
    except Exception as exc:  # a bug must not lose the request: store it, let the channel re-send
        log.exception("verifying %s notification for account %s failed unexpectedly", channel, account_id)
        _store_rejected(inbound, f"verification error {type(exc).__name__}: {exc}")
        return inbound, adapter.ack(False, "verification error")
    _record_verified(inbound, parsed)
    if inbound.outcome == N.Outcome.PENDING:
        notification_dispatch(inbound.pk)
    return inbound, adapter.ack(True)


def client_address(peer: str | None, forwarded_for: str | None) -> str | None:
    """The client address a callback's allowlist checks: the TCP peer, unless the peer is one of
    ``PAYCORE_TRUSTED_PROXIES``; then the right-most ``X-Forwarded-For`` address outside them (the
    last hop a proxy of ours saw; everything left of it is the client's word). None when no valid
    address can be named (a malformed hop), which no allowlist admits."""
    address = _parse_ip(peer or "")
    trusted = _trusted_networks(tuple(settings.PAYCORE_TRUSTED_PROXIES))
    if address is None or not trusted or not forwarded_for or not _within(address, trusted):
        return None if address is None else str(address)
    hops = [hop.strip() for hop in forwarded_for.split(",")]
    for hop in reversed(hops):
        address = _parse_ip(hop)
        if address is None or not _within(address, trusted):
            return None if address is None else str(address)
    return str(address)  # every hop is a proxy of ours: the left-most one is the client


def notification_process(*, notification_id: int) -> InboundNotification:
    """Apply a verified notification: confirm by query, then apply under the payment lock.
    Failures are recorded on the row; past its retry budget the row is retired to ops."""
    inbound = N.objects.defer("headers", "body", "parsed").get(pk=notification_id)
    if inbound.verification != N.Verification.VERIFIED or inbound.outcome not in (N.Outcome.PENDING, N.Outcome.FAILED):
        return inbound
    if inbound.attempts >= settings.INBOX_MAX_ATTEMPTS:
        return _retire(notification_id)
    try:
        outcome, error = _apply(inbound), ""
    except PaycoreError as exc:
        outcome, error = N.Outcome.FAILED, f"{exc.code}: {failure_reason(exc)}"
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


def notification_reverify(*, notification_id: int) -> str:
    """Run the account's verification again on the stored request, decrypted; changes nothing.
    For ops: whether a stored callback is genuine (a timestamp window may have passed since)."""
    inbound = N.objects.select_related("channel_account").get(pk=notification_id)
    account = inbound.channel_account
    if account is None:
        return "no channel account: nothing to verify it against"
    try:
        parsed = adapter_for(account).parse_notification(inbound.headers, inbound.body_bytes)
    except _UNVERIFIED as exc:
        return f"does not verify: {type(exc).__name__}: {getattr(exc, 'message', None) or exc}"
    return f"verifies: {parsed.kind.value} {parsed.event_type} (dedupe key {parsed.dedupe_key})"


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
    inbound.parsed = _summary(parsed)
    account_id = inbound.channel_account_id
    # The common case, a payment named by its number, is resolved inside the INSERT itself.
    by_number = (
        parsed.payment_no if parsed.payment_no and (parsed.refund is None or not parsed.refund.refund_no) else None
    )
    if by_number is None:
        inbound.payment_id, inbound.refund_id = _resolve(account_id, parsed)
    if by_number is None and inbound.payment_id is None and inbound.refund_id is None:
        inbound.outcome = N.Outcome.IGNORED
    else:
        # The safety net: the inbox sweep applies it if the published task never runs.
        inbound.outcome, inbound.next_check_at = N.Outcome.PENDING, timezone.now() + backoff(2)
    if not _insert(inbound, first_copy=True, payment_no=by_number):
        # A copy of a verified notification already stored: kept too, never applied.
        inbound.is_duplicate, inbound.outcome, inbound.next_check_at = True, N.Outcome.DUPLICATE, None
        _insert(inbound, first_copy=False, payment_no=by_number)
        return
    if by_number is not None and inbound.payment_id is None:
        # Its payment number is none of ours: the channel's trade number may be; else nothing.
        found = _lookup("channel_trade_no", parsed.channel_trade_no, account_id) if parsed.channel_trade_no else None
        if found is not None:
            inbound.payment_id = found[0]
            N.objects.filter(pk=inbound.pk).update(payment_id=inbound.payment_id)
        else:
            inbound.outcome, inbound.next_check_at = N.Outcome.IGNORED, None
            N.objects.filter(pk=inbound.pk).update(outcome=inbound.outcome, next_check_at=None)
    if inbound.outcome == N.Outcome.IGNORED:
        log.warning("verified %s notification %s names nothing of ours", inbound.channel, inbound.pk)


def _resolve(account_id: int | None, parsed: Notification) -> tuple[int | None, int | None]:
    """(payment id, refund id) named by the notification, by indexed lookups within the account:
    a refund by the request number of the attempt the channel was sent (its payment with it);
    else a payment by its number, else by the channel's trade number."""
    lookups: list[tuple[str, str]] = []
    if parsed.refund is not None and parsed.refund.refund_no:
        lookups.append(("refund", parsed.refund.refund_no))
    if parsed.payment_no:
        lookups.append(("payment_no", parsed.payment_no))
    if parsed.channel_trade_no:
        lookups.append(("channel_trade_no", parsed.channel_trade_no))
    for by, value in lookups:
        found = _lookup(by, value, account_id)
        if found is not None:
            return found
    return None, None


def _lookup(by: str, value: str, account_id: int | None) -> tuple[int | None, int | None] | None:
    with connection.cursor() as cursor:
        statements.execute(cursor, _lookup_sql(by), [value, account_id])
        row = cursor.fetchone()
    return None if row is None else (row[0], row[1])


@cache
def _lookup_sql(by: str) -> str:
    q = connection.ops.quote_name
    payment, refund, attempt = (q(m._meta.db_table) for m in (Payment, Refund, RefundAttempt))
    if by == "refund":
        return (
            f"SELECT r.payment_id, r.id FROM {attempt} a JOIN {refund} r ON r.id = a.refund_id "  # noqa: S608
            f"JOIN {payment} p ON p.id = r.payment_id WHERE a.request_no = %s AND p.channel_account_id = %s"
        )
    column = {"payment_no": "payment_no", "channel_trade_no": "channel_trade_no"}[by]
    return f"SELECT id, NULL FROM {payment} WHERE {column} = %s AND channel_account_id = %s"  # noqa: S608


def _insert(inbound: InboundNotification, *, first_copy: bool, payment_no: str | None) -> bool:
    """INSERT the row in one statement; a first copy only unless one is already stored (``ON
    CONFLICT`` on the partial unique index of first verified copies). With ``payment_no`` the
    payment is looked up inside the statement (an indexed scalar subquery). True if inserted."""
    values = []
    for f, prepare in insert_plan(N):
        if f.name == "payment" and payment_no is not None:
            values += [payment_no, inbound.channel_account_id]
        else:
            values.append(prepare(f.pre_save(inbound, True)))
    with connection.cursor() as cursor:
        statements.execute(cursor, _insert_sql(first_copy=first_copy, by_number=payment_no is not None), values)
        row = cursor.fetchone()
    if row is None:
        return False
    inbound.pk, inbound.payment_id = row
    inbound._state.adding, inbound._state.db = False, connection.alias
    return True


@cache
def _insert_sql(*, first_copy: bool, by_number: bool) -> str:
    q = connection.ops.quote_name
    payment = q(Payment._meta.db_table)
    columns = ", ".join(q(f.column) for f in insert_fields(N))
    placeholders = ", ".join(
        f"(SELECT id FROM {payment} WHERE payment_no = %s AND channel_account_id = %s)"  # noqa: S608
        if f.name == "payment" and by_number
        else "%s"
        for f in insert_fields(N)
    )
    on_conflict = (
        # The partial index's own predicate, in the order Django writes it: SQLite matches an
        # upsert to a partial index term by term (PostgreSQL proves the implication either way).
        "ON CONFLICT (channel_account_id, dedupe_key) WHERE NOT is_duplicate AND verification = 'VERIFIED' DO NOTHING"
        if first_copy
        else ""
    )
    # Identifiers come from the models' own metadata; every value is a parameter.
    return (
        f"INSERT INTO {q(N._meta.db_table)} ({columns}) VALUES ({placeholders}) {on_conflict} "  # noqa: S608
        f"RETURNING {q(N._meta.pk.column)}, payment_id"
    )


def _account(account_id: int, channel: str) -> ChannelAccount | None:
    """The enabled or disabled account a callback names, re-read from the database at most every
    ``INBOX_ACCOUNT_CACHE_SECONDS`` in this process (so a change of keys, allowlist or state
    reaches callbacks within that time). Unknown ids are not remembered."""
    ttl = settings.INBOX_ACCOUNT_CACHE_SECONDS
    now = time.monotonic()
    cached = _accounts.get(account_id)
    if cached is not None and now - cached[0] < ttl and cached[1].channel == channel:
        return cached[1]
    account = ChannelAccount.objects.filter(pk=account_id, channel=channel).first()
    if account is not None and ttl > 0:
        _accounts[account_id] = (now, account)
    return account


_accounts: dict[int, tuple[float, ChannelAccount]] = {}


def _adapter(account: ChannelAccount) -> ChannelAdapter:
    """The account's adapter, built once per cached account object: adapters keep no state of
    their own between calls (keys and certificates live in the channels' process caches), and
    building one per callback (config copy, session lookup) cost ~0.1 ms. A re-read account is
    another object, so it gets an adapter of its own values."""
    cached = _adapters.get(account.pk)
    if cached is not None and cached[0] is account:
        return cached[1]
    adapter = adapter_for(account)
    if settings.INBOX_ACCOUNT_CACHE_SECONDS > 0:
        _adapters[account.pk] = (account, adapter)
    return adapter


_adapters: dict[int, tuple[ChannelAccount, ChannelAdapter]] = {}


def _summary(parsed: Notification) -> dict[str, Any]:
    """What was verified, for ops and evidence, without the payload's payer data (the encrypted
    raw body keeps everything and can be verified again)."""
    summary: dict[str, Any] = {"payment_no": parsed.payment_no, "channel_trade_no": parsed.channel_trade_no}
    if parsed.trade is not None:
        summary["trade"] = {
            "status": parsed.trade.status.value,
            "paid_amount": parsed.trade.paid_amount,
            "currency": parsed.trade.currency,
        }
    if parsed.refund is not None:
        summary["refund"] = {
            "refund_no": parsed.refund.refund_no,
            "status": parsed.refund.status.value,
            "amount": parsed.refund.amount,
            "channel_refund_no": parsed.refund.channel_refund_no,
        }
    return summary


def _store_rejected(inbound: InboundNotification, reason: str) -> InboundNotification:
    inbound.verification = N.Verification.REJECTED
    inbound.outcome = N.Outcome.REJECTED
    inbound.reject_reason = reason[:300]
    inbound.save(force_insert=True)
    log.warning("rejected %s notification %s: %s", inbound.channel, inbound.pk, inbound.reject_reason)
    return inbound


def _ip_allowed(remote_addr: str | None, allowlist: list[str]) -> bool:
    if not allowlist:
        return True
    if not remote_addr:
        return False
    address = ipaddress.ip_address(remote_addr)
    return any(address in ipaddress.ip_network(entry, strict=False) for entry in allowlist)


IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def _parse_ip(text: str) -> IPAddress | None:
    """An address as proxies write it: bare, ``v4:port`` or ``[v6]:port``; None if malformed."""
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text)
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


@lru_cache(maxsize=8)
def _trusted_networks(spec: tuple[str, ...]) -> tuple[IPNetwork, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in spec if entry.strip())


def _within(address: IPAddress, networks: tuple[IPNetwork, ...]) -> bool:
    return any(address in network for network in networks)
