"""Attachment content types over HTTP: parameters accepted or refused, and what a text attachment
is sent as — what a mail client receiving it will see."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from tests.support.checks import assert_nothing_sent
from tests.support.smtp_server import SmtpTestServer

CSV = "이름,사용률\ndb-1,91%\nserveur-é,88%\n".encode()


def _message(*attachments: dict[str, Any]) -> dict[str, Any]:
    return {
        "to": "ops@example.com",
        "subject": "report",
        "text": "attached",
        "attachments": [
            {**a, "content": base64.b64encode(a["content"]).decode()} for a in attachments
        ],
    }


def _attachments(server: SmtpTestServer) -> list[Any]:
    [delivered] = server.wait_for_messages(1)
    return list(delivered.message.iter_attachments())


def test_utf8_csv_says_utf8_and_decodes_intact(http_client: Any, server: SmtpTestServer) -> None:
    response = http_client.post(
        "/", json=_message({"filename": "report.csv", "content": CSV, "content_type": "text/csv"})
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    [csv] = _attachments(server)
    assert csv.get_content_type() == "text/csv"
    assert csv.get_param("charset") == "utf-8"
    assert csv.get_content() == CSV.decode("utf-8")  # what a client shows, decoded by charset


def test_binary_txt_goes_out_as_octet_stream(http_client: Any, server: SmtpTestServer) -> None:
    blob = bytes(range(256))
    response = http_client.post("/", json=_message({"filename": "dump.txt", "content": blob}))
    assert response.status_code == 200, response.get_data(as_text=True)
    [dump] = _attachments(server)
    assert dump.get_content_type() == "application/octet-stream"
    assert dump.get_filename() == "dump.txt"
    assert dump.get_content() == blob


@pytest.mark.parametrize(
    ("declared", "content_type", "charset"),
    [
        ("text/csv; charset=utf-8", "text/csv", "utf-8"),
        ('text/plain; charset="windows-1252"', "text/plain", "windows-1252"),
        ('text/csv; charset="windows-1252"', "text/csv", "windows-1252"),
        ("TEXT/PLAIN; Charset=ISO-8859-1; format=flowed", "text/plain", "iso-8859-1"),
    ],
)
def test_content_type_parameters_are_accepted_and_kept(
    http_client: Any, server: SmtpTestServer, declared: str, content_type: str, charset: str
) -> None:
    content = "café".encode(charset)
    response = http_client.post(
        "/", json=_message({"filename": "a.txt", "content": content, "content_type": declared})
    )
    assert response.status_code == 200, response.get_data(as_text=True)
    [part] = _attachments(server)
    assert part.get_content_type() == content_type
    assert part.get_param("charset") == charset
    assert part.get_content() == "café"


@pytest.mark.parametrize(
    "declared",
    [
        "text/csv; charset=utf-8\r\nBcc: victim@example.org",
        "text/csv; charset=utf-8\nX-Injected: 1",
        "text/csv; =broken",
        "text/csv; charset",
        "text/csv;; charset=utf-8",
        "text/csv; charset=utf-8 trailing garbage",
        "text/csv;; charset=utf-8 garbage ?",
        "text/csv; name==?utf-8?q?x=0D=0AX-Y=3A_z?=",
        # A parameter that would contradict the filename (a mail client may show this name):
        'text/csv; name="invoice.pdf.exe"',
        "text/csv; charset=utf-8; filename=invoice.pdf.exe",
        "application/octet-stream; boundary=x",
    ],
    ids=[
        "CRLF",
        "LF",
        "no name",
        "no value",
        "empty",
        "garbage",
        "both",
        "encoded word",
        "name",
        "filename",
        "boundary",
    ],
)
def test_malformed_content_type_is_400_naming_the_field(
    http_client: Any, server: SmtpTestServer, declared: str
) -> None:
    response = http_client.post(
        "/", json=_message({"filename": "a.csv", "content": CSV, "content_type": declared})
    )
    assert response.status_code == 400, response.get_data(as_text=True)
    [problem] = response.get_json()["details"]
    assert problem["field"] == "attachments[0].content_type"
    assert_nothing_sent(server)
