"""The sandbox clock (``/_sandbox/clock``) and trade expiry, checked without sleeping.

Business times (payments, expiry, bill days) follow the sandbox clock; signature timestamps and
their replay windows stay on real time, so a merchant with a real clock keeps talking to it.
"""

from __future__ import annotations

import base64
import json
import time
from datetime import UTC, datetime, timedelta, timezone
from typing import Any
from urllib.parse import urlencode

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding

from channels.base import AccountConfig
from sandbox.client import SandboxClientError
from tests.channels.test_sandbox_paycode import ali_code, ali_pay, ali_query, alipay, wx_code, wx_query
from tests.channels.test_sandbox_wechat import APP, _micropay, new_no, order, v2, v3, verify

BEIJING = timezone(timedelta(hours=8))


@pytest.fixture
def wx(sandbox_account) -> AccountConfig:
    return sandbox_account("wechat")


@pytest.fixture
def ali(sandbox_account) -> AccountConfig:
    return sandbox_account("alipay")


def _now(sandbox) -> datetime:
    return datetime.fromisoformat(sandbox.clock()["now"])


# --- the clock -----------------------------------------------------------------------------
def test_the_clock_starts_at_real_time_advances_and_resets(sandbox):
    clock = sandbox.clock()
    assert clock["offset_seconds"] == 0
    assert abs(datetime.fromisoformat(clock["now"]) - datetime.now(UTC)) < timedelta(seconds=5)
    moved = sandbox.advance_clock(86400)
    assert moved["offset_seconds"] == 86400
    assert datetime.fromisoformat(moved["now"]) - datetime.now(UTC) > timedelta(hours=23, minutes=59)
    assert sandbox.reset_clock()["offset_seconds"] == 0
    with pytest.raises(SandboxClientError) as caught:
        sandbox.advance_clock(-1)
    assert caught.value.status == 400


def test_end_day_moves_to_just_after_the_next_midnight_of_that_zone(sandbox):
    before = _now(sandbox).astimezone(BEIJING)
    after = datetime.fromisoformat(sandbox.end_day(8)["now"]).astimezone(BEIJING)
    assert after.date() == before.date() + timedelta(days=1)
    assert (after.hour, after.minute) == (0, 0)
    utc_after = datetime.fromisoformat(sandbox.end_day(0)["now"]).astimezone(UTC)
    assert (utc_after.hour, utc_after.minute) == (0, 0)


def test_signatures_stay_on_real_time_after_the_clock_moved(sandbox, wx):
    sandbox.advance_clock(3 * 86400)
    resp = v3(wx, "POST", APP, order(wx, new_no()))  # signed with the real time
    assert resp.status_code == 200, resp.text
    verify(wx, resp.headers, resp.content)  # Wechatpay-Timestamp within 300 s of real time


