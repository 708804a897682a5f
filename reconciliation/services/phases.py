"""Where a reconciliation's time goes, phase by phase: ``recording()`` collects, ``phase()`` times.

A million-line bill spends its time in a handful of SQL statements and in reading the file;
when one of them grows faster than the bill (a plan gone wrong), the total alone does not say
which. The load and the match time their steps with ``phase(name)``; nothing is kept unless a
caller asked with ``recording()`` (the bench prints it; ``reconcile_day`` logs it), so the cost
outside a recording is one clock read and a context-variable lookup per step. Helper threads
(``parallel``) run in a copy of the caller's context, so their phases add to the same recording:
such a phase's figure is the sum over the threads, not the time the caller waited.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar

_current: ContextVar[dict[str, float] | None] = ContextVar("reconciliation_phases", default=None)
_adding = threading.Lock()  # helper threads add to one recording


@contextmanager
def recording() -> Iterator[dict[str, float]]:
    """Collect the seconds of every ``phase`` run inside, by name (repeated names add up).
    A recording inside another one adds to the outer's dict, so nobody loses figures."""
    outer = _current.get()
    phases: dict[str, float] = outer if outer is not None else {}
    token = _current.set(phases)
    try:
        yield phases
    finally:
        _current.reset(token)


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Time the block as ``name`` in the current recording, if any."""
    phases = _current.get()
    if phases is None:
        yield
        return
    started = time.perf_counter()
    try:
        yield
    finally:
        _add_to(phases, name, time.perf_counter() - started)


def add(name: str, seconds: float) -> None:
    """Add time measured elsewhere (e.g. inside a COPY's reads) to ``name``."""
    phases = _current.get()
    if phases is not None:
        _add_to(phases, name, seconds)


def _add_to(phases: dict[str, float], name: str, seconds: float) -> None:
    with _adding:
        phases[name] = phases.get(name, 0.0) + seconds


def summary(phases: dict[str, float]) -> str:
    """``name=1.23s`` pairs in the order the phases first ran."""
    return " ".join(f"{name}={seconds:.2f}s" for name, seconds in phases.items())
