"""The mechanics every sweep shares, on PostgreSQL against the sandbox: overlapping runs never
work a row twice, a failing row is recorded on itself and never stops the batch, and every
sweep runs by hand."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection
from django.utils import timezone

from channels.models import ChannelAccount
from inbox.models import InboundNotification
from inbox.sweeps import INBOX
from paycore.sweeps import Sweep, SweepReport, sweep_run
from payments.models import Payment, PaymentEvent
from payments.sweeps import CLOSE_PAYMENTS, SUCCESS
from refunds.models import Refund
from refunds.sweeps import REPEAT
from tests.factories import let_time_pass, make_order, make_payment, pay_at_sandbox

pytestmark = pytest.mark.django_db(transaction=True)


def two_at_once(sweep: Sweep) -> list[SweepReport]:
    barrier = threading.Barrier(2)

    def run(_: int) -> SweepReport:
        try:
            barrier.wait()
            return sweep_run(sweep)
        finally:
            connection.close()

    with ThreadPoolExecutor(max_workers=2) as pool:
        return list(pool.map(run, range(2)))


def test_two_success_sweeps_at_once_query_and_apply_each_payment_once(
    wechat_account: ChannelAccount, gateway_client: Any
) -> None:
    payments = [make_payment(account=wechat_account) for _ in range(6)]
    for payment in payments:
        pay_at_sandbox(gateway_client, payment)
    let_time_pass(*payments, seconds=20)
    reports = two_at_once(SUCCESS)
    assert sum(r.claimed for r in reports) == 6 and sum(r.worked for r in reports) == 6
    assert PaymentEvent.objects.filter(to_status="SUCCEEDED").count() == 6
    assert set(Payment.objects.values_list("status", flat=True)) == {"SUCCEEDED"}


def test_two_close_sweeps_at_once_close_each_payment_once(wechat_account: ChannelAccount, gateway_client: Any) -> None:
    payments = [make_payment(account=wechat_account) for _ in range(4)]
    let_time_pass(*payments, seconds=24 * 3600)
    reports = two_at_once(CLOSE_PAYMENTS)
    assert sum(r.worked for r in reports) == 4
    assert PaymentEvent.objects.filter(to_status="CLOSED").count() == 4


def test_two_repeat_sweeps_at_once_refund_a_duplicate_once(channel_account: Any, gateway_client: Any) -> None:
    alipay, wechat = channel_account("alipay"), channel_account("wechat")
    order = make_order(amount=700)
    by_alipay = make_payment(account=alipay, orders=[order])
    by_wechat = make_payment(account=wechat, orders=[order])
    for payment in (by_wechat, by_alipay):
        pay_at_sandbox(gateway_client, payment)
    by_alipay.refresh_from_db()
    Payment.objects.filter(pk__in=[by_alipay.pk, by_wechat.pk]).update(next_check_at=timezone.now())
    sweep_run(SUCCESS)
    assert set(Payment.objects.values_list("status", flat=True)) == {"SUCCEEDED"}
    reports = two_at_once(REPEAT)
    assert sum(r.worked for r in reports) == 1
    assert Refund.objects.count() == 1
    refunds_at_channel = [t for t in gateway_client.trades() if t["kind"] == "refund"]
    assert len(refunds_at_channel) == 1


def test_a_failing_row_is_recorded_on_itself_and_the_batch_goes_on(channel_account: Any, gateway_client: Any) -> None:
    wechat, alipay = channel_account("wechat"), channel_account("alipay")
    failing = make_payment(account=wechat)
    fine = make_payment(account=alipay)
    pay_at_sandbox(gateway_client, failing)
    pay_at_sandbox(gateway_client, fine)
    let_time_pass(failing, fine, seconds=20)
    gateway_client.add_fault(channel="wechat", kind="http_500", count=None)
    report = sweep_run(SUCCESS)
    assert (report.failed, report.outcomes) == (1, {"succeeded": 1})
    failing.refresh_from_db()
    assert failing.status == "PENDING" and failing.check_failures == 1
    assert failing.last_check_error.startswith("ChannelUnavailableError: the channel did not answer query")
    assert "HTTP 500" in failing.last_check_error  # the channel's own reason, for ops to tell apart
    assert failing.next_check_at > timezone.now()  # backed off, not retried at once
    gateway_client.clear_faults()
    Payment.objects.filter(pk=failing.pk).update(next_check_at=timezone.now())
    assert sweep_run(SUCCESS).outcomes == {"succeeded": 1}
    failing.refresh_from_db()
    assert (failing.status, failing.check_failures, failing.last_check_error) == ("SUCCEEDED", 0, "")


def test_a_poisoned_inbox_row_does_not_block_the_rows_after_it(channel_account: Any, gateway_client: Any) -> None:
    broken, sound = channel_account("wechat"), channel_account("alipay")
    poisoned_payment, good_payment = make_payment(account=broken), make_payment(account=sound)
    pay_at_sandbox(gateway_client, good_payment)
    ChannelAccount.objects.filter(pk=broken.pk).update(options={"platform_certificates": "not a mapping"})
    rows = [
        InboundNotification.objects.create(
            channel=account.channel,
            channel_account=account,
            body=b"{}",
            verification="VERIFIED",
            kind="PAYMENT",
            payment=payment,
            dedupe_key=f"poison-{payment.pk}",
        )
        for account, payment in ((broken, poisoned_payment), (sound, good_payment))
    ]
    report = sweep_run(INBOX)
    poisoned, good = (InboundNotification.objects.get(pk=r.pk) for r in rows)
    assert report.claimed == 2 and good.outcome == "APPLIED"
    assert poisoned.outcome in ("PENDING", "FAILED") and poisoned.attempts == 1 and poisoned.last_error
    assert poisoned.next_check_at > timezone.now()
    assert Payment.objects.get(pk=good_payment.pk).status == "SUCCEEDED"


def test_a_notification_failing_past_its_budget_is_retired_to_ops(
    channel_account: Any, gateway_client: Any, settings: Any
) -> None:
    settings.INBOX_MAX_ATTEMPTS = 2
    account = channel_account("wechat")
    payment = make_payment(account=account)
    row = InboundNotification.objects.create(
        channel="wechat", channel_account=account, body=b"{}", verification="VERIFIED", kind="PAYMENT", payment=payment
    )
    gateway_client.add_fault(channel="wechat", kind="http_500", count=None)
    for _ in range(3):
        InboundNotification.objects.filter(pk=row.pk).update(next_check_at=timezone.now())
        sweep_run(INBOX)
    row.refresh_from_db()
    assert (row.outcome, row.attempts, row.next_check_at) == ("NEEDS_ATTENTION", 2, None)
    InboundNotification.objects.filter(pk=row.pk).update(next_check_at=timezone.now())
    assert sweep_run(INBOX).claimed == 0  # retired: only ops bring it back


def test_every_sweep_runs_by_hand(wechat_account: ChannelAccount, gateway_client: Any, capsys: Any) -> None:
    payment = make_payment(account=wechat_account)
    pay_at_sandbox(gateway_client, payment)
    let_time_pass(payment, seconds=20)
    for name in ("close", "success", "paycode", "repeat", "refund", "inbox"):
        call_command("sweep", name, "--once")
    out = capsys.readouterr().out
    assert "sweep=success claimed=1 worked=1" in out
    assert {line.split()[0] for line in out.splitlines()} == {
        "sweep=close",
        "sweep=close-orders",
        "sweep=success",
        "sweep=paycode",
        "sweep=repeat",
        "sweep=refund",
        "sweep=inbox",
    }
    assert Payment.objects.get(pk=payment.pk).status == "SUCCEEDED"
