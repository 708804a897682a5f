"""Alipay OpenAPI (RSA2 gateway): APP / page / WAP pay, bar-code pay, refunds and bills.

The adapter lives in ``channels.alipay.adapter``; the pure protocol pieces (RSA2 signatures and
raw response scanning, yuan and time conversion, bill archives) sit in private sibling modules
so they can be tested without a network.
"""

from channels.alipay.adapter import AlipayAdapter

__all__ = ["AlipayAdapter"]
