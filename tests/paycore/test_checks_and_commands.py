from __future__ import annotations

import json
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from channels.models import ChannelAccount
from paycore.apikeys import api_client_for_key
from paycore.checks import check_secrets
from paycore.models import ApiClient


def test_the_development_secret_key_is_refused_when_debug_is_off(settings: Any) -> None:
    settings.DEBUG = False
    ids = {problem.id for problem in check_secrets(None)}
    assert {"paycore.E001", "paycore.E003"} <= ids


def test_real_keys_pass_the_checks(settings: Any) -> None:
    settings.DEBUG = False
    settings.SECRET_KEY = "a-real-secret-from-the-environment-0123456789"
    settings.FIELD_ENCRYPTION_KEYS = "prod1:" + "A" * 43 + "="
    assert check_secrets(None) == []


def test_a_malformed_key_ring_is_an_error(settings: Any) -> None:
    settings.DEBUG = True
    settings.FIELD_ENCRYPTION_KEYS = "nokey"
    assert [p.id for p in check_secrets(None)] == ["paycore.E002"]


@pytest.mark.django_db
def test_create_api_key_prints_a_working_key_once() -> None:
    out = StringIO()
    call_command("create_api_key", "backend", "--scopes", "orders:read,payments:read", stdout=out)
    key = out.getvalue().split("api key (shown once): ")[1].strip()
    client = api_client_for_key(key)
    assert client is not None and client.scopes == ["orders:read", "payments:read"]
    assert key not in json.dumps(list(ApiClient.objects.values()), default=str)
    with pytest.raises(CommandError, match="unknown scopes"):
        call_command("create_api_key", "other", "--scopes", "root", stdout=StringIO())


@pytest.mark.django_db
def test_configure_channel_loads_an_account_and_never_prints_secrets(tmp_path: Path) -> None:
    spec = {
        "channel": "points",
        "name": "points-main",
        "base_url": "https://points.example/api",
        "ids": {"app_id": "app-1", "key_id": "k1"},
        "credentials": {"shared_secret": "TOP-SECRET-VALUE"},
        "options": {"points_per_minor_unit": 1},
    }
    path = tmp_path / "account.json"
    path.write_text(json.dumps(spec))
    out = StringIO()
    call_command("configure_channel", str(path), stdout=out)
    assert "TOP-SECRET-VALUE" not in out.getvalue() and "shared_secret" in out.getvalue()
    account = ChannelAccount.objects.get(name="points-main")
    assert account.credentials == {"shared_secret": "TOP-SECRET-VALUE"} and account.ids["app_id"] == "app-1"
    spec["base_url"] = "https://points.example/v2"
    path.write_text(json.dumps(spec))
    call_command("configure_channel", str(path), stdout=StringIO())
    assert ChannelAccount.objects.get(name="points-main").base_url == "https://points.example/v2"


@pytest.mark.django_db
@pytest.mark.parametrize(
    "document",
    [
        "not json",
        '{"channel": "bitcoin", "name": "x", "base_url": "https://x"}',
        '{"channel": "wechat", "name": "x"}',
        '["a list"]',
        '{"channel": "wechat", "name": "x", "base_url": "https://x", "ids": []}',
    ],
)
def test_configure_channel_refuses_a_bad_document(tmp_path: Path, document: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(document)
    with pytest.raises(CommandError):
        call_command("configure_channel", str(path), stdout=StringIO())
    assert not ChannelAccount.objects.exists()


@pytest.mark.parametrize(
    ("url", "fine"),
    [
        ("https://pay.example.com", True),
        ("http://127.0.0.1:8100/wechat", True),
        ("http://localhost:8000", True),
        ("http://[::1]:8000", True),
        ("http://pay.example.com", False),
        ("http://10.0.0.5:8000", False),
        ("ftp://pay.example.com", False),
    ],
)
def test_urls_must_be_https_outside_this_machine(url: str, fine: bool) -> None:
    from paycore.checks import is_https_or_loopback

    assert is_https_or_loopback(url) is fine


def test_the_public_base_url_must_be_https_when_debug_is_off(settings: Any) -> None:
    from paycore.checks import check_public_base_url

    settings.DEBUG = False
    settings.PAYCORE_PUBLIC_BASE_URL = "http://pay.example.com"
    assert [p.id for p in check_public_base_url(None)] == ["paycore.E004"]
    settings.PAYCORE_PUBLIC_BASE_URL = "https://pay.example.com"
    assert check_public_base_url(None) == []


@pytest.mark.django_db
def test_channel_accounts_must_use_https_when_debug_is_off(settings: Any) -> None:
    from channels.checks import check_channel_urls_are_https
    from channels.services import channel_account_configure

    settings.DEBUG = False
    spec = {"channel": "wechat", "name": "live-wechat", "base_url": "http://api.mch.weixin.qq.com"}
    with pytest.raises(ValueError, match="not HTTPS"):
        channel_account_configure(spec)
    ChannelAccount.objects.create(channel="wechat", name="legacy", base_url="http://api.mch.weixin.qq.com")
    assert [p.id for p in check_channel_urls_are_https(None)] == ["paycore.E005"]
    channel_account_configure({**spec, "base_url": "https://api.mch.weixin.qq.com"})


def test_persistent_connections_off_outside_debug_is_warned(settings: Any, monkeypatch: Any) -> None:
    from paycore.checks import check_persistent_connections

    settings.DEBUG = False
    monkeypatch.setitem(settings.DATABASES["default"], "CONN_MAX_AGE", 0)
    assert [p.id for p in check_persistent_connections(None)] == ["paycore.W002"]
    monkeypatch.setitem(settings.DATABASES["default"], "CONN_MAX_AGE", 600)
    assert check_persistent_connections(None) == []
