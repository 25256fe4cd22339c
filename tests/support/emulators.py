"""Start and stop the gcloud Pub/Sub and Firestore emulators on 127.0.0.1, offline.

Used by the session fixtures in `tests/conftest.py` (through `run_for_session`), and by hand::

    .venv/bin/python -m tests.support.emulators start firestore --state-dir .state/emu
    .venv/bin/python -m tests.support.emulators stop --state-dir .state/emu

`start` prints the `export ..._EMULATOR_HOST=...` line and records the PID in the state dir.

The `gcloud` wrapper is a Python process that spawns a shell script that spawns java, so the
emulator is started in its own session (process group == the wrapper's PID) and stopped by
signalling that group: killing the wrapper alone would leave java holding the port.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from tests.support.loopback import OFFLINE_ENV, free_port

Kind = Literal["pubsub", "firestore"]
KINDS: tuple[Kind, ...] = ("pubsub", "firestore")

# Component directory under the SDK root, its Debian package, the variable its clients read.
_COMPONENT_DIR = {"pubsub": "pubsub-emulator", "firestore": "cloud-firestore-emulator"}
_APT_PACKAGE = {
    "pubsub": "google-cloud-cli-pubsub-emulator",
    "firestore": "google-cloud-cli-firestore-emulator",
}
_HOST_VARIABLE = {"pubsub": "PUBSUB_EMULATOR_HOST", "firestore": "FIRESTORE_EMULATOR_HOST"}

# Measured at 2-4 s on a 2-core machine; the bound is generous for a loaded CI runner.
DEFAULT_START_TIMEOUT_S = 90.0
STOP_TIMEOUT_S = 10.0


# Loopback only, never through a proxy that http_proxy might name.
_opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class EmulatorUnavailableError(RuntimeError):
    """gcloud, java or the emulator component is not installed here (a skip, or a CI failure)."""


class EmulatorStartError(RuntimeError):
    """The emulator is installed but did not come up; the message ends with its log."""


def check_installed(kind: Kind) -> None:
    """Raise `EmulatorUnavailableError` naming what is missing."""
    gcloud = shutil.which("gcloud")
    if gcloud is None:
        raise EmulatorUnavailableError("gcloud is not on PATH")
    if shutil.which("java") is None:
        raise EmulatorUnavailableError("java (17+) is not on PATH; the emulators need it")
    sdk_root = Path(gcloud).resolve().parent.parent
    component = sdk_root / "platform" / _COMPONENT_DIR[kind]
    if not component.is_dir():
        raise EmulatorUnavailableError(
            f"the gcloud {kind} emulator is not installed ({component} missing; "
            f"apt-get install {_APT_PACKAGE[kind]})"
        )


@dataclass
class Emulator:
    kind: Kind
    host: str
    port: int
    pid: int  # also the process group id
    log_path: Path
    startup_s: float

    @property
    def host_port(self) -> str:
        return f"{self.host}:{self.port}"

    def env(self) -> dict[str, str]:
        """What a client process needs to talk to this emulator, offline."""
        return {**OFFLINE_ENV, _HOST_VARIABLE[self.kind]: self.host_port}

    def url(self, path: str = "/") -> str:
        return f"http://{self.host_port}{path}"

    def stop(self) -> None:
        stop_group(self.pid)


def _ready(url: str) -> bool:
    try:
        with _opener.open(url, timeout=2) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _log_tail(path: Path, lines: int = 30) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return "(no log)"


def start(
    kind: Kind, workdir: Path, *, timeout_s: float = DEFAULT_START_TIMEOUT_S, port: int = 0
) -> Emulator:
    """Start one emulator on 127.0.0.1 and wait (bounded) until it answers HTTP."""
    check_installed(kind)
    workdir.mkdir(parents=True, exist_ok=True)
    config_dir = workdir / "cloudsdk"  # throwaway gcloud config: no account, no project, no state
    config_dir.mkdir(exist_ok=True)
    port = port or free_port()
    command = ["gcloud", "beta", "emulators", kind, "start", f"--host-port=127.0.0.1:{port}"]
    if kind == "pubsub":
        data_dir = workdir / "pubsub-data"
        data_dir.mkdir(exist_ok=True)  # gcloud writes env.yaml there and fails if it is absent
        command.append(f"--data-dir={data_dir}")
    env = {**os.environ, **OFFLINE_ENV, "CLOUDSDK_CONFIG": str(config_dir)}
    log_path = workdir / f"{kind}.log"
    started = time.monotonic()
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            command,
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )
    emulator = Emulator(kind, "127.0.0.1", port, process.pid, log_path, 0.0)
    deadline = started + timeout_s
    while time.monotonic() < deadline:
        if _ready(emulator.url()):
            emulator.startup_s = time.monotonic() - started
            return emulator
        if process.poll() is not None:
            raise EmulatorStartError(
                f"the {kind} emulator exited with {process.returncode}:\n{_log_tail(log_path)}"
            )
        time.sleep(0.2)
    stop_group(process.pid)
    raise EmulatorStartError(
        f"the {kind} emulator did not answer within {timeout_s:g} s:\n{_log_tail(log_path)}"
    )


def stop_group(pid: int) -> None:
    """SIGTERM the process group led by `pid`, then SIGKILL whatever is left after a bound."""
    try:
        os.killpg(pid, signal.SIGTERM)
    except ProcessLookupError:
        return
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            os.killpg(pid, 0)
        except ProcessLookupError:
            break
        _reap(pid)
        time.sleep(0.1)
    else:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(pid, signal.SIGKILL)
    _reap(pid)


def _reap(pid: int) -> None:
    """Collect the wrapper's exit status when it is our child, so it does not linger as a zombie."""
    with contextlib.suppress(ChildProcessError):
        os.waitpid(pid, os.WNOHANG)


