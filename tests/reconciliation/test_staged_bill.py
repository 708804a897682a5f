"""A WeChat bill parsed by the database (``channels.wechat._bill_sql`` through
``reconciliation.services.stage``) keeps the parser's refusals: a cell that does not convert
makes the bill unreadable and a summary that does not add up refuses it, with no line kept
either way; a good bill loads whole, and loading it again gives the same lines."""

from __future__ import annotations

import hashlib
from datetime import date
from typing import Any

import pytest

from channels.base import BillRowKind, ChannelUnavailable
from channels.models import ChannelAccount
from channels.wechat._bill import parse_bill
from channels.wechat._bill_sql import wechat_bill
from reconciliation.models import BillLine, ChannelBill
from reconciliation.services import bill_for, bill_load, stage

pytestmark = pytest.mark.django_db(transaction=True)

DAY = date(2025, 3, 3)
HEADER = (
    "交易时间,微信订单号,商户订单号,交易状态,货币种类,应结订单金额,微信退款单号,商户退款单号,退款金额,退款状态,手续费"
)
SUMMARY = "总交易单数,应结订单总金额,退款总金额,手续费总金额"


def _row(no: str, amount: str = "10.00", *, state: str = "SUCCESS", fee: str = "0.06000") -> str:
    return f"`2025-03-03 10:00:00,`WX{no},`{no},`{state},`CNY,`{amount},`0,`0,`0.00,`,`{fee}"


def _bill(rows: list[str], summary: str, ends: tuple[str, ...] = ("\r\n",)) -> tuple[bytes, str]:
    """The bill's bytes, its lines ended by ``ends`` in turn, and their SHA-1."""
    lines = [HEADER, *rows, SUMMARY, summary]
    data = "".join(line + ends[i % len(ends)] for i, line in enumerate(lines)).encode()
    return data, hashlib.sha1(data, usedforsecurity=False).hexdigest()


def _load(rows: list[str], summary: str, ends: tuple[str, ...] = ("\r\n",)) -> ChannelBill:
    account, _ = ChannelAccount.objects.get_or_create(
        name="staged-wechat",
        defaults={"channel": "wechat", "base_url": "https://wechat.staged.invalid", "ids": {"mchid": "1900000008"}},
    )
    row = bill_for(account=account, bill_date=DAY)
    data, sha1 = _bill(rows, summary, ends)
    chunks = [data[i : i + 50] for i in range(0, len(data), 50)]  # lines split across reads, the summary's too
    bill = wechat_bill(bill_date=DAY, chunks=lambda: chunks, hash_type="SHA1", hash_value=sha1)
    return bill_load(bill_id=row.pk, bill=bill)


def test_a_bill_that_adds_up_loads_whole_and_loads_the_same_again() -> None:
    rows = [_row("P1"), _row("P2", "20.50", fee="0.12300")]
    summary = "`2,`30.50,`0.00,`0.18300"
    bill = _load(rows, summary)
    assert bill.status == ChannelBill.Status.LOADED and bill.line_count == 2
    assert bill.payment_amount == 3050 and bill.fee_total == 18
    again = _load(rows, summary)
    assert again.status == ChannelBill.Status.LOADED
    lines = BillLine.objects.filter(bill=again).order_by("line_no")
    assert [(line.line_no, line.payment_no, line.amount) for line in lines] == [(1, "P1", 1000), (2, "P2", 2050)]


@pytest.mark.parametrize(
    "ends", [("\r\n",), ("\n",), ("\r\n", "\n"), ("\n", "\r\n")], ids=["CRLF", "LF", "CRLF first", "LF first"]
)
def test_a_bill_loads_the_same_lines_whichever_way_its_lines_end_blank_lines_skipped(ends: tuple[str, ...]) -> None:
    rows = [_row(f"P{i}") for i in range(1, 5)] + ["", " \t"] + [_row(f"P{i}") for i in range(5, 9)]
    bill = _load(rows, "`8,`80.00,`0.00,`0.48000", ends)
    assert bill.status == ChannelBill.Status.LOADED and bill.line_count == 8
    lines = BillLine.objects.filter(bill=bill).order_by("line_no").values_list("line_no", "payment_no", "amount")
    assert list(lines) == [(i, f"P{i}", 1000) for i in range(1, 9)]


