"""Payment code at a shop counter: the cashier scans the payer's code, the channel answers at
once, asks the payer for a password, or does not know. The rule of this trade: never leave money
taken and unrecorded.

- A success is SUCCEEDED; a definite failure (expired code, no balance) FAILED; a password wait
  and every unknown answer (system or bank error, timeout, 5xx, unverifiable reply) USER_PAYING,
  with the unknown recorded. Never CREATED after the channel was asked, never FAILED without proof.
- A USER_PAYING payment is polled through the protocol that charged it (WeChat v2 orderquery,
  Alipay trade.query) every few seconds by the paycode sweep, up to its charge deadline.
- At the deadline, on a definite failure after an unknown, or when someone closes it, the trade is
  revoked (WeChat reverse over mutual TLS, Alipay trade.cancel): revocation is idempotent, a
  "call again" answer (recall / retry_flag) is followed, and a revocation that returned money that
  had been taken is recorded as a success then a revocation (the refunds app then records the
  REVOCATION refund), so the books match the bill's double record.
- Revocations that keep failing go to a person (NEEDS_ATTENTION), never retried forever.
"""

from __future__ import annotations

import re
import time
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from channels.base import ChargeRequest, RevokeResult, TradeState, TradeStatus
from channels.services import adapter_for, channel_call
from paycore.errors import ChannelRejectedError, ChannelUnavailableError, Conflict, InvalidRequest
from paycore.jsonable import jsonable
from paycore.models import EventSource
from paycore.outbox import outbox_add
from payments.locks import payment_lock
from payments.models import Payment
from payments.services.attention import payment_flag_for_ops
from payments.services.create import payment_create
from payments.services.start import payment_description
from payments.services.sync import apply_trade_locked, payment_apply_trade
from payments.states import payment_move

S = Payment.Status

# What each channel's payment codes look like (the channels publish these prefixes and lengths).
CODE_PATTERNS: dict[str, re.Pattern[str]] = {
    "wechat": re.compile(r"^1[0-5]\d{16}$"),
    "alipay": re.compile(r"^(2[5-9]|30)\d{14,22}$"),
}
# How long a revocation stays possible after the payment, per channel; later, refund instead.
REVOKE_WINDOWS = {"wechat": timedelta(days=7), "alipay": timedelta(days=1)}


class OutsideRevocationWindow(Conflict):
    code = "outside_revocation_window"


def paycode_channel(auth_code: str, channel: str | None = None) -> str:
    """The channel a scanned code belongs to; a code no channel recognises is refused before
    anything is written."""
    owners = [name for name, pattern in CODE_PATTERNS.items() if pattern.match(auth_code)]
    if channel is not None:
        if channel not in CODE_PATTERNS:
            raise InvalidRequest.field("channel", f"{channel} takes no payment codes", code="invalid_choice")
        if channel not in owners:
            raise InvalidRequest.field(
                "auth_code", f"this is not a {channel} payment code", code="auth_code_unrecognised"
            )
        return channel
    if len(owners) != 1:
        raise InvalidRequest.field(
            "auth_code", "no channel recognises this payment code", code="auth_code_unrecognised"
        )
    return owners[0]


def paycode_place(
    *,
    order_ids: list[int],
    customer_ref: str,
    auth_code: str,
    channel: str | None = None,
    store_id: str = "",
    device_id: str = "",
    operator_id: str = "",
    client_ip: str | None = None,
) -> tuple[Payment, bool]:
    """Create a payment-code payment for the orders and charge the scanned code at once."""
    channel = paycode_channel(auth_code, channel)
    payment, created = payment_create(
        order_ids=order_ids,
        customer_ref=customer_ref,
        channel=channel,
        method=Payment.Method.PAYCODE,
        client_ip=client_ip,
        store_id=store_id,
        device_id=device_id,
        operator_id=operator_id,
    )
    if payment.status == S.CREATED:
        payment = paycode_charge(payment_id=payment.pk, auth_code=auth_code)
    return payment, created


