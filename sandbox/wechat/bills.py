"""The trade bill: apply for a download URL, download, and the bill's CSV layout."""

from __future__ import annotations

import gzip
import hashlib
import secrets
import string
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from sandbox.bills import BillHooks, apply_bill_faults
from sandbox.core import SandboxRequest, SandboxResponse
from sandbox.wechat.accounts import WechatAccount
from sandbox.wechat.common import _ALNUM, BILL_URL_LIFETIME, CN_TZ, _error, _nonce, _random, _Reject, _yuan

BILL_ALL = [
    "交易时间",
    "公众账号ID",
    "商户号",
    "特约商户号",
    "设备号",
    "微信订单号",
    "商户订单号",
    "用户标识",
    "交易类型",
    "交易状态",
    "付款银行",
    "货币种类",
    "应结订单金额",
    "代金券金额",
    "微信退款单号",
    "商户退款单号",
    "退款金额",
    "充值券退款金额",
    "退款类型",
    "退款状态",
    "商品名称",
    "商户数据包",
    "手续费",
    "费率",
    "订单金额",
    "申请退款金额",
    "费率备注",
]
_REFUND_ONLY = {"微信退款单号", "商户退款单号", "退款金额", "充值券退款金额", "退款类型", "退款状态", "申请退款金额"}
BILL_SUCCESS = [c for c in BILL_ALL if c not in _REFUND_ONLY]
BILL_REFUND = [*BILL_ALL[:14], "退款申请时间", "退款成功时间", *BILL_ALL[14:]]
SUMMARY_ALL = [
    "总交易单数",
    "应结订单总金额",
    "退款总金额",
    "充值券退款总金额",
    "手续费总金额",
    "订单总金额",
    "申请退款总金额",
]
SUMMARY_SUCCESS = ["总交易单数", "应结订单总金额", "手续费总金额", "订单总金额"]
FEE_RATE = Decimal("0.006")


