"""The Celery application; tasks live in schedulers/tasks.py."""

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "paycore.settings.base")

app = Celery("paycore")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks(["schedulers"])
