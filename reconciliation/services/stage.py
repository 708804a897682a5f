"""Loading a bill the database parses: the adapter streams the detail rows as CSV bytes, cut
into chunks of whole lines; each chunk is COPYed into a temporary table of text cells (no WAL)
and one statement converts its cells with the adapter's SQL, inserts the bill lines and adds up
the summary's totals from the same conversion.

Measured on the bench's WeChat bill: parsing in Python cost ~37 us a line, more than ten times
COPY's own work; here Python only hashes, gunzips and finds the header and summary rows. The
conversion is the load's main cost (8.4 s of CPU in PostgreSQL for 1M lines, against 2 s to COPY
them) and one backend uses one core, so ``RECONCILIATION_LOAD_WORKERS`` threads, each with its
own connection and temporary table, take chunks in turn: while one converts, the next chunk is
being read and COPYed (1M lines: 9.6 s on one connection, ~5 s on two, on 2 cores).

A bill whose cells do not convert (a failed cast, a missing cell) is unreadable, as when parsed
in Python. Each chunk commits its own lines: a bill whose summary disagrees with the totals, or
that fails part-way, leaves lines the loader deletes (``load.bill_load``) under a bill that is
not LOADED, so nothing reads them meanwhile.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Protocol

from django.conf import settings
from django.db import DataError, connection, transaction

from channels.base import ChannelUnavailable
from reconciliation.services.parallel import Helpers
from reconciliation.services.phases import add, phase

STAGE = "recon_stage"  # a temporary table: each connection's own, gone with it
# Per chunk: one COPY and one conversion, in one short transaction. Small, as the last chunk
# converts while the other connections have nothing left to do (1M lines: 16 MB chunks loaded in
# 3.22-3.45 s, 4 MB ones in 3.21-3.25 s).
CHUNK_BYTES = 4 << 20
# A chunk's conversion is kept in memory for its two readers up to this much (the default 4 MB
# would write the converted lines to a temporary file and read them back).
CONVERT_WORK_MEM = "256MB"


class StagedBill(Protocol):
    """What an adapter's bill offers to be parsed by the database (``channels.wechat._bill_sql``)."""

    quote: str
    header: list[str] | None

    def detail(self) -> Iterator[bytes]: ...
    def columns(self) -> list[str]: ...
    def summed(self) -> list[str]: ...
    def lines_sql(self, stage: str, *, blank_numbers: bool = False) -> str: ...
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


def load_workers() -> int:
    """How many connections convert a bill's chunks at once (``RECONCILIATION_LOAD_WORKERS``)."""
    return max(1, settings.RECONCILIATION_LOAD_WORKERS)


@dataclass
class _Chunk:
    """Whole detail lines ``first + 1`` to ``first + lines`` of the bill, as COPY reads them."""

    first: int
    lines: int
    parts: list[bytes]

    def read(self, size: int = -1) -> bytes:
        if not self.parts:
            return b""
        if size is None or size < 0:
            data, self.parts = b"".join(self.parts), []
            return data
        taken, have = [], 0
        while self.parts and have < size:
            part = self.parts.pop(0) if len(self.parts[0]) <= size - have else self._split(size - have)
            taken.append(part)
            have += len(part)
        return b"".join(taken)

    def _split(self, at: int) -> bytes:
        head, self.parts[0] = self.parts[0][:at], self.parts[0][at:]
        return head

    def readline(self, size: int = -1) -> bytes:  # psycopg2 only uses read(); here for completeness
        return self.read(size)


