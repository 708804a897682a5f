"""Delayed work: one timer thread feeding a small pool."""

from __future__ import annotations

import heapq
import itertools
import sys
import threading
import time
import traceback
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor


class Scheduler:
    """Runs callables after a delay: one timer thread, a pool for the work itself.

    ``cancel_all`` forgets everything scheduled (used by ``reset``); work already running
    finishes, but callables check ``Sandbox.generation`` before touching state.
    """

    def __init__(self, workers: int = 16) -> None:
        self._heap: list[tuple[float, int, Callable[[], None]]] = []
        self._cond = threading.Condition()
        self._seq = itertools.count()
        self._stopped = False
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="sandbox-work")
        self._thread = threading.Thread(target=self._run, name="sandbox-scheduler", daemon=True)
        self._thread.start()

    def call_later(self, delay: float, fn: Callable[[], None]) -> None:
        with self._cond:
            heapq.heappush(self._heap, (time.monotonic() + max(0.0, delay), next(self._seq), fn))
            self._cond.notify()

    def advance(self, seconds: float) -> None:
        """Bring everything scheduled within the next ``seconds`` (real) forward to now."""
        with self._cond:
            self._heap = [(due - seconds, seq, fn) for due, seq, fn in self._heap]
            heapq.heapify(self._heap)
            self._cond.notify()

    def cancel_all(self) -> None:
        with self._cond:
            self._heap.clear()

    def stop(self) -> None:
        with self._cond:
            self._stopped = True
            self._heap.clear()
            self._cond.notify()
        self._thread.join(timeout=2)
        self._pool.shutdown(wait=False, cancel_futures=True)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._stopped:
                    if not self._heap:
                        self._cond.wait()
                        continue
                    wait = self._heap[0][0] - time.monotonic()
                    if wait <= 0:
                        break
                    self._cond.wait(wait)
                if self._stopped:
                    return
                _, _, fn = heapq.heappop(self._heap)
            try:
                self._pool.submit(_guarded, fn)
            except RuntimeError:  # pool shut down under us
                return


def _guarded(fn: Callable[[], None]) -> None:
    try:
        fn()
    except Exception:
        traceback.print_exc(file=sys.stderr)
