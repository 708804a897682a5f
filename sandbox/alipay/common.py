"""Constants, errors and wire helpers shared by the Alipay simulator's modules (package-internal)."""

from __future__ import annotations

import base64
import json
import re
import secrets
from collections.abc import Mapping
from datetime import datetime, timedelta, timezone
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

BEIJING = timezone(timedelta(hours=8))
TIME_FMT = "%Y-%m-%d %H:%M:%S"
RETRY_SCHEDULE = [240.0, 600.0, 600.0, 3600.0, 7200.0, 21600.0, 54000.0]  # 8 sends in ~25 h
PAYER_ACTIONS = ("open", "pay", "password", "fail", "cancel", "expire")
TIMESTAMP_TOLERANCE = timedelta(minutes=15)
BILL_LINK_SECONDS = 30.0  # real seconds, not divided by time_factor
FEE_RATE = Decimal("0.006")  # 服务费 on every payment (returned on refunds), half-up to the fen
# refund_reason of the full refund a cancel of a paid payment-code trade makes (its request number
# is the order number; the bill marks it 备注 交易撤销).
REVOCATION_REASON = "revoked"

# Products: which trade_status values notify by default, and the pay API they belong to.
PAGE_METHODS = {
    "alipay.trade.app.pay": ("QUICK_MSECURITY_PAY",),
    "alipay.trade.page.pay": ("FAST_INSTANT_TRADE_PAY",),
    "alipay.trade.wap.pay": ("QUICK_WAP_WAY", "QUICK_WAP_PAY"),  # docs vs python-alipay-sdk ⚠
}
NOTIFIES = {
    "QUICK_MSECURITY_PAY": {"TRADE_SUCCESS", "TRADE_CLOSED", "TRADE_FINISHED"},
    "FAST_INSTANT_TRADE_PAY": {"TRADE_SUCCESS"},
    "QUICK_WAP_WAY": {"TRADE_SUCCESS", "TRADE_CLOSED"},
    "QUICK_WAP_PAY": {"TRADE_SUCCESS", "TRADE_CLOSED"},
    "FACE_TO_FACE_PAYMENT": {"TRADE_SUCCESS"},
}
AMOUNT_RE = re.compile(r"\d{1,9}(\.\d{1,2})?")
AUTH_CODE_RE = re.compile(r"(2[5-9]|30)\d{14,22}")


class _ApiError(Exception):
    """An Alipay result other than success; ``gateway`` ones come as an unsigned error_response."""

    def __init__(
        self,
        code: str,
        msg: str,
        sub_code: str,
        sub_msg: str,
        *,
        gateway: bool = False,
        extra: Mapping[str, Any] | None = None,
    ) -> None:
        super().__init__(sub_msg)
        self.code, self.msg, self.sub_code, self.sub_msg = code, msg, sub_code, sub_msg
        self.gateway, self.extra = gateway, dict(extra or {})

    def node(self) -> dict[str, Any]:
        return {"code": self.code, "msg": self.msg, "sub_code": self.sub_code, "sub_msg": self.sub_msg, **self.extra}


def _biz_error(sub_code: str, sub_msg: str, **extra: Any) -> _ApiError:
    return _ApiError("40004", "Business Failed", sub_code, sub_msg, extra=extra)


def _invalid(sub_code: str, sub_msg: str, *, gateway: bool = False) -> _ApiError:
    return _ApiError("40002", "Invalid Arguments", sub_code, sub_msg, gateway=gateway)


def _missing(name: str, *, gateway: bool = False) -> _ApiError:
    return _ApiError(
        "40001",
        "Missing Required Arguments",
        f"isv.missing-{name.replace('_', '-')}",
        f"缺少必选参数 {name}",
        gateway=gateway,
    )


# --- small wire helpers (independent of paycore's adapter) ---------------------------------------
def _pem_private(key: rsa.RSAPrivateKey) -> str:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode("ascii")


def _pem_public(key: rsa.RSAPublicKey) -> str:
    return key.public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode("ascii")


def _rsa2_sign(key: rsa.RSAPrivateKey, text: str) -> str:
    return base64.b64encode(key.sign(text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())).decode()


def _rsa2_ok(key: rsa.RSAPublicKey, text: str, sign: str) -> bool:
    try:
        key.verify(base64.b64decode(sign, validate=True), text.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def _request_sign_content(params: Mapping[str, str]) -> str:
    """Request signing: everything but ``sign``, empty values dropped, ``sign_type`` kept, sorted, raw."""
    pairs = sorted((k, v) for k, v in params.items() if k != "sign" and v != "")
    return "&".join(f"{k}={v}" for k, v in pairs)


def _notify_sign_content(fields: Mapping[str, str]) -> str:
    """Notification signing: everything but ``sign`` and ``sign_type``, empty values KEPT, sorted, raw."""
    pairs = sorted((k, v) for k, v in fields.items() if k not in ("sign", "sign_type"))
    return "&".join(f"{k}={v}" for k, v in pairs)


def _to_yuan(fen: int) -> str:
    sign = "-" if fen < 0 else ""
    fen = abs(fen)
    return f"{sign}{fen // 100}.{fen % 100:02d}"


def _from_yuan(text: Any, field: str) -> int:
    if not isinstance(text, str) or not AMOUNT_RE.fullmatch(text):
        raise _invalid("isv.invalid-parameter", f"{field} 金额格式错误: {text!r}")
    whole, _, frac = text.partition(".")
    return int(whole) * 100 + int((frac + "00")[:2])


def _fee(fen: int) -> int:
    """The service fee the bill shows for an amount (rate fixed for the sandbox), half-up to the fen."""
    return int((Decimal(fen) * FEE_RATE).quantize(Decimal(1), ROUND_HALF_UP))


def _beijing(moment: datetime) -> str:
    return moment.astimezone(BEIJING).strftime(TIME_FMT)


def _digits(n: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(n))


def _node_text(node: Mapping[str, Any]) -> str:
    """The node as this gateway writes it: compact, UTF-8 text kept, ``/`` escaped as ``\\/``."""
    return json.dumps(node, ensure_ascii=False, separators=(",", ":")).replace("/", "\\/")
