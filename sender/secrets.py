"""Where the SMTP profile comes from: Secret Manager (production) or a local file (dev, tests).

The Secret Manager client is created lazily, once per instance, and reused while the instance is
warm (creating one costs a channel and credential discovery; `sender.instance` keeps it). The
parsed profile is cached for `SMTP_PROFILE_CACHE_TTL_S`; `ProfileStore.reread()` bypasses the
cache after an authentication failure so that a rotated password is picked up without a redeploy.
"""

from __future__ import annotations

import functools
import hashlib
import re
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sender import logs
from sender.config import Settings
from sender.deadline import Deadline
from sender.errors import ConfigurationError, TransientError
from sender.profile import SmtpProfile, parse_profile

# A read, retries included, ends within this many seconds and within the send's own deadline
# (`SEND_DEADLINE_S`): a few quick retries on UNAVAILABLE, then the caller gets a 503 and Pub/Sub
# redelivers later.
_READ_BUDGET_S = 12.0


@dataclass(frozen=True, slots=True)
class SecretPayload:
    data: bytes
    version: str | None  # the resolved version name, for logs; never the data

    @property
    def fingerprint(self) -> str:
        """A digest to tell whether a re-read returned something new (kept in memory only)."""
        return hashlib.sha256(self.data).hexdigest()


class SecretSource(Protocol):
    def read(self, deadline: Deadline | None = None) -> SecretPayload:
        """The payload; within `deadline` when one is given (a send's)."""
        ...

    @property
    def label(self) -> str: ...


class FileSecretSource:
    """A secret on local disk: `SMTP_SECRET_FILE` (profile) or `WEBHOOK_SECRET=file:PATH`."""

    def __init__(self, path: str, variable: str = "SMTP_SECRET_FILE") -> None:
        self._path = Path(path)
        self._variable = variable

    @property
    def label(self) -> str:
        return f"file:{self._path}"

    def read(self, deadline: Deadline | None = None) -> SecretPayload:
        try:
            return SecretPayload(self._path.read_bytes(), None)
        except FileNotFoundError:
            raise ConfigurationError(f"{self._variable} {self._path} does not exist") from None
        except OSError as exc:
            raise ConfigurationError(
                f"{self._variable} {self._path} cannot be read: {exc.strerror}"
            ) from None


# A location id goes into a host name (`secretmanager.L.rep.googleapis.com`): letters, digits
# and inner hyphens only (`europe-west1`, `us-central1`).
_LOCATION = re.compile(r"^[a-z][a-z0-9-]{0,61}[a-z0-9]$")
_NAME_RULE = (
    "must be projects/P/secrets/S[/versions/V], projects/P/locations/L/secrets/S[/versions/V] "
    "or a bare secret name"
)


def resolve_secret_version(name: str, project: str | None, variable: str = "SMTP_SECRET") -> str:
    """`S`, `projects/P/secrets/S[/versions/V]` or the regional
    `projects/P/locations/L/secrets/S[/versions/V]` -> a full version name (`latest` if none).

    `variable` names the setting in error messages (SMTP_SECRET, WEBHOOK_SECRET)."""
    parts = name.strip().strip("/").split("/")
    if len(parts) == 1 and parts[0]:
        if not project:
            raise ConfigurationError(
                f"{variable} {name!r} is a bare name, but GOOGLE_CLOUD_PROJECT is not set"
            )
        return f"projects/{project}/secrets/{parts[0]}/versions/latest"
    if not all(parts) or len(parts) < 4 or parts[0] != "projects":
        raise ConfigurationError(f"{variable} {_NAME_RULE}")
    secret = parts[:4]
    if parts[2] == "locations":
        if len(parts) < 6 or parts[4] != "secrets" or not _LOCATION.match(parts[3]):
            raise ConfigurationError(f"{variable} {_NAME_RULE}")
        secret = parts[:6]
    elif parts[2] != "secrets":
        raise ConfigurationError(f"{variable} {_NAME_RULE}")
    version = parts[len(secret) :]
    if not version:
        return "/".join(secret) + "/versions/latest"
    if len(version) == 2 and version[0] == "versions":
        return "/".join(parts)
    raise ConfigurationError(f"{variable} {_NAME_RULE}")


def secret_endpoint(version_name: str) -> str | None:
    """The API endpoint serving a resolved version name: a regional secret is only served by its
    location's endpoint; None: the global one (the client's default)."""
    parts = version_name.split("/")
    if len(parts) > 3 and parts[2] == "locations":
        return f"secretmanager.{parts[3]}.rep.googleapis.com"
    return None


def new_secret_manager_client(
    emulator_host: str | None, api_endpoint: str | None = None, *, credentials: Any = None
) -> Any:
    """A Secret Manager client: plaintext gRPC to `emulator_host` (tests; it serves every
    endpoint), else the real API at `api_endpoint` (None: the global endpoint) with
    `credentials` (None: the function's own, found by google-auth).

    Imported here so that a local run with SMTP_SECRET_FILE never loads gRPC at all."""
    from google.cloud import secretmanager  # noqa: PLC0415

    if not emulator_host:
        options = None if api_endpoint is None else {"api_endpoint": api_endpoint}
        return secretmanager.SecretManagerServiceClient(
            credentials=credentials, client_options=options
        )
    import grpc  # noqa: PLC0415
    from google.cloud.secretmanager_v1.services.secret_manager_service.transports import (  # noqa: PLC0415
        SecretManagerServiceGrpcTransport,
    )

    channel = grpc.insecure_channel(emulator_host)
    transport = SecretManagerServiceGrpcTransport(channel=channel)
    return secretmanager.SecretManagerServiceClient(transport=transport)


