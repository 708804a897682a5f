"""WeChat Pay simulator: API v3 (direct merchant) and API v2 payment code, platform side.

Written from WeChat Pay's published API v3 and v2 protocols, independently of
paycore's adapter. What it checks and answers:

- Every v3 call must carry a valid ``Authorization: WECHATPAY2-SHA256-RSA2048 ...`` signed with
  the merchant key over ``METHOD\\nTARGET\\nTIMESTAMP\\nNONCE\\nBODY\\n`` (TARGET = path as sent,
  ``/wechat`` prefix included, plus ``?query``); timestamp within 300 s; ``mchid`` known and
  ``serial_no`` equal to the merchant certificate serial. Otherwise ``401 SIGN_ERROR``.
- Every 2xx v3 answer is signed (``Wechatpay-Timestamp/Nonce/Signature/Serial/Signature-Type``
  over ``ts\\nnonce\\nbody\\n``). Key choice by account ``mode``: ``certificate`` -> platform
  certificate, ``public_key`` -> WeChat Pay public key (``PUB_KEY_ID_...``), ``both`` -> the
  public key when the request's ``Wechatpay-Serial`` names its id, else the platform certificate;
  notifications alternate between the two in ``both`` mode. Error answers are not signed.
- Faults: ``bad_signature`` signs a different string; ``tamper_amount`` rewrites ``amount``
  after signing (transactions: ``total``/``payer_total``; refunds: ``refund``/``payer_refund``;
  v2: ``total_fee``/``cash_fee``), so the signature no longer matches.

Sandbox conventions and relaxations (documented so tests can rely on them):

- ``notify_url`` may be ``http://`` (tests run a local sink); it must still have no query string.
- Close or re-post of a paid order answers ``400 ORDERPAID``; of a closed one ``400 ORDER_CLOSED``.
  Unknown refund / refund of an unknown order: ``404 RESOURCE_NOT_EXISTS``; refunding more than
  what is left: ``400 INVALID_REQUEST``; refund of an unpaid order: ``400 INVALID_REQUEST``.
- Refunds complete ``REFUND_DELAY`` sandbox seconds after creation (-> ``SUCCESS`` and a
  ``REFUND.SUCCESS`` notification to the refund's ``notify_url`` when given). A refund whose
  ``reason`` is ``SANDBOX_PROCESSING`` stays ``PROCESSING`` until the payer actions
  ``refund_success`` / ``refund_abnormal`` / ``refund_closed`` are applied to its ``out_refund_no``.
- Bills are built from what happened in the sandbox, only for days that have ended by the
  sandbox clock (Beijing time): today answers ``400 STATEMENT_CREATING``, a later day ``400
  INVALID_REQUEST``, a day without activity ``400 NO_STATEMENT_EXIST`` (no 10:00 publication
  delay, no 3-month limit). 手续费 is 0.6 % of each payment (5 decimals), returned on refunds.
  ``hash_value`` is the SHA-1 of the bytes served (the gzip stream when ``tar_type=GZIP``).
  A payment-code order reversed after payment is listed twice: its ``SUCCESS`` row on the day it
  was paid, and a ``REVOKED`` row on the day it was reversed (same order numbers; 商户退款单号 =
  the order number, 退款金额/申请退款金额/订单金额 = the order's amount, 应结订单金额 0.00,
  退款状态 ``SUCCESS``; only in ``ALL`` and ``REFUND`` bills). Refund and revocation rows carry a
  negative (returned) fee.
- Payer actions (``POST /_sandbox/wechat/trades/{out_trade_no}/{action}``): ``pay`` (params
  ``after_seconds``, ``amount`` = tampered notification amount, ``openid``, ``notify`` false to
  skip the notification, ``signtest`` true to send a ``WECHATPAY/SIGNTEST/`` probe instead,
  ``bad_signature`` true to sign the notification wrongly), ``fail`` / ``cancel`` (v3: the trade
  stays ``NOTPAY``, as a payer's failed attempt changes nothing; payment code: ``PAYERROR``),
  ``password`` (payment code ``USERPAYING`` -> ``SUCCESS``; refused with ``409 NO_PASSWORD`` in
  the scenarios where the payer never types it, ``409 EXPIRED`` after the code's ``time_expire``).
  ``mchid`` picks the account when two accounts used the same ``out_trade_no``.
- v2 ``auth_code``: must match ``^1[0-5]\\d{16}$`` (else ``AUTH_CODE_INVALID``); its last four
  digits choose the scenario, see ``sandbox/paycode.py``. ``/pay/orderquery`` reports
  ``USERPAYING``, ``SUCCESS``, ``NOTPAY``, ``REVOKED``, ``CLOSED`` (``time_expire`` passed while
  unpaid), ``PAYERROR`` and ``REFUND`` as they happen.
- ``/secapi/`` (reverse) is served only on the gateway's mutual-TLS listener
  (``options.secapi_base_url``), to a client presenting this merchant's certificate
  (``credentials.merchant_certificate``, issued by the sandbox CA ``options.secapi_ca_certificate``,
  key ``credentials.merchant_private_key``). No certificate, or one the CA did not issue: the TLS
  handshake fails. Another merchant's certificate: ``return_code=FAIL`` (证书与商户号不匹配).
  Over the plain listener: ``return_code=FAIL`` naming the TLS requirement. Nothing is processed.
- v2 reverse of a ``USERPAYING`` order first answers ``FAIL USERPAYING`` with ``recall=Y``; the
  next reverse of it succeeds (the payer's password prompt is withdrawn). Reverse of an unknown
  order answers ``SUCCESS``; of a v3 (non payment-code) order ``INVALID_REQUEST``; of an order
  created more than 7 days before (sandbox clock) ``REVERSE_EXPIRE``. Revocation faults
  (``revoke_retry``: ``FAIL SYSTEMERROR recall=Y`` without acting; ``revoke_error``: ``FAIL
  SYSTEMERROR`` without ``recall``) apply per account (``mchid``) or trade (``out_trade_no``).
- Not simulated: the 15-second wait before reversing, rate limits, the 5-minute close advice.
"""

