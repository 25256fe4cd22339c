"""Driving a function over HTTP: sequentially, or from several clients at once, timing each send."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from bench.functions import message, send_ok
from tests.support.ff_process import FunctionsFrameworkProcess


@dataclass(frozen=True)
class Run:
    """*count* messages sent in *wall_s* seconds; *latencies_s* per send, as the client saw it."""

    count: int
    wall_s: float
    latencies_s: tuple[float, ...]

    @property
    def per_message_ms(self) -> float:
        """Wall time per message: the inverse of throughput."""
        return 1000 * self.wall_s / self.count

    @property
    def throughput(self) -> float:
        """Messages per second."""
        return self.count / self.wall_s

    @property
    def p50_ms(self) -> float:
        return 1000 * statistics.median(self.latencies_s)

    @property
    def p95_ms(self) -> float:
        ordered = sorted(self.latencies_s)
        return 1000 * ordered[round(0.95 * (len(ordered) - 1))]


def timed(send: Callable[[int], None], count: int, clients: int = 1) -> Run:
    """Call ``send(i)`` for i in 0..count-1 from *clients* threads (1 = in this thread, one
    after another); time each call and the whole."""

    def one(index: int) -> float:
        started = time.perf_counter()
        send(index)
        return time.perf_counter() - started

    started = time.perf_counter()
    if clients == 1:
        latencies = [one(i) for i in range(count)]
    else:
        with ThreadPoolExecutor(max_workers=clients, thread_name_prefix="client") as pool:
            latencies = list(pool.map(one, range(count)))
    return Run(count, time.perf_counter() - started, tuple(latencies))


def over_http(process: FunctionsFrameworkProcess, tag: str, count: int, clients: int = 1) -> Run:
    """*count* single-message POSTs to *process* from *clients* concurrent clients."""
    return timed(lambda i: send_ok(process, message(tag, i)), count, clients)


def warm_up(process: FunctionsFrameworkProcess, tag: str, clients: int = 1) -> None:
    """A few untimed sends from *clients* clients: the secret is read, caches are filled and (with
    a pool) as many sessions opened as those clients need."""
    over_http(process, f"{tag}-warm-up", 5 * clients, clients)
