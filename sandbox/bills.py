"""Bill-side faults, applied the same way to every channel's bill lines.

Each simulator builds its day's lines from its own trades, then hands them here with a few
channel hooks (how to read a line's trade, rewrite its amount or fee, make a line for a trade
nobody placed, make a revocation line). Faults come from ``POST /_sandbox/faults`` (kinds
``bill_*``, matched by ``channel``, ``account``, ``date`` and ``trade``); summaries are computed
by the simulator afterwards, from the lines as served.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass
from typing import Generic, TypeVar

from sandbox.core import FaultRule

Line = TypeVar("Line")
DEFAULT_EXTRA_AMOUNT = 100  # minor units (or points) of a bill_extra line without ``amount``


@dataclass(frozen=True)
class BillHooks(Generic[Line]):
    trade_of: Callable[[Line], str]  # the merchant's number of a line's trade
    is_payment: Callable[[Line], bool]
    with_amount: Callable[[Line, int], Line]
    with_fee: Callable[[Line, int], Line]
    extra_line: Callable[[str, int], Line]  # a payment line for a trade nobody placed (number, amount)
    revoked: Callable[[Line], Line] | None = None  # a revocation line for this payment line


def extra_trade_no(fault: FaultRule) -> str:
    return fault.trade or "SBXEXTRA" + secrets.token_hex(6).upper()


def apply_bill_faults(lines: list[Line], faults: list[FaultRule], hooks: BillHooks[Line]) -> list[Line]:
    """The lines as the faulty bill shows them. A fault naming a trade that has no payment line
    in this bill changes nothing."""
    out = list(lines)
    for fault in faults:

        def payment_of_trade(line: Line, fault: FaultRule = fault) -> bool:
            return hooks.is_payment(line) and hooks.trade_of(line) == fault.trade

        if fault.kind == "bill_missing":
            out = [line for line in out if hooks.trade_of(line) != fault.trade]
        elif fault.kind == "bill_extra":
            amount = fault.amount if fault.amount is not None else DEFAULT_EXTRA_AMOUNT
            out.append(hooks.extra_line(extra_trade_no(fault), amount))
        elif fault.kind == "bill_amount":
            out = [hooks.with_amount(line, fault.amount or 0) if payment_of_trade(line) else line for line in out]
        elif fault.kind == "bill_fee":
            out = [hooks.with_fee(line, fault.amount or 0) if payment_of_trade(line) else line for line in out]
        elif fault.kind == "bill_duplicate":
            out = [copy for line in out for copy in ([line, line] if payment_of_trade(line) else [line])]
        elif fault.kind == "bill_revoked" and hooks.revoked is not None:
            out += [hooks.revoked(line) for line in out if payment_of_trade(line)]
    return out
