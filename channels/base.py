"""The contract between paycore's services and each channel adapter.

Adapters receive plain values (an ``AccountConfig`` holding decrypted credentials and a base
URL) and return frozen dataclasses; they know nothing of Django models. Every amount crossing
this boundary is an integer in the currency's minor unit: converting to a channel's wire format
(Alipay's "9.90", PayPal's decimal strings) is the adapter's job and must be exact.

Error policy: ``ChannelUnavailable`` means the outcome is unknown (timeout, 5xx, unreadable
or unverifiable reply) and the caller must query later; ``ChannelRejected`` means the channel
definitely said no; ``SignatureInvalid`` means a message could not be authenticated and no field
of it may be trusted. Retry policy belongs to the caller.
"""

from __future__ import annotations

import enum
import functools
import logging
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, tzinfo
from typing import Any, ClassVar, TypeVar

import requests

from paycore.money import MAX_AMOUNT

logger = logging.getLogger(__name__)

# (connect, read) seconds for every outbound call.
DEFAULT_TIMEOUT: tuple[float, float] = (5.0, 15.0)


class ChannelError(Exception):
    """Base of every error an adapter raises."""

    def __init__(self, message: str, *, code: str = "", raw: Mapping[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.raw = dict(raw or {})


class ChannelUnavailable(ChannelError):
    """Timeout, 5xx, rate limit or unreadable reply: the outcome is unknown, query later."""


class ChannelRejected(ChannelError):
    """The channel answered and said no; ``code`` carries its error code."""


class SignatureInvalid(ChannelError):
    """A response or notification failed authentication; nothing in it may be trusted."""


class NotSupported(ChannelError):
    """The channel has no such operation (e.g. close on PayPal, charge on WeChat v3 app pay)."""


_T = TypeVar("_T")


def map_status(
    table: Mapping[str, _T], value: Any, *, what: str, raw: Mapping[str, Any] | None = None, code: str = ""
) -> _T:
    """Map a channel's status or code through ``table``; an unknown value raises.

    A value the table does not list (a new status, a typo, a number or a list where a string
    belongs) means the reply is not understood: ``ChannelUnavailable``, so the caller queries
    again later. It never falls back to a default such as "failed".
    """
    if isinstance(value, str) and value in table:
        return table[value]
    raise ChannelUnavailable(f"unknown {what} {value!r}", code=code, raw=raw)


def header_name(name: str) -> str:
    """``Wechatpay-Serial``, ``wechatpay-serial`` and Django's ``HTTP_WECHATPAY_SERIAL`` -> ``wechatpay-serial``."""
    key = name.lower()
    if key.startswith("http_"):
        key = key[5:]
    return key.replace("_", "-")


class Headers(Mapping[str, str]):
    """Received HTTP headers looked up case-insensitively (names kept lower-cased).

    Names are normalised by ``header_name``, so Django's ``META`` spelling works too. When two
    spellings of one name are present, the first one wins.
    """

    __slots__ = ("_items",)

    def __init__(self, headers: Mapping[str, Any]) -> None:
        items: dict[str, str] = {}
        for name, value in headers.items():
            items.setdefault(header_name(str(name)), str(value))
        self._items = items

    def __getitem__(self, name: str) -> str:
        return self._items[header_name(name)]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __repr__(self) -> str:
        return f"Headers({sorted(self._items)!r})"  # names only: values may carry signatures


def normalize_headers(headers: Mapping[str, Any]) -> Headers:
    """The one way adapters read received headers (notifications and responses alike)."""
    return headers if isinstance(headers, Headers) else Headers(headers)


class TradeStatus(enum.StrEnum):
    """Channel-neutral payment state as the channel reports it."""

    NOT_FOUND = "NOT_FOUND"  # the channel has no trade under this number (yet)
    NOT_PAID = "NOT_PAID"  # created / awaiting the payer
    USER_PAYING = "USER_PAYING"  # payment code: waiting for the payer's password
    PAID = "PAID"  # money taken (refunds afterwards do not undo this)
    CLOSED = "CLOSED"  # closed unpaid (expired, cancelled)
    REVOKED = "REVOKED"  # payment code reversed
    FAILED = "FAILED"  # definite failure (bank refused, declined)


class RefundStatus(enum.StrEnum):
    NOT_FOUND = "NOT_FOUND"
    PROCESSING = "PROCESSING"
    SUCCEEDED = "SUCCEEDED"
    FAILED = "FAILED"  # final; a new attempt needs a new refund number
    ABNORMAL = "ABNORMAL"  # needs ops (WeChat: card frozen); not final


class NotificationKind(enum.StrEnum):
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"
    OTHER = "OTHER"  # verified, but nothing paycore acts on (e.g. order approved)


@dataclass(frozen=True, slots=True)
class AccountConfig:
    """One channel account's settings with credentials already decrypted.

    ``ids`` holds public identifiers (appid, mchid, client id, seller id, webhook id...);
    ``credentials`` holds secrets (PEM private keys, API keys, client secret...);
    ``options`` holds non-secret tuning (allowed PayPal cert hosts, verification mode...).
    Each adapter documents the keys it reads.
    """

    channel: str
    account_id: int
    base_url: str
    ids: Mapping[str, str] = field(default_factory=dict)
    credentials: Mapping[str, str] = field(default_factory=dict)
    options: Mapping[str, Any] = field(default_factory=dict)

    def __repr__(self) -> str:  # never print credentials
        return f"AccountConfig(channel={self.channel!r}, account_id={self.account_id}, base_url={self.base_url!r})"


@dataclass(frozen=True, slots=True)
class PrepayRequest:
    payment_no: str
    amount: int  # minor units
    currency: str  # ISO 4217
    description: str
    method: str  # app / jsapi / native / h5 / page / points
    notify_url: str
    expires_at: datetime  # aware
    payer_id: str | None = None  # WeChat JSAPI openid, points binding id
    client_ip: str | None = None  # WeChat H5 scene_info.payer_client_ip
    return_url: str | None = None  # Alipay page/wap, PayPal approve return
    cancel_url: str | None = None  # PayPal


@dataclass(frozen=True, slots=True)
class PrepayResult:
    """What the app's SDK needs (``client_params``) plus the channel's own ids."""

    payment_no: str
    client_params: Mapping[str, Any]  # e.g. WeChat PayReq, Alipay order string, PayPal approve URL
    channel_trade_no: str | None = None  # known at prepay for PayPal (order id) and points
    status: TradeStatus = TradeStatus.NOT_PAID
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class TradeState:
    payment_no: str
    status: TradeStatus
    channel_trade_no: str | None
    paid_amount: int | None  # minor units; None until paid
    currency: str | None = None
    paid_at: datetime | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)  # the verified payload, kept as evidence


@dataclass(frozen=True, slots=True)
class ChargeRequest:
    """Payment code: the merchant scanned the payer's code (``auth_code``)."""

    payment_no: str
    amount: int
    currency: str
    description: str
    auth_code: str
    client_ip: str | None = None
    expires_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class RevokeResult:
    """The answer to one revocation call of a payment-code trade.

    ``done``: the channel says the trade is reversed or closed (revoking again is done again).
    ``retry``: the channel asks to be called again (WeChat ``recall=Y``, Alipay ``retry_flag=Y``);
    the adapter never loops itself, the caller decides when. ``refunded``: money had been taken
    and was given back. ``raw``: the verified answer, kept as evidence.
    """

    done: bool
    retry: bool
    refunded: bool
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class RefundRequest:
    refund_no: str
    payment_no: str
    channel_trade_no: str | None
    amount: int  # this refund, minor units
    total_amount: int  # the original payment's amount
    currency: str
    reason: str
    notify_url: str | None = None


@dataclass(frozen=True, slots=True)
class RefundState:
    refund_no: str
    status: RefundStatus
    channel_refund_no: str | None
    amount: int | None
    succeeded_at: datetime | None = None
    fail_code: str | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Notification:
    """A verified notification. ``dedupe_key`` identifies re-sends of the same message."""

    kind: NotificationKind
    dedupe_key: str
    event_type: str
    payment_no: str | None = None
    channel_trade_no: str | None = None
    trade: TradeState | None = None
    refund: RefundState | None = None
    raw: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Ack:
    """The HTTP answer a channel expects to a notification."""

    status: int
    body: bytes = b""
    content_type: str = "text/plain"


class BillNotReady(ChannelError):
    """The channel has no bill for that day yet (the day has not ended by its clock, or the bill
    is still being generated): ask again later. Never "no activity": that is an empty bill."""


class BillInconsistent(ChannelError):
    """The bill contradicts itself (its lines do not add up to its own summary): it must not be
    reconciled against, and asking again will not change it. A download that broke off or failed
    its hash is ``ChannelUnavailable`` instead (asking again may well help)."""


class BillRowKind(enum.StrEnum):
    PAYMENT = "PAYMENT"
    REFUND = "REFUND"
    REVOKED = "REVOKED"  # a payment-code trade reversed after the money moved (the money went back)


@dataclass(frozen=True, slots=True)
class BillRow:
    kind: BillRowKind
    payment_no: str
    channel_trade_no: str
    amount: int  # positive, minor units (payment amount, or refund amount)
    currency: str
    occurred_at: datetime | None
    refund_no: str | None = None
    channel_refund_no: str | None = None
    fee: int | None = None  # minor units, positive = fee charged
    status: str = ""  # the channel's own status text, frozen at bill time
    raw: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class BillSummary:
    """The totals a bill publishes about itself, in paycore's terms (minor units; refunds and
    revocations counted together, as channels do). ``None``: the channel does not publish that
    total, or publishes it in a form that does not map exactly onto the rows. The adapter checks
    the channel's own summary columns against the rows itself (``BillInconsistent``); these are
    what a caller can check again against what it stored. ``raw``: the channel's summary cells."""

    line_count: int | None = None
    payment_count: int | None = None
    payment_amount: int | None = None
    refund_count: int | None = None
    refund_amount: int | None = None
    fee_total: int | None = None
    raw: Mapping[str, str] = field(default_factory=dict)


class Bill:
    """One day's bill as it is read: iterate it once for its rows, which the adapter parses from
    a streamed download (a file is never held whole in memory).

    ``digest`` (hex SHA-256 of the bytes as received, pages in order), ``size`` (bytes) and
    ``summary`` are final only once iteration has ended without an error. An error mid-way
    (``ChannelUnavailable``, ``BillInconsistent``) means the rows already yielded must be thrown
    away: a bill is used whole or not at all. Stray parsing errors leave as ``ChannelUnavailable``.
    """

    def __init__(self, *, channel: str, bill_date: date, bill_type: str, rows: Callable[[Bill], Iterator[BillRow]]):
        self.channel = channel
        self.bill_date = bill_date
        self.bill_type = bill_type  # the channel's own name of what was asked for (ALL, trade...)
        self.digest = ""
        self.size = 0
        self.summary: BillSummary | None = None
        self.complete = False
        self._rows = rows
        self._started = False

    @classmethod
    def empty(cls, *, channel: str, bill_date: date, bill_type: str) -> Bill:
        """The channel says nothing happened that day: no rows, nothing to check."""
        bill = cls(channel=channel, bill_date=bill_date, bill_type=bill_type, rows=lambda _: iter(()))
        bill.summary = BillSummary(line_count=0)
        return bill

    def __iter__(self) -> Iterator[BillRow]:
        if self._started:
            raise RuntimeError("a bill is read once")
        self._started = True
        try:
            yield from self._rows(self)
        except ChannelError:
            raise
        except (*_STRAY, UnicodeError, OSError, EOFError) as exc:
            logger.warning("%s bill %s: unexpected %s contained", self.channel, self.bill_date, type(exc).__name__)
            raise ChannelUnavailable(
                f"{self.channel} bill {self.bill_date}: unreadable data ({type(exc).__name__}: {exc})",
                code="BILL_UNREADABLE",
            ) from exc
        self.complete = True

    def __repr__(self) -> str:
        return f"Bill({self.channel} {self.bill_date} {self.bill_type})"


# The operations whose errors must stay inside the contract (ChannelError and its subclasses).
OPERATIONS: tuple[str, ...] = (
    "prepay",
    "query",
    "settle",
    "close",
    "refund",
    "query_refund",
    "charge",
    "query_charge",
    "revoke",
    "fetch_bill",
)
_STRAY = (ValueError, LookupError, TypeError, AttributeError)


def _contained(name: str, method: Any) -> Any:
    """Last line of defence: a stray ValueError/KeyError/TypeError (a reply shaped in a way the
    adapter did not foresee) leaves as ``ChannelUnavailable`` (the outcome is unknown, never
    "failed"), or as ``SignatureInvalid`` from ``parse_notification``. Adapters raise the right
    error themselves; this only catches what they missed, and logs the exception type only."""

    @functools.wraps(method)
    def contained(self: ChannelAdapter, *args: Any, **kwargs: Any) -> Any:
        try:
            return method(self, *args, **kwargs)
        except ChannelError:
            raise
        except _STRAY as exc:
            logger.warning("%s %s: unexpected %s contained", self.code, name, type(exc).__name__)
            what = f"{self.code} {name}: unreadable data ({type(exc).__name__})"
            if name == "parse_notification":
                raise SignatureInvalid(what, code="UNREADABLE") from exc
            raise ChannelUnavailable(what, code="ADAPTER_ERROR") from exc

    contained.__contained__ = True  # type: ignore[attr-defined]
    return contained


def check_amount(amount: Any, *, what: str = "amount") -> int:
    """A positive ``int`` of minor units up to ``MAX_AMOUNT``; else ``ChannelRejected`` ``INVALID_AMOUNT``."""
    if isinstance(amount, bool) or not isinstance(amount, int) or not 0 < amount <= MAX_AMOUNT:
        raise ChannelRejected(
            f"{what} must be a positive integer of minor units, not {amount!r}", code="INVALID_AMOUNT"
        )
    return amount


def check_aware(moment: Any, *, what: str = "expires_at") -> datetime:
    """An aware datetime; else ``ChannelRejected`` ``INVALID_TIME`` (channels need an explicit offset)."""
    if not isinstance(moment, datetime) or moment.tzinfo is None or moment.utcoffset() is None:
        raise ChannelRejected(f"{what} must be a timezone-aware datetime", code="INVALID_TIME")
    return moment


def trade_ref_required(payment_no: str | None, channel_trade_no: str | None) -> None:
    """Queries name the trade by paycore's number or the channel's; ``ChannelRejected`` when neither."""
    if not payment_no and not channel_trade_no:
        raise ChannelRejected("payment_no or channel_trade_no is required", code="TRADE_REF_REQUIRED")


def account_timeout(config: AccountConfig) -> tuple[float, float]:
    """``(connect, read)`` seconds from options ``connect_timeout`` / ``read_timeout``."""
    timeout = []
    for name, default in zip(("connect_timeout", "read_timeout"), DEFAULT_TIMEOUT, strict=True):
        value = config.options.get(name, default)
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 < value <= 300:
            raise ChannelError(f"options.{name} must be a number of seconds in (0, 300]", code="CONFIG")
        timeout.append(float(value))
    return timeout[0], timeout[1]


class ChannelAdapter(ABC):
    """One channel's wire protocol. Subclasses set ``code`` and implement the operations."""

    code: ClassVar[str]
    methods: ClassVar[frozenset[str]]  # payment methods offered (app, jsapi, paycode...)
    currencies: ClassVar[frozenset[str] | None]  # None: any ISO 4217 currency the account accepts

    @classmethod
    def priced_currencies(cls, config: AccountConfig) -> frozenset[str] | None:
        """The currencies this account can price: the adapter's ``currencies``, narrowed by the
        account's options ``currencies`` when set (``None``: any ISO 4217 currency)."""
        narrowed = config.options.get("currencies")
        if not narrowed:
            return cls.currencies
        wanted = frozenset(str(code) for code in narrowed)
        return wanted if cls.currencies is None else wanted & cls.currencies

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        for name in (*OPERATIONS, "parse_notification"):
            method = cls.__dict__.get(name)
            if callable(method) and not getattr(method, "__contained__", False):
                setattr(cls, name, _contained(name, method))

    def __init__(self, config: AccountConfig, http: requests.Session | None = None) -> None:
        """``http``: the account's pooled session (``channels.registry.adapter_for_config`` passes
        it); a bare session when omitted. ``timeout``: ``(connect, read)`` seconds for every call,
        from options ``connect_timeout`` / ``read_timeout`` (default ``DEFAULT_TIMEOUT``)."""
        self.config = config
        self.http = http if http is not None else requests.Session()
        self.timeout: tuple[float, float] = account_timeout(config)

    # --- payments ---------------------------------------------------------------------
    @abstractmethod
    def prepay(self, req: PrepayRequest) -> PrepayResult: ...

    @abstractmethod
    def query(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> TradeState:
        """Query by either number; ``channel_trade_no`` wins when both are given."""

    def settle(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> TradeState:
        """Query, and finish the payment where the channel waits for the merchant to do so
        (PayPal: capture an approved order). Only for payments paycore still wants: a payment
        paycore closed is only ever queried, so no money is taken after paycore gave up on it."""
        return self.query(payment_no=payment_no, channel_trade_no=channel_trade_no)

    @abstractmethod
    def close(self, *, payment_no: str, channel_trade_no: str | None = None) -> None:
        """Close an unpaid trade. Raises ``ChannelRejected`` if it cannot be closed."""

    # --- refunds ----------------------------------------------------------------------
    def refund_no_problem(self, *, refund_no: str, payment_no: str) -> str | None:
        """Why this channel cannot take ``refund_no`` for a refund of ``payment_no``, or ``None``.

        Pure (no I/O): the service calls it *before* writing a refund, so a number the channel
        would refuse is refused at once instead of failing deep in ``refund``. Subclasses add
        their channel's length and charset limits to this base rule (a non-empty string).
        """
        if not isinstance(refund_no, str) or not refund_no.strip():
            return "refund_no must be a non-empty string"
        if refund_no != refund_no.strip():
            return "refund_no must not start or end with white space"
        return None

    def _check_refund_no(self, req: RefundRequest) -> None:
        problem = self.refund_no_problem(refund_no=req.refund_no, payment_no=req.payment_no)
        if problem is not None:
            raise ChannelRejected(
                f"{self.code} refuses refund_no {req.refund_no!r}: {problem}", code="INVALID_REFUND_NO"
            )

    @abstractmethod
    def refund(self, req: RefundRequest) -> RefundState: ...

    @abstractmethod
    def query_refund(
        self,
        *,
        refund_no: str,
        payment_no: str,
        channel_trade_no: str | None = None,
        channel_refund_no: str | None = None,
    ) -> RefundState: ...

    # --- notifications ----------------------------------------------------------------
    @abstractmethod
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify, then parse. Raises ``SignatureInvalid`` before reading any field."""

    def ack(self, ok: bool, message: str = "") -> Ack:
        """The answer the channel expects; ``ok=False`` makes the channel retry."""
        return Ack(status=200 if ok else 400)

    # --- bills ------------------------------------------------------------------------
    # The zone of the channel's bill day: a trade belongs to the bill of its date there.
    bill_timezone: ClassVar[tzinfo] = UTC

    @abstractmethod
    def fetch_bill(self, bill_date: date) -> Bill:
        """The bill of ``bill_date`` (the channel's own bill day and zone), to be read once.

        Raises ``BillNotReady`` when the channel has no bill for that day yet; a day without
        activity is an empty bill. Rows are parsed as the download streams in; see ``Bill``."""

    # --- payment code (only channels that support it) --------------------------------------
    def charge(self, req: ChargeRequest) -> TradeState:
        """Charge a scanned payment code. Returns PAID, or USER_PAYING while the payer confirms
        (then follow it with ``query_charge``). Raises ``ChannelRejected`` (with the channel's
        code) only on a definite failure: expired or invalid code, insufficient balance...;
        ``ChannelUnavailable`` whenever the outcome is unknown (system or bank error, timeout,
        5xx, unreadable or unverifiable answer). Never FAILED without proof."""
        raise NotSupported(f"{self.code} has no payment-code charge")

    def query_charge(self, *, payment_no: str, channel_trade_no: str | None = None) -> TradeState:
        """Follow a payment-code trade through the protocol that charged it. NOT_PAID and
        NOT_FOUND both mean "still waiting" to the caller before its deadline."""
        raise NotSupported(f"{self.code} has no payment-code query")

    def revoke(self, *, payment_no: str, channel_trade_no: str | None = None) -> RevokeResult:
        """One revocation call (no internal retry loop: see ``RevokeResult.retry``). Raises
        ``ChannelRejected`` when the channel definitely refuses (e.g. outside its revocation
        window), ``ChannelUnavailable`` when the outcome is unknown."""
        raise NotSupported(f"{self.code} has no payment-code revoke")
