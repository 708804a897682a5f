"""Alipay ``trade`` bills: a zip of GBK CSV files (Alipay OpenAPI,
``alipay.data.dataservice.bill.downloadurl.query``).

The detail file is found by its first line, not its name. ``#`` lines are comments; the line
after the "业务明细列表" marker is the header and data runs to the "业务明细列表结束" marker. Cells
are trimmed (ids carry a trailing tab so spreadsheets keep them intact) and read by header name.
Refund rows carry negative amounts and the refund's ``out_request_no`` in 退款批次号/请求号.
"""

from __future__ import annotations

import csv
import io
import zipfile

from channels.alipay._wire import CURRENCY, fen, parse_time
from channels.base import BillRow, BillRowKind, ChannelUnavailable, map_status

_DETAIL_FIRST_LINE = "#支付宝业务明细查询"
_LIST_START, _LIST_END = "业务明细列表", "业务明细列表结束"
_BILL_KIND = {"交易": BillRowKind.PAYMENT, "退款": BillRowKind.REFUND}


def parse_bill_zip(content: bytes) -> list[BillRow]:
    """Rows of the detail CSV inside an Alipay ``trade`` bill zip, found by its first line."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(content))
        texts = [archive.read(info).decode("gb18030") for info in archive.infolist() if not info.is_dir()]
    except (zipfile.BadZipFile, UnicodeDecodeError, KeyError) as exc:
        raise ChannelUnavailable(f"unreadable bill archive: {type(exc).__name__}") from None
    for text in texts:
        if text.lstrip("\ufeff").splitlines()[:1] == [_DETAIL_FIRST_LINE]:
            return parse_bill_detail(text)
    raise ChannelUnavailable("bill archive has no detail file")


def parse_bill_detail(text: str) -> list[BillRow]:
    """Parse the decoded detail CSV: header after the list marker, data up to the end marker."""
    lines = text.lstrip("\ufeff").splitlines()
    header: list[str] | None = None
    in_list = False
    data: list[str] = []
    for line in lines:
        if line.startswith("#"):
            if _LIST_END in line:
                break
            if _LIST_START in line:
                in_list = True
            continue
        if not in_list or not line.strip():
            continue
        if header is None:
            header = [cell.strip() for cell in next(csv.reader([line]))]
        else:
            data.append(line)
    if header is None:
        raise ChannelUnavailable("bill detail has no header")
    rows = []
    for cells in csv.reader(data):
        record = dict(zip(header, (cell.strip() for cell in cells), strict=False))
        rows.append(_bill_row(record))
    return rows


def _bill_row(record: dict[str, str]) -> BillRow:
    def cell(*names: str) -> str:
        for name in names:
            if record.get(name):
                return record[name]
        return ""

    business = cell("业务类型")
    kind = map_status(_BILL_KIND, business, what="alipay bill 业务类型", raw=record)
    payment_no = cell("商户订单号")
    request_no = cell("退款批次号/请求号") or None
    if kind is BillRowKind.REFUND and request_no == payment_no:
        kind = BillRowKind.REVOKED  # paycore never refunds with out_request_no = out_trade_no
    amount = abs(fen(cell("订单金额（元）", "订单金额(元)") or "0"))
    fee_text = cell("服务费（元）", "服务费(元)")
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
