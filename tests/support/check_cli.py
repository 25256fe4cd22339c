"""`python -m sender check` as an operator runs it: a subprocess with a given environment.

::

    run = run_check(["--profile-file", str(path)], env={"SMTP_CA_FILE": ca})
    run.returncode, run.lines, run.step("auth"), run.failed   # ("auth", reason), run.hint
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from tests.support.loopback import OFFLINE_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class CheckRun:
    """What the command printed (stdout lines) and its exit status."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def lines(self) -> list[str]:
        return self.stdout.splitlines()

    def step(self, name: str) -> list[str]:
        """The details of every ``ok <name>: ...`` line."""
        prefix = f"ok {name}: "
        return [line[len(prefix) :] for line in self.lines if line.startswith(prefix)]

    @property
    def steps(self) -> list[str]:
        """Each line's step, in order (``FAILED`` lines included, ``hint`` lines not)."""
        return [
            line.split(" ", 1)[1].split(":", 1)[0]
            for line in self.lines
            if line.startswith(("ok ", "FAILED "))
        ]

    @property
    def failed(self) -> tuple[str, str] | None:
        """(step, reason) of the ``FAILED`` line, if any."""
        for line in self.lines:
            if line.startswith("FAILED "):
                step, _, reason = line[len("FAILED ") :].partition(": ")
                return step, reason
        return None

    @property
    def hint(self) -> str | None:
        for line in self.lines:
            if line.startswith("hint: "):
                return line[len("hint: ") :]
        return None


def run_check(
    args: Sequence[str], env: Mapping[str, str] | None = None, *, timeout_s: float = 60.0
) -> CheckRun:
    """Run ``python -m sender check ARGS`` with `OFFLINE_ENV` plus *env* (nothing else of this
    process's environment), from the project root."""
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(PROJECT_ROOT),
        **OFFLINE_ENV,
        **(env or {}),
    }
    proc = subprocess.run(
        [sys.executable, "-m", "sender", "check", *args],
        capture_output=True,
        text=True,
        env=child_env,
        cwd=PROJECT_ROOT,
        timeout=timeout_s,
        check=False,
    )
    return CheckRun(proc.returncode, proc.stdout, proc.stderr)
