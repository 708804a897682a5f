"""The gateway itself: apps and their keys, request authentication (RSA2) and signed answers."""

from __future__ import annotations

import json
from collections.abc import Mapping
from datetime import datetime
from typing import Any
from urllib.parse import parse_qsl

from sandbox.alipay.common import (
    BEIJING,
    TIME_FMT,
    TIMESTAMP_TOLERANCE,
    _ApiError,
    _digits,
    _invalid,
    _missing,
    _node_text,
    _pem_private,
    _pem_public,
    _request_sign_content,
    _rsa2_ok,
    _rsa2_sign,
    _to_yuan,
)
from sandbox.core import SandboxRequest, SandboxResponse


class GatewayMixin:
    """Accounts, authentication and answers of ``AlipaySimulator``."""

    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        app_key, platform_key = self.sandbox.rsa_keys(2)
        app_id, seller_id = "2021" + _digits(12), "2088" + _digits(12)
        with self.sandbox.lock:
            self._accounts[app_id] = {
                "app_id": app_id,
                "seller_id": seller_id,
                "notify_url": notify_url,
                "seller_email": f"merchant{seller_id[-4:]}@sandbox.example.com",
            }
            self._keys[app_id] = (app_key.public_key(), platform_key)
        return {
            "channel": self.channel,
            "ids": {"app_id": app_id, "seller_id": seller_id},
            "credentials": {"app_private_key": _pem_private(app_key)},
            "options": {"alipay_public_key": _pem_public(platform_key.public_key())},
        }

    def _read_params(self, req: SandboxRequest) -> dict[str, str]:
        pairs = parse_qsl(req.query, keep_blank_values=True)
        if req.body:
            try:
                text = req.body.decode("ascii")
            except UnicodeDecodeError:
                raise _invalid("isv.invalid-charset", "请求体必须是 URL 编码", gateway=True) from None
            pairs += parse_qsl(text, keep_blank_values=True, encoding="utf-8")
        params: dict[str, str] = {}
        for key, value in pairs:
            if key in params:
                raise _invalid("isv.invalid-parameter", f"重复的参数 {key}", gateway=True)
            params[key] = value
        return params

    def _authenticate(self, params: Mapping[str, str], *, check_time: bool = True) -> dict[str, Any]:
        """Gateway checks in the order a gateway would make them; failures are unsigned.

        ``timestamp`` must be within 15 minutes of real time for API calls; a signed cashier
        order (APP order string, page/WAP URL) is opened by the payer later, so only its
        signature counts there: its ``time_expire`` decides how long it stays payable.
        """
        for name in ("app_id", "method", "sign_type", "sign", "timestamp", "version", "charset"):
            if not params.get(name):
                raise _missing(name, gateway=True)
        account = self._accounts.get(params["app_id"])
        if account is None:
            raise _invalid("isv.invalid-app-id", "无效的AppID参数", gateway=True)
        if params["charset"].lower() not in ("utf-8", "utf8"):
            raise _invalid("isv.invalid-charset", "字符集错误", gateway=True)
        if params["version"] != "1.0":
            raise _invalid("isv.invalid-version", "版本号错误", gateway=True)
        if params["sign_type"] != "RSA2":
            raise _invalid("isv.invalid-signature-type", "签名类型错误", gateway=True)
        try:
            sent = datetime.strptime(params["timestamp"], TIME_FMT).replace(tzinfo=BEIJING)
        except ValueError:
            raise _invalid("isv.invalid-timestamp", "非法的时间戳参数", gateway=True) from None
        if check_time and abs(sent - self.sandbox.wall_now()) > TIMESTAMP_TOLERANCE:
            raise _invalid("isv.invalid-timestamp", "时间戳与网关时间相差超过15分钟(应为北京时间)", gateway=True)
        app_public, _ = self._keys[account["app_id"]]
        content = _request_sign_content(params)
        if not _rsa2_ok(app_public, content, params["sign"]):
            raise _invalid(
                "isv.invalid-signature",
                f"验签出错，建议检查签名字符串或签名私钥与应用公钥是否匹配，网关生成的验签字符串为：{content}",
                gateway=True,
            )
        return account

    @staticmethod
    def _biz(params: Mapping[str, str]) -> dict[str, Any]:
        text = params.get("biz_content")
        if not text:
            raise _missing("biz_content")
        try:
            biz = json.loads(text)
        except ValueError:
            raise _invalid("isv.invalid-parameter", "biz_content 不是合法的 JSON") from None
        if not isinstance(biz, dict):
            raise _invalid("isv.invalid-parameter", "biz_content 必须是 JSON 对象")
        return biz

    def _answer(
        self, method: str, account: Mapping[str, Any] | None, result: dict[str, Any] | _ApiError, req: SandboxRequest
    ) -> SandboxResponse:
        """Sign the node over its exact text; apply ``bad_signature`` / ``tamper_amount`` faults."""
        if isinstance(result, _ApiError):
            node, name = result.node(), "error_response" if result.gateway else None
            if result.gateway or account is None:
                return SandboxResponse.json(200, {"error_response": node})
        else:
            node, name = result, None
        name = name or method.replace(".", "_") + "_response"
        fault = req.fault
        if fault is not None and fault.kind == "tamper_amount" and "total_amount" in node:
            tampered = _to_yuan(int(fault.amount if fault.amount is not None else 1))
            for key in ("total_amount", "receipt_amount", "buyer_pay_amount", "invoice_amount"):
                if key in node:
                    node[key] = tampered
        text = _node_text(node)
        _, platform_key = self._keys[account["app_id"]]  # type: ignore[index]
        sign = _rsa2_sign(platform_key, text)
        if fault is not None and fault.kind == "bad_signature":
            sign = _rsa2_sign(platform_key, text + " ")
        body = f'{{"{name}":{text},"sign":"{sign}"}}'
        return SandboxResponse.text(200, body.encode("utf-8"), "text/html;charset=utf-8")
