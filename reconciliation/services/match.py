"""Matching one loaded bill against paycore's payments and refunds, both ways, in SQL.

Bill side: the lines are grouped by what they are about (a payment number, a refund's request
number) and joined to paycore's rows; every group that does not agree becomes a discrepancy,
every one that does is stamped reconciled (``ReconciledPaymentBlock`` / ``ReconciledRefund``).
Local side: payments and refunds that the channel's clock puts on this bill day (``paid_at`` /
``succeeded_at``, the channel's own times) and that no bill has matched are missing at the
channel, except those in the last ``hold`` seconds of the day: a trade near midnight or a late
notification may be on the next day's bill, so they are held and looked for there (they are
that day's business then: the next day's window starts ``hold`` seconds early once this day
has been reconciled).

A payment-code trade paid and then revoked shows twice: its payment line matches the payment
(SUCCEEDED or REVOKED), and its revocation line matches a REVOKED payment or a REVOCATION
refund of it. A revocation line for a payment paycore still holds as SUCCEEDED is a status
mismatch: the channel gave the money back.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from decimal import Decimal
from functools import partial
from typing import Any

from django.conf import settings
from django.db import connection, transaction

from reconciliation.services.parallel import Helpers
from reconciliation.services.phases import phase

# Local payment states that mean "the money was taken" (REVOKED: taken, then given back).
PAID_STATES = ("SUCCEEDED", "REVOKED")
# A refund line's channel status that means the refund did not happen.
CHANNEL_FAILED_REFUND = ("FAIL", "FAILED", "CLOSED", "D")
# How long before its bill day a payment or refund the day's bill shows may have been created.
# The searches for local rows on a day (missing at the channel, held, the day's totals) are
# bounded by ``created_at`` (indexed) so that they read the day's rows, not the account's whole
# history: ``paid_at`` and ``succeeded_at`` carry no index (one more index on every payment
# write, for a daily query). A payment is paid within its TTL and settle grace of being created;
# a refund may wait at the channel for weeks (bank cards).
PAYMENT_LOOKBACK = timedelta(days=2)
REFUND_LOOKBACK = timedelta(days=60)
# The fee a payment of ``amount`` fen owes at the published rate ``num / den``, in whole fen,
# in bigint arithmetic (``amount`` is never negative, so integer division floors): a numeric
# product for each of a million payments cost ~0.1 s. A rate of at most ``FEE_RATE_DECIMALS``
# decimals keeps the products of amounts up to 10**12 fen well inside a bigint.
FEE_ROUNDINGS = {
    "half_up": "(2 * %(amount)s * %(num)s + %(den)s) / (2 * %(den)s)",
    "down": "%(amount)s * %(num)s / %(den)s",
}
FEE_RATE_DECIMALS = 6


@dataclass(frozen=True)
class MatchScope:
    account_id: int
    bill_id: int
    bill_date: Any
    run_id: int
    window_start: datetime  # the bill day's start in the channel's zone
    window_end: datetime
    expected_from: datetime  # window_start, or hold earlier when the day before was reconciled
    hold: timedelta
    now: datetime
    fee_rate: Decimal | None = None
    fee_rounding: str = "half_up"
    # The bill's own per-currency totals, added up at load (``ChannelBill.line_totals``);
    # None for a bill loaded before they were kept: its lines are added up here instead.
    bill_totals: dict[str, dict[str, int]] | None = None


@dataclass
class MatchResult:
    matched: int = 0
    held: int = 0
    found: int = 0
    new: int = 0
    auto_resolved: int = 0
    counts: dict[str, int] = field(default_factory=dict)
    totals: dict[str, dict[str, int]] = field(default_factory=dict)


_DISCREPANCY_COLUMNS = (
    "channel_account_id, bill_date, kind, ref, line_kind, run_id, last_run_id, payment_id, refund_id, payment_no, "
    "refund_no, channel_trade_no, channel_refund_no, currency, channel_amount, local_amount, channel_status, "
    "local_status, channel_fee, expected_fee, line_count, status, resolution_note, resolved_by, created_at, updated_at"
)
# Found again: refresh both sides; the status (and ops' decision) stays.
_UPSERT = (
    "INSERT INTO reconciliation_discrepancy ("
    + _DISCREPANCY_COLUMNS
    + """)
SELECT %(account)s, %(bill_date)s, d.kind, d.ref, d.line_kind, %(run)s, %(run)s, d.payment_id, d.refund_id,
       d.payment_no, d.refund_no, d.channel_trade_no, d.channel_refund_no, d.currency, d.channel_amount,
       d.local_amount, d.channel_status, d.local_status, d.channel_fee, d.expected_fee, d.line_count, 'OPEN', '', '',
       %(now)s, %(now)s
