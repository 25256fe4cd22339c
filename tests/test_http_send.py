"""HTTP trigger, in process: what arrives in the mailbox and what the caller gets back."""

from __future__ import annotations

import base64
import socket
from email.message import EmailMessage, MIMEPart
from typing import Any

import pytest

from tests.support.checks import assert_retryable, log_records
from tests.support.constants import PROFILE_FROM
from tests.support.env import SenderEnv
from tests.support.smtp_server import DeliveredMessage, SmtpTestServer, StallPoint

MESSAGE: dict[str, Any] = {"to": "ops@example.com", "subject": "s", "text": "t"}


def _send(client: Any, payload: Any, **headers: str) -> Any:
    return client.post("/", json=payload, headers=headers)


def _deliver_one(client: Any, server: SmtpTestServer, payload: Any) -> DeliveredMessage:
    """Send *payload*, expect 200, and return the one message *server* received."""
    resp = _send(client, payload)
    assert resp.status_code == 200, resp.get_data(as_text=True)
    [delivered] = server.wait_for_messages(1)
    return delivered


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def _header_block(raw: bytes) -> bytes:
    return raw.split(b"\r\n\r\n", 1)[0] if b"\r\n\r\n" in raw else raw.split(b"\n\n", 1)[0]


def _text(part: MIMEPart | None) -> str:
    """A text part's content with MIME's canonical CRLF line ends read as LF."""
    assert part is not None
    content = part.get_content()
    assert isinstance(content, str)
    return content.replace("\r\n", "\n").rstrip("\n")


def _all_header_text(msg: EmailMessage) -> str:
    """Every header of every MIME part, decoded, one per line."""
    lines = [f"{k}: {v}" for part in msg.walk() for k, v in part.items()]
    return "\n".join(lines)


@pytest.fixture(params=["ssl", "starttls"])
def any_tls_server(request: pytest.FixtureRequest, sender_env: SenderEnv) -> SmtpTestServer:
    """Each TLS mode in turn, with the profile for it stored in Secret Manager."""
    server: SmtpTestServer = request.getfixturevalue(f"smtp_{request.param}")
    sender_env.use(server)
    return server


def test_simple_message_is_delivered_and_reported_sent(
    http_client: Any, any_tls_server: SmtpTestServer
) -> None:
    resp = _send(
        http_client, {"to": "ops@example.com", "subject": "Disk 91% on db-1", "text": "hello"}
    )

    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "sent"
    assert body["accepted"] == ["ops@example.com"]
    assert body["refused"] == {}
    [delivered] = any_tls_server.wait_for_messages(1)
    msg = delivered.message
    assert delivered.rcpt_tos == ("ops@example.com",)
    assert delivered.mail_from == "alerts@example.com"
    assert msg["Subject"] == "Disk 91% on db-1"
    assert msg["From"] == PROFILE_FROM
    assert msg["To"] == "ops@example.com"
    assert msg["Message-ID"] == body["message_id"]
    assert body["message_id"].endswith("@example.com>")
    assert msg["Auto-Submitted"] == "auto-generated"
    assert msg["Date"] is not None
    assert msg.get_content_type() == "text/plain"
    assert _text(msg) == "hello"


