"""Fixtures of the real-MTA tier: Postfix + Dovecot SASL on loopback, started once per session.

- ``mta_tier`` (session): a running `MtaTier`. The whole folder is skipped with a one-line reason
  when Postfix or Dovecot is not installed (``bash tests/mta/install.sh``) or not running as root;
  under ``CI=true`` that is a failure instead.
- ``mta`` (function): the same tier, with the user's password put back after the test, so a test
  that rotates it cannot break the next one, and the fake IdP's faults cleared.

The tier verifies XOAUTH2/OAUTHBEARER logins by introspection at the session's ``fake_idp``
(``mta.idp``): a token that IdP issued for the tier's user (``mta.user``) signs in.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.mta import tier
from tests.mta.mailbox import Delivered, SmtpSession, read_maildir, smtp_sessions, wait_for
from tests.support.fake_idp import FakeIdP

# Start-up time and state dir of this run, for the terminal summary.
STARTUP: dict[str, float] = {}
STARTUP_DIR: dict[str, str] = {}

_MISSING = tier.missing_components()
_SKIP_REASON = f"Postfix tier unavailable: {_MISSING}"
_SKIP_LINE = sys._getframe().f_lineno  # where the folded skip line points


@pytest.fixture(scope="session", autouse=True)
def _tier_available() -> None:
    """Skip every test here where the tier cannot run; under CI=true fail instead, so CI cannot
    pass by skipping."""
    if _MISSING is None:
        return
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI=true and the Postfix tier cannot run: {_MISSING}", pytrace=False)
    pytest.skip(_SKIP_REASON)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """Report this folder's skips from one place, so `-ra` folds them into a single line
    ("SKIPPED [16] tests/mta/conftest.py: Postfix tier unavailable: ...")."""
    report: pytest.TestReport = yield
    if (
        report.skipped
        and isinstance(report.longrepr, tuple)
        and report.longrepr[2].endswith(_SKIP_REASON)
    ):
        report.longrepr = (__file__, _SKIP_LINE, report.longrepr[2])
    return report


@dataclass
class MtaTier:
    """A running tier, as tests use it (see `tests.mta.tier` for what each listener does)."""

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
        """Poll (bounded) until *count* delivered messages satisfy *match*."""
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


@pytest.fixture(scope="session")
def mta_tier(_tier_available: None, fake_idp: FakeIdP) -> Iterator[MtaTier]:
    # Not pytest's basetemp: that is 0700, and Postfix's daemons (uid postfix) and virtual(8)
    # must traverse the state directory.
    state_dir = Path(tempfile.mkdtemp(prefix="smtp-sender-mta-"))
    STARTUP_DIR["path"] = str(state_dir)
    try:
        started = time.monotonic()
        client_id, client_secret = fake_idp.introspection_client
        introspection = tier.OAuth2Introspection(
            fake_idp.introspection_url, str(fake_idp.ca_file), client_id, client_secret
        )
        # Stops whatever it started if it fails.
        state = tier.start(state_dir, oauth2=introspection)
        STARTUP["seconds"] = time.monotonic() - started
        try:
            yield MtaTier(
                state, tier.DEFAULT_PASSWORD, fake_idp, {state.user: tier.DEFAULT_PASSWORD}
            )
        finally:
            tier.stop(state)
    finally:
        if os.environ.get("MTA_KEEP_STATE") != "1":
            shutil.rmtree(state_dir, ignore_errors=True)


@pytest.fixture
def mta(mta_tier: MtaTier) -> Iterator[MtaTier]:
    yield mta_tier
    mta_tier.idp.clear_faults()
    if mta_tier.users != {mta_tier.user: tier.DEFAULT_PASSWORD}:
        mta_tier.users.clear()
        mta_tier.set_password(mta_tier.user, tier.DEFAULT_PASSWORD)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    if "seconds" in STARTUP:
        terminalreporter.write_line(
            f"mta tier: Postfix + Dovecot started in {STARTUP['seconds']:.2f}s "
            f"(state {STARTUP_DIR.get('path')}; MTA_KEEP_STATE=1 keeps it)"
        )
