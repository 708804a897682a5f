"""The sandbox gateway's state, fault injection, notification delivery and request dispatch.

The sandbox plays the *platform* side of every channel so that paycore can be exercised over
real HTTP with real signatures, and so that everything that goes wrong in production (lost,
repeated, late or reordered notifications, 5xx answers, timeouts, forged signatures) can be
switched on from a test. This package holds what is shared by all channel simulators; each
channel's protocol lives in ``sandbox/<channel>/`` (see CONTRACT.md).

Threading model: the HTTP server handles each request on its own thread, delayed work (payer
actions, notification attempts, asynchronous refund completion) runs on a small scheduler
thread feeding a pool. All shared state is guarded by one re-entrant lock, ``Sandbox.lock``;
simulators take it around every read-modify-write of their trades.

This package must not import Django nor paycore's adapters: it is an independent
implementation of each protocol, built from the protocol reference.
"""

from __future__ import annotations

from sandbox.core.faults import (
    API_FAULTS,
    BILL_FAULTS,
    DEFAULT_DELAY_FAULT_SECONDS,
    DEFAULT_TIMEOUT_FAULT_SECONDS,
    FAULT_KINDS,
    NOTIFICATION_FAULTS,
    REVOCATION_FAULTS,
    FaultRule,
)
from sandbox.core.notifications import NOTIFY_TIMEOUT, RESERVED_HOST_SUFFIXES
from sandbox.core.simulator import SIMULATORS, ChannelSimulator
from sandbox.core.state import Sandbox
from sandbox.core.wire import (
    Disconnect,
    SandboxError,
    SandboxRequest,
    SandboxResponse,
    SimulatorUnavailable,
    case_insensitive,
)

__all__ = [
    "API_FAULTS",
    "BILL_FAULTS",
    "DEFAULT_DELAY_FAULT_SECONDS",
    "DEFAULT_TIMEOUT_FAULT_SECONDS",
    "FAULT_KINDS",
    "NOTIFICATION_FAULTS",
    "NOTIFY_TIMEOUT",
    "RESERVED_HOST_SUFFIXES",
    "REVOCATION_FAULTS",
    "SIMULATORS",
    "ChannelSimulator",
    "Disconnect",
    "FaultRule",
    "Sandbox",
    "SandboxError",
    "SandboxRequest",
    "SandboxResponse",
    "SimulatorUnavailable",
    "case_insensitive",
]
