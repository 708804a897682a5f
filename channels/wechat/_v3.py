"""WeChat Pay API v3 transport: request signing, response verification and the error map.

``WechatBase`` holds what every WeChat operation needs: the account's ids and keys, a signed
``_send``, a verifying ``_call`` and the error mapping. Platform certificates downloaded from
``/v3/certificates`` are cached per process and account; configured ones are read from options.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, NoReturn
from urllib.parse import urlsplit

import requests
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

from channels._cache import ProcessCache, fingerprint
from channels.base import (
    AccountConfig,
    ChannelAdapter,
    ChannelRejected,
    ChannelUnavailable,
    normalize_headers,
)
from channels.wechat import _bill, _crypto

USER_AGENT = "paycore-wechat/1.0"
TIMESTAMP_WINDOW = 300  # seconds; |now - Wechatpay-Timestamp| must stay below this
CERT_REFRESH_INTERVAL = 60.0  # seconds between /v3/certificates downloads per account

# The same error is spelled with and without underscores across generations of the WeChat Pay
# docs (``ORDERNOTEXIST`` / ``ORDER_NOT_EXIST``); callers see one spelling.
_CODE_ALIASES: dict[str, str] = {
    "ORDERNOTEXIST": "ORDER_NOT_EXIST",
    "SYSTEMERROR": "SYSTEM_ERROR",
    "BANKERROR": "BANK_ERROR",
    "RULELIMIT": "RULE_LIMIT",
    "NOAUTH": "NO_AUTH",
    "NOTENOUGH": "NOT_ENOUGH",
    "ACCOUNTERROR": "ACCOUNT_ERROR",
    "ORDERCLOSED": "ORDER_CLOSED",
    "SIGNERROR": "SIGN_ERROR",
    "PARAMERROR": "PARAM_ERROR",
}
# Codes meaning "outcome unknown, try again later" whatever the HTTP status.
_RETRY_CODES = frozenset(
    {
        "SYSTEM_ERROR",
        "BANK_ERROR",
        "SERVICE_UNAVAILABLE",
        "FREQUENCY_LIMITED",
        "RATELIMIT_EXCEEDED",
        "STATEMENT_CREATING",
    }
)


class _Unverified(Exception):
    """A message failed signature verification; callers turn it into the right public error."""


@dataclass
class _PlatformKeys:
    """Platform certificates downloaded from ``/v3/certificates`` for one account, in one process.

    ``lock`` is held for the whole of a refresh, so concurrent callers wait for the one download
    in flight and then see its keys. ``attempted_at`` is set when a download *finished* (stored
    or failed) and throttles the next one; ``refreshed_at`` only when its keys were stored.
    """

    keys: dict[str, rsa.RSAPublicKey] = field(default_factory=dict)
    attempted_at: float = 0.0
    refreshed_at: float = 0.0
    lock: threading.Lock = field(default_factory=threading.Lock)


# Per process, per account: parsed keys (slots named by purpose) and downloaded platform keys.
_KEYS: ProcessCache[Any] = ProcessCache("wechat keys")
_PLATFORM: ProcessCache[_PlatformKeys] = ProcessCache("wechat platform certificates")


class WechatBase(ChannelAdapter):
    """Account access, signed transport and verification shared by the v3 and v2 operations."""

    # Overridable in tests: the clock used for signing and for the 300 s window.
    clock: Callable[[], float] = staticmethod(time.time)

    def __init__(self, config: AccountConfig, http: requests.Session | None = None) -> None:
        super().__init__(config, http)
        self._base = config.base_url.rstrip("/")

    # --- configuration ------------------------------------------------------------------------
    @property
    def _mchid(self) -> str:
        return self.config.ids["mchid"]

    @property
    def _appid(self) -> str:
        return self.config.ids["appid"]

    @property
    def _public_key_id(self) -> str | None:
        return self.config.options.get("wechatpay_public_key_id") or None

    def _merchant_key(self) -> rsa.RSAPrivateKey:
        """The merchant's private key, parsed and validated once per process and key."""
        pem = self.config.credentials["merchant_private_key"]
        return _KEYS.get(("merchant_key", self.config.account_id), fingerprint(pem), lambda: _load_private_key(pem))

    def _wechatpay_public_key(self, pem: str) -> rsa.RSAPublicKey:
        return _KEYS.get(
            ("wechatpay_public_key", self.config.account_id), fingerprint(pem), lambda: _load_public_key(pem)
        )

    def _configured_platform_keys(self) -> dict[str, rsa.RSAPublicKey]:
        certificates = self.config.options.get("platform_certificates") or {}
        return _KEYS.get(
            ("configured_platform_keys", self.config.account_id),
            fingerprint(certificates),
            lambda: _load_platform_certificates(certificates),
        )

    def _platform(self) -> _PlatformKeys:
        """This account's downloaded platform keys; a new base URL, mchid or APIv3 key starts afresh."""
        fp = fingerprint(self._base, self._mchid, self.config.credentials.get("apiv3_key", ""))
        return _PLATFORM.get(("platform", self.config.account_id), fp, _PlatformKeys)

    # --- v3 transport -------------------------------------------------------------------------
    def _send(
        self,
        method: str,
        *,
        path: str = "",
        query: str = "",
        body: Mapping[str, Any] | None = None,
        url: str | None = None,
        stream: bool = False,
    ) -> requests.Response:
        """Sign and send one v3 request; transport failures are ``ChannelUnavailable``."""
        if url is None:
            url = self._base + path + (f"?{query}" if query else "")
        data = None if body is None else json.dumps(body, ensure_ascii=False, separators=(",", ":")).encode()
        headers = {"Accept": "application/json", "User-Agent": USER_AGENT}
        if data is not None:
            headers["Content-Type"] = "application/json"
        if self._public_key_id:
            headers["Wechatpay-Serial"] = self._public_key_id
        prepared = self.http.prepare_request(requests.Request(method, url, headers=headers, data=data))
        sent = urlsplit(str(prepared.url))
        canonical = (sent.path or "/") + (f"?{sent.query}" if sent.query else "")
        sent_body = prepared.body or b""
        if not isinstance(sent_body, bytes):
            raise TypeError("request body must be bytes")
        timestamp, nonce = str(int(self.clock())), _crypto.new_nonce()
        signature = _crypto.rsa_sign(
            self._merchant_key(), _crypto.request_message(method, canonical, timestamp, nonce, sent_body)
        )
        prepared.headers["Authorization"] = _crypto.authorization(
            mchid=self._mchid,
            serial_no=self.config.ids["merchant_serial_no"],
            nonce=nonce,
            timestamp=timestamp,
            signature=signature,
        )
        # send() skips what request() would take from the environment (proxies, CA bundle).
        settings = self.http.merge_environment_settings(prepared.url, {}, stream, None, None)
        try:
            return self.http.send(prepared, timeout=self.timeout, allow_redirects=False, **settings)
        except requests.RequestException as exc:
            raise ChannelUnavailable(f"wechat {method} {canonical}: {type(exc).__name__}") from exc

    def _call(
        self, method: str, path: str, *, query: str = "", body: Mapping[str, Any] | None = None
    ) -> tuple[int, dict[str, Any]]:
        """Send, verify, decode. Returns the 2xx status and JSON (``{}`` when empty)."""
        resp = self._send(method, path=path, query=query, body=body)
        raw = resp.content
        if 200 <= resp.status_code < 300:
            try:
                self._verify(resp.headers, raw, allow_refresh=True)
            except _Unverified as exc:
                raise ChannelUnavailable(
                    f"unverifiable wechat response to {method} {path}: {exc}", code="SIGNATURE"
                ) from None
            return resp.status_code, self._json(raw) if raw else {}
        if "wechatpay-signature" in normalize_headers(resp.headers):
            try:
                self._verify(resp.headers, raw, allow_refresh=True)
            except _Unverified as exc:
                raise ChannelUnavailable(
                    f"unverifiable wechat error reply to {method} {path}: {exc}", code="SIGNATURE"
                ) from None
        self._raise_for_error(resp.status_code, raw)

    @staticmethod
    def _json(raw: bytes) -> dict[str, Any]:
        try:
            payload = json.loads(raw)
        except ValueError as exc:
            raise ChannelUnavailable("unreadable wechat JSON reply") from exc
        if not isinstance(payload, dict):
            raise ChannelUnavailable("wechat reply is not a JSON object")
        return payload

    @staticmethod
    def _raise_for_error(status: int, raw: bytes) -> NoReturn:
        """Decide on the HTTP status first, then on the (canonicalized) code (WeChat Pay v3 error codes)."""
        try:
            payload = json.loads(raw) if raw else {}
        except ValueError:
            payload = {}
        if not isinstance(payload, dict):
            payload = {}
        code = str(payload.get("code") or "")
        code = _CODE_ALIASES.get(code, code)
        message = f"wechat HTTP {status} {code}: {payload.get('message', '')}".strip()
        evidence = {**payload, "http_status": status}
        if status == 429 or status >= 500 or code in _RETRY_CODES or not code or not 400 <= status < 500:
            raise ChannelUnavailable(message, code=code, raw=evidence)
        raise ChannelRejected(message, code=code, raw=evidence)

    # --- v3 verification: Wechatpay-* headers over timestamp, nonce and the raw body ------------
    def _verify(
        self,
        headers: Mapping[str, str],
        body: bytes,
        *,
        allow_refresh: bool,
        extra_keys: Mapping[str, rsa.RSAPublicKey] | None = None,
    ) -> None:
        h = normalize_headers(headers)
        timestamp = h.get("wechatpay-timestamp")
        nonce = h.get("wechatpay-nonce")
        signature = h.get("wechatpay-signature")
        serial = h.get("wechatpay-serial")
        if not (timestamp and nonce and signature and serial):
            raise _Unverified("missing Wechatpay signature headers")
        if h.get("wechatpay-signature-type") != _crypto.SIGNATURE_TYPE:
            raise _Unverified("missing or unsupported Wechatpay-Signature-Type")
        if signature.startswith(_crypto.SIGNTEST_PREFIX):
            raise _Unverified("WECHATPAY/SIGNTEST probe")
        if not timestamp.isdigit() or abs(self.clock() - int(timestamp)) >= TIMESTAMP_WINDOW:
            raise _Unverified("Wechatpay-Timestamp outside the 300 s window")
        key = self._key_for(serial, allow_refresh=allow_refresh, extra_keys=extra_keys)
        if not _crypto.rsa_verify(key, _crypto.response_message(timestamp, nonce, body), signature):
            raise _Unverified("bad signature")

    def _key_for(
        self, serial: str, *, allow_refresh: bool, extra_keys: Mapping[str, rsa.RSAPublicKey] | None
    ) -> rsa.RSAPublicKey:
        if serial.startswith("PUB_KEY_ID_"):
            pem = self.config.options.get("wechatpay_public_key")
            if serial != self._public_key_id or not pem:
                raise _Unverified(f"unknown WeChat Pay public key {serial}")
            return self._wechatpay_public_key(pem)
        wanted = serial.upper()
        key = self._known_platform_key(wanted) or {k.upper(): v for k, v in (extra_keys or {}).items()}.get(wanted)
        if key is None and allow_refresh:
            self._refresh_platform_certificates(wanted)
            key = self._known_platform_key(wanted)
        if key is None:
            raise _Unverified(f"unknown platform certificate serial {serial}")
        return key

    def _known_platform_key(self, serial: str) -> rsa.RSAPublicKey | None:
        """A configured or already downloaded platform key (serials upper-case)."""
        return self._configured_platform_keys().get(serial) or self._platform().keys.get(serial)

    def _refresh_platform_certificates(self, wanted: str) -> None:
        """Download platform certificates unless ``wanted`` arrived meanwhile or one was just tried.

        Concurrent callers queue on the account's lock: the first downloads, the others then find
        its keys and return without a download of their own. Keys are stored before the time of
        the refresh is recorded, so no caller ever sees a "refreshed" account without its keys.
        The certificates are authenticated by AES-GCM under the APIv3 key before use, and the
        response itself must then verify with one of the known or downloaded keys.
        """
        platform = self._platform()
        with platform.lock:
            if wanted in platform.keys:
                return  # the download we waited for brought it
            if platform.attempted_at and self.clock() - platform.attempted_at < CERT_REFRESH_INTERVAL:
                return  # just tried: an unknown serial must not trigger a download per message
            try:
                downloaded = self._download_platform_certificates()
            finally:
                platform.attempted_at = self.clock()
            platform.keys.update(downloaded)
            platform.refreshed_at = self.clock()

    def _download_platform_certificates(self) -> dict[str, rsa.RSAPublicKey]:
        try:
            resp = self._send("GET", path="/v3/certificates")
        except ChannelUnavailable as exc:
            raise _Unverified(f"platform certificate download failed: {exc}") from None
        if resp.status_code != 200:
            raise _Unverified(f"platform certificate download answered HTTP {resp.status_code}")
        downloaded: dict[str, rsa.RSAPublicKey] = {}
        try:
            for item in json.loads(resp.content)["data"]:
                enc = item["encrypt_certificate"]
                if enc.get("algorithm") != _crypto.AEAD_ALGORITHM:
                    continue
                pem = _crypto.aes_gcm_decrypt(
                    self.config.credentials["apiv3_key"],
                    nonce=enc["nonce"],
                    associated_data=enc.get("associated_data") or "",
                    ciphertext_b64=enc["ciphertext"],
                )
                cert = x509.load_pem_x509_certificate(pem)
                serial = str(item["serial_no"]).upper()
                public = cert.public_key()
                if int(serial, 16) == cert.serial_number and isinstance(public, rsa.RSAPublicKey):
                    downloaded[serial] = public
        except (ValueError, KeyError, TypeError) as exc:
            raise _Unverified(f"unreadable platform certificate download: {exc}") from None
        self._verify(resp.headers, resp.content, allow_refresh=False, extra_keys=downloaded)
        return downloaded


