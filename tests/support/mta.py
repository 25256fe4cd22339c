"""`MtaTier`: a running Postfix + Dovecot tier (`tests.support.mta_tier`) as tests use it, with
the fake identity provider its Dovecot asks about OAuth2 tokens. The ``mta_tier``/``mta``
fixtures of ``tests/mta/conftest.py`` hand one out."""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from tests.support import mta_tier as tier
from tests.support.fake_idp import FakeIdP
from tests.support.maildir import Delivered, SmtpSession, read_maildir, smtp_sessions, wait_for


@dataclass
class MtaTier:
    """A running tier, as tests use it (`tests.support.mta_tier` says what each listener does)."""

    state: tier.TierState
    password: str
    idp: FakeIdP
    users: dict[str, str] = field(default_factory=dict)

    @property
    def ports(self) -> tier.Ports:
        return self.state.ports

    @property
    def ca_file(self) -> Path:
        """PEM of the throwaway CA that issued the server certificate (``SMTP_CA_FILE``)."""
        return self.state.ca_file

    @property
    def user(self) -> str:
        return self.state.user

    @property
    def message_size_limit(self) -> int:
        return tier.MESSAGE_SIZE_LIMIT

    def set_password(self, user: str, password: str) -> None:
        """Change (or add) a SASL user's password while the tier runs; effective at once."""
        self.users[user] = password
        if user == self.state.user:
            self.password = password
        tier.write_passwd(self.state, self.users)

    def messages(self) -> list[Delivered]:
        """Everything delivered so far (all tests share the one mailbox: filter by a token)."""
        return read_maildir(self.state.maildir)

    def wait_for_messages(
        self, match: Callable[[Delivered], bool], count: int = 1, timeout: float = 20.0
    ) -> list[Delivered]:
        """Poll (bounded) until *count* delivered messages satisfy *match*; returns them (at
        least *count*), or raises `TimeoutError` saying how many came when the time is up."""
        return wait_for(self.messages, match, count, timeout)

    def queue_is_empty(self, timeout: float = 10.0) -> bool:
        """Wait (bounded) until Postfix's queue holds nothing: from then on, whatever it had
        accepted has been delivered, so "not in the Maildir" means "never accepted"."""
        deadline = time.monotonic() + timeout
        spool = self.state.root / "spool"
        while True:
            queued = [f for d in tier.QUEUE_DIRS for f in (spool / d).rglob("*") if f.is_file()]
            if not queued:
                return True
            if time.monotonic() > deadline:
                return False
            time.sleep(0.1)

    def delivered_now(self, match: Callable[[Delivered], bool]) -> list[Delivered]:
        """What matches in the Maildir once the queue is empty (for "nothing arrived" checks)."""
        assert self.queue_is_empty(), "Postfix still has mail queued"
        return [m for m in self.messages() if match(m)]

    def log_offset(self) -> int:
        """Current size of the Postfix log: pass to `log_text` to see only what follows."""
        with contextlib.suppress(OSError):
            return self.state.postfix_log.stat().st_size
        return 0

    def settled_offset(self, service: str, timeout: float = 10.0) -> int:
        """`log_offset`, taken once every session on listener *service* has ended (Postfix logs
        a session's summary only after the client left), so that `sessions(service, since)`
        after it sees only the sessions that follow, never a late summary of an earlier one.
        Raises `TimeoutError` if a session is still open after *timeout* seconds."""
        connects = re.compile(rf"postfix/{re.escape(service)}/smtpd\[\d+\]: connect from ".encode())
        ends = re.compile(rf"postfix/{re.escape(service)}/smtpd\[\d+\]: disconnect from ".encode())
        deadline = time.monotonic() + timeout
        while True:
            raw = self.state.postfix_log.read_bytes()
            opened, ended = len(connects.findall(raw)), len(ends.findall(raw))
            if opened <= ended:
                return len(raw)
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{opened - ended} {service} session(s) still open after {timeout}s"
                )
            time.sleep(0.1)

    def log_text(self, since: int = 0) -> str:
        """The Postfix log (from byte offset *since*)."""
        with self.state.postfix_log.open("rb") as fh:
            fh.seek(since)
            return fh.read().decode("utf-8", "replace")

    def dovecot_log_text(self) -> str:
        """Dovecot's whole log (auth decisions; it must never hold a token or password)."""
        return self.state.dovecot_log.read_text(encoding="utf-8", errors="replace")

    def sessions(self, service: str, since: int = 0, count: int = 1) -> list[SmtpSession]:
        """Postfix's ``disconnect`` summaries for one listener since *since*; waits (bounded)
        for *count* of them, because Postfix writes the line after the client has gone."""
        deadline = time.monotonic() + 10
        while True:
            found = smtp_sessions(self.log_text(since), service)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.1)
