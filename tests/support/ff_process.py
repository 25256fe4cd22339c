"""functions-framework as a real process, for tests that must see the deployed shape.

::

    with FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path) as ff:
        resp = ff.post_json("/", {"to": ...})
        resp.status, resp.json(), resp.headers["Retry-After"]
        ff.log_records()        # parsed JSON stdout lines
        ff.output()             # stdout + stderr text (for "never contains the password")

    with FunctionsFrameworkProcess("send_pubsub", "cloudevent", env=env, log_dir=d) as ff:
        ff.post_cloudevent({"to": ...}, event_id="42")
        ff.post_push_envelope({"to": ...})

The process runs ``.venv/bin/functions-framework --target T --signature-type S --source
main.py --host 127.0.0.1 --port P`` from the project root with exactly *env* (plus PATH/HOME and
the offline-gcloud variables). `start` waits (bounded) until it answers HTTP; `stop` ends it by PID
(TERM, then KILL), also when start failed.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from email.message import Message
from pathlib import Path
from typing import Any, Self

from tests.support import pubsub
from tests.support.lifecycle import StartStop
from tests.support.loopback import OFFLINE_ENV, free_port

PROJECT_ROOT = Path(__file__).resolve().parents[2]
MAIN_PY = PROJECT_ROOT / "main.py"
FF_BIN = PROJECT_ROOT / ".venv" / "bin" / "functions-framework"


@dataclass(frozen=True)
class HttpResult:
    """A finished HTTP exchange."""

    status: int
    headers: Message
    body: bytes

    def json(self) -> Any:
        """The body parsed as JSON."""
        return json.loads(self.body)

    @property
    def text(self) -> str:
        """The body as text (for "does not contain" checks)."""
        return self.body.decode("utf-8", "replace")


def parse_json_lines(text: str) -> list[dict[str, Any]]:
    """Every line of *text* that is a JSON object (other lines, e.g. gunicorn's, are skipped)."""
    records: list[dict[str, Any]] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line.startswith("{"):
            continue
        try:
            value = json.loads(line)
        except ValueError:
            continue
        if isinstance(value, dict):
            records.append(value)
    return records


class FunctionsFrameworkProcess(StartStop):
    """One functions-framework server process; see the module docstring."""

    def __init__(
        self,
        target: str,
        signature_type: str = "http",
        *,
        env: Mapping[str, str] | None = None,
        log_dir: Path | None = None,
        source: Path = MAIN_PY,
        start_timeout: float = 30.0,
    ) -> None:
        self.target = target
        self.signature_type = signature_type
        self.source = source
        self.start_timeout = start_timeout
        self.port = free_port()
        base = log_dir or Path("/tmp")
        base.mkdir(parents=True, exist_ok=True)
        self.stdout_path = base / f"ff-{target}-{self.port}.stdout.log"
        self.stderr_path = base / f"ff-{target}-{self.port}.stderr.log"
        self.env: dict[str, str] = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "HOME": os.environ.get("HOME", "/tmp"),
            "PYTHONPATH": str(PROJECT_ROOT),
            "PYTHONUNBUFFERED": "1",
            # Keep the machine's two cores for the other test runs.
            "WORKERS": "1",
            "THREADS": "4",
            **OFFLINE_ENV,
            **(env or {}),
        }
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        """The process id while running."""
        return self._proc.pid if self._proc is not None else None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start the process and wait until it answers HTTP (raises with its output if not)."""
        cmd = [
            str(FF_BIN),
            f"--target={self.target}",
            f"--signature-type={self.signature_type}",
            f"--source={self.source}",
            "--host=127.0.0.1",
            f"--port={self.port}",
        ]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self._proc = subprocess.Popen(
                cmd,
                cwd=PROJECT_ROOT,
                env=self.env,
                stdout=out,
                stderr=err,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        try:
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + self.start_timeout
        assert self._proc is not None
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"functions-framework exited with {self._proc.returncode}:\n{self.output()}"
                )
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
            except OSError:
                time.sleep(0.2)
                continue
            # Any HTTP answer means the app is loaded (gunicorn only listens after import).
            self.request("GET", "/", timeout=10)
            return
        raise TimeoutError(f"functions-framework not ready in {self.start_timeout}s")

    def stop(self) -> None:
        """End the process by PID: SIGTERM to its process group, SIGKILL after 10 s."""
        proc = self._proc
        if proc is None:
            return
        self._proc = None
        if proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)

    # -- output ------------------------------------------------------------------------------
    def output(self) -> str:
        """Everything the process wrote so far, stdout then stderr."""
        parts = []
        for path in (self.stdout_path, self.stderr_path):
            if path.exists():
                parts.append(path.read_text("utf-8", "replace"))
        return "\n".join(parts)

    def log_records(self) -> list[dict[str, Any]]:
        """The JSON log lines written on stdout so far."""
        if not self.stdout_path.exists():
            return []
        return parse_json_lines(self.stdout_path.read_text("utf-8", "replace"))

    # -- requests ----------------------------------------------------------------------------
    def request(
        self,
        method: str,
        path: str,
        body: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 60.0,
    ) -> HttpResult:
        """One HTTP request; non-2xx statuses are returned, not raised."""
        req = urllib.request.Request(
            self.url + path, data=body, method=method, headers=dict(headers or {})
        )
        try:
            with urllib.request.urlopen(req, timeout=timeout) as resp:
                return HttpResult(resp.status, resp.headers, resp.read())
        except urllib.error.HTTPError as err:
            return HttpResult(err.code, err.headers, err.read())

    def post_json(
        self, path: str, payload: Any, headers: Mapping[str, str] | None = None
    ) -> HttpResult:
        """POST *payload* as UTF-8 JSON."""
        all_headers = {"Content-Type": "application/json", **(headers or {})}
        return self.request("POST", path, json.dumps(payload).encode("utf-8"), all_headers)

    def post_cloudevent(
        self,
        message: dict[str, Any] | bytes,
        event_id: str | None = None,
        time: datetime | None = None,
    ) -> HttpResult:
        """POST a binary-mode Pub/Sub CloudEvent carrying *message*."""
        headers, body = pubsub.cloudevent_request(message, event_id=event_id, time=time)
        return self.request("POST", "/", body, headers)

    def post_push_envelope(
        self, message: dict[str, Any] | bytes, message_id: str | None = None
    ) -> HttpResult:
        """POST a raw Pub/Sub push envelope (functions-framework converts it to a CloudEvent)."""
        headers, body = pubsub.push_envelope(message, message_id=message_id)
        return self.request("POST", pubsub.PUSH_PATH, body, headers)


# --- bounded waits on what a process logged --------------------------------------------------

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
