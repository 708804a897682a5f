"""Payment-code scenarios, chosen by the last four digits of the scanned code (WeChat and Alipay).

The code must still be a valid code of its channel (WeChat ``^1[0-5]\\d{16}$``, Alipay
``^(2[5-9]|30)\\d{14,22}$``); its last four digits choose what the payer and the platform do:

====== ===================================================================================
digits scenario
====== ===================================================================================
0000   asks for the password; paid when the payer action ``password`` is applied
71NN   asks for the password; paid on ``password``, or by itself NN seconds (01-99) later by
       the sandbox clock (``7105``: 5 s; the clock moves with real time and ``/_sandbox/clock``)
7200   asks for the password forever: the payer never types it (``password`` is refused);
       only a revocation, or the trade's ``time_expire`` passing, ends it
7301   definite failure, the code has expired (WeChat ``AUTHCODEEXPIRE``, Alipay
       ``40004 ACQ.PAYMENT_AUTH_CODE_INVALID``)
7302   definite failure, not enough balance (WeChat ``NOTENOUGH``, Alipay
       ``40004 ACQ.BUYER_BALANCE_NOT_ENOUGH``)
7400   answers SYSTEMERROR (Alipay ``20000``) but the money WAS taken: a query shows it paid
7500   answers SYSTEMERROR (Alipay ``20000``) and never finishes: a query shows it still paying
       (WeChat ``USERPAYING``, Alipay ``WAIT_BUYER_PAY``); ``password`` is refused
7501   answers SYSTEMERROR (Alipay ``20000``) and never finishes: a query shows it not paid
       (WeChat ``NOTPAY``; Alipay never created the trade: ``ACQ.TRADE_NOT_EXIST``)
other  paid at once
====== ===================================================================================

Older conventions stay valid: WeChat ``0001`` NOTENOUGH, ``0002`` AUTHCODEEXPIRE, ``0003``
SYSTEMERROR although paid, ``0004`` BANKERROR (in fact failed: ``PAYERROR``); Alipay ``1111``
no balance, ``2222`` paid but ``20000``, ``3333`` asks for the password and its first cancel
answers ``retry_flag=Y``.
"""

from __future__ import annotations

from dataclasses import dataclass

PAID = "paid"
PASSWORD = "password"  # USERPAYING / 10003 until the payer's password (or auto_after seconds)
PASSWORD_FOREVER = "password_forever"
EXPIRED_CODE = "expired_code"
NO_BALANCE = "no_balance"
BANK_ERROR = "bank_error"  # WeChat 0004 only: BANKERROR, in fact failed
UNKNOWN_PAID = "unknown_paid"
UNKNOWN_PAYING = "unknown_paying"
UNKNOWN_UNPAID = "unknown_unpaid"

_SHARED = {
    "0000": PASSWORD,
    "7200": PASSWORD_FOREVER,
    "7301": EXPIRED_CODE,
    "7302": NO_BALANCE,
    "7400": UNKNOWN_PAID,
    "7500": UNKNOWN_PAYING,
    "7501": UNKNOWN_UNPAID,
}
_LEGACY = {
    "wechat": {"0001": NO_BALANCE, "0002": EXPIRED_CODE, "0003": UNKNOWN_PAID, "0004": BANK_ERROR},
    "alipay": {"1111": NO_BALANCE, "2222": UNKNOWN_PAID, "3333": PASSWORD},
}


@dataclass(frozen=True)
class Scenario:
    kind: str
    auto_after: int | None = None  # PASSWORD: seconds (sandbox clock) until the payer types it
    cancel_retries: int = 0  # Alipay 3333: cancels answering retry_flag=Y before acting

    @property
    def waits_for_password(self) -> bool:
        return self.kind in (PASSWORD, PASSWORD_FOREVER, UNKNOWN_PAYING)

    @property
    def password_accepted(self) -> bool:
        return self.kind == PASSWORD


def scenario_for(channel: str, auth_code: str) -> Scenario:
    """The scenario of a (valid) payment code of ``channel``."""
    suffix = auth_code[-4:]
    if suffix[:2] == "71":  # 7100: like 0000
        return Scenario(PASSWORD, auto_after=int(suffix[2:]) or None)
    kind = _SHARED.get(suffix) or _LEGACY.get(channel, {}).get(suffix) or PAID
    return Scenario(kind, cancel_retries=1 if (channel, suffix) == ("alipay", "3333") else 0)
