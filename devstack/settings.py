"""Where the dev stack listens and keeps its files, read from the environment and `.env`.

The real environment wins over `.env` (as with every dotenv tool), so a one-off
`DEV_HTTP_PORT=9090 make dev` works without editing the file.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from devstack import dotenv
from devstack.chaos import DEFAULT_DEFERRALS, DEFAULT_SLOW_S, ChaosSettings

#: Everything binds here: the stack is for the developer's own machine only.
HOST = "127.0.0.1"

DEFAULTS: dict[str, str] = {
    "DEV_HTTP_PORT": "8080",
    "DEV_EVENT_PORT": "8081",
    "DEV_OUTBOX_PORT": "8025",
    "DEV_SMTP_PORT": "2525",
    "DEV_OUTBOX_DIR": "outbox",
    "DEV_STATE_DIR": ".state/dev",
}


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"", "0", "false", "no", "off"}
MAX_SLOW_S = 600.0
MAX_DEFERRALS = 100


class SettingsError(ValueError):
    """A setting has a value the stack cannot use (or `.env` is unreadable); the message names
    the setting or the file and line, never a value that might be a secret."""


def _port(env: Mapping[str, str], name: str) -> int:
    raw = env.get(name) or DEFAULTS[name]
    try:
        port = int(raw)
    except ValueError:
        raise SettingsError(f"{name}={raw!r} is not a port number") from None
    if not 0 < port < 65536:
        raise SettingsError(f"{name}={port} is outside 1..65535")
    return port


def _chaos(env: Mapping[str, str]) -> ChaosSettings | None:
    """`DEV_SMTP_CHAOS` and its two knobs; None when chaos mode is off."""
    switch = env.get("DEV_SMTP_CHAOS", "").strip().lower()
    if switch not in _TRUE | _FALSE:
        raise SettingsError(f"DEV_SMTP_CHAOS={switch!r} must be 1 or 0 (true/false, yes/no)")
    if switch in _FALSE:
        return None
    raw_slow = env.get("DEV_SMTP_CHAOS_SLOW_S") or f"{DEFAULT_SLOW_S:g}"
    raw_deferrals = env.get("DEV_SMTP_CHAOS_DEFERRALS") or str(DEFAULT_DEFERRALS)
    try:
        slow_s = float(raw_slow)
    except ValueError:
        raise SettingsError(f"DEV_SMTP_CHAOS_SLOW_S={raw_slow!r} is not a number") from None
    if not 0 < slow_s <= MAX_SLOW_S:  # also refuses nan
        raise SettingsError(f"DEV_SMTP_CHAOS_SLOW_S={raw_slow} is outside 0..{MAX_SLOW_S:g}")
    try:
        deferrals = int(raw_deferrals)
    except ValueError:
        raise SettingsError(
            f"DEV_SMTP_CHAOS_DEFERRALS={raw_deferrals!r} is not a whole number"
        ) from None
    if not 1 <= deferrals <= MAX_DEFERRALS:
        raise SettingsError(f"DEV_SMTP_CHAOS_DEFERRALS={deferrals} is outside 1..{MAX_DEFERRALS}")
    return ChaosSettings(slow_s=slow_s, deferrals=deferrals)


@dataclass(frozen=True)
class DevSettings:
    """The resolved local configuration; `environ` is what the function processes inherit."""

    http_port: int
    event_port: int
    outbox_port: int
    smtp_port: int
    outbox_dir: Path
    state_dir: Path
    environ: Mapping[str, str]
    chaos: ChaosSettings | None = None  # DEV_SMTP_CHAOS: see devstack/chaos.py

    @classmethod
    def load(cls, environ: Mapping[str, str] | None = None) -> DevSettings:
        """Merge `.env` (path from `DEV_ENV_FILE`, default `./.env`) under the environment."""
        base = dict(os.environ if environ is None else environ)
        env_file = Path(base.get("DEV_ENV_FILE") or ".env")
        try:
            from_file = dotenv.load(env_file)
        except dotenv.DotenvError as exc:  # one error type for callers to report
            raise SettingsError(str(exc)) from None
        merged = {**from_file, **base}
        settings = cls(
            http_port=_port(merged, "DEV_HTTP_PORT"),
            event_port=_port(merged, "DEV_EVENT_PORT"),
            outbox_port=_port(merged, "DEV_OUTBOX_PORT"),
            smtp_port=_port(merged, "DEV_SMTP_PORT"),
            outbox_dir=Path(merged.get("DEV_OUTBOX_DIR") or DEFAULTS["DEV_OUTBOX_DIR"]).resolve(),
            state_dir=Path(merged.get("DEV_STATE_DIR") or DEFAULTS["DEV_STATE_DIR"]).resolve(),
            environ=merged,
            chaos=_chaos(merged),
        )
        ports = settings.ports
        if len(set(ports.values())) != len(ports):
            shown = ", ".join(f"{name}={port}" for name, port in ports.items())
            raise SettingsError(f"the four DEV_*_PORT settings must differ, got {shown}")
        return settings

    @property
    def ports(self) -> dict[str, int]:
        """Every port the stack listens on, by the setting that chose it."""
        return {
            "DEV_HTTP_PORT": self.http_port,
            "DEV_EVENT_PORT": self.event_port,
            "DEV_OUTBOX_PORT": self.outbox_port,
            "DEV_SMTP_PORT": self.smtp_port,
        }

    @property
    def http_url(self) -> str:
        return f"http://{HOST}:{self.http_port}"

    @property
    def event_url(self) -> str:
        return f"http://{HOST}:{self.event_port}"

    @property
    def outbox_url(self) -> str:
        return f"http://{HOST}:{self.outbox_port}"
