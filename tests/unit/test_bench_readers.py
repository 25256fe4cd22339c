"""The benchmark's readers: what it counts in Postfix's log, in ``-X importtime`` output and in a
``POST /batch`` answer decides what `make bench` reports, so each is checked on known input."""

from __future__ import annotations

import json
from email.message import Message
from typing import Any

import pytest

from bench import importtime, options, postfix_log
from bench.measurements import batch_items
from bench.report import Target
from tests.support.ff_process import HttpResult


def _line(listener: str, pid: int, event: str) -> str:
    return f"Dec 04 19:58:20 mta postfix/{listener}/smtpd[{pid}]: {event} from localhost[127.0.0.1]"


def test_open_sessions_are_counted_per_smtpd_process_and_listener() -> None:
    log = "\n".join(
        [
            _line("ssl", 1, "disconnect"),  # began before the excerpt: ignored
            _line("ssl", 2, "connect"),
            _line("ssl", 3, "connect"),
            _line("starttls", 9, "connect"),  # another listener
            _line("ssl", 2, "lost connection after DATA"),
            _line("ssl", 2, "disconnect"),
            _line("ssl", 4, "connect"),
            _line("ssl", 5, "connect"),
            _line("ssl", 3, "disconnect"),
            "Dec 04 19:58:21 mta postfix/cleanup[7]: 4AB: message-id=<x@y>",
        ]
    )
    assert postfix_log.max_open_sessions(log, "ssl") == 3
    assert postfix_log.session_count(log, "ssl") == 4
    assert postfix_log.max_open_sessions(log, "starttls") == 1


IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       100 |        100 | site
import time:      2000 |       2000 |     pydantic.types
import time:      1000 |       3000 |   pydantic
import time:       500 |        500 |   sender.message
import time:       300 |       3800 | main
"""


def test_importtime_counts_only_what_main_pulled_in() -> None:
    profile = importtime.parse(IMPORTTIME, "main", top=2)
    assert profile.total_ms == 3.8
    assert profile.modules == [("pydantic.types", 2.0), ("pydantic", 1.0)]
    assert profile.packages == [("pydantic", 3.0), ("sender", 0.5)]


def _answer(status: int, body: Any) -> HttpResult:
    return HttpResult(status, Message(), json.dumps(body).encode())


@pytest.mark.parametrize(
    "body",
    [
        [{"status": "sent"}, {"status": "sent"}],
        {"results": [{"status": "sent"}, {"error": "invalid_request"}]},
        {"items": [{"status": "sent"}, {"status": "sent"}], "count": 2},
    ],
)
def test_a_batch_answer_is_one_result_per_message(body: Any) -> None:
    items = batch_items(_answer(200, body), 2)
    assert items is not None
    assert len(items) == 2


@pytest.mark.parametrize(
    "body",
    [
        {"status": "sent", "message_id": "<a@b>", "accepted": ["x@y"], "refused": {}},
        {"results": [{"status": "sent"}]},  # one result for two messages
        "not an object",
    ],
)
def test_anything_else_is_not_a_batch_answer(body: Any) -> None:
    assert batch_items(_answer(200, body), 2) is None


def test_target_verdicts() -> None:
    assert Target("speed-up", 8.0, 8, at_least=True).verdict == "met"
    assert Target("speed-up", 7.9, 8, at_least=True).verdict == "not met"
    assert Target("sessions", 5, 4, at_least=False, unit="").verdict == "not met"
    assert Target("batch", None, 1.3, at_least=False).verdict == "not measured"


def test_quick_shortens_the_run_and_explicit_sizes_win() -> None:
    quick = options.parse(["--quick", "--sends", "7"])
    assert (quick.sends, quick.rss_at) == (7, (100, 500))
    full = options.parse(["--pool-size", "1"])
    assert full.pool_env()["SMTP_POOL_SIZE"] == "1"
    assert (full.sends, full.batch, full.rss_at) == (1000, 1000, (200, 2000))


def test_rss_points_must_grow() -> None:
    with pytest.raises(SystemExit):
        options.parse(["--rss-at", "500", "100"])
