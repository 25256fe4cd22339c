"""Every invalid HTTP input is refused before anything is sent (400/405/413/415)."""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from tests.support.checks import assert_nothing_sent
from tests.support.env import SenderEnv
from tests.support.smtp_server import SmtpTestServer

VALID: dict[str, Any] = {"to": "ops@example.com", "subject": "s", "text": "t"}
X_B64 = base64.b64encode(b"x").decode()


def _with(**changes: Any) -> dict[str, Any]:
    message = dict(VALID)
    for key, value in changes.items():
        if value is None:
            message.pop(key, None)
        else:
            message[key] = value
    return message


def _assert_refused(resp: Any, status: int | set[int], server: SmtpTestServer) -> None:
    """Refused with *status* (or one of them) and an ``error`` in the JSON body, nothing sent."""
    statuses = {status} if isinstance(status, int) else status
    assert resp.status_code in statuses, resp.get_data(as_text=True)
    assert resp.get_json()["error"]
    assert_nothing_sent(server)


def _fields(resp: Any) -> list[str]:
    body = resp.get_json()
    assert body["error"] == "invalid_request", body
    details = body["details"]
    assert details, body
    for detail in details:
        assert isinstance(detail["problem"], str)
        assert detail["problem"]
    return [d["field"] for d in details]


# (case id, message, the field that must be named: exact, or a prefix ending in "*")
CASES: list[tuple[str, dict[str, Any], str]] = [
    ("missing to", _with(to=None), "to"),
    ("empty to", _with(to=[]), "to"),
    ("invalid address in list", _with(to=["ops@example.com", "not-an-address"]), "to[1]"),
    ("invalid address string", _with(to="ops@@example.com"), "to*"),
    ("invalid cc", _with(cc=["x@"]), "cc[0]"),
    ("invalid bcc", _with(bcc=["a@example.com", "two words@example.com"]), "bcc[1]"),
    ("invalid reply_to", _with(reply_to="nobody"), "reply_to*"),
    ("CRLF in to", _with(to=["ops@example.com\r\nBcc: evil@example.org"]), "to[0]"),
    ("LF in cc display name", _with(cc=["Ops\nBcc: evil@example.org <ops@example.com>"]), "cc[0]"),
    ("CRLF in subject", _with(subject="Hi\r\nBcc: evil@example.org"), "subject"),
    ("LF in subject", _with(subject="Hi\nX-Evil: 1"), "subject"),
    ("CR in subject", _with(subject="Hi\rX-Evil: 1"), "subject"),
    ("CRLF in reply_to", _with(reply_to="a@example.com\r\nBcc: evil@example.org"), "reply_to*"),
    ("CRLF in header value", _with(headers={"X-Ticket": "42\r\nBcc: x@example.org"}), "headers*"),
    ("bad header name", _with(headers={"X Ticket: 1\r\nBcc": "x"}), "headers*"),
    ("structural Bcc header", _with(headers={"Bcc": "evil@example.org"}), "headers*"),
    ("structural From header", _with(headers={"From": "evil@example.org"}), "headers*"),
    ("structural Content-Type", _with(headers={"Content-Type": "text/html"}), "headers*"),
    ("structural Received", _with(headers={"Received": "from x"}), "headers*"),
    ("structural lowercase to", _with(headers={"to": "evil@example.org"}), "headers*"),
    ("missing subject", _with(subject=None), "subject"),
    ("no body at all", _with(text=None), "*"),
    ("unknown template", _with(template="no-such-template-xyz", text=None), "template"),
    (
        "bad base64 attachment",
        _with(attachments=[{"filename": "r.csv", "content": "!!! not base64 ***"}]),
        "attachments[0]*",
    ),
    (
        "CRLF in attachment name",
        _with(
            attachments=[
                {"filename": "a\r\nBcc: evil@example.org", "content": X_B64},
            ]
        ),
        "attachments[0]*",
    ),
    ("to is a number", _with(to=42), "to*"),
    ("subject is a list", _with(subject=["a"]), "subject"),
]


