"""Runtime configuration, read from the environment.

Settings are read on every invocation (it is a handful of dict look-ups), so a test or an operator
changing an environment variable never fights a stale copy. A malformed value is a configuration
error, reported as `500 misconfigured` rather than a crash at import time.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass

from sender.outcome import ConfigurationError

DEFAULT_SMTP_TIMEOUT_S = 20.0
DEFAULT_MAX_RECIPIENTS = 50
DEFAULT_MAX_MESSAGE_BYTES = 10 * 1024 * 1024
DEFAULT_MAX_EVENT_AGE_S = 86_400
DEFAULT_PROFILE_CACHE_TTL_S = 300.0
# A sent key is remembered as long as a subscription can hold an unacked message (7 days).
DEFAULT_IDEMPOTENCY_TTL_S = 7 * 86_400.0
DEFAULT_IDEMPOTENCY_MEMORY_MAX_ENTRIES = 10_000
# A lease must outlive the longest send that can still be in flight, or a slow but alive sender
# is taken over and both send. The send deadline bounds an SMTP session; the margin covers the
# Secret Manager read and the ledger round-trips around it.
IDEMPOTENCY_LEASE_MARGIN_S = 15.0
# The whole SMTP session must end before the function's own deadline (60 s by default on
# Cloud Run functions), or the platform kills it mid-DATA and the caller learns nothing.
DEFAULT_SEND_DEADLINE_S = 50.0


def _split_list(raw: str | None) -> tuple[str, ...] | None:
    """`a, b ,c` -> ("a", "b", "c"); unset or blank -> None (no restriction)."""
    if raw is None or not raw.strip():
        return None
    return tuple(item.strip().lower() for item in raw.split(",") if item.strip())


def _number(env: Mapping[str, str], name: str, default: float, *, minimum: float) -> float:
    raw = env.get(name, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        raise ConfigurationError(f"{name} must be a number, got {raw!r}") from None
    if not math.isfinite(value):  # nan would disable every comparison-based bound
        raise ConfigurationError(f"{name} must be a finite number, got {raw!r}")
    if value < minimum:
        raise ConfigurationError(f"{name} must be at least {minimum:g}, got {raw!r}")
    return value


@dataclass(frozen=True, slots=True)
class Settings:
    """Every knob of the function; see the Configuration table in README.md."""

    smtp_secret: str | None = None
    smtp_secret_file: str | None = None
    secret_manager_emulator_host: str | None = None
    google_cloud_project: str | None = None
    smtp_ca_file: str | None = None
    smtp_timeout_s: float = DEFAULT_SMTP_TIMEOUT_S
    send_deadline_s: float = DEFAULT_SEND_DEADLINE_S
    allowed_recipients: tuple[str, ...] | None = None
    allowed_senders: tuple[str, ...] | None = None
    max_recipients: int = DEFAULT_MAX_RECIPIENTS
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    max_event_age_s: float = DEFAULT_MAX_EVENT_AGE_S
    profile_cache_ttl_s: float = DEFAULT_PROFILE_CACHE_TTL_S
    idempotency_store: str = "memory"
    idempotency_collection: str = "smtp_sender_idempotency"
    idempotency_ttl_s: float = DEFAULT_IDEMPOTENCY_TTL_S
    idempotency_lease_s: float = DEFAULT_SEND_DEADLINE_S + IDEMPOTENCY_LEASE_MARGIN_S
    idempotency_memory_max_entries: int = DEFAULT_IDEMPOTENCY_MEMORY_MAX_ENTRIES
    webhook_secret: str | None = None
    templates_dir: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> Settings:
        env = os.environ if env is None else env

        def text(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        send_deadline_s = _number(env, "SEND_DEADLINE_S", DEFAULT_SEND_DEADLINE_S, minimum=1)
        store = (text("IDEMPOTENCY_STORE") or "memory").lower()
        if store not in {"memory", "firestore"}:
            raise ConfigurationError(
                f"IDEMPOTENCY_STORE must be memory or firestore, got {store!r}"
            )
        return cls(
            smtp_secret=text("SMTP_SECRET"),
            smtp_secret_file=text("SMTP_SECRET_FILE"),
            secret_manager_emulator_host=text("SECRET_MANAGER_EMULATOR_HOST"),
            google_cloud_project=text("GOOGLE_CLOUD_PROJECT") or text("GCP_PROJECT"),
            smtp_ca_file=text("SMTP_CA_FILE"),
            smtp_timeout_s=_number(env, "SMTP_TIMEOUT_S", DEFAULT_SMTP_TIMEOUT_S, minimum=0.1),
            send_deadline_s=send_deadline_s,
            allowed_recipients=_split_list(env.get("ALLOWED_RECIPIENTS")),
            allowed_senders=_split_list(env.get("ALLOWED_SENDERS")),
            max_recipients=int(
                _number(env, "MAX_RECIPIENTS", DEFAULT_MAX_RECIPIENTS, minimum=1),
            ),
            max_message_bytes=int(
                _number(env, "MAX_MESSAGE_BYTES", DEFAULT_MAX_MESSAGE_BYTES, minimum=1024),
            ),
            max_event_age_s=_number(env, "MAX_EVENT_AGE_S", DEFAULT_MAX_EVENT_AGE_S, minimum=1),
            profile_cache_ttl_s=_number(
                env, "SMTP_PROFILE_CACHE_TTL_S", DEFAULT_PROFILE_CACHE_TTL_S, minimum=0
            ),
            idempotency_store=store,
            idempotency_collection=text("IDEMPOTENCY_COLLECTION") or "smtp_sender_idempotency",
            idempotency_ttl_s=_number(
                env, "IDEMPOTENCY_TTL_S", DEFAULT_IDEMPOTENCY_TTL_S, minimum=1
            ),
            idempotency_lease_s=_number(
                env,
                "IDEMPOTENCY_LEASE_S",
                send_deadline_s + IDEMPOTENCY_LEASE_MARGIN_S,
                minimum=1,
            ),
            idempotency_memory_max_entries=int(
                _number(
                    env,
                    "IDEMPOTENCY_MEMORY_MAX_ENTRIES",
                    DEFAULT_IDEMPOTENCY_MEMORY_MAX_ENTRIES,
                    minimum=1,
                )
            ),
            webhook_secret=text("WEBHOOK_SECRET"),
            templates_dir=text("TEMPLATES_DIR"),
        )
