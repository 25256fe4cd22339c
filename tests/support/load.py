"""Concurrent callers: HTTP clients for the load run (`tests/test_load.py`: counts first, timings
printed) and calls released together for the tests that race.

- `run_concurrently(jobs, clients, call)`: *clients* threads take jobs from one queue in order
  (adjacent jobs start at nearly the same moment on different threads: that is how a repeat races
  its original) and call ``call(connection, job)`` with a keep-alive `Connection` of their own.
- `all_at_once(call, args)`: ``call(arg)`` for every arg on threads released together (a cold
  cache or an idle pool meeting several callers at the same moment); the results in order.
- `Connection`: one keep-alive HTTP/1.1 connection to a loopback server, reopened after an error.
- `Timings`: latencies collected thread-safely; `summary()` is the line a benchmark record keeps
  (requests/s, p50, p95). Nothing here asserts a time.
"""

from __future__ import annotations

import http.client
import json
import queue
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

Job = TypeVar("Job")
Result = TypeVar("Result")
ALL_AT_ONCE_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Answer:
    """One HTTP answer: status, parsed JSON body (None when not JSON) and the raw text."""

    status: int
    body: Any
    text: str
    retry_after: str | None = None


class Connection:
    """A keep-alive connection to ``127.0.0.1:port``; `post` reconnects once after a drop."""

    def __init__(self, port: int, timeout_s: float = 60.0) -> None:
        self._port = port
        self._timeout_s = timeout_s
        self._conn: http.client.HTTPConnection | None = None

    def post(self, path: str, body: bytes, headers: Mapping[str, str]) -> Answer:
        for attempt in range(2):
            if self._conn is None:
                self._conn = http.client.HTTPConnection(
                    "127.0.0.1", self._port, timeout=self._timeout_s
                )
            try:
                self._conn.request("POST", path, body=body, headers=dict(headers))
                response = self._conn.getresponse()
                raw = response.read()
            except (http.client.HTTPException, ConnectionError):
                # The server closed an idle keep-alive connection between two requests: that
                # request never reached it, so sending it again repeats nothing.
                self.close()
                if attempt:
                    raise
                continue
            text = raw.decode("utf-8", "replace")
            try:
                parsed = json.loads(text) if text else None
            except ValueError:
                parsed = None
            return Answer(response.status, parsed, text, response.getheader("Retry-After"))
        raise AssertionError("unreachable")

    def post_json(
        self, path: str, payload: Any, headers: Mapping[str, str] | None = None
    ) -> Answer:
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        return self.post(path, json.dumps(payload).encode("utf-8"), all_headers)

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@dataclass
class Timings:
    """Latencies of one phase; `summary()` prints throughput and percentiles."""

    name: str
    latencies_s: list[float] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, seconds: float) -> None:
        with self._lock:
            self.latencies_s.append(seconds)

    def stop(self) -> None:
        self.ended = time.monotonic()

    def summary(self) -> str:
        wall = (self.ended or time.monotonic()) - self.started
        values = sorted(self.latencies_s)
        if not values:
            return f"{self.name}: no requests"
        cuts = statistics.quantiles(values, n=20) if len(values) > 1 else [values[0]] * 19
        return (
            f"{self.name}: {len(values)} requests in {wall:.1f} s = {len(values) / wall:.0f} req/s;"
            f" p50 {statistics.median(values) * 1000:.0f} ms, p95 {cuts[18] * 1000:.0f} ms"
        )


def run_concurrently(
    jobs: Iterable[Job],
    clients: int,
    port: int,
    call: Callable[[Connection, Job], None],
) -> None:
    """Run *call* for every job on *clients* threads; re-raise the first error after all end."""
    work: queue.Queue[Job] = queue.Queue()
    for job in jobs:
        work.put(job)
    errors: list[BaseException] = []

    def worker() -> None:
        connection = Connection(port)
        try:
            while not errors:
                try:
                    job = work.get_nowait()
                except queue.Empty:
                    return
                call(connection, job)
        except BaseException as exc:  # noqa: BLE001 - handed to the test thread below
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=worker, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]


def all_at_once(call: Callable[[Job], Result], args: list[Job]) -> list[Result]:
    """``call(arg)`` for each of *args*, every call on its own thread, released together by a
    barrier; the results in the order of *args*. The first error is re-raised after all end."""
    start = threading.Barrier(len(args))
    results: dict[int, Result] = {}
    errors: list[BaseException] = []

    def run(index: int, arg: Job) -> None:
        start.wait()
        try:
            results[index] = call(arg)
        except BaseException as exc:  # noqa: BLE001 - handed to the caller below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=item, daemon=True) for item in enumerate(args)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=ALL_AT_ONCE_TIMEOUT_S)
    if errors:
        raise errors[0]
    if len(results) != len(args):
        raise TimeoutError(
            f"{len(args) - len(results)} calls still running after {ALL_AT_ONCE_TIMEOUT_S:.0f} s"
        )
    return [results[index] for index in range(len(args))]
