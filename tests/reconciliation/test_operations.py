"""Operating reconciliation: refused bills, the sweep on beat, the command, and the admin where
ops settle what differs (every action through a service, recorded with who took it)."""

from __future__ import annotations

import io
import re
import zipfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import requests
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from channels.registry import session_for
from paycore.sweeps import sweep_run
from payments.models import Payment
from reconciliation.models import BillLine, ChannelBill, Discrepancy, ReconciliationRun
from reconciliation.selectors import payment_reconciled_at
from reconciliation.services import bill_for, bill_reconcile_due
from reconciliation.sweeps import RECONCILE
from tests.factories import pay_at_sandbox
from tests.reconciliation.conftest import Day, found

pytestmark = pytest.mark.django_db(transaction=True)


class _FooterLies(requests.adapters.HTTPAdapter):
    """Serves Alipay's real bill with its footer claiming one trade more than its lines show."""

    def send(self, request: Any, **kwargs: Any) -> requests.Response:
        real = super().send(request, **{**kwargs, "stream": False})
        source = zipfile.ZipFile(io.BytesIO(real.content))
        out = io.BytesIO()
        with zipfile.ZipFile(out, "w") as archive:
            for info in source.infolist():
                text = source.read(info).decode("gb18030")
                text = re.sub(r"#交易合计：(\d+)笔", lambda m: f"#交易合计：{int(m[1]) + 1}笔", text)
                archive.writestr(info.filename, text.encode("gbk"))
        response = requests.Response()
        response.status_code, response.url, response.request = 200, request.url, request
        response._content, response._content_consumed = out.getvalue(), True
        return response


@pytest.fixture
def lying_alipay_bills(sandbox_gateway: Any) -> Iterator[Callable[[Any], None]]:
    mounted: list[tuple[requests.Session, str]] = []

    def mount(account: Any) -> None:
        session, prefix = session_for(account.as_config()), f"{sandbox_gateway.base_url}/alipay/bills/"
        session.mount(prefix, _FooterLies())
        mounted.append((session, prefix))

    yield mount
    for session, prefix in mounted:
        session.adapters.pop(prefix, None)


def test_a_bill_that_contradicts_its_own_summary_is_refused_whole(
    business_day: Callable[..., Day], lying_alipay_bills: Callable[[Any], None]
) -> None:
    day = business_day("alipay")
    paid = day.paid(1000)
    day.end()
    lying_alipay_bills(day.account)
    run = day.reconcile()
    assert run.status == ReconciliationRun.Status.REFUSED and "交易合计" in run.error
    bill = ChannelBill.objects.get(pk=run.bill_id)
    assert bill.status == ChannelBill.Status.REFUSED and bill.line_count == 0
    assert not BillLine.objects.exists() and not Discrepancy.objects.exists()
    assert payment_reconciled_at(paid.pk) is None


def test_the_sweep_waits_for_a_bill_that_is_not_ready_then_reconciles_it(business_day: Callable[..., Day]) -> None:
    day = business_day("wechat")
    paid = day.paid(1000)
    bill = bill_for(account=day.account, bill_date=day.bill_date)
    outcome, next_at = bill_reconcile_due(bill_id=bill.pk)  # the day has not ended at the channel
    assert outcome == "not_ready" and next_at is not None and next_at > datetime.now(UTC)
    assert not ReconciliationRun.objects.exists()
    day.end()
    ChannelBill.objects.filter(pk=bill.pk).update(next_check_at=datetime.now(UTC) - timedelta(seconds=1))
    report = sweep_run(RECONCILE)
    assert report.outcomes.get("succeeded", 0) >= 1 and report.failed == 0
    assert ChannelBill.objects.get(pk=bill.pk).status == ChannelBill.Status.LOADED
    assert payment_reconciled_at(paid.pk) is not None
    again = sweep_run(RECONCILE)
    assert again.claimed == 0 or "succeeded" not in again.outcomes  # a loaded bill is never due again


