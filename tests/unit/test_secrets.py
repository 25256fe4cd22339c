"""The profile cache: TTL, and a re-read after an authentication failure that sees rotations."""

from __future__ import annotations

import json

import pytest

from sender.config import Settings
from sender.errors import ConfigurationError
from sender.secrets import (
    ProfileStore,
    new_secret_manager_client,
    resolve_secret_version,
    secret_endpoint,
)
from tests.support.fakes import FakeClock, FakeSecretSource


def profile(password: str) -> bytes:
    return json.dumps(
        {"host": "smtp.example.com", "username": "u@example.com", "password": password}
    ).encode()


def test_cached_for_the_ttl() -> None:
    source, clock = FakeSecretSource(profile("old")), FakeClock()
    store = ProfileStore(source, ttl_s=300, clock=clock)
    store.get()
    store.get()
    assert source.reads == 1
    clock.advance(301)
    store.get()
    assert source.reads == 2


def test_reread_with_an_unchanged_secret_says_so() -> None:
    source = FakeSecretSource(profile("old"))
    store = ProfileStore(source, ttl_s=300)
    used = store.get()
    fresh, changed = store.reread(used)
    assert not changed
    assert fresh.profile.password == "old"


def test_two_failures_during_one_rotation_both_see_the_new_password() -> None:
    source = FakeSecretSource(profile("old"))
    store = ProfileStore(source, ttl_s=300)
    first_used, second_used = store.get(), store.get()  # two sends in flight, old password
    source.payload = profile("new")  # rotated: both fail to log in

    first, first_changed = store.reread(first_used)
    second, second_changed = store.reread(second_used)

    assert (first_changed, second_changed) == (True, True)
    assert first.profile.password == second.profile.password == "new"
    assert source.reads == 2  # the second failure reuses the first one's fresh read


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("smtp", "projects/p/secrets/smtp/versions/latest"),
        ("projects/q/secrets/smtp", "projects/q/secrets/smtp/versions/latest"),
        ("projects/q/secrets/smtp/versions/3", "projects/q/secrets/smtp/versions/3"),
        (
            "projects/q/locations/europe-west1/secrets/smtp",
            "projects/q/locations/europe-west1/secrets/smtp/versions/latest",
        ),
        (
            "projects/q/locations/me-central2/secrets/smtp/versions/4",
            "projects/q/locations/me-central2/secrets/smtp/versions/4",
        ),
    ],
)
def test_secret_names(name: str, expected: str) -> None:
    assert resolve_secret_version(name, "p") == expected


@pytest.mark.parametrize(
    "name",
    [
        "projects/q/smtp",
        "a/b",
        "projects//secrets/x",
        "projects/q/secrets/smtp/versions",
        "projects/q/secrets/smtp/3",
        "projects/q/locations/europe-west1/secrets",
        "projects/q/locations/europe-west1/keys/smtp",
        "projects/q/locations//secrets/smtp",
        # The location becomes part of a host name: nothing but a region's characters.
        "projects/q/locations/evil.example.com/secrets/smtp",
        "projects/q/locations/Europe-West1/secrets/smtp",
    ],
)
def test_bad_secret_names(name: str) -> None:
    with pytest.raises(ConfigurationError, match="projects/P/locations/L/secrets/S"):
        resolve_secret_version(name, "p")


def test_a_regional_secret_is_read_through_its_location_endpoint() -> None:
    regional = resolve_secret_version("projects/q/locations/europe-west1/secrets/smtp", None)
    assert secret_endpoint(regional) == "secretmanager.europe-west1.rep.googleapis.com"
    assert secret_endpoint(resolve_secret_version("projects/q/secrets/smtp", None)) is None

    # The real client, built offline, is pointed at that endpoint (and the global one stays).
    from google.auth.credentials import AnonymousCredentials

    client = new_secret_manager_client(
        None, secret_endpoint(regional), credentials=AnonymousCredentials()
    )
    assert client.api_endpoint == "secretmanager.europe-west1.rep.googleapis.com"
    plain = new_secret_manager_client(None, None, credentials=AnonymousCredentials())
    assert plain.api_endpoint == "secretmanager.googleapis.com"


@pytest.mark.parametrize("raw", ["nan", "inf", "-inf"])
def test_non_finite_settings_are_misconfiguration(raw: str) -> None:
    for variable in ("SMTP_TIMEOUT_S", "SEND_DEADLINE_S", "MAX_RECIPIENTS"):
        with pytest.raises(ConfigurationError, match=variable):
            Settings.from_env({variable: raw})
