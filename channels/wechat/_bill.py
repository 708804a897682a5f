"""WeChat Pay trade bill files (WeChat Pay API v3, "download the trade bill").

A bill is a detail header row, detail rows whose every cell starts with one backtick, then a
summary header (first cell ``总交易单数``) and one summary row. Column order differs between
``ALL``, ``SUCCESS``, ``REFUND`` and the legacy layout, so cells are read by header name only.
Amounts are yuan with two decimals and are converted to fen exactly; the fee column carries
five decimals and is rounded half-up to whole fen (the exact text stays in ``raw``).

The file is read as it streams in: bytes are hashed (the channel's SHA-1, over the gzip or the
plain text, since the docs do not say which; and SHA-256 for paycore's own digest), gunzipped
and decoded incrementally, and each row is yielded as soon as its line is complete. The summary
row is checked against the rows column by column, exactly (amounts in 1/100000 yuan), and the
hash once the stream has ended: a mismatch there means the rows already yielded are void.
"""

from __future__ import annotations

import codecs
import hashlib
import hmac
import zlib
from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal, InvalidOperation

from channels.base import Bill, BillInconsistent, BillRow, BillRowKind, BillSummary
from paycore import money

CURRENCY = "CNY"
BEIJING = timezone(timedelta(hours=8), "Asia/Shanghai")
SUMMARY_FIRST_CELL = "总交易单数"


class BillError(ValueError):
    """The bill cannot be read: the caller must not reconcile against a partial file."""


# 交易状态 -> the row kind; any other value raises.
_ROW_KINDS: dict[str, BillRowKind] = {
    "SUCCESS": BillRowKind.PAYMENT,
    "REFUND": BillRowKind.REFUND,
    "REVOKED": BillRowKind.REVOKED,
}

# Current and legacy spellings of the columns read, in order of preference.
_ORDER_AMOUNT = ("订单金额", "应结订单金额", "总金额")
_REFUND_AMOUNT = ("申请退款金额", "退款金额")

# Summary column -> the detail column it totals (current and legacy layouts). A summary column
# not listed here is kept in the summary's raw cells but not checked.
_SUMMARY_OF: dict[str, str] = {
    "应结订单总金额": "应结订单金额",
    "退款总金额": "退款金额",
    "充值券退款总金额": "充值券退款金额",
    "手续费总金额": "手续费",
    "订单总金额": "订单金额",
    "申请退款总金额": "申请退款金额",
    "总交易额": "总金额",
    "总退款金额": "退款金额",
    "总企业红包退款金额": "企业红包退款金额",
}
_EXACT_PLACES = 5  # the fee column's five decimals; two-decimal amounts fit too


def _check_hash_digests(digests: Iterable[hashlib._Hash], hash_type: str, hash_value: str) -> None:
    """The hash covers the downloaded bytes or, for gzip, the decompressed bytes (the docs do
    not say which, so either is accepted)."""
    if hash_type.upper() != "SHA1":
        raise BillError(f"unsupported bill hash_type {hash_type!r}")
    expected = hash_value.strip().lower().encode()
    for digest in digests:
        if hmac.compare_digest(digest.hexdigest().encode(), expected):
            return
    raise BillError("bill hash mismatch")


def yuan_to_fen(text: str) -> int:
    """``"9.90"`` -> ``990``; more than two significant decimals is an error, never rounded."""
    try:
        return money.decimal_to_minor(text.strip(), CURRENCY)
    except ValueError as exc:
        raise BillError(f"bad amount {text!r}: {exc}") from None


def fee_to_fen(text: str) -> int:
    """The fee column has five decimals (``"0.00540"``): rounded half-up to whole fen."""
    try:
        value = Decimal(text.strip())
    except InvalidOperation as exc:
        raise BillError(f"bad fee {text!r}") from exc
    if not value.is_finite():
        raise BillError(f"bad fee {text!r}")
    return int(value.scaleb(money.exponent(CURRENCY)).quantize(Decimal(1), rounding=ROUND_HALF_UP))


def _exact(text: str) -> int:
    """Yuan text with up to five decimals -> an integer of 1/100000 yuan, exactly."""
    negative = text[:1] == "-"
    whole, _, fraction = (text[1:] if negative else text).partition(".")
    if not whole.isdigit() or not (fraction.isdigit() or not fraction) or len(fraction) > _EXACT_PLACES:
        raise BillError(f"bad amount {text!r}")
    value = int(whole + fraction + "0" * (_EXACT_PLACES - len(fraction)))
    return -value if negative else value


def _cells(line: str) -> list[str]:
    """A row's cells without backticks: the format puts one before every cell to keep
    spreadsheets from reading numbers, and no value has one (ids, amounts, times and states
    are letters, digits and other punctuation)."""
    return [cell.replace("`", "").strip() for cell in line.split(",")]


