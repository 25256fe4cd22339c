"""Stand-ins for unit tests: a secret that can be rotated, and a clock that can be moved."""

from __future__ import annotations

from sender.secrets import SecretPayload


class FakeSecretSource:
    """A `SecretSource` whose payload a test replaces to rotate it; counts reads."""

    def __init__(self, payload: bytes) -> None:
        self.payload = payload
        self.reads = 0

    @property
    def label(self) -> str:
        return "fake"

    def read(self) -> SecretPayload:
        self.reads += 1
        return SecretPayload(self.payload, str(self.reads))


class FakeClock:
    """A monotonic clock that moves only when a test says so."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now
