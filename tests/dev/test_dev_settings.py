"""Local configuration: `.env` parsing and how it combines with the environment."""

from __future__ import annotations

from pathlib import Path

import pytest

from devstack import dotenv
from devstack.settings import DevSettings, SettingsError


def test_dotenv_forms() -> None:
    text = "\n".join(
        [
            "# comment",
            "",
            "PLAIN=value # trailing comment",
            "export EXPORTED=1",
            "SINGLE='lit $HOME # not a comment'",
            'DOUBLE="line1\\nline2 \\"q\\""',
            "EMPTY=",
            "URL=http://a#b",
        ]
    )
    assert dotenv.parse(text) == {
        "PLAIN": "value",
        "EXPORTED": "1",
        "SINGLE": "lit $HOME # not a comment",
        "DOUBLE": 'line1\nline2 "q"',
        "EMPTY": "",
        "URL": "http://a#b",
    }


def test_dotenv_rejects_a_line_that_is_not_an_assignment() -> None:
    with pytest.raises(dotenv.DotenvError, match=r"\.env:2"):
        dotenv.parse("A=1\nnot an assignment\n")


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env_file = tmp_path / "local.env"
    env_file.write_text("DEV_HTTP_PORT=9000\nDEV_SMTP_PORT=9025\nALLOWED_RECIPIENTS=example.com\n")
    settings = DevSettings.load({"DEV_ENV_FILE": str(env_file), "DEV_HTTP_PORT": "9100"})
    assert settings.http_port == 9100
    assert settings.smtp_port == 9025
    assert settings.outbox_port == 8025  # default
    assert settings.environ["ALLOWED_RECIPIENTS"] == "example.com"  # handed to the function


def test_clashing_ports_are_refused(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="must differ"):
        DevSettings.load({"DEV_ENV_FILE": str(tmp_path / "none"), "DEV_SMTP_PORT": "8080"})
