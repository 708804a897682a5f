"""Channel bills, their lines, reconciliation runs and the discrepancies they find.

A bill is one channel account's bill for one day, as the channel published it: loaded whole or
not at all (its lines are kept only once the file's digest and its own summary check out). A run
matches a loaded bill against paycore's payments and refunds, both ways, in SQL; what does not
match becomes a discrepancy that ops resolve from the admin.
"""

from __future__ import annotations

from django.db import models
from django.db.models import Q

from paycore.models import SweptModel, TimeStampedModel


class BillStatus(models.TextChoices):
    PENDING = "PENDING"  # planned: the channel's bill is awaited (not ready yet, or not fetched)
    LOADED = "LOADED"  # every line kept, the summary checked
    REFUSED = "REFUSED"  # the bill contradicts its own summary: no line kept, ops decide


class ChannelBill(TimeStampedModel, SweptModel):
    """One account's bill for one day. The reconciliation sweep follows PENDING rows (its lease
    and back-off live in ``SweptModel``'s columns)."""

    Status = BillStatus

    channel_account = models.ForeignKey("channels.ChannelAccount", on_delete=models.PROTECT, related_name="bills")
    bill_date = models.DateField()  # the channel's bill day, in the channel's own zone
    bill_type = models.CharField(max_length=20, blank=True, default="")  # the channel's name: ALL, trade...
    status = models.CharField(max_length=10, choices=BillStatus, default=BillStatus.PENDING)
    digest = models.CharField(max_length=64, blank=True, default="")  # SHA-256 of the bytes received
    size = models.BigIntegerField(default=0)
    line_count = models.PositiveIntegerField(default=0)
    # What the lines add up to (minor units; refunds include revocations). Mixed currencies are
    # summed per currency in the run's totals; these are for a glance.
    payment_count = models.PositiveIntegerField(default=0)
    payment_amount = models.BigIntegerField(default=0)
    refund_count = models.PositiveIntegerField(default=0)
    refund_amount = models.BigIntegerField(default=0)
    fee_total = models.BigIntegerField(null=True, blank=True)  # None: the channel shows no fees
    # Per currency, the run's bill_payments / bill_refunds / bill_fees (minor units), added up
    # while the lines were written so that every match need not rescan them (a million lines:
    # ~0.5 s each run). None: loaded before these were kept; the match adds the lines up then.
    line_totals = models.JSONField(null=True, blank=True, default=None)
    # The channel's own summary, as published (None: not published, or not in paycore's terms).
    declared_line_count = models.PositiveIntegerField(null=True, blank=True)
    declared_payment_count = models.PositiveIntegerField(null=True, blank=True)
    declared_payment_amount = models.BigIntegerField(null=True, blank=True)
    declared_refund_count = models.PositiveIntegerField(null=True, blank=True)
    declared_refund_amount = models.BigIntegerField(null=True, blank=True)
    declared_fee_total = models.BigIntegerField(null=True, blank=True)
    declared_summary = models.JSONField(default=dict, blank=True)  # the summary cells themselves
    refuse_reason = models.TextField(blank=True, default="")
    loaded_at = models.DateTimeField(null=True, blank=True)
    reconciled_at = models.DateTimeField(null=True, blank=True)  # the last run that finished

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["channel_account", "bill_date"], name="channelbill_account_date_uniq"),
            models.CheckConstraint(condition=Q(status__in=BillStatus.values), name="channelbill_status_valid"),
        ]

    def __str__(self) -> str:
        return f"{self.channel_account_id}/{self.bill_date} {self.status}"


class LineKind(models.TextChoices):
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"
    REVOCATION = "REVOCATION"  # a payment-code trade reversed after the money moved


class BillLine(models.Model):
    """One line of a loaded bill, as the channel showed it. Written in bulk (COPY), never edited."""

    Kind = LineKind

    # Keyed by (bill, line number) alone: a surrogate id would be a second index and a sequence
    # draw for every one of a million lines (~1.1 s of a 1M-line load's 3 s write), and nothing
    # refers to a line but through its bill.
    pk = models.CompositePrimaryKey("bill", "line_no")
    # No database-level constraint: a bill's lines are written only by its loader (COPY, in
    # batches of tens of thousands) and deleted with it, and a per-row foreign-key check would
    # cost about as much as the insert itself on a bill of millions of lines.
    bill = models.ForeignKey(
        ChannelBill, on_delete=models.CASCADE, related_name="lines", db_index=False, db_constraint=False
    )
    line_no = models.PositiveIntegerField()  # 1-based, in the order the channel listed them
    kind = models.CharField(max_length=10, choices=LineKind)
    channel_trade_no = models.CharField(max_length=64, blank=True, default="")
    payment_no = models.CharField(max_length=64, blank=True, default="")
    refund_request_no = models.CharField(max_length=64, blank=True, default="")  # the number the channel saw
    channel_refund_no = models.CharField(max_length=64, blank=True, default="")
    amount = models.BigIntegerField()  # minor units, positive
    fee = models.BigIntegerField(null=True, blank=True)  # minor units; positive charged, negative returned
    currency = models.CharField(max_length=3)
    status = models.CharField(max_length=32, blank=True, default="")  # the channel's own text
    trade_time = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.bill_id}#{self.line_no} {self.kind} {self.payment_no}"


