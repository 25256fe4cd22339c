"""`TokenSource`: one send's token from the instance cache, and when a refused token earns a retry
(only one that was cached before the send asked). The fetch is a stand-in here; the MTA tier and
tests/test_oauth2_transport.py run the real one."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from sender.deadline import Deadline
from sender.errors import TransientError
from sender.oauth2 import AccessToken, parse_oauth2
from sender.oauth2.cache import TokenCache
from sender.sign_in import TokenSource
from tests.support.checks import log_records

CONFIG = parse_oauth2(
    {"flow": "microsoft", "tenant": "t.example", "client_id": "c", "client_secret": "s"},
    username="a@t.example",
)


def source(cache: TokenCache, fetched: list[str], monkeypatch: pytest.MonkeyPatch) -> TokenSource:
    tokens = TokenSource(
        CONFIG,
        "payload-digest",
        cache=cache,
        deadline=Deadline(10, expired=lambda: TransientError("late")),
        ca_file=None,
    )

    def fetch(budget_s: float) -> AccessToken:
        fetched.append(f"token-{len(fetched) + 1}")
        return AccessToken(fetched[-1], 3600)

    monkeypatch.setattr(tokens, "_fetch", fetch)
    return tokens


def test_a_token_fetched_for_this_send_earns_no_second_one(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, fetched = TokenCache(), list[str]()
    tokens = source(cache, fetched, monkeypatch)
    assert tokens() == "token-1"
    assert tokens.from_cache is False
    assert tokens.refused() is False
    assert cache.peek("payload-digest") is None, "a refused token is forgotten all the same"
    assert log_records(capsys.readouterr().out) == []


def test_a_cached_token_refused_earns_one_fresh_token(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    cache, fetched = TokenCache(), list[str]()
    source(cache, fetched, monkeypatch)()  # an earlier send cached token-1
    tokens = source(cache, fetched, monkeypatch)
    assert tokens() == "token-1"
    assert tokens.from_cache is True
    assert tokens.refused() is True
    assert tokens() == "token-2"
    assert tokens.refused() is False  # the fresh one refused too: no third
    [line] = log_records(capsys.readouterr().out)
    assert (line["severity"], line["flow"]) == ("WARNING", "microsoft")
    assert "token-" not in str(line)


def test_refused_before_any_token_was_used(monkeypatch: pytest.MonkeyPatch) -> None:
    tokens: Any = source(TokenCache(), [], monkeypatch)
    assert tokens.refused() is False
    assert tokens.flow == "microsoft"


def test_a_cold_start_loads_no_oauth2_library() -> None:
    """MSAL, google-auth's OAuth2 flows and requests load only when a token is fetched: parsing
    a profile (oauth2 or not) and importing the entry points must not pay for them."""
    root = Path(__file__).resolve().parents[2]
    code = (
        "import sys, main\n"
        "from sender.profile import parse_profile\n"
        'parse_profile(b\'{"provider": "microsoft365", "username": "a@b.c", "oauth2": '
        '{"flow": "microsoft", "tenant": "t", "client_id": "c", "client_secret": "s"}}\')\n'
        "print([m for m in ('msal', 'requests', 'google.oauth2') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, cwd=root, check=True
    )
    assert out.stdout.strip() == "[]"
