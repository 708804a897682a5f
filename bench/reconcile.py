"""Reconciliation at scale: one WeChat trade bill of N lines (1,000,000 by default) against the
matching local payments and refunds, bulk-inserted, with K injected discrepancies of each kind.

It prints the configuration, lines/s of the whole reconciliation (parse the streamed file, COPY
the lines, match both ways in SQL), the process's peak RSS, each discrepancy kind found versus
injected, and the floor measured in the same run: PostgreSQL COPYing the same file into a bare
table and classifying it with one SQL join against the same payments. Floor and paycore take
turns (``--rounds``, 3 by default, the order alternating), each from a checkpoint and no
reconciliation; the target is judged on the median round's ratio.

    DATABASE_URL=postgres://postgres@127.0.0.1:5432/paycore_bench_recon .venv/bin/python bench/reconcile.py

The database (default ``paycore_bench_recon``) is created if missing and emptied: never point
it at one that matters. Target: within 2x the floor and under 300 MB peak RSS.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any, BinaryIO

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

BEIJING = timezone(timedelta(hours=8))
BILL_DATE = date(2025, 3, 3)
KINDS = (
    "MISSING_LOCALLY",
    "MISSING_AT_CHANNEL",
    "AMOUNT_MISMATCH",
    "STATUS_MISMATCH",
    "FEE_MISMATCH",
    "DUPLICATE_LINE",
)
HEADER = (
    "交易时间,公众账号ID,商户号,特约商户号,设备号,微信订单号,商户订单号,用户标识,交易类型,交易状态,付款银行,货币种类,"
    "应结订单金额,代金券金额,微信退款单号,商户退款单号,退款金额,充值券退款金额,退款类型,退款状态,商品名称,商户数据包,"
    "手续费,费率,订单金额,申请退款金额,费率备注"
)
SUMMARY = "总交易单数,应结订单总金额,退款总金额,充值券退款总金额,手续费总金额,订单总金额,申请退款总金额"


def _yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    return f"{sign}{abs(fen) // 100}.{abs(fen) % 100:02d}"


def _fee(units: int) -> str:
    """1/100000 yuan -> five-decimal yuan text."""
    sign = "-" if units < 0 else ""
    return f"{sign}{abs(units) // 100000}.{abs(units) % 100000:05d}"


def _fee_units(fen: int) -> int:
    return fen * 6  # 0.6 % of fen, in 1/100000 yuan: fen / 100 * 0.006 * 100000


@dataclass
class Generated:
    path: Path
    lines: int
    sha1: str
    summary_offset: int  # where the summary header starts (the floor COPYs the detail part)
    injected: dict[str, int]
    payments: int = 0
    refunds: int = 0
    refs: dict[str, set[str]] = field(default_factory=dict)


def _row(
    when: str,
    trade: str,
    payment_no: str,
    state: str,
    amount: int,
    refund_no: str,
    refund_id: str,
    refund: int,
    fee_units: int,
) -> str:
    pay = amount if state == "SUCCESS" else 0
    return (
        f"`{when},`wx00000000bench,`1900000001,`0,`,`{trade},`{payment_no},`oBenchPayer,`APP,`{state},`OTHERS,`CNY,"
        f"`{_yuan(pay)},`0.00,`{refund_id or '0'},`{refund_no or '0'},`{_yuan(refund)},`0.00,"
        f"`{'ORIGINAL' if refund else ''},`{'SUCCESS' if refund else ''},`bench,`,`{_fee(fee_units)},`0.60%,"
        f"`{_yuan(pay)},`{_yuan(refund)},`\r\n"
    )


def generate(*, lines: int, per_kind: int, account_id: int, workdir: Path, cursor: Any) -> Generated:
    """Write the bill file and COPY the local payments, refunds and refund attempts."""
    k = per_kind
    refunds = max(lines // 20, 1)
    singles = lines - refunds - k - 2 * k  # one-line payments (the ghosts and the doubled come apart)
    if singles < 3 * k + refunds:
        raise SystemExit(f"{lines} lines cannot hold {k} discrepancies of each kind")
    start = datetime.combine(BILL_DATE, datetime.min.time(), tzinfo=BEIJING)
    cursor.execute("SELECT coalesce(max(id), 0) FROM payments_payment")
    (payment_base,) = cursor.fetchone()
    cursor.execute("SELECT coalesce(max(id), 0) FROM refunds_refund")
    (refund_base,) = cursor.fetchone()
    path = workdir / "bench-bill.csv"
    sha1 = hashlib.sha1(usedforsecurity=False)
    totals = {"count": 0, "settle": 0, "refund": 0, "fee": 0, "order": 0}
    payments_tsv = workdir / "payments.tsv"
    refunds_tsv = workdir / "refunds.tsv"
    attempts_tsv = workdir / "attempts.tsv"
    refs: dict[str, set[str]] = {kind: set() for kind in KINDS}
    stamp = "2025-03-01 00:00:00+00"
    created = "2025-03-02 15:00:00+00"  # payments: an hour before the bill day starts (Beijing)
    with (
        path.open("wb") as bill,
        payments_tsv.open("w") as pay_out,
        refunds_tsv.open("w") as ref_out,
        attempts_tsv.open("w") as att_out,
    ):

        def emit(text: str) -> None:
            data = text.encode()
            sha1.update(data)
            bill.write(data)

        emit(HEADER + "\r\n")
        payment_id = payment_base
        refund_id = refund_base

        def local(no: str, amount: int, paid: datetime | None, status: str) -> int:
            nonlocal payment_id
            payment_id += 1
            paid_text = paid.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00") if paid else "\\N"
            pay_out.write(
                f"{payment_id}\t{no}\twechat\tapp\t{account_id}\tbench\t{amount}\tCNY\t{status}\tWX{no}\t"
                f"2025-03-10 00:00:00+00\t{paid_text}\t{{}}\t\t\\N\t\t\\N\t{created}\t{created}\t\\N\t0\t\n"
            )
            return payment_id

        def line(no: str, amount: int, when: datetime, *, fee_units: int | None = None) -> None:
            fee_units = _fee_units(amount) if fee_units is None else fee_units
            emit(_row(when.strftime("%Y-%m-%d %H:%M:%S"), f"WX{no}", no, "SUCCESS", amount, "", "", 0, fee_units))
            totals["count"] += 1
            totals["settle"] += amount
            totals["order"] += amount
            totals["fee"] += fee_units

        seconds = 22 * 3600  # spread over 00:00 - 22:00 Beijing: nothing near midnight (held)
        refunded = 0
        for i in range(singles + k + k + k):
            no = f"B{i:011d}"
            amount = 100 + (i * 37) % 99_900
            when = start + timedelta(seconds=10 + (i * 7919) % seconds)
            if i < singles:
                kind = None
                if i < k:
                    kind = "AMOUNT_MISMATCH"
                elif i < 2 * k:
                    kind = "STATUS_MISMATCH"
                elif i < 3 * k:
                    kind = "FEE_MISMATCH"
                status = "CLOSED" if kind == "STATUS_MISMATCH" else "SUCCEEDED"
                pid = local(no, amount, None if status == "CLOSED" else when, status)
                if kind == "AMOUNT_MISMATCH":
                    line(no, amount + 1, when)
                elif kind == "FEE_MISMATCH":
                    line(no, amount, when, fee_units=99_000)  # 0.99 yuan, far from 0.6 %
                else:
                    line(no, amount, when)
                if kind:
                    refs[kind].add(f"P:{no}")
                elif refunded < refunds:  # a partial refund of a clean payment, a minute later
                    refunded += 1
                    refund_id += 1
                    refund = max(amount // 3, 1)
                    refund_no, channel_refund = f"BR{i:010d}", f"5000{i:012d}"
                    at = when + timedelta(minutes=1)
                    at_text = at.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S+00")
                    ref_out.write(
                        f"{refund_id}\t{refund_no}\t{pid}\t{refund}\tCNY\tCUSTOMER_REQUEST\t\tSUCCEEDED\t"
                        f"{channel_refund}\t{at_text}\t\t{stamp}\t{stamp}\t\\N\t0\t\n"
                    )
                    att_out.write(f"{refund_id}\t1\t{refund_no}\t{channel_refund}\tSUCCEEDED\t\t{stamp}\t{at_text}\n")
                    emit(
                        _row(
                            at.strftime("%Y-%m-%d %H:%M:%S"),
                            f"WX{no}",
                            no,
                            "REFUND",
                            amount,
                            refund_no,
                            channel_refund,
                            refund,
                            -_fee_units(refund),
                        )
                    )
                    totals["count"] += 1
                    totals["refund"] += refund
                    totals["fee"] -= _fee_units(refund)
            elif i < singles + k:  # paid here, never on the bill
                local(no, amount, when, "SUCCEEDED")
                refs["MISSING_AT_CHANNEL"].add(f"P:{no}")
            elif i < singles + 2 * k:  # on the bill twice
                local(no, amount, when, "SUCCEEDED")
                line(no, amount, when)
                line(no, amount, when)
                refs["DUPLICATE_LINE"].add(f"P:{no}")
            else:  # on the bill, unknown here
                line(no, amount, when)
                refs["MISSING_LOCALLY"].add(f"P:{no}")
        summary_offset = bill.tell()
        emit(SUMMARY + "\r\n")
        emit(
            f"`{totals['count']},`{_yuan(totals['settle'])},`{_yuan(totals['refund'])},`0.00,"
            f"`{_fee(totals['fee'])},`{_yuan(totals['order'])},`{_yuan(totals['refund'])}\r\n"
        )
    assert totals["count"] == lines, (totals["count"], lines)
    for table, source, columns in (
        (
            "payments_payment",
            payments_tsv,
            "id, payment_no, channel, method, channel_account_id, customer_ref, amount, currency, status, "
            "channel_trade_no, expires_at, paid_at, prepay_data, payer_id, client_ip, return_url, watch_until, "
            "created_at, updated_at, next_check_at, check_failures, last_check_error",
        ),
        (
            "refunds_refund",
            refunds_tsv,
            "id, refund_no, payment_id, amount, currency, reason, note, status, channel_refund_no, succeeded_at, "
            "fail_code, created_at, updated_at, next_check_at, check_failures, last_check_error",
        ),
        (
            "refunds_refundattempt",
            attempts_tsv,
            "refund_id, number, request_no, channel_refund_no, status, fail_code, created_at, finished_at",
        ),
    ):
        filled = _fill_defaults(cursor, table, columns)
        with source.open("rb") as handle:
            cursor.copy_expert(f"COPY {table} ({columns}) FROM STDIN", handle, size=1 << 20)
        for column in filled:
            cursor.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" DROP DEFAULT')
        source.unlink()
    for table in ("payments_payment", "refunds_refund", "refunds_refundattempt"):
        cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))")  # noqa: S608
        cursor.execute(f"ANALYZE {table}")
    injected = {kind: len(found) for kind, found in refs.items()}
    return Generated(path, lines, sha1.hexdigest(), summary_offset, injected, payment_id - payment_base, refunded, refs)


_ZERO = {
    "character varying": "''",
    "text": "''",
    "integer": "0",
    "bigint": "0",
    "smallint": "0",
    "boolean": "false",
    "jsonb": "'{}'",
    "timestamp with time zone": "now()",
}


def _fill_defaults(cursor: Any, table: str, columns: str) -> list[str]:
    """Columns added since this bench was written (NOT NULL, no default, not in ``columns``)
    get a zero default for the COPY; returns them so the caller drops the defaults again."""
    given = {c.strip() for c in columns.split(",")}
    cursor.execute(
        "SELECT column_name, data_type FROM information_schema.columns WHERE table_name = %s "
        "AND is_nullable = 'NO' AND column_default IS NULL AND is_identity = 'NO'",
        [table],
    )
    filled = []
    for column, data_type in cursor.fetchall():
        if column not in given and data_type in _ZERO:
            cursor.execute(f'ALTER TABLE {table} ALTER COLUMN "{column}" SET DEFAULT {_ZERO[data_type]}')
            filled.append(column)
    return filled


def _chunks(path: Path, size: int = 256 * 1024) -> Iterator[bytes]:
    with path.open("rb") as handle:
        while chunk := handle.read(size):
            yield chunk


def reconcile(generated: Generated, *, account_id: int) -> tuple[Any, float]:
    """Load the file through the WeChat adapter's bill reader and match it: (run, seconds)."""
    from channels.models import ChannelAccount
    from channels.wechat._bill_sql import wechat_bill
    from reconciliation.services import bill_for, bill_load, reconcile_day
    from reconciliation.services.phases import recording

    account = ChannelAccount.objects.get(pk=account_id)
    with recording() as phases:
        started = time.perf_counter()
        row = bill_for(account=account, bill_date=BILL_DATE)
        # The bill the WeChat adapter's fetch_bill returns, over the file instead of the download.
        bill = wechat_bill(
            bill_date=BILL_DATE, chunks=lambda: _chunks(generated.path), hash_type="SHA1", hash_value=generated.sha1
        )
        bill_load(bill_id=row.pk, bill=bill)
        loaded = time.perf_counter()
        run = reconcile_day(account_id=account_id, bill_date=BILL_DATE, trigger="bench")
    run.load_seconds = loaded - started
    run.phases = dict(phases)  # not a model field: the bench prints it
    return run, time.perf_counter() - started


