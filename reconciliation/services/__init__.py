"""Reconciliation services: loading bills, matching them, and ops' decisions on what differs."""

from reconciliation.services.load import bill_fetch, bill_load
from reconciliation.services.resolve import (
    discrepancy_apply_channel_truth,
    discrepancy_ignore,
    discrepancy_refund,
    discrepancy_resolve,
)
from reconciliation.services.run import bill_for, bill_reconcile_due, bills_plan, day_window, reconcile_day

__all__ = [
    "bill_fetch",
    "bill_for",
    "bill_load",
    "bill_reconcile_due",
    "bills_plan",
    "day_window",
    "discrepancy_apply_channel_truth",
    "discrepancy_ignore",
    "discrepancy_refund",
    "discrepancy_resolve",
    "reconcile_day",
]
