"""The payment application service: every payment state change goes through here."""

from payments.services.attention import payment_flag_for_ops, payment_return_to_sweeps
from payments.services.cashier import MethodOffer, cashier_methods
from payments.services.close import (
    order_cancel,
    order_close_if_abandoned,
    payment_close,
    payment_close_expired,
    payment_close_superseded,
)
from payments.services.confirm import payment_check, payment_next_check
from payments.services.create import payment_create, payment_place
from payments.services.paycode import (
    paycode_advance,
    paycode_channel,
    paycode_place,
    paycode_resolve_revoked,
    paycode_revoke,
    paycode_wait,
)
from payments.services.report import payment_client_report
from payments.services.start import payment_start
from payments.services.sync import payment_apply_trade, payment_sync_from_channel

__all__ = [
    "MethodOffer",
    "cashier_methods",
    "order_cancel",
    "order_close_if_abandoned",
    "paycode_advance",
    "paycode_channel",
    "paycode_place",
    "paycode_resolve_revoked",
    "paycode_revoke",
    "paycode_wait",
    "payment_apply_trade",
    "payment_check",
    "payment_client_report",
    "payment_close",
    "payment_close_expired",
    "payment_close_superseded",
    "payment_create",
    "payment_flag_for_ops",
    "payment_next_check",
    "payment_place",
    "payment_return_to_sweeps",
    "payment_start",
    "payment_sync_from_channel",
]
