"""WeChat Pay adapter: API v3 (app, jsapi, native, h5) and API v2 micropay (payment code).

Wire protocol: the WeChat Pay API v3 documentation for direct merchants (signatures, prepay,
query, close, refunds, notifications, trade bills) and the API v2 documentation for payment
codes (micropay, orderquery, reverse).

Account keys read from ``AccountConfig``:

- ``ids``: ``appid``, ``mchid``, ``merchant_serial_no`` (the merchant API certificate serial).
- ``credentials``: ``merchant_private_key`` (PEM, signs every v3 request and the client invoke
  parameters), ``apiv3_key`` (32 ASCII bytes, AES-256-GCM for notifications and platform
  certificates), ``api_v2_key`` (v2 micropay signatures), optional ``merchant_certificate``
  (PEM; with ``merchant_private_key`` it is the mutual-TLS client certificate of ``/secapi/``).
- ``options``: ``platform_certificates`` ({serial: PEM certificate}), ``wechatpay_public_key_id``
  (``PUB_KEY_ID_…``) and ``wechatpay_public_key`` (PEM), ``v2_sign_type`` (``HMAC-SHA256``,
  the default, or ``MD5``), ``secapi_base_url`` (the mutual-TLS endpoint, default ``base_url``),
  ``secapi_ca_certificate`` (PEM the ``/secapi/`` server must chain to; default: system trust),
  ``connect_timeout`` / ``read_timeout`` (seconds).

Design notes:

- Requests are prepared first and signed over what will actually be sent: the JSON is
  serialized once and those bytes are both signed and sent; the canonical URL is the path and
  query of the prepared URL, so a ``base_url`` path prefix (a test gateway's ``/wechat``, for
  instance) is part of it.
- Every 2xx response must carry a valid signature or the call raises
  ``ChannelUnavailable``: the channel may have acted, but we cannot believe what it said.
  Notifications that fail the same checks raise ``SignatureInvalid``.
- Keys are chosen per message by ``Wechatpay-Serial``: ``PUB_KEY_ID_…`` selects the configured
  public key, anything else a platform certificate. An unknown certificate serial triggers one
  download of ``/v3/certificates`` (at most once a minute per account), cached per process.
- Payment code uses v2 throughout: ``charge`` (``/pay/micropay``), ``query_charge``
  (``/pay/orderquery``) and ``revoke`` (``/secapi/pay/reverse``, one call per ``revoke``).
  ``query()`` (v3) also reads payment-code trades, but the payment-code flow follows its trades
  with ``query_charge``.

Layout: ``_v3`` (signed transport, verification, error map), ``_paycode`` (v2 payment code, mTLS),
``_crypto`` / ``_xml`` / ``_bill`` (pure protocol pieces), this module (the v3 operations).
"""

from __future__ import annotations

import contextlib
import json
import re
from collections.abc import Iterator, Mapping
from datetime import date, tzinfo
from typing import Any, ClassVar
from urllib.parse import quote, urlsplit

import urllib3

from channels.base import (
    Ack,
    Bill,
    BillNotReady,
    ChannelRejected,
    ChannelUnavailable,
    Notification,
    NotificationKind,
    NotSupported,
    PrepayRequest,
    PrepayResult,
    RefundRequest,
    RefundState,
    RefundStatus,
    SignatureInvalid,
    TradeState,
    TradeStatus,
    check_amount,
    check_aware,
    map_status,
    trade_ref_required,
)
from channels.wechat import _bill, _bill_sql, _crypto
from channels.wechat._paycode import WechatPaycode
from channels.wechat._v3 import _int, _parse_time, _rfc3339_beijing, _Unverified

_DOWNLOAD_CHUNK = 256 * 1024

# trade_state -> TradeStatus. ACCEPT ("debit pending", some lists only) is not final
# and nothing has been taken yet, so it reads as NOT_PAID: the caller keeps polling.
_TRADE_STATES: dict[str, TradeStatus] = {
    "NOTPAY": TradeStatus.NOT_PAID,
    "ACCEPT": TradeStatus.NOT_PAID,
    "USERPAYING": TradeStatus.USER_PAYING,
    "SUCCESS": TradeStatus.PAID,
    "REFUND": TradeStatus.PAID,
    "CLOSED": TradeStatus.CLOSED,
    "REVOKED": TradeStatus.REVOKED,
    "PAYERROR": TradeStatus.FAILED,
}

