"""Bounded waits on what a functions-framework process logged."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from tests.support.ff_process import FunctionsFrameworkProcess

Record = dict[str, Any]


def wait_for_log(
    processes: FunctionsFrameworkProcess | list[FunctionsFrameworkProcess],
    predicate: Callable[[Record], bool],
    *,
    count: int = 1,
    timeout: float = 60.0,
) -> list[Record]:
    """The matching JSON log records once there are at least `count`; fails after `timeout`."""
    group = processes if isinstance(processes, list) else [processes]
    deadline = time.monotonic() + timeout
    while True:
        found = [r for p in group for r in p.log_records() if predicate(r)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            output = "\n".join(p.output()[-3000:] for p in group)
            raise AssertionError(f"expected {count} matching log lines in {timeout} s:\n{output}")
        time.sleep(0.2)


def message_is(text: str) -> Callable[[Record], bool]:
    return lambda record: record.get("message") == text
