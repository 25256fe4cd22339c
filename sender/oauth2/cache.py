"""Access tokens kept per instance: one token request per expiry per profile, however many sends.

- Reuse: a token is handed out until ``refresh_margin_s`` before it expires (at most half its
  lifetime, so a short-lived token is still reused), then fetched again.
- Single flight: callers that find no usable token while a fetch for the same key is running
  wait for that fetch instead of starting their own (8 concurrent sends, one token request).
- Bounded: every caller waits at most its own ``deadline_s``; the fetch runs in a daemon thread,
  so an IdP that hangs costs a caller its deadline, never more. Later callers join the fetch
  still in flight rather than piling up new ones.
- ``invalidate`` drops a token the server refused, so the next caller fetches a fresh one.

The instance (not module state) belongs to whoever owns the warm-instance state.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sender.errors import IdentityProviderUnavailableError

if TYPE_CHECKING:  # annotations only: the cache must not load MSAL and google-auth
    from sender.oauth2.flows import AccessToken

DEFAULT_REFRESH_MARGIN_S = 300.0


@dataclass(slots=True)
class _Entry:
    token: AccessToken
    fresh_until: float


@dataclass(slots=True)
class _Flight:
    """One fetch in progress; waiters block on ``done``."""

    done: threading.Event = field(default_factory=threading.Event)
    token: AccessToken | None = None
    error: BaseException | None = None
    waiting: int = 0


class TokenCache:
    """Per-key access tokens with single-flight refresh; thread-safe."""

    def __init__(
        self,
        *,
        clock: Callable[[], float] = time.monotonic,
        refresh_margin_s: float = DEFAULT_REFRESH_MARGIN_S,
    ) -> None:
        self._clock = clock
        self._margin_s = refresh_margin_s
        self._lock = threading.Lock()
        self._entries: dict[Hashable, _Entry] = {}
        self._flights: dict[Hashable, _Flight] = {}
        # Bumped by clear(): a fetch that started before must not refill the cache.
        self._generation = 0

    def get(
        self,
        key: Hashable,
        fetch: Callable[[float], AccessToken],
        *,
        deadline_s: float,
        flow: str,
    ) -> AccessToken:
        """A usable token for *key*: the cached one, or the result of *fetch* (called with the
        seconds it may spend, in a thread of its own, at most once at a time per key).

        Waits at most *deadline_s*; raises `IdentityProviderUnavailableError` naming *flow* when the
        fetch does not finish in time, or whatever the fetch raised.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() < entry.fresh_until:
                return entry.token
            flight = self._flights.get(key)
            if flight is None:
                if deadline_s <= 0:
                    raise IdentityProviderUnavailableError(flow, "no time left to request a token")
                flight = _Flight()
                self._flights[key] = flight
                worker = threading.Thread(
                    target=self._run,
                    args=(key, flight, fetch, deadline_s, self._generation),
                    name="oauth2-token-fetch",
                    daemon=True,
                )
                worker.start()
            flight.waiting += 1
        try:
            finished = flight.done.wait(max(deadline_s, 0.0))
        finally:
            with self._lock:
                flight.waiting -= 1
        if not finished:
            raise IdentityProviderUnavailableError(
                flow, "the identity provider did not answer within the send deadline"
            )
        if flight.error is not None:
            raise flight.error
        assert flight.token is not None
        return flight.token

    def _run(
        self,
        key: Hashable,
        flight: _Flight,
        fetch: Callable[[float], AccessToken],
        budget_s: float,
        generation: int,
    ) -> None:
        started = self._clock()
        try:
            token = fetch(budget_s)
        except BaseException as exc:  # noqa: BLE001 - handed to every waiter, who re-raises it
            with self._lock:
                self._flights.pop(key, None)
                flight.error = exc
        else:
            # Measured from the request's start: the IdP's clock began before the answer came.
            lifetime = max(token.expires_in_s, 0.0)
            fresh_until = started + lifetime - min(self._margin_s, lifetime / 2)
            with self._lock:
                self._flights.pop(key, None)
                if generation == self._generation:
                    self._entries[key] = _Entry(token, fresh_until)
                flight.token = token
        flight.done.set()

    def peek(self, key: Hashable) -> AccessToken | None:
        """*key*'s cached token while it is still handed out, else None (no fetch)."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and self._clock() < entry.fresh_until:
                return entry.token
            return None

    def waiting(self, key: Hashable) -> int:
        """How many callers wait for *key*'s fetch in flight right now (0 when none runs)."""
        with self._lock:
            flight = self._flights.get(key)
            return flight.waiting if flight is not None else 0

    def invalidate(self, key: Hashable, token: AccessToken | None = None) -> None:
        """Forget *key*'s token (the server refused it). With *token*, only if that is still
        the cached one: a fresh token another caller already fetched is kept."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and (token is None or entry.token == token):
                del self._entries[key]

    def clear(self) -> None:
        """Forget every token (a new instance starts like this)."""
        with self._lock:
            self._entries.clear()
            self._generation += 1
