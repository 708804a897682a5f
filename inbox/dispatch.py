"""Hand a stored notification to the apply task without making the channel wait on the broker.

The callback answers as soon as its row is committed; publishing the Celery message happens on a
per-process background thread. Publishing costs about a millisecond of CPU, as much as the rest
of a callback's own work, so the thread gathers what arrives within ``_WINDOW`` (0.1 s) of the first id
and sends it as one message (``paycore.notifications.process_many``, at most ``_BATCH`` ids): one
message per notification when traffic is light, one per several under load, for a few
milliseconds more before the worker starts. If the broker is slow or down, or the process dies with
ids still queued, nothing is lost: the row is verified and unapplied, and the inbox sweep applies
it (its first look is ``backoff(2)`` after receipt). With ``CELERY_TASK_ALWAYS_EAGER`` (tests, a
development run without a broker) the task runs inline after commit, as before.
"""

from __future__ import annotations

import atexit
import logging
import os
import queue
import threading
import time

from django.conf import settings
from django.db import transaction

log = logging.getLogger(__name__)

_MAX_QUEUED = 10_000  # past this the sweep is the better path anyway
_BATCH = 16  # ids per message at most, so that several worker processes share a burst
_WINDOW = 0.1  # seconds the thread waits after an id for more to send with it
_DRAIN_AT_EXIT_SECONDS = 2.0

_lock = threading.Lock()
_queue: queue.Queue[int] | None = None
_pid = 0


def notification_dispatch(notification_id: int) -> None:
    """After the current transaction commits (at once in autocommit), get the apply task published."""
    transaction.on_commit(lambda: _publish_soon(notification_id))


def _publish_soon(notification_id: int) -> None:
    if settings.CELERY_TASK_ALWAYS_EAGER:
        _publish([notification_id])
        return
    try:
        _process_queue().put_nowait(notification_id)
    except queue.Full:
        log.warning("dispatch queue full: notification %s is left to the inbox sweep", notification_id)


def _process_queue() -> queue.Queue[int]:
    """This process's queue and publisher thread, started on first use (after a fork, anew)."""
    global _queue, _pid
    with _lock:
        if _queue is None or _pid != os.getpid():
            _queue, _pid = queue.Queue(maxsize=_MAX_QUEUED), os.getpid()
            threading.Thread(target=_serve, args=(_queue,), name="inbox-dispatch", daemon=True).start()
        return _queue


def _serve(q: queue.Queue[int]) -> None:
    while True:
        ids = [q.get()]
        until = time.monotonic() + _WINDOW
        while len(ids) < _BATCH and (left := until - time.monotonic()) > 0:
            try:
                ids.append(q.get(timeout=left))
            except queue.Empty:
                break
        try:
            _publish(ids)
        finally:
            for _ in ids:
                q.task_done()


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
    q = _queue
    if q is None or _pid != os.getpid():
        return
    deadline = time.monotonic() + _DRAIN_AT_EXIT_SECONDS
    while q.unfinished_tasks and time.monotonic() < deadline:
        time.sleep(0.01)


def dispatch_idle(timeout: float = 5.0) -> bool:
    """Whether everything queued in this process has been published (tests, benches)."""
    deadline = time.monotonic() + timeout
    while _queue is not None and _queue.unfinished_tasks:
        if time.monotonic() > deadline:
            return False
        time.sleep(0.005)
    return True
