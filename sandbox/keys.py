"""Where simulator accounts get their RSA keys: fresh ones by default, or a reusable pool (tests).

Every account the sandbox creates needs RSA-2048 keys (WeChat 3, Alipay 2, PayPal 2), and each
takes ~0.2 s of CPU to generate. A long test suite creates hundreds of accounts, so it hands the
gateway a ``KeyPool``: a few keys generated once and then handed out again, round robin. Keys
handed out consecutively are distinct until the pool wraps, so the keys of one account always
differ from each other (and from those of the accounts created just before it). Keys repeat
across accounts far apart in time, which is harmless for tests and wrong for anything else:
without a pool (``python -m sandbox``, scripts/run.sh) every key is generated fresh.
"""

from __future__ import annotations

import threading

from cryptography.hazmat.primitives.asymmetric import rsa

KEY_SIZE = 2048
PUBLIC_EXPONENT = 65537
# The most keys one account takes at once (WeChat: merchant, platform certificate, public key).
MAX_KEYS_PER_ACCOUNT = 3


def generate_rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=KEY_SIZE)


class FreshKeys:
    """The default key source: every key is generated when asked for."""

    def rsa_keys(self, n: int) -> list[rsa.RSAPrivateKey]:
        return [generate_rsa_key() for _ in range(n)]


class KeyPool:
    """``size`` RSA keys, generated on first use (or all at once with ``fill()``), then reused.

    ``rsa_keys(n)`` returns the next ``n`` keys of the cycle, so they are pairwise distinct as
    long as ``n <= size``. Thread-safe; share one pool between gateways of a test session.
    """

    def __init__(self, size: int = 24) -> None:
        if size < MAX_KEYS_PER_ACCOUNT:
            raise ValueError(f"a key pool needs at least {MAX_KEYS_PER_ACCOUNT} keys")
        self.size = size
        self.handed_out = 0
        self._keys: list[rsa.RSAPrivateKey] = []
        self._lock = threading.Lock()

    def rsa_keys(self, n: int) -> list[rsa.RSAPrivateKey]:
        if n > self.size:
            raise ValueError(f"{n} distinct keys asked of a pool of {self.size}")
        with self._lock:
            out = []
            for _ in range(n):
                index = self.handed_out % self.size
                if index == len(self._keys):  # still filling: the first round generates
                    self._keys.append(generate_rsa_key())
                out.append(self._keys[index])
                self.handed_out += 1
            return out

    def fill(self) -> KeyPool:
        """Generate every key now (e.g. before timing something)."""
        with self._lock:
            while len(self._keys) < self.size:
                self._keys.append(generate_rsa_key())
        return self
