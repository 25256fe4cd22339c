"""deploy.sh --dry-run for running it in production (issues 14, 13 and 10): the runtime, regional
secrets, a static egress IP, log-based metrics and alerts, the outcome topic, Cloud Monitoring's
Pub/Sub channel, the keyless Google grant, pass-through settings and replay-dead-letters.

Each test reads the listing an operator reads; test_gcloud_parses feeds the same listings to the
real gcloud.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.deploy import (
    CANARY,
    PROJECT,
    RUNTIME_SA,
    ScriptRun,
    base_env,
    env_vars,
    flags,
    run_deploy,
)

REGION = "europe-west1"
METRICS = ("sent", "partial", "rejected", "transient", "misconfigured")
KEYLESS_SA = f"mailer@{PROJECT}.iam.gserviceaccount.com"
NOTIFY_AGENT = (
    "serviceAccount:service-LOOKUP_PROJECT_NUMBER"
    "@gcp-sa-monitoring-notification.iam.gserviceaccount.com"
)


def dry(*args: str, **env: str) -> ScriptRun:
    run = run_deploy("--dry-run", *args, env=base_env(PROJECT=PROJECT, REGION=REGION, **env))
    assert run.returncode == 0, run.stderr
    return run


def refused(expected: str, *args: str, **env: str) -> None:
    run = run_deploy("--dry-run", *args, env=base_env(PROJECT=PROJECT, REGION=REGION, **env))
    assert run.returncode != 0, expected
    assert expected in run.stderr, (expected, run.stderr)
    assert run.gcloud == [], expected


def deploy_flags(run: ScriptRun, name: str) -> dict[str, str]:
    return flags(run.one("functions", "deploy", name))


def function_env(run: ScriptRun, name: str) -> dict[str, str]:
    return env_vars(deploy_flags(run, name)["--set-env-vars"])


# ------------------------------------------------------------------ runtime and pass-through


def test_runtime_is_python313_unless_overridden() -> None:
    run = dry()
    for fn in ("smtp-sender-http", "smtp-sender-pubsub"):
        assert deploy_flags(run, fn)["--runtime"] == "python313"
    older = dry(RUNTIME="python312")
    assert deploy_flags(older, "smtp-sender-pubsub")["--runtime"] == "python312"
    refused("RUNTIME", RUNTIME="nodejs22")


def test_pool_batch_and_results_settings_reach_both_functions() -> None:
    run = dry(
        SMTP_POOL_SIZE="0",
        SMTP_POOL_IDLE_S="15",
        SMTP_SESSION_MAX_MESSAGES="50",
        MAX_BATCH="200",
        RESULTS_TOPIC="mail-outcomes",
    )
    expected = {
        "SMTP_POOL_SIZE": "0",
        "SMTP_POOL_IDLE_S": "15",
        "SMTP_SESSION_MAX_MESSAGES": "50",
        "MAX_BATCH": "200",
        "RESULTS_TOPIC": f"projects/{PROJECT}/topics/mail-outcomes",
    }
    for fn in ("smtp-sender-http", "smtp-sender-pubsub"):
        env = function_env(run, fn)
        assert {k: env.get(k) for k in expected} == expected, fn
    unset = function_env(dry(), "smtp-sender-http")
    assert not set(expected) & set(unset)
    refused("SMTP_POOL_SIZE", SMTP_POOL_SIZE="-1")
    refused("MAX_BATCH", MAX_BATCH="lots")


# ------------------------------------------------------------------ regional secrets


def test_regional_secrets_are_created_and_named_in_their_region() -> None:
    run = dry(SECRET_LOCATION=REGION, WEBHOOK_SECRET="hook-token", SMTP_PROFILE_FILE="-")
    secret_cmds = run.find("secrets")
    assert len(secret_cmds) >= 7  # describe/create/add/bind for the profile, the same for the token
    for cmd in secret_cmds:
        assert flags(cmd)["--location"] == REGION, cmd
    for create in run.find("secrets", "create"):
        assert "--replication-policy" not in flags(create)  # a regional secret has none
    env = function_env(run, "smtp-sender-pubsub")
    assert env["SMTP_SECRET"] == f"projects/{PROJECT}/locations/{REGION}/secrets/smtp-profile"
    assert env["WEBHOOK_SECRET"] == f"projects/{PROJECT}/locations/{REGION}/secrets/hook-token"

    teardown = run_deploy(
        "--dry-run", "--teardown", env=base_env(PROJECT=PROJECT, SECRET_LOCATION=REGION)
    )
    assert flags(teardown.one("secrets", "delete", "smtp-profile"))["--location"] == REGION


def test_global_secrets_stay_the_default() -> None:
    run = dry()
    assert flags(run.one("secrets", "create", "smtp-profile"))["--replication-policy"] == (
        "automatic"
    )
    assert all("--location" not in flags(c) for c in run.find("secrets"))
    assert function_env(run, "smtp-sender-http")["SMTP_SECRET"] == (
        f"projects/{PROJECT}/secrets/smtp-profile"
    )
    refused("SECRET_LOCATION", SECRET_LOCATION="Europe")


# ------------------------------------------------------------------ static egress


def test_static_egress_builds_nat_on_a_reserved_address_before_the_functions() -> None:
    run = dry(EGRESS="static")
    assert "compute.googleapis.com" in run.one("services", "enable")
    network = run.one("compute", "networks", "create", "smtp-sender-egress")
    assert flags(network)["--subnet-mode"] == "custom"
    subnet = flags(run.one("compute", "networks", "subnets", "create"))
    assert subnet["--network"] == "smtp-sender-egress"
    assert subnet["--range"] == "10.8.0.0/26"
    assert "--enable-private-ip-google-access" in subnet
    address = run.one("compute", "addresses", "create")
    assert address[3] == "smtp-sender-egress-ip"
    assert flags(address)["--region"] == REGION
    router = flags(run.one("compute", "routers", "create", "smtp-sender-egress-router"))
    assert router["--network"] == "smtp-sender-egress"
    nat = flags(run.one("compute", "routers", "nats", "create", "smtp-sender-egress-nat"))
    assert nat["--nat-external-ip-pool"] == "smtp-sender-egress-ip"
    assert nat["--nat-custom-subnet-ip-ranges"] == f"smtp-sender-egress-{REGION}"
    assert "--auto-allocate-nat-external-ips" not in nat

    order = [
        run.index("compute", "networks", "create"),
        run.index("compute", "networks", "subnets", "create"),
        run.index("compute", "routers", "create"),
        run.index("compute", "routers", "nats", "create"),
        run.index("functions", "deploy"),
    ]
    assert order == sorted(order)
    assert run.index("compute", "addresses", "create") < run.index("compute", "routers", "nats")
    for fn in ("smtp-sender-http", "smtp-sender-pubsub"):
        f = deploy_flags(run, fn)
        assert f["--network"] == "smtp-sender-egress"
        assert f["--subnet"] == f"smtp-sender-egress-{REGION}"
        assert f["--direct-vpc-egress"] == "all"  # SMTP, IdP and Google APIs alike
        assert "--vpc-connector" not in f
    # The operator is told the address to allow-list.
    ip = run.one("compute", "addresses", "describe", "smtp-sender-egress-ip", f"--region={REGION}",
                 f"--project={PROJECT}", "--format=value(address)")  # fmt: skip
    assert ip
    assert "# Static egress IP (allow-list it at your SMTP relay): LOOKUP_EGRESS_IP" in run.stdout


def test_static_egress_through_a_connector() -> None:
    run = dry(EGRESS="static", EGRESS_VPC="connector")
    assert "vpcaccess.googleapis.com" in run.one("services", "enable")
    connector = run.one("compute", "networks", "vpc-access", "connectors", "create")
    f = flags(connector)
    assert connector[5] == "smtp-sender-egress"
    assert f["--subnet"] == f"smtp-sender-egress-{REGION}"
    assert f["--region"] == REGION
    assert flags(run.one("compute", "networks", "subnets", "create"))["--range"] == "10.8.0.0/28"
    assert run.index("compute", "routers", "nats", "create") < run.index("functions", "deploy")
    assert run.index("compute", "networks", "vpc-access") < run.index("functions", "deploy")
    for fn in ("smtp-sender-http", "smtp-sender-pubsub"):
        d = deploy_flags(run, fn)
        assert d["--vpc-connector"] == (
            f"projects/{PROJECT}/locations/{REGION}/connectors/smtp-sender-egress"
        )
        assert d["--egress-settings"] == "all"
        assert "--network" not in d
    refused("/28", EGRESS="static", EGRESS_VPC="connector", EGRESS_SUBNET_RANGE="10.9.0.0/26")


def test_without_egress_nothing_of_it_is_made() -> None:
    run = dry()
    assert run.find("compute") == []
    assert "--network" not in deploy_flags(run, "smtp-sender-http")
    assert "Static egress IP" not in run.stdout
    refused("EGRESS must be static", EGRESS="fixed")
    refused("EGRESS_VPC", EGRESS="static", EGRESS_VPC="peering")


def _deletes(run: ScriptRun) -> list[str]:
    """`group ... delete NAME` of every delete, in the printed order."""
    return [" ".join(c[: c.index("delete") + 2]) for c in run.gcloud if "delete" in c]


def test_teardown_removes_static_egress_after_the_functions_in_dependency_order() -> None:
    run = run_deploy("--dry-run", "--teardown", env=base_env(PROJECT=PROJECT, REGION=REGION))
    deletes = _deletes(run)
    expected = [
        "functions delete smtp-sender-http",
        "compute networks vpc-access connectors delete smtp-sender-egress",
        "compute routers delete smtp-sender-egress-router",  # the NAT goes with its router
        "compute addresses delete smtp-sender-egress-ip",  # no longer used by the NAT
        f"compute networks subnets delete smtp-sender-egress-{REGION}",
        "compute networks delete smtp-sender-egress",
    ]
    positions = [deletes.index(d) for d in expected]
    assert positions == sorted(positions), deletes
    # A network the operator named is theirs: teardown leaves it.
    theirs = run_deploy(
        "--dry-run", "--teardown", env=base_env(PROJECT=PROJECT, EGRESS_NETWORK="corp-vpc")
    )
    assert "compute networks delete corp-vpc" not in _deletes(theirs)
    assert "compute routers delete corp-vpc-router" in _deletes(theirs)


# ------------------------------------------------------------------ metrics and alerts


def _metric_configs(run: ScriptRun) -> dict[str, dict[str, object]]:
    """The `# config:` line printed above each `logging metrics create|update`."""
    configs: dict[str, dict[str, object]] = {}
    lines = run.stdout.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("gcloud logging metrics create "):
            assert lines[i - 1].startswith("# config: "), lines[i - 1]
            configs[line.split()[4]] = json.loads(lines[i - 1].removeprefix("# config: "))
    return configs


def test_log_based_metrics_count_each_outcome_by_trigger() -> None:
    run = dry()
    configs = _metric_configs(run)
    assert sorted(configs) == sorted(f"smtp_sender_{kind}" for kind in METRICS)
    messages = {
        "sent": 'jsonPayload.message="email sent"',
        "partial": 'jsonPayload.message="email partially sent"',
        "rejected": 'jsonPayload.error="rejected"',
        "transient": 'jsonPayload.error="unavailable"',  # the log's name for transient
        "misconfigured": 'jsonPayload.error="misconfigured"',
    }
    for kind, needle in messages.items():
        config = configs[f"smtp_sender_{kind}"]
        text = str(config["filter"])
        assert needle in text
        assert 'resource.type="cloud_run_revision"' in text
        assert '"smtp-sender-http" OR "smtp-sender-pubsub"' in text
        if kind in {"rejected", "transient", "misconfigured"}:
            assert 'jsonPayload.message="email not sent"' in text
        assert config["labelExtractors"] == {"trigger": "EXTRACT(jsonPayload.trigger)"}
        descriptor = config["metricDescriptor"]
        assert isinstance(descriptor, dict)
        assert descriptor["metricKind"] == "DELTA"
        assert [label["key"] for label in descriptor["labels"]] == ["trigger"]
    for kind in METRICS:
        name = f"smtp_sender_{kind}"
        assert run.index("logging", "metrics", "describe", name) < run.index(
            "logging", "metrics", "create", name
        )
        assert flags(run.one("logging", "metrics", "create", name))["--config-from-file"] == "-"
    assert dry(METRICS="false").find("logging") == []


def _policies(run: ScriptRun) -> dict[str, dict[str, object]]:
    out = {}
    for cmd in run.find("alpha", "monitoring", "policies", "create"):
        policy = json.loads(flags(cmd)["--policy"])
        out[str(policy["displayName"])] = policy
    return out


def test_alert_email_gets_a_channel_and_two_policies() -> None:
    run = dry(ALERT_EMAIL="oncall@example.com")
    assert "monitoring.googleapis.com" in run.one("services", "enable")
    channel = flags(run.one("beta", "monitoring", "channels", "create"))
    assert channel["--type"] == "email"
    assert channel["--channel-labels"] == "email_address=oncall@example.com"
    # Looked up first, so a rerun reuses the channel instead of making another.
    assert run.index("beta", "monitoring", "channels", "list") < run.index(
        "beta", "monitoring", "channels", "create"
    )
    policies = _policies(run)
    assert sorted(policies) == [
        "smtp-sender: SMTP misconfigured",
        "smtp-sender: dead letters waiting",
    ]
    misconfigured = policies["smtp-sender: SMTP misconfigured"]
    dead = policies["smtp-sender: dead letters waiting"]
    for policy in (misconfigured, dead):
        assert policy["notificationChannels"] == ["LOOKUP_ALERT_CHANNEL"]
    condition = misconfigured["conditions"][0]["conditionThreshold"]  # type: ignore[index]
    assert "logging.googleapis.com/user/smtp_sender_misconfigured" in condition["filter"]
    assert condition["comparison"] == "COMPARISON_GT"
    assert condition["thresholdValue"] == 0
    held = dead["conditions"][0]["conditionThreshold"]["filter"]  # type: ignore[index]
    assert 'subscription_id="smtp-send-dead-letter-hold"' in held
    assert "num_undelivered_messages" in held
    # The policies come after the metric they watch exists.
    assert run.index("logging", "metrics", "create", "smtp_sender_misconfigured") < run.index(
        "alpha", "monitoring", "policies", "create"
    )


def test_alert_channel_is_used_as_given() -> None:
    channel = f"projects/{PROJECT}/notificationChannels/1234"
    run = dry(ALERT_CHANNEL=channel)
    assert run.find("beta", "monitoring", "channels") == []
    for policy in _policies(run).values():
        assert policy["notificationChannels"] == [channel]
    refused(
        "only one of ALERT_EMAIL and ALERT_CHANNEL", ALERT_EMAIL="a@b.co", ALERT_CHANNEL=channel
    )
    refused("ALERT_CHANNEL must be", ALERT_CHANNEL="1234")
    refused("METRICS=true", ALERT_EMAIL="a@b.co", METRICS="false")
    assert dry().find("alpha", "monitoring") == []


# ------------------------------------------------------------------ results topic


def test_results_topic_is_created_and_only_the_runtime_account_may_publish() -> None:
    run = dry(RESULTS_TOPIC="mail-outcomes")
    full = f"projects/{PROJECT}/topics/mail-outcomes"
    assert run.index("pubsub", "topics", "describe", full) < run.index(
        "pubsub", "topics", "create", full
    )
    grant = flags(run.one("pubsub", "topics", "add-iam-policy-binding", full))
    assert grant["--member"] == f"serviceAccount:{RUNTIME_SA}"
    assert grant["--role"] == "roles/pubsub.publisher"
    assert run.index("pubsub", "topics", "create", full) < run.index("functions", "deploy")
    elsewhere = dry(RESULTS_TOPIC="projects/audit-hub-prod/topics/mail")
    assert function_env(elsewhere, "smtp-sender-http")["RESULTS_TOPIC"] == (
        "projects/audit-hub-prod/topics/mail"
    )
    refused("RESULTS_TOPIC", RESULTS_TOPIC="projects/x/subscriptions/y")
    teardown = run_deploy(
        "--dry-run", "--teardown", env=base_env(PROJECT=PROJECT, RESULTS_TOPIC="mail-outcomes")
    )
    assert f"pubsub topics delete {full}" in _deletes(teardown)


# ------------------------------------------------------------------ Cloud Monitoring channel


def test_monitoring_pubsub_channel_publishes_to_the_email_topic() -> None:
    run = dry(
        MONITORING_PUBSUB_CHANNEL="true", ALERT_RECIPIENTS="oncall@example.com,sre@example.org"
    )
    channel = flags(run.one("beta", "monitoring", "channels", "create"))
    assert channel["--type"] == "pubsub"
    assert channel["--channel-labels"] == f"topic=projects/{PROJECT}/topics/smtp-send"
    grants = run.find("pubsub", "topics", "add-iam-policy-binding", "smtp-send")
    assert [flags(g)["--member"] for g in grants] == [NOTIFY_AGENT]
    assert flags(grants[0])["--role"] == "roles/pubsub.publisher"
    # The agent exists once the project has a Pub/Sub channel: channel first, then the grant.
    assert run.index("beta", "monitoring", "channels", "create") < run.index(
        "pubsub", "topics", "add-iam-policy-binding", "smtp-send"
    )
    assert run.index("pubsub", "topics", "create", "smtp-send") < run.index(
        "pubsub", "topics", "add-iam-policy-binding", "smtp-send"
    )
    # Both: the HTTP function's alert routes fall back to them when a webhook has no ?to=.
    for function in ("smtp-sender-pubsub", "smtp-sender-http"):
        assert function_env(run, function)["ALERT_RECIPIENTS"] == (
            "oncall@example.com,sre@example.org"
        )
    refused("ALERT_RECIPIENTS", MONITORING_PUBSUB_CHANNEL="true")
    assert dry().find("beta", "monitoring") == []


# ------------------------------------------------------------------ keyless Google sign-in


def _profile(tmp_path: Path, oauth2: dict[str, object]) -> Path:
    path = tmp_path / "google-profile.json"
    path.write_text(
        json.dumps({"provider": "gmail", "username": "alerts@example.com", "oauth2": oauth2}),
        encoding="utf-8",
    )
    return path


def test_keyless_google_profile_grants_token_creator_on_that_account_only(tmp_path: Path) -> None:
    profile = _profile(tmp_path, {"flow": "google_service_account", "service_account": KEYLESS_SA})
    run = dry(SMTP_PROFILE_FILE=str(profile))
    grant = run.one("iam", "service-accounts", "add-iam-policy-binding")
    assert grant[3] == KEYLESS_SA
    assert flags(grant)["--member"] == f"serviceAccount:{RUNTIME_SA}"
    assert flags(grant)["--role"] == "roles/iam.serviceAccountTokenCreator"
    assert "iamcredentials.googleapis.com" in run.one("services", "enable")
    # Never project-wide.
    assert all(
        "serviceAccountTokenCreator" not in flags(b)["--role"]
        for b in run.find("projects", "add-iam-policy-binding")
    )
    # "key": null is keyless, as the function reads it.
    nulled = _profile(
        tmp_path, {"flow": "google_service_account", "service_account": KEYLESS_SA, "key": None}
    )
    grant = dry(SMTP_PROFILE_FILE=str(nulled)).one(
        "iam", "service-accounts", "add-iam-policy-binding"
    )
    assert grant[3] == KEYLESS_SA
    explicit = dry(DWD_SERVICE_ACCOUNT=RUNTIME_SA, SMTP_PROFILE_FILE="-")
    assert explicit.one("iam", "service-accounts", "add-iam-policy-binding")[3] == RUNTIME_SA


def test_a_profile_with_a_key_or_a_password_gets_no_grant_and_is_never_printed(
    tmp_path: Path, profile_file: Path
) -> None:
    keyed = _profile(
        tmp_path,
        {
            "flow": "google_service_account",
            "key": {"type": "service_account", "private_key": CANARY},
        },
    )
    for profile in (keyed, profile_file):
        run = dry(SMTP_PROFILE_FILE=str(profile))
        assert run.find("iam", "service-accounts", "add-iam-policy-binding") == []
        assert "iamcredentials.googleapis.com" not in run.one("services", "enable")
        assert "Pw-canary" not in run.stdout + run.stderr


@pytest.mark.parametrize(
    "account",
    [
        "mailer@example.com",
        "not an e-mail",
        "x@evil.gserviceaccount.com.example",
        f"{KEYLESS_SA}\n",  # "$" in a Python pattern would let a trailing newline through
    ],
)
def test_a_bad_keyless_account_is_refused_without_quoting_the_profile(
    tmp_path: Path, account: str
) -> None:
    profile = _profile(tmp_path, {"flow": "google_service_account", "service_account": account})
    refused("oauth2.service_account", SMTP_PROFILE_FILE=str(profile))
    run = run_deploy("--dry-run", env=base_env(PROJECT=PROJECT, SMTP_PROFILE_FILE=str(profile)))
    assert account not in run.stderr
    refused("DWD_SERVICE_ACCOUNT", DWD_SERVICE_ACCOUNT=account)


# ------------------------------------------------------------------ replay-dead-letters


def test_replay_dry_run_shows_pull_publish_then_ack_and_deploys_nothing() -> None:
    run = run_deploy(
        "replay-dead-letters", "--dry-run", env=base_env(PROJECT=PROJECT, REPLAY_MAX="3")
    )
    assert run.returncode == 0, run.stderr
    pull = run.one("pubsub", "subscriptions", "pull", "smtp-send-dead-letter-hold")
    assert flags(pull)["--limit"] == "3"
    assert flags(pull)["--format"] == "json"
    assert "--auto-ack" not in flags(pull)
    publish = flags(run.one("pubsub", "topics", "publish", "smtp-send"))
    assert set(publish) == {"--flags-file", "--project"}  # the body is never on the command line
    assert run.index("pubsub", "topics", "publish") < run.index("pubsub", "subscriptions", "ack")
    hand_back = run.find("pubsub", "subscriptions", "modify-message-ack-deadline")
    assert [flags(c)["--ack-deadline"] for c in hand_back] == ["600", "0"]
    assert "idempotency_key" in run.stdout
    assert run.find("functions") == []
    assert run.find("services") == []
    big = run_deploy("replay-dead-letters", "--dry-run", env=base_env(PROJECT=PROJECT))
    assert flags(big.one("pubsub", "subscriptions", "pull"))["--limit"] == "10"  # batches of 10


def test_replay_refuses_bad_bounds_and_teardown() -> None:
    for bad in ("0", "1001", "x"):
        run = run_deploy("replay-dead-letters", "--dry-run", f"REPLAY_MAX={bad}",
                         env=base_env(PROJECT=PROJECT))  # fmt: skip
        assert run.returncode != 0, bad
        assert "REPLAY_MAX" in run.stderr, bad
    both = run_deploy(
        "replay-dead-letters", "--teardown", "--dry-run", env=base_env(PROJECT=PROJECT)
    )
    assert both.returncode != 0
    assert both.gcloud == []