@pytest.mark.parametrize(("message", "field"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_invalid_message_is_400_naming_the_field_and_nothing_is_sent(
    http_client: Any, server: SmtpTestServer, message: dict[str, Any], field: str
) -> None:
    resp = http_client.post("/", json=message)

    _assert_refused(resp, 400, server)
    fields = _fields(resp)
    if field == "*":
        pass  # a message-level problem: any field name is acceptable, details must exist
    elif field.endswith("*"):
        assert any(f.startswith(field[:-1]) for f in fields), fields
    else:
        assert field in fields, fields


def test_too_many_recipients_is_400(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(MAX_RECIPIENTS="3")
    message = _with(
        to=["a@example.com", "b@example.com"], cc=["c@example.com"], bcc=["d@example.com"]
    )
    resp = http_client.post("/", json=message)

    _assert_refused(resp, 400, server)
    _fields(resp)


def test_default_recipient_limit_is_50(http_client: Any, server: SmtpTestServer) -> None:
    too_many = [f"user{i}@example.com" for i in range(51)]
    resp = http_client.post("/", json=_with(to=too_many))

    _assert_refused(resp, 400, server)


def test_recipient_outside_allowed_list_is_400(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(ALLOWED_RECIPIENTS="example.com,boss@example.net")
    resp = http_client.post("/", json=_with(to=["ops@example.com", "x@elsewhere.org"]))

    _assert_refused(resp, 400, server)
    assert "to[1]" in _fields(resp)


def test_sender_other_than_the_profile_from_is_400(
    http_client: Any, server: SmtpTestServer
) -> None:
    resp = http_client.post("/", json=_with(**{"from": "Evil <evil@example.org>"}))

    _assert_refused(resp, 400, server)
    assert any(f.startswith("from") for f in _fields(resp))


@pytest.mark.parametrize(
    "body",
    [
        b'{"to": "ops@example.com", ',
        json.dumps([VALID]).encode(),
        json.dumps(VALID).encode().replace(b'"t"', b'"\xff\xfe"'),
    ],
    ids=["malformed JSON", "JSON that is not an object", "not UTF-8"],
)
def test_body_that_is_not_a_json_object_is_400(
    http_client: Any, server: SmtpTestServer, body: bytes
) -> None:
    resp = http_client.post("/", data=body, headers={"Content-Type": "application/json"})

    _assert_refused(resp, 400, server)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b'{"to": "ops@example.com", "to": "evil@example.org", "subject": "s", "text": "t"}', "to"),
        (
            b'{"to": "ops@example.com", "subject": "s", "text": "t",'
            b' "headers": {"X-A": "1", "X-A": "2"}}',
            "headers.X-A",
        ),
        (
            b'{"to": "ops@example.com", "subject": "s", "template": "alert",'
            b' "data": {"items": [{"k": 1, "k": 2}]}}',
            "data.items[0].k",
        ),
    ],
    ids=["top level", "nested object", "inside a list"],
)
def test_a_repeated_json_key_is_400_naming_it(
    http_client: Any, server: SmtpTestServer, body: bytes, field: str
) -> None:
    resp = http_client.post("/", data=body, headers={"Content-Type": "application/json"})

    _assert_refused(resp, 400, server)
    assert resp.get_json()["details"][0]["field"] == field


def test_a_header_name_given_twice_in_different_case_is_400(
    http_client: Any, server: SmtpTestServer
) -> None:
    message = {**VALID, "headers": {"X-Ticket": "1", "x-ticket": "2"}}
    resp = http_client.post("/", json=message)

    _assert_refused(resp, 400, server)
    assert resp.get_json()["details"][0]["field"] == "headers"


@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", None])
def test_non_json_content_type_is_415(
    http_client: Any, server: SmtpTestServer, content_type: str | None
) -> None:
    headers = {"Content-Type": content_type} if content_type else {}
    resp = http_client.post("/", data=json.dumps(VALID).encode(), headers=headers)

    _assert_refused(resp, 415, server)


def test_json_with_charset_parameter_is_accepted(http_client: Any, server: SmtpTestServer) -> None:
    resp = http_client.post(
        "/",
        data=json.dumps(VALID).encode(),
        headers={"Content-Type": "application/json; charset=utf-8"},
    )

    assert resp.status_code == 200, resp.get_data(as_text=True)
    assert len(server.wait_for_messages(1)) == 1


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405(http_client: Any, server: SmtpTestServer, method: str) -> None:
    resp = http_client.open("/", method=method, json=VALID)

    _assert_refused(resp, 405, server)


def test_oversize_body_is_413(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(MAX_MESSAGE_BYTES="4096")
    resp = http_client.post("/", json=_with(text="x" * 10_000))

    _assert_refused(resp, 413, server)


def test_built_message_over_the_limit_is_refused(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    """The request fits but the MIME message (base64 grows ~4/3 plus headers) does not."""
    sender_env.set(MAX_MESSAGE_BYTES="6000")
    blob = base64.b64encode(bytes(4200)).decode()
    resp = http_client.post("/", json=_with(attachments=[{"filename": "z.bin", "content": blob}]))

    _assert_refused(resp, {400, 413}, server)
