"""The function, run twice under functions-framework as child processes.

Each child gets its own session (process group): gunicorn forks workers, and killing the
whole group is what guarantees no stray process keeps a port after the stack stops.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping
from pathlib import Path

from devstack.settings import HOST


def _die_with_parent() -> None:
    """Runs in the child before exec (Linux): SIGTERM it when devstack dies, however devstack
    dies — a closed terminal, `kill -9` — so no function server outlives the stack and keeps its
    port. (A child in its own session gets no signal from the terminal otherwise.)"""
    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)


class StartupError(RuntimeError):
    """A child did not come up; the message says which and why."""


class FunctionProcess:
    """One `functions-framework --target=...` child, its output prefixed into ours."""

    def __init__(
        self,
        *,
        name: str,
        target: str,
        signature_type: str,
        port: int,
        source: Path,
        env: Mapping[str, str],
        echo: Callable[[str], None],
    ) -> None:
        self.name = name
        self.port = port
        self._command = [
            sys.executable,
            "-m",
            "functions_framework",
            f"--target={target}",
            f"--signature-type={signature_type}",
            f"--source={source}",
            f"--host={HOST}",
            f"--port={port}",
        ]
        self._cwd = source.parent
        self._env = dict(env)
        self._echo = echo
        self._process: subprocess.Popen[bytes] | None = None
        self._reader: threading.Thread | None = None

    def start(self) -> None:
        self._process = subprocess.Popen(  # noqa: S603 - our own interpreter, fixed arguments
            self._command,
            cwd=self._cwd,
            env=self._env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            start_new_session=True,
            preexec_fn=_die_with_parent if sys.platform == "linux" else None,  # noqa: PLW1509
        )
        self._reader = threading.Thread(target=self._pump, name=f"{self.name}-output", daemon=True)
        self._reader.start()

    def _pump(self) -> None:
        assert self._process is not None
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            self._echo(raw.decode("utf-8", "replace").rstrip("\n"))

    def exit_code(self) -> int | None:
        """None while running."""
        return None if self._process is None else self._process.poll()

    def wait_ready(self, deadline: float, cancelled: threading.Event) -> None:
        """Return once the port accepts connections; raise if the child died or time ran out."""
        while not cancelled.is_set():
            code = self.exit_code()
            if code is not None:
                raise StartupError(f"the {self.name} function exited with status {code}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 0.5):
                return
            if time.monotonic() > deadline:
                raise StartupError(f"the {self.name} function did not open port {self.port}")
            time.sleep(0.1)

    def stop(self, grace_s: float = 5.0) -> None:
        """SIGTERM the whole group, SIGKILL what is left after `grace_s`."""
        process = self._process
        if process is None:
            return
        self._signal_group(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            self._signal_group(process.pid, signal.SIGKILL)
            process.wait(timeout=grace_s)
        # Workers that outlived their master would still hold the group: make sure.
        self._signal_group(process.pid, signal.SIGKILL)
        if self._reader is not None:
            self._reader.join(timeout=grace_s)

    @staticmethod
    def _signal_group(pgid: int, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)


def port_in_use(port: int) -> bool:
    """True when something on this machine already listens on HOST:port."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        # As a server binds: connections of a previous run lingering in TIME_WAIT don't count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError:
            return True
    return False
