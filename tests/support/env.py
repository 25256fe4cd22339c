"""The function's environment: `function_env` (the variables every tier wires it with) and
`SenderEnv` (that environment for one in-process test; see the ``sender_env`` fixture)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import CertBundle
from tests.support.constants import CANARY_PASSWORD, PROFILE_FROM, SECRET_NAME, SMTP_USER
from tests.support.pubsub import PROJECT
from tests.support.secret_manager_stub import SecretManagerStub
from tests.support.smtp_server import SmtpTestServer


def function_env(
    *,
    secret_manager: str,
    ca_file: Path,
    gcloud_config: Path,
    smtp_secret: str = SECRET_NAME,
    smtp_timeout_s: str = "5",
) -> dict[str, str]:
    """The function's variables: its profile is *smtp_secret* in the Secret Manager stand-in at
    *secret_manager* (``host:port``), *ca_file* is trusted for SMTP, and gcloud reads a fresh
    config directory (*gcloud_config*, created here) instead of the developer's."""
    gcloud_config.mkdir(parents=True, exist_ok=True)
    return {
        "SMTP_SECRET": smtp_secret,
        "SECRET_MANAGER_EMULATOR_HOST": secret_manager,
        "GOOGLE_CLOUD_PROJECT": PROJECT,
        "SMTP_CA_FILE": str(ca_file),
        "SMTP_TIMEOUT_S": smtp_timeout_s,
        "CLOUDSDK_CONFIG": str(gcloud_config),
    }


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