def _fen(text: str) -> int:
    """Yuan with at most two decimals -> fen, exactly (a fraction of a fen is an error)."""
    units = _exact(text)
    if units % 1000:
        raise BillError(f"bad amount {text!r}: not a whole number of fen")
    return units // 1000


def _fee_fen(text: str) -> int:
    """The fee column's five decimals -> whole fen, rounded half-up (away from zero)."""
    units = _exact(text)
    whole, rest = divmod(abs(units), 1000)
    fen = whole + (1 if rest >= 500 else 0)
    return -fen if units < 0 else fen


class _RawRow(Mapping[str, str]):
    """A row's cells by header name, without building a dict per row."""

    __slots__ = ("_at", "_cells")

    def __init__(self, at: dict[str, int], cells: list[str]) -> None:
        self._at, self._cells = at, cells

    def __getitem__(self, name: str) -> str:
        return self._cells[self._at[name]]

    def __iter__(self) -> Iterator[str]:
        return iter(self._at)

    def __len__(self) -> int:
        return len(self._at)


class _Reader:
    """Bytes in, text lines out: hashing, gunzip and UTF-8 decoding as the bytes arrive."""

    def __init__(self) -> None:
        self.raw_sha1 = hashlib.sha1(usedforsecurity=False)
        self.plain_sha1 = hashlib.sha1(usedforsecurity=False)
        self.sha256 = hashlib.sha256()
        self.size = 0
        self._inflate: zlib._Decompress | None = None
        self._first = True
        self._decoder = codecs.getincrementaldecoder("utf-8-sig")()
        self._pending = ""

    def lines(self, chunks: Iterable[bytes]) -> Iterator[str]:
        for chunk in chunks:
            if not chunk:
                continue
            self.raw_sha1.update(chunk)
            self.sha256.update(chunk)
            self.size += len(chunk)
            if self._first:
                self._first = False
                if chunk[:2] == b"\x1f\x8b":
                    self._inflate = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
            yield from self._text(self._plain(chunk))
        if self._inflate is not None:
            if not self._inflate.eof:
                raise BillError("bad gzip bill: the stream ended early")
            yield from self._text(self._inflate.flush())
        yield from self._text(b"", final=True)
        if self._pending:
            yield self._pending
            self._pending = ""

    def _plain(self, chunk: bytes) -> bytes:
        if self._inflate is None:
            return chunk
        try:
            return self._inflate.decompress(chunk)
        except zlib.error as exc:
            raise BillError(f"bad gzip bill: {exc}") from None

    def _text(self, plain: bytes, *, final: bool = False) -> Iterator[str]:
        if self._inflate is not None:
            self.plain_sha1.update(plain)
        try:
            text = self._decoder.decode(plain, final)
        except UnicodeDecodeError as exc:
            raise BillError("bill is not UTF-8") from exc
        if not text:
            return
        parts = (self._pending + text).split("\n")
        self._pending = parts.pop()
        for part in parts:
            yield part.removesuffix("\r")


def read_bill(bill: Bill, chunks: Iterable[bytes], *, hash_type: str, hash_value: str) -> Iterator[BillRow]:
    """Rows of a streamed bill; sets ``bill.digest``, ``bill.size`` and ``bill.summary`` at the
    end, after the summary row and the hash have been checked."""
    reader = _Reader()
    yield from _parse_lines(bill, reader.lines(chunks))
    digests = [reader.raw_sha1] + ([reader.plain_sha1] if reader._inflate is not None else [])
    _check_hash_digests(digests, hash_type, hash_value)
    bill.digest, bill.size = reader.sha256.hexdigest(), reader.size


def parse_bill(data: bytes) -> Iterator[BillRow]:
    """Yield payment, refund and revoked rows of a whole plain bill (tests and tools); stop at
    the summary, which is checked against the rows."""
    bill = Bill(channel="wechat", bill_date=datetime.now(BEIJING).date(), bill_type="ALL", rows=lambda _: iter(()))
    reader = _Reader()
    yield from _parse_lines(bill, reader.lines([data]))


def _parse_lines(bill: Bill, lines: Iterator[str]) -> Iterator[BillRow]:
    header: list[str] | None = None
    parser: _RowParser | None = None
    number = 0
    for line in lines:
        number += 1
        if not line.strip():
            continue
        if header is None:
            header = _cells(line)
            if "交易状态" not in header or "商户订单号" not in header:
                raise BillError("bill header lacks 交易状态/商户订单号")
            parser = _RowParser(header)
            continue
        assert parser is not None
        cells = _cells(line)
        if cells[0] == SUMMARY_FIRST_CELL:
            summary_cells = _next_nonblank(lines)
            if summary_cells is None:
                raise BillError("bill has a summary header but no summary row: file truncated?")
            bill.summary = parser.check_summary(cells, _cells(summary_cells))
            for rest in lines:
                if rest.strip():
                    raise BillError("bill has lines after its summary row")
            return
        if len(cells) != len(header):
            raise BillError(f"bill line {number} has {len(cells)} cells, header has {len(header)}")
        yield parser.row(cells)
    if header is None:
        bill.summary = BillSummary(line_count=0)
        return
    raise BillError("bill has no summary row: file truncated?")


