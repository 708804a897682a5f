"""Hand a stored notification to the apply task without making the channel wait on the broker.

The callback answers as soon as its row is committed; publishing the Celery message happens on a
per-process background thread. Publishing costs about a millisecond of CPU, as much as the rest
of a callback's own work, so a request only appends the id to this process's outbox (no lock, no
wake-up) and the thread looks every ``_WINDOW`` (0.1 s), sending what it finds as one message
(``paycore.notifications.process_many``, at most ``_BATCH`` ids): one message per notification
when traffic is light, one per several under load, at most a tenth of a second later. If the
broker is slow or down, or the process dies with ids still queued, nothing is lost: the row is
verified and unapplied, and the inbox sweep applies it (its first look is ``backoff(2)`` after
receipt). With ``CELERY_TASK_ALWAYS_EAGER`` (tests, a
development run without a broker) the task runs inline after commit, as before.
"""

from __future__ import annotations

import atexit
import collections
import logging
import os
import threading
import time

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

_MAX_QUEUED = 10_000  # past this the sweep is the better path anyway
_BATCH = 16  # ids per message at most, so that several worker processes share a burst
_WINDOW = 0.1  # seconds between the publisher's looks at what the requests left for it
_DRAIN_AT_EXIT_SECONDS = 2.0


class _Outbox:
    """Ids the requests of this process left to publish. A request only appends (no lock, no
    wake-up: it never waits on the publisher); the publisher thread looks every ``_WINDOW``."""

    def __init__(self) -> None:
        self.ids: collections.deque[int] = collections.deque()
        self.in_flight = 0
        self.pid = os.getpid()
        threading.Thread(target=self._serve, name="inbox-dispatch", daemon=True).start()

    def add(self, notification_id: int) -> None:
        if len(self.ids) >= _MAX_QUEUED:
            log.warning("dispatch queue full: notification %s is left to the inbox sweep", notification_id)
            return
        self.ids.append(notification_id)

    def pending(self) -> int:
        return len(self.ids) + self.in_flight

    def _serve(self) -> None:
        while True:
            time.sleep(_WINDOW)
            while self.ids:
                self.in_flight = 1  # busy before the ids leave the deque, so pending() never reads 0
                batch: list[int] = []
                while self.ids and len(batch) < _BATCH:
                    batch.append(self.ids.popleft())
                try:
                    _publish(batch)
                finally:
                    self.in_flight = 0


_lock = threading.Lock()
_outbox: _Outbox | None = None


def notification_dispatch(notification_id: int) -> None:
    """After the current transaction commits (at once in autocommit), get the apply task published."""
    transaction.on_commit(lambda: _publish_soon(notification_id))


def _publish_soon(notification_id: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        _publish([notification_id])
        return
    _process_outbox().add(notification_id)


def _process_outbox() -> _Outbox:
    """This process's outbox and publisher thread, started on first use (after a fork, anew)."""
    global _outbox
    outbox = _outbox
    if outbox is not None and outbox.pid == os.getpid():
        return outbox
    with _lock:
        if _outbox is None or _outbox.pid != os.getpid():
            _outbox = _Outbox()
        return _outbox


def _publish(ids: list[int]) -> None:
    from inbox.tasks import notification_process as notification_process_task
    from inbox.tasks import notifications_process as notifications_process_task

    try:
        if len(ids) == 1:
            notification_process_task.delay(ids[0])
        else:
            notifications_process_task.delay(ids)
    except Exception as exc:  # the broker's trouble must not reach the channel: the sweep applies it
        log.warning("could not publish notifications %s (%s); the inbox sweep will apply them", ids, exc)


@atexit.register
def _drain_at_exit() -> None:
    """A worker that stops (max-requests, a deploy) publishes what it still holds, briefly."""
    dispatch_idle(timeout=_DRAIN_AT_EXIT_SECONDS)


def dispatch_idle(timeout: float = 5.0) -> bool:
    """Whether everything this process was left to publish has been published (tests, benches)."""
    outbox = _outbox
    if outbox is None or outbox.pid != os.getpid():
        return True
    deadline = time.monotonic() + timeout
    while outbox.pending():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
