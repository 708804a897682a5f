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
