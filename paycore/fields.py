"""Model fields encrypted at rest. The database only ever sees ciphertext."""

from __future__ import annotations

import json
from typing import Any

from django.db import models

from paycore import crypto


class EncryptedTextField(models.TextField):
    """A text value stored as AES-GCM ciphertext. Not searchable or orderable by design."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> str | None:
        if value is None or value == "":
            return value
        return crypto.decrypt(value)

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str) and crypto.is_encrypted(value):
            return crypto.decrypt(value)
        return value

    def get_prep_value(self, value: Any) -> str | None:
        value = super().get_prep_value(value)
        if value is None or value == "":
            return value
        return crypto.encrypt(str(value))


class EncryptedJSONField(models.TextField):
    """A JSON document stored as one AES-GCM ciphertext (channel credentials)."""

    def from_db_value(self, value: str | None, expression: Any, connection: Any) -> Any:
        if value is None or value == "":
            return {}
        return json.loads(crypto.decrypt(value))

    def to_python(self, value: Any) -> Any:
        if isinstance(value, str):
            return json.loads(crypto.decrypt(value)) if crypto.is_encrypted(value) else json.loads(value or "{}")
        return value

    def get_prep_value(self, value: Any) -> str:
        return crypto.encrypt(json.dumps(value or {}, sort_keys=True))

    def value_to_string(self, obj: Any) -> str:  # dumpdata never exports plaintext secrets
        return "<encrypted>"
