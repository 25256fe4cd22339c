"""Run deploy.sh (dry-run or against a fake gcloud) and the real gcloud CLI offline.

Nothing here reaches the network: deploy.sh --dry-run never calls gcloud, the fake gcloud is
a local script, and the real gcloud runs with no account, an empty config directory, the
offline variables, an HTTP(S) proxy pointing at a local sentinel that records any attempt,
and (when strace is installed) a trace of every connect/send syscall.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import tempfile
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.support.loopback import OFFLINE_ENV

REPO = Path(__file__).resolve().parents[2]
DEPLOY_SH = REPO / "deploy.sh"
#: Debian's google-cloud-cli puts the real CLI here (the offline-parse and upload tests).
GCLOUD = "/usr/bin/gcloud"


# gcloud's answer once it has parsed the flags and needs credentials it does not have.
AUTH_MESSAGES = (
    "You do not currently have an active account selected",
    "Reauthentication required",
)
# What gcloud's argument parser says about a bad command line (it usually exits 2).
PARSE_ERRORS = re.compile(
    r"unrecognized arguments|\) argument |[Ii]nvalid choice|Invalid value for|must be specified"
)


def require_tool(name: str, path: str | None = None) -> str:
    """Path of a system tool; skip when absent, but fail under CI=true (CI must run the tier)."""
    found = path if path and os.access(path, os.X_OK) else shutil.which(name)
    if found:
        return found
    message = f"{name} is not installed (Debian package: {name})"
    if os.environ.get("CI") == "true":
        pytest.fail(f"{message}; CI=true requires it")
    pytest.skip(message)


def base_env(**extra: str) -> dict[str, str]:
    """A minimal environment: nothing from the developer's shell can change deploy.sh."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "LANG": "C.UTF-8",
        **OFFLINE_ENV,
    }
    env.update(extra)
    return env


@dataclass(frozen=True)
class ScriptRun:
    """One deploy.sh run: exit code, output, and the commands it printed."""

    returncode: int
    stdout: str
    stderr: str

    @property
    def command_lines(self) -> list[str]:
        """Printed command lines (comments and blank lines left out)."""
        return [ln for ln in self.stdout.splitlines() if ln.strip() and not ln.startswith("#")]

    @property
    def gcloud(self) -> list[list[str]]:
        """Every printed gcloud command as argv (without the leading ``gcloud``)."""
        return [argv[1:] for argv in map(shlex.split, self.command_lines) if argv[0] == "gcloud"]

    def find(self, *words: str) -> list[list[str]]:
        """gcloud commands whose leading words are *words* (e.g. "secrets", "create")."""
        n = len(words)
        return [c for c in self.gcloud if tuple(c[:n]) == words]

    def one(self, *words: str) -> list[str]:
        found = self.find(*words)
        assert len(found) == 1, f"expected one `gcloud {' '.join(words)}`, got {found}"
        return found[0]

    def index(self, *words: str) -> int:
        """Position of the first matching gcloud command in the printed order."""
        n = len(words)
        for i, c in enumerate(self.gcloud):
            if tuple(c[:n]) == words:
                return i
        raise AssertionError(f"no `gcloud {' '.join(words)}` in the output")


def run_deploy(
    *args: str,
    env: Mapping[str, str] | None = None,
    stdin: bytes | None = None,
    timeout: float = 60,
) -> ScriptRun:
    """Run deploy.sh with *args* in a minimal environment."""
    proc = subprocess.run(
        ["bash", str(DEPLOY_SH), *args],
        env=dict(env) if env is not None else base_env(),
        input=stdin if stdin is not None else b"",
        capture_output=True,
        timeout=timeout,
        check=False,
    )
    return ScriptRun(
        proc.returncode,
        proc.stdout.decode("utf-8", "replace"),
        proc.stderr.decode("utf-8", "replace"),
    )


def flags(argv: Sequence[str]) -> dict[str, str]:
    """``--name=value`` / bare ``--name`` flags of one command as a dict (bare -> "")."""
    out: dict[str, str] = {}
    for arg in argv:
        if arg.startswith("--"):
            name, _, value = arg.partition("=")
            out[name] = value
    return out


def env_vars(set_env_vars: str) -> dict[str, str]:
    """Decode a --set-env-vars value, honouring gcloud's ``^DELIM^`` alternate delimiter."""
    delim = ","
    m = re.match(r"\^(.+?)\^", set_env_vars)
    if m:
        delim = m.group(1)
        set_env_vars = set_env_vars[m.end() :]
    return dict(pair.split("=", 1) for pair in set_env_vars.split(delim))


# ------------------------------------------------------------------ real gcloud, offline


