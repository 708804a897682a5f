"""v3 notifications: encrypted resources in a signed envelope, delivered with WeChat's retry schedule."""

from __future__ import annotations

import base64
import secrets
import string
from typing import Any

from sandbox.wechat.accounts import WechatAccount
from sandbox.wechat.common import (
    CN_TZ,
    NOTIFY_SCHEDULE,
    SIGNATURE_TYPE,
    _aead_encrypt,
    _dumps,
    _nonce,
    _random,
    _rfc3339,
    _rsa_sign,
)


class NotificationsMixin:
    """Payment and refund notifications of ``WechatSimulator``."""

    def _notify_transaction(self, trade: dict[str, Any], params: dict[str, Any]) -> None:
        acct = self._account(trade["mchid"])
        if acct is None:
            return
        resource = self._transaction_json(trade)
        if params.get("amount") is not None:
            resource["amount"]["total"] = resource["amount"]["payer_total"] = int(params["amount"])
        self._send(
            acct,
            trade["notify_url"],
            "TRANSACTION.SUCCESS",
            "支付成功",
            "transaction",
            resource,
            key=trade["out_trade_no"],
            signtest=bool(params.get("signtest")),
            bad_signature=bool(params.get("bad_signature")),
        )

    def _send(
        self,
        acct: WechatAccount,
        url: str,
        event_type: str,
        summary: str,
        original_type: str,
        resource: dict[str, Any],
        *,
        key: str,
        signtest: bool = False,
        bad_signature: bool = False,
    ) -> str:
        envelope = {
            "id": "EV-" + self.sandbox.now().astimezone(CN_TZ).strftime("%Y%m%d%H%M%S") + _random(string.digits, 8),
            "create_time": _rfc3339(self.sandbox.now()),
            "resource_type": "encrypt-resource",
            "event_type": event_type,
            "summary": summary,
            "resource": {
                "original_type": original_type,
                **_aead_encrypt(acct.apiv3_key, _dumps(resource), original_type),
            },
        }
        # Reorder the resource keys as WeChat shows them.
        res = envelope["resource"]
        envelope["resource"] = {
            "original_type": res["original_type"],
            "algorithm": res["algorithm"],
            "ciphertext": res["ciphertext"],
            "associated_data": res["associated_data"],
            "nonce": res["nonce"],
        }
        body = _dumps(envelope)
        with self.sandbox.lock:
            serial, private_key = acct.notification_key()

        def build() -> tuple[dict[str, str], bytes]:
            ts, nonce = str(int(self.sandbox.wall_now().timestamp())), _nonce()
            if signtest:
                signature = "WECHATPAY/SIGNTEST/" + base64.b64encode(secrets.token_bytes(192)).decode()
            else:
                message = f"{ts}\n{nonce}\n{body.decode()}\n" + ("sandbox-bad-signature" if bad_signature else "")
                signature = _rsa_sign(private_key, message)
            return (
                {
                    "Content-Type": "application/json",
                    "Wechatpay-Timestamp": ts,
                    "Wechatpay-Nonce": nonce,
                    "Wechatpay-Signature": signature,
                    "Wechatpay-Serial": serial,
                    "Wechatpay-Signature-Type": SIGNATURE_TYPE,
                    "Request-ID": _nonce(),
                    "User-Agent": "Mozilla/4.0",
                },
                body,
            )

        schedule = [] if signtest else NOTIFY_SCHEDULE
        return self.sandbox.notify(
            self.channel, url, build, schedule, lambda status, _answer: status in (200, 204), key=key
        )
