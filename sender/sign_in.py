"""How a send signs in with OAuth2: the profile's access token, from the instance's cache.

A `TokenSource` belongs to one send attempt of one profile payload. The transport calls it only
when it opens a session that can take a token (a warm pooled session needs none); it takes the
cached token, or waits for one fetch (single flight, `sender.oauth2.cache`), within what is left of
the send's deadline: the token request counts in `SEND_DEADLINE_S`. When the SMTP server refuses
a token, `refused` forgets it; if it came from the cache (an older token the provider may have
revoked), the send path retries once with a fresh one. A token fetched for this very attempt is
not fetched again: a second one would be refused for the same reason.

The token cache is keyed by the profile payload's digest: a rotated secret (a new client secret, a
new key) never uses a token fetched with the old one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from sender import instance, logs
from sender.config import Settings
from sender.deadline import Deadline
from sender.oauth2.cache import TokenCache
from sender.oauth2.config import OAuth2Config
from sender.secrets import LoadedProfile

if TYPE_CHECKING:  # annotations only (see `_fetch`)
    from sender.oauth2.flows import AccessToken


class TokenSource:
    """The bearer token of one profile payload, for one send (callable: the token's value)."""

    def __init__(
        self,
        config: OAuth2Config,
        key: str,
        *,
        cache: TokenCache,
        deadline: Deadline,
        ca_file: str | None,
    ) -> None:
        self._config = config
        self._key = key
        self._cache = cache
        self._deadline = deadline
        self._ca_file = ca_file
        self.used: AccessToken | None = None  # the token the last call handed out
        self.from_cache = False  # whether it was cached before this attempt asked

    @property
    def flow(self) -> str:
        return self._config.flow

    def __call__(self) -> str:
        # Each caller waits at most a step of the deadline; the fetch itself is bounded the same.
        budget = self._deadline.budget()
        cached = self._cache.peek(self._key)
        token = self._cache.get(self._key, self._fetch, deadline_s=budget, flow=self._config.flow)
        self.used, self.from_cache = token, token is cached
        return token.value

    def _fetch(self, budget_s: float) -> AccessToken:
        # Imported here: MSAL and google-auth load only on an instance that fetches a token.
        from sender.oauth2.flows import fetch_token  # noqa: PLC0415

        return fetch_token(self._config, timeout_s=budget_s, ca_file=self._ca_file)

    def refused(self) -> bool:
        """The SMTP server refused the token this attempt used: forget it. True when a fresh
        token is worth one more try: the refused one was cached before this attempt."""
        if self.used is None:
            return False
        self._cache.invalidate(self._key, self.used)
        retry = self.from_cache
        self.used, self.from_cache = None, False
        if retry:
            logs.oauth2_token_refused(flow=self._config.flow)
        return retry


def token_source(
    loaded: LoadedProfile, settings: Settings, deadline: Deadline
) -> TokenSource | None:
    """The token source of *loaded*'s profile; None when it signs in with a password (or not)."""
    config = loaded.profile.oauth2
    if config is None:
        return None
    return TokenSource(
        config,
        loaded.fingerprint,
        cache=instance.token_cache(),
        deadline=deadline,
        ca_file=settings.oauth_ca_file,
    )