FROM ({select}) d
ON CONFLICT (channel_account_id, bill_date, kind, ref) DO UPDATE SET
    last_run_id = EXCLUDED.last_run_id, payment_id = EXCLUDED.payment_id, refund_id = EXCLUDED.refund_id,
    channel_amount = EXCLUDED.channel_amount, local_amount = EXCLUDED.local_amount,
    channel_status = EXCLUDED.channel_status, local_status = EXCLUDED.local_status,
    channel_fee = EXCLUDED.channel_fee, expected_fee = EXCLUDED.expected_fee, line_count = EXCLUDED.line_count,
    updated_at = EXCLUDED.updated_at
RETURNING (xmax = 0) AS inserted
"""
)


def _stamped(row: str, *, within: str = "") -> str:
    """SQL: whether payment ``<row>.payment_id`` has its bit set in a block of stamps
    (``ReconciledPaymentBlock``: block ``payment_id >> 6``, bit ``payment_id & 63``). ``within``
    names a relation of all the payments asked about: the stamps read are those of its blocks'
    range, not the whole history's (an anti-join hashes what it reads)."""
    bound = ""
    if within:
        lowest, highest = (f"(SELECT {f}(payment_id) >> 6 FROM {within})" for f in ("min", "max"))  # noqa: S608
        bound = f" AND s.block BETWEEN {lowest} AND {highest}"
    return (
        "EXISTS (SELECT 1 FROM reconciliation_reconciledpaymentblock s "  # noqa: S608 - an alias of ours
        f"WHERE s.block = {row}.payment_id >> 6 AND s.bits & (1::bigint << ({row}.payment_id & 63)::int) <> 0{bound})"
    )


def _stamp(rows: str) -> str:
    """SQL: stamp the payments of ``rows`` that agree (``ok``) and no block holds yet, as
    blocks of this run (one row per block of 64 payment ids, their bits or-ed)."""
    return (
        "INSERT INTO reconciliation_reconciledpaymentblock (block, bits, run_id, reconciled_at) "  # noqa: S608
        f"SELECT payment_id >> 6, bit_or(1::bigint << (payment_id & 63)::int), %(run)s, %(now)s FROM {rows} "
        f"WHERE ok AND NOT {_stamped(rows, within=rows)} GROUP BY payment_id >> 6"
    )


# Payment lines, one group per payment number, joined both ways to the payments of this account
# created around the day (the account's history would be hashed whole otherwise): a group
# without a payment there looks its number up among all of them afterwards
# (``_PAYMENT_ELSEWHERE``); a payment without a group (``n`` NULL) may be missing at the
# channel. Grouped and compared byte-wise (COLLATE "C", which groups exactly as the database's
# own collation does for equality): sorting a million payment numbers under a libc collation
# took 0.85 s against 0.54 s, and the min/max of text columns likewise.
_PAYMENT_GROUPS = """
SELECT g.*, p.id AS payment_id, p.amount AS p_amount, p.currency AS p_currency, p.status AS p_status,
       p.paid_at AS p_paid_at, p.created_at AS p_created_at,
       (g.n IS NOT NULL AND p.id IS NOT NULL AND p.status IN %(paid)s AND g.amount = p.amount
        AND g.amount_max = p.amount AND g.currency = p.currency AND g.currency_max = p.currency) AS ok
FROM (
    SELECT payment_no COLLATE "C" AS payment_no, count(*) AS n, min(amount) AS amount, max(amount) AS amount_max,
           min(currency COLLATE "C") AS currency, max(currency COLLATE "C") AS currency_max, min(fee) AS fee,
           max(fee) AS fee_max, min(channel_trade_no COLLATE "C") AS trade_no, min(status COLLATE "C") AS status
    FROM reconciliation_billline WHERE bill_id = %(bill)s AND kind = 'PAYMENT' AND {part}
    GROUP BY 1
) g
FULL JOIN (
    SELECT id, payment_no, amount, currency, status, paid_at, created_at FROM payments_payment
    WHERE channel_account_id = %(account)s AND created_at >= %(payments_created_from)s
      AND created_at < %(payments_created_until)s AND {part}
) p ON p.payment_no = g.payment_no
"""

# One pass over the groups: every group that agrees is stamped reconciled (once: the first bill
# that matched it), 64 payments to a row (``ReconciledPaymentBlock``), and the matched payments
# are counted and added up per currency. Only the rows that may hold a problem are kept
# (``recon_pay_<share>``): groups that do not agree, and paid payments of the day's local window
# (up to its end: the held ones too) that no line shows. Those are carried whole, in one column
# that is NULL for the rest: materializing every group's every column (a million rows, 300 MB,
# spilled to disk) cost 0.75 s of a 2.8 s pass, and searching the payments again for the
# missing ones 0.4 s a share. One run of an account matches at a time (``_account_lock``) and
# the shares' payments are disjoint, so the anti-join finds every earlier stamp.
_PAYMENT_PASS = """
WITH g AS MATERIALIZED (
    SELECT payment_id, p_amount, p_currency, ok,
           CASE WHEN (n IS NOT NULL AND (payment_id IS NULL OR NOT ok OR n > 1 {fee_filter}))
                  OR (n IS NULL AND p_status IN %(paid)s AND p_paid_at >= %(local_from)s
                      AND p_paid_at < %(window_end)s AND p_created_at < %(window_end)s)
                THEN ROW(x.*)::{pay} END AS kept
    FROM ({groups}) x
),
stamped AS ({stamp}),
kept AS (
    INSERT INTO {pay} SELECT (kept).* FROM g WHERE kept IS DISTINCT FROM NULL  -- IS NOT NULL: no field NULL
)
{matched}
"""

