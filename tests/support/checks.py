"""Small assertions shared by the behaviour tests."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from tests.support.ff_process import parse_json_lines
from tests.support.smtp_server import SmtpTestServer

__all__ = ["assert_nothing_sent", "log_records", "parse_json_lines", "records_at"]


def log_records(text: str) -> list[dict[str, Any]]:
    """The function's JSON log lines in captured stdout text."""
    return parse_json_lines(text)


def records_at(records: Iterable[dict[str, Any]], severity: str) -> list[dict[str, Any]]:
    """Records of exactly *severity* (``ERROR``, ``WARNING``...)."""
    return [r for r in records if r.get("severity") == severity]


def assert_nothing_sent(server: SmtpTestServer) -> None:
    """No message arrived and no connection got as far as MAIL FROM."""
    assert server.messages == []
    for session in server.sessions:
        assert "MAIL" not in session.commands, session
        assert "DATA" not in session.commands, session