def paycode_charge(*, payment_id: int, auth_code: str) -> Payment:
    """Charge the code once and classify the answer (see the module docstring)."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.status != S.CREATED:
        return payment
    request = ChargeRequest(
        payment_no=payment.payment_no,
        amount=payment.amount,
        currency=payment.currency,
        description=payment_description(payment),
        auth_code=auth_code,
        client_ip=payment.client_ip,
        expires_at=payment.expires_at,
    )
    try:
        with channel_call("charge"):
            trade = adapter_for(payment.channel_account).charge(request)
    except ChannelRejectedError as exc:
        return _fail(payment_id, code=str(exc.extra.get("channel_code", "")), evidence={"charge": exc.extra})
    except ChannelUnavailableError as exc:
        return _wait_for_payer(payment_id, evidence={"unknown": exc.message, **exc.extra})
    if trade.status == TradeStatus.USER_PAYING:
        return _wait_for_payer(payment_id, evidence={"trade": jsonable(trade)})
    return payment_apply_trade(payment_id=payment_id, trade=trade, source=EventSource.CHANNEL_QUERY)


def paycode_advance(*, payment_id: int) -> Payment:
    """The paycode sweep's work: poll a payer still paying, revoke once the deadline passed or
    the channel reports a definite failure after an unknown answer."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.method != Payment.Method.PAYCODE or payment.status != S.USER_PAYING:
        return payment
    if payment.charge_deadline is None or timezone.now() >= payment.charge_deadline:
        return paycode_revoke(payment_id=payment_id, reason="no outcome by the deadline", source=EventSource.SCHEDULER)
    trade = _poll(payment)
    if trade is None or trade.status in (TradeStatus.USER_PAYING, TradeStatus.NOT_PAID, TradeStatus.NOT_FOUND):
        return _poll_again(payment_id)
    if trade.status in (TradeStatus.FAILED, TradeStatus.CLOSED):
        return paycode_revoke(payment_id=payment_id, reason=f"the channel reports {trade.status}")
    return payment_apply_trade(payment_id=payment_id, trade=trade, source=EventSource.CHANNEL_QUERY)


def paycode_wait(*, payment_id: int, seconds: float) -> Payment:
    """A bounded long-poll for the counter: ask the channel about once a second, for at most
    ``seconds``, while the payer is still paying. Never revokes: that is the sweep's job."""
    deadline = time.monotonic() + min(seconds, settings.PAYCODE_MAX_WAIT_SECONDS)
    payment = Payment.objects.get(pk=payment_id)
    while payment.status == S.USER_PAYING and time.monotonic() < deadline:
        time.sleep(min(1.0, max(deadline - time.monotonic(), 0)))
        trade = _poll(payment)
        if trade is not None and trade.status == TradeStatus.PAID:
            return payment_apply_trade(payment_id=payment_id, trade=trade, source=EventSource.CHANNEL_QUERY)
        payment.refresh_from_db()
    return payment


def paycode_revoke(*, payment_id: int, reason: str, source: str = EventSource.SCHEDULER, actor: str = "") -> Payment:
    """Revoke a payment-code trade (one call to the channel; the sweep repeats while needed)."""
    payment = Payment.objects.select_related("channel_account").get(pk=payment_id)
    if payment.method != Payment.Method.PAYCODE:
        raise Conflict("only payment-code payments are revoked; close or refund this one")
    if payment.status == S.SUCCEEDED and payment.paid_at and timezone.now() - payment.paid_at > _window(payment):
        raise OutsideRevocationWindow("the channel no longer revokes this payment; refund it instead")
    if payment.status not in (S.USER_PAYING, S.SUCCEEDED, S.NEEDS_ATTENTION):
        return payment
    try:
        with channel_call("revoke"):
            result = adapter_for(payment.channel_account).revoke(
                payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no
            )
    except (ChannelUnavailableError, ChannelRejectedError) as exc:
        return _revocation_failed(payment_id, evidence={"reason": reason, "error": exc.code, **exc.extra})
    if result.retry or not result.done:
        evidence = {"reason": reason, "retry": result.retry, **jsonable(result.raw)}
        return _revocation_failed(payment_id, evidence=evidence)
    return _revoked(payment_id, result, reason=reason, source=source, actor=actor)


@transaction.atomic(durable=True)
def paycode_resolve_revoked(*, payment_id: int, note: str, actor: str) -> Payment:
    """Ops settled a payment the automation could not revoke: the channel reversed it."""
    payment = payment_lock(payment_id)
    if payment.status == S.NEEDS_ATTENTION:
        payment_move(payment, S.REVOKED, source=EventSource.OPS, evidence={"note": note}, actor=actor)
        payment.next_check_at = None
        payment.save(update_fields=["status", "next_check_at", "updated_at"])
        outbox_add(topic="payment.revoked", key=payment.payment_no)
    return payment