# The groups no payment created around the day matched (few: lines paycore does not know, or a
# payment created long before it was paid), looked up by number (the unique index) among all of
# the account's payments; those that agree are stamped and counted as in the pass.
_PAYMENT_ELSEWHERE = """
WITH found AS (
    UPDATE {pay} r SET payment_id = p.id, p_amount = p.amount, p_currency = p.currency, p_status = p.status,
           ok = (p.status IN %(paid)s AND r.amount = p.amount AND r.amount_max = p.amount
                 AND r.currency = p.currency AND r.currency_max = p.currency)
    FROM payments_payment p
    WHERE r.payment_id IS NULL AND p.payment_no = r.payment_no COLLATE "default" AND p.channel_account_id = %(account)s
    RETURNING r.payment_id, r.ok, r.p_amount, r.p_currency
),
stamped AS ({stamp})
SELECT p_currency, count(*), sum(p_amount) FROM found WHERE ok GROUP BY p_currency
"""

_PAYMENT_PROBLEMS = """
SELECT k.kind, 'P:' || r.payment_no AS ref, 'PAYMENT' AS line_kind, r.payment_id, NULL::bigint AS refund_id,
       r.payment_no, '' AS refund_no, r.trade_no AS channel_trade_no, '' AS channel_refund_no, r.currency,
       r.amount AS channel_amount, r.p_amount AS local_amount, r.status AS channel_status,
       coalesce(r.p_status, '') AS local_status, r.fee AS channel_fee, r.expected_fee, r.n AS line_count
FROM (
    SELECT *, {expected_fee} AS expected_fee FROM {pay}
    WHERE n IS NOT NULL AND (payment_id IS NULL OR NOT ok OR n > 1 {fee_filter})
) r
CROSS JOIN LATERAL unnest(ARRAY[
    CASE WHEN r.payment_id IS NULL THEN 'MISSING_LOCALLY' END,
    CASE WHEN r.payment_id IS NOT NULL AND r.p_status NOT IN %(paid)s THEN 'STATUS_MISMATCH' END,
    CASE WHEN r.payment_id IS NOT NULL AND (r.amount <> r.p_amount OR r.amount_max <> r.amount
              OR r.currency <> r.p_currency OR r.currency_max <> r.currency) THEN 'AMOUNT_MISMATCH' END,
    CASE WHEN r.n > 1 THEN 'DUPLICATE_LINE' END,
    CASE WHEN {fee_problem} THEN 'FEE_MISMATCH' END
]) AS k(kind)
WHERE k.kind IS NOT NULL
"""

# Revocation lines: matched by a REVOKED payment or a REVOCATION refund of the payment.
_REVOCATION_GROUPS = """
CREATE TEMP TABLE recon_rev ON COMMIT DROP AS
SELECT g.*, p.id AS payment_id, p.amount AS p_amount, p.currency AS p_currency, p.status AS p_status,
       rv.id AS refund_id, rv.status AS refund_status
FROM (
    SELECT payment_no, count(*) AS n, min(amount) AS amount, max(amount) AS amount_max, min(currency) AS currency,
           min(channel_trade_no) AS trade_no, min(channel_refund_no) AS channel_refund_no,
           min(refund_request_no) AS refund_request_no, min(status) AS status
    FROM reconciliation_billline WHERE bill_id = %(bill)s AND kind = 'REVOCATION'
    GROUP BY payment_no
) g
LEFT JOIN payments_payment p ON p.payment_no = g.payment_no AND p.channel_account_id = %(account)s
LEFT JOIN LATERAL (
    SELECT r.id, r.status FROM refunds_refund r
    WHERE r.payment_id = p.id AND r.reason = 'REVOCATION' AND r.status <> 'FAILED' ORDER BY r.id LIMIT 1
) rv ON true
"""

_REVOCATION_PROBLEMS = """
SELECT k.kind, 'V:' || r.payment_no AS ref, 'REVOCATION' AS line_kind, r.payment_id, r.refund_id,
       r.payment_no, r.refund_request_no AS refund_no, r.trade_no AS channel_trade_no,
       r.channel_refund_no, r.currency, r.amount AS channel_amount, r.p_amount AS local_amount,
       r.status AS channel_status, coalesce(r.p_status, '') AS local_status, NULL::bigint AS channel_fee,
       NULL::bigint AS expected_fee, r.n AS line_count
FROM recon_rev r
CROSS JOIN LATERAL unnest(ARRAY[
    CASE WHEN r.payment_id IS NULL THEN 'MISSING_LOCALLY' END,
    CASE WHEN r.payment_id IS NOT NULL AND r.p_status <> 'REVOKED' AND r.refund_id IS NULL
         THEN 'STATUS_MISMATCH' END,
    CASE WHEN r.payment_id IS NOT NULL AND (r.amount <> r.p_amount OR r.amount_max <> r.amount
              OR r.currency <> r.p_currency) THEN 'AMOUNT_MISMATCH' END,
    CASE WHEN r.n > 1 THEN 'DUPLICATE_LINE' END
]) AS k(kind)
WHERE k.kind IS NOT NULL
"""