class _Feed:
    """The bill's detail parts handed out in order, a chunk at a time, to whichever worker asks;
    reading (hashing, gunzip, splitting) happens under the lock, so it stays in file order."""

    def __init__(self, parts: Iterator[bytes], first: bytes, progress: Callable[[int], None] | None) -> None:
        self.parts: Iterator[bytes] | None = parts
        self.pending, self.progress = first, progress
        self.lock = threading.Lock()
        self.handed = 0  # lines handed out so far
        self.loaded = 0  # lines converted and committed so far
        self.failed = False  # a worker failed: the others stop taking chunks
        self.rows: list[tuple] = []  # each chunk's totals per currency (``_insert_sql``)

    def take(self) -> _Chunk | None:
        with self.lock:
            if self.failed or self.parts is None:
                return None
            parts, size = ([self.pending], len(self.pending)) if self.pending else ([], 0)
            self.pending = b""
            started = time.perf_counter()
            try:
                while size < CHUNK_BYTES:
                    part = next(self.parts, None)
                    if part is None:
                        self.parts = None  # read to the end: the adapter checked the file's hash
                        break
                    parts.append(part)
                    size += len(part)
            finally:
                add("load.read", time.perf_counter() - started)
            if not parts:
                return None
            lines = sum(part.count(b"\n") for part in parts)
            chunk = _Chunk(self.handed, lines, parts)
            self.handed += lines
            return chunk

    def done(self, chunk: _Chunk, rows: list[tuple]) -> None:
        with self.lock:
            self.rows.extend(rows)
            self.loaded += chunk.lines
            if self.progress is not None:
                self.progress(self.loaded)


def stage_lines(bill_id: int, staged: StagedBill, progress: Callable[[int], None] | None) -> Kept:
    """Stage, check against the summary, then keep the lines of bill ``bill_id``; returns what
    the kept lines add up to, per currency too (added up as they are inserted, for the match).
    ``BillInconsistent``, ``ChannelUnavailable`` and the database's ``DataError`` (a cell that
    does not convert) leave as they came, with lines of the bill possibly written: the caller
    deletes them."""
    parts = staged.detail()
    with phase("load.read"):
        first = next(parts, b"")
    if staged.header is None:  # an empty file: no header, no rows, no summary
        for _ in parts:
            pass
        staged.finish(count=0, totals={})
        return Kept()
    feed = _Feed(parts, first, progress)
    worker = _Worker(bill_id, staged, feed)
    workers = load_workers()
    with phase("load.stage"), Helpers([worker.work] * workers) as helpers:
        helpers.results()
    summed = staged.summed()
    merged: dict[str, list] = {}
    for row in feed.rows:  # per chunk and currency: lines, payments, amount, refunds, amount, fees, summed...
        into = merged.setdefault(row[0], [row[0], 0, 0, 0, 0, 0, None, *([Decimal(0)] * len(summed))])
        for i in range(1, len(row)):
            if row[i] is not None:
                into[i] = (into[i] or 0) + row[i]
    totals = {name: sum((row[7 + i] for row in merged.values()), Decimal(0)) for i, name in enumerate(summed)}
    staged.finish(count=feed.loaded, totals=totals)  # BillInconsistent when the summary disagrees
    return Kept.of([tuple(row[:7]) for row in merged.values()])


