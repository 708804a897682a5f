"""The one place that turns a ChannelAccount row into a live adapter, and channel errors into
paycore's API errors (so a channel's raw error never reaches a client)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from channels.base import ChannelAdapter, ChannelRejected, ChannelUnavailable, NotSupported, SignatureInvalid
from channels.models import ChannelAccount
from channels.registry import adapter_class, adapter_for_config
from paycore.errors import ChannelRejectedError, ChannelUnavailableError, MethodNotOffered


def adapter_for(account: ChannelAccount) -> ChannelAdapter:
    return adapter_for_config(account.as_config())


def account_offers(account: ChannelAccount, *, method: str, currency: str) -> bool:
    """Whether this account can take ``method`` in ``currency``. An account may narrow its
    adapter's offer with options ``methods`` / ``currencies``."""
    cls = adapter_class(account.channel)
    methods = set(account.options.get("methods") or cls.methods) & set(cls.methods)
    currencies = account.options.get("currencies") or cls.currencies
    return method in methods and (currencies is None or currency in currencies)


def channel_account_pick(*, channel: str, method: str, currency: str) -> ChannelAccount:
    for account in ChannelAccount.objects.filter(channel=channel, is_enabled=True).order_by("pk"):
        if account_offers(account, method=method, currency=currency):
            return account
    raise MethodNotOffered(f"{channel}/{method} is not offered for {currency}",
                           extra={"channel": channel, "method": method, "currency": currency})


@contextmanager
def channel_call(operation: str) -> Iterator[None]:
    """Translate adapter errors into API errors with stable codes."""
    try:
        yield
    except (ChannelUnavailable, SignatureInvalid) as exc:
        raise ChannelUnavailableError(f"the channel did not answer {operation}; retry later",
                                      extra={"operation": operation}) from exc
    except NotSupported as exc:
        raise MethodNotOffered(f"the channel does not support {operation}", extra={"operation": operation}) from exc
    except ChannelRejected as exc:
        raise ChannelRejectedError(f"the channel refused {operation}",
                                   extra={"operation": operation, "channel_code": exc.code}) from exc
