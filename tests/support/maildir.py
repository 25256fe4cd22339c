"""Read back what the tier delivered (one Maildir) and what Postfix logged.

Messages are parsed with `email.policy.default`, so headers come back decoded (a Korean
``Subject`` reads as Korean) and parts/attachments are `EmailMessage` objects.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

_PARSER = BytesParser(policy=policy.default)


@dataclass(frozen=True)
class Attachment:
    """One attachment as the recipient's mail client would see it."""

    filename: str | None
    content_type: str
    content: bytes


@dataclass(frozen=True)
class Delivered:
    """One message in the Maildir."""

    path: Path
    message: EmailMessage

    @property
    def original_recipient(self) -> str:
        """The envelope recipient before delivery (virtual(8)'s ``X-Original-To``)."""
        return str(self.message.get("X-Original-To", ""))

    @property
    def subject(self) -> str:
        return str(self.message.get("Subject", ""))

    def header(self, name: str) -> str | None:
        value = self.message.get(name)
        return None if value is None else str(value)

    def body(self, subtype: str = "plain") -> str | None:
        """The text/<subtype> body, decoded; None when the message has none."""
        part = self.message.get_body(preferencelist=(subtype,))
        if part is None:
            return None
        assert isinstance(part, EmailMessage)
        return str(part.get_content())

    @property
    def attachments(self) -> list[Attachment]:
        found = []
        for part in self.message.iter_attachments():
            assert isinstance(part, EmailMessage)
            payload = part.get_payload(decode=True)
            found.append(
                Attachment(
                    part.get_filename(),
                    part.get_content_type(),
                    payload if isinstance(payload, bytes) else b"",
                )
            )
        return found


def read_maildir(maildir: Path) -> list[Delivered]:
    """Every message in ``new/`` and ``cur/``, oldest first (Maildir names start with a time)."""
    files: list[Path] = []
    for sub in ("new", "cur"):
        folder = maildir / sub
        if folder.is_dir():
            files.extend(p for p in folder.iterdir() if p.is_file())
    files.sort(key=lambda p: (p.stat().st_mtime, p.name))
    delivered = []
    for path in files:
        with path.open("rb") as fh:
            msg = _PARSER.parse(fh)
        assert isinstance(msg, EmailMessage)
        delivered.append(Delivered(path, msg))
    return delivered


def wait_for(
    read: Callable[[], list[Delivered]],
    match: Callable[[Delivered], bool],
    count: int = 1,
    timeout: float = 20.0,
) -> list[Delivered]:
    """Delivery is asynchronous (queue manager -> virtual): poll, bounded, for *count* matches.

    Returns the matches (at least *count*) once there are enough; raises `TimeoutError` naming
    what did arrive when the deadline passes first, so a shortfall can never pass an assert.
    """
    deadline = time.monotonic() + timeout
    while True:
        found = [m for m in read() if match(m)]
        if len(found) >= count:
            return found
        if time.monotonic() > deadline:
            subjects = [m.subject for m in found]
            raise TimeoutError(f"{len(found)} of {count} messages after {timeout}s: {subjects}")
        time.sleep(0.1)


# "disconnect from localhost[127.0.0.1] ehlo=2 starttls=1 auth=1 mail=1 ... commands=7"
_DISCONNECT = re.compile(
    r" postfix/(?P<service>[\w-]+)/smtpd\[\d+\]: disconnect from \S+ (?P<stats>.*)"
)


@dataclass(frozen=True)
class SmtpSession:
    """Postfix's per-connection summary: which commands the client sent, and how many succeeded."""

    service: str
    stats: dict[str, str]

    def sent(self, command: str) -> bool:
        return command.lower() in self.stats


def smtp_sessions(log_text: str, service: str | None = None) -> list[SmtpSession]:
    """The ``disconnect from`` summaries in *log_text*, optionally for one listener
    (``ssl``/``starttls``/``plain``, the ``syslog_name`` suffix set in master.cf)."""
    sessions = []
    for line in log_text.splitlines():
        m = _DISCONNECT.search(line)
        if m and (service is None or m["service"] == service):
            stats = dict(item.split("=", 1) for item in m["stats"].split() if "=" in item)
            sessions.append(SmtpSession(m["service"], stats))
    return sessions
