"""Stand-ins for unit tests: a secret that can be rotated, and a clock that can be moved."""

from __future__ import annotations

from sender.deadline import Deadline
from sender.secrets import SecretPayload


class FakeSecretSource:
    """A `SecretSource` whose payload a test replaces to rotate it; counts reads."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.reads = 0

    @property
    def label(self) -> str:
        return "fake"

    def read(self, deadline: Deadline | None = None) -> SecretPayload:
        self.reads += 1
        return SecretPayload(self.payload, str(self.reads))


class FakeClock:
    """A clock (monotonic or epoch seconds, as the code under test expects) that moves only when
    a test says so: expiry and caching without sleeping."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds
