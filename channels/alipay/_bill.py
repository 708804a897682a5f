"""Alipay ``trade`` bills: a zip of GBK CSV files (Alipay OpenAPI,
``alipay.data.dataservice.bill.downloadurl.query``).

The detail file is found by its first line, not its name. ``#`` lines are comments; the line
after the "业务明细列表" marker is the header and data runs to the "业务明细列表结束" marker. Cells
are trimmed (ids carry a trailing tab so spreadsheets keep them intact) and read by header name.
Refund rows carry negative amounts and the refund's ``out_request_no`` in 退款批次号/请求号.

A zip keeps its directory at its end, so the download is streamed to a temporary file (disk,
not memory) and the detail member is then decoded and parsed row by row from it. The footer
(交易合计 / 退款合计: counts and 商家实收 totals) and the summary file (合计 row: counts, 订单金额
and 服务费 totals) are checked against the rows exactly; a bill that contradicts them is
``BillInconsistent``.
"""

from __future__ import annotations

import csv
import hashlib
import io
import re
import tempfile
import zipfile
from collections.abc import Iterable, Iterator
from datetime import date
from typing import IO

from channels.alipay._wire import CURRENCY, fen, parse_time
from channels.base import (
    Bill,
    BillInconsistent,
    BillRow,
    BillRowKind,
    BillSummary,
    ChannelUnavailable,
    map_status,
)

_DETAIL_FIRST_LINE = "#支付宝业务明细查询"
_SUMMARY_FIRST_LINE = "#支付宝业务汇总查询"
_LIST_START, _LIST_END = "业务明细列表", "业务明细列表结束"
_SUMMARY_START, _SUMMARY_END = "业务汇总列表", "业务汇总列表结束"
_BILL_KIND = {"交易": BillRowKind.PAYMENT, "退款": BillRowKind.REFUND}
_REVOCATION_NOTE = "交易撤销"
_PAID_FOOTER = re.compile(r"#交易合计：(\d+)笔，商家实收共(-?[0-9.]+)元")
_REFUND_FOOTER = re.compile(r"#退款合计：(\d+)笔，商家实收退款共(-?[0-9.]+)元")
_AMOUNT = ("订单金额（元）", "订单金额(元)")
_RECEIVED = ("商家实收（元）", "商家实收(元)")
_FEE = ("服务费（元）", "服务费(元)")
_MAX_ARCHIVE_BYTES = 4 * 1024**3


def read_bill(bill: Bill, chunks: Iterable[bytes]) -> Iterator[BillRow]:
    """Spool the streamed zip to a temporary file, then yield the detail rows from it."""
    digest, size = hashlib.sha256(), 0
    with tempfile.TemporaryFile() as spool:
        for chunk in chunks:
            digest.update(chunk)
            size += len(chunk)
            if size > _MAX_ARCHIVE_BYTES:
                raise ChannelUnavailable("alipay bill archive too large")
            spool.write(chunk)
        spool.seek(0)
        yield from _read_archive(bill, spool)
    bill.digest, bill.size = digest.hexdigest(), size


def parse_bill_zip(content: bytes) -> list[BillRow]:
    """Rows of the detail CSV inside a whole Alipay ``trade`` bill zip (tests and tools)."""
    bill = Bill(channel="alipay", bill_date=date(2000, 1, 1), bill_type="trade", rows=lambda _: iter(()))
    return list(_read_archive(bill, io.BytesIO(content)))


def _read_archive(bill: Bill, spool: IO[bytes]) -> Iterator[BillRow]:
    try:
        archive = zipfile.ZipFile(spool)
        members = [info for info in archive.infolist() if not info.is_dir()]
        first_lines = {info.filename: _first_line(archive, info) for info in members}
    except (zipfile.BadZipFile, UnicodeDecodeError, KeyError, EOFError) as exc:
        raise ChannelUnavailable(f"unreadable bill archive: {type(exc).__name__}") from None
    detail = [info for info in members if first_lines[info.filename] == _DETAIL_FIRST_LINE]
    summary = [info for info in members if first_lines[info.filename] == _SUMMARY_FIRST_LINE]
    if not detail:
        raise ChannelUnavailable("bill archive has no detail file")
    with archive:
        with archive.open(detail[0]) as member:
            text = io.TextIOWrapper(member, encoding="gb18030", newline="")
            totals = _Totals()
            yield from _detail_rows(text, totals)
        summary_cells = _summary_cells(archive, summary[0]) if summary else {}
    bill.summary = totals.check(summary_cells)


