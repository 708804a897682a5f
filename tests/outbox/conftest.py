"""Merchants whose notify URL is a receiver on the sandbox gateway (real HTTP), and helpers to
read what each receiver got the way a merchant's server would."""

from __future__ import annotations

import base64
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from orders.models import Merchant
from orders.services import merchant_create
from outbox.services.consumers import consumer_register, consumer_unregister, consumers_registered
from sandbox.client import SandboxClient


@dataclass
class Receiver:
    """A merchant in paycore and the sandbox receiver playing its server."""

    merchant: Merchant
    id: str
    secret: str
    gateway: SandboxClient

    def requests(self) -> list[dict[str, Any]]:
        return self.gateway.merchant_requests(self.id)

    def bodies(self) -> list[dict[str, Any]]:
        return [json.loads(raw(r)) for r in self.requests()]

    def accepted(self) -> list[dict[str, Any]]:
        """The events the merchant's server took, deduplicated by event id as documented."""
        seen: dict[str, dict[str, Any]] = {}
        for request in self.requests():
            body = json.loads(raw(request))
            if request["answer_status"] == 200 and body["id"] not in seen:
                seen[body["id"]] = body
        return list(seen.values())


def raw(request: dict[str, Any]) -> bytes:
    return base64.b64decode(request["body_base64"])


@pytest.fixture
def receiver(db: None, gateway_client: SandboxClient) -> Callable[..., Receiver]:
    counter = iter(range(1, 1000))

    def make(code: str | None = None) -> Receiver:
        box = gateway_client.create_merchant()
        n = next(counter)
        secret = f"whsec_test_{n}_{box['id']}"
        merchant = merchant_create(
            code=code or f"wh{n}-{box['id'][-6:]}".lower(),
            name=f"Webhook merchant {n}",
            notify_url=box["notify_url"],
            webhook_secret=secret,
        )
        return Receiver(merchant=merchant, id=box["id"], secret=secret, gateway=gateway_client)

    return make


@pytest.fixture
def consumers() -> Iterator[Callable[..., None]]:
    """Register consumers for one test; the registry is put back afterwards."""
    before = consumers_registered()

    def register(name: str, handle: Callable[..., None], topics: set[str] | None = None) -> None:
        consumer_register(name, handle, topics=topics)

    yield register
    for name in set(consumers_registered()) - set(before):
        consumer_unregister(name)
    for name, consumer in before.items():
        consumer_register(name, consumer.handle, topics=consumer.topics)
