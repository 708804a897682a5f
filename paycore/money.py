"""Money is an integer in the currency's minor unit plus an ISO 4217 code. Never a float."""

from __future__ import annotations

import re

# Active ISO 4217 codes by minor-unit exponent (2 unless listed under 0 or 3).
_ZERO_DECIMAL = "BIF CLP DJF GNF ISK JPY KMF KRW PYG RWF UGX UYI VND VUV XAF XOF XPF"
_THREE_DECIMAL = "BHD IQD JOD KWD LYD OMR TND"
_TWO_DECIMAL = (
    "AED AFN ALL AMD ANG AOA ARS AUD AWG AZN BAM BBD BDT BGN BMD BND BOB BRL BSD BTN BWP BYN BZD "
    "CAD CDF CHF CNY COP CRC CUP CVE CZK DKK DOP DZD EGP ERN ETB EUR FJD FKP GBP GEL GHS GIP GMD "
    "GTQ GYD HKD HNL HTG HUF IDR ILS INR IRR JMD KES KGS KHR KPW KYD KZT LAK LBP LKR LRD LSL MAD "
    "MDL MGA MKD MMK MNT MOP MRU MUR MVR MWK MXN MYR MZN NAD NGN NIO NOK NPR NZD PAB PEN PGK PHP "
    "PKR PLN QAR RON RSD RUB SAR SBD SCR SDG SEK SGD SHP SLE SOS SRD SSP STN SVC SYP SZL THB TJS "
    "TMT TOP TRY TTD TWD TZS UAH USD UYU UZS VES WST XCD YER ZAR ZMW ZWG"
)

CURRENCY_EXPONENTS: dict[str, int] = {
    **{code: 2 for code in _TWO_DECIMAL.split()},
    **{code: 0 for code in _ZERO_DECIMAL.split()},
    **{code: 3 for code in _THREE_DECIMAL.split()},
}

# Upper bound for any single amount: 10^12 minor units (10 billion in a 2-decimal currency).
# Far above any real order, far below BIGINT, so sums of many lines cannot overflow.
MAX_AMOUNT = 10**12


def is_currency(code: str) -> bool:
    return code in CURRENCY_EXPONENTS


_DECIMAL_TEXT = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")


def exponent(currency: str) -> int:
    """The ISO 4217 minor-unit exponent; ``ValueError`` for a code not in the table (never a guess:
    a wrong exponent moves money by a factor of 100)."""
    try:
        return CURRENCY_EXPONENTS[currency]
    except (KeyError, TypeError):
        raise ValueError(f"unknown currency {currency!r}") from None


def minor_to_decimal(amount: int, currency: str) -> str:
    """Minor units -> the plain decimal text of the major unit, exactly: ``990`` CNY -> ``"9.90"``,
    ``990`` JPY -> ``"990"``, ``1234`` KWD -> ``"1.234"``, ``-5`` USD -> ``"-0.05"``."""
    if isinstance(amount, bool) or not isinstance(amount, int):
        raise TypeError("amount must be an int in minor units")
    places = exponent(currency)
    whole, fraction = divmod(abs(amount), 10**places)  # integers only: exact for any size
    sign = "-" if amount < 0 else ""
    return f"{sign}{whole}.{fraction:0{places}d}" if places else f"{sign}{whole}"


def decimal_to_minor(text: str, currency: str) -> int:
    """Plain decimal text of the major unit -> minor units, exactly: ``"9.90"`` CNY -> ``990``.

    Accepts an optional ``-``, digits and an optional fraction (trailing zeros allowed:
    ``"9.900"``). Anything else (spaces, ``+``, exponents, ``NaN``) and any fraction of a minor
    unit (``"1.005"`` CNY, ``"1.5"`` JPY) raise ``ValueError``: nothing is ever rounded.
    """
    places = exponent(currency)
    if not isinstance(text, str) or not _DECIMAL_TEXT.fullmatch(text):
        raise ValueError(f"not a plain decimal amount: {text!r}")
    whole, _, fraction = text.removeprefix("-").partition(".")
    fraction = fraction.rstrip("0")
    if len(fraction) > places:
        raise ValueError(f"{text!r} is not a whole number of {currency} minor units")
    minor = int(whole) * 10**places + int(fraction.ljust(places, "0") or "0")
    return -minor if text.startswith("-") else minor


def format_money(amount: int | None, currency: str | None) -> str:
    """For people (the admin, logs): ``1500`` CNY -> ``"15.00 CNY"``."""
    if amount is None:
        return "-"
    if not currency or currency not in CURRENCY_EXPONENTS:
        return f"{amount} (minor units)"
    return f"{minor_to_decimal(int(amount), currency)} {currency}"
