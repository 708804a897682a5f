"""Loading a bill the database parses: the adapter streams the detail rows as CSV bytes into a
temporary table of text cells (COPY, no WAL), then one statement converts the cells with the
adapter's SQL, inserts the bill lines and adds up the summary's totals from the same conversion.

Measured on the bench's WeChat bill: parsing in Python cost ~37 us a line, more than ten times
COPY's own work; here Python only hashes, gunzips and finds the header and summary rows. A bill
whose cells do not convert (a failed cast, a missing cell) is unreadable, as when parsed in
Python; a bill whose summary disagrees with the totals is refused inside the statement's
transaction, so none of its lines is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from django.db import DataError, IntegrityError, connection, transaction

from channels.base import ChannelUnavailable
from reconciliation.services.phases import add, phase

STAGE = "recon_stage"  # a temporary table: this session's own, gone with it
COPY_BYTES = 32 << 20  # per COPY statement, each its own short transaction
# The conversion is kept in memory for its two readers up to this much (the default 4 MB would
# write a million converted lines to a temporary file and read them back).
CONVERT_WORK_MEM = "256MB"


class StagedBill(Protocol):
    """What an adapter's bill offers to be parsed by the database (``channels.wechat._bill_sql``)."""

    quote: str
    header: list[str] | None

    def detail(self) -> Iterator[bytes]: ...
    def columns(self) -> list[str]: ...
    def summed(self) -> list[str]: ...
    def lines_sql(self, stage: str) -> str: ...
    def finish(self, *, count: int, totals: dict[str, Decimal]) -> None: ...


