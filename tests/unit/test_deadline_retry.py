"""`Deadline.retry`: transient errors are retried with backoff, within what is left, never past."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from sender.deadline import Deadline
from sender.errors import TransientError


class Flaky(Exception):
    """An error the caller calls transient."""


def deadline(seconds: float) -> Deadline:
    return Deadline(seconds, expired=lambda: TransientError("too late"))


def failing(times: int, error: Exception) -> tuple[list[float], Callable[[float], str]]:
    timeouts: list[float] = []

    def call(timeout: float) -> str:
        timeouts.append(timeout)
        if len(timeouts) <= times:
            raise error
        return "done"

    return timeouts, call


def retry(limit: Deadline, call: Callable[[float], str]) -> str:
    return limit.retry(
        call,
        transient=lambda exc: isinstance(exc, Flaky),
        first_delay_s=0.01,
        max_delay_s=0.02,
    )


def test_transient_errors_are_retried_until_the_call_succeeds() -> None:
    timeouts, call = failing(2, Flaky())
    assert retry(deadline(5), call) == "done"
    assert len(timeouts) == 3
    assert all(0 < t <= 5 for t in timeouts)
    assert timeouts == sorted(timeouts, reverse=True)  # each attempt gets only what is left


def test_an_error_that_is_not_transient_is_raised_at_once() -> None:
    timeouts, call = failing(5, ValueError("bad request"))
    with pytest.raises(ValueError, match="bad request"):
        retry(deadline(5), call)
    assert len(timeouts) == 1


def test_no_retry_is_started_that_the_deadline_cannot_wait_for() -> None:
    timeouts, call = failing(100, Flaky())
    with pytest.raises(Flaky):
        retry(deadline(0.1), call)
    assert 1 <= len(timeouts) < 10  # backoff 0.01, 0.02, 0.02 ... stops before the end