class RunStatus(models.TextChoices):
    RUNNING = "RUNNING"
    SUCCEEDED = "SUCCEEDED"
    REFUSED = "REFUSED"  # the bill contradicted itself: nothing matched
    FAILED = "FAILED"  # not ready, unreachable or an error: nothing matched


class ReconciliationRun(models.Model):
    """One attempt at reconciling one account's day: load (or reuse) the bill, then match."""

    Status = RunStatus

    channel_account = models.ForeignKey("channels.ChannelAccount", on_delete=models.PROTECT, related_name="+")
    bill = models.ForeignKey(ChannelBill, on_delete=models.PROTECT, related_name="runs")
    bill_date = models.DateField()
    status = models.CharField(max_length=10, choices=RunStatus, default=RunStatus.RUNNING)
    trigger = models.CharField(max_length=20, blank=True, default="")  # sweep / command / ops
    actor = models.CharField(max_length=150, blank=True, default="")
    started_at = models.DateTimeField(auto_now_add=True, db_index=True)
    finished_at = models.DateTimeField(null=True, blank=True)
    load_seconds = models.FloatField(null=True, blank=True)
    match_seconds = models.FloatField(null=True, blank=True)
    reloaded = models.BooleanField(default=False)  # the bill was fetched in this run
    lines = models.PositiveIntegerField(default=0)
    matched = models.PositiveIntegerField(default=0)  # lines and local rows that agree
    held = models.PositiveIntegerField(default=0)  # local rows near midnight, awaited in the next bill
    discrepancies = models.PositiveIntegerField(default=0)  # found by this run (new or still there)
    new_discrepancies = models.PositiveIntegerField(default=0)
    auto_resolved = models.PositiveIntegerField(default=0)  # earlier ones this run no longer finds
    counts = models.JSONField(default=dict, blank=True)  # discrepancy kind -> count
    # Per currency: bill_payments, bill_refunds, bill_fees, local_payments, local_refunds,
    # matched_amount, discrepant_amount (minor units).
    totals = models.JSONField(default=dict, blank=True)
    fee_check = models.CharField(max_length=200, blank=True, default="")  # how line fees were checked
    error = models.TextField(blank=True, default="")

    class Meta:
        constraints = [models.CheckConstraint(condition=Q(status__in=RunStatus.values), name="run_status_valid")]
        indexes = [models.Index(fields=["channel_account", "bill_date"], name="run_account_date_idx")]

    def __str__(self) -> str:
        return f"run {self.pk} {self.channel_account_id}/{self.bill_date} {self.status}"


class ReconciledStamp(models.Model):
    """When a record was first matched by a bill, and by which run: a narrow side table.

    Stamped here rather than on a column of the payment or refund: updating a column of a
    million wide payment rows rewrites each row and every one of its ten indexes (no room on a
    bulk-filled page for a HOT update), measured at ~60 us a row, about 30x an INSERT here.
    ``selectors.payment_reconciled_at`` / ``refund_reconciled_at`` and ``with_reconciled_at`` are
    the reads. Migration 0002 copied the stamps of the old ``reconciled_at`` columns here;
    payments and refunds then dropped those columns.

    No database-level constraints, as for bill lines: rows are written only by a matching run's
    INSERT ... SELECT joined to the records themselves, and a per-row foreign-key check would
    cost about as much as the insert. Payments, refunds and runs are never deleted.
    """

    run = models.ForeignKey(
        ReconciliationRun,
        null=True,
        blank=True,
        on_delete=models.DO_NOTHING,
        db_constraint=False,
        db_index=False,
        related_name="+",
    )
    reconciled_at = models.DateTimeField()

    class Meta:
        abstract = True


PAYMENTS_PER_BLOCK = 64  # the bits of a bigint


class ReconciledPaymentBlock(ReconciledStamp):
    """The payments a run first matched, 64 payment ids to a row: payment ``64 * block + i``
    for each bit ``i`` set in ``bits``.

    A million matched payments are ~15,000 rows here. One row a payment cost a heap tuple and
    a primary-key entry each, a third of a million-line bill's match (0.7 s of 2.6 s); what a
    row stands for is the same: when, and by which run. A payment has its bit set in at most one
    row (a run stamps only what no row holds yet), and a block may have several rows (runs,
    payment shares of a run). ``selectors.payment_reconciled_at`` and ``with_reconciled_at``
    read them; migration 0005 folded the one-row-a-payment stamps into blocks.
    """

    block = models.BigIntegerField()  # payment_id // 64
    bits = models.BigIntegerField()

    class Meta:
        indexes = [models.Index(fields=["block"], name="reconciled_payment_block_idx")]

    def __str__(self) -> str:
        return f"payments of block {self.block} reconciled {self.reconciled_at}"


