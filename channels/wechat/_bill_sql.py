"""WeChat trade bills parsed by the database: the detail rows are handed over as CSV bytes while
they stream in, and SQL expressions say what each bill-line column is made of.

Parsing a million rows in Python (splitting, exact decimal checks, datetimes, re-formatting for
COPY) cost ~37 us a row, over ten times what PostgreSQL takes to COPY and convert the same file.
Here Python only does what needs the bytes in order: hashing (the channel's SHA-1 and paycore's
SHA-256), gunzip, the header row, finding the summary rows and checking them against the totals
the database adds up. The rules are ``_bill``'s: cells by header name, backticks and blanks
stripped, amounts in exact fen, fees rounded half-up to fen, Beijing times, the summary exact.
A row the SQL cannot convert makes the statement fail (the failing casts name the cell), and the
loader treats that as an unreadable bill, as ``_bill`` does.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Iterable, Iterator
from datetime import date
from decimal import Decimal

from channels.base import Bill, BillRow, BillSummary, ChannelUnavailable
from channels.wechat._bill import (
    _ORDER_AMOUNT,
    _REFUND_AMOUNT,
    _SUMMARY_OF,
    SUMMARY_FIRST_CELL,
    BillError,
    _cells,
    _check_hash_digests,
    _Reader,
    _RowParser,
    read_bill,
)

QUOTE = "\x01"  # the COPY's CSV quote: a byte no bill carries (checked), so cells split on commas only
_BOM = b"\xef\xbb\xbf"
_SUMMARY = SUMMARY_FIRST_CELL.encode()
_TAIL_LIMIT = 1 << 20  # bytes after the summary header: two short rows, in practice
_STATES = {"SUCCESS": "PAYMENT", "REFUND": "REFUND", "REVOKED": "REVOCATION"}
_BLANKS = "E' \\t\\r\\f'"  # what ``str.strip`` cuts from a cell, bar the rare ones
# 交易时间 (``time``) as Beijing time: the format's "YYYY-MM-DD HH:MM:SS" as it is (a LIKE tells it
# in two thirds of the time of length and substr), anything else cleaned of blanks first; empty
# is no time, any other shape is unreadable.
_TRADE_TIME = f"""CASE WHEN time LIKE '____-__-__ __:__:__' THEN (time || '+08')::timestamptz
            WHEN btrim(time, {_BLANKS}) = '' THEN NULL
            ELSE (CASE WHEN length(btrim(time, {_BLANKS})) = 19 AND substr(btrim(time, {_BLANKS}), 11, 1) = ' '
                       THEN btrim(time, {_BLANKS}) ELSE 'bad 交易时间 ' || time END || '+08')::timestamptz
       END"""


class StagedBill:
    """One streamed WeChat bill, for ``reconciliation.services.stage``: iterate ``detail()``
    for the detail rows (CSV, one per line, ``QUOTE`` never inside), then ``finish()`` with
    the totals the database added up. ``header`` is known once ``detail()`` yielded once."""

    quote = QUOTE

    def __init__(self, bill: Bill, chunks: Iterable[bytes], *, hash_type: str, hash_value: str) -> None:
        self.bill, self.chunks = bill, chunks
        self.hash_type, self.hash_value = hash_type, hash_value
        self.header: list[str] | None = None
        self._tail: bytes | None = None
        self._crlf: bool | None = None  # the detail rows' line ends (CRLF or LF), once a row is seen
        self._reader = _Reader()

    def detail(self) -> Iterator[bytes]:
        try:
            yield from self._detail()
        except BillError as exc:
            raise ChannelUnavailable(f"unusable wechat bill: {exc}", code="BILL_UNREADABLE") from None

    def _detail(self) -> Iterator[bytes]:
        pending = b""
        for plain in self._plain():
            if self._tail is not None:
                self._add_tail(plain)
                continue
            pending += plain
            end = pending.rfind(b"\n")
            if end < 0:
                if len(pending) > _TAIL_LIMIT:
                    raise BillError("bill line longer than 1 MB")
                continue
            part, pending = pending[: end + 1], pending[end + 1 :]
            if part := self._segment(part):
                yield part
            if self._tail is not None:  # the summary began: what follows it, in order, is the tail
                self._add_tail(pending)
                pending = b""
        if pending:
            if part := self._segment(pending + b"\n"):
                yield part
        digests = [self._reader.raw_sha1] + ([self._reader.plain_sha1] if self._reader._inflate is not None else [])
        _check_hash_digests(digests, self.hash_type, self.hash_value)
        self.bill.digest, self.bill.size = self._reader.sha256.hexdigest(), self._reader.size

    def _plain(self) -> Iterator[bytes]:
        """Decompressed bytes, every byte received hashed (as ``_Reader.lines``, without decoding)."""
        reader = self._reader
        for chunk in self.chunks:
            if not chunk:
                continue
            reader.raw_sha1.update(chunk)
            reader.sha256.update(chunk)
            if reader.size == 0 and chunk[:2] == b"\x1f\x8b":
                reader._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            reader.size += len(chunk)
            plain = reader._plain(chunk)
            if reader._inflate is not None:
                reader.plain_sha1.update(plain)
            yield plain
        if reader._inflate is not None:
            if not reader._inflate.eof:
                raise BillError("bad gzip bill: the stream ended early")
            rest = reader._inflate.flush()
            reader.plain_sha1.update(rest)
            yield rest

    def _add_tail(self, data: bytes) -> None:
        assert self._tail is not None
        self._tail += data
        if len(self._tail) > _TAIL_LIMIT:
            raise BillError("bill has lines after its summary row")

    def _segment(self, part: bytes) -> bytes:
        """Whole lines in; the detail rows among them out, ready for COPY."""
        if self.header is None:
            part = part.removeprefix(_BOM).lstrip(b" \t\r\n")
            if not part:
                return b""
            first, _, part = part.partition(b"\n")
            try:
                header = _cells(first.decode())
            except UnicodeDecodeError as exc:
                raise BillError("bill is not UTF-8") from exc
            if "交易状态" not in header or "商户订单号" not in header:
                raise BillError("bill header lacks 交易状态/商户订单号")
            self.header = header
        at = self._summary_at(part)
        if at >= 0:
            self._tail, part = part[at:], part[:at]
        lines = part.count(b"\n")
        part = self._line_ends(part, lines)
        if self.quote.encode() in part:
            raise BillError("bill has a control byte in a row")
        end = b"\r\n" if self._crlf else b"\n"
        if part[:1] != b"`" or part.count(b"\n`") != lines - 1:  # not every row starts as the format's do
            if part[:1] in (b"\r", b"\n", b" ", b"\t") or b"\n" + end in part or b"\n " in part or b"\n\t" in part:
                part = b"".join(line for line in part.splitlines(keepends=True) if line.strip())
        part = part.translate(None, b"`")  # as ``_cells`` reads cells: the SQL takes them as they are
        if part.startswith(b"\\." + end) or b"\n\\." + end in part:
            raise BillError("bill has a COPY end marker in a row")
        return part

    def _line_ends(self, part: bytes, lines: int) -> bytes:
        """Every line of ``part`` (``lines`` of them) ending as the bill's first detail row does,
        as COPY requires. WeChat ends lines with CRLF, which COPY reads as it reads LF; a bill
        that mixes them is rewritten. Rewriting every line end and looking for blank rows, on
        rows that all start with a backtick, was a third of the Python time of a 1M-line bill.
        As many CRs as lines are CRLF lines, without looking for the pairs (0.06 s against
        0.15 s a million lines): a CR elsewhere is one COPY refuses, rewritten or not."""
        crs = part.count(b"\r")
        if self._crlf is None and lines:
            self._crlf = crs == lines
        if self._crlf:
            return part if crs == lines else part.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
        return part.replace(b"\r\n", b"\n") if crs else part

    @staticmethod
    def _summary_at(part: bytes) -> int:
        """Where the summary header line starts (its first cell is 总交易单数), or -1."""
        start = 0
        while (found := part.find(_SUMMARY, start)) >= 0:
            line = part.rfind(b"\n", 0, found) + 1
            if part[line:found].strip(b" \t`") == b"":
                return line
            start = found + 1
        return -1

    # -- what the database does with the rows ------------------------------------------------

    def columns(self) -> list[str]:
        """The staging table's text columns, one per header cell."""
        assert self.header is not None
        return [f"c{i + 1}" for i in range(len(self.header))]

    def _bare(self, name: str) -> str:
        """A cell by header name as staged, its backticks gone ('' when the layout has no such
        column)."""
        assert self.header is not None
        return f"c{self.header.index(name) + 1}" if name in self.header else "''"

    def _cell(self, name: str) -> str:
        """A cell as ``_bill._cells`` reads it: its backticks and the blanks around it cut."""
        return f"btrim({self._bare(name)}, {_BLANKS})"

    def summed(self) -> list[str]:
        """The detail columns the summary totals, in the order ``lines_sql`` gives their values."""
        assert self.header is not None
        return sorted(name for name in set(_SUMMARY_OF.values()) if name in self.header)

    def lines_sql(self, stage: str, *, blank_numbers: bool = False) -> str:
        """SELECT n (the line number), kind, channel_trade_no, payment_no, refund_request_no,
        channel_refund_no, amount, fee, currency, status, trade_time, then the exact numeric
        value of each ``summed()`` column, from the staged cells: one pass gives the lines and
        what the summary is checked against. A bad cell fails a cast whose text names it.

        The staged cells have no backticks (``_segment`` deleted them, as ``_cells`` does);
        they are cleaned of blanks as ``_bill`` does, at the cost of a ``btrim`` only where
        WeChat's fixed format does not hold: a state, time or currency that is not one of the
        format's values is cleaned and looked at again, numbers are cast as they are (numeric
        input skips blanks, but a cell of blanks alone, which ``_bill`` takes for empty, fails
        its cast: the loader then converts those rows again with ``blank_numbers``, which cleans
        numbers fully), free-text numbers are cleaned, refund cells on refund lines only.
        Cleaning every cell with ``btrim`` cost 2.3 s of the 4.4 s conversion of 1M lines, and
        cutting each cell's backtick in SQL 0.7 s more than deleting them all in Python (0.13 s).
        ``OFFSET 0`` keeps the planner from pulling the subqueries up, which would repeat each
        cell's work at each use."""
        assert self.header is not None
        order = [n for n in _ORDER_AMOUNT if n in self.header]
        refunds = [n for n in _REFUND_AMOUNT if n in self.header]
        summed = self.summed()
        value = {name: f"s{i}" for i, name in enumerate(summed)}
        cut = self._cell if blank_numbers else self._bare
        numbers = ", ".join(f"nullif({cut(name)}, '')::numeric AS {value[name]}" for name in summed)
        states = ", ".join(f"'{s}'" for s in _STATES)
        kind = (
            "CASE state "
            + " ".join(f"WHEN '{s}' THEN '{k}'" for s, k in _STATES.items())
            + " ELSE ('unknown bill 交易状态 ' || state)::int::text END"
        )

        def first(columns: list[str]) -> str:
            return "coalesce(" + ", ".join([value[n] for n in columns] + ["NULL"]) + ")"

        fee = value.get("手续费", "NULL::numeric")
        refund_no, channel_refund_no = self._cell("商户退款单号"), self._cell("微信退款单号")
        return f"""
SELECT n, {kind} AS kind, trade_no, payment_no,
       CASE WHEN state = 'REFUND' THEN {refund_no} ELSE '' END AS refund_request_no,
       CASE WHEN state IN ('REFUND', 'REVOKED') THEN {channel_refund_no} ELSE '' END AS channel_refund_no,
       CASE WHEN yuan >= 0 AND yuan = trunc(yuan, 2) THEN (yuan * 100)::bigint
            ELSE ('bad bill amount ' || coalesce(yuan::text, 'missing'))::bigint END AS amount,
       CASE WHEN {fee} IS NULL THEN NULL WHEN scale({fee}) <= 5 THEN round({fee} * 100)::bigint
            ELSE ('bad fee ' || {fee})::bigint END AS fee,
       currency, left(CASE WHEN state = 'REFUND' THEN {self._cell("退款状态")} ELSE state END, 32) AS status,
       {_TRADE_TIME} AS trade_time{"".join(f", {v}" for v in value.values())}
FROM (
    SELECT *, CASE WHEN state = 'REFUND' THEN {first(refunds)} ELSE {first(order)} END AS yuan
    FROM (
        SELECT *, CASE WHEN raw_state IN ({states}) THEN raw_state ELSE btrim(raw_state, {_BLANKS}) END AS state,
               CASE WHEN octet_length(raw_currency) = 3 THEN raw_currency
                    ELSE coalesce(nullif(btrim(raw_currency, {_BLANKS}), ''), 'CNY') END AS currency
        FROM (
            SELECT n, {self._bare("交易状态")} AS raw_state, {self._bare("货币种类")} AS raw_currency,
                   {self._bare("交易时间")} AS time, {self._cell("微信订单号")} AS trade_no,
                   {self._cell("商户订单号")} AS payment_no{", " + numbers if numbers else ""}
                   {"".join(f", {c}" for c in self._refund_columns())}
            FROM {stage} OFFSET 0
        ) cells OFFSET 0
    ) states OFFSET 0
) typed"""  # noqa: S608 - built from the header's known names, never from cell values

    def _refund_columns(self) -> list[str]:
        """The staged columns of the cells read on refund lines only, passed through raw."""
        assert self.header is not None
        names = ("商户退款单号", "微信退款单号", "退款状态")
        return [f"c{self.header.index(name) + 1}" for name in names if name in self.header]

    def finish(self, *, count: int, totals: dict[str, Decimal]) -> None:
        """The summary rows, checked against the ``count`` rows and the exact ``totals`` of the
        ``summed()`` columns; sets ``bill.summary``. ``BillInconsistent`` when they disagree."""
        try:
            self.bill.summary = self._summary(count, totals)
        except BillError as exc:
            raise ChannelUnavailable(f"unusable wechat bill: {exc}", code="BILL_UNREADABLE") from None

    def _summary(self, count: int, totals: dict[str, Decimal]) -> BillSummary:
        if self.header is None:
            return BillSummary(line_count=0)
        if self._tail is None:
            raise BillError("bill has no summary row: file truncated?")
        try:
            text = self._tail.decode()
        except UnicodeDecodeError as exc:
            raise BillError("bill is not UTF-8") from exc
        lines = [line for line in text.split("\n") if line.strip()]
        if len(lines) < 2:
            raise BillError("bill has a summary header but no summary row: file truncated?")
        if len(lines) > 2:
            raise BillError("bill has lines after its summary row")
        parser = _RowParser(self.header)
        parser.count = count
        for name, value in totals.items():
            if value != int(value):
                raise BillError(f"bad amount in {name}: more than five decimals")
            parser.totals[name] = int(value)
        return parser.check_summary(_cells(lines[0]), _cells(lines[1]))


