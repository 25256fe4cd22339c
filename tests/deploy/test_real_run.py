"""deploy.sh for real, against a recording stand-in for gcloud (no cloud, no network).

What a user relies on when running it twice: the second run creates nothing, re-applies the
deployments and bindings, adds a secret version only when the profile changed, and the profile
reaches gcloud through a file or stdin, never through argv.
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.deploy.conftest import CANARY, PROJECT
from tests.deploy.helpers import base_env, flags, run_deploy

# The stand-in: logs argv as JSON, answers describe/lookup calls from its state files, and
# stores what `secrets versions add` received (from --data-file or stdin).
FAKE_GCLOUD = """#!{python}
import json, os, sys
args = sys.argv[1:]
state = os.environ["FAKE_STATE"]
with open(os.path.join(state, "calls.jsonl"), "a", encoding="utf-8") as log:
    log.write(json.dumps(args) + "\\n")
exists = os.path.exists(os.path.join(state, "exists"))
fmt = next((a.split("=", 1)[1] for a in args if a.startswith("--format=")), "")
answers = {{
    "value(eventTrigger.trigger)": "projects/p/locations/r/triggers/smtp-sender-pubsub-123",
    "value(transport.pubsub.subscription)": "projects/p/subscriptions/eventarc-r-sub-123",
    "value(projectNumber)": "123456789012",
    "value(serviceConfig.uri)": "https://smtp-sender-http-abc-ew.a.run.app",
}}
if fmt in answers:
    print(answers[fmt])
    sys.exit(0)
if args[:3] == ["secrets", "versions", "access"]:
    latest = os.path.join(state, "latest")
    if not os.path.exists(latest):
        sys.exit(1)
    sys.stdout.buffer.write(open(latest, "rb").read())
    sys.exit(0)
if args[:3] == ["secrets", "versions", "add"]:
    src = next(a.split("=", 1)[1] for a in args if a.startswith("--data-file="))
    data = sys.stdin.buffer.read() if src == "-" else open(src, "rb").read()
    open(os.path.join(state, "added"), "ab").write(data)
    sys.exit(0)
if args[:4] == ["beta", "monitoring", "channels", "list"]:
    if exists:
        print("projects/p/notificationChannels/987")
    sys.exit(0)
if "describe" in args:
    sys.exit(0 if exists else 1)
