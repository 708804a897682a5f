"""REST apps: account creation (client credentials, webhook signing CA), OAuth2 tokens, idempotency."""

from __future__ import annotations

import base64
import secrets
import time
from datetime import timedelta
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID

from sandbox.core import SandboxRequest, SandboxResponse
from sandbox.paypal.common import (
    DEFAULT_REFUND_DELAY,
    DEFAULT_TOKEN_SECONDS,
    IDEMPOTENCY_SECONDS,
    SIGNING_CN,
    _ApiError,
    _pp_id,
    _ts,
)


class AccountsMixin:
    """Accounts, tokens and ``PayPal-Request-Id`` idempotency of ``PaypalSimulator``."""

    def create_account(self, *, notify_url: str | None, **options: Any) -> dict[str, Any]:
        base = f"{self.sandbox.current_base_url()}/paypal"
        client_id = "A" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "y")
        secret = "E" + secrets.token_urlsafe(40).replace("-", "x").replace("_", "y")
        webhook_id = _pp_id(17)
        now = self.sandbox.now()
        ca_key, leaf_key = self.sandbox.rsa_keys(2)
        ca_cn = f"paycore sandbox PayPal CA {webhook_id}"
        ca_name = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "paycore sandbox"),
                x509.NameAttribute(NameOID.COMMON_NAME, ca_cn),
            ]
        )
        ca_cert = (
            x509.CertificateBuilder()
            .subject_name(ca_name)
            .issuer_name(ca_name)
            .public_key(ca_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=3650))
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(ca_key, hashes.SHA256())
        )
        leaf_cert = (
            x509.CertificateBuilder()
            .subject_name(
                x509.Name(
                    [
                        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "PayPal, Inc."),
                        x509.NameAttribute(NameOID.COMMON_NAME, SIGNING_CN),
                    ]
                )
            )
            .issuer_name(ca_name)
            .public_key(leaf_key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .sign(ca_key, hashes.SHA256())
        )
        cert_name = f"CERT-{webhook_id.lower()}"
        leaf_pem = leaf_cert.public_bytes(serialization.Encoding.PEM)
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM).decode("ascii")
        verification = options.get("webhook_verification", "local")
        account = {
            "client_id": client_id,
            "client_secret": secret,
            "webhook_id": webhook_id,
            "notify_url": notify_url,
            "base_url": base,
            "cert_url": f"{base}/certs/{cert_name}.pem",
            "cert_name": cert_name,
            "token_expires_in": int(options.get("token_expires_in", DEFAULT_TOKEN_SECONDS)),
            "refund_delay_seconds": float(options.get("refund_delay_seconds", DEFAULT_REFUND_DELAY)),
            "report_page_size": options.get("report_page_size"),
            "token_requests": 0,
            "created_at": now,
        }
        with self.sandbox.lock:
            self._accounts[client_id] = account
            self._certs[cert_name] = leaf_pem
            self._keys[client_id] = leaf_key
        return {
            "channel": "paypal",
            "base_url": base,
            "ids": {"client_id": client_id, "webhook_id": webhook_id},
            "credentials": {"client_secret": secret},
            "options": {
                "webhook_verification": verification,
                "cert_url_allowed_prefixes": [f"{base}/certs/"],
                "trusted_ca_certificates": [ca_pem],
            },
        }

    def _token(self, req: SandboxRequest) -> SandboxResponse:
        auth = req.headers.get("Authorization", "")
        invalid = SandboxResponse.json(
            401, {"error": "invalid_client", "error_description": "Client Authentication failed"}
        )
        if not auth.startswith("Basic "):
            return invalid
        try:
            client_id, _, secret = base64.b64decode(auth[6:], validate=True).decode().partition(":")
        except (ValueError, UnicodeDecodeError):
            return invalid
        with self.sandbox.lock:
            account = self._accounts.get(client_id)
            if account is None or not secrets.compare_digest(secret, account["client_secret"]):
                return invalid
            if req.body.strip() != b"grant_type=client_credentials":
                return SandboxResponse.json(
                    400, {"error": "unsupported_grant_type", "error_description": "Grant Type is NULL"}
                )
            token = "A21AA" + secrets.token_urlsafe(48)
            expires_in = account["token_expires_in"]
            self._tokens[token] = (client_id, time.monotonic() + expires_in)
            account["token_requests"] += 1
        return SandboxResponse.json(
            200,
            {
                "scope": "https://uri.paypal.com/services/payments/payment https://uri.paypal.com/services/reporting/search/read",
                "access_token": token,
                "token_type": "Bearer",
                "app_id": "APP-80W284485P519543T",
                "expires_in": expires_in,
                "nonce": f"{_ts(self.sandbox.now())}{secrets.token_hex(8)}",
            },
        )

    def _authenticate(self, req: SandboxRequest) -> dict[str, Any]:
        auth = req.headers.get("Authorization", "")
        token = auth[7:] if auth.startswith("Bearer ") else ""
        with self.sandbox.lock:
            entry = self._tokens.get(token)
            if entry is not None and entry[1] <= time.monotonic():
                del self._tokens[token]
                entry = None
            account = self._accounts.get(entry[0]) if entry else None
        if account is None:
            raise _ApiError(
                401,
                "AUTHENTICATION_FAILURE",
                None,
                "Authentication failed due to invalid authentication credentials or a missing Authorization header.",
            )
        return account

    # --- idempotency ---------------------------------------------------------------------
    def _replay(self, account: dict[str, Any], op: str, req: SandboxRequest) -> SandboxResponse | None:
        request_id = req.headers.get("PayPal-Request-Id")
        if not request_id:
            return None
        with self.sandbox.lock:
            stored = self._idem.get((account["client_id"], op, request_id))
            if stored is None or stored[0] < time.monotonic():
                return None
            return SandboxResponse.json(stored[1], stored[2])

    def _remember(
        self, account: dict[str, Any], op: str, req: SandboxRequest, status: int, body: dict[str, Any]
    ) -> None:
        request_id = req.headers.get("PayPal-Request-Id")
        if request_id:
            expires = time.monotonic() + self.sandbox.scaled(IDEMPOTENCY_SECONDS[op])
            self._idem[(account["client_id"], op, request_id)] = (expires, status, body)
