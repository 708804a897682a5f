"""PayPal webhooks: transmission-signature verification and the mapping of verified events.

Local verification (PayPal REST, "Verify webhook signatures"): the signed string is
``<transmission_id>|<transmission_time>|<webhook_id>|<crc32 of the raw body>``, signed
SHA256withRSA by the certificate served at ``PAYPAL-CERT-URL``. The certificate is fetched only
from an allowed location, cached per URL, and must be valid, carry a ``*.paypal.com`` common
name and, when trust anchors are configured, chain to one of them. ``webhook_id`` is always our
own registration's id, never a value taken from the message.
"""

from __future__ import annotations

import base64
import binascii
import zlib
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote, urlsplit

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from channels._cache import ProcessCache
from channels.base import Notification, NotificationKind, SignatureInvalid, TradeState, TradeStatus
from channels.paypal._wire import money_of, parse_time, refund_state

CERT_MAX_BYTES = 64 * 1024

# Webhook event -> what the capture it carries means for the payment.
_CAPTURE_EVENTS: dict[str, TradeStatus | None] = {
    "PAYMENT.CAPTURE.COMPLETED": TradeStatus.PAID,
    "PAYMENT.CAPTURE.PENDING": TradeStatus.NOT_PAID,
    "PAYMENT.CAPTURE.DENIED": TradeStatus.FAILED,
    "PAYMENT.CAPTURE.DECLINED": TradeStatus.FAILED,
    # money was taken, then PayPal took it back (dispute): nothing to apply automatically, the
    # service queries and ops decide
    "PAYMENT.CAPTURE.REVERSED": None,
}

# Signing certificates by URL (the certificates of the PEM bundle served there), per process;
# concurrent notifications naming one URL wait for a single download.
CERTIFICATES: ProcessCache[list[x509.Certificate]] = ProcessCache("paypal signing certificates")


def crc32_of(body: bytes) -> int:
    """CRC32 (IEEE, as ``zlib.crc32``) of the raw body, unsigned."""
    return zlib.crc32(body) & 0xFFFFFFFF


def signing_string(transmission_id: str, transmission_time: str, webhook_id: str, body: bytes) -> str:
    """The string PayPal signs: ``<transmission_id>|<transmission_time>|<webhook_id>|<crc32>``."""
    return f"{transmission_id}|{transmission_time}|{webhook_id}|{crc32_of(body)}"


def cert_url_allowed(url: str, allowed_prefixes: list[str] | tuple[str, ...] = ()) -> bool:
    """Whether a webhook signing certificate may be fetched from ``url``.

    Always allowed: ``https`` on a ``*.paypal.com`` host, default port, no user info. Also allowed:
    URLs that start with one of ``allowed_prefixes`` (the sandbox gateway). URLs with user info,
    backslashes, dot segments, a query or a fragment are refused outright, so that a prefix match
    cannot be escaped.
    """
    if not isinstance(url, str) or not url or any(c in url for c in "\\\r\n\t "):
        return False
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return False
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return False
    if parts.query or parts.fragment or "?" in url or "#" in url:
        return False
    segments = unquote(parts.path).split("/")
    if any(seg in (".", "..") for seg in segments) or "%2f" in parts.path.lower():
        return False
    host = (parts.hostname or "").lower()
    if parts.scheme == "https" and host.endswith(".paypal.com") and port in (None, 443):
        return True
    return any(isinstance(p, str) and p and url.startswith(p) for p in allowed_prefixes)


def load_pem_bundle(data: bytes) -> list[x509.Certificate]:
    try:
        certs = x509.load_pem_x509_certificates(data)
    except ValueError:
        raise SignatureInvalid("certificate at PAYPAL-CERT-URL is not PEM") from None
    if not certs:
        raise SignatureInvalid("no certificate at PAYPAL-CERT-URL")
    return certs


