"""Seed the beat's schedule (django-celery-beat's tables) from the defaults in code. Runs after
every migrate; creates what is missing and never overwrites what ops changed in the admin."""

from __future__ import annotations

import json
from typing import Any

from schedulers.registry import DEFAULT_INTERVALS


def schedules_seed(*, app_config: Any = None, using: str = "default", **kwargs: Any) -> None:
    if app_config is None or app_config.label != "django_celery_beat":
        return  # post_migrate fires once per app: act once, when the beat's tables exist
    from django_celery_beat.models import IntervalSchedule, PeriodicTask

    for name, every in DEFAULT_INTERVALS.items():
        task_name = f"sweep: {name}"
        if PeriodicTask.objects.filter(name=task_name).exists():
            continue
        interval, _ = IntervalSchedule.objects.get_or_create(
            every=int(every.total_seconds()), period=IntervalSchedule.SECONDS
        )
        PeriodicTask.objects.create(
            name=task_name,
            task="paycore.sweeps.run",
            interval=interval,
            args=json.dumps([name]),
            description=f"paycore's {name} sweep (manage.py sweep {name})",
        )
