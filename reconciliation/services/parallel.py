"""Work a reconciliation spreads over several database connections, one thread each.

A million-line bill keeps one PostgreSQL backend busy for seconds at a time, and one backend
uses one core: the load's chunks and the match's payment halves are independent, so they run on
connections of their own while this thread's connection does the rest. When other connections
could not see what this one has written and not committed yet (a caller's transaction, e.g. a
test's), the same work runs here, one piece after the other.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from contextvars import copy_context
from typing import Generic, TypeVar

from django.db import connection

T = TypeVar("T")


def _others_see_this_connection() -> bool:
    """Whether another connection sees what this one wrote: it is in no transaction, or only in
    a durable one (opened by the service itself, which knows what it wrote there)."""
    blocks = connection.atomic_blocks
    return not blocks or bool(getattr(blocks[0], "durable", False))


class Helpers(Generic[T]):
    """``tasks`` started at once, each on a thread with its own connection (closed when it
    ends, taking its temporary tables along); or run in turn on this thread's connection by
    ``results()`` when there is one task, or when other connections would not see what this one
    has written (a caller's transaction). Phases the tasks time add to the caller's recording.

    Use it as a context manager: leaving the block waits for every thread, even when the
    caller failed first, so no helper goes on writing after the caller's transaction (and the
    locks it holds) has ended."""

    def __init__(self, tasks: Sequence[Callable[[], T]]) -> None:
        self.tasks = list(tasks)
        self.here = len(self.tasks) == 1 or not _others_see_this_connection()
        self._results: list[T | None] = [None] * len(self.tasks)
        self._errors: list[BaseException] = []
        self._threads: list[threading.Thread] | None = None

    def __enter__(self) -> Helpers[T]:
        self._ensure_started()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._join()

    def _start(self, index: int, task: Callable[[], T]) -> threading.Thread:
        def work() -> None:
            try:
                self._results[index] = task()
            except BaseException as exc:
                self._errors.append(exc)
            finally:
                connection.close()

        thread = threading.Thread(target=copy_context().run, args=(work,), daemon=True)
        thread.start()
        return thread

    def _ensure_started(self) -> None:
        if self._threads is None:
            self._threads = [] if self.here else [self._start(i, task) for i, task in enumerate(self.tasks)]

    def _join(self) -> None:
        for thread in self._threads or ():
            thread.join()

    def results(self) -> list[T]:
        """Every task's result, in order, once all have ended; the first failure raised."""
        if self.here:
            return [task() for task in self.tasks]
        self._ensure_started()
        self._join()
        if self._errors:
            raise self._errors[0]
        return self._results  # type: ignore[return-value]  # every task returned