def _issued_by(cert: x509.Certificate, issuer: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(issuer)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


def _within_validity(cert: x509.Certificate, now: datetime) -> bool:
    return cert.not_valid_before_utc <= now <= cert.not_valid_after_utc


def check_signing_certificate(
    bundle: list[x509.Certificate], trusted: list[x509.Certificate], now: datetime | None = None
) -> x509.Certificate:
    """Validate the leaf (first) certificate of the bundle served at PAYPAL-CERT-URL and return it.

    Checks validity dates, that the subject CN ends with ``.paypal.com`` and, when ``trusted`` is
    not empty, that it chains to one of them through at most three intermediates from the bundle
    (each a valid CA certificate). Raises ``SignatureInvalid`` otherwise.
    """
    now = now or datetime.now(UTC)
    leaf = bundle[0]
    if not _within_validity(leaf, now):
        raise SignatureInvalid("signing certificate is outside its validity period")
    cns = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
    cn = str(cns[0].value).lower() if cns else ""
    if not cn.endswith(".paypal.com"):
        raise SignatureInvalid(f"signing certificate CN {cn!r} is not a paypal.com name")
    if not trusted:
        return leaf
    current, intermediates = leaf, bundle[1:]
    for _ in range(4):
        if any(_within_validity(ca, now) and _issued_by(current, ca) for ca in trusted):
            return leaf
        parent = next(
            (c for c in intermediates if _is_ca(c) and _within_validity(c, now) and _issued_by(current, c)), None
        )
        if parent is None:
            break
        current = parent
    raise SignatureInvalid("signing certificate is not issued by a trusted CA")


def verify_transmission(cert: x509.Certificate, message: str, signature_b64: str) -> None:
    """RSASSA-PKCS1-v1_5 / SHA-256 over the UTF-8 signing string; raises ``SignatureInvalid``."""
    try:
        signature = base64.b64decode(signature_b64, validate=True)
    except (binascii.Error, ValueError):
        raise SignatureInvalid("PAYPAL-TRANSMISSION-SIG is not Base64") from None
    key = cert.public_key()
    if not isinstance(key, rsa.RSAPublicKey):
        raise SignatureInvalid("signing certificate does not hold an RSA key")
    try:
        key.verify(signature, message.encode("utf-8"), padding.PKCS1v15(), hashes.SHA256())
    except InvalidSignature:
        raise SignatureInvalid("webhook signature does not verify") from None


# --- verified events -> notifications --------------------------------------------------------
def event_notification(event: dict[str, Any]) -> Notification:
    """Map a verified webhook event; the payload is a hint the service confirms by querying."""
    event_id, event_type = str(event["id"]), str(event["event_type"])
    resource = event.get("resource")
    if not isinstance(resource, dict):
        resource = {}
    if event_type in _CAPTURE_EVENTS:
        return _capture_notification(event, resource, event_id, event_type)
    if event_type == "PAYMENT.CAPTURE.REFUNDED":
        refund = refund_state(resource, str(resource.get("invoice_id") or ""))
        payment_no = str(resource.get("custom_id") or "") or None
        return Notification(
            kind=NotificationKind.REFUND,
            dedupe_key=event_id,
            event_type=event_type,
            payment_no=payment_no,
            channel_trade_no=_related_order(resource),
            refund=refund,
            raw=event,
        )
    if event_type in ("CHECKOUT.ORDER.APPROVED", "CHECKOUT.PAYMENT-APPROVAL.REVERSED"):
        # approved: the service queries, and the query captures; reversed: closed unpaid
        order_id = str(resource.get("order_id") or resource.get("id") or "") or None
        units = resource.get("purchase_units") or [{}]
        unit = units[0] if isinstance(units[0], Mapping) else {}
        payment_no = str(unit.get("invoice_id") or unit.get("custom_id") or "")
        status = TradeStatus.NOT_PAID if event_type == "CHECKOUT.ORDER.APPROVED" else TradeStatus.CLOSED
        trade = TradeState(
            payment_no=payment_no,
            status=status,
            channel_trade_no=order_id,
            paid_amount=None,
            raw={"event_id": event_id, "order_id": order_id},
        )
        return Notification(
            kind=NotificationKind.PAYMENT,
            dedupe_key=event_id,
            event_type=event_type,
            payment_no=payment_no or None,
            channel_trade_no=order_id,
            trade=trade,
            raw=event,
        )
    return Notification(kind=NotificationKind.OTHER, dedupe_key=event_id, event_type=event_type, raw=event)


def _capture_notification(
    event: dict[str, Any], resource: dict[str, Any], event_id: str, event_type: str
) -> Notification:
    payment_no = str(resource.get("custom_id") or resource.get("invoice_id") or "")
    order_id = _related_order(resource)
    status = _CAPTURE_EVENTS[event_type]
    trade = None
    if status is not None:
        paid_amount = currency = paid_at = None
        if status == TradeStatus.PAID:
            paid_amount, currency = money_of(resource.get("amount"))
            paid_at = parse_time(resource.get("create_time") or resource.get("update_time"))
        trade = TradeState(
            payment_no=payment_no,
            status=status,
            channel_trade_no=order_id,
            paid_amount=paid_amount,
            currency=currency,
            paid_at=paid_at,
            raw={
                "event_id": event_id,
                "capture_id": resource.get("id"),
                "capture_status": resource.get("status"),
                "order_id": order_id,
            },
        )
    return Notification(
        kind=NotificationKind.PAYMENT,
        dedupe_key=event_id,
        event_type=event_type,
        payment_no=payment_no or None,
        channel_trade_no=order_id,
        trade=trade,
        raw=event,
    )


def _related_order(resource: Mapping[str, Any]) -> str | None:
    related = (resource.get("supplementary_data") or {}).get("related_ids") or {}
    order_id = related.get("order_id") if isinstance(related, Mapping) else None
    return str(order_id) if order_id else None
