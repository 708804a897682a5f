"""Alipay OpenAPI adapter (RSA2 gateway): APP / page / WAP pay, bar-code pay, refunds, bills.

Account keys read from ``AccountConfig``:

- ``base_url``: the gateway, with or without the trailing ``/gateway.do``
  (``https://openapi.alipay.com`` or a test gateway's prefix).
- ``ids["app_id"]`` (required): our application id, sent on every request and required in
  every notification.
- ``ids["seller_id"]`` (recommended): our PID (``2088…``); when set, notifications must carry it.
- ``credentials["app_private_key"]`` (required): the application's RSA private key, PEM
  (PKCS#8 or PKCS#1) or the bare Base64 body Alipay's key tool prints.
- ``options["alipay_public_key"]`` (required): Alipay's RSA public key, PEM or bare Base64.

Shapes handed to the app (``PrepayResult.client_params``): ``{"order_string": ...}`` for
``app`` (the APP SDK's order string), ``{"url": ...}`` for ``page`` and ``h5`` (a GET URL to the
gateway carrying the signed parameters; send the browser there).

Error policy: a timeout, non-200, unreadable or unverifiable reply, ``20000`` or
``ACQ.SYSTEM_ERROR`` is ``ChannelUnavailable`` (the outcome is unknown); any other failure code
is ``ChannelRejected`` carrying ``sub_code`` (or ``code``). Only ``error_response`` may come
unsigned (Alipay does not sign failures raised before routing; such a request was not executed).

Layout: ``_sign`` (RSA2 signatures, raw response scanning, notification forms), ``_wire`` (yuan
amounts, times, references), ``_bill`` (bill archives), this module (the operations).
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import re
from collections.abc import Iterator, Mapping
from datetime import date, datetime, tzinfo
from typing import Any, ClassVar

import requests
from cryptography.hazmat.primitives.asymmetric import rsa

from channels._cache import ProcessCache, fingerprint
from channels.alipay import _sign, _wire
from channels.alipay._bill import read_bill
from channels.base import (
    Ack,
    Bill,
    BillNotReady,
    BillRow,
    ChannelAdapter,
    ChannelRejected,
    ChannelUnavailable,
    ChargeRequest,
    NotificationKind,
    NotSupported,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundState,
    RefundStatus,
    RevokeResult,
    SignatureInvalid,
    TradeState,
    TradeStatus,
    check_amount,
    map_status,
)
from channels.base import Notification as ChannelNotification

_PRODUCT = {  # method -> (API, product_code)
    "app": ("alipay.trade.app.pay", "QUICK_MSECURITY_PAY"),
    "page": ("alipay.trade.page.pay", "FAST_INSTANT_TRADE_PAY"),
    "h5": ("alipay.trade.wap.pay", "QUICK_WAP_WAY"),  # per the docs; python-alipay-sdk sends QUICK_WAP_PAY
}

# trade_status. TRADE_CLOSED is resolved by _trade_state (it also means "paid, then fully refunded").
_TRADE_STATUS = {
    "WAIT_BUYER_PAY": TradeStatus.NOT_PAID,
    "TRADE_SUCCESS": TradeStatus.PAID,
    "TRADE_FINISHED": TradeStatus.PAID,
    "TRADE_CLOSED": TradeStatus.CLOSED,
}

# Result codes that mean "the channel said no" (anything else unknown raises Unavailable).
_REJECTING_CODES = frozenset({"20001", "40001", "40002", "40004", "40006"})
_UNKNOWN_SUB_CODES = frozenset({"ACQ.SYSTEM_ERROR", "isp.unknow-error", "aop.ACQ.SYSTEM_ERROR"})

# alipay.trade.cancel action -> whether money had been taken and was given back.
_CANCEL_ACTIONS = {"close": False, "refund": True}

# An Alipay payment code: 16-24 digits starting 25-30 (WeChat's start 10-15).
AUTH_CODE = re.compile(r"(2[5-9]|30)[0-9]{14,22}")

# Words of isp.bill_not_exist's sub_msg that mean "not this day yet", not "no activity".
_NOT_YET_WORDS = ("当日", "当月", "以后")
_DOWNLOAD_CHUNK = 256 * 1024

# Parsed keys per process and account, rebuilt when the PEM changes.
_KEYS: ProcessCache[Any] = ProcessCache("alipay keys")


class AlipayAdapter(ChannelAdapter):
    """Alipay OpenAPI over the RSA2 gateway: APP / page / WAP pay, bar-code pay, refunds, bills."""

    code = "alipay"
    methods = frozenset({"app", "page", "h5", "paycode"})
    currencies = frozenset({_wire.CURRENCY})

    # --- payments ---------------------------------------------------------------------
    def prepay(self, req: PrepayRequest) -> PrepayResult:
        """Sign the parameters the payer's app or browser takes to Alipay; no server round-trip.

        The Alipay trade exists only once the payer opens the cashier, so until then a query
        answers NOT_FOUND; ``time_expire`` is what closes an abandoned order.
        """
        if req.method == "paycode":
            raise NotSupported("alipay payment code goes through charge(), not prepay()")
        if req.method not in _PRODUCT:
            raise NotSupported(f"alipay has no payment method {req.method!r}")
        self._check_amount(req.amount, req.currency)
        api, product_code = _PRODUCT[req.method]
        biz = {
            "out_trade_no": req.payment_no,
            "total_amount": _wire.yuan(req.amount),
            "subject": req.description[:256],
            "product_code": product_code,
            "time_expire": _wire.cst(req.expires_at),
        }
        params = self._signed_params(
            api, biz, notify_url=req.notify_url, return_url=req.return_url if req.method != "app" else None
        )
        encoded = _wire.encode(params)
        if req.method == "app":
            client_params: dict[str, Any] = {"order_string": encoded}
        else:
            client_params = {"url": f"{self._gateway}?{encoded}"}
        return PrepayResult(
            payment_no=req.payment_no,
            client_params=client_params,
            status=TradeStatus.NOT_PAID,
            raw={"method": api, "biz_content": biz},
        )

    def query(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> TradeState:
        """``alipay.trade.query``; ``ACQ.TRADE_NOT_EXIST`` means "not opened yet", not an error."""
        biz = _wire.trade_ref(payment_no, channel_trade_no)
        node = self._call("alipay.trade.query", biz)
        if _is_not_exist(node):
            return TradeState(
                payment_no=payment_no or "",
                status=TradeStatus.NOT_FOUND,
                channel_trade_no=channel_trade_no,
                paid_amount=None,
                currency=_wire.CURRENCY,
                raw=node,
            )
        self._raise_for_code(node)
        if payment_no and node.get("out_trade_no") not in (None, payment_no):
            raise ChannelUnavailable("alipay answered about another trade", raw=node)
        return _trade_state(node, paid_at_field="send_pay_date")

    def close(self, *, payment_no: str, channel_trade_no: str | None = None) -> None:
        """``alipay.trade.close``. A trade whose cashier the payer never opened does not exist at
        Alipay yet, so it cannot be closed: that answer (``ACQ.TRADE_NOT_EXIST``) is raised, not
        taken for a close, because the signed order string stays payable until its time_expire."""
        node = self._call("alipay.trade.close", _wire.trade_ref(payment_no, channel_trade_no))
        if node.get("code") == "40004" and node.get("sub_code") == "ACQ.TRADE_STATUS_ERROR":
            # Already closed is fine; paid (or anything else) cannot be closed.
            state = self.query(payment_no=payment_no, channel_trade_no=channel_trade_no)
            if state.status == TradeStatus.CLOSED:
                return
        self._raise_for_code(node)

    # --- refunds ----------------------------------------------------------------------
    def refund(self, req: RefundRequest) -> RefundState:
        """``alipay.trade.refund`` with ``out_request_no`` = refund_no, always.

        An explicit request number allows partial refunds and keeps "batch no = order no" in the
        bill meaning "revocation". ``fund_change=N`` marks a repeat of a processed request, which
        is confirmed by a refund query rather than treated as an error.
        """
        self._check_refund_no(req)
        self._check_amount(req.amount, req.currency)
        biz = {
            **_wire.trade_ref(req.payment_no, req.channel_trade_no),
            "refund_amount": _wire.yuan(req.amount),
            "out_request_no": req.refund_no,
        }
        if req.reason:
            biz["refund_reason"] = req.reason[:256]
        node = self._call("alipay.trade.refund", biz)
        self._raise_for_code(node)
        if node.get("out_trade_no") not in (None, req.payment_no):
            raise ChannelUnavailable("alipay answered about another trade", raw=node)
        fund_change = node.get("fund_change")
        if fund_change == "Y":
            return RefundState(
                refund_no=req.refund_no,
                status=RefundStatus.SUCCEEDED,
                channel_refund_no=None,
                amount=req.amount,
                succeeded_at=_wire.parse_time(node.get("gmt_refund_pay")),
                raw=node,
            )
        if fund_change == "N":
            confirmed = self.query_refund(
                refund_no=req.refund_no, payment_no=req.payment_no, channel_trade_no=req.channel_trade_no
            )
            if confirmed.status is RefundStatus.SUCCEEDED:
                return confirmed
            return RefundState(
                refund_no=req.refund_no,
                status=RefundStatus.PROCESSING,
                channel_refund_no=None,
                amount=req.amount,
                raw=node,
            )
        raise ChannelUnavailable(f"unexpected fund_change {fund_change!r}", raw=node)

    def refund_no_problem(self, *, refund_no: str, payment_no: str) -> str | None:
        """``out_request_no``: at most 64 characters, and never the trade's own ``out_trade_no``
        (Alipay would take it, but the bill could then not tell the refund from a revocation)."""
        problem = super().refund_no_problem(refund_no=refund_no, payment_no=payment_no)
        if problem is None and len(refund_no) > 64:
            problem = "Alipay takes at most 64 characters"
        if problem is None and refund_no == payment_no:
            problem = "Alipay refund numbers must differ from the payment number (it would read as a revocation)"
        return problem

    def query_refund(
        self,
        *,
        refund_no: str,
        payment_no: str,
        channel_trade_no: str | None = None,
        channel_refund_no: str | None = None,
    ) -> RefundState:
        """``alipay.trade.fastpay.refund.query``: ``code 10000`` only means the query ran.

        ``refund_status=REFUND_SUCCESS`` is success. Without it the refund was not received or
        has not succeeded (yet): PROCESSING when Alipay echoes the request, NOT_FOUND otherwise.
        """
        biz = {
            **_wire.trade_ref(payment_no, channel_trade_no),
            "out_request_no": refund_no,
            "query_options": ["gmt_refund_pay"],
        }
        node = self._call("alipay.trade.fastpay.refund.query", biz)
        if _is_not_exist(node):
            return RefundState(
                refund_no=refund_no, status=RefundStatus.NOT_FOUND, channel_refund_no=None, amount=None, raw=node
            )
        self._raise_for_code(node)
        amount = _wire.fen(node["refund_amount"]) if node.get("refund_amount") else None
        refund_status = node.get("refund_status")
        if refund_status == "REFUND_SUCCESS":
            status = RefundStatus.SUCCEEDED
        elif refund_status is not None and refund_status != "":
            raise ChannelUnavailable(f"unknown refund_status {refund_status!r}", raw=node)
        elif node.get("out_request_no") == refund_no:
            status = RefundStatus.PROCESSING
        else:
            status = RefundStatus.NOT_FOUND
        return RefundState(
            refund_no=refund_no,
            status=status,
            channel_refund_no=None,
            amount=amount,
            succeeded_at=_wire.parse_time(node.get("gmt_refund_pay")) if status is RefundStatus.SUCCEEDED else None,
            raw=node,
        )

    # --- notifications ----------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> ChannelNotification:
        """Verify the form (all fields but sign/sign_type, empty values kept), then read it.

        Alipay's notification is a form body; no header carries anything to verify.
        """
        fields, charset = _sign.parse_form(body)
        sign = fields.get("sign")
        sign_type = fields.get("sign_type")
        if not sign:
            raise SignatureInvalid("notification has no sign")
        if sign_type not in (None, "RSA2"):
            raise SignatureInvalid(f"unsupported sign_type {sign_type!r}")
        if not _sign.verify(self._alipay_public_key, _sign.notification_string(fields).encode(charset), sign):
            raise SignatureInvalid("notification signature does not verify")
        fields = {k: v for k, v in fields.items() if k not in ("sign", "sign_type")}
        # Authentic; now make sure it is about our application and our seller.
        if fields.get("app_id") != self._app_id:
            raise SignatureInvalid("notification is for another app_id", code="APP_ID_MISMATCH")
        seller_id = self.config.ids.get("seller_id")
        if seller_id and fields.get("seller_id") != seller_id:
            raise SignatureInvalid("notification is for another seller_id", code="SELLER_ID_MISMATCH")

        raw = {**fields, "sign_type": sign_type or ""}
        trade_status = fields.get("trade_status", "")
        notify_type = fields.get("notify_type", "")
        dedupe_key = f"{fields.get('notify_id', '')}:{trade_status or notify_type}"
        if notify_type != "trade_status_sync" or not trade_status:
            return ChannelNotification(
                kind=NotificationKind.OTHER,
                dedupe_key=dedupe_key,
                event_type=notify_type,
                payment_no=fields.get("out_trade_no"),
                channel_trade_no=fields.get("trade_no"),
                raw=raw,
            )
        trade = _trade_state(fields, paid_at_field="gmt_payment")
        refund = None
        kind = NotificationKind.PAYMENT
        if fields.get("out_biz_no") or fields.get("refund_fee"):
            kind = NotificationKind.REFUND
            # refund_fee is the trade's refunded total, not this refund's amount.
            refund = RefundState(
                refund_no=fields.get("out_biz_no", ""),
                status=RefundStatus.SUCCEEDED,
                channel_refund_no=None,
                amount=None,
                succeeded_at=_wire.parse_time(fields.get("gmt_refund")),
                raw=raw,
            )
        return ChannelNotification(
            kind=kind,
            dedupe_key=dedupe_key,
            event_type=trade_status,
            payment_no=fields.get("out_trade_no"),
            channel_trade_no=fields.get("trade_no"),
            trade=trade,
            refund=refund,
            raw=raw,
        )

    def ack(self, ok: bool, message: str = "") -> Ack:
        """Alipay wants HTTP 200 with exactly ``success``; anything else makes it re-send."""
        return Ack(status=200, body=b"success" if ok else b"fail")

    # --- bills ------------------------------------------------------------------------
    bill_timezone: ClassVar[tzinfo] = _wire.CST  # the bill day is a Beijing (UTC+8) day

    def fetch_bill(self, bill_date: date) -> Bill:
        """Daily ``trade`` bill (Beijing day): ask for the download URL at once (so "not ready"
        raises here), then stream the zip and parse the detail CSV row by row as it is read.

        ``isp.bill_not_exist`` means either "no activity that day" (an empty bill) or "that day
        has not ended yet" (``BillNotReady``); Alipay tells them apart only in ``sub_msg``, which
        names the day (当日 / 当月) in the second case."""
        node = self._call(
            "alipay.data.dataservice.bill.downloadurl.query", {"bill_type": "trade", "bill_date": bill_date.isoformat()}
        )
        if node.get("code") == "40004" and node.get("sub_code") == "isp.bill_not_exist":
            if any(word in str(node.get("sub_msg") or "") for word in _NOT_YET_WORDS):
                raise BillNotReady(f"alipay bill {bill_date} not ready: {node.get('sub_msg')}", code="BILL_NOT_READY")
            return Bill.empty(channel=self.code, bill_date=bill_date, bill_type="trade")
        self._raise_for_code(node)
        url = node.get("bill_download_url")
        if not url:
            raise ChannelUnavailable("no bill_download_url in the answer", raw=node)

        def rows(bill: Bill) -> Iterator[BillRow]:
            try:
                resp = self.http.get(url, timeout=self.timeout, stream=True)
            except requests.RequestException as exc:
                raise ChannelUnavailable(f"bill download failed: {type(exc).__name__}") from exc
            with contextlib.closing(resp):
                if resp.status_code != 200:
                    raise ChannelUnavailable(f"bill download answered HTTP {resp.status_code}")
                try:
                    yield from read_bill(bill, resp.iter_content(_DOWNLOAD_CHUNK))
                except requests.RequestException as exc:
                    raise ChannelUnavailable(f"bill download broke off: {type(exc).__name__}") from exc

        return Bill(channel=self.code, bill_date=bill_date, bill_type="trade", rows=rows)

    # --- payment code -----------------------------------------------------------------
    def charge(self, req: ChargeRequest) -> TradeState:
        """``alipay.trade.pay`` scene ``bar_code``: PAID (``10000``), USER_PAYING (``10003``, the payer
        confirms; follow with ``query_charge``). ``ChannelRejected`` with Alipay's ``sub_code`` on a
        definite failure (``40004``: invalid or expired code, balance not enough...);
        ``ChannelUnavailable`` when the outcome is unknown (``20000``, ``ACQ.SYSTEM_ERROR``,
        timeouts, 5xx, unreadable or unverifiable answers). ``ACQ.TRADE_HAS_SUCCESS`` is read back."""
        self._check_amount(req.amount, req.currency)
        if not isinstance(req.auth_code, str) or not AUTH_CODE.fullmatch(req.auth_code):
            raise ChannelRejected(
                "not an Alipay payment code (16-24 digits starting 25-30)", code="ACQ.PAYMENT_AUTH_CODE_INVALID"
            )
        biz = {
            "out_trade_no": req.payment_no,
            "scene": "bar_code",
            "auth_code": req.auth_code,
            "subject": req.description[:256],
            "total_amount": _wire.yuan(req.amount),
            "product_code": "FACE_TO_FACE_PAYMENT",
        }
        if req.expires_at is not None:
            biz["time_expire"] = _wire.cst(req.expires_at)
        node = self._call("alipay.trade.pay", biz)
        code = node.get("code")
        if code == "10000":
            if node.get("out_trade_no") not in (None, req.payment_no):
                raise ChannelUnavailable("alipay answered about another trade", raw=node)
            if not node.get("total_amount"):
                raise ChannelUnavailable("paid trade.pay answer without total_amount", raw=node)
            return TradeState(
                payment_no=req.payment_no,
                status=TradeStatus.PAID,
                channel_trade_no=node.get("trade_no") or None,
                paid_amount=_wire.fen(node["total_amount"]),
                currency=_wire.CURRENCY,
                paid_at=_wire.parse_time(node.get("gmt_payment")),
                raw=node,
            )
        if code == "10003":
            return TradeState(
                payment_no=req.payment_no,
                status=TradeStatus.USER_PAYING,
                channel_trade_no=node.get("trade_no") or None,
                paid_amount=None,
                currency=_wire.CURRENCY,
                raw=node,
            )
        if code == "40004" and node.get("sub_code") == "ACQ.TRADE_HAS_SUCCESS":
            return self.query_charge(payment_no=req.payment_no)
        self._raise_for_code(node)
        raise ChannelUnavailable(f"unexpected trade.pay code {code!r}", raw=node)

    def query_charge(self, *, payment_no: str, channel_trade_no: str | None = None) -> TradeState:
        """``alipay.trade.query`` for a bar-code trade: TRADE_SUCCESS/TRADE_FINISHED -> PAID,
        WAIT_BUYER_PAY -> NOT_PAID and ``ACQ.TRADE_NOT_EXIST`` -> NOT_FOUND (both "still waiting"
        to the caller), TRADE_CLOSED -> CLOSED (a cancelled trade; ``raw`` shows whether it had
        been paid and refunded)."""
        state = self.query(payment_no=payment_no, channel_trade_no=channel_trade_no)
        if state.raw.get("trade_status") == "TRADE_CLOSED":
            return dataclasses.replace(state, status=TradeStatus.CLOSED, paid_amount=None, paid_at=None)
        return state

    def revoke(self, *, payment_no: str, channel_trade_no: str | None = None) -> RevokeResult:
        """One ``alipay.trade.cancel`` call; ``retry_flag=Y`` is ``retry=True`` (the caller calls
        again, this method never loops). ``action=close``: the unpaid trade is closed;
        ``action=refund``: it had been paid and is refunded in full. No action: the trade is
        unknown or the call failed, so the trade is queried to tell which.
        """
        node = self._call("alipay.trade.cancel", _wire.trade_ref(payment_no, channel_trade_no))
        retry = node.get("retry_flag") == "Y"
        if node.get("code") == "20000" or node.get("sub_code") in _UNKNOWN_SUB_CODES:
            if retry:
                return RevokeResult(done=False, retry=True, refunded=False, raw=node)
            self._raise_for_code(node)  # raises ChannelUnavailable: the outcome is unknown
        self._raise_for_code(node)  # a definite refusal raises ChannelRejected with Alipay's sub_code
        if retry:
            return RevokeResult(done=False, retry=True, refunded=False, raw=node)
        action = node.get("action")
        if action in _CANCEL_ACTIONS:
            return RevokeResult(done=True, retry=False, refunded=_CANCEL_ACTIONS[action], raw=node)
        if action:
            raise ChannelUnavailable(f"unknown cancel action {action!r}", raw=node)
        state = self.query_charge(payment_no=payment_no, channel_trade_no=channel_trade_no)
        if state.status in (TradeStatus.NOT_FOUND, TradeStatus.CLOSED):
            return RevokeResult(done=True, retry=False, refunded=False, raw={"cancel": node, "trade": state.raw})
        raise ChannelUnavailable("cancel answered without action; trade state unclear", raw=node)

    # --- wire -------------------------------------------------------------------------
    @property
    def _app_id(self) -> str:
        return self.config.ids["app_id"]

    @property
    def _gateway(self) -> str:
        base = self.config.base_url.rstrip("/")
        return base if base.endswith("/gateway.do") else f"{base}/gateway.do"

    @property
    def _private_key(self) -> rsa.RSAPrivateKey:
        """Parsed and validated once per process and key (a full RSA check costs tens of ms)."""
        pem = self.config.credentials["app_private_key"]
        return _KEYS.get(
            ("app_private_key", self.config.account_id), fingerprint(pem), lambda: _sign.load_private_key(pem)
        )

    @property
    def _alipay_public_key(self) -> rsa.RSAPublicKey:
        pem = self.config.options["alipay_public_key"]
        return _KEYS.get(
            ("alipay_public_key", self.config.account_id), fingerprint(pem), lambda: _sign.load_public_key(pem)
        )

    def _signed_params(
        self, api: str, biz: Mapping[str, Any], *, notify_url: str | None = None, return_url: str | None = None
    ) -> dict[str, str]:
        """Common parameters + biz_content, signed (empty values dropped, sign_type kept)."""
        params = {
            "app_id": self._app_id,
            "method": api,
            "format": "JSON",
            "charset": "utf-8",
            "sign_type": "RSA2",
            "timestamp": self._now().strftime(_wire.TIME_FORMAT),
            "version": "1.0",
            "notify_url": notify_url or "",
            "return_url": return_url or "",
            "biz_content": json.dumps(biz, ensure_ascii=False, separators=(",", ":")),
        }
        params = {k: v for k, v in params.items() if v != ""}
        params["sign"] = _sign.sign(self._private_key, _sign.signing_string(params).encode("utf-8"))
        return params

    def _now(self) -> datetime:
        return datetime.now(_wire.CST)

    def _call(self, api: str, biz: Mapping[str, Any]) -> dict[str, Any]:
        """POST one API call; return the verified ``…_response`` (or ``error_response``) node."""
        params = self._signed_params(api, biz)
        try:
            resp = self.http.post(
                self._gateway,
                data=_wire.encode(params).encode("ascii"),
                headers={"Content-Type": "application/x-www-form-urlencoded;charset=utf-8"},
                timeout=self.timeout,
            )
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"{api}: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise ChannelUnavailable(f"{api}: HTTP {resp.status_code}")
        return self._verified_node(api, resp.content)

    def _verified_node(self, api: str, body: bytes) -> dict[str, Any]:
        """Find the response node's raw text, verify it, and only then decode it."""
        try:
            members = _sign.top_level_members(body.decode("utf-8"))
        except ValueError as exc:
            raise ChannelUnavailable(f"{api}: unreadable response ({exc})") from None
        name = api.replace(".", "_") + "_response"
        if name in members:
            raw_node, is_error = members[name], False
        elif "error_response" in members:
            raw_node, is_error = members["error_response"], True
        else:
            raise ChannelUnavailable(f"{api}: response has no {name}")
        sign_raw = members.get("sign")
        if sign_raw is None:
            if not is_error:
                raise ChannelUnavailable(f"{api}: unsigned response")  # outcome unknown
        else:
            try:
                sign = json.loads(sign_raw)
            except ValueError:
                sign = None
            if not isinstance(sign, str) or not _sign.verify(self._alipay_public_key, raw_node.encode("utf-8"), sign):
                raise ChannelUnavailable(f"{api}: response signature does not verify", code="SIGNATURE_INVALID")
        try:
            node = json.loads(raw_node)
        except ValueError:
            raise ChannelUnavailable(f"{api}: response node is not JSON") from None
        if not isinstance(node, dict):
            raise ChannelUnavailable(f"{api}: response node is not an object")
        if is_error and node.get("code") == "10000":
            raise ChannelUnavailable(f"{api}: error_response claims success", raw=node)
        return node

    @staticmethod
    def _raise_for_code(node: Mapping[str, Any]) -> None:
        code = node.get("code")
        if code == "10000":
            return
        sub_code = node.get("sub_code") or ""
        message = f"{code} {node.get('msg', '')} {sub_code} {node.get('sub_msg', '')}".strip()
        if code == "20000" or sub_code in _UNKNOWN_SUB_CODES:
            raise ChannelUnavailable(message, code=sub_code or str(code), raw=node)
        if code in _REJECTING_CODES:
            raise ChannelRejected(message, code=sub_code or str(code), raw=node)
        raise ChannelUnavailable(f"unknown result code: {message}", code=str(code), raw=node)

    @staticmethod
    def _check_amount(amount: int, currency: str) -> None:
        if currency != _wire.CURRENCY:
            raise NotSupported(f"alipay takes CNY only, not {currency}")
        if check_amount(amount) > _wire.MAX_FEN:
            raise ChannelRejected(f"alipay takes at most 100000000.00 yuan, not {amount} fen", code="INVALID_AMOUNT")


