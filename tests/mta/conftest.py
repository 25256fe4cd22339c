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

import os
import shutil
import sys
import tempfile
import time
from collections.abc import Generator, Iterator
from pathlib import Path

import pytest

from tests.support import mta_tier as tier
from tests.support.fake_idp import FakeIdP
from tests.support.mta import MtaTier

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