class BillsMixin:
    """The trade bill endpoints of ``WechatSimulator``."""

    def _bill_apply(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        params = req.params
        try:
            bill_date = date.fromisoformat(params.get("bill_date", ""))
        except ValueError:
            raise _Reject(
                _error(
                    400,
                    "PARAM_ERROR",
                    "bill_date 须为 YYYY-MM-DD",
                    {"field": "bill_date", "issue": "格式错误", "location": "query"},
                )
            ) from None
        bill_type = params.get("bill_type", "ALL")
        tar_type = params.get("tar_type")
        if bill_type not in ("ALL", "SUCCESS", "REFUND"):
            raise _Reject(_error(400, "PARAM_ERROR", "bill_type 须为 ALL/SUCCESS/REFUND"))
        if tar_type not in (None, "GZIP"):
            raise _Reject(_error(400, "PARAM_ERROR", "tar_type 仅支持 GZIP"))
        today = self.sandbox.now().astimezone(CN_TZ).date()  # bills exist only for ended days
        if bill_date > today:
            raise _Reject(_error(400, "INVALID_REQUEST", "bill_date 不能晚于今天"))
        if bill_date == today:
            raise _Reject(_error(400, "STATEMENT_CREATING", "账单生成中，请在次日 10 点后再申请"))
        content = self.bill_csv(acct.mchid, bill_date, bill_type)
        if content is None:
            raise _Reject(_error(400, "NO_STATEMENT_EXIST", "该日期无交易，账单不存在"))
        raw = content.encode("utf-8")
        served = gzip.compress(raw, mtime=0) if tar_type == "GZIP" else raw
        token = secrets.token_urlsafe(24)
        with self.sandbox.lock:
            acct.bill_tokens[token] = (served, self.sandbox.wall_now().timestamp() + BILL_URL_LIFETIME)
        return self._signed(
            req,
            acct,
            200,
            {
                "hash_type": "SHA1",
                "hash_value": hashlib.sha1(served).hexdigest(),  # noqa: S324 - protocol
                "download_url": f"{req.base_url}/v3/billdownload/file?token={token}",
            },
        )

    def _bill_download(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        token = req.params.get("token", "")
        with self.sandbox.lock:
            entry = acct.bill_tokens.get(token)
        if entry is None or entry[1] < self.sandbox.wall_now().timestamp():
            return _error(400, "INVALID_REQUEST", "下载链接无效或已过期")
        return SandboxResponse(200, entry[0], {"Content-Type": "application/octet-stream", "Request-ID": _nonce()})

    def bill_csv(self, mchid: str, bill_date: date, bill_type: str) -> str | None:
        """The trade bill text for one merchant and day (bill faults applied), or None when
        nothing happened. Rows: payments on the day paid, refunds on the day created, reversed
        paid payment codes (``REVOKED``) on the day reversed."""
        rows: list[dict[str, str]] = []
        with self.sandbox.lock:
            trades = [t for t in self.sandbox.trades[self.channel].values() if t["mchid"] == mchid]
            refunds = [r for r in self.sandbox.refunds[self.channel].values() if r["mchid"] == mchid]
            by_no = {t["out_trade_no"]: t for t in trades}
            for t in trades:
                if t.get("paid_at"):
                    paid_at = datetime.fromisoformat(t["paid_at"]).astimezone(CN_TZ)
                    if paid_at.date() == bill_date:
                        rows.append(self._payment_row(t, paid_at))
                if t.get("revoke_refund_id"):  # a paid payment-code order reversed: the money went back
                    revoked_at = datetime.fromisoformat(t["revoked_at"]).astimezone(CN_TZ)
                    if revoked_at.date() == bill_date:
                        paid_row = self._payment_row(t, datetime.fromisoformat(t["paid_at"]).astimezone(CN_TZ))
                        rows.append(_revoked_row(paid_row, revoked_at, t["revoke_refund_id"]))
            for r in refunds:
                created = datetime.fromisoformat(r["created_at"]).astimezone(CN_TZ)
                if created.date() == bill_date and r["out_trade_no"] in by_no:
                    rows.append(self._refund_row(by_no[r["out_trade_no"]], r, created))
            acct = self.sandbox.accounts[self.channel].get(mchid)
        faults = self.sandbox.bill_faults(self.channel, mchid, bill_date.isoformat())
        if faults and acct is not None:
            rows = apply_bill_faults(rows, faults, self._bill_hooks(acct, bill_date))
        wanted = {"ALL": ("payment", "refund", "revoked"), "SUCCESS": ("payment",), "REFUND": ("refund", "revoked")}
        rows = [row for row in rows if row["_kind"] in wanted[bill_type]]
        if not rows:
            return None
        columns = {"ALL": BILL_ALL, "SUCCESS": BILL_SUCCESS, "REFUND": BILL_REFUND}[bill_type]
        summary_cols = SUMMARY_SUCCESS if bill_type == "SUCCESS" else SUMMARY_ALL
        rows.sort(key=lambda row: row["交易时间"])

        def total(col: str, places: int = 2) -> str:
            return str(sum((Decimal(row[col]) for row in rows), Decimal(0)).quantize(Decimal(1).scaleb(-places)))

        summary = {
            "总交易单数": str(len(rows)),
            "应结订单总金额": total("应结订单金额"),
            "退款总金额": total("退款金额"),
            "充值券退款总金额": total("充值券退款金额"),
            "手续费总金额": total("手续费", 5),
            "订单总金额": total("订单金额"),
            "申请退款总金额": total("申请退款金额"),
        }
        lines = [",".join(columns)]
        lines += [",".join("`" + row[c] for c in columns) for row in rows]
        lines.append(",".join(summary_cols))
        lines.append(",".join("`" + summary[c] for c in summary_cols))
        return "\r\n".join(lines) + "\r\n"

    def _bill_hooks(self, acct: WechatAccount, bill_date: date) -> BillHooks[dict[str, str]]:
        def extra(out_trade_no: str, amount: int) -> dict[str, str]:
            noon = datetime(bill_date.year, bill_date.month, bill_date.day, 12, 0, 0, tzinfo=CN_TZ)
            ghost = {
                "appid": acct.appid,
                "mchid": acct.mchid,
                "transaction_id": "42000" + noon.strftime("%Y%m%d") + _random(string.digits, 15),
                "out_trade_no": out_trade_no,
                "openid": "o" + _random(_ALNUM, 27),
                "trade_type": "NATIVE",
                "description": "sandbox bill_extra",
                "total": amount,
            }
            return self._payment_row(ghost, noon)

        return BillHooks(
            trade_of=lambda row: row["商户订单号"],
            is_payment=lambda row: row["_kind"] == "payment",
            with_amount=lambda row, fen: {**row, "应结订单金额": _yuan(fen), "订单金额": _yuan(fen)},
            with_fee=lambda row, fen: {**row, "手续费": _fee_text(Decimal(fen))},
            extra_line=extra,
            revoked=lambda row: _revoked_row(
                row, datetime.strptime(row["交易时间"], "%Y-%m-%d %H:%M:%S"), "50" + _random(string.digits, 27)
            ),
        )

    def _base_row(self, t: dict[str, Any], at: datetime) -> dict[str, str]:
        return {
            "交易时间": at.strftime("%Y-%m-%d %H:%M:%S"),
            "公众账号ID": t["appid"],
            "商户号": t["mchid"],
            "特约商户号": "0",
            "设备号": "",
            "微信订单号": t["transaction_id"] or "",
            "商户订单号": t["out_trade_no"],
            "用户标识": t.get("openid") or "",
            "交易类型": t["trade_type"],
            "付款银行": "OTHERS",
            "货币种类": "CNY",
            "代金券金额": "0.00",
            "充值券退款金额": "0.00",
            "商品名称": _bill_text(t["description"]),
            "商户数据包": _bill_text(t.get("attach") or ""),
            "费率": "0.60%",
            "费率备注": "",
        }

    def _payment_row(self, t: dict[str, Any], paid_at: datetime) -> dict[str, str]:
        row = self._base_row(t, paid_at)
        row.update(
            {
                "_kind": "payment",
                "交易状态": "SUCCESS",
                "应结订单金额": _yuan(t["total"]),
                "微信退款单号": "0",
                "商户退款单号": "0",
                "退款金额": "0.00",
                "退款类型": "",
                "退款状态": "",
                "手续费": _fee_text(Decimal(t["total"]) * FEE_RATE),
                "订单金额": _yuan(t["total"]),
                "申请退款金额": "0.00",
                "退款申请时间": "",
                "退款成功时间": "",
            }
        )
        return row

    def _refund_row(self, t: dict[str, Any], r: dict[str, Any], created: datetime) -> dict[str, str]:
        row = self._base_row(t, created)
        success = ""
        if r["success_time"]:
            success = datetime.fromisoformat(r["success_time"]).strftime("%Y-%m-%d %H:%M:%S")
        row.update(
            {
                "_kind": "refund",
                "交易状态": "REFUND",
                "应结订单金额": "0.00",
                "微信退款单号": r["refund_id"],
                "商户退款单号": r["out_refund_no"],
                "退款金额": _yuan(r["refund"]),
                "退款类型": "ORIGINAL",
                "退款状态": r["status"],
                "手续费": _fee_text(-Decimal(r["refund"]) * FEE_RATE),
                "订单金额": "0.00",
                "申请退款金额": _yuan(r["refund"]),
                "退款申请时间": created.strftime("%Y-%m-%d %H:%M:%S"),
                "退款成功时间": success,
            }
        )
        return row


def _fee_text(fen: Decimal) -> str:
    """A fee in fen as the bill writes it: yuan with 5 decimals."""
    return str((fen / 100).quantize(Decimal("0.00001")) + 0)  # + 0: no "-0.00000"


def _revoked_row(paid: dict[str, str], at: datetime, refund_id: str) -> dict[str, str]:
    """A paid order reversed: 交易状态 REVOKED with the order's own numbers, refund-like columns
    for the money returned (商户退款单号 = the order number), 订单金额 = the order's amount."""
    when = at.strftime("%Y-%m-%d %H:%M:%S")
    return {
        **paid,
        "_kind": "revoked",
        "交易时间": when,
        "交易状态": "REVOKED",
        "应结订单金额": "0.00",
        "微信退款单号": refund_id,
        "商户退款单号": paid["商户订单号"],
        "退款金额": paid["订单金额"],
        "退款类型": "ORIGINAL",
        "退款状态": "SUCCESS",
        "手续费": _fee_text(-Decimal(paid["手续费"]) * 100),
        "申请退款金额": paid["订单金额"],
        "退款申请时间": when,
        "退款成功时间": when,
    }


def _bill_text(text: str) -> str:
    """Free text in bills: commas and line breaks escaped so that a plain split on ',' is safe."""
    return text.replace("\r", "").replace("\n", "\\n").replace(",", "\\ ")
