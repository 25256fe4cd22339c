"""Warm-instance state: everything the function keeps between requests, in one place.

A Cloud Run instance serves many requests in a row; what is expensive to create (a Secret Manager
client, a TLS context, a Firestore client) or must be shared by every request on the instance (the
cached profile, the memory ledger) lives here and nowhere else. Each item is created on first use
and keyed by the settings it depends on, so a changed environment variable gets a new item rather
than a stale one; `reset()` drops everything (tests; a new instance starts like this).

The modules that define these things (`secrets`, `smtp_client`, `ledger_*`, `webhook_auth`,
`templates`) only construct them; none of them imports this module, so dependencies point one way.
"""

from __future__ import annotations

import functools
import os
import ssl
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

from sender.alarm_clock import AlarmClock
from sender.config import Settings
from sender.errors import ConfigurationError
from sender.ledger import Clock, Ledger
from sender.ledger_memory import MemoryLedger
from sender.oauth2.cache import TokenCache
from sender.profile import SmtpProfile
from sender.providers import pool_size
from sender.results import ResultsPublisher, new_publisher_client
from sender.secrets import ProfileStore, new_secret_manager_client, source_for
from sender.session_pool import SessionPool
from sender.smtp_client import new_tls_context
from sender.webhook_auth import TokenStore, token_source

if TYPE_CHECKING:  # imported by `template_environment` itself, when a template is first used
    from jinja2.sandbox import SandboxedEnvironment

T = TypeVar("T")

_lock = threading.Lock()
_items: dict[tuple[str, Hashable], Any] = {}


def _get(kind: str, key: Hashable, build: Callable[[], T]) -> T:
    """The item of `kind` for `key`, built on first use (a failed build caches nothing)."""
    with _lock:
        item = _items.get((kind, key))
        if item is None:
            item = _items[(kind, key)] = build()
        return cast(T, item)


def reset() -> None:
    """Forget all warm-instance state (tests; a new instance starts like this).

    What holds connections (session pools) is closed on the way out."""
    with _lock:
        dropped = list(_items.values())
        _items.clear()
    for item in dropped:
        if isinstance(item, SessionPool | AlarmClock):
            item.close()


def secret_manager_client(emulator_host: str | None, api_endpoint: str | None = None) -> Any:
    """One Secret Manager client per endpoint (None: the global one; a regional secret's
    `secretmanager.L.rep.googleapis.com`), created on first use. The emulator serves every
    endpoint, so with one there is a single client."""
    endpoint = None if emulator_host else api_endpoint
    return _get("secret_manager_client", (emulator_host, endpoint),
                lambda: new_secret_manager_client(emulator_host, endpoint))  # fmt: skip


def _client_factory(settings: Settings) -> Callable[[str | None], Any]:
    """endpoint -> the instance's client for it (what `sender.secrets` calls a ClientFactory)."""
    return functools.partial(secret_manager_client, settings.secret_manager_emulator_host)


def _profile_source_key(settings: Settings) -> Hashable:
    """What identifies the SMTP profile's source (and the environment a bare password uses)."""
    return (
        settings.smtp_secret_file,
        settings.smtp_secret,
        settings.google_cloud_project,
        settings.secret_manager_emulator_host,
        tuple(sorted(settings.bare_password_profile().items())),
    )


def profile_store(settings: Settings) -> ProfileStore:
    """The store (cache + re-read) of the configured SMTP profile source."""
    fallback = settings.bare_password_profile()
    key = (_profile_source_key(settings), settings.profile_cache_ttl_s)
    return _get(
        "profile_store",
        key,
        lambda: ProfileStore(
            source_for(settings, _client_factory(settings)),
            settings.profile_cache_ttl_s,
            fallback,
        ),
    )


def session_pool(settings: Settings, profile: SmtpProfile) -> SessionPool:
    """The SMTP sessions of the configured profile source (`SMTP_POOL_SIZE` > 0 only), at most
    `SMTP_POOL_SIZE` or the profile's provider limit of concurrent connections, if lower.

    The pool itself tells one payload of the secret from the next (a rotation), so one pool per
    source is enough; a rotated profile with another provider resizes it."""
    key = (
        _profile_source_key(settings),
        settings.smtp_pool_size,
        settings.smtp_pool_idle_s,
        settings.smtp_session_max_messages,
    )
    size = pool_size(settings.smtp_pool_size, profile.limits)
    pool = _get(
        "session_pool",
        key,
        lambda: SessionPool(
            size=size,
            idle_s=settings.smtp_pool_idle_s,
            max_messages=settings.smtp_session_max_messages,
        ),
    )
    pool.resize(size)
    return pool


