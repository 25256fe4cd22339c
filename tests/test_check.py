"""`python -m sender check` against the scripted SMTP server, in process (the MTA tier runs it as a
subprocess against Postfix): each step's line, the failing step with its hint, the exit status."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sender import check
from sender.profile import parse_profile
from tests.support.certs import CertBundle
from tests.support.checks import assert_no_secret
from tests.support.constants import CANARY_PASSWORD, PROFILE_FROM, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.fault_server import FaultServer, Script, reply
from tests.support.ff_process import PROJECT_ROOT


def run(*args: str) -> tuple[int, list[str]]:
    out = io.StringIO()
    status = check.main(list(args), out=out)
    return status, out.getvalue().splitlines()


@pytest.fixture
def profile_file(tmp_path: Path) -> Any:
    def write(profile: dict[str, Any] | str) -> str:
        path = tmp_path / "profile.json"
        path.write_text(profile if isinstance(profile, str) else json.dumps(profile))
        return str(path)

    return write


def test_every_step_passes_and_the_test_message_is_delivered(
    sender_env: SenderEnv, test_ca: CertBundle, profile_file: Any
) -> None:
    with FaultServer(mode="starttls", certs=test_ca, users={SMTP_USER: CANARY_PASSWORD}) as srv:
        path = profile_file(srv.profile(username=SMTP_USER, password=CANARY_PASSWORD))
        status, lines = run("--profile-file", path, "--send-to", "ops@example.com")
        delivered = srv.delivered

    assert status == 0, lines
    assert [line.split(":")[0] for line in lines] == [
        "ok profile", "ok dns", "ok connect", "ok greeting", "ok ehlo", "ok tls", "ok ehlo",
        "ok auth", "ok send",
    ]  # fmt: skip
    assert lines[0] == (
        f"ok profile: 127.0.0.1 port {srv.port} starttls, user {SMTP_USER}, password, "
        "from alerts@example.com"
    )
    [message] = delivered
    assert message.rcpt_tos == ("ops@example.com",)
    assert b"Subject: smtp-sender check" in message.raw
    assert_no_secret("\n".join(lines), secrets=[CANARY_PASSWORD])


def test_a_relay_without_username_signs_in_with_nothing(
    sender_env: SenderEnv, test_ca: CertBundle, profile_file: Any
) -> None:
    with FaultServer(mode="ssl", certs=test_ca) as srv:
        status, lines = run("--profile-file", profile_file(srv.profile()))
    assert status == 0, lines
    assert "ok auth: none: the profile has no username" in lines
    assert [line.split(":")[0] for line in lines][:4] == [
        "ok profile", "ok dns", "ok connect", "ok tls",
    ]  # fmt: skip


def test_the_failed_step_is_named_with_the_servers_reply_and_a_hint(
    sender_env: SenderEnv, test_ca: CertBundle, profile_file: Any
) -> None:
    script = Script(replies={"MAIL": reply(530, "5.7.0 Authentication Required.")})
    with FaultServer(script, mode="ssl", certs=test_ca) as srv:
        status, lines = run("--profile-file", profile_file(srv.profile()), "--send-to", "a@b.co")
    assert status == 1
    assert lines[-2] == (
        "FAILED send: the SMTP server requires authentication: add username and password to "
        "the profile (530 5.7.0 Authentication Required.)"
    )
    assert lines[-1].startswith("hint: The server wants a signed-in client before MAIL")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        ({"provider": "nope", "username": "a@b.co", "password": "x"}, "known providers: gmail"),
        ({"host": "smtp.example.com", "username": "a@b.co"}, "neither password nor oauth2"),
        ("not json and no SMTP_USERNAME", "SMTP_USERNAME"),
    ],
)
def test_a_broken_profile_fails_the_profile_step(
    sender_env: SenderEnv, profile_file: Any, payload: Any, reason: str
) -> None:
    status, lines = run("--profile-file", profile_file(payload))
    assert status == 1
    [failed, hint] = lines
    assert failed.startswith("FAILED profile: ")
    assert reason in failed
    assert hint.startswith("hint: fix the profile")


def test_a_missing_file_and_the_configured_secret(sender_env: SenderEnv, tmp_path: Path) -> None:
    status, lines = run("--profile-file", str(tmp_path / "absent.json"))
    assert (status, lines[0]) == (
        1,
        f"FAILED profile: --profile-file {tmp_path}/absent.json does not exist",
    )
    # Without an option: the secret the function is configured with (SMTP_SECRET), not stored yet.
    status, lines = run()
    assert status == 1
    assert lines[0].startswith("FAILED profile: secret version projects/")
    assert "was not found" in lines[0]


def test_the_command_line(tmp_path: Path) -> None:
    usage = subprocess.run(
        [sys.executable, "-m", "sender"], capture_output=True, text=True, cwd=PROJECT_ROOT,
        check=False,
    )  # fmt: skip
    assert usage.returncode == 2
    assert "python -m sender check" in usage.stderr
    both = subprocess.run(
        [sys.executable, "-m", "sender", "check", "--profile-file", "a", "--secret", "b"],
        capture_output=True, text=True, cwd=PROJECT_ROOT, check=False,
    )  # fmt: skip
    assert both.returncode == 2
    assert "not allowed with argument" in both.stderr


def test_the_profile_line_shows_the_preset_and_no_secret() -> None:
    payload = {"provider": "ses", "region": "us-east-1", "username": "AKIAX",
               "password": CANARY_PASSWORD, "from": PROFILE_FROM}  # fmt: skip
    profile = check.describe(parse_profile(json.dumps(payload).encode()))
    assert profile == (
        "provider ses -> email-smtp.us-east-1.amazonaws.com port 465 ssl, user AKIAX, password, "
        "from alerts@example.com, limits: 50 recipients per message"
    )
