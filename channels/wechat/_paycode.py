"""Payment code through WeChat Pay API v2: ``/pay/micropay``, ``/pay/orderquery`` and
``/secapi/pay/reverse``.

XML in and out, MD5 or HMAC-SHA256 signatures with the v2 API key. Replies are verified only
when ``return_code`` is SUCCESS (failure replies carry no signature).

``/secapi/`` calls use mutual TLS: the client certificate is ``credentials.merchant_certificate``
(PEM) with ``credentials.merchant_private_key``; the endpoint is ``options.secapi_base_url`` when
set (else ``base_url``), and the server certificate is checked against
``options.secapi_ca_certificate`` (PEM) when set, else the system trust store.
"""

from __future__ import annotations

import atexit
import os
import re
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import requests

from channels._cache import ProcessCache, fingerprint
from channels.base import (
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    ChargeRequest,
    NotSupported,
    RevokeResult,
    TradeState,
    TradeStatus,
    check_amount,
    check_aware,
    map_status,
    trade_ref_required,
)
from channels.wechat import _crypto, _xml
from channels.wechat._v3 import USER_AGENT, WechatBase, _beijing, _int, _parse_compact_time

_V2_HEADERS = {"Content-Type": "text/xml; charset=utf-8", "User-Agent": USER_AGENT}

# A WeChat payment code: 18 digits starting 10-15 (Alipay's start 25-30).
AUTH_CODE = re.compile(r"1[0-5][0-9]{16}")

# v2 micropay err_code values that are a definite "no"; unknown codes are not failures.
_MICROPAY_REJECTIONS = frozenset(
    {
        "AUTHCODEEXPIRE",
        "AUTH_CODE_ERROR",
        "AUTH_CODE_INVALID",
        "NOTENOUGH",
        "NOTSUPORTCARD",
        "BUYER_MISMATCH",
        "ORDERCLOSED",
        "ORDERREVERSED",
        "OUT_TRADE_NO_USED",
        "PARAM_ERROR",
        "NOAUTH",
        "XML_FORMAT_ERROR",
        "REQUIRE_POST_METHOD",
        "SIGNERROR",
        "LACK_PARAMS",
        "NOT_UTF8",
        "TRADE_ERROR",
        "APPID_NOT_EXIST",
        "MCHID_NOT_EXIST",
        "APPID_MCHID_NOT_MATCH",
        "INVALID_REQUEST",
        "POST_DATA_EMPTY",
    }
)
# v2 orderquery trade_state -> TradeStatus (ACCEPT, "debit pending", is not paid yet).
_ORDER_STATES: dict[str, TradeStatus] = {
    "SUCCESS": TradeStatus.PAID,
    "REFUND": TradeStatus.PAID,
    "NOTPAY": TradeStatus.NOT_PAID,
    "ACCEPT": TradeStatus.NOT_PAID,
    "USERPAYING": TradeStatus.USER_PAYING,
    "CLOSED": TradeStatus.CLOSED,
    "REVOKED": TradeStatus.REVOKED,
    "PAYERROR": TradeStatus.FAILED,
}
_ORDERQUERY_NOT_FOUND = frozenset({"ORDERNOTEXIST", "ORDER_NOT_EXIST"})
# orderquery / reverse err_code values that are a definite "no" (the request itself was refused).
_REQUEST_REJECTIONS = frozenset(
    {
        "XML_FORMAT_ERROR",
        "REQUIRE_POST_METHOD",
        "SIGNERROR",
        "LACK_PARAMS",
        "NOT_UTF8",
        "PARAM_ERROR",
        "APPID_NOT_EXIST",
        "MCHID_NOT_EXIST",
        "APPID_MCHID_NOT_MATCH",
        "POST_DATA_EMPTY",
        "NOAUTH",
    }
)
# reverse err_code values that definitely refuse the reversal (outside the 7-day window, not a
# payment-code order...); anything else without recall=Y is an unknown outcome.
_REVERSE_REJECTIONS = _REQUEST_REJECTIONS | {
    "REVERSE_EXPIRE",
    "INVALID_TRANSACTIONID",
    "INVALID_REQUEST",
    "TRADE_ERROR",
}


