"""Payment code through WeChat Pay API v2: ``/pay/micropay`` and ``/secapi/pay/reverse``.

XML in and out, MD5 or HMAC-SHA256 signatures with the v2 API key. Replies are verified only
when ``return_code`` is SUCCESS (failure replies carry no signature). ``/secapi/`` calls present
the merchant certificate for mutual TLS through requests' ``cert=`` when the account has
``merchant_certificate``.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator, Mapping

import requests

from channels.base import (
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    ChargeRequest,
    NotSupported,
    TradeState,
    TradeStatus,
    check_amount,
    check_aware,
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
# v2 reverse err_code values: retry these, reject those.
_REVERSE_RETRY = frozenset({"SYSTEMERROR", "USERPAYING"})
_REVERSE_REJECTIONS = frozenset(
    {
        "REVERSE_EXPIRE",
        "INVALID_TRANSACTIONID",
        "INVALID_REQUEST",
        "TRADE_ERROR",
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
    }
)


class WechatPaycode(WechatBase):
    """``charge`` and ``revoke`` for payment codes; ``query`` (v3) comes from the adapter."""

    reverse_attempts: int = 3
    reverse_pause: float = 1.0

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
        with self._client_cert() if mtls else contextlib.nullcontext() as cert:
            try:
                resp = self.http.post(
                    self._base + path,
                    data=_xml.build(params),
                    timeout=self.timeout,
                    headers=_V2_HEADERS,
                    cert=cert,
                    allow_redirects=False,
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

    @contextlib.contextmanager
    def _client_cert(self) -> Iterator[tuple[str, str] | None]:
        """requests wants files for mTLS: write cert and key to a private temp dir for one call."""
        pem = self.config.credentials.get("merchant_certificate")
        if not pem:
            yield None
            return
        folder = tempfile.mkdtemp(prefix="paycore-wx-")
        try:
            cert_path, key_path = os.path.join(folder, "cert.pem"), os.path.join(folder, "key.pem")
            for path, text in ((cert_path, pem), (key_path, self.config.credentials["merchant_private_key"])):
                fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                with os.fdopen(fd, "w") as handle:
                    handle.write(text)
            yield cert_path, key_path
        finally:
            shutil.rmtree(folder, ignore_errors=True)

    def charge(self, req: ChargeRequest) -> TradeState:
        """``/pay/micropay``: PAID, USER_PAYING (poll ``query``), or an error."""
        if req.currency not in self.currencies:
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
            if reply.get("out_trade_no") not in (None, req.payment_no):
                raise ChannelUnavailable("wechat micropay answered for another out_trade_no", raw=reply)
            paid_amount = _int(reply.get("total_fee"))
            if paid_amount is None:
                raise ChannelUnavailable("paid micropay answer without total_fee", raw=reply)
            return TradeState(
                payment_no=req.payment_no,
                status=TradeStatus.PAID,
                channel_trade_no=reply.get("transaction_id") or None,
                paid_amount=paid_amount,
                currency=reply.get("fee_type") or "CNY",
                paid_at=_parse_compact_time(reply.get("time_end")),
                raw=reply,
            )
        if reply.get("result_code") != "FAIL":
            raise ChannelUnavailable(f"unknown micropay result_code {reply.get('result_code')!r}", raw=reply)
        err = reply.get("err_code", "")
        if err == "USERPAYING":
            return TradeState(
                payment_no=req.payment_no,
                status=TradeStatus.USER_PAYING,
                channel_trade_no=None,
                paid_amount=None,
                raw=reply,
            )
        if err == "ORDERPAID":
            return self.query(payment_no=req.payment_no)
        if err in _MICROPAY_REJECTIONS:
            raise ChannelRejected(
                f"wechat micropay refused: {err} {reply.get('err_code_des', '')}", code=err, raw=reply
            )
        # SYSTEMERROR, BANKERROR and any code we do not know: the payment's fate is unknown.
        raise ChannelUnavailable(f"wechat micropay outcome unknown: {err}", code=err, raw=reply)

    def revoke(self, *, payment_no: str, channel_trade_no: str | None = None) -> TradeStatus:
        """``/secapi/pay/reverse`` (mTLS), repeated while WeChat asks (``recall=Y``), bounded."""
        fields = {"out_trade_no": payment_no}
        if channel_trade_no:
            fields["transaction_id"] = channel_trade_no
        last: Exception | None = None
        for attempt in range(self.reverse_attempts):
            if attempt and self.reverse_pause:
                time.sleep(self.reverse_pause)
            try:
                reply = self._v2_call("/secapi/pay/reverse", fields, mtls=True)
            except ChannelUnavailable as exc:
                last = exc
                continue
            if reply.get("result_code") == "SUCCESS":
                return TradeStatus.REVOKED
            err = reply.get("err_code", "")
            if reply.get("recall") == "Y" or err in _REVERSE_RETRY:
                last = ChannelUnavailable(f"wechat reverse not finished: {err or 'recall=Y'}", code=err, raw=reply)
                continue
            if err in _REVERSE_REJECTIONS:
                raise ChannelRejected(
                    f"wechat reverse refused: {err} {reply.get('err_code_des', '')}", code=err, raw=reply
                )
            raise ChannelUnavailable(f"wechat reverse outcome unknown: {err}", code=err, raw=reply)
        assert last is not None
        raise last
