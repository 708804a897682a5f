from __future__ import annotations

import base64

import pytest
from django.db import connection

from channels.models import ChannelAccount
from paycore import crypto
from tests.factories import make_order

NEW_KEY = "new1:" + base64.urlsafe_b64encode(b"n" * 32).decode()


def _raw(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT {column} FROM {table} WHERE id = %s", [pk])
        return cursor.fetchone()[0]


def test_encrypt_then_decrypt_returns_the_plaintext() -> None:
    token = crypto.encrypt("Room 101, 1 Example Road")
    assert token.startswith("v1:dev1:")
    assert crypto.decrypt(token) == "Room 101, 1 Example Road"


def test_a_tampered_ciphertext_is_refused() -> None:
    token = crypto.encrypt("secret")
    prefix, kid, payload = token.split(":")
    raw = bytearray(base64.urlsafe_b64decode(payload))
    raw[-1] ^= 1
    with pytest.raises(Exception):
        crypto.decrypt(f"{prefix}:{kid}:{base64.urlsafe_b64encode(bytes(raw)).decode()}")


def test_old_ciphertexts_stay_readable_after_a_new_primary_key(settings: pytest.FixtureRequest) -> None:
    old = crypto.encrypt("payer phone")
    settings.FIELD_ENCRYPTION_KEYS = f"{NEW_KEY},{settings.FIELD_ENCRYPTION_KEYS}"
    assert crypto.decrypt(old) == "payer phone"
    assert crypto.key_id_of(crypto.encrypt("x")) == "new1"


@pytest.mark.django_db
def test_order_pii_is_stored_encrypted() -> None:
    order = make_order(shipping_address="Room 101, 1 Example Road", phone="+86 138 0000 0000")
    stored = _raw("orders_order", "phone", order.pk)
    assert "+86 138" not in stored and stored.startswith("v1:")  # "+" and " " never occur in the ciphertext
    order.refresh_from_db()
    assert order.phone == "+86 138 0000 0000"


@pytest.mark.django_db
def test_channel_credentials_are_stored_encrypted() -> None:
    account = ChannelAccount.objects.create(
        channel="points", name="p", base_url="https://points.example", credentials={"shared_secret": "s3cr3t-value"}
    )
    assert "s3cr3t" not in _raw("channels_channelaccount", "credentials", account.pk)
    account.refresh_from_db()
    assert account.credentials == {"shared_secret": "s3cr3t-value"}
    assert "s3cr3t" not in repr(account.as_config())


@pytest.mark.django_db
def test_rotate_field_keys_reencrypts_under_the_new_primary_key(settings: pytest.FixtureRequest) -> None:
    from io import StringIO

    from django.core.management import call_command

    order = make_order(phone="+86 138 0000 0000")
    settings.FIELD_ENCRYPTION_KEYS = f"{NEW_KEY},{settings.FIELD_ENCRYPTION_KEYS}"
    call_command("rotate_field_keys", stdout=StringIO())
    assert crypto.key_id_of(_raw("orders_order", "phone", order.pk)) == "new1"
    settings.FIELD_ENCRYPTION_KEYS = NEW_KEY  # the old key can now be dropped
    order.refresh_from_db()
    assert order.phone == "+86 138 0000 0000"
