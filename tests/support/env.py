"""`SenderEnv`: the function's environment for one test (see the ``sender_env`` fixture)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

import pytest

from tests.support.certs import CertBundle
from tests.support.constants import CANARY_PASSWORD, PROFILE_FROM, SECRET_NAME, SMTP_USER
from tests.support.secret_manager_stub import SecretManagerStub
from tests.support.smtp_server import SmtpTestServer


@dataclass
class SenderEnv:
    """The function's environment for one test, and the profile stored in the stub."""

    monkeypatch: pytest.MonkeyPatch
    secret_manager: SecretManagerStub
    test_ca: CertBundle
    variables: dict[str, str] = field(default_factory=dict)
    profile: dict[str, Any] = field(default_factory=dict)

    def set(self, **values: str | None) -> None:
        """Set (or, with None, remove) environment variables for the function."""
        for name, value in values.items():
            if value is None:
                self.monkeypatch.delenv(name, raising=False)
                self.variables.pop(name, None)
            else:
                self.monkeypatch.setenv(name, value)
                self.variables[name] = value

    def use(
        self,
        server: SmtpTestServer,
        *,
        username: str | None = SMTP_USER,
        password: str | None = CANARY_PASSWORD,
        sender: str | None = PROFILE_FROM,
        security: str | None = None,
    ) -> dict[str, Any]:
        """Store a profile for *server* as the newest version of ``SECRET_NAME``; returns it."""
        self.profile = server.profile(
            username=username, password=password, sender=sender, security=security
        )
        self.store(json.dumps(self.profile))
        return self.profile

    def store(self, payload: str | bytes) -> int:
        """Add *payload* as the newest version of ``SECRET_NAME`` (creating it); returns the
        version number."""
        return self.secret_manager.put_secret(SECRET_NAME, payload)

    def process_env(self) -> dict[str, str]:
        """The same configuration for a functions-framework subprocess."""
        return dict(self.variables)
