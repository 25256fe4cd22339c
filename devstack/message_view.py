"""What the outbox page shows of a stored message: decoded headers, bodies, attachments."""

from __future__ import annotations

import mimetypes
from dataclasses import dataclass
from datetime import datetime
from email import policy
from email.message import EmailMessage, Message
from email.parser import BytesParser


@dataclass(frozen=True)
class Summary:
    """One line of the inbox list."""

    id: str
    received: datetime
    sender: str
    to: str
    subject: str
    size: int


@dataclass(frozen=True)
class Attachment:
    index: int
    filename: str
    content_type: str
    content: bytes


@dataclass(frozen=True)
class MessageView:
    summary: Summary
    headers: list[tuple[str, str]]
    text: str | None
    html: str | None
    attachments: list[Attachment]


def _decode(value: object) -> str:
    """A header value decoded to Unicode; a malformed one is shown as written, never fails."""
    try:
        return str(value)
    except (ValueError, TypeError, LookupError, AttributeError):  # a parse defect: raw text
        return repr(value)


def _header(message: Message, name: str) -> str:
    return ", ".join(_decode(value) for value in message.get_all(name) or [])


def _parse(data: bytes, headers_only: bool = False) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(data, headersonly=headers_only)
    assert isinstance(message, EmailMessage)  # guaranteed by policy.default
    return message


def _summary(message_id: str, received: datetime, message: Message, size: int) -> Summary:
    return Summary(
        id=message_id,
        received=received,
        sender=_header(message, "From"),
        to=", ".join(v for v in (_header(message, "To"), _header(message, "Cc")) if v),
        subject=_header(message, "Subject"),
        size=size,
    )


def summarize(message_id: str, received: datetime, data: bytes) -> Summary:
    """The list row: parses the headers only."""
    return _summary(message_id, received, _parse(data, headers_only=True), len(data))


def _text_of(part: EmailMessage) -> str:
    try:
        content = part.get_content()
    except (LookupError, ValueError):  # unknown charset or broken transfer encoding
        payload = part.get_payload(decode=True)
        return payload.decode("utf-8", "replace") if isinstance(payload, bytes) else ""
    return content if isinstance(content, str) else content.decode("utf-8", "replace")


def _bytes_of(part: EmailMessage) -> bytes:
    payload = part.get_payload(decode=True)
    if isinstance(payload, bytes):
        return payload
    return str(part.get_payload()).encode("utf-8")


def view(message_id: str, received: datetime, data: bytes) -> MessageView:
    """Split a message into what a reader wants: the two bodies and everything else."""
    message = _parse(data)
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    bodies = [p for p in (html_part, text_part) if p is not None]
    attachments: list[Attachment] = []
    for part in message.walk():
        if part.is_multipart() or any(part is body for body in bodies):
            continue
        assert isinstance(part, EmailMessage)
        content_type = part.get_content_type()
        filename = part.get_filename()
        if not filename:
            # Inline parts without a name (say, an image referenced by cid:) still download.
            extension = mimetypes.guess_extension(content_type) or ".bin"
            filename = f"part-{len(attachments) + 1}{extension}"
        attachments.append(
            Attachment(
                index=len(attachments),
                filename=filename,
                content_type=content_type,
                content=_bytes_of(part),
            )
        )
    headers = [(name, _decode(value)) for name, value in message.items()]
    return MessageView(
        summary=_summary(message_id, received, message, len(data)),  # no second parse
        headers=headers,
        text=_text_of(text_part) if isinstance(text_part, EmailMessage) else None,
        html=_text_of(html_part) if isinstance(html_part, EmailMessage) else None,
        attachments=attachments,
    )
