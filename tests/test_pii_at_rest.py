"""After real flows through every channel, no payer identifier the channels sent is stored in
plaintext anywhere in the database: evidence keeps masked values, the payer id paycore must keep
is encrypted."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection

from channels.services import adapter_for
from payments.models import Payment
from tests.factories import make_order, make_payment, pay_at_sandbox

pytestmark = pytest.mark.django_db(transaction=True)

OPENID = "oUpF8uMuAJO_M2pxb1Q9zNjWeS6o"
PAYPAL_EMAIL = "buyer@example.com"
PAYPAL_PAYER = "SANDBOXPAYER01"
ALIPAY_BUYER = "2088123412341234"


def database_text() -> str:
    """Every row of every table as JSON text: what a dump of the database would show."""
    with connection.cursor() as cursor:
        tables = connection.introspection.table_names(cursor)
        chunks = []
        for table in tables:
            cursor.execute(f"SELECT coalesce(json_agg(t)::text, '') FROM \"{table}\" t")
            chunks.append(cursor.fetchone()[0])
    return "\n".join(chunks)


def test_no_payer_identifier_is_stored_in_plaintext(channel_account: Any, gateway_client: Any) -> None:
    from payments.services import payment_sync_from_channel

    wechat, alipay, paypal = channel_account("wechat"), channel_account("alipay"), channel_account("paypal")
    jsapi = make_payment(account=wechat, method="jsapi", payer_id=OPENID)
    gateway_client.pay("wechat", jsapi.payment_no, openid=OPENID)
    by_alipay = make_payment(account=alipay)
    pay_at_sandbox(gateway_client, by_alipay, buyer_id=ALIPAY_BUYER)
    by_paypal = make_payment(
        account=paypal, orders=[make_order(currency="USD")], method="page", return_url="https://app.example/r"
    )
    pay_at_sandbox(gateway_client, by_paypal)
    for payment in (jsapi, by_alipay, by_paypal):
        assert payment_sync_from_channel(payment_id=payment.pk).status == "SUCCEEDED"
    assert adapter_for(wechat)  # the payer id is still usable by paycore: decrypted on read
    assert Payment.objects.get(pk=jsapi.pk).payer_id == OPENID
    dump = database_text()
    for identifier in (OPENID, PAYPAL_EMAIL, PAYPAL_PAYER, ALIPAY_BUYER):
        assert identifier not in dump, identifier
