"""Fetch one OAuth2 token the way a function process does, in a process of its own.

google-auth reads some variables once, at import (``GCE_METADATA_HOST``, ``NO_GCE_CHECK``), so
the keyless flow, which needs the function's own identity from a metadata server, cannot be
pointed at the fake one from inside an already running test process. `fetch_in_process` runs
``python -m tests.support.oauth_fetch`` with exactly the variables a function would have
(`FakeIdP.process_env`), gives it the profile's ``oauth2`` and username on stdin, and returns what
`sender.oauth2.fetch_token` produced: the token, or the error's class, disposition and text.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.support.loopback import OFFLINE_ENV

PROJECT_ROOT = Path(__file__).resolve().parents[2]


@dataclass(frozen=True)
class FetchResult:
    """What the child reported: a token, or an error."""

    token: str | None
    expires_in_s: float | None
    error: str | None  # the SendError subclass name
    disposition: str | None
    reason: str | None
    stderr: str


def fetch_in_process(
    oauth2: Mapping[str, Any],
    username: str,
    env: Mapping[str, str],
    *,
    timeout_s: float = 20.0,
) -> FetchResult:
    """Run the fetch in a child process whose environment is `OFFLINE_ENV` plus *env*."""
    child_env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": os.environ.get("HOME", "/tmp"),
        "PYTHONPATH": str(PROJECT_ROOT),
        **OFFLINE_ENV,
        **env,
    }
    request = json.dumps({"oauth2": oauth2, "username": username, "timeout_s": timeout_s})
    proc = subprocess.run(
        [sys.executable, "-m", "tests.support.oauth_fetch"],
        input=request,
        capture_output=True,
        text=True,
        env=child_env,
        cwd=PROJECT_ROOT,
        timeout=timeout_s + 30,
        check=False,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"oauth_fetch child failed ({proc.returncode}): {proc.stderr[-2000:]}")
    answer = json.loads(proc.stdout)
    return FetchResult(
        token=answer.get("token"),
        expires_in_s=answer.get("expires_in_s"),
        error=answer.get("error"),
        disposition=answer.get("disposition"),
        reason=answer.get("reason"),
        stderr=proc.stderr,
    )


def _main() -> int:
    from sender.errors import SendError
    from sender.oauth2 import fetch_token, parse_oauth2

    request = json.loads(sys.stdin.read())
    try:
        config = parse_oauth2(request["oauth2"], username=request["username"])
        token = fetch_token(
            config, timeout_s=float(request["timeout_s"]), ca_file=os.environ.get("OAUTH_CA_FILE")
        )
    except SendError as exc:
        answer: dict[str, object] = {
            "error": type(exc).__name__,
            "disposition": exc.disposition.value,
            "reason": exc.reason,
        }
    else:
        answer = {"token": token.value, "expires_in_s": token.expires_in_s}
    print(json.dumps(answer))
    return 0


if __name__ == "__main__":
    sys.exit(_main())