class ConnectionSentinel:
    """A local proxy that accepts and records connections: any HTTP(S) call gcloud makes
    through the proxy variables lands here instead of on the internet."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(16)
        self._sock.settimeout(0.2)
        self.port: int = self._sock.getsockname()[1]
        self.hits: list[bytes] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                continue
            with conn:
                conn.settimeout(1)
                try:
                    self.hits.append(conn.recv(200))
                except OSError:
                    self.hits.append(b"")

    @property
    def proxy_env(self) -> dict[str, str]:
        url = f"http://127.0.0.1:{self.port}"
        return dict.fromkeys(("HTTPS_PROXY", "HTTP_PROXY", "https_proxy", "http_proxy"), url)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        self._sock.close()


@contextmanager
def connection_sentinel() -> Iterator[ConnectionSentinel]:
    sentinel = ConnectionSentinel()
    try:
        yield sentinel
    finally:
        sentinel.close()


@dataclass(frozen=True)
class GcloudResult:
    argv: tuple[str, ...]
    returncode: int | None  # None: timed out
    output: str
    remote_connects: tuple[str, ...]  # non-loopback addresses from the syscall trace

    @property
    def verdict(self) -> str | None:
        """None when gcloud parsed the command and stopped for lack of an account;
        otherwise what went wrong, for the failure report."""
        if self.returncode is None:
            return "timed out"
        if self.remote_connects:
            return f"tried the network: {', '.join(self.remote_connects)}"
        if self.returncode == 2 or PARSE_ERRORS.search(self.output):
            return f"rejected the command line (exit {self.returncode})"
        if not any(m in self.output for m in AUTH_MESSAGES):
            return f"did not stop at the missing account (exit {self.returncode})"
        return None


_ADDR = re.compile(r'inet_addr\("([^"]+)"\)|inet_pton\(AF_INET6, "([^"]+)"')
_LOOPBACK = re.compile(r"^(127\.|::1$|::ffff:127\.)")


def remote_addresses(trace: str) -> list[str]:
    """Non-loopback IPv4/IPv6 peers in an strace of connect/send* calls (DNS included)."""
    found = []
    for line in trace.splitlines():
        for v4, v6 in _ADDR.findall(line):
            addr = v4 or v6
            if addr and addr != "0.0.0.0" and not _LOOPBACK.match(addr):
                found.append(addr)
    return found


def run_gcloud_offline(
    gcloud: str,
    argv: Sequence[str],
    *,
    strace: str | None,
    extra_env: Mapping[str, str],
    timeout: float = 60,
) -> GcloudResult:
    """Run the real gcloud with a fresh empty config dir, no credentials, offline env."""
    with tempfile.TemporaryDirectory(prefix="gcloud-cfg-") as tmp:
        cfg = Path(tmp) / "config"
        cfg.mkdir()
        trace = Path(tmp) / "trace"
        env = base_env(CLOUDSDK_CONFIG=str(cfg), HOME=tmp, **extra_env)
        env.pop("NO_PROXY", None)
        cmd = [gcloud, *argv]
        if strace:
            # seccomp-bpf: only the traced syscalls stop the process, so gcloud stays fast.
            syscalls = "trace=connect,sendto,sendmsg,sendmmsg"
            cmd = [strace, "--seccomp-bpf", "-f", "-qq", "-e", "signal=none", "-e", syscalls,
                   "-o", str(trace), *cmd]  # fmt: skip
        try:
            proc = subprocess.run(
                cmd,
                env=env,
                cwd=tmp,
                stdin=subprocess.DEVNULL,
                capture_output=True,
                timeout=timeout,
                check=False,
            )
            code: int | None = proc.returncode
            output = (proc.stdout + proc.stderr).decode("utf-8", "replace")
        except subprocess.TimeoutExpired:
            code, output = None, ""
        remote = remote_addresses(trace.read_text("utf-8", "replace")) if trace.exists() else []
        return GcloudResult(tuple(argv), code, output, tuple(remote))


# --- the configurations the deploy tests run ----------------------------------------------------

PROJECT = "acme-mail-prod"
# Looks like a real SMTP password; it must never show up in any output or argv.
CANARY = "Pw-canary-7Qz!x9 비밀"
RUNTIME_SA = f"smtp-sender-runtime@{PROJECT}.iam.gserviceaccount.com"
TRIGGER_SA = f"smtp-sender-trigger@{PROJECT}.iam.gserviceaccount.com"
INVOKER_SA = f"alertmanager@{PROJECT}.iam.gserviceaccount.com"
ALERT_RECIPIENTS = "oncall@example.com,db@example.com"
SCHEDULE_MESSAGE = '{"to": "ops@example.com", "subject": "주간 보고", "text": "weekly"}'


def full_args(profile: Path) -> list[str]:
    """Every optional feature on: the listing exercises each step."""
    return [
        f"PROJECT={PROJECT}",
        "REGION=europe-west1",
        f"SMTP_PROFILE_FILE={profile}",
        "ALLOWED_RECIPIENTS=example.com,oncall@example.org",
        "ALLOWED_SENDERS=alerts@example.com",
        "MAX_RECIPIENTS=20",
        "MAX_EVENT_AGE_S=3600",
        "SMTP_TIMEOUT_S=30",
        "IDEMPOTENCY_STORE=firestore",
        "IDEMPOTENCY_COLLECTION=sent_ledger",
        "WEBHOOK_SECRET=smtp-webhook-token",
        f"INVOKERS={INVOKER_SA}, group:oncall@example.com",
        "SCHEDULE=0 8 * * 1-5",
        f"SCHEDULE_MESSAGE={SCHEDULE_MESSAGE}",
        "SCHEDULE_TIME_ZONE=Asia/Seoul",
        f"ALERT_RECIPIENTS={ALERT_RECIPIENTS}",
        "WEBHOOK_RETRY_WINDOW_S=900",
    ]