class _Worker:
    """Takes chunks from the feed until it is empty: COPYs each into this connection's
    temporary table, converts and inserts its lines and adds them up, and commits."""

    def __init__(self, bill_id: int, staged: StagedBill, feed: _Feed) -> None:
        self.bill_id, self.staged, self.feed = bill_id, staged, feed
        columns = ", ".join(staged.columns())
        quote = f"E'\\x{ord(staged.quote):02x}'"
        self.copy_sql = (
            f"COPY {STAGE} ({columns}) FROM STDIN WITH (FORMAT csv, DELIMITER ',', QUOTE {quote}, "
            f"FORCE_NOT_NULL ({columns}))"
        )
        self.lines_sql = staged.lines_sql(STAGE)
        self.lines_sql_blank_numbers = staged.lines_sql(STAGE, blank_numbers=True)

    def work(self) -> None:
        cells = ", ".join(f"{c} text" for c in self.staged.columns())
        with connection.cursor() as cursor:
            cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")
            cursor.execute(f"CREATE TEMP TABLE {STAGE} (n bigint GENERATED ALWAYS AS IDENTITY, {cells})")
        try:
            while (chunk := self.feed.take()) is not None:
                self._keep(chunk)
        except BaseException:
            self.feed.failed = True
            raise
        finally:
            with connection.cursor() as cursor:
                cursor.execute(f"DROP TABLE IF EXISTS {STAGE}")

    def _keep(self, chunk: _Chunk) -> None:
        with transaction.atomic(), connection.cursor() as cursor:
            with phase("load.copy"):
                cursor.execute(f"TRUNCATE {STAGE} RESTART IDENTITY")
                with connection.wrap_database_errors:  # a row of too few or many cells: a DataError
                    cursor.cursor.copy_expert(self.copy_sql, chunk, size=1 << 20)
            if cursor.cursor.rowcount != chunk.lines:  # the numbering below relies on it
                raise ChannelUnavailable(
                    f"unreadable bill: {cursor.cursor.rowcount} rows in {chunk.lines} lines", code="BILL_UNREADABLE"
                )
            with phase("load.convert+insert"):
                cursor.execute(f"SET LOCAL work_mem = '{CONVERT_WORK_MEM}'")
                try:
                    with transaction.atomic():  # a savepoint: a number cell of blanks alone fails the fast cast
                        cursor.execute(_insert_sql(self.bill_id, chunk.first, self.lines_sql, self.staged.summed()))
                except DataError:  # once more, numbers cleaned fully: a cell that still fails is unreadable
                    sql = self.lines_sql_blank_numbers
                    cursor.execute(_insert_sql(self.bill_id, chunk.first, sql, self.staged.summed()))
                rows = cursor.fetchall()
        self.feed.done(chunk, rows)


def _insert_sql(bill_id: int, first: int, lines_sql: str, summed: list[str]) -> str:
    """One pass over a chunk's staged cells, its lines numbered from ``first + 1``: the
    adapter's conversion (``lines_sql``), kept once (``MATERIALIZED``) for the INSERT and for
    one aggregate by currency of what the lines add up to and of the ``summed`` columns' exact
    totals (in 1/100000), which the summary is checked against. More than five decimals in a
    summed cell fails a cast (``_bill`` refuses it as well): a numeric sum has the largest
    scale of its terms, so the sum's scale says so without a ``max(scale())`` per cell (0.4 s
    of CPU at 1M lines). Summing the cells in a pass of their own, before the INSERT, cost
    1.5-2.2 s at 1M lines; adding up the INSERT's RETURNING rows, ~0.5 s more."""
    totals = "".join(
        f", CASE WHEN scale(sum(s{i})) > 5 THEN ('bad amount in {name}: sum ' || sum(s{i}))::numeric "
        f"ELSE coalesce(sum(s{i}), 0) * 100000 END"
        for i, name in enumerate(summed)
    )
    return f"""
WITH typed AS MATERIALIZED ({lines_sql}),
kept AS (
    INSERT INTO reconciliation_billline (bill_id, line_no, kind, channel_trade_no, payment_no, refund_request_no,
                                         channel_refund_no, amount, fee, currency, status, trade_time)
    SELECT {int(bill_id)}, n + {int(first)}, kind, trade_no, payment_no, refund_request_no, channel_refund_no,
           amount, fee, currency, status, trade_time
    FROM typed
)
SELECT currency, count(*), count(*) FILTER (WHERE kind = 'PAYMENT'),
       coalesce(sum(amount) FILTER (WHERE kind = 'PAYMENT'), 0)::bigint, count(*) FILTER (WHERE kind <> 'PAYMENT'),
       coalesce(sum(amount) FILTER (WHERE kind <> 'PAYMENT'), 0)::bigint, sum(fee)::bigint{totals}
FROM typed GROUP BY currency
"""  # noqa: S608 - built from the header's known names and the bill's id, never from cell values
