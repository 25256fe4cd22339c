"""TokenCache: reuse until shortly before expiry (fake clock), single flight (threads), bounded
waits, invalidation. The fetch here is a stand-in; the MTA tier runs the real one."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator

import pytest

from sender.oauth2 import (
    AccessToken,
    IdentityProviderRefusedError,
    IdentityProviderUnavailableError,
)
from sender.oauth2.cache import TokenCache
from tests.support.fakes import FakeClock


class CountingFetch:
    """A token endpoint stand-in: counts calls; optionally blocks until released."""

    def __init__(self, lifetime_s: float = 3600.0, *, blocking: bool = False) -> None:
        self.lifetime_s = lifetime_s
        self.calls = 0
        self.budgets: list[float] = []
        self.error: BaseException | None = None
        self._release = threading.Event()
        if not blocking:
            self._release.set()

    def release(self) -> None:
        self._release.set()

    def __call__(self, budget_s: float) -> AccessToken:
        self.calls += 1
        self.budgets.append(budget_s)
        self._release.wait(30)
        if self.error is not None:
            raise self.error
        return AccessToken(f"token-{self.calls}", self.lifetime_s)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def cache(clock: FakeClock) -> Iterator[TokenCache]:
    cache = TokenCache(clock=clock, refresh_margin_s=300)
    yield cache
    cache.clear()


def _get(cache: TokenCache, fetch: Callable[[float], AccessToken], deadline_s: float = 5) -> str:
    return cache.get("profile", fetch, deadline_s=deadline_s, flow="microsoft").value


def _wait_until(condition: Callable[[], bool]) -> None:
    deadline = time.monotonic() + 10
    while not condition():
        assert time.monotonic() < deadline, "condition not reached"
        time.sleep(0.005)


def test_a_token_is_reused_until_the_margin_before_expiry(
    cache: TokenCache, clock: FakeClock
) -> None:
    fetch = CountingFetch(lifetime_s=3600)
    assert _get(cache, fetch) == "token-1"
    clock.now += 3600 - 300 - 1  # one second before the margin
    assert _get(cache, fetch) == "token-1"
    clock.now += 1  # at the margin: fetched again
    assert _get(cache, fetch) == "token-2"
    assert fetch.calls == 2


def test_a_short_lived_token_is_still_reused_for_half_its_life(
    cache: TokenCache, clock: FakeClock
) -> None:
    fetch = CountingFetch(lifetime_s=60)  # the 300 s margin would make it useless
    _get(cache, fetch)
    clock.now += 29
    assert _get(cache, fetch) == "token-1"
    clock.now += 1
    assert _get(cache, fetch) == "token-2"


def test_keys_are_independent(cache: TokenCache) -> None:
    fetch = CountingFetch()
    first = cache.get("a", fetch, deadline_s=5, flow="microsoft")
    second = cache.get("b", fetch, deadline_s=5, flow="microsoft")
    assert first != second
    assert fetch.calls == 2


def test_the_fetch_gets_the_callers_deadline_as_its_budget(cache: TokenCache) -> None:
    fetch = CountingFetch()
    _get(cache, fetch, deadline_s=7.5)
    assert fetch.budgets == [7.5]


def test_eight_concurrent_callers_with_a_cold_cache_share_one_fetch(cache: TokenCache) -> None:
    fetch = CountingFetch(lifetime_s=0, blocking=True)  # a zero lifetime: nothing is reused
    results: list[str] = []
    threads = [
        threading.Thread(target=lambda: results.append(_get(cache, fetch))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    # Every caller is waiting on the one fetch in flight before it is allowed to finish.
    _wait_until(lambda: cache.waiting("profile") == 8)
    fetch.release()
    for thread in threads:
        thread.join(10)
    assert results == ["token-1"] * 8
    assert fetch.calls == 1
    assert cache.waiting("profile") == 0


def test_a_hanging_fetch_costs_each_caller_its_deadline_and_is_joined_not_repeated(
    cache: TokenCache,
) -> None:
    fetch = CountingFetch(blocking=True)
    with pytest.raises(IdentityProviderUnavailableError) as caught:
        _get(cache, fetch, deadline_s=0.05)
    assert "microsoft" in caught.value.reason
    assert caught.value.http_status == 503
    with pytest.raises(IdentityProviderUnavailableError):
        _get(cache, fetch, deadline_s=0.05)
    assert fetch.calls == 1, "the second caller joined the fetch still in flight"
    fetch.release()
    # The late answer is kept (or still being delivered, then joined): no other request.
    assert _get(cache, fetch) == "token-1"
    assert fetch.calls == 1


def test_no_time_left_and_a_cold_cache_fails_at_once_without_a_request(cache: TokenCache) -> None:
    fetch = CountingFetch()
    with pytest.raises(IdentityProviderUnavailableError):
        _get(cache, fetch, deadline_s=0)
    assert fetch.calls == 0
    _get(cache, fetch)
    assert _get(cache, fetch, deadline_s=0) == "token-1", "a cached token needs no time"


def test_an_error_reaches_every_waiter_and_is_not_cached(cache: TokenCache) -> None:
    fetch = CountingFetch(blocking=True)
    fetch.error = IdentityProviderRefusedError("microsoft", "invalid_client")
    errors: list[BaseException] = []

    def caller() -> None:
        try:
            _get(cache, fetch)
        except IdentityProviderRefusedError as exc:
            errors.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(3)]
    for thread in threads:
        thread.start()
    _wait_until(lambda: cache.waiting("profile") == 3)
    fetch.release()
    for thread in threads:
        thread.join(10)
    assert len(errors) == 3
    assert fetch.calls == 1
    fetch.error = None
    assert _get(cache, fetch) == "token-2", "a failure is not remembered: the next call asks"


def test_invalidate_drops_a_refused_token(cache: TokenCache) -> None:
    fetch = CountingFetch()
    token = cache.get("profile", fetch, deadline_s=5, flow="microsoft")
    cache.invalidate("profile", token)
    assert _get(cache, fetch) == "token-2"


def test_invalidating_an_old_token_keeps_the_fresh_one_another_caller_fetched(
    cache: TokenCache,
) -> None:
    fetch = CountingFetch()
    old = cache.get("profile", fetch, deadline_s=5, flow="microsoft")
    cache.invalidate("profile", old)
    assert _get(cache, fetch) == "token-2"
    cache.invalidate("profile", old)  # a second sender that also held the old token
    assert _get(cache, fetch) == "token-2"
    cache.invalidate("profile")  # without a token: whatever is cached goes
    assert _get(cache, fetch) == "token-3"


def test_clear_during_a_fetch_keeps_its_result_out_of_the_cache(cache: TokenCache) -> None:
    fetch = CountingFetch(blocking=True)
    results: list[str] = []
    thread = threading.Thread(target=lambda: results.append(_get(cache, fetch)))
    thread.start()
    _wait_until(lambda: cache.waiting("profile") == 1)
    cache.clear()
    fetch.release()
    thread.join(10)
    assert results == ["token-1"], "the caller still gets its answer"
    assert _get(cache, fetch) == "token-2", "but a cleared cache does not keep it"


def test_the_token_value_never_shows_in_a_repr() -> None:
    token = AccessToken("secret-token-value", 60)
    assert "secret-token-value" not in repr(token)
    assert "secret-token-value" not in str(token)