class _Until(io.RawIOBase):
    """The file up to ``limit`` bytes (the detail part: COPY cannot take the summary rows)."""

    def __init__(self, handle: BinaryIO, limit: int) -> None:
        self.handle, self.left = handle, limit

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        size = self.left if size < 0 else min(size, self.left)
        data = self.handle.read(size)
        self.left -= len(data)
        return data


def floor(generated: Generated, *, account_id: int, cursor: Any) -> tuple[float, dict[str, int]]:
    """COPY the same file into a bare table, then classify it with one join: (seconds, counts)."""
    cursor.execute("DROP TABLE IF EXISTS bench_bare_bill")
    columns = ", ".join(f"c{i} text" for i in range(27))
    cursor.execute(f"CREATE TABLE bench_bare_bill ({columns})")
    started = time.perf_counter()
    with generated.path.open("rb") as handle:
        cursor.copy_expert(
            "COPY bench_bare_bill FROM STDIN WITH (FORMAT csv, HEADER true)",
            _Until(handle, generated.summary_offset),
            size=1 << 20,
        )
    cursor.execute(
        """
        SELECT CASE WHEN p.id IS NULL THEN 'MISSING_LOCALLY' WHEN b.payment_no IS NULL THEN 'MISSING_AT_CHANNEL'
                    WHEN p.status <> 'SUCCEEDED' THEN 'STATUS_MISMATCH' WHEN b.amount <> p.amount THEN 'AMOUNT_MISMATCH'
                    ELSE 'MATCHED' END AS kind, count(*)
        FROM (SELECT substr(c6, 2) AS payment_no, replace(substr(c24, 2), '.', '')::bigint AS amount
              FROM bench_bare_bill WHERE c9 = '`SUCCESS') b
        FULL JOIN (SELECT id, payment_no, amount, status FROM payments_payment
                   WHERE channel_account_id = %s) p ON p.payment_no = b.payment_no
        GROUP BY 1
        """,
        [account_id],
    )
    counts = dict(cursor.fetchall())
    seconds = time.perf_counter() - started
    cursor.execute("DROP TABLE bench_bare_bill")
    return seconds, counts


