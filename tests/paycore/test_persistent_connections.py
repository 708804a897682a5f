"""Production keeps its database connections: CONN_MAX_AGE with health checks outside DEBUG, and
the system check paycore.W002 warns when someone turns that off."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from paycore.checks import check_persistent_connections

ROOT = Path(__file__).resolve().parents[2]


def _production_database(**env: str) -> dict[str, Any]:
    """DATABASES['default'] as config.settings.base builds it from this environment."""
    code = (
        "import json; from config.settings import base; d = base.DATABASES['default']; "
        "print(json.dumps({k: d.get(k) for k in ('CONN_MAX_AGE', 'CONN_HEALTH_CHECKS', "
        "'DISABLE_SERVER_SIDE_CURSORS')}))"
    )
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("DATABASE_", "DEBUG"))}
    out = subprocess.run(
        [sys.executable, "-c", code],
        cwd=ROOT,
        env={**clean, "DATABASE_URL": "postgres://u@127.0.0.1:5432/db", **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_production_settings_keep_connections_with_health_checks() -> None:
    assert _production_database(DEBUG="false") == {
        "CONN_MAX_AGE": 600,
        "CONN_HEALTH_CHECKS": True,
        "DISABLE_SERVER_SIDE_CURSORS": False,
    }


def test_development_settings_close_connections_and_a_pooler_can_be_configured() -> None:
    assert _production_database(DEBUG="true")["CONN_MAX_AGE"] == 0
    behind_pgbouncer = _production_database(
        DEBUG="false", DATABASE_CONN_MAX_AGE="0", DATABASE_DISABLE_SERVER_SIDE_CURSORS="true"
    )
    assert behind_pgbouncer["CONN_MAX_AGE"] == 0 and behind_pgbouncer["DISABLE_SERVER_SIDE_CURSORS"] is True


@pytest.mark.parametrize(
    ("debug", "conn_max_age", "warned"),
    [(False, 0, True), (False, 600, False), (True, 0, False)],
)
def test_w002_warns_only_when_production_drops_connections(
    settings: Any, monkeypatch: Any, debug: bool, conn_max_age: int, warned: bool
) -> None:
    settings.DEBUG = debug
    monkeypatch.setitem(settings.DATABASES["default"], "CONN_MAX_AGE", conn_max_age)
    problems = check_persistent_connections(None)
    assert [p.id for p in problems] == (["paycore.W002"] if warned else [])