# endpoint (None: global) -> the instance's client for it; `secret_manager_source` binds one.
ClientFactory = Callable[[str | None], Any]


def _classify_secret_manager_error(exc: Exception, version_name: str) -> Exception:
    from google.api_core import exceptions as gexc  # noqa: PLC0415
    from google.auth import exceptions as auth_exc  # noqa: PLC0415

    if isinstance(exc, gexc.NotFound):
        return ConfigurationError(f"secret version {version_name} was not found")
    if isinstance(exc, gexc.PermissionDenied | gexc.Unauthenticated):
        return ConfigurationError(
            f"access to {version_name} was denied: grant the function's service account "
            "roles/secretmanager.secretAccessor on the secret"
        )
    if isinstance(exc, gexc.FailedPrecondition):
        return ConfigurationError(f"secret version {version_name} is disabled or destroyed")
    if isinstance(exc, gexc.InvalidArgument):
        return ConfigurationError(f"Secret Manager refused the name {version_name}")
    if isinstance(exc, auth_exc.DefaultCredentialsError):
        return ConfigurationError("no Google credentials are available to read the secret")
    return TransientError(f"Secret Manager is unavailable ({type(exc).__name__})")


class SecretManagerSource:
    """`SMTP_SECRET` read through `google-cloud-secret-manager`."""

    def __init__(self, version_name: str, client: Callable[[], Any]) -> None:
        self._version_name = version_name
        self._client = client  # the instance's shared client, created on first use

    @property
    def label(self) -> str:
        return self._version_name

    def read(self, deadline: Deadline | None = None) -> SecretPayload:
        import google_crc32c  # noqa: PLC0415
        from google.api_core import exceptions as gexc  # noqa: PLC0415
        from google.api_core import retry as gretry  # noqa: PLC0415

        # One budget for every attempt: a float `timeout` is what is left of it for each retry.
        budget = _READ_BUDGET_S if deadline is None else deadline.budget(_READ_BUDGET_S)
        retry = gretry.Retry(
            predicate=gretry.if_exception_type(
                gexc.ServiceUnavailable, gexc.DeadlineExceeded, gexc.InternalServerError,
                gexc.Aborted, gexc.ResourceExhausted,
            ),
            initial=0.2, maximum=2.0, multiplier=2.0, timeout=budget,
        )  # fmt: skip
        try:
            response = self._client().access_secret_version(
                request={"name": self._version_name}, retry=retry, timeout=budget
            )
        except Exception as exc:  # noqa: BLE001 - every client error is classified once, here
            raise _classify_secret_manager_error(exc, self._version_name) from None
        data: bytes = response.payload.data
        expected = response.payload.data_crc32c if "data_crc32c" in response.payload else None
        if expected is not None and google_crc32c.value(data) != expected:
            raise TransientError("the secret payload failed its CRC32C check; will retry")
        return SecretPayload(data, response.name or None)


def secret_manager_source(
    name: str, settings: Settings, variable: str, client: ClientFactory
) -> SecretManagerSource:
    """The Secret Manager version `name` (the value of setting `variable`) resolves to, read
    through the endpoint that serves it (regional secrets: their location's)."""
    version = resolve_secret_version(name, settings.google_cloud_project, variable)
    return SecretManagerSource(version, functools.partial(client, secret_endpoint(version)))


def source_for(settings: Settings, client: ClientFactory) -> SecretSource:
    """Where the SMTP profile comes from: SMTP_SECRET_FILE (local) or SMTP_SECRET."""
    if settings.smtp_secret_file:
        return FileSecretSource(settings.smtp_secret_file)
    if not settings.smtp_secret:
        raise ConfigurationError("set SMTP_SECRET (or SMTP_SECRET_FILE for local runs)")
    return secret_manager_source(settings.smtp_secret, settings, "SMTP_SECRET", client)


@dataclass(frozen=True, slots=True)
class LoadedProfile:
    """A profile together with the digest of the payload it came from."""

    profile: SmtpProfile
    fingerprint: str


class ProfileStore:
    """The parsed profile of one source, cached for a TTL, with a cache-bypassing re-read."""

    def __init__(
        self,
        source: SecretSource,
        ttl_s: float,
        fallback: Mapping[str, str] | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._source = source
        self._ttl_s = ttl_s
        self._fallback = dict(fallback or {})  # for a bare-password payload
        self._clock = clock
        self._lock = threading.Lock()
        self._current: LoadedProfile | None = None
        self._loaded_at = 0.0

    def get(self, deadline: Deadline | None = None) -> LoadedProfile:
        with self._lock:
            current = self._current
            if current is not None and self._clock() - self._loaded_at < self._ttl_s:
                return current
            return self._load(deadline)

    def reread(
        self, failed: LoadedProfile, deadline: Deadline | None = None
    ) -> tuple[LoadedProfile, bool]:
        """After `failed` was refused: the newest profile, and whether it differs from `failed`.

        Compared with what the failed attempt *used*, not with the cache: when two sends fail
        during a rotation, the first re-read refreshes the cache and the second must still see
        the new password as a change (and gets it without another read).
        """
        with self._lock:
            current = self._current
            if current is not None and current.fingerprint != failed.fingerprint:
                return current, True
            loaded = self._load(deadline)
            return loaded, loaded.fingerprint != failed.fingerprint

    def _load(self, deadline: Deadline | None) -> LoadedProfile:
        payload = self._source.read(deadline)
        loaded = LoadedProfile(parse_profile(payload.data, self._fallback), payload.fingerprint)
        self._current, self._loaded_at = loaded, self._clock()
        logs.secret_read(source=self._source.label, version=payload.version)
        return loaded
