"""The one place that turns a ChannelAccount row into a live adapter, and channel errors into
paycore's API errors (so a channel's raw error never reaches a client)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from django.conf import settings
from django.db.models import QuerySet
from django.urls import reverse

from channels.base import (
    ChannelAdapter,
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    NotSupported,
    SignatureInvalid,
)
from channels.models import ChannelAccount
from channels.registry import CHANNEL_CODES, adapter_class, adapter_for_config
from paycore.checks import is_https_or_loopback
from paycore.errors import ChannelMisconfigured, ChannelRejectedError, ChannelUnavailableError, MethodNotOffered
from paycore.prepared import PreparedQuery


def adapter_for(account: ChannelAccount) -> ChannelAdapter:
    return adapter_for_config(account.as_config())


def channel_notify_url(account: ChannelAccount) -> str:
    """The callback URL this account's channel posts notifications to (it names the account, so
    the inbox knows which keys verify the message before reading it)."""
    path = reverse("callbacks:notify", kwargs={"channel": account.channel, "account_id": account.pk})
    return settings.PAYCORE_PUBLIC_BASE_URL.rstrip("/") + path


def account_offers(account: ChannelAccount, *, method: str, currency: str) -> bool:
    """Whether this account can take ``method`` in ``currency``. An account may narrow its
    adapter's offer with options ``methods`` / ``currencies``."""
    cls = adapter_class(account.channel)
    methods = set(account.options.get("methods") or cls.methods) & set(cls.methods)
    currencies = cls.priced_currencies(account.as_config())
    return method in methods and (currencies is None or currency in currencies)


def channel_account_pick(*, channel: str, method: str, currency: str) -> ChannelAccount:
    for account in _enabled_accounts(channel=channel):
        if account_offers(account, method=method, currency=currency):
            return account
    raise MethodNotOffered(
        f"{channel}/{method} is not offered for {currency}",
        extra={"channel": channel, "method": method, "currency": currency},
    )


@PreparedQuery  # every payment picks its account: compiled once per process
def _enabled_accounts(*, channel: str) -> QuerySet[ChannelAccount]:
    return ChannelAccount.objects.filter(channel=channel, is_enabled=True).order_by("pk")


@contextmanager
def channel_call(operation: str) -> Iterator[None]:
    """Translate adapter errors into API errors with stable codes."""
    try:
        yield
    except (ChannelUnavailable, SignatureInvalid) as exc:
        raise ChannelUnavailableError(
            f"the channel did not answer {operation}; retry later", extra={"operation": operation}
        ) from exc
    except NotSupported as exc:
        raise MethodNotOffered(f"the channel does not support {operation}", extra={"operation": operation}) from exc
    except ChannelRejected as exc:
        raise ChannelRejectedError(
            f"the channel refused {operation}", extra={"operation": operation, "channel_code": exc.code}
        ) from exc
    except ChannelError as exc:  # e.g. an account whose settings the adapter cannot use
        raise ChannelMisconfigured(
            f"the channel account cannot be used for {operation}", extra={"operation": operation, "code": exc.code}
        ) from exc


def channel_account_configure(spec: dict, *, enabled: bool = True) -> tuple[ChannelAccount, bool]:
    """Create or update an account from a configure_channel JSON document."""
    if not isinstance(spec, dict):
        raise ValueError("the account document must be a JSON object")
    channel, name, base_url = spec.get("channel"), spec.get("name"), spec.get("base_url")
    if channel not in CHANNEL_CODES:
        raise ValueError(f"channel must be one of {', '.join(CHANNEL_CODES)}")
    if not name or not base_url:
        raise ValueError("name and base_url are required")
    for part in ("ids", "credentials", "options"):
        if not isinstance(spec.get(part, {}), dict):
            raise ValueError(f"{part} must be a JSON object")
    for url in (base_url, spec.get("options", {}).get("secapi_base_url") or ""):
        if url and not settings.DEBUG and not is_https_or_loopback(url):
            raise ValueError(f"{url} is not HTTPS (only a gateway on this machine may use plain HTTP)")
    allowlist = spec.get("callback_ip_allowlist", [])
    if not isinstance(allowlist, list):
        raise ValueError("callback_ip_allowlist must be a list")
    account, created = ChannelAccount.objects.update_or_create(
        name=name,
        defaults={
            "channel": channel,
            "base_url": base_url,
            "ids": spec.get("ids", {}),
            "credentials": spec.get("credentials", {}),
            "options": spec.get("options", {}),
            "callback_ip_allowlist": allowlist,
            "is_enabled": enabled,
        },
    )
    return account, created
