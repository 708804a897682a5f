"""Ops work in the admin: every model is listed, money is read-only, actions call services,
and secrets are never rendered."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse

from channels.models import ChannelAccount
from payments.models import Payment
from tests.factories import make_order, make_payment

pytestmark = pytest.mark.django_db


@pytest.fixture
def ops() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client = Client()
    client.force_login(user)
    return client


def test_every_model_has_an_admin() -> None:
    from django.apps import apps

    ours = [
        m
        for m in apps.get_models()
        if m._meta.app_label in {"paycore", "orders", "payments", "refunds", "inbox", "channels"}
    ]
    assert ours and all(admin.site.is_registered(model) for model in ours)


def test_every_changelist_renders_and_searches(ops: Client) -> None:
    make_order()
    for model in admin.site._registry:
        url = reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_changelist")
        assert ops.get(url).status_code == 200, url
        assert ops.get(url, {"q": "P2026"}).status_code == 200, url


def test_payments_are_read_only_and_closed_through_the_action(ops: Client, wechat_account: ChannelAccount) -> None:
    payment = make_payment(account=wechat_account)
    change = reverse("admin:payments_payment_change", args=[payment.pk])
    page = ops.get(change)
    assert page.status_code == 200 and b'name="amount"' not in page.content
    ops.post(change, {"amount": 1})
    payment.refresh_from_db()
    assert payment.amount == 1000
    response = ops.post(
        reverse("admin:payments_payment_changelist"), {"action": "close", "_selected_action": [payment.pk]}, follow=True
    )
    assert response.status_code == 200
    payment.refresh_from_db()
    assert payment.status == "CLOSED"
    assert payment.events.get(to_status="CLOSED").actor == "ops:ops"


def test_channel_credentials_are_never_displayed(ops: Client) -> None:
    account = ChannelAccount.objects.create(
        channel="points", name="pts", base_url="https://points.example", credentials={"shared_secret": "NEVER-SHOW-ME"}
    )
    page = ops.get(reverse("admin:channels_channelaccount_change", args=[account.pk]))
    listing = ops.get(reverse("admin:channels_channelaccount_changelist"))
    assert page.status_code == listing.status_code == 200
    assert b"NEVER-SHOW-ME" not in page.content and b"NEVER-SHOW-ME" not in listing.content
    assert b"shared_secret" in listing.content


def test_saving_an_account_without_new_credentials_keeps_the_old_ones(ops: Client) -> None:
    account = ChannelAccount.objects.create(
        channel="points", name="pts", base_url="https://points.example", credentials={"shared_secret": "KEEP"}
    )
    form: dict[str, Any] = {
        "channel": "points",
        "name": "pts",
        "base_url": "https://points.example/v2",
        "ids": "{}",
        "options": "{}",
        "is_enabled": "on",
        "callback_ip_allowlist": "[]",
        "new_credentials": "",
    }
    response = ops.post(reverse("admin:channels_channelaccount_change", args=[account.pk]), form)
    assert response.status_code == 302
    account.refresh_from_db()
    assert account.base_url == "https://points.example/v2" and account.credentials == {"shared_secret": "KEEP"}
    form["new_credentials"] = '{"shared_secret": "ROTATED"}'
    ops.post(reverse("admin:channels_channelaccount_change", args=[account.pk]), form)
    account.refresh_from_db()
    assert account.credentials == {"shared_secret": "ROTATED"}


def test_order_pii_is_masked_in_the_admin(ops: Client) -> None:
    order = make_order(phone="+86 138 1234 5678")
    page = ops.get(reverse("admin:orders_order_change", args=[order.pk]))
    assert b"138 1234" not in page.content and b"5678" in page.content


def test_staff_without_the_change_permission_cannot_run_actions(wechat_account: ChannelAccount) -> None:
    user = get_user_model().objects.create_user("viewer", password="pw-viewer-123", is_staff=True)
    from django.contrib.auth.models import Permission

    user.user_permissions.add(Permission.objects.get(codename="view_payment"))
    client = Client()
    client.force_login(user)
    payment = make_payment(account=wechat_account)
    client.post(reverse("admin:payments_payment_changelist"), {"action": "close", "_selected_action": [payment.pk]})
    assert Payment.objects.get(pk=payment.pk).status == "PENDING"


def test_guessing_an_admin_password_locks_the_login_out() -> None:
    get_user_model().objects.create_superuser("boss", "boss@example.com", "the-right-password-1")
    client = Client()
    for attempt in range(30):
        client.post("/admin/login/", {"username": "boss", "password": f"wrong-{attempt}"})
    answer = client.post("/admin/login/", {"username": "boss", "password": "the-right-password-1"})
    assert answer.status_code == 429  # locked out: the right password no longer helps
    assert "_auth_user_id" not in client.session


def test_amounts_show_in_major_units_with_their_currency(ops: Client) -> None:
    order = make_order(amount=1500)
    page = ops.get(reverse("admin:orders_order_changelist")).content.decode()
    assert "15.00 CNY" in page and ">1500<" not in page
    detail = ops.get(reverse("admin:orders_order_change", args=[order.pk])).content.decode()
    assert "15.00 CNY" in detail