def test_delayed_work_due_within_an_advance_runs_at_once(sandbox, wx):
    no = new_no()
    v3(wx, "POST", APP, order(wx, no))
    sandbox.pay("wechat", no, after_seconds=3600, notify=False)  # 3.6 real seconds at time factor 1000
    sandbox.advance_clock(3600)
    deadline = time.monotonic() + 2
    while (
        v3(wx, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={wx.ids['mchid']}").json()["trade_state"]
        != "SUCCESS"
    ):
        assert time.monotonic() < deadline, "the scheduled payment did not run when the clock passed it"
        time.sleep(0.05)


# --- WeChat expiry -------------------------------------------------------------------------
def test_wechat_v3_order_cannot_be_paid_after_its_time_expire(sandbox, wx):
    no = new_no()
    expire = (_now(sandbox) + timedelta(minutes=5)).astimezone(BEIJING).isoformat(timespec="seconds")
    body = order(wx, no, time_expire=expire)
    assert v3(wx, "POST", APP, body).status_code == 200
    sandbox.advance_clock(6 * 60)
    with pytest.raises(SandboxClientError) as caught:
        sandbox.pay("wechat", no)
    assert (caught.value.status, caught.value.code) == (409, "EXPIRED")
    query = v3(wx, "GET", f"/v3/pay/transactions/out-trade-no/{no}?mchid={wx.ids['mchid']}").json()
    assert query["trade_state"] == "NOTPAY"  # a deadline, not a close
    again = v3(wx, "POST", APP, body)
    assert (again.status_code, again.json()["code"]) == (400, "ORDER_CLOSED")


def test_wechat_v3_order_without_time_expire_is_payable_for_seven_days(sandbox, wx):
    payable, late = new_no(), new_no()
    v3(wx, "POST", APP, order(wx, payable))
    v3(wx, "POST", APP, order(wx, late))
    sandbox.advance_clock(7 * 86400 - 60)
    assert sandbox.pay("wechat", payable, notify=False)["trade_state"] == "SUCCESS"
    sandbox.advance_clock(120)
    with pytest.raises(SandboxClientError, match="EXPIRED"):
        sandbox.pay("wechat", late)


def _compact(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y%m%d%H%M%S")


def test_wechat_payment_code_closes_when_its_time_expire_passes(sandbox, wx):
    no = new_no("P")
    out = v2(
        wx,
        "/pay/micropay",
        body="tea",
        out_trade_no=no,
        total_fee="1",
        spbill_create_ip="10.0.0.8",
        auth_code=wx_code("0000"),
        time_expire=_compact(_now(sandbox) + timedelta(minutes=2)),
    )
    assert out["err_code"] == "USERPAYING"
    sandbox.advance_clock(3 * 60)
    assert wx_query(wx, no)["trade_state"] == "CLOSED"
    with pytest.raises(SandboxClientError, match="EXPIRED"):
        sandbox.password("wechat", no)


def test_wechat_password_typed_n_clock_seconds_later(sandbox, wx):
    no = new_no("P")
    assert _micropay(wx, no, wx_code("7130"))["err_code"] == "USERPAYING"
    assert wx_query(wx, no)["trade_state"] == "USERPAYING"
    sandbox.advance_clock(31)
    query = wx_query(wx, no)
    assert query["trade_state"] == "SUCCESS" and query["transaction_id"]


# --- Alipay expiry -------------------------------------------------------------------------
def _order_string(acct: AccountConfig, no: str, time_expire: str | None) -> str:
    """An APP order string (alipay.trade.app.pay) signed by hand: what the app SDK would open."""
    biz: dict[str, Any] = {
        "out_trade_no": no,
        "total_amount": "9.90",
        "subject": "Coffee",
        "product_code": "QUICK_MSECURITY_PAY",
    }
    if time_expire:
        biz["time_expire"] = time_expire
    params = {
        "app_id": acct.ids["app_id"],
        "method": "alipay.trade.app.pay",
        "format": "JSON",
        "charset": "utf-8",
        "sign_type": "RSA2",
        "timestamp": datetime.now(BEIJING).strftime("%Y-%m-%d %H:%M:%S"),
        "version": "1.0",
        "biz_content": json.dumps(biz, separators=(",", ":")),
    }
    content = "&".join(f"{k}={v}" for k, v in sorted(params.items()) if v != "")
    key = serialization.load_pem_private_key(acct.credentials["app_private_key"].encode(), None)
    params["sign"] = base64.b64encode(key.sign(content.encode(), padding.PKCS1v15(), hashes.SHA256())).decode()
    return urlencode(params)


def _beijing_text(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime("%Y-%m-%d %H:%M:%S")


def test_alipay_close_of_a_never_opened_order_is_not_exist_yet_it_stays_payable(sandbox, ali):
    no = new_no("A")
    order_string = _order_string(ali, no, _beijing_text(_now(sandbox) + timedelta(hours=2)))
    closed = alipay(ali, "alipay.trade.close", {"out_trade_no": no})
    assert (closed["code"], closed["sub_code"]) == ("40004", "ACQ.TRADE_NOT_EXIST")
    sandbox.advance_clock(3600)  # an hour later (the order string's signing time is long past)
    sandbox.pay("alipay", no, order_string=order_string)
    assert ali_query(ali, no)["trade_status"] == "TRADE_SUCCESS"


def test_alipay_order_string_is_refused_after_its_time_expire(sandbox, ali):
    no = new_no("A")
    order_string = _order_string(ali, no, _beijing_text(_now(sandbox) + timedelta(minutes=30)))
    alipay(ali, "alipay.trade.close", {"out_trade_no": no})
    sandbox.advance_clock(31 * 60)
    with pytest.raises(SandboxClientError) as caught:
        sandbox.pay("alipay", no, order_string=order_string)
    assert caught.value.code == "ACQ.TRADE_HAS_CLOSE"
    assert ali_query(ali, no)["sub_code"] == "ACQ.TRADE_NOT_EXIST"  # no trade was made


def test_alipay_opened_trade_closes_at_its_time_expire_and_the_payer_is_too_late(sandbox, ali):
    no = new_no("A")
    order_string = _order_string(ali, no, _beijing_text(_now(sandbox) + timedelta(minutes=30)))
    sandbox.act("alipay", no, "open", order_string=order_string)
    assert ali_query(ali, no)["trade_status"] == "WAIT_BUYER_PAY"
    sandbox.advance_clock(31 * 60)
    assert ali_query(ali, no)["trade_status"] == "TRADE_CLOSED"
    sandbox.pay("alipay", no)
    assert ali_query(ali, no)["trade_status"] == "TRADE_CLOSED"


def test_alipay_payment_code_timeout_express_closes_the_waiting_trade(sandbox, ali):
    no = new_no("P")
    assert ali_pay(ali, no, ali_code("7200"), timeout_express="5m")["code"] == "10003"
    sandbox.advance_clock(4 * 60)
    assert ali_query(ali, no)["trade_status"] == "WAIT_BUYER_PAY"
    sandbox.advance_clock(2 * 60)
    assert ali_query(ali, no)["trade_status"] == "TRADE_CLOSED"


def test_alipay_password_typed_n_clock_seconds_later(sandbox, ali):
    no = new_no("P")
    assert ali_pay(ali, no, ali_code("7145"))["code"] == "10003"
    sandbox.advance_clock(46)
    query = ali_query(ali, no)
    assert query["trade_status"] == "TRADE_SUCCESS" and query["send_pay_date"]


def test_wechat_reverse_is_refused_after_seven_days(sandbox, wx):
    no = new_no("P")
    assert _micropay(wx, no, wx_code("1234"))["result_code"] == "SUCCESS"
    sandbox.advance_clock(7 * 86400 + 60)
    out = v2(wx, "/secapi/pay/reverse", out_trade_no=no)
    assert (out["result_code"], out["err_code"], out["recall"]) == ("FAIL", "REVERSE_EXPIRE", "N")
    assert wx_query(wx, no)["trade_state"] == "SUCCESS"