def token_cache() -> TokenCache:
    """The instance's OAuth2 access tokens, keyed per profile payload (`sender.sign_in`)."""
    return _get("token_cache", None, TokenCache)


def tls_context(ca_file: str | None) -> ssl.SSLContext:
    """The verifying TLS context for `SMTP_CA_FILE`; a new one when the file changes."""
    mtime = 0.0
    if ca_file:
        try:
            mtime = Path(ca_file).stat().st_mtime
        except OSError:
            raise ConfigurationError(f"SMTP_CA_FILE {ca_file} cannot be read") from None
    return _get("tls_context", (ca_file, mtime), lambda: new_tls_context(ca_file))


def webhook_token_store(settings: Settings) -> TokenStore | None:
    """The webhook token (cached, re-read after a mismatch), or None without `WEBHOOK_SECRET`."""
    if not settings.webhook_secret:
        return None
    key = (
        settings.webhook_secret,
        settings.google_cloud_project,
        settings.secret_manager_emulator_host,
    )

    def build() -> TokenStore:
        source = token_source(settings, _client_factory(settings))
        assert source is not None  # webhook_secret is set
        return TokenStore(source)

    return _get("webhook_token_store", key, build)


def new_ledger(settings: Settings, *, clock: Clock = time.time) -> Ledger:
    """The idempotency store `IDEMPOTENCY_STORE` names (the factory; backends never import it)."""
    if settings.idempotency_store == "firestore":
        # Imported here so google-cloud-firestore is loaded only by deployments that use it.
        from sender.ledger_firestore import FirestoreLedger  # noqa: PLC0415

        return FirestoreLedger(
            collection=settings.idempotency_collection,
            project=settings.google_cloud_project,
            lease_s=settings.idempotency_lease_s,
            ttl_s=settings.idempotency_ttl_s,
            clock=clock,
        )
    return MemoryLedger(
        max_entries=settings.idempotency_memory_max_entries,
        lease_s=settings.idempotency_lease_s,
        ttl_s=settings.idempotency_ttl_s,
        clock=clock,
    )


def ledger(settings: Settings) -> Ledger:
    """The instance's ledger: the memory store *is* this object; a Firestore client is reused."""
    key = (
        settings.idempotency_store,
        settings.idempotency_collection,
        settings.google_cloud_project,
        settings.idempotency_ttl_s,
        settings.idempotency_lease_s,
        settings.idempotency_memory_max_entries,
    )
    # `new_ledger` is looked up at call time, so a test can substitute the factory (a clock).
    return _get("ledger", key, lambda: new_ledger(settings))


def pubsub_publisher_client(emulator_host: str | None) -> Any:
    """One Pub/Sub publisher client per instance (per emulator host), created on first use."""
    return _get("pubsub_publisher_client", emulator_host,
                lambda: new_publisher_client(emulator_host))  # fmt: skip


def results_publisher(settings: Settings) -> ResultsPublisher | None:
    """Where outcome events go (`RESULTS_TOPIC`), or None when no topic is set. Nothing here
    talks to Pub/Sub or imports its client: that waits for the first event."""
    if not settings.results_topic:
        return None
    emulator_host = os.environ.get("PUBSUB_EMULATOR_HOST") or None  # the library's variable
    key = (
        settings.results_topic,
        settings.google_cloud_project,
        settings.results_timeout_s,
        emulator_host,
    )
    return _get(
        "results_publisher",
        key,
        lambda: ResultsPublisher(
            topic=settings.results_topic or "",
            project=settings.google_cloud_project,
            timeout_s=settings.results_timeout_s,
            client=functools.partial(pubsub_publisher_client, emulator_host),
        ),
    )


def template_environment(templates_dir: str | None) -> SandboxedEnvironment:
    """The compiled-template environment for `TEMPLATES_DIR` (templates ship with the deploy).

    `sender.templates` (Jinja's sandbox) is imported here: a cold instance whose messages carry
    their own text never loads it (cold start, issue 11)."""
    from sender.templates import new_environment  # noqa: PLC0415

    return _get("template_environment", templates_dir, lambda: new_environment(templates_dir))


def alarm_clock() -> AlarmClock:
    """The one thread that rings every send's watchdog at its deadline (`sender.alarm_clock`)."""
    return _get("alarm_clock", None, AlarmClock)
