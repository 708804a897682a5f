"""Points partner signatures: HMAC-SHA256 over a five-line string, both directions.

::

    string_to_sign = METHOD \\n PATH_AND_QUERY \\n TIMESTAMP \\n NONCE \\n hex(SHA-256(body)) \\n
    X-Signature    = hex(HMAC-SHA256(secret, string_to_sign))      # lower case

The HMAC key is the secret string's UTF-8 bytes exactly as configured. Receivers reject
``|now - timestamp| > 300 s`` and a nonce seen in the last 10 minutes, and compare in
constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import threading
from collections.abc import Callable, Mapping

from channels._cache import reset_after_fork
from channels.base import SignatureInvalid, normalize_headers

TIMESTAMP_WINDOW_SECONDS = 300
NONCE_TTL_SECONDS = 600

_NONCE_RE = re.compile(r"[0-9a-f]{16,32}")
_TIMESTAMP_RE = re.compile(r"[0-9]{1,12}")
_SIGNATURE_RE = re.compile(r"[0-9a-f]{64}")


def string_to_sign(method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    return f"{method}\n{path_and_query}\n{timestamp}\n{nonce}\n{hashlib.sha256(body).hexdigest()}\n"


def sign(secret: str, method: str, path_and_query: str, timestamp: str, nonce: str, body: bytes) -> str:
    message = string_to_sign(method, path_and_query, timestamp, nonce, body)
    return hmac.new(secret.encode("utf-8"), message.encode("utf-8"), hashlib.sha256).hexdigest()


class NonceCache:
    """Nonces seen per app id in the last ``ttl`` seconds, shared by every adapter instance.

    Adapters are built per call, so the cache lives at module level. It is per process (a
    forked worker starts empty, with a fresh lock): a replay to another worker is still caught
    by paycore's own dedupe of callback ids, and a replayed *response* cannot arrive on a
    connection we did not open.
    """

    def __init__(self, ttl: float) -> None:
        self._ttl = ttl
        self._reset()
        reset_after_fork(self)

    def _reset(self) -> None:
        self._seen: dict[tuple[str, str], float] = {}
        self._lock = threading.Lock()

    def add(self, app_id: str, nonce: str, now: float) -> bool:
        """Record a nonce; ``False`` if it was already seen within the ttl."""
        with self._lock:
            if len(self._seen) > 1024:
                self._seen = {k: exp for k, exp in self._seen.items() if exp > now}
            expires = self._seen.get((app_id, nonce))
            if expires is not None and expires > now:
                return False
            self._seen[(app_id, nonce)] = now + self._ttl
            return True


SEEN_NONCES = NonceCache(NONCE_TTL_SECONDS)


def verify(
    headers: Mapping[str, str],
    *,
    method: str,
    path_and_query: str,
    body: bytes,
    app_id: str,
    secret_for: Callable[[str], str],
    now: float,
) -> None:
    """Authenticate a response or callback from its raw bytes; raises ``SignatureInvalid``.

    ``secret_for(key_id)`` returns the secret a message names, or raises ``SignatureInvalid``.
    """
    h = normalize_headers(headers)
    try:
        got_app_id, key_id, timestamp, nonce, signature = (
            h["x-app-id"],
            h["x-key-id"],
            h["x-timestamp"],
            h["x-nonce"],
            h["x-signature"],
        )
    except KeyError as missing:
        raise SignatureInvalid(f"points: missing header {missing}", code="SIGNATURE_MISSING") from None
    if got_app_id != app_id:
        raise SignatureInvalid("points: app id mismatch", code="APP_ID_MISMATCH")
    secret = secret_for(key_id)
    if not _TIMESTAMP_RE.fullmatch(timestamp):
        raise SignatureInvalid("points: malformed timestamp", code="TIMESTAMP_INVALID")
    if abs(now - int(timestamp)) > TIMESTAMP_WINDOW_SECONDS:
        raise SignatureInvalid("points: timestamp outside the 300 s window", code="TIMESTAMP_EXPIRED")
    if not _NONCE_RE.fullmatch(nonce):
        raise SignatureInvalid("points: malformed nonce", code="NONCE_INVALID")
    if not _SIGNATURE_RE.fullmatch(signature):
        raise SignatureInvalid("points: malformed signature", code="SIGNATURE_INVALID")
    expected = sign(secret, method, path_and_query, timestamp, nonce, body)
    if not hmac.compare_digest(expected, signature):
        raise SignatureInvalid("points: signature mismatch", code="SIGNATURE_INVALID")
    # Recorded only once authentic, so forged traffic cannot burn a nonce.
    if not SEEN_NONCES.add(app_id, nonce, now):
        raise SignatureInvalid("points: nonce replayed", code="NONCE_REPLAYED")