def found_refs(run: Any) -> dict[str, set[str]]:
    from reconciliation.models import Discrepancy

    out: dict[str, set[str]] = {kind: set() for kind in KINDS}
    for kind, ref in Discrepancy.objects.filter(last_run=run).values_list("kind", "ref"):
        out.setdefault(kind, set()).add(ref)
    return out


def make_account() -> int:
    from channels.models import ChannelAccount

    account, _ = ChannelAccount.objects.update_or_create(
        name="bench-wechat",
        defaults={
            "channel": "wechat",
            "base_url": "https://wechat.bench.invalid",
            "ids": {"mchid": "1900000001", "appid": "wx00000000bench"},
            "options": {"fee_rate": "0.006", "fee_rounding": "half_up", "bill_ready_after_seconds": 0},
        },
    )
    return account.pk


def _setup_database(url: str) -> None:
    import psycopg2
    from psycopg2.extensions import make_dsn, parse_dsn

    dsn = parse_dsn(url)
    name = dsn.get("dbname", "paycore_bench_recon")
    admin = psycopg2.connect(make_dsn(**{**dsn, "dbname": "postgres"}))
    admin.autocommit = True
    with admin.cursor() as cursor:
        cursor.execute("SELECT 1 FROM pg_database WHERE datname = %s", [name])
        if cursor.fetchone() is None:
            cursor.execute(f'CREATE DATABASE "{name}"')
    admin.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=1_000_000)
    parser.add_argument("--per-kind", type=int, default=100, help="injected discrepancies of each kind")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds of the floor and paycore")
    args = parser.parse_args()
    url = os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paycore_bench_recon")
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings.test")
    _setup_database(url)
    import django

    django.setup()
    from django.core.management import call_command

    call_command("migrate", verbosity=0)
    measure(lines=args.lines, per_kind=args.per_kind, rounds=args.rounds)


