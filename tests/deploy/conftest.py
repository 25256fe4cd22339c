"""Fixtures for the deploy.sh tests: dry-run listings for a minimal and a full configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.deploy.helpers import ScriptRun, base_env, run_deploy

PROJECT = "acme-mail-prod"
# Looks like a real SMTP password; it must never show up in any output or argv.
CANARY = "Pw-canary-7Qz!x9 비밀"
RUNTIME_SA = f"smtp-sender-runtime@{PROJECT}.iam.gserviceaccount.com"
TRIGGER_SA = f"smtp-sender-trigger@{PROJECT}.iam.gserviceaccount.com"
INVOKER_SA = f"alertmanager@{PROJECT}.iam.gserviceaccount.com"
ALERT_RECIPIENTS = "oncall@example.com,db@example.com"
SCHEDULE_MESSAGE = '{"to": "ops@example.com", "subject": "주간 보고", "text": "weekly"}'


@pytest.fixture(scope="session")
def profile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "smtp-profile.json"
    path.write_text(
        '{"host": "smtp.gmail.com", "port": 465, "username": "me@gmail.com",'
        f' "password": "{CANARY}"}}',
        encoding="utf-8",
    )
    return path


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
        "ALERT_CHANNEL=true",
        f"ALERT_RECIPIENTS={ALERT_RECIPIENTS}",
        "WEBHOOK_RETRY_WINDOW_S=900",
    ]


@pytest.fixture(scope="session")
def minimal_run() -> ScriptRun:
    run = run_deploy("--dry-run", env=base_env(PROJECT=PROJECT))
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="session")
def full_run(profile_file: Path) -> ScriptRun:
    run = run_deploy("--dry-run", *full_args(profile_file))
    assert run.returncode == 0, run.stderr
    return run


@pytest.fixture(scope="session")
def teardown_run() -> ScriptRun:
    run = run_deploy(
        "--dry-run",
        "--teardown",
        f"--project={PROJECT}",
        "--region=europe-west1",
        "WEBHOOK_SECRET=smtp-webhook-token",
        "IDEMPOTENCY_STORE=firestore",
        "ALERT_CHANNEL=true",
    )
    assert run.returncode == 0, run.stderr
    return run
