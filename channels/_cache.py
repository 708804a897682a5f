"""Per-process caches for the adapters' hot path: parsed keys and certificates, pooled HTTP
sessions, and per-account protocol state (WeChat platform certificates, PayPal tokens).

Adapters are built per call, so anything expensive to build (an RSA private key loaded with
full validation costs tens of milliseconds) lives here instead, in one slot per account and
purpose. Each slot remembers the *fingerprint* of what it was built from (credentials, options,
base URL): when an account's values change, the next call sees another fingerprint and builds
afresh, so rotating a key needs no restart.

Fingerprints are HMAC-SHA256 under a random per-process key, so they say nothing about the
secrets they cover outside this process. Nothing here logs or prints a cached value: ``repr``
shows only the cache's name and size.

Caches never cross a ``fork`` (gunicorn and Celery prefork workers): a child starts with empty
caches and fresh locks, both through ``os.register_at_fork`` and by checking ``os.getpid()`` on
every access (a lock held by another thread at fork time would otherwise stay held forever).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import secrets
import threading
import weakref
from collections.abc import Callable, Hashable
from functools import lru_cache
from typing import Any, Generic, TypeVar

_V = TypeVar("_V")
_SALT = secrets.token_bytes(32)


def fingerprint(*values: Any) -> str:
    """A short, salted digest of ``values`` (JSON-able: strings, numbers, dicts, lists)."""
    strings = _as_strings(values)
    if strings is not None:
        return _fingerprint_of_strings(strings)  # every signed call asks again for the same key
    return _digest(values)


def _as_strings(values: tuple[Any, ...]) -> tuple[str, ...] | None:
    """``values`` spelled as strings alone when they are strings and flat dicts of strings (a
    WeChat account's platform certificates by serial), each dict tagged with its size, so that
    no two different ``values`` spell the same; None for anything else. Digesting the
    certificates as JSON on every callback cost 0.1 ms of a callback's ~2.5 ms of CPU."""
    spelled: list[str] = []
    for value in values:
        if isinstance(value, str):
            spelled += ("s", value)
        elif isinstance(value, dict) and all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
            spelled.append(f"d{len(value)}")
            for key in sorted(value):
                spelled += (key, value[key])
        else:
            return None
    return tuple(spelled)


@lru_cache(maxsize=1024)
def _fingerprint_of_strings(values: tuple[str, ...]) -> str:
    return _digest(values)


def _digest(values: tuple[Any, ...]) -> str:
    data = json.dumps(values, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hmac.new(_SALT, data.encode("utf-8"), hashlib.sha256).hexdigest()[:32]


class ProcessCache(Generic[_V]):
    """One value per slot (e.g. ``("wechat.merchant_key", account_id)``), rebuilt when the slot's
    fingerprint changes. Each value is built once per process even when many threads ask at once:
    the others wait for it (per slot, so one slow account never blocks another)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._reset()
        _after_fork.add(self)

    def _reset(self) -> None:
        self._pid = os.getpid()
        self._lock = threading.Lock()
        self._entries: dict[Hashable, tuple[str, _V]] = {}
        self._slot_locks: dict[Hashable, threading.Lock] = {}

    def _guard(self) -> None:
        if self._pid != os.getpid():  # forked without the at-fork hook (should not happen)
            self._reset()

    def get(self, slot: Hashable, fp: str, build: Callable[[], _V]) -> _V:
        self._guard()
        with self._lock:
            entry = self._entries.get(slot)
            if entry is not None and entry[0] == fp:
                return entry[1]
            slot_lock = self._slot_locks.setdefault(slot, threading.Lock())
        with slot_lock:
            with self._lock:
                entry = self._entries.get(slot)
                if entry is not None and entry[0] == fp:
                    return entry[1]  # built by the thread we waited for
            value = build()  # outside the cache-wide lock: other slots stay available
            with self._lock:
                self._entries[slot] = (fp, value)
            return value

    def peek(self, slot: Hashable, fp: str) -> _V | None:
        """The cached value if it was built from ``fp``; never builds."""
        self._guard()
        with self._lock:
            entry = self._entries.get(slot)
            return entry[1] if entry is not None and entry[0] == fp else None

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)

    def __repr__(self) -> str:  # never the values: they may be keys
        return f"<ProcessCache {self.name!r}: {len(self._entries)} entries>"


class _AfterFork:
    """Resets every cache in a forked child."""

    def __init__(self) -> None:
        self._caches: weakref.WeakSet[Any] = weakref.WeakSet()
        os.register_at_fork(after_in_child=self._reset_all)

    def add(self, cache: Any) -> None:
        self._caches.add(cache)

    def _reset_all(self) -> None:
        for cache in list(self._caches):
            cache._reset()


_after_fork = _AfterFork()


def reset_after_fork(obj: Any) -> None:
    """Register an object whose ``_reset()`` must run in a forked child (locks, caches)."""
    _after_fork.add(obj)