# refund status -> RefundStatus.
_REFUND_STATES: dict[str, RefundStatus] = {
    "PROCESSING": RefundStatus.PROCESSING,
    "SUCCESS": RefundStatus.SUCCEEDED,
    "CLOSED": RefundStatus.FAILED,
    "ABNORMAL": RefundStatus.ABNORMAL,
}

_CURRENCY = "CNY"
_REFUND_NO = re.compile(r"[0-9A-Za-z_\-|*@]{1,64}")

_NOT_FOUND_CODES = frozenset({"ORDER_NOT_EXIST", "RESOURCE_NOT_EXISTS"})

_TRANSACTION_EVENTS = frozenset({"TRANSACTION.SUCCESS"})
_REFUND_EVENTS = frozenset({"REFUND.SUCCESS", "REFUND.ABNORMAL", "REFUND.CLOSED"})


class WechatAdapter(WechatPaycode):
    """WeChat Pay direct merchant: v3 JSON API plus v2 micropay for payment codes."""

    code: ClassVar[str] = "wechat"
    methods: ClassVar[frozenset[str]] = frozenset({"app", "jsapi", "native", "h5", "paycode"})
    currencies: ClassVar[frozenset[str] | None] = frozenset({_CURRENCY})

    # --- prepay -------------------------------------------------------------------------------
    def prepay(self, req: PrepayRequest) -> PrepayResult:
        """Place the order; ``payment_no`` goes in as ``out_trade_no`` (identical re-posts are safe)."""
        if req.method not in {"app", "jsapi", "native", "h5"}:
            raise NotSupported(f"wechat prepay has no method {req.method!r} (payment code uses charge())")
        if req.currency not in (self.currencies or ()):
            raise NotSupported(f"wechat does not accept {req.currency}")
        check_amount(req.amount)
        check_aware(req.expires_at)
        if req.method == "jsapi" and not req.payer_id:
            raise ChannelRejected("jsapi prepay needs payer_id (the payer's openid)", code="PAYER_ID_REQUIRED")
        if req.method == "h5" and not req.client_ip:
            raise ChannelRejected("h5 prepay needs client_ip", code="CLIENT_IP_REQUIRED")
        body: dict[str, Any] = {
            "appid": self._appid,
            "mchid": self._mchid,
            "description": req.description[:127],  # WeChat's limit; shown on the payer's bill
            "out_trade_no": req.payment_no,
            "time_expire": _rfc3339_beijing(req.expires_at),
            "notify_url": req.notify_url,
            "amount": {"total": req.amount, "currency": req.currency},
        }
        if req.method == "jsapi":
            body["payer"] = {"openid": req.payer_id}
        if req.method == "h5":
            body["scene_info"] = {"payer_client_ip": req.client_ip, "h5_info": {"type": "Wap"}}
        _, reply = self._call("POST", f"/v3/pay/transactions/{req.method}", body=body)
        return PrepayResult(payment_no=req.payment_no, client_params=self._client_params(req.method, reply), raw=reply)

    def _client_params(self, method: str, reply: Mapping[str, Any]) -> dict[str, str]:
        field = {"app": "prepay_id", "jsapi": "prepay_id", "native": "code_url", "h5": "h5_url"}[method]
        value = reply.get(field)
        if not isinstance(value, str) or not value:
            raise ChannelUnavailable(f"wechat prepay reply lacks {field}", raw=reply)
        if method == "native":
            return {"code_url": value}
        if method == "h5":
            return {"h5_url": value}
        appid, key = self._appid, self._merchant_key()
        timestamp, nonce = str(int(self.clock())), _crypto.new_nonce()
        if method == "app":
            sign = _crypto.rsa_sign(key, _crypto.app_pay_message(appid, timestamp, nonce, value))
            return {
                "appid": appid,
                "partnerid": self._mchid,
                "prepayid": value,
                "package": "Sign=WXPay",
                "noncestr": nonce,
                "timestamp": timestamp,
                "sign": sign,
            }
        sign = _crypto.rsa_sign(key, _crypto.jsapi_pay_message(appid, timestamp, nonce, value))
        return {
            "appId": appid,
            "timeStamp": timestamp,
            "nonceStr": nonce,
            "package": f"prepay_id={value}",
            "signType": "RSA",
            "paySign": sign,
        }

    # --- query and close ----------------------------------------------------------------------
    def query(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> TradeState:
        """v3 query by transaction id (wins) or out_trade_no; also used for payment-code trades."""
        trade_ref_required(payment_no, channel_trade_no)
        if channel_trade_no:
            path = f"/v3/pay/transactions/id/{quote(channel_trade_no, safe='')}"
        elif payment_no:
            path = f"/v3/pay/transactions/out-trade-no/{quote(payment_no, safe='')}"
        try:
            _, reply = self._call("GET", path, query=f"mchid={quote(self._mchid, safe='')}")
        except ChannelRejected as exc:
            if exc.code in _NOT_FOUND_CODES:
                return TradeState(
                    payment_no=payment_no or "",
                    status=TradeStatus.NOT_FOUND,
                    channel_trade_no=channel_trade_no,
                    paid_amount=None,
                    raw=exc.raw,
                )
            raise
        state = self._trade_state(reply)
        if payment_no and state.payment_no != payment_no:
            raise ChannelUnavailable("wechat answered for another out_trade_no", raw=reply)
        return state

    def _trade_state(self, tx: Mapping[str, Any]) -> TradeState:
        """The transaction as a TradeState; a paid one always carries WeChat's ``amount.total``
        and ``amount.currency`` (CNY when absent: the only currency of a domestic merchant), so
        the service can compare them with the payment before believing it."""
        if not isinstance(tx, Mapping):
            raise ChannelUnavailable("wechat transaction is not a JSON object")
        if tx.get("mchid") not in (None, self._mchid):
            raise ChannelUnavailable("wechat transaction belongs to another mchid", raw=tx)
        status = map_status(_TRADE_STATES, tx.get("trade_state"), what="wechat trade_state", raw=tx)
        amount = tx.get("amount") or {}
        if not isinstance(amount, Mapping):
            raise ChannelUnavailable("wechat transaction amount is not an object", raw=tx)
        paid = status is TradeStatus.PAID
        paid_amount = _int(amount.get("total")) if paid else None
        if paid and paid_amount is None:
            raise ChannelUnavailable("paid wechat transaction without amount.total", raw=tx)
        currency = amount.get("currency") or _CURRENCY
        if not isinstance(currency, str):
            raise ChannelUnavailable("wechat transaction currency is not a string", raw=tx)
        return TradeState(
            payment_no=str(tx.get("out_trade_no", "")),
            status=status,
            channel_trade_no=tx.get("transaction_id") or None,
            paid_amount=paid_amount,
            currency=currency,
            paid_at=_parse_time(tx.get("success_time")) if paid else None,
            raw=dict(tx),
        )

    def close(self, *, payment_no: str, channel_trade_no: str | None = None) -> None:
        self._call(
            "POST", f"/v3/pay/transactions/out-trade-no/{quote(payment_no, safe='')}/close", body={"mchid": self._mchid}
        )

    # --- refunds ------------------------------------------------------------------------------
    def refund(self, req: RefundRequest) -> RefundState:
        """Create (or re-post: the same ``out_refund_no`` never refunds twice) a refund."""
        self._check_refund_no(req)
        check_amount(req.amount)
        check_amount(req.total_amount, what="total_amount")
        body: dict[str, Any] = {}
        if req.channel_trade_no:
            body["transaction_id"] = req.channel_trade_no
        else:
            body["out_trade_no"] = req.payment_no
        body["out_refund_no"] = req.refund_no
        if req.reason:
            body["reason"] = req.reason[:80]
        if req.notify_url:
            body["notify_url"] = req.notify_url
        body["amount"] = {"refund": req.amount, "total": req.total_amount, "currency": req.currency}
        _, reply = self._call("POST", "/v3/refund/domestic/refunds", body=body)
        return self._refund_state(reply, expected_refund_no=req.refund_no)

    def refund_no_problem(self, *, refund_no: str, payment_no: str) -> str | None:
        """``out_refund_no``: at most 64 characters of ``0-9 A-Z a-z _ - | * @``."""
        problem = super().refund_no_problem(refund_no=refund_no, payment_no=payment_no)
        if problem is None and not _REFUND_NO.fullmatch(refund_no):
            problem = "WeChat Pay takes at most 64 characters of 0-9, A-Z, a-z and _-|*@"
        return problem

    def query_refund(
        self,
        *,
        refund_no: str,
        payment_no: str,
        channel_trade_no: str | None = None,
        channel_refund_no: str | None = None,
    ) -> RefundState:
        try:
            _, reply = self._call("GET", f"/v3/refund/domestic/refunds/{quote(refund_no, safe='')}")
        except ChannelRejected as exc:
            if exc.code in _NOT_FOUND_CODES:
                return RefundState(
                    refund_no=refund_no, status=RefundStatus.NOT_FOUND, channel_refund_no=None, amount=None, raw=exc.raw
                )
            raise
        return self._refund_state(reply, expected_refund_no=refund_no)

    def _refund_state(
        self, data: Mapping[str, Any], *, expected_refund_no: str | None, status_field: str = "status"
    ) -> RefundState:
        raw_status = data.get(status_field)
        status = map_status(_REFUND_STATES, raw_status, what="wechat refund status", raw=data)
        refund_no = str(data.get("out_refund_no", ""))
        if expected_refund_no is not None and refund_no != expected_refund_no:
            raise ChannelUnavailable("wechat answered for another out_refund_no", raw=data)
        amount = data.get("amount") or {}
        return RefundState(
            refund_no=refund_no,
            status=status,
            channel_refund_no=data.get("refund_id") or None,
            amount=_int(amount.get("refund")),
            succeeded_at=_parse_time(data.get("success_time")) if status is RefundStatus.SUCCEEDED else None,
            fail_code=raw_status if status in (RefundStatus.FAILED, RefundStatus.ABNORMAL) else None,
            raw=dict(data),
        )

    # --- notifications -------------------------------------------------------------------------
    def parse_notification(self, headers: Mapping[str, str], body: bytes) -> Notification:
        """Verify the signature, then decrypt and check the resource; raises ``SignatureInvalid``."""
        try:
            self._verify(headers, body, allow_refresh=True)
        except _Unverified as exc:
            raise SignatureInvalid(f"wechat notification rejected: {exc}") from None
        try:
            envelope = json.loads(body)
            event_type, event_id = envelope["event_type"], envelope["id"]
            resource = envelope.get("resource")
        except (ValueError, KeyError, TypeError) as exc:
            raise SignatureInvalid(f"unreadable wechat notification: {exc}") from None
        if event_type not in _TRANSACTION_EVENTS | _REFUND_EVENTS:
            return Notification(
                kind=NotificationKind.OTHER, dedupe_key=str(event_id), event_type=event_type, raw={"envelope": envelope}
            )
        plain = self._decrypt_resource(envelope, resource)
        if plain.get("mchid") != self._mchid:
            raise SignatureInvalid("wechat notification is for another mchid")
        raw = {"envelope": envelope, "resource": plain}
        if event_type in _TRANSACTION_EVENTS:
            if plain.get("appid") != self._appid:
                raise SignatureInvalid("wechat notification is for another appid")
            try:
                trade = self._trade_state(plain)
            except ChannelUnavailable as exc:
                raise SignatureInvalid(f"unusable wechat transaction notification: {exc}") from None
            return Notification(
                kind=NotificationKind.PAYMENT,
                dedupe_key=str(event_id),
                event_type=event_type,
                payment_no=trade.payment_no,
                channel_trade_no=trade.channel_trade_no,
                trade=trade,
                raw=raw,
            )
        try:
            refund = self._refund_state(plain, expected_refund_no=None, status_field="refund_status")
        except ChannelUnavailable as exc:
            raise SignatureInvalid(f"unusable wechat refund notification: {exc}") from None
        return Notification(
            kind=NotificationKind.REFUND,
            dedupe_key=str(event_id),
            event_type=event_type,
            payment_no=plain.get("out_trade_no"),
            channel_trade_no=plain.get("transaction_id"),
            refund=refund,
            raw=raw,
        )

    def _decrypt_resource(self, envelope: Mapping[str, Any], resource: Any) -> dict[str, Any]:
        if envelope.get("resource_type") != "encrypt-resource" or not isinstance(resource, dict):
            raise SignatureInvalid("wechat notification resource_type is not encrypt-resource")
        if resource.get("algorithm") != _crypto.AEAD_ALGORITHM:
            raise SignatureInvalid(f"unsupported resource algorithm {resource.get('algorithm')!r}")
        try:
            plain = _crypto.aes_gcm_decrypt(
                self.config.credentials["apiv3_key"],
                nonce=str(resource["nonce"]),
                associated_data=str(resource.get("associated_data") or ""),
                ciphertext_b64=str(resource["ciphertext"]),
            )
            data = json.loads(plain)
        except (ValueError, KeyError) as exc:
            raise SignatureInvalid(f"wechat notification resource cannot be decrypted: {exc}") from None
        if not isinstance(data, dict):
            raise SignatureInvalid("wechat notification resource is not a JSON object")
        return data

    def ack(self, ok: bool, message: str = "") -> Ack:
        """200 with no body accepts; a 4xx with ``{"code":"FAIL"}`` makes WeChat re-send."""
        if ok:
            return Ack(status=200)
        body = json.dumps({"code": "FAIL", "message": message or "rejected"}, ensure_ascii=False).encode()
        return Ack(status=400, body=body, content_type="application/json")

    # --- bills --------------------------------------------------------------------------------
    bill_timezone: ClassVar[tzinfo] = _bill.BEIJING  # the bill day is a Beijing (UTC+8) day

    def fetch_bill(self, bill_date: date) -> Bill:
        """The day's ALL bill (Beijing day). The download URL is asked for at once (so "not ready"
        raises here); the gzip file is then streamed, hashed and parsed row by row as it is read."""
        query = f"bill_date={bill_date.isoformat()}&bill_type=ALL&tar_type=GZIP"
        try:
            _, info = self._call("GET", "/v3/bill/tradebill", query=query)
        except (ChannelRejected, ChannelUnavailable) as exc:
            if exc.code == "NO_STATEMENT_EXIST":  # no activity that day: normal
                return Bill.empty(channel=self.code, bill_date=bill_date, bill_type="ALL")
            if exc.code == "STATEMENT_CREATING":  # generating (or the day has not ended): later
                raise BillNotReady(exc.message, code=exc.code, raw=exc.raw) from None
            raise
        url = info.get("download_url")
        if not isinstance(url, str) or not self._is_trusted_download(url):
            raise ChannelUnavailable("wechat bill download_url missing or on an unexpected host", raw=info)
        hash_type, hash_value = str(info.get("hash_type", "")), str(info.get("hash_value", ""))

        def chunks() -> Iterator[bytes]:
            resp = self._send("GET", url=url, stream=True)  # signed; the file itself is not
            with contextlib.closing(resp):
                if resp.status_code != 200:
                    self._raise_for_error(resp.status_code, resp.raw.read(64 * 1024, decode_content=False))
                # Raw bytes: a Content-Encoding must not hide the gzip the hash may cover.
                try:
                    yield from resp.raw.stream(_DOWNLOAD_CHUNK, decode_content=False)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    raise ChannelUnavailable(f"wechat bill download broke off: {type(exc).__name__}") from exc

        # Read row by row, or staged for the database to parse (reconciliation's loader).
        return _bill_sql.wechat_bill(bill_date=bill_date, chunks=chunks, hash_type=hash_type, hash_value=hash_value)

    def _is_trusted_download(self, url: str) -> bool:
        parts, base = urlsplit(url), urlsplit(self._base)
        if parts.scheme == base.scheme and parts.netloc == base.netloc:
            return True
        return parts.scheme == "https" and (parts.hostname or "").endswith(".mch.weixin.qq.com")
