"""WeChat Pay signatures and payload encryption (API v3 signing, verification, client invoke
parameters and AEAD_AES_256_GCM resources; API v2 MD5 / HMAC-SHA256 signatures).

Pure functions over bytes and keys, no I/O, so the protocol tests can pin them with the doc's
vectors. All RSA and AES work goes through ``cryptography``; shared-secret digests are compared
with ``hmac.compare_digest``.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import secrets
from collections.abc import Mapping

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

AUTH_SCHEME = "WECHATPAY2-SHA256-RSA2048"
SIGNATURE_TYPE = "WECHATPAY2-SHA256-RSA2048"
SIGNTEST_PREFIX = "WECHATPAY/SIGNTEST/"
AEAD_ALGORITHM = "AEAD_AES_256_GCM"


def new_nonce() -> str:
    """32 upper-case hex characters, the customary v3 nonce (also fine for v2 ``nonce_str``)."""
    return secrets.token_hex(16).upper()


# --- v3 request signing -----------------------------------------------------------------------


def request_message(method: str, canonical_url: str, timestamp: str, nonce: str, body: bytes) -> bytes:
    """The five-line string to sign. ``body`` is the exact bytes sent (empty for GET)."""
    head = f"{method.upper()}\n{canonical_url}\n{timestamp}\n{nonce}\n".encode()
    return head + body + b"\n"


def rsa_sign(private_key: rsa.RSAPrivateKey, message: bytes) -> str:
    """Base64(RSASSA-PKCS1-v1_5(SHA-256)) - used for requests and client invoke parameters."""
    signature = private_key.sign(message, padding.PKCS1v15(), hashes.SHA256())
    return base64.b64encode(signature).decode("ascii")


def authorization(*, mchid: str, serial_no: str, nonce: str, timestamp: str, signature: str) -> str:
    return (
        f'{AUTH_SCHEME} mchid="{mchid}",nonce_str="{nonce}",signature="{signature}",'
        f'timestamp="{timestamp}",serial_no="{serial_no}"'
    )


# --- v3 response / notification verification -------------------------------------------------


def response_message(timestamp: str, nonce: str, body: bytes) -> bytes:
    """The three-line string to verify over the raw body as received."""
    return f"{timestamp}\n{nonce}\n".encode() + body + b"\n"


def rsa_verify(public_key: rsa.RSAPublicKey, message: bytes, signature_b64: str) -> bool:
    """True only for a well-formed Base64 signature that verifies; SIGNTEST probes never do."""
    if signature_b64.startswith(SIGNTEST_PREFIX):
        return False
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        return False
    try:
        public_key.verify(signature, message, padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        return False
    return True


# --- client invoke parameters ------------------------------------------------------------------


def app_pay_message(appid: str, timestamp: str, noncestr: str, prepay_id: str) -> bytes:
    return f"{appid}\n{timestamp}\n{noncestr}\n{prepay_id}\n".encode()


def jsapi_pay_message(appid: str, timestamp: str, nonce: str, prepay_id: str) -> bytes:
    return f"{appid}\n{timestamp}\n{nonce}\nprepay_id={prepay_id}\n".encode()


# --- AEAD_AES_256_GCM ---------------------------------------------------------------------------


def aes_gcm_decrypt(apiv3_key: str, *, nonce: str, associated_data: str, ciphertext_b64: str) -> bytes:
    """Decrypt a notification resource or platform certificate.

    The nonce and AAD are used as their UTF-8 bytes (not Base64); the ciphertext's last 16
    bytes are the tag. Raises ``ValueError`` on any authentication or format failure.
    """
    key = apiv3_key.encode("utf-8")
    if len(key) != 32:
        raise ValueError("APIv3 key must be 32 bytes")
    try:
        data = base64.b64decode(ciphertext_b64, validate=True)
        return AESGCM(key).decrypt(nonce.encode("utf-8"), data, associated_data.encode("utf-8"))
    except (binascii.Error, InvalidTag) as exc:
        raise ValueError("resource failed AEAD_AES_256_GCM authentication") from exc


# --- v2 signatures -------------------------------------------------------------------------------

V2_SIGN_TYPES = frozenset({"MD5", "HMAC-SHA256"})


def v2_string_a(params: Mapping[str, str]) -> str:
    """``k=v`` pairs sorted byte-wise by key, ``sign`` and empty values left out, raw values."""
    items = sorted((k, v) for k, v in params.items() if k != "sign" and v != "")
    return "&".join(f"{k}={v}" for k, v in items)


def v2_sign(params: Mapping[str, str], api_key: str, sign_type: str) -> str:
    message = f"{v2_string_a(params)}&key={api_key}".encode()
    if sign_type == "MD5":
        return hashlib.md5(message, usedforsecurity=False).hexdigest().upper()
    if sign_type == "HMAC-SHA256":
        return hmac.new(api_key.encode(), message, hashlib.sha256).hexdigest().upper()
    raise ValueError(f"unsupported v2 sign_type {sign_type!r}")


def v2_verify(params: Mapping[str, str], api_key: str, sign_type: str) -> bool:
    received = params.get("sign", "")
    if not received:
        return False
    expected = v2_sign(params, api_key, sign_type)
    return hmac.compare_digest(expected.encode(), received.upper().encode())
