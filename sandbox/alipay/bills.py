"""Bills: the download URL API, the download, and the zip of GBK CSVs."""

from __future__ import annotations

import csv
import io
import re
import secrets
import time
import zipfile
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any

from sandbox.alipay.common import BEIJING, BILL_LINK_SECONDS, REVOCATION_REASON, _biz_error, _fee, _invalid, _to_yuan
from sandbox.bills import BillHooks, apply_bill_faults
from sandbox.core import SandboxResponse

DETAIL_HEADER = [
    "支付宝交易号",
    "商户订单号",
    "业务类型",
    "商品名称",
    "创建时间",
    "完成时间",
    "门店编号",
    "门店名称",
    "操作员",
    "终端号",
    "对方账户",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝红包（元）",
    "集分宝（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "券核销金额（元）",
    "券名称",
    "商家红包消费金额（元）",
    "卡消费金额（元）",
    "退款批次号/请求号",
    "服务费（元）",
    "分润（元）",
    "备注",
]
SUMMARY_HEADER = [
    "门店编号",
    "门店名称",
    "交易订单总笔数",
    "退款订单总笔数",
    "订单金额（元）",
    "商家实收（元）",
    "支付宝优惠（元）",
    "商家优惠（元）",
    "卡消费金额（元）",
    "服务费（元）",
    "分润（元）",
    "实收净额（元）",
]


class BillsMixin:
    """Bills of ``AlipaySimulator``."""

    def _api_bill_url(self, account: Mapping[str, Any], params: Mapping[str, str], biz: dict[str, Any]) -> dict:
        bill_type, bill_date = biz.get("bill_type"), str(biz.get("bill_date") or "")
        if bill_type not in ("trade", "signcustomer"):
            raise _invalid("isv.invalid-parameter", "bill_type 错误")
        if not re.fullmatch(r"\d{4}-\d{2}(-\d{2})?", bill_date):
            raise _invalid("isv.invalid-parameter", "bill_date 格式错误")
        if bill_type != "trade":
            raise _biz_error("isp.bill_not_exist", "账单不存在")
        today = self.sandbox.now().astimezone(BEIJING).strftime("%Y-%m-%d")
        if bill_date >= today[: len(bill_date)]:  # no bill for today (or this month) or later
            raise _biz_error("isp.bill_not_exist", "账单不存在：不支持下载当日（当月）及以后的账单")
        payload = self._build_bill(account, bill_date)
        if payload is None:
            raise _biz_error("isp.bill_not_exist", "账单不存在")
        token = secrets.token_urlsafe(16)
        name = f"{account['seller_id']}0156_{bill_date.replace('-', '')}.csv.zip"
        with self.sandbox.lock:
            self._bill_links[token] = (time.monotonic() + BILL_LINK_SECONDS, name, payload)
        base = f"{self.sandbox.current_base_url()}/{self.channel}"
        return {"code": "10000", "msg": "Success", "bill_download_url": f"{base}/bills/{token}?downloadFileName={name}"}

    def _download_bill(self, token: str) -> SandboxResponse:
        with self.sandbox.lock:
            link = self._bill_links.get(token)
        if link is None or time.monotonic() > link[0]:
            return SandboxResponse.text(200, "下载超时")
        return SandboxResponse.text(
            200, link[2], "application/oct-stream", headers={"Content-Disposition": f"attachment; filename={link[1]}"}
        )

    def _build_bill(self, account: Mapping[str, Any], bill_date: str) -> bytes | None:
        """Zip of GBK CSVs (detail and summary) in Alipay's layout, from what happened that day
        (or month), bill faults applied; None when nothing happened."""
        app_id = account["app_id"]
        lines: list[dict[str, Any]] = []
        with self.sandbox.lock:
            trades = [t for t in self._trades.values() if t["app_id"] == app_id and not t.get("stub")]
            by_no = {t["out_trade_no"]: t for t in trades}
            for trade in trades:
                if trade["gmt_payment"] and trade["gmt_payment"].startswith(bill_date):
                    lines.append(_payment_line(trade))
            for refund in self._refunds.values():
                trade = by_no.get(refund["out_trade_no"])
                if refund["app_id"] == app_id and trade is not None and refund["gmt_refund_pay"].startswith(bill_date):
                    lines.append(_refund_line(trade, refund))
        faults = self.sandbox.bill_faults(self.channel, app_id, bill_date)
        if faults:
            lines = apply_bill_faults(lines, faults, _bill_hooks(bill_date))
        if not lines:
            return None
        lines.sort(key=lambda line: line["finished"])
        payments = [line for line in lines if line["_kind"] == "payment"]
        refunds = [line for line in lines if line["_kind"] == "refund"]
        paid_total = sum(line["amount"] for line in payments)
        refund_total = -sum(line["amount"] for line in refunds)
        fees_shown = sum(line["fee"] for line in lines)  # negative: what the merchant paid
        day = bill_date.replace("-", "")
        start = datetime.strptime(bill_date if len(bill_date) == 10 else bill_date + "-01", "%Y-%m-%d")
        if len(bill_date) == 10:
            end = start + timedelta(days=1)
        else:
            end = (start + timedelta(days=32)).replace(day=1)
        period = f"#起始日期：[{start:%Y年%m月%d日} 00:00:00]   终止日期：[{end:%Y年%m月%d日} 00:00:00]"
        exported = f"#导出时间：[{self.sandbox.now().astimezone(BEIJING):%Y年%m月%d日 %H:%M:%S}]"
        account_line = f"#账号：[{account['seller_id']}0156]"
        detail = io.StringIO()
        detail.write("#支付宝业务明细查询\n" + account_line + "\n" + period + "\n")
        detail.write("#-----------------------------------------业务明细列表----------------------------------------\n")
        csv.writer(detail, lineterminator="\n").writerows([DETAIL_HEADER, *(_detail_row(line) for line in lines)])
        detail.write("#-----------------------------------------业务明细列表结束------------------------------------\n")
        detail.write(f"#交易合计：{len(payments)}笔，商家实收共{_to_yuan(paid_total)}元，商家优惠共0.00元\n")
        detail.write(f"#退款合计：{len(refunds)}笔，商家实收退款共{_to_yuan(-refund_total)}元，商家优惠退款共0.00元\n")
        detail.write(exported + "\n")
        summary = io.StringIO()
        summary.write("#支付宝业务汇总查询\n" + account_line + "\n" + period + "\n")
        summary.write(
            "#-----------------------------------------业务汇总列表----------------------------------------\n"
        )
        total_line = [
            "合计",
            "",
            str(len(payments)),
            str(len(refunds)),
            _to_yuan(paid_total - refund_total),
            _to_yuan(paid_total - refund_total),
            "0.00",
            "0.00",
            "0.00",
            _to_yuan(fees_shown),
            "0.00",
            _to_yuan(paid_total - refund_total + fees_shown),
        ]
        csv.writer(summary, lineterminator="\n").writerows([SUMMARY_HEADER, total_line])
        summary.write(
            "#-----------------------------------------业务汇总列表结束------------------------------------\n"
        )
        summary.write(exported + "\n")
        buffer = io.BytesIO()
        pid = f"{account['seller_id']}0156"
        with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
            # Summary first: clients must find the detail file by its first line, not by order.
            archive.writestr(f"{pid}_{day}_业务明细(汇总).csv", summary.getvalue().encode("gbk", "replace"))
            archive.writestr(f"{pid}_{day}_业务明细.csv", detail.getvalue().encode("gbk", "replace"))
        return buffer.getvalue()