from __future__ import annotations

from urllib.parse import unquote

from sandbox.core import ChannelSimulator, SandboxRequest, SandboxResponse
from sandbox.wechat.accounts import AccountsMixin, WechatAccount
from sandbox.wechat.bills import BillsMixin
from sandbox.wechat.common import _TRADE_TYPES, _error, _Reject
from sandbox.wechat.notifications import NotificationsMixin
from sandbox.wechat.refunds import RefundsMixin
from sandbox.wechat.trades import TradesMixin
from sandbox.wechat.v2 import V2Mixin, build_v2_xml, parse_v2_xml, v2_sign

__all__ = ["WechatAccount", "WechatSimulator", "build_v2_xml", "parse_v2_xml", "v2_sign"]


class WechatSimulator(
    AccountsMixin, TradesMixin, NotificationsMixin, RefundsMixin, BillsMixin, V2Mixin, ChannelSimulator
):
    """The WeChat Pay platform, composed of one mixin per thing the platform does."""

    channel = "wechat"

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        try:
            if req.path in ("/pay/micropay", "/pay/orderquery", "/secapi/pay/reverse"):
                return self._v2(req)
            acct = self._authenticate(req)
            return self._v3(req, acct)
        except _Reject as rej:
            return rej.response

    def _v3(self, req: SandboxRequest, acct: WechatAccount) -> SandboxResponse:
        parts = [unquote(p) for p in req.path.strip("/").split("/")]
        method = req.method
        match (method, parts):
            case ("POST", ["v3", "pay", "transactions", scene]) if scene in _TRADE_TYPES:
                return self._prepay(req, acct, scene)
            case ("GET", ["v3", "pay", "transactions", "id", transaction_id]):
                self._check_query_mchid(req, acct)
                return self._signed(
                    req, acct, 200, self._transaction_json(self._find_trade(acct, transaction_id=transaction_id))
                )
            case ("GET", ["v3", "pay", "transactions", "out-trade-no", out_trade_no]):
                self._check_query_mchid(req, acct)
                return self._signed(
                    req, acct, 200, self._transaction_json(self._find_trade(acct, out_trade_no=out_trade_no))
                )
            case ("POST", ["v3", "pay", "transactions", "out-trade-no", out_trade_no, "close"]):
                return self._close(req, acct, out_trade_no)
            case ("POST", ["v3", "refund", "domestic", "refunds"]):
                return self._refund(req, acct)
            case ("GET", ["v3", "refund", "domestic", "refunds", out_refund_no]):
                with self.sandbox.lock:
                    refund = self.sandbox.refunds[self.channel].get(f"{acct.mchid}/{out_refund_no}")
                    if refund is None:
                        raise _Reject(_error(404, "RESOURCE_NOT_EXISTS", "退款单不存在"))
                    return self._signed(req, acct, 200, self._refund_json(refund))
            case ("GET", ["v3", "certificates"]):
                return self._certificates(req, acct)
            case ("GET", ["v3", "bill", "tradebill"]):
                return self._bill_apply(req, acct)
            case ("GET", ["v3", "billdownload", "file"]):
                return self._bill_download(req, acct)
        return _error(404, "NOT_FOUND", f"no such API: {method} {req.path}")
