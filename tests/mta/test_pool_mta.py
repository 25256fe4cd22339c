"""Pooled SMTP sessions against real Postfix: reuse, and Postfix's own idle timeout.

The function runs as a functions-framework process; what Postfix saw is read from its log
(`connect from` when a session opens, the `disconnect from` summary with its command counts).
"""

from __future__ import annotations

import json
import re
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support import mta_tier as tier
from tests.support.env import function_env
from tests.support.ff_process import FunctionsFrameworkProcess
from tests.support.mta import MtaTier
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub

pytestmark = [pytest.mark.mta, pytest.mark.process]

SECRET_NAME = f"projects/{PROJECT}/secrets/mta-pool-profile"
POSTCONF = "/usr/sbin/postconf"


@pytest.fixture
def pooled_function(
    mta: MtaTier, tmp_path: Path
) -> Iterator[tuple[FunctionsFrameworkProcess, SecretManagerStub]]:
    """The HTTP function with a pool of one session, its profile on Postfix's implicit-TLS port."""
    with SecretManagerStub() as secrets:
        profile = {
            "host": "127.0.0.1",
            "port": mta.ports.ssl,
            "security": "ssl",
            "username": mta.user,
            "password": mta.password,
            "from": "Alerts <alerts@mta.test>",
        }
        secrets.put_secret(SECRET_NAME, json.dumps(profile))
        env = function_env(
            secret_manager=secrets.address,
            ca_file=mta.ca_file,
            gcloud_config=tmp_path / "gcloud",
            smtp_secret=SECRET_NAME,
            smtp_timeout_s="15",
        )
        env.update(SMTP_POOL_SIZE="1", SMTP_POOL_IDLE_S="60")
        with FunctionsFrameworkProcess("send_http", env=env, log_dir=tmp_path) as ff:
            yield ff, secrets


def _send(ff: FunctionsFrameworkProcess, token: str, n: int) -> None:
    to = f"pool-{token}-{n}@example.net"
    result = ff.post_json("/", {"to": to, "subject": f"pool {token} {n}", "text": "t"})
    assert result.status == 200, result.text


def _connects(log: str) -> int:
    return len(re.findall(r"/ssl/smtpd\[\d+\]: connect from", log))


def test_twenty_sends_travel_over_one_postfix_session(
    mta: MtaTier, pooled_function: tuple[FunctionsFrameworkProcess, SecretManagerStub]
) -> None:
    ff, _ = pooled_function
    token = uuid.uuid4().hex
    since = mta.settled_offset("ssl")
    for n in range(20):
        _send(ff, token, n)

    assert len(mta.wait_for_messages(lambda m: token in m.subject, count=20)) == 20
    assert _connects(mta.log_text(since)) == 1
    ff.stop()  # the session ends with the instance: Postfix logs its summary
    [session] = mta.sessions("ssl", since)
    assert session.stats.get("auth") == "1"
    assert session.stats.get("data") == "20"


@pytest.fixture
def short_smtpd_timeout(mta: MtaTier) -> Iterator[None]:
    """Postfix closes a session idle for 2 s (a provider's idle timeout), for this test only."""

    def set_timeout(value: str) -> None:
        etc = str(mta.state.postfix_dir)
        subprocess.run([POSTCONF, "-c", etc, "-e", f"smtpd_timeout={value}"], check=True)
        subprocess.run([tier.POSTFIX, "-c", etc, "reload"], check=True, capture_output=True)

    set_timeout("2s")
    try:
        yield
    finally:
        set_timeout("300s")


@pytest.mark.usefixtures("short_smtpd_timeout")
def test_a_session_postfix_timed_out_costs_no_failed_send(
    mta: MtaTier, pooled_function: tuple[FunctionsFrameworkProcess, SecretManagerStub]
) -> None:
    ff, _ = pooled_function
    token = uuid.uuid4().hex
    since = mta.settled_offset("ssl")
    _send(ff, token, 1)
    deadline = time.monotonic() + 15
    while "timeout after" not in mta.log_text(since) and time.monotonic() < deadline:
        time.sleep(0.2)  # Postfix gives up on the idle session and closes it
    assert "timeout after" in mta.log_text(since)

    _send(ff, token, 2)  # the closed session is noticed and replaced before MAIL FROM
    assert len(mta.wait_for_messages(lambda m: token in m.subject, count=2)) == 2
    assert _connects(mta.log_text(since)) == 2