@dataclass(frozen=True)
class _MtlsFiles:
    """The merchant certificate and key (and the trusted CA) as files, for requests' cert=/verify=."""

    cert: str
    key: str
    ca: str | None


# Written once per process, account and key material, into a private (0700) temp dir.
_MTLS: ProcessCache[_MtlsFiles] = ProcessCache("wechat mTLS files")


def _remove_if_owner(folder: str, owner: int) -> None:
    """At exit, only the process that wrote the files removes them (a forked child shares them)."""
    if os.getpid() == owner:
        shutil.rmtree(folder, ignore_errors=True)


def _write_mtls_files(cert_pem: str, key_pem: str, ca_pem: str | None) -> _MtlsFiles:
    folder = tempfile.mkdtemp(prefix="paycore-wx-mtls-")  # mode 0700
    owner = os.getpid()
    atexit.register(_remove_if_owner, folder, owner)
    paths = {}
    for name, text in (("cert.pem", cert_pem), ("key.pem", key_pem), ("ca.pem", ca_pem)):
        if text is None:
            continue
        path = os.path.join(folder, name)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
        paths[name] = path
    return _MtlsFiles(cert=paths["cert.pem"], key=paths["key.pem"], ca=paths.get("ca.pem"))


class WechatPaycode(WechatBase):
    """``charge``, ``query_charge`` and ``revoke`` for payment codes, through API v2."""

    def _v2_sign_type(self) -> str:
        sign_type = self.config.options.get("v2_sign_type") or "HMAC-SHA256"
        if sign_type not in _crypto.V2_SIGN_TYPES:
            raise ChannelError(f"unsupported options.v2_sign_type {sign_type!r}", code="CONFIG")
        return sign_type

    def _v2_params(self, fields: Mapping[str, str]) -> dict[str, str]:
        params = {
            "appid": self._appid,
            "mch_id": self._mchid,
            "nonce_str": _crypto.new_nonce(),
            "sign_type": self._v2_sign_type(),
            **fields,
        }
        params["sign"] = _crypto.v2_sign(params, self.config.credentials["api_v2_key"], params["sign_type"])
        return params

    def _v2_call(self, path: str, fields: Mapping[str, str], *, mtls: bool = False) -> dict[str, str]:
        """POST one v2 XML call. Returns the verified reply when ``return_code`` is SUCCESS.

        ``return_code`` FAIL (nothing processed), timeouts, non-200 and unverifiable replies are
        all ``ChannelUnavailable``: the caller queries and, for payment codes, reverses.
        """
        params = self._v2_params(fields)
        base, tls = self._base, {}
        if mtls:
            base = str(self.config.options.get("secapi_base_url") or self._base).rstrip("/")
            tls = self._mtls()
        try:
            resp = self.http.post(
                base + path,
                data=_xml.build(params),
                timeout=self.timeout,
                headers=_V2_HEADERS,
                allow_redirects=False,
                **tls,
            )
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"wechat v2 {path}: {type(exc).__name__}") from exc
        if resp.status_code != 200:
            raise ChannelUnavailable(f"wechat v2 {path} answered HTTP {resp.status_code}")
        try:
            reply = _xml.parse(resp.content)
        except _xml.XmlError as exc:
            raise ChannelUnavailable(f"unreadable wechat v2 reply: {exc}") from None
        if reply.get("return_code") != "SUCCESS":
            raise ChannelUnavailable(
                f"wechat v2 return_code FAIL: {reply.get('return_msg', '')}", code="FAIL", raw=reply
            )
        sign_type = reply.get("sign_type") or params["sign_type"]
        if sign_type not in _crypto.V2_SIGN_TYPES or not _crypto.v2_verify(
            reply, self.config.credentials["api_v2_key"], sign_type
        ):
            raise ChannelUnavailable(f"unverifiable wechat v2 reply to {path}", code="SIGNATURE")
        if reply.get("mch_id") not in (None, self._mchid) or reply.get("appid") not in (None, self._appid):
            raise ChannelUnavailable(f"wechat v2 reply to {path} names another merchant", raw=reply)
        return reply

    def _mtls(self) -> dict[str, Any]:
        """requests' ``cert=`` / ``verify=`` for ``/secapi/``: the merchant certificate and key as
        the client certificate, the server checked against ``options.secapi_ca_certificate`` when
        set (else the system trust store). Files are written once per process and key material."""
        cert_pem = self.config.credentials.get("merchant_certificate")
        ca_pem = self.config.options.get("secapi_ca_certificate") or None
        if not cert_pem:
            return {}  # no client certificate configured: WeChat drops the connection, a test gateway may not
        key_pem = self.config.credentials["merchant_private_key"]
        files = _MTLS.get(
            ("mtls", self.config.account_id),
            fingerprint(cert_pem, key_pem, ca_pem),
            lambda: _write_mtls_files(cert_pem, key_pem, ca_pem),
        )
        return {"cert": (files.cert, files.key), "verify": files.ca or True}

    # --- charge ---------------------------------------------------------------------------------
    def charge(self, req: ChargeRequest) -> TradeState:
        """``/pay/micropay``: PAID, USER_PAYING (follow with ``query_charge``), or an error.

        Definite failures (``ChannelRejected``): the codes of ``_MICROPAY_REJECTIONS`` (expired or
        invalid code, NOTENOUGH, card not supported, buyer mismatch, order closed or reversed,
        request refused). Unknown outcomes (``ChannelUnavailable``): SYSTEMERROR, BANKERROR, any
        code not listed, return_code FAIL, timeouts, 5xx, unreadable or unverifiable answers.
        """
        if req.currency not in (self.currencies or ()):
            raise NotSupported(f"wechat does not accept {req.currency}")
        check_amount(req.amount)
        if req.expires_at is not None:
            check_aware(req.expires_at)
        if not isinstance(req.auth_code, str) or not AUTH_CODE.fullmatch(req.auth_code):
            raise ChannelRejected("not a WeChat payment code (18 digits starting 10-15)", code="AUTH_CODE_INVALID")
        fields = {
            "body": req.description[:127],
            "out_trade_no": req.payment_no,
            "total_fee": str(req.amount),
            "fee_type": req.currency,
            "spbill_create_ip": req.client_ip or "127.0.0.1",
            "auth_code": req.auth_code,
        }
        if req.expires_at is not None:
            fields["time_expire"] = _beijing(req.expires_at).strftime("%Y%m%d%H%M%S")
        reply = self._v2_call("/pay/micropay", fields)
        if reply.get("result_code") == "SUCCESS":
            return self._v2_trade(reply, req.payment_no, TradeStatus.PAID)
        if reply.get("result_code") != "FAIL":
            raise ChannelUnavailable(f"unknown micropay result_code {reply.get('result_code')!r}", raw=reply)
        err = reply.get("err_code", "")
        if err == "USERPAYING":
            return TradeState(
                payment_no=req.payment_no,
                status=TradeStatus.USER_PAYING,
                channel_trade_no=reply.get("transaction_id") or None,
                paid_amount=None,
                currency=req.currency,
                raw=reply,
            )
        if err == "ORDERPAID":
            return self.query_charge(payment_no=req.payment_no)
        if err in _MICROPAY_REJECTIONS:
            raise ChannelRejected(
                f"wechat micropay refused: {err} {reply.get('err_code_des', '')}", code=err, raw=reply
            )
        # SYSTEMERROR, BANKERROR and any code we do not know: the payment's fate is unknown.
        raise ChannelUnavailable(f"wechat micropay outcome unknown: {err}", code=err, raw=reply)

    def _v2_trade(self, reply: Mapping[str, str], payment_no: str, status: TradeStatus) -> TradeState:
        """A v2 answer as a TradeState; a paid one must carry ``total_fee`` (fee_type, default CNY)."""
        if reply.get("out_trade_no") not in (None, payment_no):
            raise ChannelUnavailable("wechat v2 answered for another out_trade_no", raw=reply)
        paid = status is TradeStatus.PAID
        paid_amount = _int(reply.get("total_fee")) if paid else None
        if paid and paid_amount is None:
            raise ChannelUnavailable("paid wechat v2 answer without total_fee", raw=reply)
        return TradeState(
            payment_no=payment_no,
            status=status,
            channel_trade_no=reply.get("transaction_id") or None,
            paid_amount=paid_amount,
            currency=reply.get("fee_type") or "CNY",
            paid_at=_parse_compact_time(reply.get("time_end")) if paid else None,
            raw=dict(reply),
        )

    # --- query_charge ---------------------------------------------------------------------------
    def query_charge(self, *, payment_no: str, channel_trade_no: str | None = None) -> TradeState:
        """``/pay/orderquery`` (v2, the protocol that charged the code; ``transaction_id`` wins).

        SUCCESS/REFUND -> PAID, USERPAYING -> USER_PAYING, NOTPAY/ACCEPT -> NOT_PAID, an unknown
        order -> NOT_FOUND, REVOKED -> REVOKED, CLOSED -> CLOSED, PAYERROR -> FAILED.
        """
        trade_ref_required(payment_no, channel_trade_no)
        fields = {"out_trade_no": payment_no}
        if channel_trade_no:
            fields["transaction_id"] = channel_trade_no
        reply = self._v2_call("/pay/orderquery", fields)
        if reply.get("result_code") == "SUCCESS":
            status = map_status(_ORDER_STATES, reply.get("trade_state"), what="wechat v2 trade_state", raw=reply)
            return self._v2_trade(reply, payment_no, status)
        err = reply.get("err_code", "")
        if reply.get("result_code") == "FAIL" and err in _ORDERQUERY_NOT_FOUND:
            return TradeState(
                payment_no=payment_no,
                status=TradeStatus.NOT_FOUND,
                channel_trade_no=channel_trade_no,
                paid_amount=None,
                currency="CNY",
                raw=reply,
            )
        if reply.get("result_code") == "FAIL" and err in _REQUEST_REJECTIONS:
            raise ChannelRejected(f"wechat orderquery refused: {err}", code=err, raw=reply)
        raise ChannelUnavailable(f"wechat orderquery outcome unknown: {err or reply.get('result_code')}", raw=reply)

    # --- revoke ---------------------------------------------------------------------------------
    def revoke(self, *, payment_no: str, channel_trade_no: str | None = None) -> RevokeResult:
        """One ``/secapi/pay/reverse`` call (mutual TLS). WeChat's ``recall=Y`` is ``retry=True``:
        the caller calls again, this method never loops.

        SUCCESS is ``done``; whether money had moved (``refunded``) is read from the reversed
        order afterwards: a REVOKED order that carries its payment (``transaction_id`` and
        ``time_end``) was paid and has been refunded in full. Reverse is re-entrant, so revoking
        a reversed order is ``done`` again.
        """
        trade_ref_required(payment_no, channel_trade_no)
        fields = {"out_trade_no": payment_no}
        if channel_trade_no:
            fields["transaction_id"] = channel_trade_no
        reply = self._v2_call("/secapi/pay/reverse", fields, mtls=True)
        retry = reply.get("recall") == "Y"
        if reply.get("result_code") == "SUCCESS":
            if retry:
                return RevokeResult(done=False, retry=True, refunded=False, raw=reply)
            after = self.query_charge(payment_no=payment_no, channel_trade_no=channel_trade_no)
            refunded = after.status is TradeStatus.REVOKED and bool(
                after.raw.get("transaction_id") and after.raw.get("time_end")
            )
            return RevokeResult(done=True, retry=False, refunded=refunded, raw={"reverse": reply, "order": after.raw})
        err = reply.get("err_code", "")
        if retry:  # USERPAYING (the payer is mid-password), SYSTEMERROR...: WeChat asks to call again
            return RevokeResult(done=False, retry=True, refunded=False, raw=reply)
        if err in _REVERSE_REJECTIONS:
            raise ChannelRejected(f"wechat reverse refused: {err} {reply.get('err_code_des', '')}", code=err, raw=reply)
        raise ChannelUnavailable(f"wechat reverse outcome unknown: {err}", code=err, raw=reply)