class StageableBill(Bill):
    """A bill that can be read either way: iterated for ``BillRow``s (any caller), or handed to
    the database with ``staged()`` (the reconciliation loader). Either, once."""

    def __init__(
        self, *, bill_date: date, rows: Callable[[Bill], Iterator[BillRow]], stage: Callable[[Bill], StagedBill]
    ):
        super().__init__(channel="wechat", bill_date=bill_date, bill_type="ALL", rows=rows)
        self._stage = stage

    def staged(self) -> StagedBill:
        if self._started:
            raise RuntimeError("a bill is read once")
        self._started = True
        return self._stage(self)


def wechat_bill(
    *, bill_date: date, chunks: Callable[[], Iterable[bytes]], hash_type: str, hash_value: str
) -> StageableBill:
    """The day's bill over a download that ``chunks()`` opens (called once, by whichever way
    the bill is read); ``BillError`` leaves as ``ChannelUnavailable`` either way."""

    def rows(bill: Bill) -> Iterator[BillRow]:
        try:
            yield from read_bill(bill, chunks(), hash_type=hash_type, hash_value=hash_value)
        except BillError as exc:
            raise ChannelUnavailable(f"unusable wechat bill: {exc}", code="BILL_UNREADABLE") from None

    def stage(bill: Bill) -> StagedBill:
        return StagedBill(bill, chunks(), hash_type=hash_type, hash_value=hash_value)

    return StageableBill(bill_date=bill_date, rows=rows, stage=stage)