# --- steps ---------------------------------------------------------------------------------
def _poll(payment: Payment) -> TradeState | None:
    try:
        with channel_call("query"):
            return adapter_for(payment.channel_account).query_charge(
                payment_no=payment.payment_no, channel_trade_no=payment.channel_trade_no
            )
    except ChannelUnavailableError:
        return None  # still unknown: the deadline decides


@transaction.atomic(durable=True)
def _wait_for_payer(payment_id: int, *, evidence: dict[str, Any]) -> Payment:
    payment = payment_lock(payment_id)
    if payment.status == S.CREATED:
        payment_move(payment, S.USER_PAYING, source=EventSource.CHANNEL_QUERY, evidence=evidence)
        now = timezone.now()
        payment.charge_deadline = now + timedelta(seconds=settings.PAYCODE_DEADLINE_SECONDS)
        payment.next_check_at = now + timedelta(seconds=settings.PAYCODE_POLL_SECONDS)
        payment.save(update_fields=["status", "charge_deadline", "next_check_at", "updated_at"])
    return payment


def _poll_again(payment_id: int) -> Payment:
    Payment.objects.filter(pk=payment_id, status=S.USER_PAYING).update(
        next_check_at=timezone.now() + timedelta(seconds=settings.PAYCODE_POLL_SECONDS)
    )
    return Payment.objects.get(pk=payment_id)


@transaction.atomic(durable=True)
def _fail(payment_id: int, *, code: str, evidence: dict[str, Any]) -> Payment:
    payment = payment_lock(payment_id)
    if payment.status == S.CREATED:
        payment_move(payment, S.FAILED, source=EventSource.CHANNEL_QUERY, evidence=evidence)
        payment.failure_code = code[:64]
        payment.save(update_fields=["status", "failure_code", "updated_at"])
    return payment


def _revocation_failed(payment_id: int, *, evidence: dict[str, Any]) -> Payment:
    """Count the try; past the budget a person decides, else the sweep tries again soon."""
    with transaction.atomic(durable=True):
        payment = payment_lock(payment_id)
        payment.revoke_attempts += 1
        payment.next_check_at = timezone.now() + timedelta(seconds=settings.PAYCODE_POLL_SECONDS)
        payment.save(update_fields=["revoke_attempts", "next_check_at", "updated_at"])
        attempts = payment.revoke_attempts
    if attempts >= settings.PAYCODE_MAX_REVOKE_ATTEMPTS and payment.status == S.USER_PAYING:
        return payment_flag_for_ops(
            payment_id=payment_id,
            problem=f"revocation failed {attempts} times",
            evidence=evidence,
            source=EventSource.SCHEDULER,
        )
    return payment


@transaction.atomic(durable=True)
def _revoked(payment_id: int, result: RevokeResult, *, reason: str, source: str, actor: str) -> Payment:
    """Record a done revocation. If the money had been taken (the channel gave it back), the
    success is recorded first and then its revocation, so paycore shows both, like the bill."""
    payment = payment_lock(payment_id)
    evidence = {"reason": reason, "revocation": jsonable(result.raw)}
    if result.refunded and payment.status != S.SUCCEEDED:
        trade = TradeState(
            payment_no=payment.payment_no,
            status=TradeStatus.PAID,
            channel_trade_no=payment.channel_trade_no,
            paid_amount=payment.amount,  # a revocation returns the whole payment
            currency=payment.currency,
            raw=result.raw,
        )
        payment = apply_trade_locked(payment, trade, source=source, evidence=evidence)
    if payment.status in (S.USER_PAYING, S.SUCCEEDED, S.NEEDS_ATTENTION):
        payment_move(payment, S.REVOKED, source=source, evidence=evidence, actor=actor)
        # A revocation of money taken is refunded money: the repeat sweep records its refund.
        payment.next_check_at = timezone.now() if payment.paid_at else None
        payment.save(update_fields=["status", "next_check_at", "updated_at"])
        outbox_add(topic="payment.revoked", key=payment.payment_no)
    return payment


def _window(payment: Payment) -> timedelta:
    return REVOKE_WINDOWS.get(payment.channel, timedelta(0))