def test_korean_subject_names_body_and_attachment_name_arrive_intact(
    http_client: Any, server: SmtpTestServer
) -> None:
    subject = "디스크 사용률 91% — db-1 경고 🚨"
    text = "안녕하세요,\n디스크가 거의 찼습니다. Ünïcödé ✓"
    filename = "주간 보고서 2026.csv"
    csv_bytes = "호스트,사용률\ndb-1,91%\n".encode()
    delivered = _deliver_one(
        http_client,
        server,
        {
            "to": ["김철수 <chulsoo@example.com>"],
            "cc": "Zoë Ünïcode <zoe@example.com>",
            "reply_to": "당직자 <oncall@example.com>",
            "subject": subject,
            "text": text,
            "attachments": [
                {"filename": filename, "content": _b64(csv_bytes), "content_type": "text/csv"}
            ],
        },
    )

    msg = delivered.message
    assert msg["Subject"] == subject
    [to] = msg["To"].addresses
    assert (to.display_name, to.addr_spec) == ("김철수", "chulsoo@example.com")
    [cc] = msg["Cc"].addresses
    assert (cc.display_name, cc.addr_spec) == ("Zoë Ünïcode", "zoe@example.com")
    assert msg["Reply-To"].addresses[0].display_name == "당직자"
    assert _text(msg.get_body(preferencelist=("plain",))) == text
    [attachment] = list(msg.iter_attachments())
    assert attachment.get_filename() == filename
    assert attachment.get_content_type() == "text/csv"
    payload = attachment.get_payload(decode=True)
    assert payload == csv_bytes


def test_unicode_headers_travel_as_7bit_encoded_words(
    http_client: Any, server: SmtpTestServer
) -> None:
    """Relays without SMTPUTF8 must still accept the message: RFC 2047 / RFC 2231 on the wire."""
    delivered = _deliver_one(
        http_client,
        server,
        {
            "to": "김철수 <chulsoo@example.com>",
            "subject": "디스크 경고",
            "text": "본문",
            "attachments": [{"filename": "보고서.txt", "content": _b64(b"x")}],
        },
    )

    assert _header_block(delivered.raw).isascii()
    for part in delivered.message.walk():
        for name, value in part.raw_items():
            assert value.isascii(), (name, value)


def test_text_html_and_binary_attachment_arrive_byte_identical(
    http_client: Any, smtp_starttls: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_starttls)
    binary = bytes(range(256)) * 64 + b"\x00\r\n\r\n.\r\n\xff"
    html = "<p>Disk <b>91%</b> on db-1 — 경고</p>"
    delivered = _deliver_one(
        http_client,
        smtp_starttls,
        {
            "to": "ops@example.com",
            "subject": "report",
            "text": "Disk 91% on db-1",
            "html": html,
            "attachments": [
                {"filename": "dump.bin", "content": _b64(binary)},
                {"filename": "r.csv", "content": _b64(b"a,b\n1,2\n")},
            ],
        },
    )

    msg = delivered.message
    assert msg.get_content_type() == "multipart/mixed"
    alternatives = [p for p in msg.walk() if p.get_content_type() == "multipart/alternative"]
    assert len(alternatives) == 1
    kinds = [p.get_content_type() for p in alternatives[0].iter_parts()]
    assert kinds == ["text/plain", "text/html"]
    assert _text(msg.get_body(preferencelist=("plain",))) == "Disk 91% on db-1"
    assert _text(msg.get_body(preferencelist=("html",))) == html
    attachments = {a.get_filename(): a for a in msg.iter_attachments()}
    assert set(attachments) == {"dump.bin", "r.csv"}
    assert attachments["dump.bin"].get_payload(decode=True) == binary
    # No content_type given: guessed from the file name.
    assert attachments["r.csv"].get_content_type() == "text/csv"
    assert attachments["r.csv"].get_payload(decode=True) == b"a,b\n1,2\n"


def test_bcc_is_in_the_envelope_but_in_no_delivered_header(
    http_client: Any, server: SmtpTestServer
) -> None:
    delivered = _deliver_one(
        http_client,
        server,
        {
            "to": "ops@example.com",
            "cc": ["lead@example.com"],
            "bcc": ["Secret Auditor <hidden-auditor@example.org>"],
            "subject": "incident",
            "text": "body",
        },
    )

    assert sorted(delivered.rcpt_tos) == [
        "hidden-auditor@example.org",
        "lead@example.com",
        "ops@example.com",
    ]
    headers = _all_header_text(delivered.message)
    assert "hidden-auditor" not in headers
    assert "Secret Auditor" not in headers
    # Header names, not the whole text: a random Message-ID can contain the letters "bcc".
    assert "bcc" not in {name.lower() for part in delivered.message.walk() for name in part}
    assert b"hidden-auditor" not in delivered.raw


