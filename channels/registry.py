"""Maps a channel code to its adapter class, and gives each account its pooled HTTP session.

Adapters are imported lazily so that importing the registry never drags in every channel's
dependencies, and a module that fails to import breaks only its own channel.

Sessions: one ``requests.Session`` per channel account per process, reused by every adapter
built for that account, so calls share kept-alive connections instead of opening one each. A
session never retries by itself (retry policy belongs to the caller) and is rebuilt when the
account's base URL or pool options change. Timeouts are not a session property in requests:
each adapter sends its account's ``(connect, read)`` timeouts with every call.
"""

from __future__ import annotations

import os
from importlib import import_module

import requests
from requests.adapters import HTTPAdapter

from channels._cache import ProcessCache, fingerprint
from channels.base import AccountConfig, ChannelAdapter, ChannelError

_ADAPTER_PATHS: dict[str, str] = {
    "wechat": "channels.wechat.adapter.WechatAdapter",
    "alipay": "channels.alipay.adapter.AlipayAdapter",
    "paypal": "channels.paypal.adapter.PaypalAdapter",
    "points": "channels.points.adapter.PointsAdapter",
}

CHANNEL_CODES: tuple[str, ...] = tuple(_ADAPTER_PATHS)

DEFAULT_POOL_SIZE = 10  # connections kept per host; a gthread worker's threads share them

_SESSIONS: ProcessCache[requests.Session] = ProcessCache("channel sessions")


class UnknownChannel(ChannelError):
    pass


def adapter_class(channel: str) -> type[ChannelAdapter]:
    try:
        module_path, _, name = _ADAPTER_PATHS[channel].rpartition(".")
    except KeyError:
        raise UnknownChannel(f"unknown channel {channel!r}") from None
    return getattr(import_module(module_path), name)


def session_for(config: AccountConfig) -> requests.Session:
    """This account's pooled session in this process (options ``pool_size``, default 10)."""
    pool_size = config.options.get("pool_size", DEFAULT_POOL_SIZE)
    if type(pool_size) is not int or not 1 <= pool_size <= 100:
        raise ChannelError("options.pool_size must be an int from 1 to 100", code="CONFIG")
    return _SESSIONS.get(
        ("session", config.channel, config.account_id),
        fingerprint(config.base_url, pool_size),
        lambda: _new_session(config.base_url, pool_size),
    )


def _new_session(base_url: str, pool_size: int) -> requests.Session:
    """The environment's proxy and CA-bundle settings are read once, for the account's base URL,
    instead of on every call: requests otherwise scans the whole environment (and looks for a
    ~/.netrc) per request, as much CPU as signing it."""
    session = requests.Session()
    session.trust_env = False
    session.proxies = requests.utils.get_environ_proxies(base_url)
    session.verify = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or True
    for prefix in ("https://", "http://"):
        session.mount(prefix, HTTPAdapter(pool_connections=4, pool_maxsize=pool_size, max_retries=0))
    return session


def adapter_for_config(config: AccountConfig, http: requests.Session | None = None) -> ChannelAdapter:
    """The account's adapter on its pooled session (``http`` overrides it, e.g. in tests)."""
    return adapter_class(config.channel)(config, http=http if http is not None else session_for(config))