# Refund lines, one group per number the channel saw: the attempt's request number (or, when
# the channel shows none, its own refund number), joined to the refund of this account.
_REFUND_GROUPS = """
CREATE TEMP TABLE recon_ref ON COMMIT DROP AS
SELECT g.*, coalesce(ra.id, rc.id) AS refund_id, coalesce(ra.amount, rc.amount) AS r_amount,
       coalesce(ra.currency, rc.currency) AS r_currency, coalesce(ra.status, rc.status) AS r_status,
       coalesce(ra.payment_no, rc.payment_no) AS local_payment_no, a.status AS attempt_status
FROM (
    SELECT CASE WHEN refund_request_no <> '' THEN refund_request_no ELSE channel_refund_no END AS refund_key,
           count(*) AS n, min(amount) AS amount, max(amount) AS amount_max, min(currency) AS currency,
           min(payment_no) AS payment_no, min(channel_trade_no) AS trade_no,
           min(refund_request_no) AS refund_request_no, min(channel_refund_no) AS channel_refund_no,
           min(status) AS status, bool_or(status IN %(channel_failed)s) AS channel_failed
    FROM reconciliation_billline WHERE bill_id = %(bill)s AND kind = 'REFUND'
    GROUP BY 1
) g
LEFT JOIN refunds_refundattempt a ON a.request_no = g.refund_request_no AND g.refund_request_no <> ''
LEFT JOIN LATERAL (
    SELECT r.id, r.amount, r.currency, r.status, p.payment_no FROM refunds_refund r
    JOIN payments_payment p ON p.id = r.payment_id AND p.channel_account_id = %(account)s
    WHERE r.id = a.refund_id
) ra ON true
LEFT JOIN LATERAL (
    SELECT r.id, r.amount, r.currency, r.status, p.payment_no FROM refunds_refund r
    JOIN payments_payment p ON p.id = r.payment_id AND p.channel_account_id = %(account)s
    WHERE ra.id IS NULL AND g.channel_refund_no <> '' AND r.channel_refund_no = g.channel_refund_no
) rc ON true
"""

# Only the groups with a problem are unnested, and their payment looked up (payment numbers are
# unique): joined to every refund group, the planner hashed all the account's payments (0.38 s
# for 50,000 refunds, against 0.03 s now).
_REFUND_PROBLEMS = """
SELECT k.kind, 'R:' || r.refund_key AS ref, 'REFUND' AS line_kind,
       (SELECT p.id FROM payments_payment p WHERE p.payment_no = coalesce(r.local_payment_no, r.payment_no)
        AND p.channel_account_id = %(account)s) AS payment_id, r.refund_id,
       coalesce(r.local_payment_no, r.payment_no) AS payment_no, r.refund_request_no AS refund_no,
       r.trade_no AS channel_trade_no, r.channel_refund_no, r.currency, r.amount AS channel_amount,
       r.r_amount AS local_amount, r.status AS channel_status,
       coalesce(CASE WHEN r.attempt_status = 'FAILED' THEN 'FAILED' ELSE r.r_status END, '') AS local_status,
       NULL::bigint AS channel_fee, NULL::bigint AS expected_fee, r.n AS line_count
FROM (
    SELECT * FROM (
        SELECT *, (refund_id IS NOT NULL AND (r_status = 'FAILED' OR attempt_status = 'FAILED')) AS local_failed
        FROM recon_ref
    ) f
    WHERE refund_id IS NULL OR n > 1 OR channel_failed <> local_failed OR amount <> r_amount OR amount_max <> amount
       OR currency <> r_currency
) r
CROSS JOIN LATERAL unnest(ARRAY[
    CASE WHEN r.refund_id IS NULL THEN 'MISSING_LOCALLY' END,
    CASE WHEN r.refund_id IS NOT NULL AND r.channel_failed <> r.local_failed THEN 'STATUS_MISMATCH' END,
    CASE WHEN r.refund_id IS NOT NULL AND (r.amount <> r.r_amount OR r.amount_max <> r.amount
              OR r.currency <> r.r_currency) THEN 'AMOUNT_MISMATCH' END,
    CASE WHEN r.n > 1 THEN 'DUPLICATE_LINE' END
]) AS k(kind)
WHERE k.kind IS NOT NULL
"""

