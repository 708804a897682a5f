"""PayPal REST: Orders v2 checkout, captures, refunds, webhooks and Transaction Search.

The adapter lives in ``channels.paypal.adapter``; the pure protocol pieces (amounts and capture
decisions, webhook verification and event mapping, report rows) sit in private sibling modules
so they can be tested without a network.
"""

from channels.paypal.adapter import PaypalAdapter

__all__ = ["PaypalAdapter"]
