"""deploy.sh --dry-run: what an operator reads before letting it loose on a project.

Each test checks one step of issue 5 in the printed listing; the listing is also what the
offline gcloud test feeds to the real CLI, so a flag that reads right here also parses.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from tests.support.deploy import (
    ALERT_RECIPIENTS,
    CANARY,
    DEPLOY_SH,
    INVOKER_SA,
    PROJECT,
    REPO,
    RUNTIME_SA,
    SCHEDULE_MESSAGE,
    TRIGGER_SA,
    ScriptRun,
    base_env,
    env_vars,
    flags,
    run_deploy,
)

BASE_APIS = {
    "cloudfunctions.googleapis.com",
    "run.googleapis.com",
    "cloudbuild.googleapis.com",
    "artifactregistry.googleapis.com",
    "eventarc.googleapis.com",
    "pubsub.googleapis.com",
    "secretmanager.googleapis.com",
}


def test_dry_run_touches_nothing_and_needs_no_gcloud(tmp_path: Path, profile_file: Path) -> None:
    # A gcloud that records any call: a dry run must not call it even once.
    fake_bin = tmp_path / "bin"
    fake_bin.mkdir()
    marker = tmp_path / "called"
    gcloud = fake_bin / "gcloud"
    gcloud.write_text(f'#!/bin/sh\necho "$@" >> {marker}\nexit 1\n', encoding="utf-8")
    gcloud.chmod(0o755)
    env = base_env(PATH=f"{fake_bin}:/usr/bin:/bin")
    run = run_deploy(
        "--dry-run", f"PROJECT={PROJECT}", f"SMTP_PROFILE_FILE={profile_file}", env=env
    )
    assert run.returncode == 0, run.stderr
    assert not marker.exists(), f"dry run called gcloud: {marker.read_text(encoding='utf-8')}"
    assert run.gcloud, "dry run printed no commands"


def test_every_printed_line_is_a_comment_or_a_parseable_command(full_run: ScriptRun) -> None:
    for line in full_run.command_lines:
        assert line.split()[0] in {"gcloud", "curl"}, f"unexpected line: {line}"
    assert full_run.stdout.startswith("# deploy.sh --dry-run: nothing is changed")


def test_step1_enables_the_needed_apis(minimal_run: ScriptRun, full_run: ScriptRun) -> None:
    first = minimal_run.gcloud[0]
    assert first[:2] == ["services", "enable"]
    assert set(first[2:]) >= BASE_APIS
    assert flags(first)["--project"] == PROJECT
    # Scheduler and Firestore only when their features are asked for.
    assert "cloudscheduler.googleapis.com" not in first
    assert "firestore.googleapis.com" not in first
    full_apis = set(full_run.gcloud[0][2:])
    assert {"cloudscheduler.googleapis.com", "firestore.googleapis.com"} <= full_apis


def test_step2_service_accounts_are_described_before_created(minimal_run: ScriptRun) -> None:
    cmds = minimal_run.gcloud
    for name, email in (
        ("smtp-sender-runtime", RUNTIME_SA),
        ("smtp-sender-trigger", TRIGGER_SA),
    ):
        describe = cmds.index(
            ["iam", "service-accounts", "describe", email, f"--project={PROJECT}"]
        )
        create = next(
            i for i, c in enumerate(cmds) if c[:4] == ["iam", "service-accounts", "create", name]
        )
        assert describe < create
    # Least privilege: the runtime account gets no project-wide role in the default setup.
    assert minimal_run.find("projects", "add-iam-policy-binding") == []


def test_step3_secret_version_comes_from_the_file_and_the_value_never_shows(
    full_run: ScriptRun, profile_file: Path
) -> None:
    assert full_run.index("secrets", "describe") < full_run.index("secrets", "create")
    create = full_run.one("secrets", "create", "smtp-profile")
    assert flags(create)["--replication-policy"] == "automatic"
    add = full_run.one("secrets", "versions", "add", "smtp-profile")
    assert flags(add)["--data-file"] == str(profile_file)
    # No piece of the profile's content (password above all) appears anywhere.
    assert CANARY not in full_run.stdout + full_run.stderr
    assert "Pw-canary" not in full_run.stdout + full_run.stderr


def test_step3_profile_from_stdin_is_never_read_by_a_dry_run() -> None:
    run = run_deploy(
        "--dry-run",
        env=base_env(PROJECT=PROJECT, SMTP_PROFILE_FILE="-"),
        stdin=f'{{"password": "{CANARY}"}}'.encode(),
    )
    assert run.returncode == 0, run.stderr
    add = run.one("secrets", "versions", "add", "smtp-profile")
    assert flags(add)["--data-file"] == "-"
    assert "Pw-canary" not in run.stdout + run.stderr


def test_step3_no_version_is_added_without_a_profile_file(minimal_run: ScriptRun) -> None:
    assert minimal_run.find("secrets", "versions", "add") == []


def test_step3_accessor_is_granted_on_each_secret_only(full_run: ScriptRun) -> None:
    bindings = full_run.find("secrets", "add-iam-policy-binding")
    assert sorted(b[2] for b in bindings) == ["smtp-profile", "smtp-webhook-token"]
    for b in bindings:
        f = flags(b)
        assert f["--role"] == "roles/secretmanager.secretAccessor"
        assert f["--member"] == f"serviceAccount:{RUNTIME_SA}"
    # Secret access is never granted project-wide.
    for b in full_run.find("projects", "add-iam-policy-binding"):
        assert "secretmanager" not in flags(b)["--role"]


def test_firestore_store_creates_the_database_and_grants_datastore_user(
    full_run: ScriptRun, minimal_run: ScriptRun
) -> None:
    db = full_run.one("firestore", "databases", "create")
    assert flags(db)["--location"] == "europe-west1"
    binding = full_run.one("projects", "add-iam-policy-binding", PROJECT)
    assert flags(binding)["--role"] == "roles/datastore.user"
    assert flags(binding)["--member"] == f"serviceAccount:{RUNTIME_SA}"
    ttl = full_run.one("firestore", "fields", "ttls", "update", "expire_at")
    assert "--enable-ttl" in flags(ttl)
    assert minimal_run.find("firestore") == []


def _deploy(run: ScriptRun, name: str) -> dict[str, str]:
    return flags(run.one("functions", "deploy", name))


def test_step4_http_function_flags(full_run: ScriptRun) -> None:
    f = _deploy(full_run, "smtp-sender-http")
    assert "--gen2" in f
    assert f["--runtime"] == "python313"
    assert f["--region"] == "europe-west1"
    assert f["--entry-point"] == "send_http"
    assert "--trigger-http" in f
    assert "--no-allow-unauthenticated" in f
    assert "--allow-unauthenticated" not in f
    assert f["--service-account"] == RUNTIME_SA
    assert Path(f["--source"]) == REPO
    for sizing in ("--memory", "--cpu", "--concurrency", "--max-instances"):
        assert f[sizing], sizing
    # The function must outlive the send deadline (SEND_DEADLINE_S, default 50) with room for
    # start-up and the ledger, and stay under the 600 s ack deadline of the subscription.
    timeout = int(f["--timeout"].removesuffix("s"))
    assert 50 + 30 < timeout <= 540


def test_step4_runtime_configuration_reaches_the_function_intact(full_run: ScriptRun) -> None:
    env = env_vars(_deploy(full_run, "smtp-sender-http")["--set-env-vars"])
    assert env == {
        "SMTP_SECRET": f"projects/{PROJECT}/secrets/smtp-profile",
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SMTP_TIMEOUT_S": "30",
        "SEND_DEADLINE_S": "50",
        "IDEMPOTENCY_STORE": "firestore",
        "IDEMPOTENCY_COLLECTION": "sent_ledger",
        "WEBHOOK_SECRET": f"projects/{PROJECT}/secrets/smtp-webhook-token",
        # The comma list survives because the value uses gcloud's ^;^ delimiter.
        "ALLOWED_RECIPIENTS": "example.com,oncall@example.org",
        "ALLOWED_SENDERS": "alerts@example.com",
        "MAX_RECIPIENTS": "20",
        "MAX_EVENT_AGE_S": "3600",
        "ALERT_RECIPIENTS": ALERT_RECIPIENTS,
        "WEBHOOK_RETRY_WINDOW_S": "900",
    }
    pubsub_env = env_vars(_deploy(full_run, "smtp-sender-pubsub")["--set-env-vars"])
    assert pubsub_env == env


def test_step5_topics_then_pubsub_function_with_retry(full_run: ScriptRun) -> None:
    created = [c[3] for c in full_run.find("pubsub", "topics", "create")]
    assert created == ["smtp-send", "smtp-send-dead-letter"]
    hold = full_run.one("pubsub", "subscriptions", "create")
    assert hold[3] == "smtp-send-dead-letter-hold"
    assert flags(hold)["--topic"] == "smtp-send-dead-letter"
    assert flags(hold)["--expiration-period"] == "never"

    f = _deploy(full_run, "smtp-sender-pubsub")
    assert f["--entry-point"] == "send_pubsub"
    assert f["--trigger-topic"] == "smtp-send"
    assert "--retry" in f
    assert "--trigger-http" not in f
    assert f["--trigger-service-account"] == TRIGGER_SA
    assert f["--service-account"] == RUNTIME_SA
    assert f["--runtime"] == "python313"
    assert "--gen2" in f
    assert full_run.index("pubsub", "topics", "create") < full_run.index(
        "functions", "deploy", "smtp-sender-pubsub"
    )
    # Eventarc may invoke it, as the trigger account.
    grants = full_run.find("functions", "add-invoker-policy-binding", "smtp-sender-pubsub")
    assert [flags(g)["--member"] for g in grants] == [f"serviceAccount:{TRIGGER_SA}"]


def test_step5_dead_letter_policy_on_the_eventarc_subscription(full_run: ScriptRun) -> None:
    cmds = full_run.gcloud
    lookup_trigger = full_run.index("functions", "describe", "smtp-sender-pubsub")
    assert flags(cmds[lookup_trigger])["--format"] == "value(eventTrigger.trigger)"
    lookup_sub = full_run.one("eventarc", "triggers", "describe", "LOOKUP_TRIGGER_NAME")
    assert flags(lookup_sub)["--format"] == "value(transport.pubsub.subscription)"
    update = full_run.one("pubsub", "subscriptions", "update", "LOOKUP_SUBSCRIPTION_NAME")
    f = flags(update)
    assert f["--dead-letter-topic"] == "smtp-send-dead-letter"
    assert 5 <= int(f["--max-delivery-attempts"]) <= 100
    assert lookup_trigger < full_run.index("pubsub", "subscriptions", "update")

    agent = "serviceAccount:service-LOOKUP_PROJECT_NUMBER@gcp-sa-pubsub.iam.gserviceaccount.com"
    pub = full_run.one("pubsub", "topics", "add-iam-policy-binding", "smtp-send-dead-letter")
    assert flags(pub) | {"--project": ""} == {
        "--member": agent,
        "--role": "roles/pubsub.publisher",
        "--project": "",
    }
    sub = full_run.one("pubsub", "subscriptions", "add-iam-policy-binding")
    assert sub[3] == "LOOKUP_SUBSCRIPTION_NAME"
    assert flags(sub)["--role"] == "roles/pubsub.subscriber"
    assert flags(sub)["--member"] == agent
    assert full_run.one("projects", "describe", PROJECT)[-1] == "--format=value(projectNumber)"


def test_alert_recipients_and_the_retry_window_reach_both_functions(full_run: ScriptRun) -> None:
    for function in ("smtp-sender-http", "smtp-sender-pubsub"):
        env = env_vars(_deploy(full_run, function)["--set-env-vars"])
        assert env["ALERT_RECIPIENTS"] == ALERT_RECIPIENTS
        assert env["WEBHOOK_RETRY_WINDOW_S"] == "900"


def test_monitoring_pubsub_channel_needs_alert_recipients() -> None:
    refused = run_deploy(
        "--dry-run", env=base_env(PROJECT=PROJECT, MONITORING_PUBSUB_CHANNEL="true")
    )
    assert refused.returncode != 0
    assert "ALERT_RECIPIENTS" in refused.stderr
    assert refused.gcloud == []


def test_step6_scheduler_only_when_asked(minimal_run: ScriptRun, full_run: ScriptRun) -> None:
    assert minimal_run.find("scheduler") == []
    assert "scheduler" not in minimal_run.stdout
    job = full_run.one("scheduler", "jobs", "create", "pubsub", "smtp-sender-schedule")
    f = flags(job)
    assert f["--schedule"] == "0 8 * * 1-5"
    assert f["--time-zone"] == "Asia/Seoul"
    assert f["--topic"] == f"projects/{PROJECT}/topics/smtp-send"
    assert f["--message-body"] == SCHEDULE_MESSAGE  # Korean subject intact
    assert full_run.index("scheduler", "jobs", "describe") < full_run.index(
        "scheduler", "jobs", "create"
    )


def test_step6_scheduler_message_from_a_file(tmp_path: Path) -> None:
    body = tmp_path / "weekly.json"
    body.write_text(SCHEDULE_MESSAGE, encoding="utf-8")
    run = run_deploy(
        "--dry-run",
        env=base_env(PROJECT=PROJECT, SCHEDULE="*/30 * * * *", SCHEDULE_MESSAGE_FILE=str(body)),
    )
    assert run.returncode == 0, run.stderr
    f = flags(run.one("scheduler", "jobs", "create", "pubsub"))
    assert f["--message-body-from-file"] == str(body)
    assert "--message-body" not in f


def test_step7_invoker_grants_for_each_caller(full_run: ScriptRun, minimal_run: ScriptRun) -> None:
    grants = full_run.find("functions", "add-invoker-policy-binding", "smtp-sender-http")
    assert [flags(g)["--member"] for g in grants] == [
        f"serviceAccount:{INVOKER_SA}",
        "group:oncall@example.com",
    ]
    assert minimal_run.find("functions", "add-invoker-policy-binding", "smtp-sender-http") == []


def test_step8_prints_url_topic_and_ready_examples(full_run: ScriptRun) -> None:
    out = full_run.stdout
    assert "# HTTP URL: LOOKUP_HTTP_URL" in out
    assert f"projects/{PROJECT}/topics/smtp-send" in out
    lookup = full_run.gcloud[-2]
    assert lookup[:3] == ["functions", "describe", "smtp-sender-http"]
    assert flags(lookup)["--format"] == "value(serviceConfig.uri)"
    curl = next(ln for ln in full_run.command_lines if ln.startswith("curl "))
    assert "LOOKUP_HTTP_URL" in curl
    assert '"Authorization: Bearer $(gcloud auth print-identity-token)"' in curl
    publish = full_run.gcloud[-1]
    assert publish[:4] == ["pubsub", "topics", "publish", "smtp-send"]
    message = json.loads(flags(publish)["--message"])
    for key in ("to", "subject", "text"):
        assert message[key], key


def test_public_http_needs_a_webhook_secret() -> None:
    refused = run_deploy("--dry-run", env=base_env(PROJECT=PROJECT, PUBLIC_HTTP="true"))
    assert refused.returncode != 0
    assert "WEBHOOK_SECRET" in refused.stderr
    assert refused.gcloud == []
    run = run_deploy(
        "--dry-run", env=base_env(PROJECT=PROJECT, PUBLIC_HTTP="true", WEBHOOK_SECRET="hook")
    )
    assert run.returncode == 0, run.stderr
    f = flags(run.one("functions", "deploy", "smtp-sender-http"))
    assert "--allow-unauthenticated" in f
    assert "--no-allow-unauthenticated" not in f


def test_function_timeout_must_cover_the_send_deadline() -> None:
    too_short = run_deploy(
        "--dry-run", env=base_env(PROJECT=PROJECT, SEND_DEADLINE_S="90", FUNCTION_TIMEOUT="100")
    )
    assert too_short.returncode != 0
    assert "FUNCTION_TIMEOUT" in too_short.stderr
    too_long = run_deploy("--dry-run", env=base_env(PROJECT=PROJECT, SEND_DEADLINE_S="500"))
    assert too_long.returncode != 0
    assert "540" in too_long.stderr
    step_over_whole = run_deploy(
        "--dry-run", env=base_env(PROJECT=PROJECT, SMTP_TIMEOUT_S="60", SEND_DEADLINE_S="50")
    )
    assert step_over_whole.returncode != 0
    assert "SMTP_TIMEOUT_S" in step_over_whole.stderr


def test_tuning_variables_pass_through_to_the_function() -> None:
    run = run_deploy(
        "--dry-run",
        env=base_env(
            PROJECT=PROJECT,
            SEND_DEADLINE_S="40",
            SMTP_PROFILE_CACHE_TTL_S="60",
            IDEMPOTENCY_LEASE_S="70",
            TEMPLATES_DIR="templates",
        ),
    )
    assert run.returncode == 0, run.stderr
    flagset = _deploy(run, "smtp-sender-http")
    env = env_vars(flagset["--set-env-vars"])
    assert env["SEND_DEADLINE_S"] == "40"
    assert env["SMTP_PROFILE_CACHE_TTL_S"] == "60"
    assert env["IDEMPOTENCY_LEASE_S"] == "70"
    assert env["TEMPLATES_DIR"] == "templates"
    assert flagset["--timeout"] == "100s"  # SEND_DEADLINE_S + 60


def test_bad_input_is_refused_before_anything_is_printed(tmp_path: Path) -> None:
    missing = str(tmp_path / "nope.json")
    cases: list[tuple[str, list[str], dict[str, str]]] = [
        ("PROJECT is required", [], {}),
        ("unknown variable 'BOGUS_VAR'", ["BOGUS_VAR=1"], {"PROJECT": PROJECT}),
        ("SMTP_PROFILE_FILE", [], {"PROJECT": PROJECT, "SMTP_PROFILE_FILE": missing}),
        ("IDEMPOTENCY_STORE", [], {"PROJECT": PROJECT, "IDEMPOTENCY_STORE": "redis"}),
        ("SCHEDULE needs", [], {"PROJECT": PROJECT, "SCHEDULE": "0 * * * *"}),
        ("MAX_DELIVERY_ATTEMPTS", [], {"PROJECT": PROJECT, "MAX_DELIVERY_ATTEMPTS": "3"}),
        ("CONCURRENCY > 1 needs CPU >= 1", [], {"PROJECT": PROJECT, "CPU": "0.5"}),
    ]
    for expected, args, env in cases:
        run = run_deploy("--dry-run", *args, env=base_env(**env))
        assert run.returncode != 0, expected
        assert expected in run.stderr, (expected, run.stderr)
        assert run.gcloud == [], expected


def test_flags_and_assignments_set_the_same_variables() -> None:
    a = run_deploy("--dry-run", f"--project={PROJECT}", "--topic=alerts", "--max-instances=2")
    b = run_deploy("--dry-run", f"PROJECT={PROJECT}", "TOPIC=alerts", "MAX_INSTANCES=2")
    assert a.returncode == 0, a.stderr
    assert a.stdout == b.stdout
    assert flags(a.one("functions", "deploy", "smtp-sender-pubsub"))["--trigger-topic"] == "alerts"


def test_help_documents_every_variable() -> None:
    run = run_deploy("--help", env=base_env())
    assert run.returncode == 0
    script = DEPLOY_SH.read_text(encoding="utf-8")
    # Every variable deploy.sh gives a default to, plus the ones it accepts on the command line.
    defaults = set(re.findall(r"^([A-Z][A-Z0-9_]+)=\$\{\1:-", script, re.MULTILINE))
    known = re.search(r'KNOWN_VARS="([^"]+)"', script)
    assert known is not None
    accepted = set(known.group(1).split())
    assert defaults <= accepted
    assert len(accepted) > 30
    for name in sorted(accepted):
        assert re.search(rf"^\s+{name}\b", run.stdout, re.MULTILINE), f"--help lacks {name}"
    for option in ("--dry-run", "--teardown", "--help"):
        assert option in run.stdout


def test_teardown_deletes_what_deploy_creates(teardown_run: ScriptRun) -> None:
    # (command group, resource) of every delete, e.g. ("pubsub topics", "smtp-send").
    deleted = {
        (" ".join(c[: c.index("delete")]), c[c.index("delete") + 1])
        for c in teardown_run.gcloud
        if "delete" in c
    }
    assert {
        ("functions", "smtp-sender-http"),
        ("functions", "smtp-sender-pubsub"),
        ("pubsub topics", "smtp-send"),
        ("pubsub topics", "smtp-send-dead-letter"),
        ("pubsub subscriptions", "smtp-send-dead-letter-hold"),
        ("scheduler jobs", "smtp-sender-schedule"),
    } <= deleted
    secrets = [c[2] for c in teardown_run.find("secrets", "delete")]
    assert secrets == ["smtp-profile", "smtp-webhook-token"]
    accounts = [c[3] for c in teardown_run.find("iam", "service-accounts", "delete")]
    assert accounts == [RUNTIME_SA, TRIGGER_SA]
    unbind = teardown_run.one("projects", "remove-iam-policy-binding", PROJECT)
    assert flags(unbind)["--role"] == "roles/datastore.user"
    for c in teardown_run.gcloud:
        if "delete" in c:
            assert "--quiet" in c, c
    channel = teardown_run.one("beta", "monitoring", "channels", "delete")
    assert "--force" in channel  # alerting policies may still name it; its topic goes anyway
    assert teardown_run.find("functions", "deploy") == []
    assert teardown_run.find("services", "disable") == []


def test_teardown_can_keep_the_secrets() -> None:
    run = run_deploy("--dry-run", "--teardown", f"PROJECT={PROJECT}", "KEEP_SECRETS=true")
    assert run.returncode == 0, run.stderr
    assert run.find("secrets") == []
    assert run.find("functions", "delete")