@pytest.mark.parametrize("ends", [("\r\n",), ("\n",), ("\r\n", "\n")], ids=["CRLF", "LF", "mixed"])
def test_a_carriage_return_inside_a_row_makes_the_bill_unreadable_and_keeps_nothing(ends: tuple[str, ...]) -> None:
    rows = [_row("P1").replace("`WXP1", "`WX\rP1"), _row("P2"), _row("P3")]
    with pytest.raises(ChannelUnavailable) as raised:
        _load(rows, "`3,`30.00,`0.00,`0.18000", ends)
    assert raised.value.code == "BILL_UNREADABLE"
    assert not BillLine.objects.exists()


@pytest.mark.parametrize(
    ("row", "says"),
    [
        (_row("P2", state="PAYING"), "unknown bill 交易状态 PAYING"),
        (_row("P2", "12.3x"), "12.3x"),
        (_row("P2", "1.005"), "bad bill amount 1.005"),
        (_row("P2").replace("`0.00,`,", "`0.000001,`,"), "bad amount in 退款金额"),
        (_row("P2").rsplit(",", 2)[0], "missing data for column"),
    ],
    ids=[
        "unknown status",
        "amount not a number",
        "amount finer than a fen",
        "summed cell finer than 1/100000",
        "too few cells",
    ],
)
def test_a_cell_that_does_not_convert_makes_the_bill_unreadable_and_keeps_nothing(row: str, says: str) -> None:
    with pytest.raises(ChannelUnavailable) as raised:
        settle = "11.005" if "1.005" in row else "20.00"
        _load([_row("P1"), row], f"`2,`{settle},`0.00,`0.12000")
    assert raised.value.code == "BILL_UNREADABLE" and says in raised.value.message
    assert not BillLine.objects.exists()
    assert ChannelBill.objects.get().status == ChannelBill.Status.PENDING  # the sweep asks again


@pytest.mark.parametrize(
    "summary", ["`3,`20.00,`0.00,`0.12000", "`2,`20.01,`0.00,`0.12000", "`2,`20.00,`0.00,`0.12001"]
)
def test_a_summary_the_lines_do_not_add_up_to_refuses_the_bill_and_keeps_nothing(summary: str) -> None:
    bill = _load([_row("P1"), _row("P2")], summary)
    assert bill.status == ChannelBill.Status.REFUSED and "summary" in bill.refuse_reason
    assert bill.line_count == 0 and not BillLine.objects.exists()


def _added_up(bill: ChannelBill) -> dict[str, dict[str, int]]:
    """The lines added up the way the match did before bills kept their totals."""
    totals: dict[str, dict[str, int]] = {}
    for line in BillLine.objects.filter(bill=bill):
        sums = totals.setdefault(line.currency, {"bill_payments": 0, "bill_refunds": 0, "bill_fees": 0})
        sums["bill_payments" if line.kind == BillLine.Kind.PAYMENT else "bill_refunds"] += line.amount
        sums["bill_fees"] += line.fee or 0
    return totals


def test_the_lines_per_currency_totals_are_kept_with_the_bill_as_they_are_inserted() -> None:
    rows = [
        _row("P1"),
        _row("P2", "20.50", fee="0.12300").replace("`CNY", "`USD"),
        _row("P3", "3.00", state="REVOKED", fee="0.00000"),
        _row("P4", "1.00", fee=""),
    ]
    bill = _load(rows, "`4,`34.50,`0.00,`0.18300")
    assert bill.status == ChannelBill.Status.LOADED
    assert bill.line_totals == _added_up(bill)
    assert bill.line_totals == {
        "CNY": {"bill_payments": 1100, "bill_refunds": 300, "bill_fees": 6},
        "USD": {"bill_payments": 2050, "bill_refunds": 0, "bill_fees": 12},
    }
    ChannelBill.objects.filter(pk=bill.pk).update(line_totals=None)
    again = _load(rows, "`4,`34.50,`0.00,`0.18300")
    assert again.line_totals == bill.line_totals  # a reload keeps them again


def test_a_refused_bill_keeps_no_totals() -> None:
    bill = _load([_row("P1")], "`1,`11.00,`0.00,`0.06000")
    assert bill.status == ChannelBill.Status.REFUSED and bill.line_totals is None


