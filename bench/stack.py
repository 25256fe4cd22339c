"""What every measurement runs against: the real-MTA tier's Postfix and the Secret Manager
stand-in holding the SMTP profile, both on loopback, everything in one temporary state directory.

::

    with bench_stack(keep=False) as stack:
        stack.profile            # the profile as stored (password included: never print it)
        stack.function_env()     # variables for a functions-framework process
        stack.log_offset(); stack.log_since(offset)   # Postfix's log
        stack.settle()           # wait until Postfix has delivered what it accepted
"""

from __future__ import annotations

import contextlib
import json
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support import mta_tier as tier
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStubProcess

SECRET_NAME = f"projects/{PROJECT}/secrets/bench-smtp-profile"
PROFILE_FROM = "Bench <alerts@mta.test>"
SETTLE_TIMEOUT_S = 120.0


class BenchError(RuntimeError):
    """A measurement could not be taken (a send failed, a process did not start)."""


@dataclass(frozen=True)
class Stack:
    """The running tier and stand-in, and where the run keeps its files."""

    tier: tier.TierState
    secret_manager: SecretManagerStubProcess
    workdir: Path
    profile: dict[str, Any]

    @property
    def smtp_port(self) -> int:
        """Postfix's implicit-TLS listener (AUTH required)."""
        return self.tier.ports.ssl

    def function_env(self, **extra: str) -> dict[str, str]:
        """Variables for a function process: the profile is `SECRET_NAME` in the stand-in, the
        tier's CA is trusted, gcloud reads a config directory of its own."""
        gcloud = self.workdir / "gcloud"
        gcloud.mkdir(exist_ok=True)
        return {
            "SMTP_SECRET": SECRET_NAME,
            "SECRET_MANAGER_EMULATOR_HOST": self.secret_manager.address,
            "GOOGLE_CLOUD_PROJECT": PROJECT,
            "SMTP_CA_FILE": str(self.tier.ca_file),
            "SMTP_TIMEOUT_S": "20",
            "CLOUDSDK_CONFIG": str(gcloud),
            **extra,
        }

    def log_offset(self) -> int:
        """The Postfix log's current size: pass to `log_since` to read only what follows."""
        with contextlib.suppress(OSError):
            return self.tier.postfix_log.stat().st_size
        return 0

    def log_since(self, offset: int) -> str:
        with self.tier.postfix_log.open("rb") as fh:
            fh.seek(offset)
            return fh.read().decode("utf-8", "replace")

    def settle(self) -> None:
        """Wait (bounded) until Postfix's queue is empty, so delivering one measurement's mail
        does not take CPU from the next."""
        spool = self.tier.root / "spool"
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while any(f.is_file() for d in tier.QUEUE_DIRS for f in (spool / d).rglob("*")):
            if time.monotonic() > deadline:
                raise BenchError(f"Postfix still has mail queued after {SETTLE_TIMEOUT_S:.0f} s")
            time.sleep(0.1)


def _profile(state: tier.TierState) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": state.ports.ssl,
        "security": "ssl",
        "username": state.user,
        "password": tier.DEFAULT_PASSWORD,
        "from": PROFILE_FROM,
    }


def _write_private(path: Path, text: str) -> Path:
    path.touch(mode=0o600)
    path.write_text(text, encoding="utf-8")
    return path


@contextlib.contextmanager
def bench_stack(*, keep: bool) -> Iterator[Stack]:
    """Start the tier and the stand-in in a fresh state directory; stop both (by PID) and remove
    the directory on the way out, unless *keep*."""
    reason = tier.missing_components()
    if reason:
        raise BenchError(f"the real-MTA tier cannot run here: {reason}")
    root = Path(tempfile.mkdtemp(prefix="smtp-sender-bench-"))
    try:
        # Not mkdtemp's 0700: Postfix's daemons and virtual(8) (other uids) traverse it to the
        # tier's state directory (which tier.start opens up the same way). Files holding the
        # password are created 0600 below.
        root.chmod(0o755)
        mta = root / "mta"
        mta.mkdir()
        try:
            state = tier.start(mta)
        except tier.TierError as error:
            raise BenchError(f"the real-MTA tier did not start: {error}") from None
        try:
            profile = _profile(state)
            profile_file = _write_private(root / "profile.json", json.dumps(profile))
            with SecretManagerStubProcess({SECRET_NAME: profile_file}) as secret_manager:
                yield Stack(state, secret_manager, root, profile)
        finally:
            tier.stop(state)
    finally:
        if keep:
            print(f"state kept in {root} (Postfix log: mta/log/postfix.log)")
        else:
            shutil.rmtree(root, ignore_errors=True)
