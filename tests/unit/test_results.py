"""Outcome events without Pub/Sub: topic names, the event's shape, and what is never imported.

Publishing itself is tested against the emulator in `tests/idempotency/test_outcome_events.py`.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from sender import results
from sender.errors import ConfigurationError
from sender.ledger import FAILED, Failure, Status
from sender.outcome import Refusal

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("name", "project", "expected"),
    [
        ("mail-results", "p-1", "projects/p-1/topics/mail-results"),
        (" projects/other/topics/mail.results~1 ", None, "projects/other/topics/mail.results~1"),
    ],
)
def test_topic_names(name: str, project: str | None, expected: str) -> None:
    assert results.topic_path(name, project) == expected


@pytest.mark.parametrize(
    "name",
    ["projects/p/subscriptions/s", "projects/p/topics/", "projects/p/topics/1abc", "a/b", "ab"],
)
def test_bad_topic_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="RESULTS_TOPIC"):
        results.topic_path(name, "p")


def test_event_of_a_failed_attempt() -> None:
    failure = Failure(FAILED, "unavailable", "the sender address was refused", smtp_code=451)
    status = Status(
        key="pubsub:evt-1",
        state=FAILED,
        message_id="<m@x>",
        accepted=("a@x.test",),
        refused={"c@x.test": Refusal(550, "5.1.1 no such user")},
        owed=("b@x.test",),
        attempts=3,
        first_attempt_at=1_800_000_000.0,
        last_attempt_at=1_800_000_100.0,
        failure=failure,
    )
    event = results.event(status, key="evt-1", trigger="pubsub", now=1_800_000_100.25)
    assert event == {
        "key": "evt-1",
        "trigger": "pubsub",
        "message_id": "<m@x>",
        "state": "failed",
        "accepted_count": 1,
        "refused": {"c@x.test": {"code": 550, "message": "5.1.1 no such user"}},
        "owed": ["b@x.test"],
        "attempt": 3,
        "time": "2027-01-15T08:01:40.250Z",
        "last_error": {
            "error": "unavailable",
            "detail": "the sender address was refused",
            "smtp_code": 451,
        },
    }


def test_without_results_topic_pubsub_is_never_imported() -> None:
    """Cold start stays as it was: a deployment without RESULTS_TOPIC never loads the Pub/Sub
    client (about half a second of imports), whatever it handles."""
    script = """
import sys
import main
from sender import instance
from sender.config import Settings
assert instance.results_publisher(Settings.from_env({})) is None
loaded = sorted(m for m in sys.modules if m.startswith(("google.pubsub", "google.cloud.pubsub")))
print(loaded)
"""
    done = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "[]"
