"""Every gcloud command deploy.sh --dry-run prints, fed to the real gcloud CLI offline.

With an empty config directory and no account, gcloud parses the whole command line before it
needs credentials: a wrong flag, group or choice exits 2 ("unrecognized arguments",
"argument --x: Invalid choice"), a well-formed command stops at "You do not currently have an
active account selected". No command may touch the network: the offline variables keep gcloud
from probing, a proxy sentinel catches HTTP(S) attempts, and strace (when installed; required
under CI) catches any connect or DNS packet to a non-loopback address.

Direct VPC egress flags of `functions deploy` (--network, --subnet, --direct-vpc-egress) exist
from gcloud 558 on. With an older gcloud here, such a command must fail on exactly those three
flags and parse once they are taken out; with a newer one it must parse as printed.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tests.support.deploy import (
    GCLOUD,
    PROJECT,
    RUNTIME_SA,
    GcloudResult,
    ScriptRun,
    base_env,
    connection_sentinel,
    full_args,
    require_tool,
    run_deploy,
    run_gcloud_offline,
)
from tests.support.fake_gcloud import make_fake_cloud

PER_COMMAND_TIMEOUT_S = 60
WORKERS = 2  # the machine has two shared cores; gcloud is mostly CPU at start-up
DIRECT_VPC_FLAGS = ("--network", "--subnet", "--direct-vpc-egress")
FLAGS_FILE_PLACEHOLDER = "--flags-file=LOOKUP_MESSAGE_FLAGS_FILE"


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


def _operations_runs(profile_file: Path) -> list[ScriptRun]:
    """Listings with every production feature on (both egress paths), replay and teardown."""
    common = {
        "PROJECT": PROJECT,
        "REGION": "europe-west1",
        "SECRET_LOCATION": "europe-west1",
        "WEBHOOK_SECRET": "smtp-webhook-token",
        "RESULTS_TOPIC": "mail-outcomes",
        "DWD_SERVICE_ACCOUNT": RUNTIME_SA,
        "SMTP_POOL_SIZE": "2",
        "MAX_BATCH": "100",
    }
    return [
        run_deploy(
            "--dry-run",
            env=base_env(
                **common,
                SMTP_PROFILE_FILE=str(profile_file),
                EGRESS="static",
                ALERT_EMAIL="oncall@example.com",
                MONITORING_PUBSUB_CHANNEL="true",
                ALERT_RECIPIENTS="oncall@example.com,sre@example.org",
            ),
        ),
        run_deploy(
            "--dry-run",
            env=base_env(
                **common,
                EGRESS="static",
                EGRESS_VPC="connector",
                ALERT_CHANNEL=f"projects/{PROJECT}/notificationChannels/1234",
            ),
        ),
        run_deploy("--dry-run", "--teardown", env=base_env(**common)),
        run_deploy("replay-dead-letters", "--dry-run", env=base_env(PROJECT=PROJECT)),
    ]


def _replayed_for_real(tmp_path: Path) -> list[tuple[str, ...]]:
    """The commands a real replay ran (against the stand-in), with each --flags-file it
    published saved again under tmp_path: gcloud reads the file while parsing."""
    cloud = make_fake_cloud(tmp_path / "fake", PROJECT)
    body = {"to": "ops@example.com", "subject": "주간, 보고=1", "text": "hi"}
    cloud.hold([{
        "ackId": "ack-1",
        "message": {
            "data": base64.b64encode(json.dumps(body).encode()).decode(),
            "messageId": "900001",
            "attributes": {"team": "sre,db", "CloudPubSubDeadLetterSourceTopicPublishTime":
                           "2026-03-02T08:15:42.118+00:00"},
        },
    }])  # fmt: skip
    run = run_deploy("replay-dead-letters", env=cloud.env())
    assert run.returncode == 0, run.stderr
    saved = {}
    for n, record in enumerate(cloud.published):
        copy = tmp_path / f"published-{n}.json"
        copy.write_text(json.dumps(record["flags"]), encoding="utf-8")
        saved[f"--flags-file={record['file']}"] = f"--flags-file={copy}"
    commands = [tuple(saved.get(a, a) for a in call) for call in cloud.calls()]
    assert any(a.startswith("--flags-file=") for c in commands for a in c)
    return commands


def _knows_direct_vpc(gcloud: str) -> bool:
    result = run_gcloud_offline(
        gcloud, ("functions", "deploy", "--help"), strace=None, extra_env={}, timeout=60
    )
    return "--direct-vpc-egress" in result.output


def _without_direct_vpc(argv: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(a for a in argv if a.split("=", 1)[0] not in DIRECT_VPC_FLAGS)


def _unrecognized(output: str) -> set[str]:
    """Flag names gcloud listed under "unrecognized arguments:"."""
    _, _, rest = output.partition("unrecognized arguments:")
    return set(re.findall(r"^\s+(--[a-z-]+)", rest, re.MULTILINE))


def test_every_printed_gcloud_command_parses_offline(
    profile_file: Path, tmp_path: Path, teardown_run: ScriptRun
) -> None:
    gcloud = require_tool("gcloud", GCLOUD)
    strace = _strace()
    body = tmp_path / "weekly.json"
    body.write_text('{"to": "ops@example.com", "subject": "weekly", "text": "hi"}', "utf-8")
    flags_file = tmp_path / "message-flags.json"
    flags_file.write_text(
        json.dumps(
            {"--message": '{"to": "a@example.com"}', "--attribute": {"idempotency_key": "k"}}
        ),
        encoding="utf-8",
    )
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
        *_operations_runs(profile_file),
    ]
    commands = [
        tuple(f"--flags-file={flags_file}" if a == FLAGS_FILE_PLACEHOLDER else a for a in argv)
        for argv in _commands(runs)
    ]
    commands += _replayed_for_real(tmp_path)
    # Keep the bill reasonable (each gcloud start costs ~1 s of CPU), but do check them all.
    assert 60 <= len(commands) <= 130, len(commands)

    direct = [c for c in commands if any(a.startswith("--direct-vpc-egress") for a in c)]
    assert direct, "the listings lost their Direct VPC deploy"
    knows_direct = _knows_direct_vpc(gcloud)
    if not knows_direct:
        # This gcloud predates Direct VPC for functions: the printed command must fail on
        # exactly its three flags (and nothing else) and parse without them.
        commands = [_without_direct_vpc(c) if c in direct else c for c in commands]
        commands.append(direct[0])

    results, proxy_hits = _run_all(gcloud, commands, strace)

    failures = []
    for r in results:
        if not knows_direct and r.argv == direct[0]:
            named = _unrecognized(r.output)
            if named != set(DIRECT_VPC_FLAGS) or r.remote_connects:
                failures.append(
                    f"gcloud {' '.join(r.argv)}\n    -> should reject exactly {DIRECT_VPC_FLAGS},"
                    f" rejected {sorted(named)}\n    {r.output.strip()[:400]}"
                )
        elif r.verdict:
            failures.append(
                f"gcloud {' '.join(r.argv)}\n    -> {r.verdict}\n    {r.output.strip()[:400]}"
            )
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
