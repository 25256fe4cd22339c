"""The outbox directory: one `.eml` file per message received, named in time order.

Each message is written atomically (a hidden temporary file, then a rename), so a reader
listing the directory never sees half a message. The SMTP envelope (sender, recipients
including Bcc, which no header shows) goes in a `<id>.envelope.json` beside it, written first.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

#: Our own names: UTC time to the microsecond, then a random tag (sorts in arrival order).
_OWN_NAME = re.compile(r"^(?P<time>\d{8}T\d{12})Z-[0-9a-f]{8}$")
#: Any id the page will serve: a plain file name, so no path can escape the directory.
_SAFE_ID = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,200}$")
_TIME_FORMAT = "%Y%m%dT%H%M%S%f"


@dataclass(frozen=True)
class Envelope:
    """What the SMTP transaction said, as opposed to what the headers say."""

    mail_from: str
    rcpt_tos: list[str]
    peer: str
    login: str | None
    # What chaos mode did to this transaction (refused recipients, a held reply); see chaos.py.
    chaos: list[str] = field(default_factory=list)


class UnknownMessageError(LookupError):
    """No message with that id is in the outbox."""


class Outbox:
    """Writes and reads the messages of one outbox directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._lock = threading.Lock()
        self._last = datetime.min.replace(tzinfo=UTC)

    def _next_id(self) -> str:
        # Strictly increasing even if the clock stalls or steps back, so names keep time order.
        with self._lock:
            now = max(datetime.now(UTC), self._last + timedelta(microseconds=1))
            self._last = now
        return f"{now.strftime(_TIME_FORMAT)}Z-{secrets.token_hex(4)}"

    def save(self, content: bytes, envelope: Envelope) -> str:
        """Store one message and return its id."""
        self.directory.mkdir(parents=True, exist_ok=True)
        message_id = self._next_id()
        envelope_json = json.dumps(
            {
                "mail_from": envelope.mail_from,
                "rcpt_tos": envelope.rcpt_tos,
                "peer": envelope.peer,
                "login": envelope.login,
                "chaos": envelope.chaos,
            },
            ensure_ascii=False,
            indent=2,
        ).encode("utf-8")
        self._write_atomically(self.directory / f"{message_id}.envelope.json", envelope_json)
        self._write_atomically(self.directory / f"{message_id}.eml", content)
        return message_id

    def _write_atomically(self, target: Path, data: bytes) -> None:
        tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.tmp")
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, target)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise

    def ids(self) -> list[str]:
        """Ids of all messages, newest first (files dropped in by hand sort by mtime)."""
        try:
            paths = [p for p in self.directory.iterdir() if p.suffix == ".eml"]
        except FileNotFoundError:
            return []
        entries: list[tuple[datetime, str]] = []
        for path in paths:
            if not _SAFE_ID.match(path.stem):
                continue
            try:
                entries.append((self.received(path.stem), path.stem))
            except UnknownMessageError:
                continue  # deleted while we were listing
        entries.sort(reverse=True)
        return [message_id for _, message_id in entries]

    def path(self, message_id: str) -> Path:
        """The `.eml` path of `message_id`; refuses anything that is not a plain name."""
        if not _SAFE_ID.match(message_id):
            raise UnknownMessageError(message_id)
        path = self.directory / f"{message_id}.eml"
        if not path.is_file():
            raise UnknownMessageError(message_id)
        return path

    def read(self, message_id: str) -> bytes:
        try:
            return self.path(message_id).read_bytes()
        except FileNotFoundError:
            raise UnknownMessageError(message_id) from None

    def received(self, message_id: str) -> datetime:
        """When the message arrived: from our file name, else the file's mtime."""
        match = _OWN_NAME.match(message_id)
        if match:
            return datetime.strptime(match["time"], _TIME_FORMAT).replace(tzinfo=UTC)
        try:
            mtime = self.path(message_id).stat().st_mtime
        except FileNotFoundError:
            raise UnknownMessageError(message_id) from None
        return datetime.fromtimestamp(mtime, UTC)

    def envelope(self, message_id: str) -> Envelope | None:
        """The stored SMTP envelope, or None for a message dropped in by hand."""
        if not _SAFE_ID.match(message_id):
            raise UnknownMessageError(message_id)
        try:
            raw = json.loads((self.directory / f"{message_id}.envelope.json").read_bytes())
        except (FileNotFoundError, ValueError):
            return None
        return Envelope(
            mail_from=str(raw.get("mail_from", "")),
            rcpt_tos=[str(r) for r in raw.get("rcpt_tos", [])],
            peer=str(raw.get("peer", "")),
            login=raw.get("login"),
            chaos=[str(note) for note in raw.get("chaos", [])],
        )
