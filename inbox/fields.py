"""The raw request bytes of a callback, encrypted at rest with the project's field key ring.

A channel's notification carries payer identifiers (openid, email, logon id), so the inbox keeps
it as AES-GCM ciphertext like every other sensitive column: an ``EncryptedTextField`` whose
Python value is ``bytes``. The bytes travel through the text cipher as Latin-1 (one code point
per byte, so any body, valid UTF-8 or not, comes back byte for byte), which also means
``manage.py rotate_field_keys`` re-encrypts the column like any other encrypted field.
"""

from __future__ import annotations

from typing import Any

from django.db import models

from paycore import crypto
from paycore.fields import EncryptedTextField


def _as_bytes(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, bytearray | memoryview):
        return bytes(value)
    if isinstance(value, str):
        return value.encode()
    raise TypeError(f"a request body is bytes, not {type(value).__name__}")


class EncryptedBytesField(EncryptedTextField):
    """Bytes stored as one AES-GCM ciphertext (text column). Not searchable, by design."""

    # For django-stubs: the Python value is bytes, not the column's text.
    _pyi_private_set_type: bytes  # type: ignore[assignment]
    _pyi_private_get_type: bytes  # type: ignore[assignment]

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> bytes | None:  # type: ignore[override]
        if value is None:
            return None
        return crypto.decrypt(value).encode("latin-1") if value else b""

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and crypto.is_encrypted(value):
            return crypto.decrypt(value).encode("latin-1")
        return value if value is None else _as_bytes(value)

    def get_prep_value(self, value: Any) -> str | None:
        value = models.Field.get_prep_value(self, value)  # resolves lazy values; no str() of bytes
        if value is None:
            return None
        return crypto.encrypt(_as_bytes(value).decode("latin-1"))

    def value_to_string(self, obj: Any) -> str:  # dumpdata never exports a plaintext body
        return "<encrypted>"