def test_the_database_reads_each_cell_as_the_row_parser_does_blanks_and_backticks_included() -> None:
    rows = [
        _row("P1"),
        "` 2025-03-03 11:00:00 ,` WXP2 ,`P2 ,` SUCCESS,`CNY ,` 20.50 ,`0,`0,`0.00,`,` 0.12300",
        "`2025-03-03 12:00:00,`WXP1,`P1,`REFUND ,`CNY,`0.00,` 5000001 ,` R1 ,`4.00,` SUCCESS ,`-0.02400",
        "2025-03-03 13:00:00,WXP4,P4,SUCCESS,CNY,1.00,0,0,0.00,,0.00600",
        "`,`WXP5,`P5,`SUCCESS,`,`2.00,`0,`0,`0.00,`,`",
        "`2025-03-03 14:00:00,`WXP6,`P6,`SUCCESS,`CNY,`3.00,`0,`0,`  ,`,` \t",  # numbers of blanks alone
        "`2025-03-03 15:00:00,` `WXP7,``P7,`SUCCESS,`CNY,`4.00,`0,`0,`0.00,`,`0.02400",  # no backtick is a value's
    ]
    summary = "`7,`40.50,`4.00,`0.18900"
    kinds = {BillRowKind.PAYMENT: "PAYMENT", BillRowKind.REFUND: "REFUND", BillRowKind.REVOKED: "REVOCATION"}
    parsed = [
        (
            kinds[r.kind],
            r.channel_trade_no,
            r.payment_no,
            r.refund_no or "",
            r.channel_refund_no or "",
            r.amount,
            r.fee,
            r.currency,
            r.status,
            r.occurred_at,
        )
        for r in parse_bill(_bill(rows, summary)[0])
    ]
    bill = _load(rows, summary)
    columns = ["kind", "channel_trade_no", "payment_no", "refund_request_no", "channel_refund_no", "amount"]
    columns += ["fee", "currency", "status", "trade_time"]
    loaded = list(BillLine.objects.filter(bill=bill).order_by("line_no").values_list(*columns))
    assert bill.status == ChannelBill.Status.LOADED and loaded == parsed
    assert parsed[1][1:3] == ("WXP2", "P2") and parsed[2][3:5] == ("R1", "5000001") and parsed[4][-1] is None
    assert parsed[5][5:7] == (300, None)  # the blank fee cell is no fee
    assert parsed[6][1:3] == ("WXP7", "P7")


@pytest.fixture
def small_chunks(monkeypatch: pytest.MonkeyPatch, settings: Any) -> None:
    """Chunks of a few lines each, taken by three connections at once."""
    monkeypatch.setattr(stage, "CHUNK_BYTES", 300)
    settings.RECONCILIATION_LOAD_WORKERS = 3


def test_a_bill_in_many_chunks_on_several_connections_keeps_every_line_once_in_file_order(small_chunks: None) -> None:
    rows = [_row(f"P{i}", f"{i}.00") for i in range(1, 41)]
    bill = _load(rows, f"`40,`{sum(range(1, 41))}.00,`0.00,`2.40000")
    assert bill.status == ChannelBill.Status.LOADED and bill.line_count == 40
    assert bill.payment_amount == sum(range(1, 41)) * 100 and bill.fee_total == 240
    lines = BillLine.objects.filter(bill=bill).order_by("line_no").values_list("line_no", "payment_no", "amount")
    assert list(lines) == [(i, f"P{i}", i * 100) for i in range(1, 41)]


def test_a_bad_cell_in_a_late_chunk_makes_the_bill_unreadable_and_keeps_nothing(small_chunks: None) -> None:
    rows = [_row(f"P{i}") for i in range(1, 41)]
    rows[36] = _row("P37", "1.0x")
    with pytest.raises(ChannelUnavailable) as raised:
        _load(rows, "`40,`400.00,`0.00,`2.40000")
    assert raised.value.code == "BILL_UNREADABLE" and "1.0x" in raised.value.message
    assert not BillLine.objects.exists()


def test_a_summary_that_disagrees_with_lines_in_many_chunks_refuses_the_bill_and_keeps_nothing(
    small_chunks: None,
) -> None:
    bill = _load([_row(f"P{i}") for i in range(1, 41)], "`40,`400.01,`0.00,`2.40000")
    assert bill.status == ChannelBill.Status.REFUSED and not BillLine.objects.exists()
