"""Alipay RSA2 signatures (SHA256withRSA, PKCS#1 v1.5) and the raw-text scanning they need.

Requests: every parameter but ``sign``, empty values dropped, sorted, ``k=v`` joined with ``&``
over raw values. Synchronous replies: the signature covers the raw text of the
``…_response`` member exactly as sent, so it is located without decoding. Notifications: every
form field but ``sign`` and ``sign_type``, empty values kept (Alipay OpenAPI, "verify the
asynchronous notification").
"""

from __future__ import annotations

import base64
import json
from collections.abc import Mapping
from urllib.parse import parse_qsl

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from channels.base import SignatureInvalid


def pem(value: str, kind: str) -> bytes:
    """Accept PEM, or the bare Base64 body Alipay's key tools print (PKCS#8 / X.509 SPKI)."""
    text = value.strip()
    if not text.startswith("-----BEGIN"):
        body = "\n".join(text[i : i + 64] for i in range(0, len(text), 64))
        text = f"-----BEGIN {kind}-----\n{body}\n-----END {kind}-----\n"
    return text.encode("ascii")


def load_private_key(value: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem(value, "PRIVATE KEY"), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise TypeError("app_private_key is not an RSA key")
    return key


def load_public_key(value: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem(value, "PUBLIC KEY"))
    if not isinstance(key, rsa.RSAPublicKey):
        raise TypeError("alipay_public_key is not an RSA key")
    return key


def signing_string(params: Mapping[str, str]) -> str:
    """The request string to sign: ``sign`` and empty values left out, ``sign_type`` kept."""
    return "&".join(f"{k}={params[k]}" for k in sorted(params) if k != "sign" and params[k] != "")


def sign(key: rsa.RSAPrivateKey, content: bytes) -> str:
    return base64.b64encode(key.sign(content, padding.PKCS1v15(), hashes.SHA256())).decode("ascii")


def verify(key: rsa.RSAPublicKey, content: bytes, signature_b64: str) -> bool:
    try:
        signature = base64.b64decode(signature_b64, validate=True)
        key.verify(signature, content, padding.PKCS1v15(), hashes.SHA256())
    except (InvalidSignature, ValueError):
        return False
    return True


def parse_form(body: bytes) -> tuple[dict[str, str], str]:
    """URL-decode a notification form in the charset it declares (also the charset that was signed).

    Repeated keys are refused: which one was signed would be ambiguous.
    """
    try:
        text = body.decode("ascii")
    except UnicodeDecodeError:
        raise SignatureInvalid("notification body is not URL-encoded") from None
    charset = "utf-8"
    for key, value in parse_qsl(text, keep_blank_values=True, encoding="latin-1"):
        if key == "charset" and value:
            charset = value.lower()
    if charset in ("gbk", "gb2312"):
        charset = "gb18030"
    try:
        pairs = parse_qsl(text, keep_blank_values=True, encoding=charset, errors="strict")
    except (LookupError, UnicodeDecodeError):
        raise SignatureInvalid(f"notification not decodable as {charset}") from None
    fields: dict[str, str] = {}
    for key, value in pairs:
        if key in fields:
            raise SignatureInvalid(f"notification repeats field {key!r}")
        fields[key] = value
    return fields, charset


def notification_string(fields: Mapping[str, str]) -> str:
    """What a notification's ``sign`` covers: every field but ``sign``/``sign_type``, empty values kept."""
    return "&".join(f"{k}={fields[k]}" for k in sorted(fields) if k not in ("sign", "sign_type"))


# --- raw JSON scanning: the signed text is the response node exactly as sent ------------------
_WS = " \t\r\n"


def _skip_ws(text: str, i: int) -> int:
    while i < len(text) and text[i] in _WS:
        i += 1
    return i


def _scan_string(text: str, i: int) -> int:
    """``text[i]`` is an opening quote; return the index after the closing one."""
    i += 1
    while i < len(text):
        ch = text[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return i + 1
        i += 1
    raise ValueError("unterminated string")


def _scan_value(text: str, i: int) -> int:
    """Return the index just past the JSON value starting at ``text[i]`` (no decoding)."""
    if i >= len(text):
        raise ValueError("value expected")
    ch = text[i]
    if ch == '"':
        return _scan_string(text, i)
    if ch in "{[":
        depth = 0
        while i < len(text):
            ch = text[i]
            if ch == '"':
                i = _scan_string(text, i)
                continue
            if ch in "{[":
                depth += 1
            elif ch in "}]":
                depth -= 1
                if depth == 0:
                    return i + 1
            i += 1
        raise ValueError("unbalanced brackets")
    j = i
    while j < len(text) and text[j] not in ",}]" + _WS:
        j += 1
    if j == i:
        raise ValueError("value expected")
    return j


def top_level_members(text: str) -> dict[str, str]:
    """Map each top-level key to the raw text of its value, as sent; duplicates are refused."""
    members: dict[str, str] = {}
    i = _skip_ws(text, 0)
    if i >= len(text) or text[i] != "{":
        raise ValueError("not a JSON object")
    i = _skip_ws(text, i + 1)
    if i < len(text) and text[i] == "}":
        return members
    while True:
        if i >= len(text) or text[i] != '"':
            raise ValueError("key expected")
        end = _scan_string(text, i)
        key = json.loads(text[i:end])
        i = _skip_ws(text, end)
        if i >= len(text) or text[i] != ":":
            raise ValueError("colon expected")
        start = _skip_ws(text, i + 1)
        end = _scan_value(text, start)
        if key in members:
            raise ValueError(f"duplicate member {key!r}")
        members[key] = text[start:end]
        i = _skip_ws(text, end)
        if i < len(text) and text[i] == ",":
            i = _skip_ws(text, i + 1)
            continue
        if i < len(text) and text[i] == "}":
            if _skip_ws(text, i + 1) != len(text):
                raise ValueError("trailing data")
            return members
        raise ValueError("comma or closing brace expected")
