"""`python -m sender check` run as an operator would, as a subprocess, against Postfix + Dovecot:
the path step by step, the failing step with its hint, the exit status, and never a secret."""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import pytest

from tests.support.check_cli import run_check
from tests.support.checks import assert_no_secret, oauth2_canaries
from tests.support.mta import MtaTier
from tests.support.oauth_accounts import entra_app
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub

pytestmark = [pytest.mark.mta, pytest.mark.process]

WRONG_PASSWORD = "Wrong-Pässwort-🔑-0042"
TENANT = "check.onmicrosoft.com"


def _profile(mta: MtaTier, listener: str, security: str, **more: Any) -> dict[str, Any]:
    return {
        "host": "127.0.0.1",
        "port": getattr(mta.ports, listener),
        "security": security,
        "username": mta.user,
        "password": mta.password,
        "from": "Alerts <alerts@mta.test>",
        **more,
    }


@pytest.fixture
def profile_file(tmp_path: Path) -> Any:
    def write(profile: dict[str, Any]) -> str:
        path = tmp_path / f"profile-{uuid.uuid4().hex[:6]}.json"
        path.write_text(json.dumps(profile))
        return str(path)

    return write


def _env(mta: MtaTier, **more: str) -> dict[str, str]:
    return {"SMTP_CA_FILE": str(mta.ca_file), "SMTP_TIMEOUT_S": "5", **more}


@pytest.mark.parametrize(("listener", "security"), [("starttls", "starttls"), ("ssl", "ssl")])
def test_a_working_profile_passes_every_step_and_sends_the_test_message(
    mta: MtaTier, profile_file: Any, listener: str, security: str
) -> None:
    path = profile_file(_profile(mta, listener, security))
    to = f"check-{uuid.uuid4().hex}@example.net"
    run = run_check(["--profile-file", path, "--send-to", to], _env(mta))

    assert run.returncode == 0, run.stdout + run.stderr
    assert run.failed is None
    expected = ["profile", "dns", "connect", "greeting", "ehlo", "tls", "ehlo", "auth", "send"]
    if security == "ssl":
        expected = ["profile", "dns", "connect", "tls", "greeting", "ehlo", "auth", "send"]
    assert run.steps == expected
    [tls] = run.step("tls")
    assert "TLSv1." in tls
    assert "expires" in tls
    assert "issued by" in tls
    assert any("AUTH PLAIN LOGIN" in line for line in run.step("ehlo"))
    [auth] = run.step("auth")
    assert auth.startswith(f"PLAIN as {mta.user}: 235")
    [got] = mta.wait_for_messages(lambda m: m.original_recipient == to)
    assert got.subject == "smtp-sender check"
    assert_no_secret(run.stdout, run.stderr, secrets=[mta.password])


def test_a_wrong_password_fails_the_auth_step_with_its_hint(
    mta: MtaTier, profile_file: Any
) -> None:
    path = profile_file(_profile(mta, "ssl", "ssl", password=WRONG_PASSWORD))
    run = run_check(["--profile-file", path, "--send-to", "never@example.net"], _env(mta))

    assert run.returncode == 1
    assert run.failed is not None
    step, reason = run.failed
    assert step == "auth"
    assert "535" in reason
    assert "5.7.8" in reason
    assert run.hint is not None
    assert "username and password" in run.hint
    assert run.steps[-1] == "auth", "nothing runs after the failed step"
    assert_no_secret(run.stdout, run.stderr, secrets=[WRONG_PASSWORD, mta.password])


def test_ssl_on_the_starttls_port_gets_the_tls_mode_hint(mta: MtaTier, profile_file: Any) -> None:
    run = run_check(["--profile-file", profile_file(_profile(mta, "starttls", "ssl"))], _env(mta))
    assert run.returncode == 1
    assert run.failed is not None
    assert run.failed[0] == "tls"
    assert "WRONG_VERSION_NUMBER" in run.failed[1]
    assert run.hint is not None
    assert "set security starttls" in run.hint


def test_starttls_on_the_implicit_tls_port_gets_the_tls_mode_hint(
    mta: MtaTier, profile_file: Any
) -> None:
    path = profile_file(_profile(mta, "ssl", "starttls"))
    run = run_check(["--profile-file", path], _env(mta, SMTP_TIMEOUT_S="2"))
    assert run.returncode == 1
    assert run.failed is not None
    assert run.failed[0] == "greeting"
    assert "no greeting" in run.failed[1]
    assert run.hint is not None
    assert "set security ssl" in run.hint


def test_the_secret_the_function_uses_and_an_oauth2_sign_in(mta: MtaTier, tmp_path: Path) -> None:
    """``--secret NAME`` reads the Secret Manager the function reads; an OAuth2 profile shows
    the token step (never the token) and signs in with XOAUTH2."""
    idp = mta.idp
    oauth2 = entra_app(idp, mta.user, tenant=TENANT)
    profile = _profile(mta, "starttls", "starttls", oauth2=oauth2)
    del profile["password"]
    name = f"projects/{PROJECT}/secrets/check-profile"
    with SecretManagerStub() as stub:
        stub.put_secret(name, json.dumps(profile))
        env = _env(
            mta,
            SECRET_MANAGER_EMULATOR_HOST=stub.address,
            GOOGLE_CLOUD_PROJECT=PROJECT,
            CLOUDSDK_CONFIG=str(tmp_path / "gcloud"),
            **idp.process_env(),
        )
        before = len(idp.issued("microsoft"))
        run = run_check(["--secret", "check-profile"], env)
        idp.refuse("entra_token", "invalid_client")
        refused = run_check(["--secret", "check-profile"], env)
        idp.clear_faults()

    assert run.returncode == 0, run.stdout + run.stderr
    [summary] = run.step("profile")
    assert "oauth2 flow microsoft" in summary
    [token] = run.step("token")
    assert "valid for" in token
    [auth] = run.step("auth")
    assert auth.startswith(f"XOAUTH2 as {mta.user}: 235")
    assert refused.returncode == 1
    assert refused.failed is not None
    assert refused.failed[0] == "token"
    assert "invalid_client" in refused.failed[1]
    assert refused.hint is not None
    assert "client secret" in refused.hint
    tokens = [t.value for t in idp.issued("microsoft")[before:]]
    assert tokens, "a token was issued, so the check below is not vacuous"
    canaries = oauth2_canaries(oauth2, tokens, mta.user)
    assert_no_secret(run.stdout, run.stderr, refused.stdout, refused.stderr, secrets=canaries)
