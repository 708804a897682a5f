"""Alipay OpenAPI gateway simulator (the platform side of the RSA2 OpenAPI gateway).

Written from the protocol reference only; it shares no code with paycore's ``channels/alipay`` adapter.

Endpoints under the ``/alipay`` prefix:

- ``POST /gateway.do`` (form body and/or query string): every API call. The RSA2 request
  signature is checked against the app's public key; answers are ``{"<method>_response": {...},
  "sign": "..."}`` signed over the node's raw text (which escapes ``/`` as ``\\/``, as some
  gateways do, so that clients must verify the text as sent). Gateway-level failures (bad
  signature, unknown app, missing parameters) come as an unsigned ``error_response``.
- ``GET /gateway.do?<signed page/wap parameters>``: the payer's browser opening the cashier;
  ``POST /gateway.do`` with ``method=alipay.trade.app.pay`` (the APP order string as body): the
  app SDK opening the cashier. Either creates the trade in ``WAIT_BUYER_PAY``; before that the
  trade does not exist and queries answer ``40004 ACQ.TRADE_NOT_EXIST``.
- ``GET /bills/<token>``: bill zip downloads (links live 30 *real* seconds).

Payer actions (``POST /_sandbox/alipay/trades/{out_trade_no}/{action}``, JSON body):

- ``open`` ``{"order_string"|"url"}``: open the cashier for a prepaid order (the APP order
  string, or the page/WAP URL from ``client_params``).
- ``pay`` ``{"order_string"|"url"?, "after_seconds"?, "amount"?, "buyer_id"?}``: pay it (opening
  it first when given the order); ``amount`` (fen) makes Alipay report a different amount.
  On a payment-code trade waiting for the password, ``pay`` is the same as ``password``.
- ``password``: the payer confirms a payment-code trade that answered ``10003``.
- ``fail``: the payment fails for good: an unpaid trade becomes ``TRADE_CLOSED``.
- ``cancel``: the payer walks away: the trade stays ``WAIT_BUYER_PAY`` (the merchant has to
  close or cancel it).
- ``expire``: ``time_expire`` passes now: an unpaid trade becomes ``TRADE_CLOSED``.

Payment-code conventions (``alipay.trade.pay``, ``scene=bar_code``): an ``auth_code`` must have
the 25–30 prefix and 16–24 digits (else ``ACQ.PAYMENT_AUTH_CODE_INVALID``); its last four digits
choose the scenario (see ``sandbox/paycode.py``: paid at once, password, password forever,
definite failures, ``20000`` with the money taken or never finishing). ``alipay.trade.cancel``
of an unpaid trade answers ``action=close``, of a paid one ``action=refund`` (a full refund whose
退款批次号/请求号 is the order number); revocation faults (``revoke_retry``: ``10000
retry_flag=Y`` without acting; ``revoke_error``: ``20000 ACQ.SYSTEM_ERROR``) apply per account
(``app_id``) or trade (``out_trade_no``).

Bills (``alipay.data.dataservice.bill.downloadurl.query``, ``bill_type=trade``): only for days
(months) that have ended by the sandbox clock, Beijing time; today, this month or later answer
``40004 isp.bill_not_exist``, as does a day without activity. The day's payments and refunds,
服务费 0.6 % (half-up to the fen) negative on payments and returned on refunds; a refund made by
cancelling a paid trade has 退款批次号/请求号 = the order number and 备注 ``交易撤销``. No 10:00
publication delay is simulated.
"""

from __future__ import annotations

import threading
from typing import Any, ClassVar

from cryptography.hazmat.primitives.asymmetric import rsa

from sandbox.alipay.bills import BillsMixin
from sandbox.alipay.common import PAGE_METHODS, _ApiError, _invalid
from sandbox.alipay.gateway import GatewayMixin
from sandbox.alipay.notifications import NotificationsMixin
from sandbox.alipay.paycode import PaycodeMixin
from sandbox.alipay.refunds import RefundsMixin
from sandbox.alipay.trades import TradesMixin
from sandbox.core import ChannelSimulator, SandboxRequest, SandboxResponse

__all__ = ["AlipaySimulator"]


class AlipaySimulator(
    GatewayMixin, TradesMixin, PaycodeMixin, RefundsMixin, BillsMixin, NotificationsMixin, ChannelSimulator
):
    """The Alipay gateway, composed of one mixin per thing the platform does."""

    channel: ClassVar[str] = "alipay"

    def __init__(self, sandbox: Any) -> None:
        super().__init__(sandbox)
        # app_id -> (app public key, Alipay private key); bill token -> (expiry, file name, zip)
        self._keys: dict[str, tuple[rsa.RSAPublicKey, rsa.RSAPrivateKey]] = {}
        self._bill_links: dict[str, tuple[float, str, bytes]] = {}
        self._seq_lock = threading.Lock()
        self._seq = 0

    def reset(self) -> None:
        self._keys.clear()
        self._bill_links.clear()

    # --- HTTP ----------------------------------------------------------------------------
    def handle(self, req: SandboxRequest) -> SandboxResponse:
        if req.path.startswith("/bills/") and req.method == "GET":
            return self._download_bill(req.path[len("/bills/") :])
        if req.path != "/gateway.do":
            return SandboxResponse.text(404, "not found")
        try:
            params = self._read_params(req)
        except _ApiError as exc:
            return self._answer("", None, exc, req)
        method = params.get("method", "")
        try:
            account = self._authenticate(params, check_time=method not in PAGE_METHODS)
            if method in PAGE_METHODS:
                trade = self._open_cashier(account, params)
                if req.method == "GET":
                    return SandboxResponse.text(200, self._cashier_html(trade), "text/html; charset=utf-8")
                return self._answer(method, account, self._trade_node(trade), req)
            biz = self._biz(params)
            handler = self._API.get(method)
            if handler is None:
                raise _invalid("isv.invalid-method", f"不存在的方法名 {method}", gateway=True)
            node = handler(self, account, params, biz)
        except _ApiError as exc:
            account = self._accounts.get(params.get("app_id", ""))
            return self._answer(method, account, exc, req)
        return self._answer(method, account, node, req)

    # API method name -> handler(self, account, params, biz) returning the response node.
    _API: ClassVar[dict[str, Any]] = {
        "alipay.trade.query": TradesMixin._api_query,
        "alipay.trade.close": TradesMixin._api_close,
        "alipay.trade.pay": PaycodeMixin._api_pay,
        "alipay.trade.refund": RefundsMixin._api_refund,
        "alipay.trade.fastpay.refund.query": RefundsMixin._api_refund_query,
        "alipay.trade.cancel": PaycodeMixin._api_cancel,
        "alipay.data.dataservice.bill.downloadurl.query": BillsMixin._api_bill_url,
    }
