"""Reconciliation runs on PostgreSQL only: elsewhere (SQLite, the development default) a run is
refused with a message that says why, and the sweep leaves the bills alone with one warning.

The suite runs on PostgreSQL, so the other backend is played by patching the one check both
consult (``reconciliation_supported``); the check itself is a pure function of the vendor."""

from __future__ import annotations

import logging
from datetime import date
from typing import Any

import pytest
from django.core.management import CommandError, call_command

from channels.models import ChannelAccount
from paycore.sweeps import sweep_run
from reconciliation import sweeps
from reconciliation.models import ChannelBill, ReconciliationRun
from reconciliation.services import reconcile_day, run
from reconciliation.services.support import ReconciliationUnsupported, reconciliation_supported
from reconciliation.sweeps import RECONCILE

pytestmark = pytest.mark.django_db(transaction=True)


def _account() -> ChannelAccount:
    return ChannelAccount.objects.create(
        name="support-wechat",
        channel="wechat",
        base_url="https://wechat.support.invalid",
        ids={"mchid": "1900000009", "appid": "wx00000000support"},
        options={"bill_ready_after_seconds": 0},
    )


def _on_sqlite(monkeypatch: pytest.MonkeyPatch) -> None:
    def sqlite(vendor: str | None = None) -> bool:
        return reconciliation_supported(vendor or "sqlite")

    monkeypatch.setattr(run, "reconciliation_supported", sqlite)

    def message() -> str:
        return "reconciliation needs PostgreSQL; this database is sqlite"

    for module in (run, sweeps):
        monkeypatch.setattr(module, "reconciliation_supported", sqlite)
        monkeypatch.setattr(module, "unsupported_message", message)


def test_only_postgresql_reconciles() -> None:
    assert reconciliation_supported("postgresql")
    assert not reconciliation_supported("sqlite")
    assert reconciliation_supported()  # the suite's own database


def test_a_run_elsewhere_is_recorded_failed_with_the_reason_and_fetches_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    _on_sqlite(monkeypatch)
    account = _account()

    def no_fetch(**kwargs: Any) -> None:
        raise AssertionError("the channel was asked for the bill")

    monkeypatch.setattr(run, "bill_fetch", no_fetch)
    with pytest.raises(ReconciliationUnsupported) as raised:
        reconcile_day(account_id=account.pk, bill_date=date(2025, 3, 3))
    assert raised.value.code == "reconciliation_unsupported"
    failed = ReconciliationRun.objects.get(channel_account=account)
    assert failed.status == ReconciliationRun.Status.FAILED and failed.finished_at is not None
    assert "needs PostgreSQL" in failed.error
    assert ChannelBill.objects.get(channel_account=account).status == ChannelBill.Status.PENDING


def test_the_command_elsewhere_says_why(monkeypatch: pytest.MonkeyPatch) -> None:
    _on_sqlite(monkeypatch)
    account = _account()
    with pytest.raises(CommandError, match="needs PostgreSQL"):
        call_command("reconcile", "--account", str(account.pk), "--date", "2025-03-03", "--quiet")


def test_the_sweep_elsewhere_works_nothing_and_warns_once(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    _on_sqlite(monkeypatch)
    monkeypatch.setattr(sweeps, "_warned", False)
    account = _account()
    ChannelBill.objects.create(channel_account=account, bill_date=date(2025, 3, 3))  # due now
    with caplog.at_level(logging.WARNING, logger="reconciliation.sweeps"):
        first, second = sweep_run(RECONCILE), sweep_run(RECONCILE)
    assert first.claimed == second.claimed == 0
    assert [r.getMessage() for r in caplog.records if r.name == "reconciliation.sweeps"] == [
        "reconcile sweep skipped: reconciliation needs PostgreSQL; this database is sqlite"
    ]
    assert ChannelBill.objects.filter(channel_account=account).count() == 1  # no days planned either
    assert not ReconciliationRun.objects.exists()
