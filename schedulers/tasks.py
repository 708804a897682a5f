"""The beat's one task: run a sweep by name. Thin on purpose: each sweep is idempotent and safe
to run on many workers at once (paycore.sweeps), so the beat may fire it as often as it likes."""

from __future__ import annotations

from typing import Any

from celery import shared_task


# Generous limits: a sweep stops claiming more rows after its own time budget, but one row (a
# day's bill of a million lines) may take minutes; its lease outlasts these limits.
@shared_task(name="paycore.sweeps.run", soft_time_limit=1800, time_limit=1900)
def sweep_run(name: str) -> dict[str, Any]:
    from paycore.sweeps import sweep_run as run_one
    from schedulers.registry import SWEEPS

    reports = [run_one(sweep) for sweep in SWEEPS[name]]
    return {r.name: {"claimed": r.claimed, "worked": r.worked, "failed": r.failed} for r in reports}