def _first_line(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    with archive.open(info) as member:
        head = member.read(256)
    return head.decode("gb18030", errors="replace").lstrip("\ufeff").splitlines()[0] if head else ""


class _Totals:
    """What the rows add up to, in fen, for the footer and summary checks."""

    def __init__(self) -> None:
        self.paid_count = self.refund_count = 0
        self.paid_received = self.refund_received = 0  # signed, as shown
        self.amount = self.fee_shown = 0  # signed sums of 订单金额 and 服务费 over every row
        self.line_fees = 0
        self.footer: dict[str, str] = {}

    def add(self, kind: BillRowKind, record: dict[str, str], row: BillRow) -> None:
        received = fen(_cell(record, _RECEIVED) or "0")
        if kind is BillRowKind.PAYMENT:
            self.paid_count += 1
            self.paid_received += received
        else:
            self.refund_count += 1
            self.refund_received += received
        self.amount += fen(_cell(record, _AMOUNT) or "0")
        self.fee_shown += fen(_cell(record, _FEE) or "0")
        self.line_fees += row.fee or 0

    def check(self, summary: dict[str, str]) -> BillSummary:
        problems = []
        paid = _PAID_FOOTER.search(self.footer.get("paid", ""))
        if paid:
            if int(paid[1]) != self.paid_count or fen(paid[2]) != self.paid_received:
                problems.append(f"交易合计 {paid[1]}笔/{paid[2]}元 but {self.paid_count} rows/{self.paid_received} fen")
        refunded = _REFUND_FOOTER.search(self.footer.get("refund", ""))
        if refunded:
            if int(refunded[1]) != self.refund_count or fen(refunded[2]) != self.refund_received:
                problems.append(
                    f"退款合计 {refunded[1]}笔/{refunded[2]}元 but {self.refund_count} rows/{self.refund_received} fen"
                )
        expected = {
            "交易订单总笔数": self.paid_count,
            "退款订单总笔数": self.refund_count,
            "订单金额（元）": self.amount,
            "服务费（元）": self.fee_shown,
        }
        for name, value in expected.items():
            shown = summary.get(name, "")
            if not shown:
                continue
            got = int(shown) if name.endswith("笔数") else fen(shown)
            if got != value:
                problems.append(f"summary {name} {shown} but the rows add up to {value}")
        if problems:
            raise BillInconsistent("alipay bill contradicts its totals: " + "; ".join(problems), code="BILL_SUMMARY")
        # Fees are shown negative on payments and positive on refunds; rows are read with that
        # sign convention, so the total maps onto the rows' fees only when every row follows it.
        fee_total = -fen(summary["服务费（元）"]) if summary.get("服务费（元）") else None
        return BillSummary(
            line_count=self.paid_count + self.refund_count,
            payment_count=int(paid[1]) if paid else None,
            refund_count=int(refunded[1]) if refunded else None,
            fee_total=fee_total if fee_total == self.line_fees else None,
            raw={**{f"footer_{k}": v for k, v in self.footer.items()}, **summary},
        )


def _detail_rows(text: Iterable[str], totals: _Totals) -> Iterator[BillRow]:
    """Rows between the list markers; the footer comment lines after them go to ``totals``."""
    header: list[str] | None = None
    state = "before"

    def lines() -> Iterator[str]:
        nonlocal state
        for line in text:
            if line.startswith("#"):
                if state == "in" and _LIST_END in line:
                    state = "after"
                elif state == "before" and _LIST_START in line:
                    state = "in"
                elif state == "after" and line.startswith("#交易合计"):
                    totals.footer["paid"] = line.strip()
                elif state == "after" and line.startswith("#退款合计"):
                    totals.footer["refund"] = line.strip()
                continue
            if state == "in" and line.strip():
                yield line

    for cells in csv.reader(lines()):
        if header is None:
            header = [cell.strip() for cell in cells]
            continue
        record = dict(zip(header, (cell.strip() for cell in cells), strict=False))
        row = _bill_row(record)
        totals.add(BillRowKind.PAYMENT if row.kind is BillRowKind.PAYMENT else BillRowKind.REFUND, record, row)
        yield row
    if header is None:
        raise ChannelUnavailable("bill detail has no header")
    if state != "after":
        raise ChannelUnavailable("bill detail has no end marker: file truncated?")


def _summary_cells(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> dict[str, str]:
    """The summary file's 合计 row, by header name."""
    with archive.open(info) as member:
        text = io.TextIOWrapper(member, encoding="gb18030", newline="")
        rows = [row for row in csv.reader(line for line in text if not line.startswith("#") and line.strip())]
    if not rows:
        return {}
    header = [cell.strip() for cell in rows[0]]
    for row in rows[1:]:
        if row and row[0].strip() == "合计":
            return dict(zip(header, (cell.strip() for cell in row), strict=False))
    return {}


def _cell(record: dict[str, str], names: tuple[str, ...]) -> str:
    for name in names:
        if record.get(name):
            return record[name]
    return ""


def _bill_row(record: dict[str, str]) -> BillRow:
    def cell(*names: str) -> str:
        return _cell(record, names)

    business = cell("业务类型")
    kind = map_status(_BILL_KIND, business, what="alipay bill 业务类型", raw=record)
    payment_no = cell("商户订单号")
    request_no = cell("退款批次号/请求号") or None
    if kind is BillRowKind.REFUND and (request_no == payment_no or cell("备注") == _REVOCATION_NOTE):
        kind = BillRowKind.REVOKED  # paycore never refunds with out_request_no = out_trade_no
    amount = abs(fen(cell(*_AMOUNT) or "0"))
    fee_text = cell(*_FEE)
    fee = None
    if fee_text:
        # Shown negative in the sample files seen: a payment is always charged, a refund returns it.
        fee = abs(fen(fee_text)) * (1 if kind is BillRowKind.PAYMENT else -1)
    return BillRow(
        kind=kind,
        payment_no=payment_no,
        channel_trade_no=cell("支付宝交易号"),
        amount=amount,
        currency=CURRENCY,
        occurred_at=parse_time(cell("完成时间", "创建时间") or None),
        refund_no=request_no if kind is not BillRowKind.PAYMENT else None,
        fee=fee,
        status=business,
        raw=record,
    )