sys.exit(0)
"""


@dataclass
class FakeCloud:
    state: Path
    bin_dir: Path

    def calls(self) -> list[list[str]]:
        log = self.state / "calls.jsonl"
        if not log.exists():
            return []
        return [json.loads(line) for line in log.read_text(encoding="utf-8").splitlines()]

    def reset_log(self) -> None:
        (self.state / "calls.jsonl").unlink(missing_ok=True)

    def env(self, **extra: str) -> dict[str, str]:
        return base_env(
            PATH=f"{self.bin_dir}:/usr/bin:/bin",
            FAKE_STATE=str(self.state),
            PROJECT=PROJECT,
            **extra,
        )

    @property
    def added(self) -> bytes:
        path = self.state / "added"
        return path.read_bytes() if path.exists() else b""


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    bin_dir = tmp_path / "bin"
    state = tmp_path / "state"
    bin_dir.mkdir()
    state.mkdir()
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(FAKE_GCLOUD.format(python=sys.executable), encoding="utf-8")
    gcloud.chmod(0o755)
    return FakeCloud(state, bin_dir)


def _creates(calls: list[list[str]]) -> list[list[str]]:
    return [c for c in calls if "create" in c[:4]]


def test_first_run_creates_then_second_run_only_converges(
    cloud: FakeCloud, profile_file: Path
) -> None:
    env = cloud.env(SMTP_PROFILE_FILE=str(profile_file))
    first = run_deploy(env=env)
    assert first.returncode == 0, first.stderr
    created = {" ".join(c[:3]) for c in _creates(cloud.calls())}
    assert {
        "iam service-accounts create",
        "secrets create smtp-profile",
        "pubsub topics create",
        "pubsub subscriptions create",
    } <= created
    assert cloud.added == profile_file.read_bytes()
    # The run ends with what the user needs to call it.
    assert "https://smtp-sender-http-abc-ew.a.run.app" in first.stdout
    assert "gcloud pubsub topics publish smtp-send" in first.stdout

    # Everything now exists and the latest secret version equals the file.
    (cloud.state / "exists").touch()
    (cloud.state / "latest").write_bytes(profile_file.read_bytes())
    cloud.reset_log()
    second = run_deploy(env=env)
    assert second.returncode == 0, second.stderr
    calls = cloud.calls()
    assert _creates(calls) == []
    assert [c for c in calls if c[:3] == ["secrets", "versions", "add"]] == []
    assert cloud.added == profile_file.read_bytes()  # nothing appended
    # Deployments and bindings are re-applied (they are idempotent updates).
    assert len([c for c in calls if c[:2] == ["functions", "deploy"]]) == 2
    update = next(c for c in calls if c[:3] == ["pubsub", "subscriptions", "update"])
    assert update[3] == "projects/p/subscriptions/eventarc-r-sub-123"
    agent = next(c for c in calls if c[:3] == ["pubsub", "topics", "add-iam-policy-binding"])
    assert flags(agent)["--member"] == (
        "serviceAccount:service-123456789012@gcp-sa-pubsub.iam.gserviceaccount.com"
    )


def test_changed_profile_adds_a_version_and_never_puts_it_in_argv(
    cloud: FakeCloud, profile_file: Path
) -> None:
    (cloud.state / "exists").touch()
    (cloud.state / "latest").write_bytes(b'{"password": "old"}')
    run = run_deploy(env=cloud.env(SMTP_PROFILE_FILE=str(profile_file)))
    assert run.returncode == 0, run.stderr
    assert cloud.added == profile_file.read_bytes()
    assert CANARY.encode() in cloud.added  # the fixture's profile holds the canary password
    for call in cloud.calls():
        assert not any(CANARY in arg for arg in call), call
    assert CANARY not in run.stdout + run.stderr


def test_profile_from_stdin_reaches_secret_manager_and_never_argv(cloud: FakeCloud) -> None:
    payload = f'{{"host": "smtp.example.com", "password": "{CANARY}"}}'.encode()
    run = run_deploy(env=cloud.env(SMTP_PROFILE_FILE="-"), stdin=payload)
    assert run.returncode == 0, run.stderr
    assert cloud.added == payload
    for call in cloud.calls():
        assert not any("Pw-canary" in arg for arg in call), call
    assert "Pw-canary" not in run.stdout + run.stderr


def test_a_failing_step_stops_the_run(cloud: FakeCloud) -> None:
    # gcloud refusing to enable the APIs (no permission, no billing) must end the run there.
    failing = cloud.bin_dir / "gcloud"
    failing.write_text(
        failing.read_text(encoding="utf-8").replace(
            "if fmt in answers:",
            'if args[:2] == ["services", "enable"]:\n    sys.exit(1)\nif fmt in answers:',
        ),
        encoding="utf-8",
    )
    run = run_deploy(env=cloud.env())
    assert run.returncode != 0
    assert [c[:2] for c in cloud.calls()] == [["services", "enable"]]


def test_teardown_deletes_only_what_exists(cloud: FakeCloud) -> None:
    """A teardown of a project where nothing (or everything) is left: no failing deletes of
    absent resources, and every resource that exists goes."""
    run = run_deploy("--teardown", env=cloud.env())
    assert run.returncode == 0, run.stderr
    assert [c for c in cloud.calls() if "delete" in c] == []

    (cloud.state / "exists").touch()
    cloud.reset_log()
    run = run_deploy("--teardown", env=cloud.env())
    assert run.returncode == 0, run.stderr
    deleted = [" ".join(c[: c.index("delete") + 2]) for c in cloud.calls() if "delete" in c]
    assert deleted == [
        "scheduler jobs delete smtp-sender-schedule",
        "functions delete smtp-sender-pubsub",
        "functions delete smtp-sender-http",
        "pubsub subscriptions delete smtp-send-dead-letter-hold",
        "pubsub topics delete smtp-send",
        "pubsub topics delete smtp-send-dead-letter",
        "secrets delete smtp-profile",
        f"iam service-accounts delete smtp-sender-runtime@{PROJECT}.iam.gserviceaccount.com",
        f"iam service-accounts delete smtp-sender-trigger@{PROJECT}.iam.gserviceaccount.com",
    ]


def test_the_alert_channel_is_created_once_and_its_agent_may_publish(cloud: FakeCloud) -> None:
    env = cloud.env(ALERT_CHANNEL="true", ALERT_RECIPIENTS="oncall@example.com")
    first = run_deploy(env=env)
    assert first.returncode == 0, first.stderr
    creates = [c for c in cloud.calls() if c[:4] == ["beta", "monitoring", "channels", "create"]]
    assert len(creates) == 1
    agent = (
        "serviceAccount:service-123456789012@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
    )
    grants = [
        c
        for c in cloud.calls()
        if c[:4] == ["pubsub", "topics", "add-iam-policy-binding", "smtp-send"]
    ]
    assert [flags(g)["--member"] for g in grants] == [agent]
    # The project number is looked up once, for both service agents.
    assert len([c for c in cloud.calls() if c[:2] == ["projects", "describe"]]) == 1

    (cloud.state / "exists").touch()  # the channel now lists
    cloud.reset_log()
    second = run_deploy(env=env)
    assert second.returncode == 0, second.stderr
    assert [c for c in cloud.calls() if c[:4] == ["beta", "monitoring", "channels", "create"]] == []

    cloud.reset_log()
    down = run_deploy("--teardown", env=env)
    assert down.returncode == 0, down.stderr
    deleted = [c for c in cloud.calls() if c[:4] == ["beta", "monitoring", "channels", "delete"]]
    assert [c[4] for c in deleted] == ["projects/p/notificationChannels/987"]
