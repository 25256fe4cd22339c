"""The built message, parsed back the way a receiving mail client would."""

from __future__ import annotations

import base64
import email
from email import policy
from email.message import EmailMessage
from typing import Any

import pytest

from sender.addresses import parse_mailbox
from sender.errors import InvalidRequestError, MessageTooLargeError
from sender.message import parse_request
from sender.mime import Content, _serialise, build_message, make_message_id

SENDER = parse_mailbox("경보 시스템 <alerts@example.com>")


def build(data: dict[str, Any], **kwargs: Any) -> tuple[EmailMessage, Any]:
    request = parse_request(data)
    content = Content(request.subject or "", request.text, request.html)
    built = build_message(
        request, content, SENDER, seed=kwargs.pop("key", None), max_bytes=10**7, **kwargs
    )
    parsed = email.message_from_bytes(built.data, policy=policy.default)
    assert isinstance(parsed, EmailMessage)
    return parsed, built


def test_headers_unicode_and_bcc_only_in_envelope() -> None:
    parsed, built = build(
        {
            "to": "김철수 <kim@example.com>",
            "cc": ["cc@example.com"],
            "bcc": ["hidden@example.org"],
            "reply_to": "oncall@example.com",
            "subject": "디스크 사용량 91% — db-1",
            "text": "본문입니다",
            "headers": {"X-Ticket": "42"},
        }
    )
    assert parsed["Subject"] == "디스크 사용량 91% — db-1"
    assert parsed["From"] == "경보 시스템 <alerts@example.com>"
    assert parsed["To"] == "김철수 <kim@example.com>"
    assert parsed["Reply-To"] == "oncall@example.com"
    assert parsed["Auto-Submitted"] == "auto-generated"
    assert parsed["X-Ticket"] == "42"
    assert parsed["Date"] is not None
    assert parsed["Message-ID"].endswith("@example.com>")
    assert "hidden" not in built.data.decode("ascii")
    assert built.envelope.recipients == ["kim@example.com", "cc@example.com", "hidden@example.org"]
    assert built.envelope.mail_from == "alerts@example.com"
    # Text is carried in canonical CRLF form (RFC 2045); a mail client shows the same text.
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == "본문입니다"


def test_wire_format_is_seven_bit() -> None:
    _, built = build(
        {"to": "a@example.com", "subject": "한국어", "text": "한국어 본문", "html": "<p>é</p>"}
    )
    assert built.data.isascii()
    assert b"\r\n" in built.data


def test_text_html_and_binary_attachment() -> None:
    blob = bytes(range(256)) * 4
    parsed, _ = build(
        {
            "to": "a@example.com",
            "subject": "report",
            "text": "see attached",
            "html": "<p>see attached</p>",
            "attachments": [
                {"filename": "보고서 2026.bin", "content": base64.b64encode(blob).decode()},
                {"filename": "r.csv", "content": base64.b64encode(b"a,b\n1,2\n").decode()},
            ],
        }
    )
    assert parsed.get_content_type() == "multipart/mixed"
    body = parsed.get_body(("html", "plain"))
    assert body is not None
    alternative = next(iter(parsed.iter_parts()))
    assert alternative.get_content_type() == "multipart/alternative"
    attachments = list(parsed.iter_attachments())
    assert [a.get_filename() for a in attachments] == ["보고서 2026.bin", "r.csv"]
    assert attachments[0].get_content() == blob
    assert attachments[0].get_content_type() == "application/octet-stream"
    assert attachments[1].get_content_type() == "text/csv"  # guessed from the name
    assert attachments[1].get_param("charset") == "utf-8"  # and its bytes are UTF-8


def test_text_attachments_say_their_charset_or_go_out_as_bytes() -> None:
    csv = "이름,사용률\ndb-1,91%\n".encode()
    latin1 = "café".encode("latin-1")
    parsed, _ = build(
        {
            "to": "a@example.com",
            "subject": "s",
            "text": "t",
            "attachments": [
                {"filename": "r.csv", "content": base64.b64encode(csv).decode()},
                {"filename": "dump.txt", "content": base64.b64encode(b"\xff\x00\xfe").decode()},
                {
                    "filename": "old.txt",
                    "content": base64.b64encode(latin1).decode(),
                    "content_type": "text/plain; charset=ISO-8859-1",
                },
            ],
        }
    )
    utf8, binary, declared = parsed.iter_attachments()
    assert (utf8.get_content_type(), utf8.get_param("charset")) == ("text/csv", "utf-8")
    assert utf8.get_content() == csv.decode()
    assert binary.get_content_type() == "application/octet-stream"
    assert binary.get_content() == b"\xff\x00\xfe"
    assert declared.get_param("charset") == "iso-8859-1"
    assert declared.get_content() == "café"


def test_html_only() -> None:
    parsed, _ = build({"to": "a@example.com", "subject": "s", "html": "<b>hi</b>"})
    assert parsed.get_content_type() == "text/html"


def test_envelope_can_be_narrowed_to_recipients_still_owed() -> None:
    data = {"to": ["a@example.com", "b@example.com"], "subject": "s", "text": "t"}
    parsed, built = build(data, recipients=[parse_mailbox("b@example.com")])
    assert built.envelope.recipients == ["b@example.com"]
    assert parsed["To"] == "a@example.com, b@example.com"


def test_message_id_is_deterministic_with_a_key() -> None:
    assert make_message_id("example.com", "event-1") == make_message_id("example.com", "event-1")
    assert make_message_id("example.com", "event-1") != make_message_id("example.com", "event-2")
    assert make_message_id("example.com", None) != make_message_id("example.com", None)
    _, first = build({"to": "a@example.com", "subject": "s", "text": "t"}, key="k")
    _, second = build({"to": "a@example.com", "subject": "s", "text": "t"}, key="k")
    assert first.message_id == second.message_id


def test_built_message_over_the_limit() -> None:
    request = parse_request({"to": "a@example.com", "subject": "s", "text": "x" * 5000})
    with pytest.raises(MessageTooLargeError):
        build_message(request, Content("s", "x" * 5000, None), SENDER, seed=None, max_bytes=2000)


@pytest.mark.parametrize(
    "text",
    [
        "page\x0cbreak " * 200,  # str.splitlines would split at the form feed; SMTP would not
        "nul \x00 byte",
        "x" * 1200,  # one line longer than SMTP allows
    ],
)
def test_bodies_that_7bit_cannot_carry_are_encoded(text: str) -> None:
    parsed, built = build({"to": "a@example.com", "subject": "s", "text": text})
    assert max(len(line) for line in built.data.split(b"\r\n")) <= 998
    assert b"\x00" not in built.data
    assert parsed["Content-Transfer-Encoding"] in {"quoted-printable", "base64"}
    assert parsed.get_content().replace("\r\n", "\n").rstrip("\n") == text.rstrip("\n")


def test_a_header_that_would_split_on_the_wire_is_never_sent() -> None:
    # The last line of defence, whatever let such a value in (older Pythons decoded encoded
    # words into real line breaks): what is written must parse back to the headers that were set.
    message = EmailMessage(policy=policy.SMTP)
    message["Subject"] = "s"
    message.set_raw("X-Ticket", "42\r\nFrom: CEO <ceo@bank.example>")
    message.set_content("t")
    with pytest.raises(InvalidRequestError):
        _serialise(message)


def test_long_unfoldable_header_words_are_folded_as_encoded_words() -> None:
    _, built = build(
        {"to": "a@example.com", "subject": "s" * 990, "text": "t", "headers": {"X-L": "y" * 1500}}
    )
    assert max(len(line) for line in built.data.split(b"\r\n")) <= 998
