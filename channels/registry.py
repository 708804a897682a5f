"""Maps a channel code to its adapter class.

Adapters are imported lazily so that importing the registry never drags in every channel's
dependencies, and a module that fails to import breaks only its own channel.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING

from channels.base import AccountConfig, ChannelAdapter, ChannelError

if TYPE_CHECKING:
    import requests

_ADAPTER_PATHS: dict[str, str] = {
    "wechat": "channels.wechat.adapter.WechatAdapter",
    "alipay": "channels.alipay.adapter.AlipayAdapter",
    "paypal": "channels.paypal.adapter.PaypalAdapter",
    "points": "channels.points.adapter.PointsAdapter",
}

CHANNEL_CODES: tuple[str, ...] = tuple(_ADAPTER_PATHS)


class UnknownChannel(ChannelError):
    pass


def adapter_class(channel: str) -> type[ChannelAdapter]:
    try:
        module_path, _, name = _ADAPTER_PATHS[channel].rpartition(".")
    except KeyError:
        raise UnknownChannel(f"unknown channel {channel!r}") from None
    return getattr(import_module(module_path), name)


def adapter_for_config(config: AccountConfig, http: requests.Session | None = None) -> ChannelAdapter:
    return adapter_class(config.channel)(config, http=http)
