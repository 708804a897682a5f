"""The sandbox gateway: an independent, in-memory simulator of every channel's platform side.

See CONTRACT.md. Importing this package imports nothing from Django or paycore's adapters.
"""

from sandbox.core import (
    ChannelSimulator,
    FaultRule,
    Sandbox,
    SandboxError,
    SandboxRequest,
    SandboxResponse,
)
from sandbox.keys import KeyPool

__all__ = ["ChannelSimulator", "FaultRule", "KeyPool", "Sandbox", "SandboxError", "SandboxRequest", "SandboxResponse"]
