"""Fixtures for the deploy.sh tests: dry-run listings for a minimal and a full configuration."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.deploy import CANARY, PROJECT, ScriptRun, base_env, full_args, run_deploy


@pytest.fixture(scope="session")
def profile_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("profile") / "smtp-profile.json"
    path.write_text(
        '{"host": "smtp.gmail.com", "port": 465, "username": "me@gmail.com",'
        f' "password": "{CANARY}"}}',
        encoding="utf-8",
    )
    return path


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
    )
    assert run.returncode == 0, run.stderr
    return run
