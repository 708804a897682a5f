"""paycore's own numbers. They travel to every channel, so they obey the strictest rules:
WeChat's out_trade_no (6-32 chars of [0-9A-Za-z_-*]), Alipay's (<=64 letters, digits,
underscore), PayPal's invoice_id (<=127). Upper-case letters and digits only, 27 characters.
"""

from __future__ import annotations

import secrets

from django.utils import timezone

_ALPHABET = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"  # Crockford base32: no I, L, O, U


def _random(length: int) -> str:
    bits = secrets.randbits(5 * length)  # one draw from the OS's CSPRNG, 5 bits a character
    return "".join(_ALPHABET[(bits >> (5 * i)) & 31] for i in range(length))


def new_number(prefix: str) -> str:
    """``prefix`` + UTC yyyymmddHHMMSS + 12 random chars (60 bits): sortable and unguessable."""
    return f"{prefix}{timezone.now():%Y%m%d%H%M%S}{_random(12)}"


def new_payment_no() -> str:
    return new_number("P")


def new_order_no() -> str:
    return new_number("O")