# --- pytest session fixtures (wired in tests/conftest.py) --------------------------------------

# kind -> start-up seconds, for the terminal summary (see `report_startup_times`).
STARTUP_TIMES: dict[str, float] = {}


def require(kind: Kind) -> None:
    """Skip (or, under CI=true, fail) when this emulator cannot run here."""
    import pytest

    try:
        check_installed(kind)
    except EmulatorUnavailableError as exc:
        if os.environ.get("CI") == "true":
            pytest.fail(f"CI=true and the {kind} emulator is unavailable: {exc}")
        pytest.skip(f"{kind} emulator unavailable: {exc}")


def run_for_session(kind: Kind, workdir: Path) -> Iterator[Emulator]:
    """Start `kind` once for the session (or skip/fail per `require`); stop it at the end."""
    require(kind)
    emulator = start(kind, workdir)
    STARTUP_TIMES[kind] = emulator.startup_s
    try:
        yield emulator
    finally:
        emulator.stop()


def startup_lines() -> list[str]:
    """One line per emulator started this session, for the terminal summary."""
    return [f"{kind} emulator started in {s:.1f} s" for kind, s in sorted(STARTUP_TIMES.items())]


# --- command line -------------------------------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.support.emulators")
    sub = parser.add_subparsers(dest="command", required=True)
    start_cmd = sub.add_parser("start", help="start an emulator in the background")
    start_cmd.add_argument("kind", choices=KINDS)
    start_cmd.add_argument("--state-dir", type=Path, required=True)
    start_cmd.add_argument("--port", type=int, default=0)
    stop_cmd = sub.add_parser("stop", help="stop every emulator recorded in the state dir")
    stop_cmd.add_argument("--state-dir", type=Path, required=True)
    args = parser.parse_args(argv)

    state_dir: Path = args.state_dir
    if args.command == "start":
        try:
            emulator = start(args.kind, state_dir / args.kind, port=args.port)
        except (EmulatorUnavailableError, EmulatorStartError) as exc:
            print(exc, file=sys.stderr)
            return 1
        (state_dir / f"{args.kind}.pid").write_text(f"{emulator.pid}\n")
        print(f"export {_HOST_VARIABLE[emulator.kind]}={emulator.host_port}")
        print(f"# {args.kind} emulator up in {emulator.startup_s:.1f} s, pid {emulator.pid}")
        return 0
    for pid_file in sorted(state_dir.glob("*.pid")):
        stop_group(int(pid_file.read_text().strip()))
        pid_file.unlink()
        print(f"stopped {pid_file.stem}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
