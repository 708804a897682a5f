"""The README's one command runs the service on its embedded defaults: SQLite must take every
migration (PostgreSQL-only SQL in a migration once broke that without any PostgreSQL test
noticing)."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_every_migration_applies_on_sqlite_and_reports_nothing_unapplied(tmp_path: Path) -> None:
    database = tmp_path / "dev.sqlite3"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update({"DATABASE_URL": f"sqlite:///{database}", "DJANGO_SETTINGS_MODULE": "config.settings.base"})
    manage = [sys.executable, "manage.py"]
    subprocess.run([*manage, "migrate", "--no-input", "-v0"], cwd=ROOT, env=env, check=True, timeout=300)
    plan = subprocess.run(
        [*manage, "migrate", "--plan"], cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True
    )
    assert "No planned migration operations" in plan.stdout
    with sqlite3.connect(database) as db:
        tables = {name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"orders_order", "payments_payment", "reconciliation_billline", "inbox_inboundnotification"} <= tables


_ORDER_FLOW = """
import django
django.setup()
from django.core.management import call_command
call_command("migrate", "--no-input", verbosity=0)
from rest_framework.test import APIClient
from orders.models import Order
from orders.services import merchant_create
from paycore.apikeys import api_client_create
merchant_create(code="m1", name="M1")
_, key = api_client_create(name="dev")
api = APIClient()
api.credentials(HTTP_AUTHORIZATION=f"Bearer {key}", HTTP_X_FORWARDED_PROTO="https")
body = {"merchant": "m1", "merchant_order_no": "A1", "customer_ref": "u1", "description": "Tea",
        "currency": "CNY", "items": [{"name": "Tea", "unit_price": 300, "quantity": 2}]}
first = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
again = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k1")
other = api.post("/api/v1/orders", {**body, "merchant_order_no": "A2"}, format="json", HTTP_IDEMPOTENCY_KEY="k1")
repeat = api.post("/api/v1/orders", body, format="json", HTTP_IDEMPOTENCY_KEY="k2")
print(first.status_code, again.status_code, again.get("Idempotent-Replayed"), other.status_code,
      repeat.status_code, repeat.json()["order_no"] == first.json()["order_no"], Order.objects.count(),
      Order.objects.get().items.count())
"""


def test_creating_an_order_works_on_sqlite_too(tmp_path: Path) -> None:
    """The one-statement write of an order is PostgreSQL's; the development default takes the
    transaction path, with the same answers: created, replayed, key reused, repeated number."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "PYTEST"))}
    env.update(
        {"DATABASE_URL": f"sqlite:///{tmp_path / 'dev.sqlite3'}", "DJANGO_SETTINGS_MODULE": "config.settings.base"}
    )
    done = subprocess.run(
        [sys.executable, "-c", _ORDER_FLOW], cwd=ROOT, env=env, check=True, timeout=300, capture_output=True, text=True
    )
    assert done.stdout.split() == ["201", "201", "true", "409", "200", "True", "1", "1"]
