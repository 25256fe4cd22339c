"""Build the RFC 5322 / MIME message from a validated request (stdlib `email`).

Unicode is carried the portable way: RFC 2047 encoded words for subjects and display names, RFC
2231 for attachment names, IDNA for domains, and quoted-printable or base64 bodies, so the message
is 7-bit clean and any server accepts it, with or without 8BITMIME/SMTPUTF8.
"""

from __future__ import annotations

import email.errors
import hashlib
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from email import policy
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.utils import format_datetime

from sender import content_type
from sender.addresses import Mailbox
from sender.errors import InvalidRequestError, MessageTooLargeError
from sender.message import EmailRequest
from sender.thread_headers import thread_headers

# Header lines folded at 78 with CRLF endings: what SMTP DATA expects.
_POLICY = policy.SMTP


@dataclass(frozen=True, slots=True)
class Content:
    """The final subject and bodies, after templates."""

    subject: str
    text: str | None
    html: str | None


@dataclass(frozen=True, slots=True)
class Envelope:
    """What SMTP needs besides the message bytes: MAIL FROM and RCPT TO addresses (ASCII)."""

    mail_from: str
    recipients: list[str]


@dataclass(frozen=True, slots=True)
class BuiltMessage:
    message_id: str
    envelope: Envelope
    data: bytes  # the exact bytes given to DATA


def message_id_seed(ledger_key: str, request: EmailRequest) -> str:
    """What a keyed Message-ID is derived from: the namespaced key and the message itself.

    Every delivery of one event, on any instance (even one whose in-memory ledger never heard of
    it), builds the same Message-ID, so a duplicate let through by a crash collapses in mailboxes
    that deduplicate on Message-ID (Gmail, most ticketing systems). A *different* message under a
    reused key (after IDEMPOTENCY_TTL_S), or an HTTP key equal to an event id (`http:` vs
    `pubsub:`), gets a different id, so those mailboxes never drop it as a duplicate.
    """
    digest = hashlib.sha256()
    # Everything but the key and the attachments' bytes, whose repr would cost a copy of several
    # times their size on every keyed send; the bytes themselves are hashed as they are.
    fields = request.model_dump(
        exclude={"idempotency_key": True, "attachments": {"__all__": {"content"}}}
    )
    digest.update(repr(fields).encode("utf-8"))
    for attachment in request.attachments:
        digest.update(len(attachment.content).to_bytes(8, "big"))
        digest.update(attachment.content)
    return f"{ledger_key}:{digest.hexdigest()}"


def make_message_id(domain: str, seed: str | None) -> str:
    """A Message-ID on the sender's domain; deterministic when there is a seed.

    `seed` comes from `message_id_seed`: the same for every delivery of one message under one
    idempotency key. Without one (an unkeyed request) the id is random.
    """
    if seed is not None:
        token = hashlib.sha256(seed.encode("utf-8")).hexdigest()[:40]
    else:
        token = uuid.uuid4().hex
    return f"<{token}@{domain}>"


_UNSAFE_7BIT = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")  # controls a 7bit body must not carry
MAX_LINE_BYTES = 998  # RFC 5322 2.1.1, without the CRLF


def _transfer_encoding(text: str) -> str:
    """7bit only for plain short-lined ASCII; else quoted-printable for mostly-ASCII text
    (readable), base64 for mostly non-ASCII (compact). Lines are measured as SMTP sees them:
    split on LF only (str.splitlines would also split on form feeds and other separators)."""
    plain = (
        text.isascii()
        and not _UNSAFE_7BIT.search(text)
        and all(len(line) <= MAX_LINE_BYTES for line in text.split("\n"))
    )
    if plain:
        return "7bit"
    non_ascii = sum(1 for char in text if ord(char) > 127)
    return "base64" if non_ascii > len(text) // 3 else "quoted-printable"