class ReconciledRefund(ReconciledStamp):
    """A refund's (or revocation's) stamp."""

    refund = models.OneToOneField(
        "refunds.Refund", primary_key=True, on_delete=models.CASCADE, db_constraint=False, related_name="+"
    )

    def __str__(self) -> str:
        return f"refund {self.refund_id} reconciled {self.reconciled_at}"


class DiscrepancyKind(models.TextChoices):
    MISSING_LOCALLY = "MISSING_LOCALLY", "missing locally (the channel moved money paycore does not show)"
    MISSING_AT_CHANNEL = "MISSING_AT_CHANNEL", "missing at the channel"
    AMOUNT_MISMATCH = "AMOUNT_MISMATCH", "amount mismatch"
    STATUS_MISMATCH = "STATUS_MISMATCH", "status mismatch"
    FEE_MISMATCH = "FEE_MISMATCH", "fee mismatch"
    DUPLICATE_LINE = "DUPLICATE_LINE", "duplicate lines"


class DiscrepancyStatus(models.TextChoices):
    OPEN = "OPEN"
    RESOLVED = "RESOLVED"
    IGNORED = "IGNORED"


class Discrepancy(TimeStampedModel):
    """Something the bill and paycore disagree on, for one account's day. Found again by a later
    run, it is the same row (``ref`` names what it is about); no longer found, it resolves."""

    Kind = DiscrepancyKind
    Status = DiscrepancyStatus

    channel_account = models.ForeignKey("channels.ChannelAccount", on_delete=models.PROTECT, related_name="+")
    bill_date = models.DateField()
    kind = models.CharField(max_length=20, choices=DiscrepancyKind)
    ref = models.CharField(max_length=100)  # P:<payment_no>, R:<refund number>, V:<payment_no>...
    line_kind = models.CharField(max_length=10, choices=LineKind, blank=True, default="")
    run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="found")
    last_run = models.ForeignKey(ReconciliationRun, on_delete=models.PROTECT, related_name="+")
    payment = models.ForeignKey("payments.Payment", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    refund = models.ForeignKey("refunds.Refund", null=True, blank=True, on_delete=models.PROTECT, related_name="+")
    payment_no = models.CharField(max_length=64, blank=True, default="", db_index=True)
    refund_no = models.CharField(max_length=64, blank=True, default="")  # the channel's request number
    channel_trade_no = models.CharField(max_length=64, blank=True, default="")
    channel_refund_no = models.CharField(max_length=64, blank=True, default="")
    currency = models.CharField(max_length=3, blank=True, default="")
    # Both sides, as each showed it (None: that side has nothing).
    channel_amount = models.BigIntegerField(null=True, blank=True)
    local_amount = models.BigIntegerField(null=True, blank=True)
    channel_status = models.CharField(max_length=32, blank=True, default="")
    local_status = models.CharField(max_length=20, blank=True, default="")
    channel_fee = models.BigIntegerField(null=True, blank=True)
    expected_fee = models.BigIntegerField(null=True, blank=True)
    line_count = models.PositiveIntegerField(default=0)  # lines the bill shows for it
    status = models.CharField(max_length=10, choices=DiscrepancyStatus, default=DiscrepancyStatus.OPEN)
    resolution_note = models.TextField(blank=True, default="")
    resolved_by = models.CharField(max_length=150, blank=True, default="")
    resolved_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name_plural = "discrepancies"
        constraints = [
            models.UniqueConstraint(
                fields=["channel_account", "bill_date", "kind", "ref"], name="discrepancy_account_date_kind_ref_uniq"
            ),
            models.CheckConstraint(condition=Q(kind__in=DiscrepancyKind.values), name="discrepancy_kind_valid"),
            models.CheckConstraint(condition=Q(status__in=DiscrepancyStatus.values), name="discrepancy_status_valid"),
            models.CheckConstraint(
                condition=Q(status="OPEN") | Q(resolved_at__isnull=False), name="discrepancy_closed_has_time"
            ),
        ]
        indexes = [models.Index(fields=["status", "kind"], name="discrepancy_status_kind_idx")]

    def __str__(self) -> str:
        return f"{self.kind} {self.ref} ({self.bill_date})"


class DiscrepancyAction(models.Model):
    """Every decision ops took on a discrepancy, with who took it: append-only."""

    discrepancy = models.ForeignKey(Discrepancy, on_delete=models.PROTECT, related_name="actions")
    action = models.CharField(max_length=30)  # apply_channel_truth / refund / resolve / ignore / reopen
    actor = models.CharField(max_length=150)
    note = models.TextField(blank=True, default="")
    outcome = models.TextField(blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["pk"]

    def __str__(self) -> str:
        return f"{self.action} by {self.actor}"
