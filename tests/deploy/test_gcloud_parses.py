"""Every gcloud command deploy.sh --dry-run prints, fed to the real gcloud CLI offline.

With an empty config directory and no account, gcloud parses the whole command line before it
needs credentials: a wrong flag, group or choice exits 2 ("unrecognized arguments",
"argument --x: Invalid choice"), a well-formed command stops at "You do not currently have an
active account selected". No command may touch the network: the offline variables keep gcloud
from probing, a proxy sentinel catches HTTP(S) attempts, and strace (when installed; required
under CI) catches any connect or DNS packet to a non-loopback address.
"""

from __future__ import annotations

import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.deploy.conftest import PROJECT, full_args
from tests.deploy.helpers import (
    GCLOUD,
    GcloudResult,
    ScriptRun,
    base_env,
    connection_sentinel,
    require_tool,
    run_deploy,
    run_gcloud_offline,
)

PER_COMMAND_TIMEOUT_S = 60
WORKERS = 2  # the machine has two shared cores; gcloud is mostly CPU at start-up


def _strace() -> str | None:
    """strace, required under CI; elsewhere the proxy sentinel alone guards the network."""
    found = shutil.which("strace")
    if found is None and os.environ.get("CI") == "true":
        pytest.fail("strace is required under CI=true to prove gcloud stays offline")
    return found


def _shape(argv: tuple[str, ...]) -> tuple[str, ...]:
    """The command (first three words) and the flag names: two commands of one shape differ
    only in resource names and values gcloud cannot judge offline, so one run covers both."""
    words = [a for a in argv if not a.startswith("--")][:3]
    return (*words, *sorted(a.split("=", 1)[0] for a in argv if a.startswith("--")))


def _commands(runs: list[ScriptRun]) -> list[tuple[str, ...]]:
    """One gcloud argv per shape from every listing, plus the one inside the curl example."""
    seen: dict[tuple[str, ...], tuple[str, ...]] = {}
    for run in runs:
        assert run.returncode == 0, run.stderr
        argvs = [tuple(argv) for argv in run.gcloud]
        for line in run.command_lines:
            argvs += [tuple(inner.split()) for inner in re.findall(r"\$\(gcloud ([^)]*)\)", line)]
        for argv in argvs:
            seen.setdefault(_shape(argv), argv)
    return list(seen.values())


def _run_all(
    gcloud: str, commands: list[tuple[str, ...]], strace: str | None
) -> tuple[list[GcloudResult], int]:
    with connection_sentinel() as sentinel, ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = list(
            pool.map(
                lambda argv: run_gcloud_offline(
                    gcloud,
                    argv,
                    strace=strace,
                    extra_env=sentinel.proxy_env,
                    timeout=PER_COMMAND_TIMEOUT_S,
                ),
                commands,
            )
        )
        return results, len(sentinel.hits)


def test_every_printed_gcloud_command_parses_offline(
    profile_file: Path, tmp_path: Path, teardown_run: ScriptRun
) -> None:
    gcloud = require_tool("gcloud", GCLOUD)
    strace = _strace()
    body = tmp_path / "weekly.json"
    body.write_text('{"to": "ops@example.com", "subject": "weekly", "text": "hi"}', "utf-8")
    runs = [
        run_deploy("--dry-run", *full_args(profile_file)),
        # The variants flip flags the full listing does not print.
        run_deploy(
            "--dry-run",
            env=base_env(
                # Same names and region as the full listing, so only new flags add commands.
                PROJECT=PROJECT,
                REGION="europe-west1",
                SMTP_PROFILE_FILE="-",
                PUBLIC_HTTP="true",
                WEBHOOK_SECRET="smtp-webhook-token",
                WEBHOOK_SECRET_FILE=str(profile_file),
                BUILD_SERVICE_ACCOUNT=f"builder@{PROJECT}.iam.gserviceaccount.com",
                SCHEDULE="*/15 * * * *",
                SCHEDULE_MESSAGE_FILE=str(body),
            ),
        ),
        teardown_run,
    ]
    commands = _commands(runs)
    # Keep the bill reasonable (each gcloud start costs ~1 s of CPU), but do check them all.
    assert 30 <= len(commands) <= 60, len(commands)

    results, proxy_hits = _run_all(gcloud, commands, strace)

    failures = [
        f"gcloud {' '.join(r.argv)}\n    -> {r.verdict}\n    {r.output.strip()[:400]}"
        for r in results
        if r.verdict
    ]
    assert not failures, f"{len(failures)} of {len(results)} commands failed:\n" + "\n".join(
        failures
    )
    assert proxy_hits == 0, f"gcloud tried to reach the network through the proxy {proxy_hits}x"


def test_the_check_tells_a_bad_flag_from_a_good_command() -> None:
    """The harness itself: a misspelt flag and a bad choice are caught, a good command passes."""
    gcloud = require_tool("gcloud", GCLOUD)
    cases = [
        ("functions", "deploy", "f", "--region=us-central1", "--gen2", "--retrys"),
        ("functions", "deploy", "f", "--region=us-central1", "--ingress-settings=public"),
        ("pubsub", "topics", "create", "t", f"--project={PROJECT}"),
    ]
    results, hits = _run_all(gcloud, cases, _strace())
    for bad in results[:2]:
        assert bad.verdict is not None, bad.output
        assert "command line" in bad.verdict, bad.verdict
    assert results[2].verdict is None, results[2].output
    assert hits == 0
