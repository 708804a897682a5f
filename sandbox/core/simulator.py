"""The plug-in base of every channel simulator and the registry of channel codes."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from sandbox.core.wire import SandboxRequest, SandboxResponse

if TYPE_CHECKING:
    from sandbox.core.state import Sandbox

# Channel code -> simulator class, imported lazily so that a broken or missing simulator only
# breaks its own channel.
SIMULATORS: dict[str, str] = {
    "wechat": "sandbox.wechat.WechatSimulator",
    "alipay": "sandbox.alipay.AlipaySimulator",
    "paypal": "sandbox.paypal.PaypalSimulator",
    "points": "sandbox.points.PointsSimulator",
}


class ChannelSimulator:
    """Base of every channel simulator; one instance per channel per ``Sandbox``.

    Subclasses keep their trades in ``self.sandbox.trades[self.channel]`` (and refunds,
    accounts likewise) under ``self.sandbox.lock`` so that the trades page and ``reset`` see them.
    """

    channel: ClassVar[str]

    def __init__(self, sandbox: Sandbox) -> None:
        self.sandbox = sandbox

    # This channel's slices of the shared state (hold ``self.sandbox.lock`` while touching them).
    @property
    def _accounts(self) -> dict[str, dict[str, Any]]:
        return self.sandbox.accounts.setdefault(self.channel, {})

    @property
    def _trades(self) -> dict[str, dict[str, Any]]:
        return self.sandbox.trades.setdefault(self.channel, {})

    @property
    def _refunds(self) -> dict[str, dict[str, Any]]:
        return self.sandbox.refunds.setdefault(self.channel, {})

    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        raise NotImplementedError

    def handle(self, req: SandboxRequest) -> SandboxResponse:
        raise NotImplementedError

    def payer_action(self, payment_no: str, action: str, params: dict[str, Any]) -> dict[str, Any]:
        raise NotImplementedError

    def reset(self) -> None:
        """Drop simulator-private state (the shared dicts are cleared by the core)."""
