"""functions-framework as a real process, with the profile served by the stub as a process."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import CertBundle
from tests.support.checks import assert_no_secret
from tests.support.constants import CANARY_PASSWORD, SECRET_NAME, SMTP_USER
from tests.support.env import function_env
from tests.support.ff_process import FunctionsFrameworkProcess
from tests.support.secret_manager_stub import SecretManagerStubProcess
from tests.support.smtp_server import SmtpTestServer

pytestmark = pytest.mark.process

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "처리 완료", "text": "t"}


@pytest.fixture
def stub_process(smtp_ssl: SmtpTestServer, tmp_path: Path) -> Iterator[SecretManagerStubProcess]:
    """The Secret Manager stub in its own process, holding a profile for *smtp_ssl*."""
    profile = tmp_path / "profile.json"
    profile.write_text(
        json.dumps(smtp_ssl.profile(username=SMTP_USER, password=CANARY_PASSWORD)), "utf-8"
    )
    with SecretManagerStubProcess({SECRET_NAME: profile}) as stub:
        yield stub


@pytest.fixture
def process_env(
    stub_process: SecretManagerStubProcess, test_ca: CertBundle, tmp_path: Path
) -> dict[str, str]:
    return function_env(
        secret_manager=stub_process.address,
        ca_file=test_ca.ca_pem,
        gcloud_config=tmp_path / "gcloud",
    )


def test_http_function_process_sends_and_logs_json(
    smtp_ssl: SmtpTestServer, process_env: dict[str, str], tmp_path: Path
) -> None:
    with FunctionsFrameworkProcess("send_http", env=process_env, log_dir=tmp_path) as ff:
        resp = ff.post_json("/", MESSAGE)
        bad = ff.post_json("/", {"to": "nobody", "subject": "s", "text": "t"})
        smtp_ssl.fail_data("451 4.3.0 Try later")
        busy = ff.post_json("/", MESSAGE)
        records = ff.log_records()
        output = ff.output()

    assert resp.status == 200, resp.text
    body = resp.json()
    assert body["status"] == "sent"
    [delivered] = smtp_ssl.wait_for_messages(1)
    assert delivered.message["Subject"] == "처리 완료"
    assert bad.status == 400
    assert bad.json()["error"] == "invalid_request"
    assert busy.status == 503
    assert busy.headers["Retry-After"]
    assert any(r.get("message_id") == body["message_id"] for r in records), records
    assert all("severity" in r for r in records)
    assert_no_secret(output, resp.text, bad.text, busy.text)


def test_cloudevent_function_process_acks_and_redelivers(
    smtp_ssl: SmtpTestServer, process_env: dict[str, str], tmp_path: Path
) -> None:
    with FunctionsFrameworkProcess(
        "send_pubsub", "cloudevent", env=process_env, log_dir=tmp_path
    ) as ff:
        sent = ff.post_cloudevent(MESSAGE, event_id="proc-evt-1")
        pushed = ff.post_push_envelope({**MESSAGE, "to": "push@example.com"})
        invalid = ff.post_cloudevent(b"not json")
        smtp_ssl.fail_mail_from("421 4.7.0 Try again later")
        transient = ff.post_cloudevent(MESSAGE, event_id="proc-evt-2")
        records = ff.log_records()
        output = ff.output()

    assert sent.status == 200, output
    assert pushed.status == 200, output
    assert invalid.status == 200, output
    assert transient.status == 500, output
    delivered = smtp_ssl.wait_for_messages(2)
    assert sorted(m.rcpt_tos[0] for m in delivered) == ["ops@example.com", "push@example.com"]
    assert [r for r in records if r.get("event_id") == "proc-evt-1" and r.get("message_id")]
    assert_no_secret(output)
