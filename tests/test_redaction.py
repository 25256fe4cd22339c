"""A canary password and a canary body never show up in a response, a log line or an exception.

The password is non-ASCII on purpose (see `tests.support.constants.CANARY_PASSWORD`): a leak
through ``repr`` would show it escaped, so the escaped forms are searched for too.
"""

from __future__ import annotations

import base64
import importlib.util
import json
import traceback
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from tests.support import pubsub
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.ff_process import MAIN_PY
from tests.support.smtp_server import SmtpTestServer

BODY_CANARY = "body-canary-5d41402abc4b2a76"
MESSAGE: dict[str, Any] = {
    "to": "ops@example.com",
    "subject": "s",
    "text": f"secret report {BODY_CANARY}",
    "html": f"<p>{BODY_CANARY}</p>",
}
NEW_PASSWORD = "Neues-Pässwort-Ω-42"


def _forms(secret: str) -> list[str]:
    """The ways a secret could appear in text: as is, repr-escaped, JSON-escaped, base64."""
    forms = {
        secret,
        repr(secret)[1:-1],
        json.dumps(secret)[1:-1],
        secret.encode("utf-8").decode("latin-1"),
        base64.b64encode(secret.encode("utf-8")).decode(),
        base64.b64encode(f"\0{SMTP_USER}\0{secret}".encode()).decode(),
    }
    return sorted(forms)


def assert_clean(*texts: str, secrets: tuple[str, ...] = (CANARY_PASSWORD, NEW_PASSWORD)) -> None:
    blob = "\n".join(texts)
    for secret in secrets:
        for form in _forms(secret):
            assert form not in blob, f"leaked {secret!r} as {form!r}"
    assert BODY_CANARY not in blob


def test_success_and_auth_failure_leak_nothing_over_http(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sender_env.use(smtp_ssl)
    ok = http_client.post("/", json=MESSAGE)
    smtp_ssl.set_password(SMTP_USER, NEW_PASSWORD)  # provider rotated, secret did not
    failed = http_client.post("/", json=MESSAGE)
    out, err = capfd.readouterr()

    assert ok.status_code == 200
    assert failed.status_code >= 500
    assert out.strip()  # something was logged: the check below is not vacuous
    assert_clean(
        ok.get_data(as_text=True),
        failed.get_data(as_text=True),
        str(dict(failed.headers)),
        out,
        err,
    )


def test_every_failure_kind_leaks_nothing(
    http_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sender_env.use(smtp_ssl)
    responses = []
    smtp_ssl.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    responses.append(http_client.post("/", json={**MESSAGE, "to": "gone@example.com"}))
    smtp_ssl.fail_data("451 4.3.0 Try later", times=1)
    responses.append(http_client.post("/", json=MESSAGE))
    smtp_ssl.disconnect_after_data(times=1)
    responses.append(http_client.post("/", json=MESSAGE))
    responses.append(http_client.post("/", json={**MESSAGE, "to": "x"}))  # invalid
    out, err = capfd.readouterr()

    assert [r.status_code for r in responses] == [502, 503, 503, 400]
    assert_clean(*(r.get_data(as_text=True) for r in responses), out, err)


def test_pubsub_auth_failure_leaks_nothing_in_logs_or_traceback(
    event_client: Any,
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    sender_env.use(smtp_ssl)
    smtp_ssl.set_password(SMTP_USER, NEW_PASSWORD)
    headers, body = pubsub.cloudevent_request(MESSAGE)
    resp = event_client.post("/", data=body, headers=headers)
    out, err = capfd.readouterr()

    assert resp.status_code == 500
    assert out.strip()
    assert_clean(resp.get_data(as_text=True), out, err)


def _load_main() -> Any:
    spec = importlib.util.spec_from_file_location("smtp_sender_main_under_test", MAIN_PY)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_exception_raised_for_redelivery_carries_no_secret(
    smtp_ssl: SmtpTestServer,
    sender_env: SenderEnv,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """What the Pub/Sub trigger raises (and Cloud Logging prints as a traceback) is clean."""
    sender_env.use(smtp_ssl)
    smtp_ssl.set_password(SMTP_USER, NEW_PASSWORD)
    main = _load_main()
    _, body = pubsub.cloudevent_request(MESSAGE)
    event = CloudEvent(
        {
            "id": "redaction-1",
            "source": f"//pubsub.googleapis.com/{pubsub.TOPIC}",
            "type": pubsub.PUBLISHED_TYPE,
            "specversion": "1.0",
            "time": pubsub.rfc3339(),
        },
        json.loads(body),
    )

    with pytest.raises(Exception) as caught:  # noqa: PT011 - any exception type; its text matters
        main.send_pubsub(event)
    out, err = capfd.readouterr()

    chain = "".join(traceback.format_exception(caught.value))
    context = caught.value.__context__
    assert_clean(str(caught.value), repr(caught.value), chain, repr(context), out, err)
