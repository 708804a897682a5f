"""The payment application service: every payment state change goes through here."""

from payments.services.cashier import MethodOffer, cashier_methods
from payments.services.close import payment_close, payment_close_superseded
from payments.services.create import payment_create, payment_place
from payments.services.report import payment_client_report
from payments.services.start import payment_start
from payments.services.sync import payment_apply_trade, payment_sync_from_channel

__all__ = [
    "MethodOffer",
    "cashier_methods",
    "payment_apply_trade",
    "payment_client_report",
    "payment_close",
    "payment_close_superseded",
    "payment_create",
    "payment_place",
    "payment_start",
    "payment_sync_from_channel",
]
