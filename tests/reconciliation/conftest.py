"""Reconciliation against the sandbox over HTTP: days are ended on the sandbox's clock, state is
built through paycore's services, bill faults come from the sandbox's fault switches."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta, timezone
from typing import Any

import pytest

from channels.models import ChannelAccount
from channels.services import adapter_for
from payments.models import Payment
from payments.services import paycode_place, payment_sync_from_channel
from reconciliation.models import Discrepancy, ReconciliationRun
from reconciliation.services import reconcile_day
from refunds.models import Refund
from refunds.services import refund_request, refund_sync_from_channel
from tests.factories import make_order, make_payment, pay_at_sandbox

# The zone of each channel's bill day, as the sandbox ends it (end_day's utc_offset_hours).
OFFSETS = {"wechat": 8, "alipay": 8, "points": 8, "paypal": 0}
CURRENCIES = {"wechat": "CNY", "alipay": "CNY", "points": "CNY", "paypal": "USD"}
METHODS = {"wechat": "app", "alipay": "app", "points": "points", "paypal": "page"}


@dataclass
class Day:
    """One channel account's business day on the sandbox's clock."""

    account: ChannelAccount
    gateway: Any
    bill_date: date
    payer_id: str = ""
    _refunds: int = 0

    @property
    def channel(self) -> str:
        return self.account.channel

    def sandbox_now(self) -> datetime:
        return datetime.fromisoformat(self.gateway.clock()["now"])

    def unpaid(self, amount: int = 1000) -> Payment:
        order = make_order(
            amount=amount,
            currency=CURRENCIES[self.channel],
            expires_at=datetime.now(UTC) + timedelta(days=6),
        )
        extra: dict[str, Any] = {"payer_id": self.payer_id} if self.payer_id else {}
        if self.channel == "paypal":
            extra["return_url"] = "https://app.example/pp"
        return make_payment(account=self.account, orders=[order], method=METHODS[self.channel], **extra)

    def paid(self, amount: int = 1000) -> Payment:
        """Paid by the payer and confirmed by paycore's query (points settle at start)."""
        payment = self.unpaid(amount)
        if self.channel != "points":
            pay_at_sandbox(self.gateway, payment)
            payment = payment_sync_from_channel(payment_id=payment.pk)
        assert payment.status == Payment.Status.SUCCEEDED, payment.status
        return payment

    def refund(self, payment: Payment, amount: int) -> Refund:
        """Refunded through paycore, completed at the channel, confirmed by query."""
        self._refunds += 1
        refund, _ = refund_request(payment_id=payment.pk, refund_no=f"RR{payment.pk}X{self._refunds}", amount=amount)
        self.gateway.advance_clock(60)  # the channel completes refunds a few seconds later
        refund = refund_sync_from_channel(refund_id=refund.pk)
        assert refund.status == Refund.Status.SUCCEEDED, refund.status
        return refund

    def fault(self, kind: str, **rule: Any) -> None:
        ids = self.account.ids
        account = ids.get("mchid") or ids.get("app_id") or ids.get("client_id")
        self.gateway.add_fault(
            channel=self.channel, account=account, date=self.bill_date.isoformat(), kind=kind, **rule
        )

    def end(self) -> None:
        self.gateway.end_day(utc_offset_hours=OFFSETS[self.channel])

    def reconcile(self, **kwargs: Any) -> ReconciliationRun:
        return reconcile_day(account_id=self.account.pk, bill_date=self.bill_date, **kwargs)

    def next_day(self) -> Day:
        return Day(self.account, self.gateway, self.bill_date + timedelta(days=1), self.payer_id)


def found(run: ReconciliationRun) -> set[tuple[str, str]]:
    return set(Discrepancy.objects.filter(last_run=run).values_list("kind", "ref"))


@pytest.fixture(autouse=True)
def _long_lived_payments(settings: Any) -> None:
    # The sandbox's clock runs ahead of paycore's while days are ended: payments stay payable.
    settings.PAYMENT_TTL_SECONDS = 5 * 24 * 3600
    settings.RECONCILIATION_HOLD_SECONDS = 1800


@pytest.fixture
def business_day(channel_account: Callable[..., ChannelAccount], gateway_client: Any) -> Callable[..., Day]:
    """``business_day("wechat", **options) -> Day``: a fresh account, the sandbox's clock moved
    to 10:00 of the next day in the channel's bill zone (so nothing falls near midnight)."""

    def make(channel: str, *, at: tuple[int, int, int] = (10, 0, 0), **options: Any) -> Day:
        account = channel_account(channel)
        if options:
            account.options = {**account.options, **options}
            account.save(update_fields=["options"])
        zone = timezone(timedelta(hours=OFFSETS[channel]))
        now = datetime.fromisoformat(gateway_client.clock()["now"]).astimezone(zone)
        target = datetime.combine(now.date() + timedelta(days=1), datetime.min.time(), tzinfo=zone).replace(
            hour=at[0], minute=at[1], second=at[2]
        )
        gateway_client.advance_clock((target - now).total_seconds())
        payer = ""
        if channel == "points":
            payer = adapter_for(account).bind(f"bind-{account.pk}", "member-42", "cust-1")
        return Day(account, gateway_client, target.date(), payer)

    return make


def paycode_scanned(day: Day, auth_code: str, amount: int = 700) -> Payment:
    """A payment code scanned at the counter (paycore's own paycode service)."""
    order = make_order(amount=amount, expires_at=datetime.now(UTC) + timedelta(days=6))
    payment, _ = paycode_place(order_ids=[order.pk], customer_ref="cust-1", auth_code=auth_code, channel=day.channel)
    return payment
