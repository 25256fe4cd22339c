"""The two functions under measurement as functions-framework processes, and what /proc says
about them.

- ``SMTP_SENDER``: ``main.py`` ``send_http`` (smtp-sender itself);
- ``SEED``: ``bench/seed_function.py`` ``send`` (the seed's way: a session per message).
"""

from __future__ import annotations

import json
import time
import urllib.error
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.stack import BenchError, Stack
from tests.support.ff_process import MAIN_PY, PROJECT_ROOT, FunctionsFrameworkProcess, HttpResult

FIRST_SEND_TIMEOUT_S = 60.0
FIRST_SEND_POLL_S = 0.01
# The seed function and a possible future batch both answer within this on a sane machine.
REQUEST_TIMEOUT_S = 600.0


@dataclass(frozen=True)
class Function:
    """A function's source and entry point."""

    label: str
    source: Path
    target: str


SMTP_SENDER = Function("smtp-sender", MAIN_PY, "send_http")
SEED = Function("seed", PROJECT_ROOT / "bench" / "seed_function.py", "send")


def message(tag: str, index: int) -> dict[str, Any]:
    """The one message every measurement sends (recipient and subject tell them apart)."""
    return {
        "to": f"bench-{tag}@example.net",
        "subject": f"bench {tag} {index}",
        "text": "Disk usage crossed 91% on db-1.\nSee the dashboard for details.\n",
    }


def process_env(stack: Stack, threads: int, extra: dict[str, str]) -> dict[str, str]:
    """The stack's variables plus gunicorn's thread count (one worker, as on Cloud Run)."""
    return stack.function_env(WORKERS="1", THREADS=str(threads), **extra)


def server(
    stack: Stack, function: Function, threads: int, extra: dict[str, str]
) -> FunctionsFrameworkProcess:
    """*function* as a process, not started yet: ``with server(...) as f:`` spawns it, waits
    until it answers HTTP, and stops it on the way out."""
    return FunctionsFrameworkProcess(
        function.target,
        env=process_env(stack, threads, extra),
        log_dir=stack.workdir / "functions",
        source=function.source,
    )


def send_ok(process: FunctionsFrameworkProcess, payload: dict[str, Any], path: str = "/") -> None:
    """POST one message; anything but 200 ``sent`` stops the benchmark (its numbers would lie)."""
    result = process.post_json(path, payload)
    if result.status != 200 or _field(result, "status") != "sent":
        raise BenchError(f"{path}: HTTP {result.status} {describe(result)}")


def post(process: FunctionsFrameworkProcess, path: str, payload: Any) -> HttpResult:
    """POST JSON with a long timeout (a batch may take a while); the answer, whatever it is."""
    body = json.dumps(payload).encode("utf-8")
    headers = {"Content-Type": "application/json"}
    return process.request("POST", path, body, headers, timeout=REQUEST_TIMEOUT_S)


def _field(result: HttpResult, name: str) -> Any:
    try:
        document = result.json()
    except ValueError:
        return None
    return document.get(name) if isinstance(document, dict) else None


def describe(result: HttpResult) -> str:
    """What went wrong, from the JSON error fields (never a message body: none is echoed)."""
    fields = ("status", "error", "detail", "hint")
    found = {name: _field(result, name) for name in fields if _field(result, name) is not None}
    return json.dumps(found, ensure_ascii=False) if found else result.text[:200]


class FirstSendProcess(FunctionsFrameworkProcess):
    """A process whose `start` returns only once its first send was answered 200: timing
    ``start()`` measures spawn -> first email accepted (what a cold instance's first caller
    waits). The send is retried every 10 ms while nothing listens yet."""

    def __init__(
        self, stack: Stack, function: Function, threads: int, extra: dict[str, str]
    ) -> None:
        super().__init__(
            function.target,
            env=process_env(stack, threads, extra),
            log_dir=stack.workdir / "functions",
            source=function.source,
            start_timeout=FIRST_SEND_TIMEOUT_S,
        )
        self.first_message = message(f"cold-{function.label}", 0)

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BenchError(f"{self.target} exited on start:\n{self.output()[-2000:]}")
            try:
                send_ok(self, self.first_message)
            except (urllib.error.URLError, ConnectionError):
                time.sleep(FIRST_SEND_POLL_S)
                continue
            return
        raise BenchError(f"{self.target}: no first send within {self.start_timeout:.0f} s")


def worker_pid(arbiter_pid: int) -> int:
    """The gunicorn worker (the arbiter's only child) that runs the function's code."""
    children = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit() and _status(int(entry.name)).get("PPid") == str(arbiter_pid):
            children.append(int(entry.name))
    if len(children) != 1:
        raise BenchError(f"expected one gunicorn worker under {arbiter_pid}, found {children}")
    return children[0]


def _status(pid: int) -> dict[str, str]:
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:  # gone meanwhile
        return {}
    fields = (line.partition(":") for line in text.splitlines())
    return {key: value.strip() for key, _, value in fields}


@dataclass(frozen=True)
class ProcessUsage:
    """A process's resident memory, threads and open file descriptors at one moment."""

    rss_kib: int
    threads: int
    fds: int


def usage(pid: int) -> ProcessUsage:
    """Read /proc/PID/status (VmRSS, Threads) and /proc/PID/fd."""
    status = _status(pid)
    if "VmRSS" not in status:
        raise BenchError(f"process {pid} is gone")
    return ProcessUsage(
        rss_kib=int(status["VmRSS"].split()[0]),
        threads=int(status["Threads"]),
        fds=sum(1 for _ in Path(f"/proc/{pid}/fd").iterdir()),
    )
