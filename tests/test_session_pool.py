"""Pooled SMTP sessions on a warm instance, seen from the server: reuse, replacement, limits.

The function runs in process (functions-framework's test client) against the aiosmtpd server,
which records every session it served (`SmtpTestServer.sessions`) and every message it accepted.
"""

from __future__ import annotations

import os
import threading
from typing import Any

import pytest

from tests.support.checks import assert_retryable
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.smtp_server import SmtpTestServer

MESSAGE = {"to": "ops@example.com", "subject": "Disk 91% on db-1", "text": "db-1 /var 91%"}


def send(http_client: Any, **extra: Any) -> Any:
    return http_client.post("/", json={**MESSAGE, **extra})


def sessions_with_mail(server: SmtpTestServer) -> list[int]:
    """The server-side ids of the sessions that carried at least one MAIL FROM."""
    return [s.session_id for s in server.sessions if "MAIL" in s.commands]


def test_a_hundred_sends_share_one_session_with_pool_size_one(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_POOL_SIZE="1")
    for _ in range(100):
        assert send(http_client).status_code == 200

    assert len(server.wait_for_messages(100)) == 100
    assert len(server.sessions) == 1
    [session] = server.sessions
    assert session.commands.count("AUTH") == 1
    assert session.commands.count("DATA") == 100


def test_pool_size_zero_opens_a_session_per_message(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_POOL_SIZE="0")
    for _ in range(3):
        assert send(http_client).status_code == 200

    assert len(server.sessions) == 3
    assert all(s.commands[-1] == "QUIT" for s in server.sessions)


@pytest.mark.parametrize("reply", ["421 4.4.2 idle timeout, closing connection", None])
def test_a_session_the_server_closed_while_idle_costs_no_failed_send(
    http_client: Any, server: SmtpTestServer, reply: str | None
) -> None:
    assert send(http_client).status_code == 200
    assert server.hang_up_idle(reply) == 1  # the server's idle timeout, with or without a 421

    assert send(http_client).status_code == 200
    assert len(server.wait_for_messages(2)) == 2
    assert len(sessions_with_mail(server)) == 2  # replaced before MAIL FROM, not retried after


def test_a_421_to_mail_from_on_a_reused_session_goes_out_on_a_fresh_one(
    http_client: Any, server: SmtpTestServer
) -> None:
    assert send(http_client).status_code == 200
    server.fail_mail_from("421 4.4.2 closing connection", times=1)

    assert send(http_client).status_code == 200
    assert len(server.wait_for_messages(2)) == 2
    assert len(server.sessions) == 2


def test_a_connection_lost_after_the_final_dot_is_not_resent_in_process(
    http_client: Any, server: SmtpTestServer
) -> None:
    assert send(http_client).status_code == 200
    server.disconnect_after_data(times=1)  # the server may have accepted it: nobody can know

    assert_retryable(send(http_client))
    data_commands = sum(s.commands.count("DATA") for s in server.sessions)
    assert data_commands == 2  # the first message and the lost one: no in-process resend
    assert send(http_client).status_code == 200  # the broken session was not pooled again
    assert len(server.wait_for_messages(2)) == 2


def test_a_rotated_secret_never_uses_the_old_profiles_session(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_PROFILE_CACHE_TTL_S="0")  # every send reads the newest version
    assert send(http_client).status_code == 200
    rotated = "Rotated-Pässwort-2"
    server.set_password(SMTP_USER, rotated)
    sender_env.use(server, password=rotated)

    assert send(http_client).status_code == 200
    assert len(server.wait_for_messages(2)) == 2
    first, second = server.sessions
    assert first.commands[-1] == "QUIT"  # the old session was closed, not reused
    assert [a.success for a in second.auth_attempts] == [True]


def test_credentials_refused_to_a_replacement_session_are_500_and_the_pool_recovers(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    """End to end; that a 535 closes the *other* idle sessions too is in the unit tests."""
    sender_env.set(SMTP_POOL_SIZE="2")
    server.stall("data", 0.5)  # two concurrent sends: two sessions in the pool
    threads = [threading.Thread(target=send, args=(http_client,)) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    server.clear_faults()
    assert len(server.sessions) == 2

    # The provider rotated the password and dropped the sessions; a replacement gets 535.
    server.set_password(SMTP_USER, "provider-side-rotation")
    server.hang_up_idle()
    response = send(http_client)
    assert response.status_code == 500

    # The operator fixes the provider side: the next send opens one new session.
    server.set_password(SMTP_USER, CANARY_PASSWORD)
    before = len(server.sessions)
    assert send(http_client).status_code == 200
    assert len(server.sessions) == before + 1


def test_concurrent_sends_never_open_more_sessions_than_the_pool(
    http_client: Any, server: SmtpTestServer, sender_env: SenderEnv
) -> None:
    sender_env.set(SMTP_POOL_SIZE="2")
    server.stall("data", 0.05)
    statuses: list[int] = []

    def client() -> None:
        for _ in range(5):
            statuses.append(send(http_client).status_code)

    threads = [threading.Thread(target=client) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)

    assert statuses == [200] * 40
    assert len(server.wait_for_messages(40)) == 40
    assert len(server.sessions) <= 2


def _open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_no_thread_or_file_descriptor_growth_over_two_thousand_sends(
    http_client: Any, server: SmtpTestServer
) -> None:
    for _ in range(50):  # warm up: the pool, the clients, the caches
        assert send(http_client).status_code == 200
    threads, fds = threading.active_count(), _open_fds()

    for _ in range(2_000):
        assert send(http_client).status_code == 200

    assert len(server.wait_for_messages(2_050, timeout=30)) == 2_050
    assert threading.active_count() <= threads
    assert _open_fds() <= fds
