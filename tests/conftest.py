"""Suite-wide fixtures: the sandbox gateway over real HTTP, channel accounts on it, API clients.

Tests run on PostgreSQL (config.settings.test); flows that need the sandbox to call paycore
back use pytest-django's ``live_server``.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from rest_framework.test import APIClient

from channels.models import ChannelAccount
from paycore.apikeys import api_client_create
from sandbox.client import SandboxClient
from sandbox.keys import KeyPool
from sandbox.provisioning.services import sandbox_account_provision
from sandbox.server import SandboxGateway
from tests import factories


@pytest.fixture(scope="session")
def sandbox_gateway() -> Iterator[SandboxGateway]:
    """One sandbox gateway for the whole suite, time compressed 1000x so that retry schedules
    run in milliseconds. Tests isolate themselves by creating their own accounts, whose RSA keys
    come from a small pool generated once (a fresh RSA-2048 key costs ~0.2 s; accounts need 2-3)."""
    gateway = SandboxGateway(time_factor=1000, key_pool=KeyPool(size=24)).start()
    try:
        yield gateway
    finally:
        gateway.stop()


@pytest.fixture
def gateway_client(sandbox_gateway: SandboxGateway) -> Iterator[SandboxClient]:
    client = SandboxClient(sandbox_gateway.base_url)
    try:
        yield client
    finally:
        client.reset()  # no retry of this test's notifications reaches the next test
        # ... nor the database teardown: a delivery already on the wire finishes first.
        client.wait_idle()


@pytest.fixture
def channel_account(sandbox_gateway: SandboxGateway, gateway_client: SandboxClient) -> Callable[..., ChannelAccount]:
    """``channel_account("wechat") -> ChannelAccount`` provisioned on the sandbox."""
    counter = iter(range(1, 1000))

    def make(channel: str, **extra: Any) -> ChannelAccount:
        return sandbox_account_provision(
            channel=channel, name=f"test-{channel}-{next(counter)}", sandbox_url=sandbox_gateway.base_url, **extra
        )

    return make


@pytest.fixture
def wechat_account(db: None, channel_account: Callable[..., ChannelAccount]) -> ChannelAccount:
    return channel_account("wechat")


@pytest.fixture
def merchant(db: None) -> Any:
    return factories.make_merchant()


class KeyedApiClient(APIClient):
    """Sends a fresh Idempotency-Key with every POST that does not bring its own, as a well-behaved
    app backend does; tests of the header itself pass ``HTTP_IDEMPOTENCY_KEY`` or use APIClient."""

    def generic(self, method: str, path: str, *args: Any, **extra: Any) -> Any:
        if method.upper() == "POST":
            extra.setdefault("HTTP_IDEMPOTENCY_KEY", f"test-{uuid.uuid4()}")
        return super().generic(method, path, *args, **extra)


@pytest.fixture
def api(db: None) -> APIClient:
    """An API client authenticated with a platform key holding every scope."""
    _, key = api_client_create(name="test-platform")
    client = KeyedApiClient()
    client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
    return client


@pytest.fixture
def anonymous_api() -> APIClient:
    return APIClient()


@pytest.fixture
def api_with_scopes(db: None) -> Callable[..., APIClient]:
    def make(*scopes: str, merchant: Any = None) -> APIClient:
        _, key = api_client_create(
            name=f"test-{'-'.join(scopes) or 'none'}-{merchant.pk if merchant else 0}",
            scopes=scopes,
            merchant_id=merchant.pk if merchant else None,
        )
        client = KeyedApiClient()
        client.credentials(HTTP_AUTHORIZATION=f"Bearer {key}")
        return client

    return make
