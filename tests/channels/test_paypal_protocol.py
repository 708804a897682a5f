"""PayPal adapter: known-answer vectors and verification rules, without the sandbox.

A worked example of PayPal's webhook signature pins the CRC32 and the string to sign; signature
tests build their own CA and leaf with ``cryptography`` and sign the string built by hand from
PayPal's description. HTTP is
stubbed with ``responses`` only to serve a certificate or a canned reply to a parser.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta

import pytest
import responses
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from cryptography.x509.oid import NameOID

from channels._cache import fingerprint
from channels.base import (
    AccountConfig,
    BillRowKind,
    ChannelError,
    ChannelRejected,
    ChannelUnavailable,
    Notification,
    NotificationKind,
    NotSupported,
    PrepayRequest,
    RefundStatus,
    SignatureInvalid,
    TradeStatus,
)
from channels.paypal import PaypalAdapter, _webhook
from channels.paypal import adapter as paypal
from channels.paypal._webhook import crc32_of, signing_string
from channels.paypal._wire import format_amount, parse_amount

BASE = "https://api-m.sandbox.paypal.com"
CERT_URL = "https://api.sandbox.paypal.com/v1/notifications/certs/CERT-360caa42-fca2a594-test"
WEBHOOK_ID = "1AB23456CD789012E"


# --- test PKI ---------------------------------------------------------------------------
@dataclass
class Pki:
    ca_key: rsa.RSAPrivateKey
    ca_cert: x509.Certificate
    leaf_key: rsa.RSAPrivateKey
    leaf_cert: x509.Certificate

    @property
    def ca_pem(self) -> str:
        return self.ca_cert.public_bytes(serialization.Encoding.PEM).decode()

    @property
    def leaf_pem(self) -> bytes:
        return self.leaf_cert.public_bytes(serialization.Encoding.PEM)


def _key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _ca(name: str) -> tuple[rsa.RSAPrivateKey, x509.Certificate]:
    key, now = _key(), datetime.now(UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def _leaf(
    ca_key: rsa.RSAPrivateKey,
    ca_cert: x509.Certificate,
    *,
    cn: str,
    key: rsa.RSAPrivateKey,
    not_before: datetime | None = None,
    not_after: datetime | None = None,
) -> x509.Certificate:
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)]))
        .issuer_name(ca_cert.subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before or now - timedelta(days=1))
        .not_valid_after(not_after or now + timedelta(days=10))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .sign(ca_key, hashes.SHA256())
    )


@pytest.fixture(scope="module")
def pki() -> Pki:
    ca_key, ca_cert = _ca("Test Root CA")
    leaf_key = _key()
    return Pki(
        ca_key,
        ca_cert,
        leaf_key,
        _leaf(ca_key, ca_cert, cn="messageverificationcerts.sandbox.paypal.com", key=leaf_key),
    )


@pytest.fixture(autouse=True)
def _fresh_caches() -> Iterator[None]:
    paypal.clear_caches()
    yield
    paypal.clear_caches()


def _adapter(pki: Pki | None = None, **options: object) -> PaypalAdapter:
    opts: dict[str, object] = {"webhook_verification": "local"}
    if pki is not None:
        opts["trusted_ca_certificates"] = [pki.ca_pem]
    opts.update(options)
    return PaypalAdapter(
        AccountConfig(
            channel="paypal",
            account_id=1,
            base_url=BASE,
            ids={"client_id": "client-1", "webhook_id": WEBHOOK_ID},
            credentials={"client_secret": "fake-secret"},
            options=opts,
        )
    )


def _signed_headers(
    key: rsa.RSAPrivateKey,
    body: bytes,
    *,
    transmission_id: str = "8f3a2b10-0c1d-11f0-9e7a-0a1b2c3d4e5f",
    transmission_time: str = "2025-01-01T12:00:00Z",
    webhook_id: str = WEBHOOK_ID,
    cert_url: str = CERT_URL,
) -> dict[str, str]:
    """Sign as PayPal does, with the string built here independently of the adapter."""
    message = f"{transmission_id}|{transmission_time}|{webhook_id}|{zlib.crc32(body) & 0xFFFFFFFF}"
    sig = key.sign(message.encode(), padding.PKCS1v15(), hashes.SHA256())
    return {
        "Paypal-Transmission-Id": transmission_id,
        "Paypal-Transmission-Time": transmission_time,
        "Paypal-Transmission-Sig": base64.b64encode(sig).decode(),
        "Paypal-Cert-Url": cert_url,
        "Paypal-Auth-Algo": "SHA256withRSA",
    }


def _capture_event(event_type: str = "PAYMENT.CAPTURE.COMPLETED", status: str = "COMPLETED") -> bytes:
    return json.dumps(
        {
            "id": "WH-58D329510W468432D-8HN650336L201105X",
            "event_version": "1.0",
            "resource_type": "capture",
            "event_type": event_type,
            "create_time": "2025-01-01T12:00:00Z",
            "resource": {
                "id": "42311647XV020574X",
                "status": status,
                "amount": {"currency_code": "USD", "value": "9.90"},
                "custom_id": "P20250101000001",
                "invoice_id": "P20250101000001",
                "create_time": "2025-01-01T11:59:58Z",
                "supplementary_data": {"related_ids": {"order_id": "5O190127TN364715T"}},
            },
        }
    ).encode()


@pytest.fixture
def served_cert(pki: Pki) -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(CERT_URL, body=pki.leaf_pem, content_type="application/x-pem-file")
        yield rsps


# --- worked example -------------------------------------------------------------------------
def test_worked_example_crc32_and_signing_string() -> None:
    body = b'{"id":"WH-TEST-1","event_type":"PAYMENT.CAPTURE.COMPLETED"}'
    assert crc32_of(body) == 2077941293
    assert signing_string("8f3a2b10-0c1d-11f0-9e7a-0a1b2c3d4e5f", "2025-01-01T12:00:00Z", WEBHOOK_ID, body) == (
        "8f3a2b10-0c1d-11f0-9e7a-0a1b2c3d4e5f|2025-01-01T12:00:00Z|1AB23456CD789012E|2077941293"
    )


def test_crc32_is_unsigned_for_bodies_with_the_high_bit_set() -> None:
    body = b"x" * 7
    signed = zlib.crc32(body)
    assert crc32_of(body) == signed % 2**32
    assert crc32_of(body) >= 0


# --- money --------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("minor", "currency", "wire"),
    [
        (990, "USD", "9.90"),
        (5, "EUR", "0.05"),
        (990, "JPY", "990"),
        (1234, "KWD", "1.234"),
        (100000, "KRW", "100000"),
        (7, "BHD", "0.007"),
        (123456789012, "USD", "1234567890.12"),
    ],
)
def test_amounts_follow_the_currency_exponent_both_ways(minor: int, currency: str, wire: str) -> None:
    assert format_amount(minor, currency) == wire
    assert parse_amount(wire, currency) == minor


def test_unknown_currency_raises_instead_of_guessing() -> None:
    with pytest.raises(ValueError, match="XXX"):
        format_amount(100, "XXX")


def test_reply_amount_with_too_many_decimals_is_unreadable() -> None:
    with pytest.raises(ChannelUnavailable):
        parse_amount("9.905", "USD")
    with pytest.raises(ChannelUnavailable):
        parse_amount("1.5", "JPY")


# --- local verification (method B) ---------------------------------------------------------
def test_signed_capture_completed_is_verified_and_mapped(pki: Pki, served_cert: responses.RequestsMock) -> None:
    body = _capture_event()
    note = _adapter(pki).parse_notification(_signed_headers(pki.leaf_key, body), body)
    assert note.kind == NotificationKind.PAYMENT
    assert note.dedupe_key == "WH-58D329510W468432D-8HN650336L201105X"
    assert note.payment_no == "P20250101000001"
    assert note.channel_trade_no == "5O190127TN364715T"
    assert note.trade is not None
    assert note.trade.status == TradeStatus.PAID
    assert note.trade.paid_amount == 990
    assert note.trade.raw["capture_id"] == "42311647XV020574X"


def test_one_byte_change_to_body_is_rejected(pki: Pki, served_cert: responses.RequestsMock) -> None:
    body = _capture_event()
    headers = _signed_headers(pki.leaf_key, body)
    forged = body.replace(b'"9.90"', b'"9.99"')
    assert len(forged) == len(body)
    with pytest.raises(SignatureInvalid):
        _adapter(pki).parse_notification(headers, forged)


def test_one_byte_change_to_transmission_id_is_rejected(pki: Pki, served_cert: responses.RequestsMock) -> None:
    body = _capture_event()
    headers = _signed_headers(pki.leaf_key, body)
    headers["Paypal-Transmission-Id"] = headers["Paypal-Transmission-Id"][:-1] + "0"
    with pytest.raises(SignatureInvalid):
        _adapter(pki).parse_notification(headers, body)


def test_one_byte_change_to_signature_is_rejected(pki: Pki, served_cert: responses.RequestsMock) -> None:
    body = _capture_event()
    headers = _signed_headers(pki.leaf_key, body)
    sig = bytearray(base64.b64decode(headers["Paypal-Transmission-Sig"]))
    sig[10] ^= 0x01
    headers["Paypal-Transmission-Sig"] = base64.b64encode(bytes(sig)).decode()
    with pytest.raises(SignatureInvalid):
        _adapter(pki).parse_notification(headers, body)


def test_signature_for_another_webhook_id_is_rejected(pki: Pki, served_cert: responses.RequestsMock) -> None:
    body = _capture_event()
    headers = _signed_headers(pki.leaf_key, body, webhook_id="9ZZ99999ZZ999999Z")
    with pytest.raises(SignatureInvalid):
        _adapter(pki).parse_notification(headers, body)


def test_missing_transmission_headers_are_rejected(pki: Pki) -> None:
    body = _capture_event()
    headers = _signed_headers(pki.leaf_key, body)
    del headers["Paypal-Transmission-Sig"]
    with pytest.raises(SignatureInvalid):
        _adapter(pki).parse_notification(headers, body)


def test_headers_are_matched_case_insensitively(pki: Pki, served_cert: responses.RequestsMock) -> None:
    body = _capture_event()
    headers = {k.upper(): v for k, v in _signed_headers(pki.leaf_key, body).items()}
    assert _adapter(pki).parse_notification(headers, body).kind == NotificationKind.PAYMENT


@pytest.mark.parametrize(
    "cert_url",
    [
        "https://evil.example.com/cert.pem",
        "http://api.paypal.com/v1/notifications/certs/CERT-1",
        "https://paypal.com.evil.com/cert.pem",
        "https://api.paypal.com@evil.com/cert.pem",
        "https://api.paypal.com:8443/cert.pem",
        "https://evilpaypal.com/cert.pem",
        "ftp://api.paypal.com/cert.pem",
    ],
)
def test_cert_url_outside_allowed_hosts_is_rejected_without_fetching(pki: Pki, cert_url: str) -> None:
    body = _capture_event()
    headers = _signed_headers(pki.leaf_key, body, cert_url=cert_url)
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        rsps.get(cert_url, body=pki.leaf_pem)  # would be served if it were fetched
        with pytest.raises(SignatureInvalid, match="not an allowed"):
            _adapter(pki).parse_notification(headers, body)
        assert len(rsps.calls) == 0


def test_allowed_prefix_cannot_be_escaped_with_dot_segments(pki: Pki) -> None:
    prefix = "http://127.0.0.1:8100/paypal/certs/"
    assert _webhook.cert_url_allowed(prefix + "CERT-1.pem", [prefix])
    assert not _webhook.cert_url_allowed(prefix + "../../evil.pem", [prefix])
    assert not _webhook.cert_url_allowed(prefix + "%2e%2e/evil.pem", [prefix])
    assert not _webhook.cert_url_allowed("http://127.0.0.1:8100/paypal/certsX/CERT-1.pem", [prefix])
    assert not _webhook.cert_url_allowed(prefix + "CERT-1.pem?x=1", [prefix])


def test_cert_not_issued_by_a_trusted_ca_is_rejected(pki: Pki) -> None:
    rogue_ca_key, rogue_ca = _ca("Rogue CA")
    rogue_key = _key()
    rogue_leaf = _leaf(rogue_ca_key, rogue_ca, cn="messageverificationcerts.sandbox.paypal.com", key=rogue_key)
    body = _capture_event()
    with responses.RequestsMock() as rsps:
        rsps.get(CERT_URL, body=rogue_leaf.public_bytes(serialization.Encoding.PEM))
        with pytest.raises(SignatureInvalid, match="trusted CA"):
            _adapter(pki).parse_notification(_signed_headers(rogue_key, body), body)


def test_cert_with_a_non_paypal_common_name_is_rejected(pki: Pki) -> None:
    key = _key()
    leaf = _leaf(pki.ca_key, pki.ca_cert, cn="webhooks.example.com", key=key)
    body = _capture_event()
    with responses.RequestsMock() as rsps:
        rsps.get(CERT_URL, body=leaf.public_bytes(serialization.Encoding.PEM))
        with pytest.raises(SignatureInvalid, match="CN"):
            _adapter(pki).parse_notification(_signed_headers(key, body), body)


def test_expired_cert_is_rejected(pki: Pki) -> None:
    key, now = _key(), datetime.now(UTC)
    leaf = _leaf(
        pki.ca_key,
        pki.ca_cert,
        cn="messageverificationcerts.sandbox.paypal.com",
        key=key,
        not_before=now - timedelta(days=30),
        not_after=now - timedelta(days=1),
    )
    body = _capture_event()
    with responses.RequestsMock() as rsps:
        rsps.get(CERT_URL, body=leaf.public_bytes(serialization.Encoding.PEM))
        with pytest.raises(SignatureInvalid, match="validity"):
            _adapter(pki).parse_notification(_signed_headers(key, body), body)


def test_cert_chaining_through_a_served_intermediate_is_accepted(pki: Pki) -> None:
    inter_key, now = _key(), datetime.now(UTC)
    inter = (
        x509.CertificateBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Test Intermediate")]))
        .issuer_name(pki.ca_cert.subject)
        .public_key(inter_key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=20))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .sign(pki.ca_key, hashes.SHA256())
    )
    key = _key()
    leaf = _leaf(inter_key, inter, cn="messageverificationcerts.paypal.com", key=key)
    bundle = leaf.public_bytes(serialization.Encoding.PEM) + inter.public_bytes(serialization.Encoding.PEM)
    body = _capture_event()
    with responses.RequestsMock() as rsps:
        rsps.get(CERT_URL, body=bundle)
        note = _adapter(pki).parse_notification(_signed_headers(key, body), body)
    assert note.trade is not None and note.trade.status == TradeStatus.PAID


def test_cert_is_fetched_once_per_url(pki: Pki, served_cert: responses.RequestsMock) -> None:
    adapter = _adapter(pki)
    for event_type in ("PAYMENT.CAPTURE.COMPLETED", "PAYMENT.CAPTURE.PENDING"):
        body = _capture_event(event_type)
        adapter.parse_notification(_signed_headers(pki.leaf_key, body), body)
    assert len(served_cert.calls) == 1


# --- event mapping ------------------------------------------------------------------------
def _verified(pki: Pki, event: dict) -> Notification:
    body = json.dumps(event).encode()
    return _adapter(pki).parse_notification(_signed_headers(pki.leaf_key, body), body)


@pytest.mark.parametrize(
    ("event_type", "status", "expected"),
    [
        ("PAYMENT.CAPTURE.PENDING", "PENDING", TradeStatus.NOT_PAID),
        ("PAYMENT.CAPTURE.DENIED", "DECLINED", TradeStatus.FAILED),
        ("PAYMENT.CAPTURE.DECLINED", "DECLINED", TradeStatus.FAILED),
    ],
)
def test_capture_events_map_to_payment_states(
    pki: Pki, served_cert: responses.RequestsMock, event_type: str, status: str, expected: TradeStatus
) -> None:
    note = _verified(pki, json.loads(_capture_event(event_type, status)))
    assert note.kind == NotificationKind.PAYMENT
    assert note.trade is not None and note.trade.status == expected
    assert note.trade.paid_amount is None


def test_order_approved_is_a_payment_hint_that_is_not_yet_paid(pki: Pki, served_cert: responses.RequestsMock) -> None:
    note = _verified(
        pki,
        {
            "id": "WH-APPROVED-1",
            "event_type": "CHECKOUT.ORDER.APPROVED",
            "resource_type": "checkout-order",
            "resource": {
                "id": "5O190127TN364715T",
                "status": "APPROVED",
                "purchase_units": [
                    {
                        "custom_id": "P20250101000001",
                        "invoice_id": "P20250101000001",
                        "amount": {"currency_code": "USD", "value": "9.90"},
                    }
                ],
            },
        },
    )
    assert note.kind == NotificationKind.PAYMENT
    assert note.payment_no == "P20250101000001"
    assert note.channel_trade_no == "5O190127TN364715T"
    assert note.trade is not None and note.trade.status == TradeStatus.NOT_PAID


def test_capture_refunded_is_a_refund_keyed_by_our_refund_number(pki: Pki, served_cert: responses.RequestsMock) -> None:
    note = _verified(
        pki,
        {
            "id": "WH-REFUND-1",
            "event_type": "PAYMENT.CAPTURE.REFUNDED",
            "resource_type": "refund",
            "resource": {
                "id": "1JU08902781691411",
                "status": "COMPLETED",
                "invoice_id": "R20250101000001",
                "custom_id": "P20250101000001",
                "amount": {"currency_code": "USD", "value": "1.00"},
                "update_time": "2025-01-02T08:00:00Z",
            },
        },
    )
    assert note.kind == NotificationKind.REFUND
    assert note.dedupe_key == "WH-REFUND-1"
    assert note.payment_no == "P20250101000001"
    assert note.refund is not None
    assert (note.refund.refund_no, note.refund.channel_refund_no, note.refund.amount, note.refund.status) == (
        "R20250101000001",
        "1JU08902781691411",
        100,
        RefundStatus.SUCCEEDED,
    )


def test_capture_reversed_carries_no_state_to_apply(pki: Pki, served_cert: responses.RequestsMock) -> None:
    note = _verified(pki, json.loads(_capture_event("PAYMENT.CAPTURE.REVERSED", "REVERSED")))
    assert note.kind == NotificationKind.PAYMENT
    assert note.payment_no == "P20250101000001"
    assert note.trade is None


def test_unsubscribed_event_is_other(pki: Pki, served_cert: responses.RequestsMock) -> None:
    note = _verified(pki, {"id": "WH-OTHER-1", "event_type": "BILLING.PLAN.CREATED", "resource": {}})
    assert note.kind == NotificationKind.OTHER
    assert note.dedupe_key == "WH-OTHER-1"


def test_unknown_verification_mode_is_a_configuration_error() -> None:
    with pytest.raises(ChannelError) as exc:
        _adapter(webhook_verification="none")
    assert exc.value.code == "CONFIG"


def test_ack_is_200_empty_or_400() -> None:
    adapter = _adapter()
    assert (adapter.ack(True).status, adapter.ack(True).body) == (200, b"")
    assert adapter.ack(False).status == 400


# --- API verification (method A) ----------------------------------------------------------
def _token_stub(rsps: responses.RequestsMock) -> None:
    rsps.post(f"{BASE}/v1/oauth2/token", json={"access_token": "tok-1", "token_type": "Bearer", "expires_in": 32400})


def test_api_verification_embeds_the_received_event_bytes_unchanged() -> None:
    # odd spacing, key order and an escaped character: re-serialising would change every one
    body = (
        b'{ "event_type" : "PAYMENT.CAPTURE.COMPLETED",  "id":"WH-API-1", "summary":"caf\\u00e9",'
        b'"resource":{"id":"42311647XV020574X","status":"COMPLETED","custom_id":"P1",'
        b'"amount":{"value":"9.90","currency_code":"USD"}}}'
    )
    headers = {
        "PAYPAL-TRANSMISSION-ID": "t-1",
        "PAYPAL-TRANSMISSION-TIME": "2025-01-01T12:00:00Z",
        "PAYPAL-TRANSMISSION-SIG": "c2ln",
        "PAYPAL-CERT-URL": CERT_URL,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }
    with responses.RequestsMock() as rsps:
        _token_stub(rsps)
        rsps.post(f"{BASE}/v1/notifications/verify-webhook-signature", json={"verification_status": "SUCCESS"})
        note = _adapter(webhook_verification="api").parse_notification(headers, body)
        sent = rsps.calls[1].request
    assert sent.body.endswith(b',"webhook_event":' + body + b"}")
    envelope = json.loads(sent.body)
    assert envelope["webhook_id"] == WEBHOOK_ID
    assert envelope["transmission_id"] == "t-1"
    assert sent.headers["Authorization"] == "Bearer tok-1"
    assert note.trade is not None and note.trade.status == TradeStatus.PAID


def test_api_verification_failure_is_rejected() -> None:
    body = _capture_event()
    headers = {
        "PAYPAL-TRANSMISSION-ID": "t-1",
        "PAYPAL-TRANSMISSION-TIME": "2025-01-01T12:00:00Z",
        "PAYPAL-TRANSMISSION-SIG": "c2ln",
        "PAYPAL-CERT-URL": CERT_URL,
        "PAYPAL-AUTH-ALGO": "SHA256withRSA",
    }
    with responses.RequestsMock() as rsps:
        _token_stub(rsps)
        rsps.post(f"{BASE}/v1/notifications/verify-webhook-signature", json={"verification_status": "FAILURE"})
        with pytest.raises(SignatureInvalid):
            _adapter(webhook_verification="api").parse_notification(headers, body)


# --- orders and bills against canned replies ---------------------------------------------------
def test_query_without_order_id_is_not_supported_and_close_makes_no_call() -> None:
    adapter = _adapter()
    with responses.RequestsMock() as rsps:
        with pytest.raises(NotSupported):
            adapter.query(payment_no="P1")
        assert adapter.close(payment_no="P1", channel_trade_no="5O190127TN364715T") is None
        assert len(rsps.calls) == 0


def _order(status: str, captures: list[dict] | None = None) -> dict:
    unit: dict = {
        "reference_id": "default",
        "custom_id": "P1",
        "invoice_id": "P1",
        "amount": {"currency_code": "USD", "value": "9.90"},
    }
    if captures is not None:
        unit["payments"] = {"captures": captures}
    return {"id": "ORDER1", "status": status, "purchase_units": [unit]}


def test_order_already_captured_is_reread_and_decided_on_the_capture() -> None:
    capture = {
        "id": "CAP1",
        "status": "COMPLETED",
        "amount": {"currency_code": "USD", "value": "9.90"},
        "create_time": "2025-01-01T12:00:00Z",
    }
    with responses.RequestsMock() as rsps:
        _token_stub(rsps)
        rsps.get(f"{BASE}/v2/checkout/orders/ORDER1", json=_order("APPROVED"))
        rsps.post(
            f"{BASE}/v2/checkout/orders/ORDER1/capture",
            status=422,
            json={"name": "UNPROCESSABLE_ENTITY", "details": [{"issue": "ORDER_ALREADY_CAPTURED"}]},
        )
        rsps.get(f"{BASE}/v2/checkout/orders/ORDER1", json=_order("COMPLETED", [capture]))
        state = _adapter().settle(payment_no="P1", channel_trade_no="ORDER1")
        assert rsps.calls[2].request.headers["PayPal-Request-Id"] == "P1:capture"
    assert (state.status, state.paid_amount, state.raw["capture_id"]) == (TradeStatus.PAID, 990, "CAP1")


def test_completed_order_with_declined_capture_is_failed_not_paid() -> None:
    capture = {"id": "CAP1", "status": "DECLINED", "amount": {"currency_code": "USD", "value": "9.90"}}
    with responses.RequestsMock() as rsps:
        _token_stub(rsps)
        rsps.get(f"{BASE}/v2/checkout/orders/ORDER1", json=_order("COMPLETED", [capture]))
        state = _adapter().settle(channel_trade_no="ORDER1")
    assert state.status == TradeStatus.FAILED
    assert state.paid_amount is None
    assert state.payment_no == "P1"


def test_unknown_capture_status_raises_instead_of_defaulting() -> None:
    capture = {"id": "CAP1", "status": "MYSTERY", "amount": {"currency_code": "USD", "value": "9.90"}}
    with responses.RequestsMock() as rsps:
        _token_stub(rsps)
        rsps.get(f"{BASE}/v2/checkout/orders/ORDER1", json=_order("COMPLETED", [capture]))
        with pytest.raises(ChannelUnavailable, match="MYSTERY"):
            _adapter().query(channel_trade_no="ORDER1")


def test_bill_keeps_captures_and_refunds_and_skips_other_event_codes() -> None:
    def info(tid: str, code: str, value: str, *, status: str = "S", fee: str = "0.00", **extra: str) -> dict:
        return {
            "transaction_info": {
                "transaction_id": tid,
                "transaction_event_code": code,
                "transaction_initiation_date": "2025-01-01T10:00:00+0000",
                "transaction_amount": {"currency_code": "USD", "value": value},
                "fee_amount": {"currency_code": "USD", "value": fee},
                "transaction_status": status,
                **extra,
            }
        }

    page1 = {
        "transaction_details": [
            info(
                "CAP1",
                "T0006",
                "9.90",
                fee="-0.59",
                invoice_id="P1",
                custom_field="P1",
                paypal_reference_id="ORDER1",
                paypal_reference_id_type="ODR",
            ),
            info("WD1", "T0400", "-50.00"),  # withdrawal: not paycore's
        ],
        "total_pages": 2,
        "page": 1,
    }
    page2 = {
        "transaction_details": [
            info(
                "REF1",
                "T1107",
                "-1.00",
                fee="0.03",
                invoice_id="R1",
                paypal_reference_id="CAP1",
                paypal_reference_id_type="TXN",
            ),
            info("CAP2", "T0006", "5.00", status="D", invoice_id="P2"),  # denied: no money moved
        ],
        "total_pages": 2,
        "page": 2,
    }
    with responses.RequestsMock() as rsps:
        _token_stub(rsps)
        rsps.get(
            f"{BASE}/v1/reporting/transactions",
            json=page1,
            match=[responses.matchers.query_param_matcher({"page": "1"}, strict_match=False)],
        )
        rsps.get(
            f"{BASE}/v1/reporting/transactions",
            json=page2,
            match=[responses.matchers.query_param_matcher({"page": "2"}, strict_match=False)],
        )
        rows = list(_adapter().fetch_bill(date(2025, 1, 1)))
        params = rsps.calls[1].request.params
    assert params["start_date"] == "2025-01-01T00:00:00Z"
    assert params["end_date"] == "2025-01-01T23:59:59Z"
    assert [(r.kind, r.payment_no, r.channel_trade_no, r.amount, r.fee) for r in rows] == [
        (BillRowKind.PAYMENT, "P1", "ORDER1", 990, 59),
        (BillRowKind.REFUND, "P1", "ORDER1", 100, -3),
    ]
    assert (rows[1].refund_no, rows[1].channel_refund_no) == ("R1", "REF1")


# --- per-process caches -------------------------------------------------------------------
def test_token_slot_is_shared_per_client_and_replaced_when_the_secret_changes() -> None:
    first, second = _adapter(), _adapter()
    assert first._token_slot() is second._token_slot()
    rotated = PaypalAdapter(dataclasses.replace(first.config, credentials={"client_secret": "another-fake-secret"}))
    assert rotated._token_slot() is not first._token_slot() and rotated._token_slot().token is None


def test_trusted_cas_are_parsed_once_per_process(pki: Pki, served_cert: responses.RequestsMock) -> None:
    body = _capture_event()
    _adapter(pki).parse_notification(_signed_headers(pki.leaf_key, body), body)
    cached = paypal._TRUSTED.peek(("trusted", 1), fingerprint([pki.ca_pem]))
    assert cached is not None and cached[0].subject == pki.ca_cert.subject
    _adapter(pki).parse_notification(_signed_headers(pki.leaf_key, body), body)
    assert paypal._TRUSTED.peek(("trusted", 1), fingerprint([pki.ca_pem])) is cached


# --- errors stay inside the contract ----------------------------------------------------------
def test_a_currency_paypal_cannot_price_is_rejected_before_any_call() -> None:
    request = PrepayRequest(
        payment_no="P1",
        amount=100,
        currency="HUF",  # ISO says 2 decimals, PayPal refuses decimals: never sent
        description="x",
        method="page",
        notify_url="https://pay.example.com/cb",
        expires_at=datetime.now(UTC) + timedelta(hours=1),
    )
    with responses.RequestsMock(), pytest.raises(ChannelRejected) as caught:
        _adapter().prepay(request)
    assert caught.value.code == "CURRENCY_NOT_SUPPORTED"


def test_refund_numbers_longer_than_an_invoice_id_are_reported() -> None:
    adapter = _adapter()
    assert adapter.refund_no_problem(refund_no="R" * 127, payment_no="P1") is None
    assert "127" in adapter.refund_no_problem(refund_no="R" * 128, payment_no="P1")


def test_a_bill_with_an_unreadable_row_fails_while_it_is_read() -> None:
    report = {
        "transaction_details": [{"transaction_info": {"transaction_event_code": "T0006", "transaction_amount": 5}}],
        "total_pages": 1,
    }
    with responses.RequestsMock() as rsps:
        _token_stub(rsps)
        rsps.get(f"{BASE}/v1/reporting/transactions", json=report)
        bill = _adapter().fetch_bill(date(2025, 1, 1))
        with pytest.raises(ChannelUnavailable):
            list(bill)  # rows stream page by page: the whole bill is void, not just the rest
