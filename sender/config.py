"""Runtime configuration: every environment variable the function reads, declared once.

`SETTINGS` is the one table (variable, type, default, bounds, help). `Settings.from_env` is
derived from it, so are README's Configuration table (`markdown_table`, checked by a test) and
the tests' list of variables to clear. A new setting is one row here plus a typed field on
`Settings`; a test fails until both exist.

Settings are read on every invocation (a handful of dict look-ups), so a test or an operator
changing an environment variable never fights a stale copy. A malformed value is a configuration
error, reported as `500 misconfigured` rather than a crash at import time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields, replace
from typing import Any, Literal

from sender.errors import ConfigurationError

Kind = Literal["text", "number", "integer", "list", "choice"]

# A lease must outlive the longest send that can still be in flight, or a slow but alive sender
# is taken over and both send. The send deadline bounds an SMTP session; the margin covers the
# Secret Manager read and the ledger round-trips around it.
IDEMPOTENCY_LEASE_MARGIN_S = 15.0


@dataclass(frozen=True, slots=True)
class Setting:
    """One environment variable: how to read it and what README says about it."""

    env: str
    field: str  # the `Settings` attribute it fills
    kind: Kind
    help: str
    default: Any = None  # None: unset
    default_text: str = "unset"  # the default as README shows it
    minimum: float | None = None
    choices: tuple[str, ...] = ()
    aliases: tuple[str, ...] = ()  # older names still honoured (read when `env` is unset)
    # A default that depends on settings read before it (rows are read in table order).
    derived_default: Callable[[Mapping[str, Any]], Any] | None = None

    def read(self, env: Mapping[str, str], earlier: Mapping[str, Any]) -> Any:
        raw = next(
            (env[n].strip() for n in (self.env, *self.aliases) if env.get(n, "").strip()), ""
        )
        if not raw:
            return self.derived_default(earlier) if self.derived_default else self.default
        if self.kind == "text":
            return raw
        if self.kind == "list":
            return tuple(item.strip().lower() for item in raw.split(",") if item.strip()) or None
        if self.kind == "choice":
            value = raw.lower()
            if value not in self.choices:
                raise ConfigurationError(
                    f"{self.env} must be {' or '.join(self.choices)}, got {value!r}"
                )
            return value
        number = self._number(raw)
        return int(number) if self.kind == "integer" else number

    def _number(self, raw: str) -> float:
        try:
            value = float(raw)
        except ValueError:
            raise ConfigurationError(f"{self.env} must be a number, got {raw!r}") from None
        if not math.isfinite(value):  # nan would disable every comparison-based bound
            raise ConfigurationError(f"{self.env} must be a finite number, got {raw!r}")
        if self.minimum is not None and value < self.minimum:
            raise ConfigurationError(f"{self.env} must be at least {self.minimum:g}, got {raw!r}")
        return value


def _lease_default(earlier: Mapping[str, Any]) -> float:
    return float(earlier["send_deadline_s"]) + IDEMPOTENCY_LEASE_MARGIN_S


SETTINGS: tuple[Setting, ...] = (
    # --- where the SMTP profile comes from
    Setting("SMTP_SECRET", "smtp_secret", "text",
            "`projects/P/secrets/S[/versions/V]`, a regional "
            "`projects/P/locations/L/secrets/S[/versions/V]`, or bare `S` (project from "
            "`GOOGLE_CLOUD_PROJECT`)",
            default_text="required unless `SMTP_SECRET_FILE`"),
    Setting("SMTP_SECRET_FILE", "smtp_secret_file", "text",
            "path of a local profile JSON (local runs, tests)"),
    Setting("SECRET_MANAGER_EMULATOR_HOST", "secret_manager_emulator_host", "text",
            "`host:port` of a plaintext gRPC Secret Manager (tests)"),
    Setting("GOOGLE_CLOUD_PROJECT", "google_cloud_project", "text",
            "the project of bare secret names and of the Firestore ledger",
            default_text="set by the platform", aliases=("GCP_PROJECT",)),
    Setting("SMTP_PROFILE_CACHE_TTL_S", "profile_cache_ttl_s", "number",
            "how long an instance trusts its cached profile", 300.0, "300", minimum=0),
    # --- a bare-password secret: the rest of the profile
    Setting("SMTP_HOST", "smtp_host", "text",
            "SMTP host when the secret is a bare password"),
    Setting("SMTP_PORT", "smtp_port", "text",
            "SMTP port when the secret is a bare password",
            default_text="465 (587 for `starttls`)"),
    Setting("SMTP_USERNAME", "smtp_username", "text",
            "SMTP username when the secret is a bare password (required then)"),
    Setting("SMTP_SECURITY", "smtp_security", "text",
            "`ssl`, `starttls` or `none` when the secret is a bare password",
            default_text="by port"),
    Setting("SMTP_FROM", "smtp_from", "text",
            "the profile's `from` when the secret is a bare password",
            default_text="the username"),
    # --- the SMTP session
    Setting("SMTP_CA_FILE", "smtp_ca_file", "text",
            "extra PEM CA bundle trusted for the SMTP server"),
    Setting("OAUTH_CA_FILE", "oauth_ca_file", "text",
            "extra PEM CA bundle trusted for OAuth2 token endpoints (private IdPs, tests)"),
    Setting("SMTP_TIMEOUT_S", "smtp_timeout_s", "number", "per SMTP operation",
            20.0, "20", minimum=0.1),
    Setting("SEND_DEADLINE_S", "send_deadline_s", "number",
            "the whole send: secret reads, every SMTP step, the retry after a rotated password; "
            "a watchdog cuts off even a server that drips bytes (keep it under the function's "
            "timeout)",
            50.0, "50", minimum=1),
    Setting("SMTP_POOL_SIZE", "smtp_pool_size", "integer",
            "authenticated SMTP sessions kept per instance and profile (0 = one per message)",
            4, "4", minimum=0),
    Setting("SMTP_POOL_IDLE_S", "smtp_pool_idle_s", "number",
            "an idle pooled session older than this is closed, never reused", 30.0, "30",
            minimum=0),
    Setting("SMTP_SESSION_MAX_MESSAGES", "smtp_session_max_messages", "integer",
            "messages sent over one session before it is replaced", 100, "100", minimum=1),
    # --- who may send what
    Setting("ALLOWED_RECIPIENTS", "allowed_recipients", "list",
            "comma list of domains or addresses; others are refused with 400",
            default_text="unrestricted"),
    Setting("ALLOWED_SENDERS", "allowed_senders", "list",
            "comma list allowed in `from` (besides the profile's own)",
            default_text="only the profile's from"),
    Setting("MAX_RECIPIENTS", "max_recipients", "integer", "to+cc+bcc", 50, "50", minimum=1),
    Setting("MAX_MESSAGE_BYTES", "max_message_bytes", "integer",
            "request body and built message", 10 * 1024 * 1024, "10485760", minimum=1024),
    Setting("MAX_BATCH", "max_batch", "integer", "messages in one batch", 500, "500", minimum=1),
    Setting("MAX_EVENT_AGE_S", "max_event_age_s", "number",
            "Pub/Sub events older than this are dropped", 86_400.0, "86400", minimum=1),
    Setting("TEMPLATES_DIR", "templates_dir", "text",
            "your own templates, looked up before the built-ins"),
    Setting("WEBHOOK_SECRET", "webhook_secret", "text",
            "Secret Manager name (or `file:PATH` locally) of a token for callers outside IAM"),
    # --- alert sources
    Setting("ALERT_RECIPIENTS", "alert_recipients", "text",
            "comma list of addresses for Cloud Monitoring's Pub/Sub notifications, and for "
            "`/alertmanager`, `/grafana`, `/cloud-monitoring` without `?to=`"),
    Setting("WEBHOOK_RETRY_WINDOW_S", "webhook_retry_window_s", "number",
            "an alert notification posted again within this time is a retry (`duplicate`, "
            "nothing sent); after twice this time it is a new email (a reminder)",
            600.0, "600", minimum=1),
    # --- exactly once
    Setting("IDEMPOTENCY_STORE", "idempotency_store", "choice",
            "`memory` or `firestore` (honours `FIRESTORE_EMULATOR_HOST`)", "memory", "memory",
            choices=("memory", "firestore")),
    Setting("IDEMPOTENCY_COLLECTION", "idempotency_collection", "text",
            "Firestore collection of the ledger",
            "smtp_sender_idempotency", "smtp_sender_idempotency"),
    # A sent key is remembered as long as a subscription can hold an unacked message (7 days).
    Setting("IDEMPOTENCY_TTL_S", "idempotency_ttl_s", "number",
            "how long a sent key is remembered (`expire_at` for Firestore's TTL policy)",
            7 * 86_400.0, "604800", minimum=1),
    Setting("IDEMPOTENCY_LEASE_S", "idempotency_lease_s", "number",
            "how long a claim blocks other deliveries of the same key",
            default_text="`SEND_DEADLINE_S` + 15", minimum=1, derived_default=_lease_default),
    Setting("IDEMPOTENCY_MEMORY_MAX_ENTRIES", "idempotency_memory_max_entries", "integer",
            "size of the per-instance memory ledger (LRU)", 10_000, "10000", minimum=1),
    # --- operating it: outcome events (sender/results.py)
    Setting("RESULTS_TOPIC", "results_topic", "text",
            "Pub/Sub topic (`projects/P/topics/T`, or a bare name in `GOOGLE_CLOUD_PROJECT`) "
            "that gets one JSON event per finished delivery"),
    Setting("RESULTS_TIMEOUT_S", "results_timeout_s", "number",
            "the most an outcome event's publish may add to the answer; past it, or on any "
            "publish error, a WARNING and the answer is unchanged",
            3.0, "3", minimum=0.1),
)  # fmt: skip

# Read by client libraries, not by us; listed so tests can clear them and README can name them.
LIBRARY_VARIABLES: tuple[str, ...] = (
    "FIRESTORE_EMULATOR_HOST",
    "PUBSUB_EMULATOR_HOST",
    "GOOGLE_APPLICATION_CREDENTIALS",
)


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the function: one field per row of `SETTINGS`, which holds the defaults."""

    smtp_secret: str | None
    smtp_secret_file: str | None
    secret_manager_emulator_host: str | None
    google_cloud_project: str | None
    profile_cache_ttl_s: float
    smtp_host: str | None
    smtp_port: str | None
    smtp_username: str | None
    smtp_security: str | None
    smtp_from: str | None
    smtp_ca_file: str | None
    oauth_ca_file: str | None
    smtp_timeout_s: float
    send_deadline_s: float
    smtp_pool_size: int
    smtp_pool_idle_s: float
    smtp_session_max_messages: int
    allowed_recipients: tuple[str, ...] | None
    allowed_senders: tuple[str, ...] | None
    max_recipients: int
    max_message_bytes: int
    max_batch: int
    max_event_age_s: float
    templates_dir: str | None
    webhook_secret: str | None
    alert_recipients: str | None
    webhook_retry_window_s: float
    idempotency_store: str
    idempotency_collection: str
    idempotency_ttl_s: float
    idempotency_lease_s: float
    idempotency_memory_max_entries: int
    results_topic: str | None
    results_timeout_s: float

    @classmethod
    def defaults(cls, **overrides: Any) -> Settings:
        """Every setting at its default (as with an empty environment), then `overrides`."""
        return replace(cls.from_env({}), **overrides)

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env
        values: dict[str, Any] = {}
        for setting in SETTINGS:
            values[setting.field] = setting.read(env, values)
        return cls(**values)

    def bare_password_profile(self) -> dict[str, str]:
        """The profile fields a bare-password secret takes from the environment."""
        return {
            "host": self.smtp_host or "",
            "port": self.smtp_port or "",
            "security": self.smtp_security or "",
            "username": self.smtp_username or "",
            "from": self.smtp_from or "",
        }


def variable_names() -> tuple[str, ...]:
    """Every variable that changes what the function does (ours, their aliases, the libraries')."""
    ours = tuple(name for s in SETTINGS for name in (s.env, *s.aliases))
    return ours + LIBRARY_VARIABLES


def markdown_table() -> str:
    """README's Configuration table, generated from `SETTINGS` (a test keeps README equal)."""
    lines = ["| variable | meaning | default |", "|---|---|---|"]
    lines += [f"| `{s.env}` | {s.help} | {s.default_text} |" for s in SETTINGS]
    return "\n".join(lines)


def _check_table() -> None:
    """Import-time guard: the table and the dataclass describe the same fields."""
    declared = [s.field for s in SETTINGS]
    if sorted(declared) != sorted(f.name for f in fields(Settings)) or len(set(declared)) != len(
        declared
    ):
        raise RuntimeError("sender.config: SETTINGS and Settings disagree")  # a programming error


_check_table()