def test_partially_refused_recipients_are_reported_with_code_and_text(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    resp = _send(
        http_client,
        {**MESSAGE, "to": ["ops@example.com", "gone@example.com"]},
    )

    assert resp.status_code == 200, resp.get_data(as_text=True)
    body = resp.get_json()
    assert body["status"] == "partial"
    assert body["accepted"] == ["ops@example.com"]
    assert list(body["refused"]) == ["gone@example.com"]
    refusal = body["refused"]["gone@example.com"]
    assert refusal["code"] == 550
    assert "5.1.1 No such user" in refusal["message"]
    [delivered] = server.wait_for_messages(1)
    assert delivered.rcpt_tos == ("ops@example.com",)


def _assert_rejected(resp: Any) -> None:
    """502 ``rejected`` and no Retry-After: sending the same message again cannot help."""
    assert resp.status_code == 502, resp.get_data(as_text=True)
    assert resp.get_json()["error"] == "rejected"
    assert "Retry-After" not in resp.headers


def test_every_recipient_refused_permanently_is_502(
    http_client: Any, server: SmtpTestServer
) -> None:
    server.reject_recipient("a@example.com", "550 5.1.1 No such user")
    server.reject_recipient("b@example.com", "553 5.1.3 Bad address")
    resp = _send(http_client, {**MESSAGE, "to": ["a@example.com", "b@example.com"]})

    _assert_rejected(resp)
    assert server.messages == []


@pytest.mark.parametrize(
    "reply",
    ["552 5.3.4 Message size exceeds fixed limit", "554 5.7.1 Message rejected as spam"],
)
def test_permanent_rejection_at_end_of_data_is_502(
    http_client: Any, server: SmtpTestServer, reply: str
) -> None:
    server.fail_data(reply)
    resp = _send(http_client, MESSAGE)

    _assert_rejected(resp)
    assert server.messages == []


@pytest.mark.parametrize(
    ("where", "reply"),
    [
        ("mail", "421 4.7.0 Try again later, closing connection"),
        ("mail", "451 4.3.0 Temporary local problem"),
        ("rcpt", "450 4.2.1 Mailbox busy"),  # the only recipient: nobody accepted it
        ("data", "451 4.3.0 Mail server temporarily rejected message"),
        ("data", "452 4.3.1 Insufficient system storage"),
    ],
)
def test_transient_4xx_reply_is_503_with_retry_after(
    http_client: Any, server: SmtpTestServer, where: str, reply: str
) -> None:
    if where == "mail":
        server.fail_mail_from(reply)
    elif where == "rcpt":
        server.reject_recipient(MESSAGE["to"], reply)
    else:
        server.fail_data(reply)
    resp = _send(http_client, MESSAGE)

    assert_retryable(resp)
    assert server.messages == []


def test_disconnect_after_data_is_transient_and_logged_as_outcome_unknown(
    http_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.disconnect_after_data()
    resp = _send(http_client, MESSAGE)

    assert_retryable(resp)
    assert "may have accepted" in resp.get_json()["detail"]
    [line] = [r for r in log_records(capfd.readouterr().out) if r.get("trigger") == "http"]
    # Its own message, so an operator can tell a possible duplicate from a plain network error.
    assert (line["severity"], line["message"]) == ("WARNING", "outcome unknown after DATA")


def test_disconnect_before_the_final_dot_is_a_plain_network_error(
    http_client: Any, server: SmtpTestServer, capfd: pytest.CaptureFixture[str]
) -> None:
    server.fail_data("421 4.3.2 shutting down", times=1)
    resp = _send(http_client, MESSAGE)

    assert_retryable(resp)
    [line] = [r for r in log_records(capfd.readouterr().out) if r.get("trigger") == "http"]
    assert line["message"] == "email not sent"


@pytest.mark.parametrize("where", ["greeting", "mail", "data"])
def test_stalled_server_times_out_as_transient(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv, where: StallPoint
) -> None:
    sender_env.set(SMTP_TIMEOUT_S="1")
    server.stall(where, 30)
    resp = _send(http_client, MESSAGE)

    assert_retryable(resp)
    assert server.messages == []


def test_refused_connection_is_transient(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    profile = sender_env.use(smtp_ssl)
    smtp_ssl.stop()
    # The premise: the profile now names a closed port (not a server that merely failed).
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection((profile["host"], profile["port"]), timeout=5).close()
    resp = _send(http_client, MESSAGE)

    assert_retryable(resp)


def test_success_is_logged_as_one_structured_line(
    http_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    server.reject_recipient("gone@example.com", "550 5.1.1 No such user")
    resp = _send(
        http_client,
        {**MESSAGE, "to": ["ops@example.com", "gone@example.com"]},
    )

    assert resp.status_code == 200
    message_id = resp.get_json()["message_id"]
    records = log_records(capfd.readouterr().out)
    outcome = [r for r in records if r.get("message_id") == message_id]
    assert len(outcome) == 1, records
    assert outcome[0]["accepted_count"] == 1
    assert "gone@example.com" in outcome[0]["refused"]
    assert outcome[0]["severity"] in {"INFO", "NOTICE", "WARNING"}


def test_request_from_an_allowed_sender_is_used(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(ALLOWED_SENDERS="reports@example.com")
    delivered = _deliver_one(
        http_client, server, {**MESSAGE, "from": "Reports <reports@example.com>"}
    )

    assert delivered.message["From"].addresses[0].addr_spec == "reports@example.com"


def test_extra_headers_are_added(http_client: Any, server: SmtpTestServer) -> None:
    delivered = _deliver_one(
        http_client, server, {**MESSAGE, "headers": {"X-Ticket": "42", "X-Alert-Name": "디스크"}}
    )

    assert delivered.message["X-Ticket"] == "42"
    assert delivered.message["X-Alert-Name"] == "디스크"


def test_profile_without_from_uses_the_username_address(
    http_client: Any, smtp_ssl: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.use(smtp_ssl, sender=None)
    delivered = _deliver_one(http_client, smtp_ssl, MESSAGE)

    assert delivered.message["From"].addresses[0].addr_spec == "alerts@example.com"


def test_nothing_is_sent_when_validation_fails_even_with_a_working_server(
    http_client: Any, server: SmtpTestServer
) -> None:
    """Guard for the validation suite: the same server does accept a valid message."""
    bad = _send(http_client, {**MESSAGE, "to": "not an address"})
    good = _send(http_client, MESSAGE)

    assert bad.status_code == 400
    assert good.status_code == 200
    assert len(server.wait_for_messages(1)) == 1
    assert len(server.messages) == 1


def test_internationalised_domain_goes_on_the_wire_as_idna(
    http_client: Any, server: SmtpTestServer
) -> None:
    delivered = _deliver_one(http_client, server, {**MESSAGE, "to": "Ops <ops@bücher.example>"})

    assert delivered.rcpt_tos == ("ops@xn--bcher-kva.example",)
    [to] = delivered.message["To"].addresses
    assert to.domain.encode("idna") == b"xn--bcher-kva.example"


def test_trace_header_is_carried_into_the_log_lines(
    http_client: Any,
    server: SmtpTestServer,
    capfd: pytest.CaptureFixture[str],
) -> None:
    trace = "105445aa7843bc8bf206b12000100000/1;o=1"
    resp = _send(http_client, MESSAGE, **{"X-Cloud-Trace-Context": trace})

    assert resp.status_code == 200
    records = [r for r in log_records(capfd.readouterr().out) if r.get("message_id")]
    assert records
    expected = "projects/test-project/traces/105445aa7843bc8bf206b12000100000"
    assert all(r.get("logging.googleapis.com/trace") == expected for r in records), records