# Local payments the channel's clock puts on this day (or held from the day before) that no
# bill matched, between ``local_from`` and ``local_until`` (the day up to its holding window;
# ``_held`` counts the window itself with the same search): the pass kept every paid payment of
# the window that no line of the bill shows; those an earlier bill matched are stamped.
_LOCAL_PAYMENTS = """
SELECT 'MISSING_AT_CHANNEL' AS kind, 'P:' || p.payment_no AS ref, '' AS line_kind, p.id AS payment_id,
       NULL::bigint AS refund_id, p.payment_no, '' AS refund_no, coalesce(p.channel_trade_no, '') AS channel_trade_no,
       '' AS channel_refund_no, p.currency, NULL::bigint AS channel_amount, p.amount AS local_amount,
       '' AS channel_status, p.status AS local_status, NULL::bigint AS channel_fee, NULL::bigint AS expected_fee,
       0 AS line_count
FROM {pay} r
JOIN payments_payment p ON p.id = r.payment_id
WHERE r.n IS NULL AND r.p_paid_at >= %(local_from)s AND r.p_paid_at < %(local_until)s
  AND r.p_created_at < %(local_until)s
  AND NOT {stamped}
"""

_LOCAL_REFUNDS = """
SELECT 'MISSING_AT_CHANNEL' AS kind, 'R:' || coalesce(a.request_no, r.refund_no) AS ref, '' AS line_kind,
       p.id AS payment_id, r.id AS refund_id, p.payment_no, coalesce(a.request_no, r.refund_no) AS refund_no,
       coalesce(p.channel_trade_no, '') AS channel_trade_no, coalesce(r.channel_refund_no, '') AS channel_refund_no,
       r.currency, NULL::bigint AS channel_amount, r.amount AS local_amount, '' AS channel_status,
       r.status AS local_status, NULL::bigint AS channel_fee, NULL::bigint AS expected_fee, 0 AS line_count
FROM refunds_refund r
JOIN payments_payment p ON p.id = r.payment_id AND p.channel_account_id = %(account)s
LEFT JOIN LATERAL (
    SELECT x.request_no FROM refunds_refundattempt x WHERE x.refund_id = r.id AND x.status = 'SUCCEEDED'
    ORDER BY x.number DESC LIMIT 1
) a ON true
WHERE r.status = 'SUCCEEDED'
  AND NOT EXISTS (SELECT 1 FROM reconciliation_reconciledrefund s WHERE s.refund_id = r.id)
  AND r.succeeded_at >= %(local_from)s AND r.succeeded_at < %(local_until)s
  AND r.created_at >= %(refunds_created_from)s AND r.created_at < %(local_until)s
  AND NOT EXISTS (SELECT 1 FROM recon_ref x WHERE x.refund_id = r.id)
  AND NOT EXISTS (SELECT 1 FROM recon_rev x WHERE x.refund_id = r.id)
"""


def payment_lookback() -> timedelta:
    """``PAYMENT_LOOKBACK``, or longer where payments are configured to live longer."""
    lifetime = timedelta(seconds=settings.PAYMENT_TTL_SECONDS + settings.PAYMENT_SETTLE_GRACE_SECONDS)
    return max(PAYMENT_LOOKBACK, 2 * lifetime)


def _params(scope: MatchScope) -> dict[str, Any]:
    return {
        "account": scope.account_id,
        "bill": scope.bill_id,
        "bill_date": scope.bill_date,
        "run": scope.run_id,
        "now": scope.now,
        "paid": PAID_STATES,
        "channel_failed": CHANNEL_FAILED_REFUND,
        # The local searches' window: the day (from ``expected_from``) up to its held end.
        "local_from": scope.expected_from,
        "local_until": scope.window_end - scope.hold,
        "payments_created_from": scope.expected_from - payment_lookback(),
        "payments_created_until": scope.window_end + timedelta(days=1),  # clocks apart: paycore's, the channel's
        "refunds_created_from": scope.expected_from - REFUND_LOOKBACK,
        "hold_from": scope.window_end - scope.hold,
        "window_start": scope.window_start,
        "window_end": scope.window_end,
        "fee_rate": scope.fee_rate,
    }


class _Timed:
    """A cursor whose statements are timed as ``match.<name>`` phases (see ``phases``)."""

    def __init__(self, cursor: Any) -> None:
        self.cursor = cursor

    def run(self, name: str, sql: str, params: dict[str, Any] | None = None) -> Any:
        with phase(f"match.{name}"):
            self.cursor.execute(sql, params)
        return self.cursor

    def __getattr__(self, name: str) -> Any:
        return getattr(self.cursor, name)


