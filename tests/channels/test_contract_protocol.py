"""The helpers of the adapter contract (channels/base.py) every adapter shares."""

from __future__ import annotations

import pytest

from channels.base import ChannelUnavailable, Headers, TradeStatus, map_status, normalize_headers

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
