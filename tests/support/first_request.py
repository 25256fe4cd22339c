"""What a cold instance loads: in a fresh interpreter, `main.py` loaded as functions-framework
loads it, optionally one request served in process (Flask's test client), then the names in
`sys.modules`.

`modules_loaded(step, env)` runs ``python -m tests.support.first_request STEP`` with the
function's environment *env* and returns the module names; STEP is ``import`` (load only),
``http`` (one message POSTed to ``/``) or ``pubsub`` (the same message as a Pub/Sub CloudEvent).
A request answered with anything but 200 makes the child exit 1 with the answer on stderr.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Mapping
from typing import Any

from tests.support.ff_process import MAIN_PY, PROJECT_ROOT
from tests.support.loopback import OFFLINE_ENV
from tests.support.pubsub import post_event

STEPS = ("import", "http", "pubsub")
MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "cold", "text": "first email"}


def _serve_one(step: str) -> None:
    import functions_framework

    create: Any = functions_framework.create_app
    if step == "http":
        client = create(target="send_http", source=str(MAIN_PY)).test_client()
        answer = client.post("/", json=MESSAGE)
    else:
        app = create(target="send_pubsub", source=str(MAIN_PY), signature_type="cloudevent")
        answer = post_event(app.test_client(), MESSAGE)
    if answer.status_code != 200:
        sys.exit(f"{step}: {answer.status_code} {answer.get_data(as_text=True)}")


def main(step: str) -> None:
    if step == "import":
        import main as _entry_points  # noqa: F401 - the import is what is measured
    else:
        _serve_one(step)
    print(json.dumps(sorted(sys.modules)))


def modules_loaded(step: str, env: Mapping[str, str]) -> set[str]:
    """The modules a fresh interpreter holds after `step` (see the module docstring)."""
    assert step in STEPS, step
    done = subprocess.run(
        [sys.executable, "-m", "tests.support.first_request", step],
        cwd=PROJECT_ROOT,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(PROJECT_ROOT), **OFFLINE_ENV, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    last_line = done.stdout.strip().splitlines()[-1]
    return set(json.loads(last_line))


if __name__ == "__main__":
    main(sys.argv[1])