def _fee_terms(scope: MatchScope) -> tuple[str, str, str]:
    """SQL for a payment group's fee check (``fee_filter`` keeps a group with a wrong fee for
    the problem search, ``fee_problem`` names it), and the ``expected`` fee, from the
    account's published rate; all empty checks when it has none."""
    if scope.fee_rate is None:
        return "", "false", "NULL::bigint"
    num, den = scope.fee_rate.as_integer_ratio()
    expected = "(" + FEE_ROUNDINGS[scope.fee_rounding] % {"amount": "p_amount", "num": num, "den": den} + ")"
    fee_filter = f"OR (ok AND fee IS NOT NULL AND (fee <> {expected} OR fee_max <> fee))"
    fee_problem = (
        "r.payment_id IS NOT NULL AND r.ok AND r.fee IS NOT NULL AND (r.fee <> r.expected_fee OR r.fee_max <> r.fee)"
    )
    return fee_filter, fee_problem, expected


def _matched_sums(currencies: list[str]) -> str:
    """The select list adding up the matched payment groups (``g``, where ``ok``): per currency
    of the bill, each a count and a sum (a matched payment is in its line's currency), or,
    for a bill loaded before its currencies were kept, grouped (a sort, with hash
    aggregation off). A million groups sorted by currency only to find one cost ~0.3 s."""
    if not currencies:
        return "SELECT p_currency, count(*), sum(p_amount) FROM g WHERE ok GROUP BY p_currency"
    sums = ", ".join(
        f"count(*) FILTER (WHERE p_currency = %(currency{i})s), "
        f"coalesce(sum(p_amount) FILTER (WHERE p_currency = %(currency{i})s), 0)"
        for i in range(len(currencies))
    )
    return f"SELECT {sums} FROM g WHERE ok"  # noqa: S608 - placeholders only; the currencies are parameters


def match_workers() -> int:
    """How many connections match a bill's payments at once (``RECONCILIATION_MATCH_WORKERS``)."""
    return max(1, settings.RECONCILIATION_MATCH_WORKERS)


def _settings(cursor: _Timed) -> None:
    cursor.run("settings", "SET LOCAL work_mem = '256MB'")
    # The lines are analyzed at load; with their statistics the planner would group a
    # million payment numbers in a hash table of min/max text states: 4.3 s and 450 MB,
    # against 1.7 s sorted (EXPLAIN ANALYZE, 1M lines). Every grouping here is by such keys.
    cursor.run("settings", "SET LOCAL enable_hashagg = off")
    # The planner's cost of a per-problem lookup, counted for every row before the filter,
    # crossed the thresholds of JIT compilation with inlining and optimization: 0.3 s to
    # compile a statement that runs in 15 ms. Without JIT no statement here measured slower.
    cursor.run("settings", "SET LOCAL jit = off")
    # The match's connections already keep the cores busy: a statement's own parallel workers
    # (the refund side scanned the lines with two) only added their start-up and hand-over.
    cursor.run("settings", "SET LOCAL max_parallel_workers_per_gather = 0")


def _account_lock(account_id: int) -> int:
    """The advisory lock key under which one run of an account matches at a time: its payments
    are stamped by no one else (a payment belongs to one account), so the anti-joins that stamp
    them find every earlier stamp, whichever connection stamps."""
    return (7002 << 32) | zlib.crc32(f"reconciliation-match:{account_id}".encode())


@dataclass
class _PaymentPart:
    """What one share of the payment numbers came to."""

    matched: int = 0
    matched_amounts: dict[str, int] = field(default_factory=dict)
    found: int = 0
    new: int = 0
    held: int = 0


def match_bill(scope: MatchScope) -> MatchResult:
    """Classify, record discrepancies, stamp what matched. Call inside the run's own (durable)
    transaction: the caller's connection matches the revocation and refund lines there, while
    ``match_workers()`` connections each take a share of the payment numbers (by hash; lines
    and local payments alike), stamp, record and commit their share. A failure after a share
    committed leaves true stamps and findings under a FAILED run; the rerun completes them."""
    result = MatchResult()
    params = _params(scope)
    with connection.cursor() as raw:
        cursor = _Timed(raw)
        _settings(cursor)
        cursor.run("account_lock", "SELECT pg_advisory_xact_lock(%(key)s)", {"key": _account_lock(scope.account_id)})
        parts = match_workers()
        payments = Helpers([partial(_payment_part, scope, part, parts) for part in range(parts)])
        with payments:  # the shares run while this connection matches the refunds
            refunds = _refund_side(cursor, params)
            totals = _day_totals(cursor, params, scope.bill_totals)
            with phase("match.payments_wait"):
                shares = payments.results()
        result.found, result.new, result.held, result.matched = refunds
        matched: dict[str, int] = {}
        for share in shares:
            result.matched += share.matched
            result.found, result.new = result.found + share.found, result.new + share.new
            result.held += share.held
            for currency, amount in share.matched_amounts.items():
                matched[currency] = matched.get(currency, 0) + amount
        # Earlier findings this run no longer makes resolve themselves.
        cursor.run(
            "auto_resolve",
            "UPDATE reconciliation_discrepancy SET status = 'RESOLVED', resolved_by = 'reconciliation', "
            "resolved_at = %(now)s, updated_at = %(now)s, "
            "resolution_note = 'no longer found by run ' || %(run)s::text "
            "WHERE channel_account_id = %(account)s AND bill_date = %(bill_date)s AND status = 'OPEN' "
            "AND last_run_id <> %(run)s",
            params,
        )
        result.auto_resolved = cursor.rowcount
        cursor.run(
            "counts",
            "SELECT kind, count(*) FROM reconciliation_discrepancy WHERE last_run_id = %(run)s GROUP BY kind",
            params,
        )
        result.counts = dict(cursor.fetchall())
        result.totals = _outcome_totals(cursor, params, totals, matched)
    return result


