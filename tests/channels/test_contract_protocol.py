"""The helpers every adapter shares: the contract's status mapper and header view, the
per-process caches, and the pooled session and timeouts each account gets from the registry."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

from channels._cache import ProcessCache, fingerprint
from channels.base import (
    DEFAULT_TIMEOUT,
    OPERATIONS,
    AccountConfig,
    ChannelAdapter,
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    Headers,
    NotSupported,
    RevokeResult,
    SignatureInvalid,
    TradeStatus,
    map_status,
    normalize_headers,
)
from channels.registry import adapter_class, adapter_for_config

TABLE = {"SUCCESS": TradeStatus.PAID, "NOTPAY": TradeStatus.NOT_PAID}


def test_known_status_maps_through_the_table() -> None:
    assert map_status(TABLE, "SUCCESS", what="trade_state") is TradeStatus.PAID


@pytest.mark.parametrize("value", ["PAID_MAYBE", "success", "", None, 1, ["SUCCESS"], {"SUCCESS": 1}])
def test_unknown_status_raises_unavailable_instead_of_defaulting(value: object) -> None:
    with pytest.raises(ChannelUnavailable, match="unknown trade_state") as caught:
        map_status(TABLE, value, what="trade_state", raw={"trade_state": value}, code="UNKNOWN")
    assert caught.value.code == "UNKNOWN" and caught.value.raw == {"trade_state": value}


@pytest.mark.parametrize(
    "name", ["Wechatpay-Signature", "wechatpay-signature", "WECHATPAY-SIGNATURE", "HTTP_WECHATPAY_SIGNATURE"]
)
def test_headers_are_read_case_insensitively_in_any_spelling(name: str) -> None:
    headers = normalize_headers({name: "sig", "Content-Type": "application/json"})
    assert headers["Wechatpay-Signature"] == headers["http_wechatpay_signature"] == "sig"
    assert headers.get("wechatpay-serial") is None
    assert "wechatpay-signature" in headers and set(headers) == {"wechatpay-signature", "content-type"}


def test_first_spelling_of_a_header_wins_and_normalizing_twice_is_a_no_op() -> None:
    headers = normalize_headers({"X-Nonce": "first", "HTTP_X_NONCE": "second"})
    assert headers["x-nonce"] == "first"
    assert normalize_headers(headers) is headers and isinstance(headers, Headers)


def test_header_repr_never_shows_values() -> None:
    assert "secret-signature" not in repr(normalize_headers({"X-Signature": "secret-signature"}))


# --- per-process caches ---------------------------------------------------------------------------
def test_process_cache_reuses_a_value_until_its_fingerprint_changes() -> None:
    cache: ProcessCache[object] = ProcessCache("test")
    built: list[str] = []

    def build(tag: str) -> Callable[[], object]:
        return lambda: built.append(tag) or object()

    first = cache.get(("k", 1), fingerprint("secret-a"), build("a"))
    assert cache.get(("k", 1), fingerprint("secret-a"), build("again")) is first
    rotated = cache.get(("k", 1), fingerprint("secret-b"), build("b"))
    assert rotated is not first and built == ["a", "b"]
    assert cache.get(("k", 2), fingerprint("secret-a"), build("other account")) is not first
    assert "secret" not in repr(cache) and len(cache) == 2


def test_process_cache_builds_once_while_many_threads_ask() -> None:
    cache: ProcessCache[object] = ProcessCache("test")
    calls: list[int] = []
    start = threading.Barrier(8)

    def slow_build() -> object:
        calls.append(1)
        time.sleep(0.2)  # every other thread arrives while this build is in flight
        return object()

    def ask(_: int) -> object:
        start.wait()
        return cache.get("slot", "fp", slow_build)

    with ThreadPoolExecutor(max_workers=8) as pool:
        values = list(pool.map(ask, range(8)))
    assert len(calls) == 1 and all(v is values[0] for v in values)


def test_fingerprints_are_salted_digests_not_the_values() -> None:
    fp = fingerprint({"merchant_private_key": "-----BEGIN PRIVATE KEY-----abc"})
    assert "PRIVATE" not in fp and len(fp) == 32
    assert fp == fingerprint({"merchant_private_key": "-----BEGIN PRIVATE KEY-----abc"}) != fingerprint("abc")


def test_fingerprints_of_strings_and_flat_dicts_tell_every_spelling_apart() -> None:
    spellings = [
        ("a", "b"),
        ("ab",),
        ({"a": "b"},),
        ({"a": "b", "c": "d"},),
        ({"a": "b"}, "c", "d"),
        ({"a": "b"}, {"c": "d"}),
        ({"a": "x"},),
        ({"a": ["b"]},),  # not flat: digested as JSON
    ]
    prints = [fingerprint(*values) for values in spellings]
    assert len(set(prints)) == len(spellings)
    assert fingerprint({"c": "d", "a": "b"}) == fingerprint({"a": "b", "c": "d"})  # the order of keys aside


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_a_forked_child_starts_with_empty_caches_and_a_free_lock() -> None:
    cache: ProcessCache[str] = ProcessCache("test")
    cache.get("slot", "fp", lambda: "parent value")
    cache._lock.acquire()  # as if another thread held it at fork time
    try:
        pid = os.fork()
        if pid == 0:  # the child: exit code 0 only if the cache is empty and usable
            ok = len(cache) == 0 and cache.get("slot", "fp", lambda: "child value") == "child value"
            os._exit(0 if ok else 1)
    finally:
        cache._lock.release()
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
    assert cache.get("slot", "fp", lambda: "rebuilt") == "parent value"


# --- pooled sessions and timeouts -------------------------------------------------------------------
def _config(account_id: int = 501, **options: Any) -> AccountConfig:
    return AccountConfig(
        channel="points",
        account_id=account_id,
        base_url="https://points.example.test",
        ids={"app_id": "app", "key_id": "k1"},
        credentials={"shared_secret": "s" * 32},
        options=options,
    )


def test_adapters_of_one_account_share_one_pooled_session() -> None:
    first, second = adapter_for_config(_config()), adapter_for_config(_config())
    assert first is not second and first.http is second.http
    assert adapter_for_config(_config(account_id=502)).http is not first.http
    assert adapter_for_config(_config(pool_size=3)).http is not first.http  # pool options changed
    pool = first.http.get_adapter("https://points.example.test/v1")
    assert isinstance(pool, HTTPAdapter) and pool.max_retries.total == 0  # retries are the caller's


def test_an_explicit_session_wins_over_the_pool() -> None:
    mine = requests.Session()
    assert adapter_for_config(_config(), http=mine).http is mine


def test_timeouts_come_from_the_account_options() -> None:
    assert adapter_for_config(_config()).timeout == DEFAULT_TIMEOUT
    assert adapter_for_config(_config(connect_timeout=1.5, read_timeout=7)).timeout == (1.5, 7.0)


@pytest.mark.parametrize("options", [{"connect_timeout": 0}, {"read_timeout": "10"}, {"read_timeout": True}])
def test_unusable_timeouts_are_a_configuration_error(options: dict[str, Any]) -> None:
    with pytest.raises(ChannelError) as caught:
        adapter_for_config(_config(**options))
    assert caught.value.code == "CONFIG"


# --- the contract's last line of defence ------------------------------------------------------------
class _Sloppy(ChannelAdapter):
    """An adapter whose reply handling trips over data it did not expect."""

    code = "sloppy"
    methods = frozenset({"app"})
    currencies = None

    def prepay(self, req: Any) -> Any:
        raise ChannelRejected("no", code="NO")

    def query(self, *, payment_no: str | None = None, channel_trade_no: str | None = None) -> Any:
        return {}["trade_state"]

    def close(self, *, payment_no: str, channel_trade_no: str | None = None) -> None:
        int("not a number")

    def refund(self, req: Any) -> Any:
        return None.amount  # type: ignore[attr-defined]

    def query_refund(self, **kwargs: Any) -> Any:
        return len(5)  # type: ignore[arg-type]

    def parse_notification(self, headers: Any, body: bytes) -> Any:
        return body.decode("ascii")[99]

    def fetch_bill(self, bill_date: Any) -> Any:
        raise KeyError("bill")


def test_stray_errors_leave_an_operation_as_unavailable_and_channel_errors_pass_untouched() -> None:
    adapter = _Sloppy(_config())
    for call in (
        lambda: adapter.query(payment_no="P1"),
        lambda: adapter.close(payment_no="P1"),
        lambda: adapter.refund(None),
        lambda: adapter.query_refund(refund_no="R1", payment_no="P1"),
        lambda: adapter.fetch_bill(None),
        lambda: adapter.settle(payment_no="P1"),  # the base settle() queries
    ):
        with pytest.raises(ChannelUnavailable) as caught:
            call()
        assert caught.value.code == "ADAPTER_ERROR"
    with pytest.raises(ChannelRejected):
        adapter.prepay(None)
    with pytest.raises(SignatureInvalid):
        adapter.parse_notification({}, b"\xff")


def test_every_adapter_operation_is_guarded() -> None:
    for channel in ("wechat", "alipay", "paypal", "points"):
        cls = adapter_class(channel)
        for name in (*OPERATIONS, "parse_notification"):
            method = getattr(cls, name, None)
            if method is not None and method is not getattr(ChannelAdapter, name, None):  # the adapter's own
                assert getattr(method, "__contained__", False), f"{channel}.{name}"


def test_every_adapter_declares_the_currencies_it_prices() -> None:
    declared = {channel: adapter_class(channel).currencies for channel in ("wechat", "alipay", "paypal", "points")}
    assert declared["wechat"] == declared["alipay"] == declared["points"] == frozenset({"CNY"})
    assert declared["paypal"] is not None and {"USD", "EUR", "JPY", "CNY"} <= declared["paypal"]
    assert not {"HUF", "TWD"} & declared["paypal"]  # PayPal refuses their decimals


def test_account_options_narrow_the_priced_currencies() -> None:
    paypal = adapter_class("paypal")
    config = AccountConfig(channel="paypal", account_id=9, base_url="https://x.test", options={"currencies": ["USD"]})
    assert paypal.priced_currencies(config) == frozenset({"USD"})
    config = AccountConfig(channel="paypal", account_id=9, base_url="https://x.test", options={"currencies": ["HUF"]})
    assert paypal.priced_currencies(config) == frozenset()


def test_channels_without_payment_codes_say_so_for_every_payment_code_operation() -> None:
    adapter = adapter_for_config(_config())  # points
    for call in (
        lambda: adapter.charge(None),  # type: ignore[arg-type]
        lambda: adapter.query_charge(payment_no="P1"),
        lambda: adapter.revoke(payment_no="P1"),
    ):
        with pytest.raises(NotSupported):
            call()
    assert RevokeResult(done=True, retry=False, refunded=True).raw == {}