def _serialise(message: EmailMessage) -> bytes:
    """The message bytes, proven to carry exactly the headers that were set.

    A header value that could still turn into a line break on the way out (see `header_safety`)
    would show up here as an extra header; a word too long to fold, as an over-long line.
    Either is the caller's input, so a 400, never a sent message.
    """
    try:
        data = message.as_bytes(policy=_POLICY)
    except (ValueError, UnicodeError, email.errors.MessageError):
        # Includes HeaderWriteError (Python 3.12.5+), which refuses to write a header that
        # would not parse back as itself.
        raise InvalidRequestError.one(
            "headers", "a header value cannot be written safely"
        ) from None
    header_block = data.split(b"\r\n\r\n", 1)[0]
    written = BytesHeaderParser(policy=policy.compat32).parsebytes(header_block + b"\r\n\r\n")
    if [name.lower() for name in written] != [name.lower() for name in message]:
        raise InvalidRequestError.one("headers", "a header value would add or split a header")
    if max(len(line) for line in data.split(b"\r\n")) > MAX_LINE_BYTES:
        raise InvalidRequestError.one(
            "headers", f"a header or body line would exceed {MAX_LINE_BYTES} bytes"
        )
    return data


def _normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _set_body(message: EmailMessage, content: Content) -> None:
    text = _normalise_newlines(content.text) if content.text is not None else None
    html = _normalise_newlines(content.html) if content.html is not None else None
    if text is not None:
        message.set_content(text, subtype="plain", charset="utf-8", cte=_transfer_encoding(text))
        if html is not None:
            message.add_alternative(
                html, subtype="html", charset="utf-8", cte=_transfer_encoding(html)
            )
    elif html is not None:
        message.set_content(html, subtype="html", charset="utf-8", cte=_transfer_encoding(html))


def build_message(
    request: EmailRequest,
    content: Content,
    from_address: Mailbox,
    *,
    seed: str | None,
    max_bytes: int,
    recipients: list[Mailbox] | None = None,
    now: datetime | None = None,
) -> BuiltMessage:
    """The message bytes and envelope. `seed` (`message_id_seed`) makes the Message-ID
    deterministic; `recipients` narrows the envelope (a redelivery that owes only some
    recipients); headers always show the original To and Cc."""
    now = now or datetime.now(UTC)
    message_id = make_message_id(from_address.domain, seed)
    message = EmailMessage(policy=_POLICY)
    _set_headers(message, request, content, from_address, message_id=message_id, now=now)
    _set_body(message, content)
    _attach(message, request)

    data = _serialise(message)
    if len(data) > max_bytes:
        raise MessageTooLargeError.one(
            "body", f"the built message is {len(data)} bytes; the limit is {max_bytes}"
        )
    envelope_recipients = recipients if recipients is not None else request.recipients()
    envelope = Envelope(from_address.addr_spec, [m.addr_spec for m in envelope_recipients])
    return BuiltMessage(message_id=message_id, envelope=envelope, data=data)


def _set_headers(
    message: EmailMessage,
    request: EmailRequest,
    content: Content,
    from_address: Mailbox,
    *,
    message_id: str,
    now: datetime,
) -> None:
    message["From"] = from_address.header_address()
    message["To"] = [m.header_address() for m in request.to]
    if request.cc:
        message["Cc"] = [m.header_address() for m in request.cc]
    if request.reply_to:
        message["Reply-To"] = [m.header_address() for m in request.reply_to]
    message["Subject"] = content.subject
    message["Date"] = format_datetime(now)
    message["Message-ID"] = message_id
    # RFC 3834: tells auto-responders (vacation replies, ticket systems) not to answer an alert.
    message["Auto-Submitted"] = "auto-generated"
    for name, value in request.headers.items():
        message[name] = value
    if request.thread is not None:
        threading = thread_headers(
            request.thread, domain=from_address.domain, subject=content.subject, now=now
        )
        for name, value in threading.items():
            if name not in message:  # a caller's own header of that name stays as given
                message[name] = value


def _attach(message: EmailMessage, request: EmailRequest) -> None:
    for attachment in request.attachments:
        kind = content_type.for_attachment(
            attachment.content_type, attachment.filename, attachment.content
        )
        message.add_attachment(
            attachment.content,
            maintype=kind.maintype,
            subtype=kind.subtype,
            filename=attachment.filename,
            params=kind.params,
        )