def _next_nonblank(lines: Iterator[str]) -> str | None:
    for line in lines:
        if line.strip():
            return line
    return None


class _RowParser:
    """Cells -> ``BillRow`` by header name, with running exact totals for the summary check."""

    def __init__(self, header: list[str]) -> None:
        self.header = header
        at = {name: i for i, name in enumerate(header)}
        self.at = at
        self.i_state, self.i_no = at["交易状态"], at["商户订单号"]
        self.i_time, self.i_trade = at.get("交易时间"), at.get("微信订单号")
        self.i_currency, self.i_fee = at.get("货币种类"), at.get("手续费")
        self.i_refund_no, self.i_channel_refund_no = at.get("商户退款单号"), at.get("微信退款单号")
        self.i_refund_state = at.get("退款状态")
        self.order_amounts = [at[n] for n in _ORDER_AMOUNT if n in at]
        self.refund_amounts = [at[n] for n in _REFUND_AMOUNT if n in at]
        self.summed = {name: at[name] for name in set(_SUMMARY_OF.values()) if name in at}
        self.totals = dict.fromkeys(self.summed, 0)
        self.count = 0

    @staticmethod
    def _cell(cells: list[str], index: int | None) -> str:
        return "" if index is None else cells[index]

    def row(self, cells: list[str]) -> BillRow:
        self.count += 1
        for name, index in self.summed.items():
            text = cells[index]
            if text and text != "0.00":
                self.totals[name] += _exact(text)
        state = cells[self.i_state]
        try:
            kind = _ROW_KINDS[state]
        except KeyError:
            raise BillError(f"unknown bill 交易状态 {state!r}") from None
        occurred = self._cell(cells, self.i_time)
        occurred_at = None
        if occurred:
            if len(occurred) != 19 or occurred[10] != " ":
                raise BillError(f"bad 交易时间 {occurred!r}")
            try:
                occurred_at = datetime.fromisoformat(occurred).replace(tzinfo=BEIJING)
            except ValueError as exc:
                raise BillError(f"bad 交易时间 {occurred!r}") from exc
        fee = self._cell(cells, self.i_fee)
        refund_no = channel_refund_no = None
        if kind is BillRowKind.REFUND:
            amount_text = next((cells[i] for i in self.refund_amounts if cells[i]), None)
            refund_no = self._cell(cells, self.i_refund_no) or None
            channel_refund_no = self._cell(cells, self.i_channel_refund_no) or None
            status = self._cell(cells, self.i_refund_state)
        else:
            amount_text = next((cells[i] for i in self.order_amounts if cells[i]), None)
            status = state
        if kind is BillRowKind.REVOKED:
            # The money went back under the order's own numbers (商户退款单号 = the order number).
            channel_refund_no = self._cell(cells, self.i_channel_refund_no) or None
        if amount_text is None:
            raise BillError(f"bill row for {cells[self.i_no]!r} has no amount column")
        return BillRow(
            kind=kind,
            payment_no=cells[self.i_no],
            channel_trade_no=self._cell(cells, self.i_trade),
            amount=_fen(amount_text),
            currency=self._cell(cells, self.i_currency) or CURRENCY,
            occurred_at=occurred_at,
            refund_no=refund_no,
            channel_refund_no=channel_refund_no,
            fee=_fee_fen(fee) if fee else None,
            status=status,
            raw=_RawRow(self.at, cells),
        )

    def check_summary(self, names: list[str], values: list[str]) -> BillSummary:
        """Every summary total the rows can be added up to must equal their sum, exactly."""
        if len(values) != len(names):
            raise BillError(f"bill summary has {len(values)} cells for {len(names)} names")
        raw = dict(zip(names, values, strict=True))
        declared_count = raw.get(SUMMARY_FIRST_CELL, "")
        if not declared_count.isdigit():
            raise BillError(f"bad 总交易单数 {declared_count!r}")
        problems = []
        if int(declared_count) != self.count:
            problems.append(f"总交易单数 {declared_count} but {self.count} rows")
        for name, value in raw.items():
            column = _SUMMARY_OF.get(name)
            if column is None or column not in self.totals or not value:
                continue
            if _exact(value) != self.totals[column]:
                shown = Decimal(self.totals[column]).scaleb(-_EXACT_PLACES)
                problems.append(f"{name} {value} but the rows add up to {shown}")
        if problems:
            raise BillInconsistent("wechat bill contradicts its summary: " + "; ".join(problems), code="BILL_SUMMARY")
        return BillSummary(line_count=self.count, raw=raw)
