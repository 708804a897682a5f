"""Payer data that channels send along (openids, logon ids, emails, names, phone numbers) never
sits in plaintext where paycore keeps evidence: it is masked before it is stored. What remains
is enough for a person to recognise a payer ("o***4Xk2"), not to identify one.

Raw payloads that must stay whole to be re-verified (the inbox's stored requests) are encrypted
with the field key ring instead; see inbox.models."""

from __future__ import annotations

from typing import Any

# Keys whose values identify a payer, in any channel's payload (compared case-insensitively).
PAYER_KEYS = frozenset(
    {
        "openid",
        "sub_openid",
        "sp_openid",
        "payer_id",
        "buyer_id",
        "buyer_user_id",
        "buyer_open_id",
        "buyer_logon_id",
        "email",
        "email_address",
        "payer_email",
        "name",
        "given_name",
        "surname",
        "full_name",
        "phone",
        "phone_number",
        "national_number",
        "mobile",
        "address_line_1",
        "address_line_2",
        "admin_area_1",
        "admin_area_2",
        "postal_code",
        "member_id",
        "user_received_account",
        "用户标识",
        "买家账号",
    }
)


def mask_value(value: str, keep: int = 4) -> str:
    if len(value) <= keep:
        return "*" * len(value)
    return value[:1] + "***" + value[-keep:]


def masked(value: Any) -> Any:
    """A copy of a JSON-like document with every payer identifier masked."""
    if isinstance(value, dict):
        return {key: _masked_field(key, item) for key, item in value.items()}
    if isinstance(value, list):
        return [masked(item) for item in value]
    return value


def _masked_field(key: Any, value: Any) -> Any:
    if str(key).lower() in PAYER_KEYS:
        if isinstance(value, str):
            return mask_value(value)
        if isinstance(value, dict | list):
            return _mask_all(value)
    return masked(value)


def _mask_all(value: Any) -> Any:
    if isinstance(value, dict):
        return {key: _mask_all(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_mask_all(item) for item in value]
    return mask_value(value) if isinstance(value, str) else value