def test_the_sweep_plans_every_account_and_ended_day(business_day: Callable[..., Day]) -> None:
    day = business_day("points", bill_ready_after_seconds=0)
    report = sweep_run(RECONCILE, now=datetime.now(UTC))
    days = set(ChannelBill.objects.filter(channel_account=day.account).values_list("bill_date", flat=True))
    assert len(days) == 3 and report.failed == 0


def test_the_command_reconciles_a_day_and_reports_it(business_day: Callable[..., Day]) -> None:
    day = business_day("points")
    day.paid(1000)
    day.end()
    out = io.StringIO()
    call_command("reconcile", "--account", str(day.account.pk), "--date", day.bill_date.isoformat(), stdout=out)
    assert re.search(r"run \d+ SUCCEEDED: lines=1 matched=1 held=0 discrepancies=0", out.getvalue())


@pytest.fixture
def ops() -> Client:
    user = get_user_model().objects.create_superuser("ops", "ops@example.com", "pw-ops-123")
    client = Client()
    client.force_login(user)
    return client


def test_ops_apply_the_channels_truth_resolve_export_and_see_the_console(
    business_day: Callable[..., Day], ops: Client
) -> None:
    day = business_day("wechat")
    day.paid(1000)
    unseen = day.unpaid(1500)
    pay_at_sandbox(day.gateway, unseen)  # paid at the channel, the notification lost
    day.fault("bill_extra", trade="SBXEXTRA0009", amount=300)
    day.end()
    run = day.reconcile()
    assert found(run) == {("STATUS_MISMATCH", f"P:{unseen.payment_no}"), ("MISSING_LOCALLY", "P:SBXEXTRA0009")}
    mismatch = Discrepancy.objects.get(kind="STATUS_MISMATCH")
    extra = Discrepancy.objects.get(kind="MISSING_LOCALLY")
    changelist = reverse("admin:reconciliation_discrepancy_changelist")

    response = ops.post(
        changelist, {"action": "apply_channel_truth", "_selected_action": [mismatch.pk], "note": "lost notify"}
    )
    assert response.status_code == 302
    mismatch.refresh_from_db()
    assert Payment.objects.get(pk=unseen.pk).status == Payment.Status.SUCCEEDED
    assert mismatch.status == Discrepancy.Status.RESOLVED and mismatch.resolved_by == "ops:ops"
    assert mismatch.actions.get().actor == "ops:ops"

    ops.post(changelist, {"action": "mark_ignored", "_selected_action": [extra.pk], "note": ""})
    assert Discrepancy.objects.get(pk=extra.pk).status == Discrepancy.Status.OPEN  # a note is required
    ops.post(changelist, {"action": "mark_ignored", "_selected_action": [extra.pk], "note": "sandbox ghost"})
    extra.refresh_from_db()
    assert (extra.status, extra.resolution_note, extra.resolved_by) == ("IGNORED", "sandbox ghost", "ops:ops")

    page = ops.get(changelist + "?status__exact=IGNORED&kind__exact=MISSING_LOCALLY")
    assert page.status_code == 200 and "3.00 CNY" in page.content.decode()
    run_page = ops.get(reverse("admin:reconciliation_reconciliationrun_change", args=[run.pk])).content.decode()
    assert "2 discrepancies" in run_page and "10.00 CNY" in run_page
    export = ops.get(reverse("admin:reconciliation_reconciliationrun_csv", args=[run.pk]))
    rows = b"".join(export.streaming_content).decode().splitlines()
    assert rows[0].startswith("id,bill_date,account,kind") and len(rows) == 3
    assert ops.get(reverse("admin:reconciliation_reconciliationrun_changelist")).status_code == 200
    assert ops.get(reverse("admin:reconciliation_channelbill_changelist")).status_code == 200

    index = ops.get(reverse("admin:index")).content.decode()
    assert "What needs a person" in index and reverse("admin:reconciliation_console") in index
    console = ops.get(reverse("admin:reconciliation_console")).content.decode()
    assert "<svg" in console and "wechat (CNY)" in console and "matched vs discrepant" in console
