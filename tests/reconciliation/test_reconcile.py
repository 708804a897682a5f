"""Each channel's bill against paycore's books: clean days match, every bill fault is found
exactly once and nothing else is flagged, revocations match, reruns change nothing."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta, timezone
from typing import Any

import pytest
from django.db import connection

from paycore.sweeps import sweep_run
from payments.models import Payment
from payments.services import payment_sync_from_channel
from payments.sweeps import PAYCODE
from reconciliation.models import ChannelBill, Discrepancy, ReconciledPaymentBlock, ReconciliationRun
from reconciliation.selectors import payment_reconciled_at, refund_reconciled_at, with_reconciled_at
from refunds.models import Refund
from refunds.sweeps import REPEAT
from tests.factories import let_time_pass, pay_at_sandbox
from tests.reconciliation.conftest import Day, found, paycode_scanned

pytestmark = pytest.mark.django_db(transaction=True)

CHANNELS = ["wechat", "alipay", "paypal", "points"]
# The published fee of each sandbox channel, as ops would set it on the account.
FEES = {
    "wechat": {"fee_rate": "0.006", "fee_rounding": "half_up"},
    "alipay": {"fee_rate": "0.006", "fee_rounding": "half_up"},
    "paypal": {"fee_rate": "0.029", "fee_rounding": "down"},
    "points": {},
}


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_clean_day_matches_every_payment_and_refund(channel: str, business_day: Callable[..., Day]) -> None:
    day = business_day(channel, **FEES[channel])
    first, second = day.paid(1000), day.paid(2345)
    refund = day.refund(first, 400)
    day.end()
    run = day.reconcile()
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    assert found(run) == set()
    assert run.matched == 3 and run.lines == 3 and run.held == 0
    both = with_reconciled_at(Payment.objects.filter(pk__in=[first.pk, second.pk]))
    # The annotation is the selector's own, which the stubs cannot see through ``with_reconciled_at``.
    assert both.filter(bill_reconciled_at__isnull=False).count() == 2  # type: ignore[misc]
    assert refund_reconciled_at(refund.pk) is not None
    bill = ChannelBill.objects.get(pk=run.bill_id)
    assert bill.status == ChannelBill.Status.LOADED and len(bill.digest) == 64


@pytest.mark.parametrize("channel", CHANNELS)
def test_a_refund_the_bill_shows_for_another_amount_is_a_mismatch_of_that_refund_and_its_payment(
    channel: str, business_day: Callable[..., Day]
) -> None:
    day = business_day(channel, **FEES[channel])
    paid = day.paid(1000)
    refund = day.refund(paid, 400)
    Refund.objects.filter(pk=refund.pk).update(amount=399)  # paycore's books no longer say what the channel did
    day.end()
    run = day.reconcile()
    mismatch = Discrepancy.objects.get(last_run=run)
    assert (mismatch.kind, mismatch.line_kind, mismatch.channel_amount, mismatch.local_amount) == (
        "AMOUNT_MISMATCH",
        "REFUND",
        400,
        399,
    )
    assert (mismatch.refund_id, mismatch.payment_id, mismatch.payment_no) == (refund.pk, paid.pk, paid.payment_no)
    assert refund_reconciled_at(refund.pk) is None and payment_reconciled_at(paid.pk) is not None


@pytest.mark.parametrize("workers", [1, 3], ids=["one connection", "payments in three shares"])
@pytest.mark.parametrize("channel", ["wechat", "alipay", "paypal"])
def test_every_bill_fault_is_found_exactly_and_nothing_else(
    channel: str, workers: int, business_day: Callable[..., Day], settings: Any
) -> None:
    settings.RECONCILIATION_MATCH_WORKERS = workers
    day = business_day(channel, **FEES[channel])
    fine = day.paid(1000)
    missing, wrong_amount, doubled, wrong_fee = day.paid(1100), day.paid(1200), day.paid(1300), day.paid(1400)
    day.fault("bill_missing", trade=missing.payment_no)
    day.fault("bill_extra", trade="SBXEXTRA0001", amount=777)
    day.fault("bill_amount", trade=wrong_amount.payment_no, amount=1201)
    day.fault("bill_duplicate", trade=doubled.payment_no)
    day.fault("bill_fee", trade=wrong_fee.payment_no, amount=99)
    expected = {
        ("MISSING_AT_CHANNEL", f"P:{missing.payment_no}"),
        ("MISSING_LOCALLY", "P:SBXEXTRA0001"),
        ("AMOUNT_MISMATCH", f"P:{wrong_amount.payment_no}"),
        ("DUPLICATE_LINE", f"P:{doubled.payment_no}"),
        ("FEE_MISMATCH", f"P:{wrong_fee.payment_no}"),
    }
    if channel != "paypal":  # PayPal takes money only when paycore captures: nothing paid behind its back
        unseen = day.unpaid(1500)  # paid at the channel; the notification was lost, paycore still waits
        pay_at_sandbox(day.gateway, unseen)
        revoked = day.paid(1600)
        day.fault("bill_revoked", trade=revoked.payment_no)
        expected |= {("STATUS_MISMATCH", f"P:{unseen.payment_no}"), ("STATUS_MISMATCH", f"V:{revoked.payment_no}")}
    day.end()
    run = day.reconcile()
    assert run.status == ReconciliationRun.Status.SUCCEEDED, run.error
    assert found(run) == expected
    assert payment_reconciled_at(fine.pk) is not None
    assert payment_reconciled_at(missing.pk) is None
    extra = Discrepancy.objects.get(last_run=run, kind="MISSING_LOCALLY")
    assert (extra.channel_amount, extra.local_amount, extra.payment_id) == (777, None, None)
    mismatch = Discrepancy.objects.get(last_run=run, kind="AMOUNT_MISMATCH")
    assert (mismatch.channel_amount, mismatch.local_amount) == (1201, 1200)
    fee = Discrepancy.objects.get(last_run=run, kind="FEE_MISMATCH")
    assert fee.channel_fee == 99 and fee.expected_fee not in (None, 99)


def test_points_faults_are_found_exactly(business_day: Callable[..., Day]) -> None:
    day = business_day("points")
    fine, missing, wrong_amount, doubled = day.paid(1000), day.paid(1100), day.paid(1200), day.paid(1300)
    day.fault("bill_missing", trade=missing.payment_no)
    day.fault("bill_extra", trade="SBXEXTRA0002", amount=777)
    day.fault("bill_amount", trade=wrong_amount.payment_no, amount=1201)
    day.fault("bill_duplicate", trade=doubled.payment_no)
    day.end()
    run = day.reconcile()
    assert found(run) == {
        ("MISSING_AT_CHANNEL", f"P:{missing.payment_no}"),
        ("MISSING_LOCALLY", "P:SBXEXTRA0002"),
        ("AMOUNT_MISMATCH", f"P:{wrong_amount.payment_no}"),
        ("DUPLICATE_LINE", f"P:{doubled.payment_no}"),
    }
    assert run.fee_check.startswith("line fees stored, not checked")
    assert payment_reconciled_at(fine.pk) is not None


@pytest.mark.parametrize(
    ("channel", "auth_code"),
    [("wechat", "134567890123450000"), ("alipay", "286543210987657400")],  # password wait / unknown, in fact paid
)
def test_a_payment_code_paid_then_revoked_matches_both_of_its_lines(
    channel: str, auth_code: str, business_day: Callable[..., Day]
) -> None:
    day = business_day(channel)
    payment = paycode_scanned(day, auth_code)
    assert payment.status == Payment.Status.USER_PAYING
    if channel == "wechat":
        day.gateway.password(channel, payment.payment_no)  # the payer confirms: the money moves unseen
    for _ in range(5):  # past its deadline paycore revokes it (WeChat first asks to be called again)
        let_time_pass(payment, seconds=60)
        sweep_run(PAYCODE)
        payment.refresh_from_db()
        if payment.status != Payment.Status.USER_PAYING:
            break
    assert payment.status == Payment.Status.REVOKED and payment.paid_at is not None  # SUCCEEDED, then REVOKED
    sweep_run(REPEAT)  # records the money the channel gave back as a REVOCATION refund
    refund = Refund.objects.get(payment=payment)
    assert refund.reason == Refund.Reason.REVOCATION
    day.end()
    run = day.reconcile()
    assert run.lines == 2 and found(run) == set() and run.matched == 2
    assert payment_reconciled_at(payment.pk) is not None
    assert refund_reconciled_at(refund.pk) is not None


@pytest.mark.parametrize("channel", ["wechat", "alipay", "paypal"])
def test_the_run_totals_from_the_bills_kept_totals_are_those_of_its_lines(
    channel: str, business_day: Callable[..., Day]
) -> None:
    day = business_day(channel, **FEES[channel])
    first, doubled = day.paid(1000), day.paid(2345)
    day.refund(first, 400)
    day.fault("bill_duplicate", trade=doubled.payment_no, count=None)
    day.fault("bill_extra", trade="SBXEXTRA0009", amount=777, count=None)
    day.end()
    kept = day.reconcile()
    bill = ChannelBill.objects.get(pk=kept.bill_id)
    assert bill.line_totals is not None and set(bill.line_totals) <= set(kept.totals)
    ChannelBill.objects.filter(pk=bill.pk).update(line_totals=None)  # as if loaded before they were kept
    scanned = day.reconcile()
    assert not scanned.reloaded and scanned.totals == kept.totals
    assert sum(sums.get("bill_refunds", 0) for sums in kept.totals.values()) == 400


def test_a_rerun_finds_the_same_and_changes_nothing(business_day: Callable[..., Day]) -> None:
    day = business_day("wechat")
    kept, missing = day.paid(1000), day.paid(1100)
    day.fault("bill_missing", trade=missing.payment_no, count=None)  # every build of the bill
    day.fault("bill_extra", trade="SBXEXTRA0003", amount=500, count=None)
    day.end()
    first = day.reconcile()
    stamped = payment_reconciled_at(kept.pk)
    again = day.reconcile()
    reloaded = day.reconcile(reload=True)
    assert first.counts == again.counts == reloaded.counts == {"MISSING_AT_CHANNEL": 1, "MISSING_LOCALLY": 1}
    assert found(reloaded) == {
        ("MISSING_AT_CHANNEL", f"P:{missing.payment_no}"),
        ("MISSING_LOCALLY", "P:SBXEXTRA0003"),
    }
    assert Discrepancy.objects.count() == 2 and set(Discrepancy.objects.values_list("run", flat=True)) == {first.pk}
    assert (again.new_discrepancies, reloaded.new_discrepancies) == (0, 0)
    assert not again.reloaded and reloaded.reloaded
    assert payment_reconciled_at(kept.pk) == stamped
    assert ChannelBill.objects.get().line_count == 2


def test_a_discrepancy_fixed_since_resolves_itself_on_the_next_run(business_day: Callable[..., Day]) -> None:
    day = business_day("wechat")
    unseen = day.unpaid(1500)
    day.gateway.pay("wechat", unseen.payment_no)  # notification lost, paycore still PENDING
    day.end()
    first = day.reconcile()
    assert found(first) == {("STATUS_MISMATCH", f"P:{unseen.payment_no}")}
    payment_sync_from_channel(payment_id=unseen.pk)  # the success sweep catches up
    second = day.reconcile()
    assert found(second) == set() and second.auto_resolved == 1
    assert Discrepancy.objects.get().status == Discrepancy.Status.RESOLVED


def test_a_trade_near_midnight_is_held_then_matched_on_the_next_days_bill(business_day: Callable[..., Day]) -> None:
    day = business_day("wechat", at=(23, 50, 0))
    day.gateway.advance_clock(9 * 60 + 58 - 0)  # 23:59:58 Beijing
    late = day.paid(1000)
    assert late.paid_at is not None
    assert late.paid_at.astimezone(timezone(timedelta(hours=8))).strftime("%H:%M:%S") == "23:59:58"
    # The channel books it on the next day (its clock, its cut-off): not on this day's bill...
    day.fault("bill_missing", trade=late.payment_no)
    tomorrow = day.next_day()
    tomorrow.fault("bill_extra", trade=late.payment_no, amount=1000)  # ... but on the next one
    tomorrow.paid(2000)  # the next day has business of its own
    day.end()
    first = day.reconcile()
    assert found(first) == set() and first.held == 1
    tomorrow.end()
    second = tomorrow.reconcile()
    assert found(second) == set()
    assert payment_reconciled_at(late.pk) is not None


def test_a_held_trade_that_never_appears_is_missing_on_the_next_day(business_day: Callable[..., Day]) -> None:
    day = business_day("wechat", at=(23, 59, 50))
    late = day.paid(1000)
    day.fault("bill_missing", trade=late.payment_no)
    tomorrow = day.next_day()
    day.end()
    tomorrow.paid(2000)
    assert found(day.reconcile()) == set()
    tomorrow.end()
    assert found(tomorrow.reconcile()) == {("MISSING_AT_CHANNEL", f"P:{late.payment_no}")}


def test_a_trade_near_midnight_its_own_days_bill_matched_is_not_missing_on_the_next_day(
    business_day: Callable[..., Day],
) -> None:
    """The next day's local window starts a holding window early; what an earlier bill matched
    there is stamped, not missing."""
    day = business_day("wechat", at=(23, 59, 50))
    late = day.paid(1000)
    tomorrow = day.next_day()
    day.end()
    tomorrow.paid(2000)
    first = day.reconcile()
    assert found(first) == set() and first.held == 0
    tomorrow.end()
    assert found(tomorrow.reconcile()) == set()
    assert payment_reconciled_at(late.pk) is not None


def _next_payment_id_is(payment_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT setval(pg_get_serial_sequence('payments_payment', 'id'), %s)", [payment_id - 1])


def test_stamps_are_64_payments_to_a_row_high_bits_and_the_sign_bit_too(business_day: Callable[..., Day]) -> None:
    day = business_day("wechat")
    _next_payment_id_is(64 * 1000 + 40)
    high = day.paid(900)
    _next_payment_id_is(64 * 1000 + 63)
    last, first_of_next, unseen = day.paid(1000), day.paid(1100), day.paid(1200)
    assert (high.pk % 64, last.pk % 64, first_of_next.pk % 64, unseen.pk % 64) == (40, 63, 0, 1)
    day.fault("bill_missing", trade=unseen.payment_no)
    day.end()
    assert found(day.reconcile()) == {("MISSING_AT_CHANNEL", f"P:{unseen.payment_no}")}
    stamped = {p.pk: payment_reconciled_at(p.pk) for p in (high, last, first_of_next, unseen)}
    assert stamped[last.pk] is not None and stamped[first_of_next.pk] == stamped[high.pk] == stamped[last.pk]
    assert stamped[unseen.pk] is None
    listed = with_reconciled_at(Payment.objects.filter(pk__in=stamped))
    assert dict(listed.values_list("pk", "bill_reconciled_at")) == stamped
    blocks = list(ReconciledPaymentBlock.objects.values_list("block", "bits"))
    assert found(day.reconcile()) == {("MISSING_AT_CHANNEL", f"P:{unseen.payment_no}")}
    assert list(ReconciledPaymentBlock.objects.values_list("block", "bits")) == blocks  # nothing stamped twice


def test_a_day_without_activity_flags_what_paycore_holds(business_day: Callable[..., Day], gateway_client: Any) -> None:
    day = business_day("points")
    paid = day.paid(1000)
    day.fault("bill_missing", trade=paid.payment_no)
    day.end()
    run = day.reconcile()
    assert run.lines == 0 and found(run) == {("MISSING_AT_CHANNEL", f"P:{paid.payment_no}")}


def test_the_day_is_read_from_its_own_rows_and_a_line_still_finds_an_older_payment(
    business_day: Callable[..., Day],
) -> None:
    """The local searches of a day are bounded by ``created_at`` (the history is not read), and
    the bill's lines find their payment by number wherever it was created."""
    day = business_day("wechat", **FEES["wechat"])
    old, missing = day.paid(1000), day.paid(1100)
    Payment.objects.filter(pk=old.pk).update(created_at=old.created_at - timedelta(days=30))
    day.fault("bill_missing", trade=missing.payment_no)
    day.end()
    run = day.reconcile()
    assert found(run) == {("MISSING_AT_CHANNEL", f"P:{missing.payment_no}")}
    assert payment_reconciled_at(old.pk) is not None
    assert run.totals["CNY"]["local_payments"] == 1100  # the older payment is outside the day's rows
