"""`AlarmClock`: one thread that runs callbacks at their times, for every deadline of an instance.

A send's watchdog must act while the code it guards is blocked in a socket read (a server that
drips one byte a second never trips a per-read timeout). A `threading.Timer` per SMTP transaction
did that at the price of a thread start each time (about 0.6 ms here, as much as the rest of a
pooled send). One thread, sleeping until the earliest alarm, serves all of them; it is started on
first use and kept by `sender.instance`.

Nothing between requests depends on it: with no alarm set it waits on a condition, so a CPU
throttled between requests (Cloud Run) costs nothing. An alarm that is cancelled never runs
afterwards, and `cancel` waits for one that is running: after it returns, the guarded socket is
the caller's alone (a pooled session must never be cut during its next transaction).
"""

from __future__ import annotations

import heapq
import itertools
import threading
import time
from collections.abc import Callable


class Alarm:
    """One callback due at a time; `cancel()` it when the guarded work ended in time."""

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback = callback
        self._lock = threading.Lock()  # held while the callback runs, and to cancel
        self._done = False  # ran or cancelled

    def cancel(self) -> None:
        with self._lock:
            self._done = True

    def ring(self) -> None:
        """Run the callback unless cancelled (the clock's thread calls this at its time)."""
        with self._lock:
            if self._done:
                return
            self._done = True
            self._callback()

    @property
    def cancelled_or_rung(self) -> bool:
        return self._done


class AlarmClock:
    """Rings alarms at their `time.monotonic()` times, from one daemon thread; thread-safe."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._changed = threading.Condition()
        self._due: list[tuple[float, int, Alarm]] = []  # a heap, earliest first
        self._order = itertools.count()  # breaks ties without comparing alarms
        self._thread: threading.Thread | None = None
        self._closed = False

    def set(self, at: float, callback: Callable[[], None]) -> Alarm:
        """Call `callback` (on the clock's thread) at monotonic time `at`, unless cancelled."""
        alarm = Alarm(callback)
        with self._changed:
            heapq.heappush(self._due, (at, next(self._order), alarm))
            if self._thread is None:
                self._thread = threading.Thread(target=self._run, name="alarm-clock", daemon=True)
                self._thread.start()
            self._changed.notify()
        return alarm

    def close(self) -> None:
        """Stop the thread; alarms still set never ring (`sender.instance.reset`)."""
        with self._changed:
            self._closed = True
            self._changed.notify()

    def _next_due(self) -> Alarm | None:
        """Wait until the earliest live alarm is due and take it off the heap (None: closed)."""
        with self._changed:
            while not self._closed:
                while self._due and self._due[0][2].cancelled_or_rung:
                    heapq.heappop(self._due)  # cancelled: dropped when it comes up
                if not self._due:
                    self._changed.wait()
                    continue
                left = self._due[0][0] - self._clock()
                if left <= 0:
                    return heapq.heappop(self._due)[2]
                self._changed.wait(left)
            return None

    def _run(self) -> None:
        while (alarm := self._next_due()) is not None:
            try:
                alarm.ring()
            except Exception:  # noqa: BLE001, S112 - one failing callback must not stop the clock
                continue