def _load_private_key(pem: str) -> rsa.RSAPrivateKey:
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, rsa.RSAPrivateKey):
        raise ValueError("merchant_private_key must be an RSA key")
    return key


def _load_public_key(pem: str) -> rsa.RSAPublicKey:
    key = serialization.load_pem_public_key(pem.encode())
    if not isinstance(key, rsa.RSAPublicKey):
        raise _Unverified("configured WeChat Pay public key is not RSA")
    return key


def _load_platform_certificates(certificates: Mapping[str, str]) -> dict[str, rsa.RSAPublicKey]:
    keys: dict[str, rsa.RSAPublicKey] = {}
    for serial, pem in certificates.items():
        public = x509.load_pem_x509_certificate(pem.encode()).public_key()
        if isinstance(public, rsa.RSAPublicKey):
            keys[serial.upper()] = public
    return keys


def _beijing(moment: datetime) -> datetime:
    if moment.tzinfo is None:
        raise ValueError("naive datetime: WeChat times need an explicit offset")
    return moment.astimezone(_bill.BEIJING)


def _rfc3339_beijing(moment: datetime) -> str:
    """``2025-01-01T12:30:00+08:00``: seconds precision, Beijing offset."""
    return _beijing(moment).replace(microsecond=0).isoformat()


def _parse_time(text: Any) -> datetime | None:
    if not text:
        return None
    try:
        parsed = datetime.fromisoformat(str(text))
    except ValueError as exc:
        raise ChannelUnavailable(f"unreadable wechat time {text!r}") from exc
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=_bill.BEIJING)


def _parse_compact_time(text: str | None) -> datetime | None:
    if not text:
        return None
    try:
        return datetime.strptime(text, "%Y%m%d%H%M%S").replace(tzinfo=_bill.BEIJING)
    except ValueError as exc:
        raise ChannelUnavailable(f"unreadable wechat v2 time {text!r}") from exc


def _int(value: Any) -> int | None:
    """Integer fen from JSON ints or v2 decimal strings; anything else is an unreadable reply."""
    if value is None or value == "":
        return None
    if isinstance(value, bool):
        raise ChannelUnavailable(f"bad wechat amount {value!r}")
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    raise ChannelUnavailable(f"bad wechat amount {value!r}")
