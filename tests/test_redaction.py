"""A canary password and a canary body never show up in a response, a log line or an exception.

The password is non-ASCII on purpose (see `tests.support.constants.CANARY_PASSWORD`): a leak
through ``repr`` would show it escaped, so the escaped forms are searched for too
(`tests.support.checks.assert_no_secret`).
"""

from __future__ import annotations

import importlib.util
import json
import traceback
from typing import Any

import pytest
from cloudevents.http import CloudEvent

from tests.support import pubsub
from tests.support.checks import assert_no_secret
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
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


def assert_clean(*texts: str) -> None:
    """Neither password (the stored one, the one the provider rotated to) nor the body leaked."""
    assert_no_secret(*texts, secrets=(CANARY_PASSWORD, NEW_PASSWORD))
    assert BODY_CANARY not in "\n".join(texts)


def test_success_and_auth_failure_leak_nothing_over_http(
    http_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    ok = http_client.post("/", json=MESSAGE)
    server.set_password(SMTP_USER, NEW_PASSWORD)  # provider rotated, secret did not
    server.hang_up_idle()  # ... and dropped the session logged in with the old password
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
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    responses = []
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    responses.append(http_client.post("/", json={**MESSAGE, "to": "gone@example.com"}))
    server.fail_data("451 4.3.0 Try later", times=1)
    responses.append(http_client.post("/", json=MESSAGE))
    server.disconnect_after_data(times=1)
    responses.append(http_client.post("/", json=MESSAGE))
    responses.append(http_client.post("/", json={**MESSAGE, "to": "x"}))  # invalid
    out, err = capfd.readouterr()

    assert [r.status_code for r in responses] == [502, 503, 503, 400]
    assert_clean(*(r.get_data(as_text=True) for r in responses), out, err)


def test_pubsub_auth_failure_leaks_nothing_in_logs_or_traceback(
    event_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server.set_password(SMTP_USER, NEW_PASSWORD)
    resp = pubsub.post_event(event_client, MESSAGE)
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
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    """What the Pub/Sub trigger raises (and Cloud Logging prints as a traceback) is clean."""
    server.set_password(SMTP_USER, NEW_PASSWORD)
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