@dataclass(frozen=True)
class Kept:
    """What the kept lines add up to (refunds include revocations, as channels count)."""

    lines: int = 0
    payment_count: int = 0
    payment_amount: int = 0
    refund_count: int = 0
    refund_amount: int = 0
    fee_total: int | None = None  # None: no line shows a fee
    # currency -> bill_payments / bill_refunds / bill_fees, as the match reports them
    by_currency: dict[str, dict[str, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, rows: list[tuple[str, int, int, int, int, int, int | None]]) -> Kept:
        """Per currency rows (currency, lines, payments, their amount, refunds, theirs, fees) summed."""
        fees = [row[6] for row in rows if row[6] is not None]
        return cls(
            lines=sum(row[1] for row in rows),
            payment_count=sum(row[2] for row in rows),
            payment_amount=sum(row[3] for row in rows),
            refund_count=sum(row[4] for row in rows),
            refund_amount=sum(row[5] for row in rows),
            fee_total=sum(fees) if fees else None,
            by_currency={
                currency: {"bill_payments": paid, "bill_refunds": refunded, "bill_fees": fee or 0}
                for currency, _, _, paid, _, refunded, fee in rows
            },
        )


class _Source:
    """A file-like object COPY reads: up to ``limit`` bytes of whole detail parts."""

    def __init__(self, parts: Iterator[bytes], first: bytes, limit: int) -> None:
        self.parts, self.limit = parts, limit
        self.buffer = first
        self.sent = self.lines = 0
        self.reading = 0.0  # seconds spent in Python producing the bytes (hash, gunzip, split)
        self.exhausted = False
        self.error: BaseException | None = None

    def read(self, size: int = -1) -> bytes:
        try:
            return self._read(size)
        except BaseException as exc:  # psycopg2 reports it as a cancelled COPY: keep the cause
            self.error = exc
            raise

    def _read(self, size: int) -> bytes:
        want = 1 << 20 if size is None or size < 0 else size
        while len(self.buffer) < want and self.sent < self.limit:
            started = time.perf_counter()
            part = next(self.parts, None)
            self.reading += time.perf_counter() - started
            if part is None:
                self.exhausted = True
                break
            self.sent += len(part)
            self.lines += part.count(b"\n")
            self.buffer += part
        data, self.buffer = self.buffer[:want], self.buffer[want:]
        return data

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only uses read(); here for completeness
        return self.read(size)


def _copy(staged: StagedBill, parts: Iterator[bytes], first: bytes, progress: Callable[[int], None] | None) -> None:
    columns = ", ".join(staged.columns())
    sql = (
        f"COPY {STAGE} ({columns}) FROM STDIN WITH (FORMAT csv, DELIMITER ',', QUOTE E'\\x{ord(staged.quote):02x}', "
        f"FORCE_NOT_NULL ({columns}))"
    )
    copied = 0
    source = _Source(parts, first, COPY_BYTES)
    while True:
        started = time.perf_counter()
        try:
            with transaction.atomic(), connection.cursor() as cursor:
                cursor.cursor.copy_expert(sql, source, size=1 << 20)
        except Exception:
            if source.error is not None:
                raise source.error from None  # the bill's own error, not the COPY it cancelled
            raise
        finally:
            add("load.read", source.reading)
            add("load.copy", time.perf_counter() - started - source.reading)
        copied += source.lines
        if progress is not None:
            progress(copied)
        if source.exhausted:
            return
        source = _Source(parts, b"", COPY_BYTES)  # each COPY took all it read: whole lines


def stage_lines(bill_id: int, staged: StagedBill, progress: Callable[[int], None] | None) -> Kept:
    """Stage, check against the summary, then keep the lines of bill ``bill_id``; returns what
    the kept lines add up to, per currency too (added up as they are inserted, for the match).
    ``BillInconsistent`` (nothing kept) and ``ChannelUnavailable`` leave as they came."""
    parts = staged.detail()
    with phase("load.read"):
        first = next(parts, b"")
    if staged.header is None:  # an empty file: no header, no rows, no summary
        for _ in parts:
            pass
        staged.finish(count=0, totals={})
        return Kept()
    with connection.cursor() as cursor:
        cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")
        cells = ", ".join(f"{c} text" for c in staged.columns())
        cursor.execute(f"CREATE TEMP TABLE {STAGE} (n bigint GENERATED ALWAYS AS IDENTITY, {cells})")
    try:
        return _keep(bill_id, staged, parts, first, progress)
    except (DataError, IntegrityError) as exc:
        message = str(exc).strip().splitlines()[0]
        raise ChannelUnavailable(f"unreadable bill: {message}", code="BILL_UNREADABLE") from None
    finally:
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")


def _keep(
    bill_id: int, staged: StagedBill, parts: Iterator[bytes], first: bytes, progress: Callable[[int], None] | None
) -> Kept:
    _copy(staged, parts, first, progress)
    summed = staged.summed()
    with phase("load.convert+insert"), transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(f"SET LOCAL work_mem = '{CONVERT_WORK_MEM}'")
        cursor.execute(_insert_sql(bill_id, staged.lines_sql(STAGE), summed))
        rows = cursor.fetchall()  # per currency: what its lines add up to, then its summed totals
        totals = {name: sum((row[7 + i] for row in rows), Decimal(0)) for i, name in enumerate(summed)}
        # A bill refused here (BillInconsistent) leaves the transaction: its lines roll back.
        staged.finish(count=sum(row[1] for row in rows), totals=totals)
        return Kept.of([row[:7] for row in rows])


def _insert_sql(bill_id: int, lines_sql: str, summed: list[str]) -> str:
    """One pass over the staged cells: the adapter's conversion (``lines_sql``), kept once
    (``MATERIALIZED``) for the INSERT and for one aggregate by currency of what the lines add
    up to and of the ``summed`` columns' exact totals (in 1/100000), which the summary is checked
    against. More than five decimals in a summed cell fails a cast (``_bill`` refuses it as
    well). Summing the cells in a pass of their own, before the INSERT, cost 1.5-2.2 s at 1M
    lines; adding up the INSERT's RETURNING rows, ~0.5 s more."""
    totals = "".join(
        f", CASE WHEN max(scale(s{i})) > 5 THEN ('bad amount in {name}: ' || max(s{i}))::numeric "
        f"ELSE coalesce(sum(s{i}), 0) * 100000 END"
        for i, name in enumerate(summed)
    )
    return f"""
WITH typed AS MATERIALIZED ({lines_sql}),
kept AS (
    INSERT INTO reconciliation_billline (bill_id, line_no, kind, channel_trade_no, payment_no, refund_request_no,
                                         channel_refund_no, amount, fee, currency, status, trade_time)
    SELECT {int(bill_id)}, n, kind, trade_no, payment_no, refund_request_no, channel_refund_no, amount, fee, currency,
           status, trade_time
    FROM typed
)
SELECT currency, count(*), count(*) FILTER (WHERE kind = 'PAYMENT'),
       coalesce(sum(amount) FILTER (WHERE kind = 'PAYMENT'), 0)::bigint, count(*) FILTER (WHERE kind <> 'PAYMENT'),
       coalesce(sum(amount) FILTER (WHERE kind <> 'PAYMENT'), 0)::bigint, sum(fee)::bigint{totals}
FROM typed GROUP BY currency
"""  # noqa: S608 - built from the header's known names and the bill's id, never from cell values
