"""Tasks really travel through Redis to a Celery worker, and the beat really runs the sweeps (the rest
of the suite runs tasks eagerly and sweeps by hand)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest
from celery.contrib.testing.worker import start_worker
from django.db import connection

from channels.models import ChannelAccount
from config.celery import app
from payments.models import Payment
from payments.tasks import payment_sync
from schedulers.registry import SWEEPS
from tests.factories import let_time_pass, make_payment, pay_at_sandbox, wait_until


@pytest.fixture
def redis_worker(settings: Any) -> Iterator[None]:
    assert app.conf.broker_url.startswith("redis://"), "the suite runs Celery on Redis"
    app.conf.task_always_eager = False
    try:
        with start_worker(app, pool="solo", perform_ping_check=False, shutdown_timeout=10):
            yield
    finally:
        app.conf.task_always_eager = True


@pytest.mark.django_db(transaction=True)
def test_a_sync_task_sent_through_redis_confirms_the_payment(
    wechat_account: ChannelAccount, gateway_client: Any, redis_worker: None
) -> None:
    payment = make_payment(account=wechat_account)
    gateway_client.pay("wechat", payment.payment_no)
    payment_sync.delay(payment.pk)
    assert wait_until(lambda: Payment.objects.get(pk=payment.pk).status == "SUCCEEDED")
    assert payment.events.get(to_status="SUCCEEDED").source == "scheduler"


@contextmanager
def worker_with_beat(tmp_path: Path) -> Iterator[subprocess.Popen[bytes]]:
    """A real worker with an embedded beat, in its own process, on Redis and this test's
    database, reading its schedule from django-celery-beat's tables like production does."""
    db = connection.settings_dict
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings.base",
        "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "REDIS_URL": app.conf.broker_url,
        "PAYCORE_VAR_DIR": str(tmp_path),
        "LOG_LEVEL": "WARNING",
    }
    celery = Path(sys.executable).with_name("celery")
    command = [str(celery), "-A", "config", "worker", "-B", "--pool", "solo", "--without-gossip", "--without-mingle"]
    process = subprocess.Popen(command, env=env, cwd=Path(__file__).resolve().parents[2], stdout=subprocess.DEVNULL)
    try:
        yield process
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()


@pytest.mark.django_db(transaction=True)
def test_the_beat_runs_the_sweeps_on_a_real_worker(
    wechat_account: ChannelAccount, gateway_client: Any, tmp_path: Path
) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    assert PeriodicTask.objects.filter(task="paycore.sweeps.run").update(interval=every_second) == len(SWEEPS)
    payment = make_payment(account=wechat_account)
    pay_at_sandbox(gateway_client, payment)  # the notification is lost: only a sweep can find out
    let_time_pass(payment, seconds=20)
    with worker_with_beat(tmp_path):
        assert wait_until(lambda: Payment.objects.get(pk=payment.pk).status == "SUCCEEDED", timeout=60)
    assert payment.events.get(to_status="SUCCEEDED").source == "scheduler"
