"""A lean cold start: what `import main` and each trigger's first email load in a fresh interpreter.

A cold instance pays for every module it imports before its first answer. What only some
requests need — another store or topic's client, OAuth2 libraries, Jinja's sandbox, the alert
sources' pydantic models — is imported by the code that needs it, when it first does; these tests
keep it that way (issue 11). The numbers are the benchmark's (`bench/bench.py`, (f)).
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.support.certs import CertBundle
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.first_request import modules_loaded
from tests.support.smtp_server import SmtpTestServer

# Loaded only by the deployments and requests that use them.
OPTIONAL = {
    "google.cloud.firestore": "the Firestore ledger (IDEMPOTENCY_STORE=firestore)",
    "google.pubsub_v1": "outcome events (RESULTS_TOPIC)",
    "google.cloud.pubsub": "outcome events (RESULTS_TOPIC)",
    "msal": "OAuth2 flow microsoft",
    "google.oauth2": "OAuth2 flows google_service_account, refresh_token",
    # The profile's `oauth2` object is parsed (sender.oauth2.config, no IdP library) when the
    # profile is read; fetching a token (flows, the HTTP session) is an OAuth2 profile's alone.
    "sender.oauth2.flows": "OAuth2 token requests",
    "sender.oauth2.session": "OAuth2 token requests",
    "jinja2.sandbox": "templates (flask imports jinja2 itself, not its sandbox)",
    "sender.templates": "templates",
    "sender.alertmanager": "POST /alertmanager",
    "sender.grafana": "POST /grafana",
    "sender.cloud_monitoring": "POST /cloud-monitoring, Cloud Monitoring's Pub/Sub channel",
    "sender.hook": "POST /hook/<template>",
    "sender.ledger_firestore": "the Firestore ledger",
}
# Needed by the first send that reads the secret from Secret Manager, never by importing `main`
# (nor by a profile in SMTP_SECRET_FILE).
SECRET_MANAGER = {
    "google.cloud.secretmanager": "SMTP_SECRET",
    "grpc": "SMTP_SECRET",
    "google.auth": "SMTP_SECRET",
    "requests": "SMTP_SECRET (google-api-core imports it)",
}


def loaded(modules: set[str], names: dict[str, str]) -> dict[str, str]:
    """The entries of `names` (a package or module and why it is optional) that were imported."""
    return {
        name: why
        for name, why in names.items()
        if any(m == name or m.startswith(name + ".") for m in modules)
    }


def test_importing_main_loads_no_optional_or_secret_manager_module() -> None:
    modules = modules_loaded("import", {})

    assert "main" in modules
    assert loaded(modules, OPTIONAL | SECRET_MANAGER) == {}


@pytest.mark.parametrize("step", ["http", "pubsub"])
def test_the_first_email_of_each_trigger_loads_only_what_it_uses(
    step: str, smtp_ssl: SmtpTestServer, test_ca: CertBundle, tmp_path: Path
) -> None:
    profile = tmp_path / "profile.json"
    profile.write_text(
        json.dumps(smtp_ssl.profile(username=SMTP_USER, password=CANARY_PASSWORD)), "utf-8"
    )
    env = {"SMTP_SECRET_FILE": str(profile), "SMTP_CA_FILE": str(test_ca.ca_pem)}

    modules = modules_loaded(step, env)

    assert len(smtp_ssl.wait_for_messages(1)) == 1  # the first email did go out
    assert loaded(modules, OPTIONAL | SECRET_MANAGER) == {}
    assert {"pydantic", "smtplib", "sender.session_pool"} <= modules  # what a send does use
