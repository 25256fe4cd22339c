"""Local configuration: `.env` parsing and how it combines with the environment."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from devstack import dotenv
from devstack.settings import DevSettings, SettingsError

REPO = Path(__file__).resolve().parents[2]


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
    with pytest.raises(SettingsError, match="must differ") as refused:
        DevSettings.load({"DEV_ENV_FILE": str(tmp_path / "none"), "DEV_SMTP_PORT": "8080"})
    # The message names both settings that clash, so the user knows what to change.
    assert "DEV_HTTP_PORT=8080" in str(refused.value)
    assert "DEV_SMTP_PORT=8080" in str(refused.value)


@pytest.mark.parametrize("value", ["http", "0", "70000"])
def test_a_bad_port_names_the_setting(tmp_path: Path, value: str) -> None:
    with pytest.raises(SettingsError, match="DEV_OUTBOX_PORT"):
        DevSettings.load({"DEV_ENV_FILE": str(tmp_path / "none"), "DEV_OUTBOX_PORT": value})


SECRET = "hunter2-not-for-logs"


@pytest.mark.parametrize(
    "line", [f'SMTP_PASSWORD="{SECRET}" oops', f"SMTP_PASSWORD='{SECRET}'x", f"{SECRET} here"]
)
def test_a_bad_dotenv_line_is_refused_by_line_number_without_its_value(line: str) -> None:
    with pytest.raises(dotenv.DotenvError, match=r"\.env:2") as refused:
        dotenv.parse(f"A=1\n{line}\n")
    assert SECRET not in str(refused.value)


def test_a_comment_may_follow_a_quoted_value() -> None:
    assert dotenv.parse("A=\"x y\"  # note\nB='z' # note") == {"A": "x y", "B": "z"}


def test_an_unreadable_env_file_is_a_settings_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="cannot read"):
        DevSettings.load({"DEV_ENV_FILE": str(tmp_path)})  # a directory
    binary = tmp_path / "binary.env"
    binary.write_bytes(b"A=\xff\n")
    with pytest.raises(SettingsError, match="not UTF-8"):
        DevSettings.load({"DEV_ENV_FILE": str(binary)})


def test_devstack_reports_a_broken_env_file_and_exits_2(tmp_path: Path) -> None:
    """What `make dev` shows: one line naming file and line, no traceback, no secret."""
    env_file = tmp_path / "broken.env"
    env_file.write_text(f"DEV_HTTP_PORT=9000\nSMTP_PASSWORD='{SECRET}\n", encoding="utf-8")
    finished = subprocess.run(
        [sys.executable, "-m", "devstack"],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "DEV_ENV_FILE": str(env_file), "PYTHONPATH": str(REPO)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    output = finished.stdout + finished.stderr
    assert finished.returncode == 2, output
    assert f"devstack: {env_file}:2: unterminated single quote" in finished.stdout
    assert "Traceback" not in output
    assert SECRET not in output
