"""Bills built from the sandbox's own trades, only for days that have ended by the sandbox clock,
in each channel's format with fees and totals, and the bill-side faults (``bill_*``).

Requests are signed by hand and answers read with the standard library; no paycore adapter.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import hmac
import io
import json
import secrets
import time
import zipfile
from datetime import UTC, datetime, timedelta, timezone
from decimal import Decimal
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
import requests

from channels.base import AccountConfig
from sandbox.client import SandboxClientError
from tests.channels.test_sandbox_paycode import ALI_PAID, ali_cancel, ali_pay, alipay
from tests.channels.test_sandbox_wechat import APP, _refund_body, new_no, order, v3, verify

BEIJING = timezone(timedelta(hours=8))


def beijing_today() -> str:
    return datetime.now(BEIJING).date().isoformat()


def utc_today() -> str:
    return datetime.now(UTC).date().isoformat()


# --- WeChat ----------------------------------------------------------------------------------
@pytest.fixture
def wx(sandbox_account) -> AccountConfig:
    return sandbox_account("wechat")


def wx_paid(sandbox, wx, total: int = 990) -> str:
    no = new_no()
    v3(wx, "POST", APP, order(wx, no, total=total))
    sandbox.pay("wechat", no, notify=False)
    return no


def wx_apply(wx, day: str) -> requests.Response:
    return v3(wx, "GET", f"/v3/bill/tradebill?bill_date={day}&bill_type=ALL")


def wx_bill(wx, day: str) -> tuple[list[dict[str, str]], dict[str, str]]:
    apply = wx_apply(wx, day)
    assert apply.status_code == 200, apply.text
    verify(wx, apply.headers, apply.content)
    download = v3(wx, "GET", "", url=apply.json()["download_url"])
    lines = list(csv.reader(io.StringIO(download.content.decode("utf-8"))))
    header, *details = lines[: next(i for i, r in enumerate(lines) if r[0] == "总交易单数")]
    rows = [dict(zip(header, (c[1:] for c in row), strict=True)) for row in details]
    summary = dict(zip(lines[-2], (c[1:] for c in lines[-1]), strict=True))
    return rows, summary


def test_wechat_bill_of_today_is_not_ready_and_of_a_future_day_invalid(sandbox, wx):
    wx_paid(sandbox, wx)
    today = beijing_today()
    resp = wx_apply(wx, today)
    assert (resp.status_code, resp.json()["code"]) == (400, "STATEMENT_CREATING")
    tomorrow = (datetime.now(BEIJING).date() + timedelta(days=1)).isoformat()
    resp = wx_apply(wx, tomorrow)
    assert (resp.status_code, resp.json()["code"]) == (400, "INVALID_REQUEST")
    sandbox.end_day(8)
    rows, summary = wx_bill(wx, today)
    assert len(rows) == 1 and summary["总交易单数"] == "1"


def test_wechat_bill_carries_fees_and_consistent_totals(sandbox, wx):
    no = wx_paid(sandbox, wx, total=10000)
    v3(wx, "POST", "/v3/refund/domestic/refunds", _refund_body(no, new_no("R"), 2500, total=10000))
    sandbox.end_day(8)
    rows, summary = wx_bill(wx, beijing_today())
    payment = next(r for r in rows if r["交易状态"] == "SUCCESS")
    refund = next(r for r in rows if r["交易状态"] == "REFUND")
    assert (payment["手续费"], payment["费率"]) == ("0.60000", "0.60%")  # 0.6 % of 100.00
    assert refund["手续费"] == "-0.15000"  # returned with the refund
    assert summary["手续费总金额"] == "0.45000"
    assert (summary["应结订单总金额"], summary["退款总金额"], summary["订单总金额"]) == ("100.00", "25.00", "100.00")


def test_wechat_bill_faults(sandbox, wx):
    keep, lose, wrong, twice, revoked = (wx_paid(sandbox, wx, total=1000) for _ in range(5))
    today, mchid = beijing_today(), wx.ids["mchid"]
    for fault in (
        {"kind": "bill_missing", "trade": lose},
        {"kind": "bill_extra", "trade": "GHOST" + keep[-8:], "amount": 4321},
        {"kind": "bill_amount", "trade": wrong, "amount": 999},
        {"kind": "bill_fee", "trade": wrong, "amount": 7},
        {"kind": "bill_duplicate", "trade": twice},
        {"kind": "bill_revoked", "trade": revoked},
    ):
        sandbox.add_fault(channel="wechat", account=mchid, date=today, **fault)
    sandbox.end_day(8)
    rows, summary = wx_bill(wx, today)
    by_no: dict[str, list[dict[str, str]]] = {}
    for row in rows:
        by_no.setdefault(row["商户订单号"], []).append(row)
    assert lose not in by_no and len(by_no[keep]) == 1
    (ghost,) = by_no["GHOST" + keep[-8:]]
    assert (ghost["交易状态"], ghost["订单金额"]) == ("SUCCESS", "43.21")
    (bad,) = by_no[wrong]
    assert (bad["订单金额"], bad["应结订单金额"], bad["手续费"]) == ("9.99", "9.99", "0.07000")
    assert [r["交易状态"] for r in by_no[twice]] == ["SUCCESS", "SUCCESS"]
    assert [r["交易状态"] for r in by_no[revoked]] == ["SUCCESS", "REVOKED"]
    assert by_no[revoked][1]["商户退款单号"] == revoked
    assert summary["总交易单数"] == str(len(rows)) == "7"
    total = sum(Decimal(r["应结订单金额"]) for r in rows)
    assert Decimal(summary["应结订单总金额"]) == total


def test_wechat_bill_faults_are_scoped_to_their_account_and_day(sandbox, wx, sandbox_account):
    other = sandbox_account("wechat")
    no = wx_paid(sandbox, wx)
    other_no = wx_paid(sandbox, other)
    yesterday = (datetime.now(BEIJING).date() - timedelta(days=1)).isoformat()
    sandbox.add_fault(kind="bill_missing", channel="wechat", account=wx.ids["mchid"], date=yesterday, trade=no)
    sandbox.add_fault(kind="bill_missing", channel="wechat", account=other.ids["mchid"], trade=no)
    sandbox.end_day(8)
    rows, _ = wx_bill(wx, beijing_today())
    assert [r["商户订单号"] for r in rows] == [no]
    rows, _ = wx_bill(other, beijing_today())
    assert [r["商户订单号"] for r in rows] == [other_no]


def test_bill_faults_are_validated(sandbox):
    with pytest.raises(SandboxClientError, match="BAD_FAULT"):
        sandbox.add_fault(kind="bill_revoked", channel="paypal", trade="X")
    with pytest.raises(SandboxClientError, match="BAD_FAULT"):
        sandbox.add_fault(kind="bill_fee", channel="points", trade="X", amount=1)
    with pytest.raises(SandboxClientError, match="BAD_FAULT"):
        sandbox.add_fault(kind="bill_amount", channel="wechat", trade="X")  # no amount
    with pytest.raises(SandboxClientError, match="BAD_FAULT"):
        sandbox.add_fault(kind="bill_missing", channel="wechat")  # no trade
    with pytest.raises(SandboxClientError, match="BAD_FAULT"):
        sandbox.add_fault(kind="bill_extra", channel="wechat", date="28/11/2026")


# --- Alipay ----------------------------------------------------------------------------------
@pytest.fixture
def ali(sandbox_account) -> AccountConfig:
    return sandbox_account("alipay")


def ali_bill(ali, day: str) -> dict[str, Any]:
    return alipay(ali, "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": day})


def ali_detail(ali, day: str) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """(detail rows, comment lines, summary file's total line) of the day's zip of GBK CSVs."""
    node = ali_bill(ali, day)
    assert node["code"] == "10000", node
    archive = zipfile.ZipFile(io.BytesIO(requests.get(node["bill_download_url"], timeout=10).content))
    files = {n: archive.read(n).decode("gb18030") for n in archive.namelist()}
    detail = next(t for t in files.values() if t.startswith("#支付宝业务明细查询"))
    summary = next(t for t in files.values() if t.startswith("#支付宝业务汇总查询"))
    comments = [line for line in detail.splitlines() if line.startswith("#")]
    table = [line for line in detail.splitlines() if not line.startswith("#")]
    header, *body = list(csv.reader(table))
    rows = [{k: v.strip() for k, v in zip(header, row, strict=True)} for row in body]
    total = next(csv.reader([line for line in summary.splitlines() if line.startswith("合计")]))
    return rows, comments, total


def test_alipay_bill_of_today_or_this_month_does_not_exist_yet(sandbox, ali):
    ali_pay(ali, new_no("P"), ALI_PAID)
    for day in (beijing_today(), beijing_today()[:7]):
        node = ali_bill(ali, day)
        assert (node["code"], node["sub_code"]) == ("40004", "isp.bill_not_exist")
    sandbox.end_day(8)
    assert ali_bill(ali, beijing_today())["code"] == "10000"


def test_alipay_bill_with_fees_totals_and_a_distinguishable_revocation(sandbox, ali):
    paid, revoked = new_no("P"), new_no("P")
    ali_pay(ali, paid, ALI_PAID, total_amount="100.00")
    ali_pay(ali, revoked, ALI_PAID, total_amount="50.00")
    assert ali_cancel(ali, revoked)["action"] == "refund"
    sandbox.end_day(8)
    rows, comments, total = ali_detail(ali, beijing_today())
    lines = [
        (r["商户订单号"], r["业务类型"], r["订单金额（元）"], r["服务费（元）"], r["退款批次号/请求号"]) for r in rows
    ]
    assert sorted(lines) == sorted(
        [
            (paid, "交易", "100.00", "-0.60", ""),
            (revoked, "交易", "50.00", "-0.30", ""),
            (revoked, "退款", "-50.00", "0.30", revoked),  # a revocation: request number = order number
        ]
    )
    assert next(r for r in rows if r["业务类型"] == "退款")["备注"] == "交易撤销"
    assert "#交易合计：2笔，商家实收共150.00元，商家优惠共0.00元" in comments
    assert "#退款合计：1笔，商家实收退款共-50.00元，商家优惠退款共0.00元" in comments
    assert total[2:6] == ["2", "1", "100.00", "100.00"] and total[9] == "-0.60" and total[11] == "99.40"


def test_alipay_bill_faults(sandbox, ali):
    nos = [new_no("P") for _ in range(5)]
    for no in nos:
        ali_pay(ali, no, ALI_PAID, total_amount="10.00")
    keep, lose, wrong, twice, revoked = nos
    for fault in (
        {"kind": "bill_missing", "trade": lose},
        {"kind": "bill_extra", "trade": "GHOST1", "amount": 1234},
        {"kind": "bill_amount", "trade": wrong, "amount": 1001},
        {"kind": "bill_fee", "trade": wrong, "amount": 9},
        {"kind": "bill_duplicate", "trade": twice},
        {"kind": "bill_revoked", "trade": revoked},
    ):
        sandbox.add_fault(channel="alipay", account=ali.ids["app_id"], **fault)
    sandbox.end_day(8)
    rows, comments, _ = ali_detail(ali, beijing_today())
    got = sorted(
        (r["商户订单号"], r["业务类型"], r["订单金额（元）"], r["服务费（元）"], r["退款批次号/请求号"]) for r in rows
    )
    assert got == sorted(
        [
            (keep, "交易", "10.00", "-0.06", ""),
            ("GHOST1", "交易", "12.34", "-0.07", ""),
            (wrong, "交易", "10.01", "-0.09", ""),
            (twice, "交易", "10.00", "-0.06", ""),
            (twice, "交易", "10.00", "-0.06", ""),
            (revoked, "交易", "10.00", "-0.06", ""),
            (revoked, "退款", "-10.00", "0.06", revoked),
        ]
    )
    assert "#交易合计：6笔，商家实收共62.35元，商家优惠共0.00元" in comments


# --- PayPal ----------------------------------------------------------------------------------
def pp_token(acct: AccountConfig) -> str:
    basic = base64.b64encode(f"{acct.ids['client_id']}:{acct.credentials['client_secret']}".encode()).decode()
    resp = requests.post(
        acct.base_url + "/v1/oauth2/token",
        data="grant_type=client_credentials",
        headers={"Authorization": f"Basic {basic}", "Content-Type": "application/x-www-form-urlencoded"},
        timeout=10,
    )
    return resp.json()["access_token"]


def pp_captured(sandbox, acct: AccountConfig, token: str, value: str = "10.00") -> str:
    invoice = "INV" + secrets.token_hex(6)
    unit = {"invoice_id": invoice, "custom_id": invoice, "amount": {"currency_code": "USD", "value": value}}
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    created = requests.post(
        acct.base_url + "/v2/checkout/orders",
        json={"intent": "CAPTURE", "purchase_units": [unit]},
        headers=headers,
        timeout=10,
    ).json()
    sandbox.pay("paypal", invoice)
    capture = requests.post(f"{acct.base_url}/v2/checkout/orders/{created['id']}/capture", headers=headers, timeout=10)
    assert capture.status_code == 201
    return invoice


def pp_search(acct: AccountConfig, token: str, day: str) -> requests.Response:
    start = datetime.fromisoformat(day).replace(tzinfo=UTC)
    query = urlencode(
        {
            "start_date": start.strftime("%Y-%m-%dT%H:%M:%SZ"),
            "end_date": (start + timedelta(days=1) - timedelta(seconds=1)).strftime("%Y-%m-%dT%H:%M:%SZ"),
        }
    )
    return requests.get(
        f"{acct.base_url}/v1/reporting/transactions?{query}", headers={"Authorization": f"Bearer {token}"}, timeout=10
    )


def test_paypal_transaction_search_has_data_only_for_ended_days_with_fees(sandbox, sandbox_account):
    acct = sandbox_account("paypal")
    token = pp_token(acct)
    invoice = pp_captured(sandbox, acct, token, "100.00")
    resp = pp_search(acct, token, utc_today())
    assert resp.status_code == 400 and resp.json()["message"] == "Data for the given start date is not available."
    sandbox.end_day(0)
    body = pp_search(acct, token, utc_today()).json()
    (info,) = [d["transaction_info"] for d in body["transaction_details"]]
    assert (info["invoice_id"], info["transaction_event_code"]) == (invoice, "T0006")
    assert (info["transaction_amount"]["value"], info["fee_amount"]["value"]) == ("100.00", "-2.90")  # 2.9 %
    assert body["last_refreshed_datetime"].startswith(
        datetime.fromisoformat(sandbox.clock()["now"]).astimezone(UTC).date().isoformat()
    )


def test_paypal_bill_faults(sandbox, sandbox_account):
    acct = sandbox_account("paypal")
    token = pp_token(acct)
    keep, lose, wrong, twice = (pp_captured(sandbox, acct, token) for _ in range(4))
    for fault in (
        {"kind": "bill_missing", "trade": lose},
        {"kind": "bill_extra", "trade": "GHOST-PP", "amount": 555},
        {"kind": "bill_amount", "trade": wrong, "amount": 1234},
        {"kind": "bill_fee", "trade": wrong, "amount": 1},
        {"kind": "bill_duplicate", "trade": twice},
    ):
        sandbox.add_fault(channel="paypal", account=acct.ids["client_id"], date=utc_today(), **fault)
    sandbox.end_day(0)
    infos = [d["transaction_info"] for d in pp_search(acct, token, utc_today()).json()["transaction_details"]]
    got = sorted((i["invoice_id"], i["transaction_amount"]["value"], i["fee_amount"]["value"]) for i in infos)
    assert got == sorted(
        [
            (keep, "10.00", "-0.29"),
            ("GHOST-PP", "5.55", "-0.16"),
            (wrong, "12.34", "-0.01"),
            (twice, "10.00", "-0.29"),
            (twice, "10.00", "-0.29"),
        ]
    )


# --- points ----------------------------------------------------------------------------------
def pt_call(acct: AccountConfig, method: str, path: str, body: Any = None) -> requests.Response:
    raw = b"" if body is None else json.dumps(body, separators=(",", ":")).encode()
    stamp, nonce = str(int(time.time())), secrets.token_hex(16)
    target = urlsplit(acct.base_url).path + path  # signed as sent: the /points prefix included
    text = f"{method}\n{target}\n{stamp}\n{nonce}\n{hashlib.sha256(raw).hexdigest()}\n"
    signature = hmac.new(acct.credentials["shared_secret"].encode(), text.encode(), hashlib.sha256).hexdigest()
    headers = {
        "X-App-Id": acct.ids["app_id"],
        "X-Key-Id": acct.ids["key_id"],
        "X-Timestamp": stamp,
        "X-Nonce": nonce,
        "X-Signature": signature,
        "Content-Type": "application/json",
    }
    return requests.request(method, acct.base_url + path, data=raw, headers=headers, timeout=10)


def pt_deducted(acct: AccountConfig, binding_id: str, points: int) -> str:
    request_no = "D" + secrets.token_hex(8)
    body = {"request_no": request_no, "binding_id": binding_id, "points": points, "order_no": request_no}
    assert pt_call(acct, "POST", "/v1/points/deductions", body).json()["status"] == "SUCCESS"
    return request_no


def pt_statement(acct: AccountConfig, day: str) -> requests.Response:
    return pt_call(acct, "GET", f"/v1/statements?date={day}")


def test_points_statement_of_today_is_not_ready_and_faults_apply(sandbox, sandbox_account):
    acct = sandbox_account("points")
    bind = {"bind_request_no": "B" + secrets.token_hex(6), "user_ref": "u-1", "our_user_id": "42"}
    binding_id = pt_call(acct, "POST", "/v1/bindings", bind).json()["binding_id"]
    keep, lose, wrong, twice = (pt_deducted(acct, binding_id, 100) for _ in range(4))
    resp = pt_statement(acct, beijing_today())
    assert (resp.status_code, resp.json()["code"]) == (409, "STATEMENT_NOT_READY")
    for fault in (
        {"kind": "bill_missing", "trade": lose},
        {"kind": "bill_extra", "trade": "GHOST-PT", "amount": 77},
        {"kind": "bill_amount", "trade": wrong, "amount": 101},
        {"kind": "bill_duplicate", "trade": twice},
    ):
        sandbox.add_fault(channel="points", account=acct.ids["app_id"], **fault)
    sandbox.end_day(8)
    resp = pt_statement(acct, beijing_today())
    assert resp.status_code == 200
    rows = list(csv.DictReader(io.StringIO(resp.content.decode("utf-8"))))
    got = sorted((r["type"], r["request_no"], r["points"], r["status"]) for r in rows)
    assert got == sorted(
        [
            ("DEDUCTION", keep, "100", "SUCCESS"),
            ("DEDUCTION", "GHOST-PT", "77", "SUCCESS"),
            ("DEDUCTION", wrong, "101", "SUCCESS"),
            ("DEDUCTION", twice, "100", "SUCCESS"),
            ("DEDUCTION", twice, "100", "SUCCESS"),
        ]
    )
