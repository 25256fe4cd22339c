"""deploy.sh for real, against a recording stand-in for gcloud (no cloud, no network).

What a user relies on when running it twice: the second run creates nothing, re-applies the
deployments and bindings, adds a secret version only when the profile changed, and the profile
reaches gcloud through a file or stdin, never through argv.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.deploy import CANARY, PROJECT, flags, run_deploy
from tests.support.fake_gcloud import FakeCloud, make_fake_cloud


@pytest.fixture
def cloud(tmp_path: Path) -> FakeCloud:
    return make_fake_cloud(tmp_path, PROJECT)


METRICS = ("sent", "partial", "rejected", "transient", "misconfigured")


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
    (cloud.state / "fail_enable").touch()
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
        # Static egress goes after the functions that use it, in dependency order.
        "compute networks vpc-access connectors delete smtp-sender-egress",
        "compute routers delete smtp-sender-egress-router",
        "compute addresses delete smtp-sender-egress-ip",
        "compute networks subnets delete smtp-sender-egress-us-central1",
        "compute networks delete smtp-sender-egress",
        "pubsub subscriptions delete smtp-send-dead-letter-hold",
        "pubsub topics delete smtp-send",
        "pubsub topics delete smtp-send-dead-letter",
        "secrets delete smtp-profile",
        # Alert policies and channels are found by name (the stand-in lists none).
        *(f"logging metrics delete smtp_sender_{kind}" for kind in METRICS),
        f"iam service-accounts delete smtp-sender-runtime@{PROJECT}.iam.gserviceaccount.com",
        f"iam service-accounts delete smtp-sender-trigger@{PROJECT}.iam.gserviceaccount.com",
    ]


def test_metrics_reach_gcloud_on_stdin_and_a_rerun_updates_them(cloud: FakeCloud) -> None:
    run = run_deploy(env=cloud.env(ALERT_EMAIL="oncall@example.com"))
    assert run.returncode == 0, run.stderr
    configs = cloud.metric_configs
    assert sorted(configs) == sorted(f"smtp_sender_{kind}" for kind in METRICS)
    assert 'jsonPayload.error="misconfigured"' in configs["smtp_sender_misconfigured"]["filter"]
    # The channel the run created is the one both policies notify.
    policies = [
        json.loads(flags(c)["--policy"])
        for c in cloud.calls()
        if c[:4] == ["alpha", "monitoring", "policies", "create"]
    ]
    assert len(policies) == 2
    assert all(
        p["notificationChannels"] == ["projects/p/notificationChannels/42"] for p in policies
    )

    (cloud.state / "exists").touch()
    cloud.reset_log()
    assert run_deploy(env=cloud.env()).returncode == 0
    verbs = [c[2] for c in cloud.calls() if c[:2] == ["logging", "metrics"] and c[2] != "describe"]
    assert verbs == ["update"] * len(METRICS)