def _refund_side(cursor: _Timed, params: dict[str, Any]) -> tuple[int, int, int, int]:
    """The revocation and refund lines, on the run's own connection: (found, new, held,
    matched)."""
    found_all = new_all = 0
    cursor.run("revocation_groups", _REVOCATION_GROUPS, params)
    cursor.run("refund_groups", _REFUND_GROUPS, params)
    # Without statistics a temporary table looks like a few rows, and the missing-refund
    # search then scanned recon_ref once per refund: 15 s for 10,000 refunds (EXPLAIN).
    cursor.run("analyze", "ANALYZE recon_rev, recon_ref")
    for name, select in (
        ("revocation_problems", _REVOCATION_PROBLEMS),
        ("refund_problems", _REFUND_PROBLEMS),
        ("missing_refunds", _LOCAL_REFUNDS),
    ):
        found, new = _record(cursor, name, select, params)
        found_all, new_all = found_all + found, new_all + new
    cursor.run(
        "stamp_revocations",
        "INSERT INTO reconciliation_reconciledrefund (refund_id, run_id, reconciled_at) "
        "SELECT refund_id, %(run)s, %(now)s FROM recon_rev r WHERE r.refund_id IS NOT NULL "
        "AND r.amount = r.amount_max AND r.amount = r.p_amount ON CONFLICT DO NOTHING",
        params,
    )
    cursor.run(
        "count_revocations",
        "SELECT count(*) FROM recon_rev WHERE payment_id IS NOT NULL "
        "AND (p_status = 'REVOKED' OR refund_id IS NOT NULL) "
        "AND amount = amount_max AND amount = p_amount AND currency = p_currency",
    )
    (matched_revocations,) = cursor.fetchone()
    refund_agrees = (
        "r.refund_id IS NOT NULL AND r.amount = r.amount_max AND r.amount = r.r_amount "
        "AND r.currency = r.r_currency "
        "AND r.channel_failed = (r.r_status = 'FAILED' OR coalesce(r.attempt_status, '') = 'FAILED')"
    )
    cursor.run(
        "stamp_refunds",
        "INSERT INTO reconciliation_reconciledrefund (refund_id, run_id, reconciled_at) "  # noqa: S608 - constant
        f"SELECT refund_id, %(run)s, %(now)s FROM recon_ref r WHERE {refund_agrees} ON CONFLICT DO NOTHING",
        params,
    )
    cursor.run("count_refunds", f"SELECT count(*) FROM recon_ref r WHERE {refund_agrees}")  # noqa: S608 - constant SQL
    (matched_refunds,) = cursor.fetchone()
    held = _held(cursor, _LOCAL_REFUNDS, params)
    return found_all, new_all, held, matched_revocations + matched_refunds


def _held(cursor: _Timed, local: str, params: dict[str, Any]) -> int:
    """How many of the rows the ``local`` search (``_LOCAL_PAYMENTS`` / ``_LOCAL_REFUNDS``) finds
    in the day's last ``hold`` seconds: not matched yet, looked for in the next day's bill."""
    window = {**params, "local_from": params["hold_from"], "local_until": params["window_end"]}
    cursor.run("held", f"SELECT count(*) FROM ({local}) held", window)  # noqa: S608 - our own SQL
    (count,) = cursor.fetchone()
    return int(count)


def _record(cursor: _Timed, name: str, select: str, params: dict[str, Any]) -> tuple[int, int]:
    """Upsert the discrepancies ``select`` finds: (found, of which new)."""
    cursor.run(name, _UPSERT.format(select=select), params)
    inserted = [row[0] for row in cursor.fetchall()]
    return len(inserted), sum(inserted)


