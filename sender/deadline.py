"""`Deadline`: one absolute time budget shared by every step of a piece of work.

A send has one (`SEND_DEADLINE_S`: secret read, SMTP session, a rotation retry); each Firestore
ledger operation has its own. Whoever creates a deadline says which error its expiry is, so a
step that finds no time left raises what that piece of work means by "too late".
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Protocol, TypeVar

from sender.alarm_clock import AlarmClock
from sender.errors import SendError

T = TypeVar("T")


class Cancellable(Protocol):
    def cancel(self) -> None: ...


class Deadline:
    """Ends `total_s` seconds after creation.

    `left()` is the plain number of seconds still available (zero or negative once passed);
    `budget()` is what the next blocking step may use: at most `step_s` (when given) and at most
    what is left, raising the deadline's own error when nothing is left. `call_at_expiry` rings
    a watchdog at the end, on the instance's `alarms` clock when one is given (the clock of a
    deadline with alarms must be `time.monotonic`, the alarm clock's).
    """

    def __init__(
        self,
        total_s: float,
        *,
        expired: Callable[[], SendError],
        step_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        alarms: AlarmClock | None = None,
    ) -> None:
        self._alarms = alarms
        self._clock = clock
        self._ends_at = clock() + total_s
        self._expired = expired
        self._step_s = step_s

    def left(self) -> float:
        return self._ends_at - self._clock()

    def budget(self, cap: float | None = None) -> float:
        """Seconds for the next step; raises the deadline's error when none are left."""
        left = self.left()
        if left <= 0:
            raise self._expired()
        limits = [left] + [c for c in (cap, self._step_s) if c is not None]
        return min(limits)

    def retry(
        self,
        call: Callable[[float], T],
        *,
        transient: Callable[[Exception], bool],
        first_delay_s: float,
        max_delay_s: float,
    ) -> T:
        """`call(timeout)`, retried with exponential backoff while it raises an error that
        `transient` accepts and the deadline leaves room for the next wait.

        Every attempt gets only what is left (`budget`), unlike a client library's own retry,
        whose timeout restarts per attempt (callers switch that off with ``retry=None``).
        """
        delay = first_delay_s
        while True:
            try:
                return call(self.budget())
            except Exception as exc:
                if not transient(exc) or self.left() <= delay:
                    raise
            time.sleep(delay)
            delay = min(delay * 2, max_delay_s)

    def error(self) -> SendError:
        """The error this deadline's expiry is (for code that notices it by other means)."""
        return self._expired()

    def call_at_expiry(self, callback: Callable[[], None]) -> Cancellable:
        """Run `callback` when the deadline passes, unless the returned handle is cancelled."""
        if self._alarms is not None:
            return self._alarms.set(self._ends_at, callback)
        # Without the instance's clock (`python -m sender check`, tests): a thread of its own.
        timer = threading.Timer(max(self.left(), 0.0), callback)
        timer.daemon = True
        timer.start()
        return timer