# A bill line before it is written: amounts and fees in signed fen as the bill shows them
# (payments +amount -fee, refunds -amount +fee returned).
def _payment_line(trade: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "_kind": "payment",
        "trade_no": trade["trade_no"],
        "out_trade_no": trade["out_trade_no"],
        "type": "交易",
        "subject": trade["subject"],
        "created": trade["gmt_create"],
        "finished": trade["gmt_payment"],
        "buyer": trade["buyer_logon_id"] or "",
        "amount": trade["total_amount"],
        "request_no": "",
        "fee": -_fee(trade["total_amount"]),
        "note": "",
    }


def _refund_line(trade: Mapping[str, Any], refund: Mapping[str, Any]) -> dict[str, Any]:
    revocation = refund["refund_reason"] == REVOCATION_REASON
    return {
        **_payment_line(trade),
        "_kind": "refund",
        "type": "退款",
        "created": refund["gmt_refund_pay"],
        "finished": refund["gmt_refund_pay"],
        "amount": -refund["refund_amount"],
        "request_no": refund["out_request_no"],
        "fee": _fee(refund["refund_amount"]),
        "note": "交易撤销" if revocation else "",
    }


def _revocation_line(payment: Mapping[str, Any]) -> dict[str, Any]:
    """A payment cancelled after it was paid: the full refund Alipay makes, numbered as the order."""
    return {
        **payment,
        "_kind": "refund",
        "type": "退款",
        "created": payment["finished"],
        "amount": -payment["amount"],
        "request_no": payment["out_trade_no"],
        "fee": -payment["fee"],
        "note": "交易撤销",
    }


def _bill_hooks(bill_date: str) -> BillHooks[dict[str, Any]]:
    def extra(out_trade_no: str, fen: int) -> dict[str, Any]:
        at = (bill_date if len(bill_date) == 10 else bill_date + "-01") + " 12:00:00"
        return {
            "_kind": "payment",
            "trade_no": at[:10].replace("-", "") + "22001" + "".join(secrets.choice("0123456789") for _ in range(15)),
            "out_trade_no": out_trade_no,
            "type": "交易",
            "subject": "sandbox bill_extra",
            "created": at,
            "finished": at,
            "buyer": "sb***@example.com",
            "amount": fen,
            "request_no": "",
            "fee": -_fee(fen),
            "note": "",
        }

    return BillHooks(
        trade_of=lambda line: line["out_trade_no"],
        is_payment=lambda line: line["_kind"] == "payment",
        with_amount=lambda line, fen: {**line, "amount": fen},
        with_fee=lambda line, fen: {**line, "fee": -fen},
        extra_line=extra,
        revoked=_revocation_line,
    )


def _detail_row(line: Mapping[str, Any]) -> list[str]:
    amount = _to_yuan(line["amount"])
    return [
        line["trade_no"] + "\t",
        line["out_trade_no"] + "\t",
        line["type"],
        line["subject"],
        line["created"],
        line["finished"],
        "",
        "",
        "",
        "",
        line["buyer"],
        amount,
        amount,
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "0.00",
        "",
        "0.00",
        "0.00",
        line["request_no"] + ("\t" if line["request_no"] else ""),
        _to_yuan(line["fee"]),
        "0.00",
        line["note"],
    ]
