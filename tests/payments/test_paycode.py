"""Payment code at the counter, over HTTP against the sandbox: every answer classified, unknown
outcomes polled then revoked, revocation read correctly, and never money taken and unrecorded.

The sandbox chooses what the payer and the platform do by the code's last four digits (see
sandbox/CONTRACT.md, "Payment codes")."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from rest_framework.test import APIClient

from orders.models import Order
from paycore.sweeps import sweep_run
from payments.models import Payment
from payments.services import paycode_advance, payment_close
from payments.sweeps import PAYCODE
from refunds.models import Refund
from refunds.sweeps import REPEAT
from tests.factories import let_time_pass, make_order

pytestmark = pytest.mark.django_db(transaction=True)

WECHAT, ALIPAY = "1345678901234", "28654321098765"  # + the last four digits: a valid code of each


def code(channel: str, digits: str) -> str:
    return (WECHAT if channel == "wechat" else ALIPAY) + "0" + digits


def scan(api: APIClient, auth_code: str, **extra: Any) -> Any:
    order = make_order(amount=2500)
    return api.post(
        "/api/v1/payments/paycode",
        {
            "order_nos": [order.order_no],
            "customer_ref": "cust-1",
            "auth_code": auth_code,
            "store_id": "S-01",
            "device_id": "POS-7",
            "operator_id": "alice",
            **extra,
        },
        format="json",
    )


def the_payment() -> Payment:
    return Payment.objects.get()


def past_the_deadline(payment: Payment) -> None:
    let_time_pass(payment, seconds=60)


def sweep_until_settled(payment: Payment, rounds: int = 5) -> Payment:
    """Run the paycode sweep past the deadline until the payment leaves USER_PAYING (a WeChat
    reverse of a trade still waiting for the payer first answers recall=Y: call again)."""
    for _ in range(rounds):
        payment.refresh_from_db()
        if payment.status != "USER_PAYING":
            break
        past_the_deadline(payment)
        sweep_run(PAYCODE)
    payment.refresh_from_db()
    return payment


@pytest.fixture(params=["wechat", "alipay"])
def channel(request: Any, channel_account: Any) -> str:
    channel_account(request.param)
    return str(request.param)


def test_a_scanned_code_is_charged_at_once_on_the_channel_the_code_tells(api: APIClient, channel: str) -> None:
    response = scan(api, code(channel, "1234"))
    assert response.status_code == 201, response.json()
    body = response.json()
    assert (body["channel"], body["status"]) == (channel, "SUCCEEDED")
    assert (body["store_id"], body["device_id"], body["operator_id"]) == ("S-01", "POS-7", "alice")
    assert response["Location"] == body["status_url"] == f"/api/v1/payments/{body['payment_no']}"
    assert the_payment().maps.get().order.status == "PAID"


@pytest.mark.parametrize("auth_code", ["999999999999999999", "12345", "134567890123401234567"])
def test_an_unrecognisable_code_is_refused_before_anything_is_written(
    api: APIClient, wechat_account: Any, auth_code: str
) -> None:
    response = scan(api, auth_code)
    assert response.status_code == 400
    assert not Payment.objects.exists()


def test_a_code_of_another_channel_than_named_is_refused(api: APIClient, wechat_account: Any) -> None:
    response = scan(api, code("wechat", "1234"), channel="alipay")
    assert response.status_code == 400
    assert response.json()["extra"]["fields"]["auth_code"][0]["code"] == "auth_code_unrecognised"
    assert not Payment.objects.exists()


@pytest.mark.parametrize(("digits", "failure"), [("7301", "expired"), ("7302", "balance")])
def test_a_definite_failure_fails_the_payment_with_the_channels_code(
    api: APIClient, channel: str, digits: str, failure: str
) -> None:
    response = scan(api, code(channel, digits))
    assert response.status_code == 201
    body = response.json()
    assert body["status"] == "FAILED" and body["failure_code"]
    assert Order.objects.get().status == "PENDING_PAYMENT"


def test_a_password_wait_is_polled_until_the_payer_confirms(api: APIClient, channel: str, gateway_client: Any) -> None:
    response = scan(api, code(channel, "0000"))
    assert response.json()["status"] == "USER_PAYING"
    payment = the_payment()
    assert payment.charge_deadline is not None
    let_time_pass(payment, seconds=5)  # the next poll is due, the deadline is not
    assert sweep_run(PAYCODE).outcomes == {"still_paying": 1}
    gateway_client.password(channel, payment.payment_no)
    let_time_pass(payment, seconds=5)
    assert sweep_run(PAYCODE).outcomes == {"succeeded": 1}
    assert the_payment().status == "SUCCEEDED" and Order.objects.get().status == "PAID"


def test_the_counter_may_wait_a_few_seconds_for_the_answer(api: APIClient, channel: str) -> None:
    response = scan(api, code(channel, "7101"), wait_seconds=3)  # the payer types within a second
    assert response.json()["status"] == "SUCCEEDED"


@pytest.mark.parametrize("digits", ["7400", "0003"])
def test_an_unknown_answer_is_never_created_or_failed_and_the_money_is_found(
    api: APIClient, wechat_account: Any, digits: str
) -> None:
    response = scan(api, code("wechat", digits))  # SYSTEMERROR, but the channel took the money
    assert response.json()["status"] == "USER_PAYING"
    payment = the_payment()
    assert payment.events.get(to_status="USER_PAYING").evidence["unknown"]
    let_time_pass(payment, seconds=5)
    sweep_run(PAYCODE)
    assert the_payment().status == "SUCCEEDED"


def test_an_alipay_unknown_answer_that_was_paid_is_found_too(api: APIClient, channel_account: Any) -> None:
    channel_account("alipay")
    assert scan(api, code("alipay", "7400")).json()["status"] == "USER_PAYING"
    let_time_pass(the_payment(), seconds=5)
    sweep_run(PAYCODE)
    assert the_payment().status == "SUCCEEDED"


@pytest.mark.parametrize("digits", ["7200", "7500", "7501"])
def test_a_payment_with_no_outcome_by_its_deadline_is_revoked(api: APIClient, channel: str, digits: str) -> None:
    assert scan(api, code(channel, digits)).json()["status"] == "USER_PAYING"
    payment = sweep_until_settled(the_payment())
    assert payment.status == "REVOKED" and payment.paid_at is None
    assert payment.events.last().evidence["reason"] == "no outcome by the deadline"
    assert not Refund.objects.exists()


def test_a_revocation_asked_to_be_called_again_is_called_again(
    api: APIClient, channel: str, gateway_client: Any
) -> None:
    scan(api, code(channel, "7200"))
    payment = the_payment()
    gateway_client.add_fault(kind="revoke_retry", channel=channel, trade=payment.payment_no, count=2)
    payment = sweep_until_settled(payment)
    assert payment.status == "REVOKED" and payment.revoke_attempts >= 2


def test_a_revocation_that_keeps_failing_goes_to_a_person_who_can_retry_it(
    api: APIClient, channel: str, gateway_client: Any, settings: Any
) -> None:
    settings.PAYCODE_MAX_REVOKE_ATTEMPTS = 3
    scan(api, code(channel, "7200"))
    payment = the_payment()
    gateway_client.add_fault(kind="revoke_error", channel=channel, trade=payment.payment_no, count=None)
    payment = sweep_until_settled(payment)
    assert payment.status == "NEEDS_ATTENTION" and payment.revoke_attempts == 3
    assert payment.events.last().evidence["problem"] == "revocation failed 3 times"
    past_the_deadline(payment)
    assert sweep_run(PAYCODE).claimed == 0  # no endless automatic retry

    ops = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client = Client()
    client.force_login(ops)
    gateway_client.clear_faults()  # the channel recovered
    changelist = reverse("admin:payments_payment_changelist")
    for _ in range(2):  # WeChat may first ask to be called again
        client.post(changelist, {"action": "retry_revocation", "_selected_action": [payment.pk]})
    payment.refresh_from_db()
    assert payment.status == "REVOKED" and payment.events.last().actor == "ops:ops"


def test_a_revocation_that_gave_the_money_back_is_recorded_as_paid_then_revoked_and_refunded(
    api: APIClient, channel_account: Any, gateway_client: Any
) -> None:
    """Alipay answers the cancel of a paid trade with action=refund: the money had been taken."""
    channel_account("alipay")
    scan(api, code("alipay", "7400"))  # unknown answer; in fact paid
    payment = the_payment()
    past_the_deadline(payment)  # the deadline passes before any poll saw the success
    sweep_run(PAYCODE)
    payment.refresh_from_db()
    assert payment.status == "REVOKED" and payment.paid_at is not None
    assert [e.to_status for e in payment.events.all()] == ["USER_PAYING", "SUCCEEDED", "REVOKED"]
    assert sweep_run(REPEAT).outcomes == {"revocation_recorded": 1}
    refund = Refund.objects.get()
    assert (refund.reason, refund.amount, refund.status) == ("REVOCATION", 2500, "SUCCEEDED")
    assert Order.objects.get().status == "REFUNDED"
    assert sweep_run(REPEAT).claimed == 0  # recorded once


def test_a_success_that_arrives_while_revocation_runs_ends_recorded_and_given_back(
    api: APIClient, wechat_account: Any, gateway_client: Any
) -> None:
    scan(api, code("wechat", "0000"))
    payment = the_payment()
    gateway_client.password("wechat", payment.payment_no)  # paid at the channel, unseen by paycore
    past_the_deadline(payment)
    sweep_run(PAYCODE)  # revokes: WeChat reverses the paid trade
    payment.refresh_from_db()
    assert payment.status == "REVOKED" and payment.paid_at is not None
    sweep_run(REPEAT)
    assert Refund.objects.get().reason == "REVOCATION"
    assert Order.objects.get().status == "REFUNDED"


def test_closing_a_payer_still_paying_revokes_it(api: APIClient, channel: str) -> None:
    scan(api, code(channel, "7200"))
    payment = the_payment()
    answer = api.post(f"/api/v1/payments/{payment.payment_no}/close", {}, format="json")
    assert answer.status_code == 200
    if answer.json()["status"] == "USER_PAYING":  # WeChat: "call again"; the sweep does, soon
        assert the_payment().revoke_attempts == 1
        sweep_until_settled(payment)
    assert the_payment().status == "REVOKED"


def test_money_never_ends_taken_and_unrecorded(api: APIClient, channel: str, gateway_client: Any) -> None:
    """Every scenario, driven to its end: paid and recorded, or revoked (and if the money had moved,
    recorded and refunded) — never money at the channel that paycore does not show."""
    for digits in ("1234", "0000", "7200", "7301", "7400", "7500", "7501"):
        scan(api, code(channel, digits))
    for _ in range(3):
        for payment in Payment.objects.filter(status="USER_PAYING"):
            past_the_deadline(payment)
            paycode_advance(payment_id=payment.pk)
    sweep_run(REPEAT)
    taken = {t["key"].split("/")[-1] for t in gateway_client.trades() if t["kind"] == "trade" and _paid(t)}
    for payment in Payment.objects.all():
        assert payment.status in ("SUCCEEDED", "FAILED", "REVOKED"), payment.status
        if payment.payment_no in taken:
            assert payment.paid_at is not None, payment.payment_no


def _paid(trade: dict[str, Any]) -> bool:
    return str(trade.get("trade_state") or trade.get("trade_status") or "").upper() in ("SUCCESS", "TRADE_SUCCESS")


def test_only_payment_codes_are_revoked(api: APIClient, wechat_account: Any) -> None:
    from paycore.errors import Conflict
    from payments.services import paycode_revoke
    from tests.factories import make_payment

    payment = make_payment(account=wechat_account)
    with pytest.raises(Conflict):
        paycode_revoke(payment_id=payment.pk, reason="test")
    assert payment_close(payment_id=payment.pk, reason="test").status == "CLOSED"