def _payment_part(scope: MatchScope, part: int, parts: int) -> _PaymentPart:
    """Share ``part`` of ``parts`` of the payment numbers, in a transaction of its own: group
    its payment lines, stamp what agrees, record the problems and the local payments the bill
    does not show, count those held for the next bill."""
    share = _PaymentPart()
    pay = f"recon_pay_{part}"  # this connection's own; ``_{part}`` when the shares run in turn on one
    share_of = "mod(hashtext(payment_no) & 2147483647, %(parts)s) = %(part)s"  # lines and payments alike
    params = {**_params(scope), "part": part, "parts": parts}
    fee_filter, fee_problem, expected = _fee_terms(scope)
    currencies = sorted(scope.bill_totals or ())
    groups = _PAYMENT_GROUPS.format(part=share_of)
    with transaction.atomic(), connection.cursor() as raw:
        cursor = _Timed(raw)
        _settings(cursor)
        cursor.run("payment_groups", f"CREATE TEMP TABLE {pay} ON COMMIT DROP AS {groups} WITH NO DATA", params)
        cursor.run(
            "payment_groups",
            _PAYMENT_PASS.format(
                groups=groups,
                pay=pay,
                fee_filter=fee_filter,
                matched=_matched_sums(currencies),
                stamp=_stamp("g"),
            ),
            {**params, **{f"currency{i}": currency for i, currency in enumerate(currencies)}},
        )
        rows = cursor.fetchall()
        per_currency = list(zip(currencies, rows[0][0::2], rows[0][1::2], strict=True)) if currencies else rows
        cursor.run("payment_elsewhere", _PAYMENT_ELSEWHERE.format(pay=pay, stamp=_stamp("found")), params)
        per_currency += cursor.fetchall()
        for currency, count, amount in per_currency:
            if count:
                share.matched_amounts[currency] = share.matched_amounts.get(currency, 0) + int(amount)
            share.matched += count
        cursor.run("analyze", f"ANALYZE {pay}")
        local = _LOCAL_PAYMENTS.format(pay=pay, stamped=_stamped("r", within=pay))
        problems = _PAYMENT_PROBLEMS.format(
            expected_fee=expected, fee_filter=fee_filter, fee_problem=fee_problem, pay=pay
        )
        for name, select in (("payment_problems", problems), ("missing_payments", local)):
            found, new = _record(cursor, name, select, params)
            share.found, share.new = share.found + found, share.new + new
        share.held = _held(cursor, local, params)
    return share


def _day_totals(
    cursor: Any, params: dict[str, Any], bill_totals: dict[str, dict[str, int]] | None
) -> dict[str, dict[str, int]]:
    """The run's per-currency totals of the day, both sides: what the bill's lines add up to
    (``bill_totals``, kept at load, spares a pass over them) and what paycore's payments and
    refunds of the day do. Read while the payment shares still run: none of it depends on them."""
    totals: dict[str, dict[str, int]] = {}
    # A handful of currencies: hashed, not a million rows sorted to find them (0.15 s).
    cursor.run("settings", "SET LOCAL enable_hashagg = on")

    def put(currency: str, name: str, value: int | None) -> None:
        totals.setdefault(currency, {})[name] = int(value or 0)

    if bill_totals is None:  # loaded before the load kept them: add the lines up
        cursor.run(
            "totals",
            "SELECT currency, sum(amount) FILTER (WHERE kind = 'PAYMENT'), "
            "sum(amount) FILTER (WHERE kind <> 'PAYMENT'), sum(fee) "
            "FROM reconciliation_billline WHERE bill_id = %(bill)s GROUP BY currency",
            params,
        )
        bill_totals = {
            currency: {"bill_payments": payments, "bill_refunds": refunds, "bill_fees": fees}
            for currency, payments, refunds, fees in cursor.fetchall()
        }
    for currency, sums in bill_totals.items():
        for name in ("bill_payments", "bill_refunds", "bill_fees"):
            put(currency, name, sums.get(name))
    cursor.run(
        "totals",
        "SELECT currency, sum(amount) FROM payments_payment WHERE channel_account_id = %(account)s "
        "AND status IN %(paid)s AND paid_at >= %(window_start)s AND paid_at < %(window_end)s "
        "AND created_at >= %(payments_created_from)s AND created_at < %(window_end)s GROUP BY currency",
        params,
    )
    for currency, amount in cursor.fetchall():
        put(currency, "local_payments", amount)
    cursor.run(
        "totals",
        "SELECT f.currency, sum(f.amount) FROM refunds_refund f JOIN payments_payment p ON p.id = f.payment_id "
        "WHERE p.channel_account_id = %(account)s AND f.status = 'SUCCEEDED' AND f.succeeded_at >= %(window_start)s "
        "AND f.succeeded_at < %(window_end)s AND f.created_at >= %(refunds_created_from)s "
        "AND f.created_at < %(window_end)s GROUP BY f.currency",
        params,
    )
    for currency, amount in cursor.fetchall():
        put(currency, "local_refunds", amount)
    return totals


def _outcome_totals(
    cursor: Any, params: dict[str, Any], totals: dict[str, dict[str, int]], matched: dict[str, int]
) -> dict[str, dict[str, int]]:
    """``totals`` with what the run came to per currency: the matched payments' amounts
    (``matched``) and the discrepancies' (all of them recorded by now)."""
    for currency, amount in matched.items():
        totals.setdefault(currency, {})["matched_amount"] = int(amount or 0)
    cursor.run(
        "totals",
        "SELECT currency, sum(coalesce(channel_amount, local_amount)) FROM reconciliation_discrepancy "
        "WHERE last_run_id = %(run)s GROUP BY currency",
        params,
    )
    for currency, amount in cursor.fetchall():
        totals.setdefault(currency or "", {})["discrepant_amount"] = int(amount or 0)
    return totals
