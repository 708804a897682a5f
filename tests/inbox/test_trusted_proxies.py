"""The client address a callback's IP allowlist checks: the TCP peer, unless the peer is one of
PAYCORE_TRUSTED_PROXIES; then the right-most X-Forwarded-For address outside them."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from channels.models import ChannelAccount
from inbox.models import InboundNotification
from inbox.services import client_address

LB = "10.0.0.0/24"


@pytest.mark.parametrize(
    ("trusted", "peer", "forwarded_for", "client"),
    [
        ([], "203.0.113.7", None, "203.0.113.7"),
        ([], "10.0.0.5", "198.51.100.1", "10.0.0.5"),  # nothing trusted: the header is never read
        ([LB], "10.0.0.5", "198.51.100.1", "198.51.100.1"),  # from our balancer: its client
        ([LB], "10.0.0.5", "6.6.6.6, 198.51.100.1", "198.51.100.1"),  # the client's own claim is ignored
        ([LB], "10.0.0.5", "198.51.100.1, 10.0.0.9", "198.51.100.1"),  # two of our proxies in a row
        ([LB], "10.0.0.5", "10.0.0.8, 10.0.0.9", "10.0.0.8"),  # all ours: the left-most
        ([LB], "203.0.113.7", "198.51.100.1", "203.0.113.7"),  # a spoofed header from an untrusted peer
        ([LB], "10.0.0.5", None, "10.0.0.5"),  # no header: the peer
        ([LB], "10.0.0.5", "not-an-ip", None),  # a malformed hop: no address, no allowlist admits it
        ([LB], "10.0.0.5", "198.51.100.1:4711", "198.51.100.1"),
        (["2001:db8::/32"], "2001:db8::1", "[2001:db8:1::5]:443, 2a00::1", "2a00::1"),
        ([LB], "::ffff:10.0.0.5", "198.51.100.1", "198.51.100.1"),
        ([LB], None, "198.51.100.1", None),
    ],
)
def test_client_address(
    settings: Any, trusted: list[str], peer: str | None, forwarded_for: str | None, client: str | None
) -> None:
    settings.PAYCORE_TRUSTED_PROXIES = trusted
    assert client_address(peer, forwarded_for) == client


@pytest.fixture
def allowlisted(db: None, channel_account: Any) -> ChannelAccount:
    account = channel_account("wechat")
    ChannelAccount.objects.filter(pk=account.pk).update(callback_ip_allowlist=["198.51.100.0/24"])
    return account


def _post(account: ChannelAccount, **meta: str) -> InboundNotification:
    Client().post(f"/callbacks/wechat/{account.pk}", b"{}", content_type="application/json", **meta)
    return InboundNotification.objects.latest("pk")


def test_behind_a_trusted_balancer_the_forwarded_client_is_checked(settings: Any, allowlisted: ChannelAccount) -> None:
    settings.PAYCORE_TRUSTED_PROXIES = [LB]
    inbound = _post(allowlisted, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    # Past the allowlist: it fails only at the signature, and the client address is recorded.
    assert inbound.remote_addr == "198.51.100.1" and "allowlist" not in inbound.reject_reason
    blocked = _post(allowlisted, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="203.0.113.9")
    assert blocked.remote_addr == "203.0.113.9" and "allowlist" in blocked.reject_reason


def test_without_trusted_proxies_the_balancer_itself_is_checked(settings: Any, allowlisted: ChannelAccount) -> None:
    settings.PAYCORE_TRUSTED_PROXIES = []
    inbound = _post(allowlisted, REMOTE_ADDR="10.0.0.5", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert inbound.remote_addr == "10.0.0.5" and "allowlist" in inbound.reject_reason


def test_a_spoofed_forwarded_header_from_an_untrusted_peer_is_ignored(
    settings: Any, allowlisted: ChannelAccount
) -> None:
    settings.PAYCORE_TRUSTED_PROXIES = [LB]
    inbound = _post(allowlisted, REMOTE_ADDR="203.0.113.66", HTTP_X_FORWARDED_FOR="198.51.100.1")
    assert inbound.remote_addr == "203.0.113.66" and "allowlist" in inbound.reject_reason
    assert inbound.verification == "REJECTED" and inbound.headers["X-Forwarded-For"] == "198.51.100.1"
