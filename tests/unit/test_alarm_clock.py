"""`AlarmClock`: alarms ring on one thread, in time order; a cancelled alarm never rings, and
cancelling waits for an alarm that is ringing (the socket it guards is then the caller's)."""

from __future__ import annotations

import threading
import time

from sender.alarm_clock import AlarmClock
from sender.deadline import Deadline
from sender.errors import TransientError


def test_alarms_ring_in_time_order_on_one_thread() -> None:
    clock = AlarmClock()
    rang: list[tuple[str, str]] = []
    done = threading.Event()
    now = time.monotonic()
    clock.set(now + 0.10, lambda: rang.append(("late", threading.current_thread().name)))
    clock.set(now + 0.05, lambda: rang.append(("early", threading.current_thread().name)))
    clock.set(now + 0.15, done.set)

    assert done.wait(5)
    assert [name for name, _ in rang] == ["early", "late"]
    assert {thread for _, thread in rang} == {"alarm-clock"}
    clock.close()


def test_a_cancelled_alarm_never_rings() -> None:
    clock = AlarmClock()
    rang = threading.Event()
    later = threading.Event()
    # Half a second ahead: a stalled machine between set and cancel must not let it ring first.
    alarm = clock.set(time.monotonic() + 0.5, rang.set)
    alarm.cancel()
    clock.set(time.monotonic() + 0.6, later.set)

    assert later.wait(5)  # the clock went past the cancelled alarm's time
    assert not rang.is_set()
    clock.close()


def test_cancel_waits_for_an_alarm_that_is_ringing() -> None:
    clock = AlarmClock()
    started, release = threading.Event(), threading.Event()
    finished: list[bool] = []

    def slow() -> None:
        started.set()
        release.wait(5)
        finished.append(True)

    alarm = clock.set(time.monotonic(), slow)
    assert started.wait(5)
    threading.Timer(0.05, release.set).start()
    alarm.cancel()  # returns only once the callback is over
    assert finished == [True]
    clock.close()


def test_close_ends_the_thread_and_nothing_rings_afterwards() -> None:
    clock = AlarmClock()
    rang = threading.Event()
    clock.set(time.monotonic() + 0.5, rang.set)  # far enough ahead to be closed before it
    [thread] = [t for t in threading.enumerate() if t.name == "alarm-clock" and t.is_alive()][-1:]
    clock.close()
    thread.join(5)
    assert not thread.is_alive()
    assert not rang.wait(0.8)


def test_a_deadline_rings_its_watchdog_on_the_clock_or_on_its_own_timer() -> None:
    clock = AlarmClock()
    for alarms in (clock, None):
        rang = threading.Event()
        deadline = Deadline(0.05, expired=lambda: TransientError("late"), alarms=alarms)
        deadline.call_at_expiry(rang.set)
        assert rang.wait(5)
        cancelled = threading.Event()
        # Half a second ahead: a stalled machine between set and cancel must not let it ring.
        Deadline(0.5, expired=lambda: TransientError("late"), alarms=alarms).call_at_expiry(
            cancelled.set
        ).cancel()
        assert not cancelled.wait(0.8)  # past the time it would have rung
    clock.close()
