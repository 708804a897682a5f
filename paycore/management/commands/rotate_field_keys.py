"""Re-encrypt every encrypted field under the primary key, so old keys can be dropped."""

from __future__ import annotations

from typing import Any

from django.apps import apps
from django.core.management.base import BaseCommand
from django.db import models, transaction

from paycore.fields import EncryptedJSONField, EncryptedTextField


def encrypted_fields() -> list[tuple[type[models.Model], list[str]]]:
    """Every concrete model with encrypted columns, found through the app registry, so a new
    encrypted field is rotated without anyone remembering to list it here."""
    found = []
    for model in apps.get_models():
        names = [f.name for f in model._meta.concrete_fields if isinstance(f, EncryptedTextField | EncryptedJSONField)]
        if names:
            found.append((model, names))
    return found


class Command(BaseCommand):
    help = "Re-encrypt encrypted fields with the first key of FIELD_ENCRYPTION_KEYS."

    def handle(self, *args: Any, **options: Any) -> None:
        for model, fields in encrypted_fields():
            count = 0
            for pk in model._default_manager.values_list("pk", flat=True).iterator():
                with transaction.atomic():
                    row = model._default_manager.select_for_update(no_key=True).get(pk=pk)
                    row.save(update_fields=fields)  # decrypts on load, encrypts with the primary key on save
                count += 1
            self.stdout.write(f"{model.__name__}: {count} rows re-encrypted")