def _is_not_exist(node: Mapping[str, Any]) -> bool:
    return node.get("code") == "40004" and node.get("sub_code") == "ACQ.TRADE_NOT_EXIST"


def _was_paid(fields: Mapping[str, Any]) -> bool:
    """Whether a TRADE_CLOSED payload shows money was taken (then fully refunded)."""
    if fields.get("send_pay_date") or fields.get("gmt_payment") or fields.get("refund_fee"):
        return True
    for name in ("buyer_pay_amount", "receipt_amount"):
        if fields.get(name) and _wire.fen(fields[name]) > 0:
            return True
    return False


def _trade_state(fields: Mapping[str, Any], *, paid_at_field: str) -> TradeState:
    trade_status = fields.get("trade_status")
    status = map_status(_TRADE_STATUS, trade_status, what="alipay trade_status", raw=dict(fields))
    if trade_status == "TRADE_CLOSED" and _was_paid(fields):
        status = TradeStatus.PAID  # paid, then fully refunded: the payment did happen
    paid = status is TradeStatus.PAID
    if paid and not fields.get("total_amount"):
        raise ChannelUnavailable("paid alipay trade without total_amount", raw=dict(fields))
    return TradeState(
        payment_no=fields.get("out_trade_no", ""),
        status=status,
        channel_trade_no=fields.get("trade_no") or None,
        paid_amount=_wire.fen(fields["total_amount"]) if paid else None,
        currency=_wire.CURRENCY,
        paid_at=_wire.parse_time(fields.get(paid_at_field)) if paid else None,
        raw=dict(fields),
    )
