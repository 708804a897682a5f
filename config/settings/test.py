"""Tests run on PostgreSQL and Redis (DATABASE_URL / REDIS_URL from scripts/test.sh)."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/paycore")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from config.settings.base import *  # noqa: F403

PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Tasks enqueued after commit run in-process so a test sees their effect; the broker itself is
# exercised by tests/schedulers with a real worker.
CELERY_TASK_ALWAYS_EAGER = True
LOGGING["root"]["level"] = "WARNING"  # type: ignore[index]  # noqa: F405
# The suite provisions channel accounts on the sandbox gateway, whatever DEBUG says.
if "sandbox.provisioning" not in INSTALLED_APPS:  # noqa: F405
    INSTALLED_APPS.append("sandbox.provisioning")  # noqa: F405
# Tests change accounts between callbacks of one live server: read them afresh every time
# (tests/inbox covers the cache itself).
INBOX_ACCOUNT_CACHE_SECONDS = 0
