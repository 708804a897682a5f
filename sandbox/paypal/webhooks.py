"""Webhooks: signed deliveries and the verify-webhook-signature API."""

from __future__ import annotations

import base64
import json
import uuid
import zlib
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding

from sandbox.core import SandboxRequest, SandboxResponse
from sandbox.paypal.common import WEBHOOK_SCHEDULE, _bad_request, _pp_id, _ts


class WebhooksMixin:
    """Webhooks of ``PaypalSimulator``."""

    def _webhook(self, account: dict[str, Any], event_type: str, resource_type: str, resource: Any) -> None:
        """Queue one event to the account's notify_url, signed as PayPal signs them, retried until 2xx."""
        url = account.get("notify_url")
        if not url:
            return
        event_id = f"WH-{_pp_id(8)}-{_pp_id(17)}"
        with self.sandbox.lock:
            envelope = {
                "id": event_id,
                "event_version": "1.0",
                "create_time": _ts(self.sandbox.now()),
                "resource_type": resource_type,
                "resource_version": "2.0",
                "event_type": event_type,
                "summary": f"{event_type.replace('.', ' ').title()}",
                "resource": resource(),
                "links": [
                    {
                        "href": f"{account['base_url']}/v1/notifications/webhooks-events/{event_id}",
                        "rel": "self",
                        "method": "GET",
                    }
                ],
            }
        body = json.dumps(envelope, separators=(",", ":"), ensure_ascii=False).encode("utf-8")
        client_id = account["client_id"]

        def build() -> tuple[dict[str, str], bytes]:
            transmission_id = str(uuid.uuid1())
            transmission_time = _ts(self.sandbox.wall_now())
            crc = zlib.crc32(body) & 0xFFFFFFFF
            message = f"{transmission_id}|{transmission_time}|{account['webhook_id']}|{crc}"
            key = self._keys[client_id]
            signature = key.sign(message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
            fault = self.sandbox.api_fault("paypal", f"webhook:{event_type}")
            if fault is not None and fault.kind == "bad_signature":
                signature = bytes([signature[0] ^ 0x01]) + signature[1:]
            headers = {
                "Content-Type": "application/json",
                "PAYPAL-TRANSMISSION-ID": transmission_id,
                "PAYPAL-TRANSMISSION-TIME": transmission_time,
                "PAYPAL-TRANSMISSION-SIG": base64.b64encode(signature).decode("ascii"),
                "PAYPAL-CERT-URL": account["cert_url"],
                "PAYPAL-AUTH-ALGO": "SHA256withRSA",
            }
            return headers, body

        self.sandbox.notify(
            "paypal",
            url,
            build,
            WEBHOOK_SCHEDULE,
            lambda status, _: 200 <= status < 300,
            key=f"{event_type}:{event_id}",
        )

    def _verify_webhook(self, req: SandboxRequest, account: dict[str, Any]) -> SandboxResponse:
        """Method A: check the signature over the event bytes exactly as embedded in the request."""
        try:
            fields, raw_event = _split_verify_body(req.body)
        except ValueError:
            raise _bad_request("MALFORMED_REQUEST_JSON", "The request JSON is not well formed.") from None
        missing = [
            k
            for k in ("auth_algo", "cert_url", "transmission_id", "transmission_sig", "transmission_time", "webhook_id")
            if not isinstance(fields.get(k), str)
        ]
        if missing or raw_event is None:
            raise _bad_request("MISSING_REQUIRED_PARAMETER", f"missing {missing or ['webhook_event']}")
        failure = SandboxResponse.json(200, {"verification_status": "FAILURE"})
        fault = req.fault
        if fault is not None and fault.kind == "bad_signature":
            return failure
        if fields["auth_algo"] != "SHA256withRSA" or fields["webhook_id"] != account["webhook_id"]:
            return failure
        name = fields["cert_url"].rpartition("/")[2].removesuffix(".pem")
        if fields["cert_url"] != f"{account['base_url']}/certs/{name}.pem" or name not in self._certs:
            return failure
        cert = x509.load_pem_x509_certificate(self._certs[name])
        message = (
            f"{fields['transmission_id']}|{fields['transmission_time']}|{account['webhook_id']}|"
            f"{zlib.crc32(raw_event) & 0xFFFFFFFF}"
        )
        try:
            signature = base64.b64decode(fields["transmission_sig"], validate=True)
            cert.public_key().verify(signature, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
        except (ValueError, InvalidSignature):
            return failure
        return SandboxResponse.json(200, {"verification_status": "SUCCESS"})


def _split_verify_body(body: bytes) -> tuple[dict[str, Any], bytes | None]:
    """Parse the top-level object of a verify-webhook-signature body, keeping ``webhook_event``'s
    exact bytes (PayPal checks the CRC32 of the event as embedded)."""
    text = body.decode("utf-8")
    decoder = json.JSONDecoder()
    fields: dict[str, Any] = {}
    raw_event: bytes | None = None

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    i = skip(0)
    if text[i : i + 1] != "{":
        raise ValueError("not an object")
    i = skip(i + 1)
    if text[i : i + 1] == "}":
        return fields, raw_event
    while True:
        key, i = decoder.raw_decode(text, skip(i))
        i = skip(i)
        if text[i : i + 1] != ":":
            raise ValueError("expected ':'")
        start = skip(i + 1)
        value, end = decoder.raw_decode(text, start)
        if key == "webhook_event":
            raw_event = text[start:end].encode("utf-8")
        fields[key] = value
        i = skip(end)
        if text[i : i + 1] == ",":
            i += 1
            continue
        if text[i : i + 1] == "}":
            break
        raise ValueError("expected ',' or '}'")
    return fields, raw_event
