"""SMTP sessions as Postfix saw them, from its log (``postfix/<listener>/smtpd[PID]: connect from``
and ``disconnect from``). Each smtpd process serves one client at a time, so its PID names the
session.

This is the server's count, as a provider would keep it: a session is open from the moment smtpd
accepted it until smtpd logged its end, which is a moment after the client's QUIT. A client that
quits one session and at once opens the next can therefore be seen with one more session open
than it ever held itself, when the old smtpd is slow to finish (rare; on a busy machine).
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable

_EVENT = re.compile(
    r" postfix/(?P<listener>[\w-]+)/smtpd\[(?P<pid>\d+)\]: (?P<event>connect|disconnect) from "
)
DRAIN_TIMEOUT_S = 10.0


def _events(log_text: str, listener: str) -> list[tuple[str, str]]:
    """(event, smtpd pid) in log order for one listener."""
    return [
        (m["event"], m["pid"])
        for m in map(_EVENT.search, log_text.splitlines())
        if m and m["listener"] == listener
    ]


def max_open_sessions(log_text: str, listener: str) -> int:
    """The most sessions open at once on *listener* in *log_text* (a disconnect whose connect is
    before the excerpt is ignored)."""
    open_now: set[str] = set()
    most = 0
    for event, pid in _events(log_text, listener):
        if event == "connect":
            open_now.add(pid)
            most = max(most, len(open_now))
        else:
            open_now.discard(pid)
    return most


def session_count(log_text: str, listener: str) -> int:
    """How many sessions began on *listener* in *log_text*."""
    return sum(1 for event, _ in _events(log_text, listener) if event == "connect")


def wait_until_closed(read_log: Callable[[], str], listener: str) -> str:
    """The log once every session begun in it has been logged as closed (bounded: Postfix writes
    ``disconnect`` after the client has gone, through postlogd)."""
    deadline = time.monotonic() + DRAIN_TIMEOUT_S
    while True:
        text = read_log()
        events = _events(text, listener)
        opened = sum(1 for event, _ in events if event == "connect")
        if opened <= len(events) - opened or time.monotonic() > deadline:
            return text
        time.sleep(0.1)
