"""AES-256-GCM field encryption with a key ring, so keys can rotate without downtime.

Ciphertext format (text, safe for any column): ``v1:<key id>:<base64url(nonce || ciphertext+tag)>``.
The key id is also bound as associated data, so a ciphertext cannot be replayed under another key.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from functools import lru_cache

from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from django.conf import settings

_PREFIX = "v1"


class EncryptionKeyError(Exception):
    pass


@dataclass(frozen=True)
class KeyRing:
    primary_id: str
    keys: dict[str, bytes]

    @classmethod
    def parse(cls, spec: str) -> KeyRing:
        keys: dict[str, bytes] = {}
        primary = ""
        for item in (part.strip() for part in spec.split(",")):
            if not item:
                continue
            kid, sep, encoded = item.partition(":")
            if not sep or not kid or ":" in encoded:
                raise EncryptionKeyError("FIELD_ENCRYPTION_KEYS entries look like 'kid:base64key'")
            key = base64.urlsafe_b64decode(encoded + "=" * (-len(encoded) % 4))
            if len(key) != 32:
                raise EncryptionKeyError(f"key {kid!r} must be 32 bytes, got {len(key)}")
            keys[kid] = key
            primary = primary or kid
        if not keys:
            raise EncryptionKeyError("FIELD_ENCRYPTION_KEYS is empty")
        return cls(primary_id=primary, keys=keys)


@lru_cache(maxsize=4)
def _ring_for(spec: str) -> KeyRing:
    return KeyRing.parse(spec)


def key_ring() -> KeyRing:
    return _ring_for(settings.FIELD_ENCRYPTION_KEYS)


def encrypt(plaintext: str) -> str:
    ring = key_ring()
    nonce = os.urandom(12)
    sealed = AESGCM(ring.keys[ring.primary_id]).encrypt(nonce, plaintext.encode(), ring.primary_id.encode())
    return f"{_PREFIX}:{ring.primary_id}:{base64.urlsafe_b64encode(nonce + sealed).decode()}"


def decrypt(token: str) -> str:
    _, kid, payload = _split(token)
    ring = key_ring()
    try:
        key = ring.keys[kid]
    except KeyError:
        raise EncryptionKeyError(f"no key {kid!r} in FIELD_ENCRYPTION_KEYS") from None
    raw = base64.urlsafe_b64decode(payload)
    return AESGCM(key).decrypt(raw[:12], raw[12:], kid.encode()).decode()


def key_id_of(token: str) -> str:
    return _split(token)[1]


def is_encrypted(value: str) -> bool:
    return value.startswith(f"{_PREFIX}:") and value.count(":") >= 2


def _split(token: str) -> tuple[str, str, str]:
    prefix, _, rest = token.partition(":")
    kid, _, payload = rest.partition(":")
    if prefix != _PREFIX or not kid or not payload:
        raise EncryptionKeyError("not a paycore ciphertext")
    return prefix, kid, payload