def measure(*, lines: int, per_kind: int, rounds: int) -> float:
    """Empty the database's payments and reconciliations, generate, measure and print;
    returns the median ratio to the floor."""
    from django.conf import settings
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE reconciliation_discrepancyaction, reconciliation_discrepancy, reconciliation_reconciliationrun, "
            "reconciliation_billline, reconciliation_channelbill, reconciliation_reconciledpaymentblock, "
            "reconciliation_reconciledrefund, refunds_refundattempt, refunds_refund, payments_payment CASCADE"
        )
        cursor.execute("SHOW server_version")
        (server,) = cursor.fetchone()
        cursor.execute("SHOW work_mem")
        (work_mem,) = cursor.fetchone()
        cursor.execute("SHOW max_parallel_workers_per_gather")
        (parallel,) = cursor.fetchone()
    account_id = make_account()
    print(
        f"config: lines={lines:,} per_kind={per_kind} rounds={rounds} format=wechat ALL (plain CSV) "
        f"cpu_count={os.cpu_count()} postgres={server} work_mem={work_mem} "
        f"max_parallel_workers_per_gather={parallel} load_workers={settings.RECONCILIATION_LOAD_WORKERS} "
        f"match_workers={settings.RECONCILIATION_MATCH_WORKERS} python={sys.version.split()[0]}"
    )
    with tempfile.TemporaryDirectory(prefix="bench-recon-") as tmp:
        t0 = time.perf_counter()
        with connection.cursor() as cursor:
            generated = generate(
                lines=lines, per_kind=per_kind, account_id=account_id, workdir=Path(tmp), cursor=cursor.cursor
            )
            cursor.execute("VACUUM ANALYZE payments_payment")
        size = generated.path.stat().st_size
        print(
            f"generated: {generated.lines:,} bill lines ({size / 1e6:.1f} MB), {generated.payments:,} payments and "
            f"{generated.refunds:,} refunds bulk-inserted in {time.perf_counter() - t0:.1f} s"
        )
        ratios, exact = [], True
        for number in range(1, rounds + 1):
            # Each round starts from no reconciliation at all and a checkpoint, so neither side
            # pays for the other's dirty pages; the order alternates to cancel the machine's drift.
            measured: dict[str, Any] = {}
            for side in ("floor", "paycore") if number % 2 else ("paycore", "floor"):
                _reset()
                with connection.cursor() as cursor:
                    if side == "floor":
                        measured["floor"] = floor(generated, account_id=account_id, cursor=cursor.cursor)
                    else:
                        measured["paycore"] = reconcile(generated, account_id=account_id)
                        found = found_refs(measured["paycore"][0])  # before the next reset empties it
            floor_seconds, floor_counts = measured["floor"]
            run, seconds = measured["paycore"]
            ratios.append(seconds / floor_seconds)
            right = all(found.get(kind, set()) == generated.refs[kind] for kind in KINDS)
            right &= not {k: v for k, v in found.items() if k not in KINDS and v}
            exact &= right
            print(
                f"round {number}: floor {floor_seconds:.2f} s, paycore {run.status} in {seconds:.2f} s "
                f"(load {run.load_seconds:.2f} s, match {run.match_seconds:.2f} s) = {generated.lines / seconds:,.0f} "
                f"lines/s, {ratios[-1]:.2f}x the floor; every discrepancy found and nothing else: "
                f"{'yes' if right else 'NO'}"
            )
    print(f"floor's classification (last round): {floor_counts}")
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS: {rss_mb:.0f} MB; last round matched={run.matched:,} held={run.held}")
    for kind in KINDS:
        got = len(found.get(kind, ()))
        right = found.get(kind, set()) == generated.refs[kind]
        print(f"  {kind:<20} injected {generated.injected[kind]:>5}  found {got:>5}  {'ok' if right else 'WRONG'}")
    print("phases of the last round (seconds; a phase run by several connections at once adds up their time):")
    for name, spent in run.phases.items():
        print(f"  {name:<28} {spent:7.2f}")
    ratio = statistics.median(ratios)
    each = ", ".join(f"{r:.2f}" for r in ratios)
    print(
        f"target: {ratio:.2f}x the floor, the median of {len(ratios)} rounds ({each}; "
        f"<= 2x: {'met' if ratio <= 2 else 'NOT met'}), "
        f"{rss_mb:.0f} MB (< 300 MB: {'met' if rss_mb < 300 else 'NOT met'}), "
        f"every injected discrepancy found and nothing else: {'yes' if exact else 'NO'}"
    )
    return ratio


def _reset() -> None:
    """No reconciliation at all (the local payments and refunds stay), then a checkpoint."""
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(
            "TRUNCATE reconciliation_discrepancyaction, reconciliation_discrepancy, reconciliation_reconciliationrun, "
            "reconciliation_billline, reconciliation_channelbill, reconciliation_reconciledpaymentblock, "
            "reconciliation_reconciledrefund"
        )
        cursor.execute("CHECKPOINT")


if __name__ == "__main__":
    main()
