"""Loading a channel's bill: streamed from the adapter, written with COPY in batches, kept only
when the whole file read cleanly and adds up to its own summary.

The lines of a bill being (re)loaded are written under a bill that is not LOADED, so nothing
reads them until the load has finished; a load that fails part-way deletes what it wrote. No
database transaction or row lock is held while the channel streams the file.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

from django.db import DataError, IntegrityError, connection, transaction
from django.utils import timezone

from channels.base import Bill, BillInconsistent, BillRow, BillRowKind, BillSummary, ChannelUnavailable
from channels.services import adapter_for
from reconciliation.models import BillLine, ChannelBill
from reconciliation.services.phases import phase
from reconciliation.services.stage import stage_lines

log = logging.getLogger(__name__)

BATCH_LINES = 50_000  # lines per COPY statement (and per progress report)
_MAX_TEXT = 64  # every number column of BillLine
_KINDS = {
    BillRowKind.PAYMENT: BillLine.Kind.PAYMENT.value,
    BillRowKind.REFUND: BillLine.Kind.REFUND.value,
    BillRowKind.REVOKED: BillLine.Kind.REVOCATION.value,
}
_COLUMNS = (
    "bill_id",
    "line_no",
    "kind",
    "channel_trade_no",
    "payment_no",
    "refund_request_no",
    "channel_refund_no",
    "amount",
    "fee",
    "currency",
    "status",
    "trade_time",
)
_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})


@dataclass
class LineTotals:
    """What the stored lines add up to, per kind (refunds include revocations, as channels count)."""

    lines: int = 0
    payment_count: int = 0
    payment_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0
    fee_total: int | None = None
    # currency -> bill_payments / bill_refunds / bill_fees: the run's bill totals, kept on the
    # bill (``ChannelBill.line_totals``) so that the match does not add the lines up again.
    by_currency: dict[str, dict[str, int]] = field(default_factory=dict)

    def add(self, row: BillRow) -> None:
        self.lines += 1
        sums = self.by_currency.get(row.currency)
        if sums is None:
            sums = self.by_currency[row.currency] = {"bill_payments": 0, "bill_refunds": 0, "bill_fees": 0}
        if row.kind is BillRowKind.PAYMENT:
            self.payment_count += 1
            self.payment_amount += row.amount
            sums["bill_payments"] += row.amount
        else:
            self.refund_count += 1
            self.refund_amount += row.amount
            sums["bill_refunds"] += row.amount
        if row.fee is not None:
            self.fee_total = (self.fee_total or 0) + row.fee
            sums["bill_fees"] += row.fee

    def contradictions(self, summary: BillSummary | None) -> list[str]:
        """Each total the channel published that the lines do not add up to."""
        if summary is None:
            return []
        pairs = {
            "lines": (summary.line_count, self.lines),
            "payments": (summary.payment_count, self.payment_count),
            "payment amount": (summary.payment_amount, self.payment_amount),
            "refunds": (summary.refund_count, self.refund_count),
            "refund amount": (summary.refund_amount, self.refund_amount),
            "fees": (summary.fee_total, self.fee_total or 0),
        }
        return [
            f"{name}: the bill says {said}, its lines add up to {got}"
            for name, (said, got) in pairs.items()
            if said is not None and said != got
        ]


def _text(value: str | None) -> str:
    if value is None or value == "":
        return ""
    if len(value) > _MAX_TEXT:
        raise ChannelUnavailable(
            f"bill value longer than {_MAX_TEXT} characters: {value[:20]!r}...", code="BILL_UNREADABLE"
        )
    return value.translate(_ESCAPES)


class _CopySource:
    """A file-like object COPY reads from: up to ``limit`` rows of the bill, formatted as COPY
    text as they are asked for, so parsing (here) and inserting (the server) overlap."""

    def __init__(self, bill_id: int, rows: Iterator[BillRow], start: int, limit: int, totals: LineTotals) -> None:
        self.prefix = f"{bill_id}\t"
        self.rows, self.next_no, self.limit, self.totals = rows, start, limit, totals
        self.written = 0
        self.exhausted = False
        self.error: BaseException | None = None
        self._buffer = b""

    def _line(self, row: BillRow) -> str:
        self.totals.add(row)
        fee = "\\N" if row.fee is None else str(row.fee)
        when = "\\N" if row.occurred_at is None else row.occurred_at.isoformat()
        if row.amount < 0:
            raise ChannelUnavailable(f"bill amount {row.amount} is negative", code="BILL_UNREADABLE")
        return (
            f"{self.prefix}{self.next_no}\t{_KINDS[row.kind]}\t{_text(row.channel_trade_no)}\t{_text(row.payment_no)}\t"
            f"{_text(row.refund_no)}\t{_text(row.channel_refund_no)}\t{row.amount}\t{fee}\t{_text(row.currency)}\t"
            f"{_text(row.status[:32])}\t{when}\n"
        )

    def read(self, size: int = -1) -> bytes:
        try:
            return self._read(size)
        except BaseException as exc:  # psycopg2 reports it as a cancelled COPY: keep the cause
            self.error = exc
            raise

    def _read(self, size: int) -> bytes:
        want = 65536 if size is None or size < 0 else size
        parts = [self._buffer]
        have = len(self._buffer)
        while have < want and self.written < self.limit:
            row = next(self.rows, None)
            if row is None:
                self.exhausted = True
                break
            self.next_no += 1
            self.written += 1
            encoded = self._line(row).encode()
            parts.append(encoded)
            have += len(encoded)
        data = b"".join(parts)
        self._buffer = data[want:]
        return data[:want]

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only uses read(); here for completeness
        return self.read(size)


def _copy_lines(
    bill_id: int, rows: Iterator[BillRow], totals: LineTotals, progress: Callable[[int], None] | None
) -> None:
    """COPY the rows in batches of ``BATCH_LINES``, each committed on its own."""
    sql = f"COPY reconciliation_billline ({', '.join(_COLUMNS)}) FROM STDIN"
    written = 0
    while True:
        source = _CopySource(bill_id, rows, written, BATCH_LINES, totals)
        try:
            with transaction.atomic(), connection.cursor() as cursor, connection.wrap_database_errors:
                cursor.cursor.copy_expert(sql, source, size=65536)
        except Exception:
            if source.error is not None:
                raise source.error from None  # the bill's own error, not the COPY it cancelled
            raise
        written += source.written
        if progress is not None and source.written:
            progress(written)
        if source.exhausted or source.written < BATCH_LINES:
            return


def _delete_lines(bill_id: int) -> None:
    with phase("load.delete"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("DELETE FROM reconciliation_billline WHERE bill_id = %s", [bill_id])


def bill_fetch(*, bill_id: int) -> Bill:
    """Ask the channel for the bill (raises ``BillNotReady`` / ``ChannelUnavailable``); nothing
    is read or written yet."""
    row = ChannelBill.objects.select_related("channel_account").get(pk=bill_id)
    return adapter_for(row.channel_account).fetch_bill(row.bill_date)


def bill_load(*, bill_id: int, bill: Bill | None = None, progress: Callable[[int], None] | None = None) -> ChannelBill:
    """Load (or reload) one bill: LOADED with every line, or REFUSED with none.

    The caller holds the bill's reconciliation lock (``services.run``). Transient failures
    (the channel unreachable, a download that broke off or failed its hash) delete what was
    written and raise, leaving the bill PENDING for the sweep to try again; so does a bill the
    database cannot read (``BILL_UNREADABLE``: a cell that does not convert, a row of too few
    cells, a value too long for its column), whichever way it was parsed.
    """
    if bill is None:
        bill = bill_fetch(bill_id=bill_id)
    with transaction.atomic(durable=True):
        ChannelBill.objects.filter(pk=bill_id).update(status=ChannelBill.Status.PENDING, updated_at=timezone.now())
    _delete_lines(bill_id)
    totals = LineTotals()
    staged = getattr(bill, "staged", None)  # the adapter can hand the file to the database to parse
    try:
        if staged is not None:
            kept = stage_lines(bill_id, staged(), progress)
            totals = LineTotals(kept.lines, kept.payment_count, kept.payment_amount, kept.refund_count)
            totals.refund_amount, totals.fee_total = kept.refund_amount, kept.fee_total
            totals.by_currency = kept.by_currency
        else:
            with phase("load.parse+copy"):
                _copy_lines(bill_id, iter(bill), totals, progress)
        problems = totals.contradictions(bill.summary)
        if problems:
            raise BillInconsistent("; ".join(problems), code="BILL_SUMMARY")
    except BillInconsistent as exc:
        _delete_lines(bill_id)
        log.error("bill %s (%s %s) refused: %s", bill_id, bill.channel, bill.bill_date, exc.message)
        return _finish(bill_id, bill, totals, status=ChannelBill.Status.REFUSED, reason=exc.message)
    except (DataError, IntegrityError) as exc:  # a cell that does not convert, a value a column refuses
        _delete_lines(bill_id)
        message = str(exc).strip().splitlines()[0]
        raise ChannelUnavailable(f"unreadable bill: {message}", code="BILL_UNREADABLE") from None
    except BaseException:
        _delete_lines(bill_id)
        raise
    _analyze_lines()
    with phase("load.finish"):
        return _finish(bill_id, bill, totals, status=ChannelBill.Status.LOADED, reason="")


def _analyze_lines() -> None:
    """Fresh statistics for the lines just loaded, so the match's plans do not depend on
    whether autovacuum happened to analyze a million new rows first. What the match's plans
    need (rows per bill and kind, how many distinct numbers) a sample of 3,000 rows tells as
    well as the default 30,000, and the columns it joins and filters on are enough: 20 ms
    instead of 230-550 ms at 1M lines, while nothing else runs."""
    with phase("load.analyze"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL default_statistics_target = 10")
        cursor.execute(
            "ANALYZE reconciliation_billline (bill_id, kind, payment_no, refund_request_no, channel_refund_no)"
        )


@transaction.atomic(durable=True)
def _finish(bill_id: int, bill: Bill, totals: LineTotals, *, status: str, reason: str) -> ChannelBill:
    row = ChannelBill.objects.select_for_update().get(pk=bill_id)
    summary = bill.summary or BillSummary()
    kept = status == ChannelBill.Status.LOADED
    if kept and row.digest and row.digest != bill.digest:
        log.warning("bill %s: the channel republished it (digest %s -> %s)", bill_id, row.digest[:12], bill.digest[:12])
    fields: dict[str, Any] = {
        "status": status,
        "bill_type": bill.bill_type,
        "digest": bill.digest,
        "size": bill.size,
        "line_count": totals.lines if kept else 0,
        "payment_count": totals.payment_count if kept else 0,
        "payment_amount": totals.payment_amount if kept else 0,
        "refund_count": totals.refund_count if kept else 0,
        "refund_amount": totals.refund_amount if kept else 0,
        "fee_total": totals.fee_total if kept else None,
        "line_totals": totals.by_currency if kept else None,
        "declared_line_count": summary.line_count,
        "declared_payment_count": summary.payment_count,
        "declared_payment_amount": summary.payment_amount,
        "declared_refund_count": summary.refund_count,
        "declared_refund_amount": summary.refund_amount,
        "declared_fee_total": summary.fee_total,
        "declared_summary": dict(summary.raw),
        "refuse_reason": reason,
        "loaded_at": timezone.now(),
    }
    for name, value in fields.items():
        setattr(row, name, value)
    row.save(update_fields=[*fields, "updated_at"])
    return row
