"""Fixtures shared by the behaviour tests (real SMTP server, real Secret Manager client).

Fixtures (stable names; other tiers may use them):

- ``test_ca`` / ``untrusted_ca`` (session): `tests.support.certs.CertBundle`.
- ``smtp_ssl`` / ``smtp_starttls`` / ``smtp_plain``: a running
  `tests.support.smtp_server.SmtpTestServer` (implicit TLS / STARTTLS / no STARTTLS but AUTH
  advertised in clear) with user ``SMTP_USER`` whose password is ``CANARY_PASSWORD``
  (`tests.support.constants`).
- ``secret_manager``: a running `tests.support.secret_manager_stub.SecretManagerStub`.
- ``sender_env``: a `SenderEnv` that has set the process environment for in-process calls
  (``SMTP_SECRET``, ``SECRET_MANAGER_EMULATOR_HOST``, ``GOOGLE_CLOUD_PROJECT``, ``SMTP_CA_FILE``,
  ``SMTP_TIMEOUT_S=5``, offline gcloud). Call ``sender_env.use(server)`` to store a profile
  pointing at *server* in the stub; ``sender_env.process_env()`` gives the same variables for a
  functions-framework subprocess.
- ``server``: ``smtp_ssl`` with its profile already stored (``sender_env.use(smtp_ssl)``), for
  tests that need a working setup and change only what they are about.
- ``http_client`` / ``event_client``: Flask test clients of ``send_http`` / ``send_pubsub`` built
  by ``functions_framework.create_app`` from ``main.py``.
- ``fake_idp`` (session): a running `tests.support.fake_idp.FakeIdP` (Entra, Google token,
  IAM signBlob, metadata server, introspection; its CA is ``fake_idp.ca_file``, the variables a
  function process needs are ``fake_idp.process_env()``). Faults set by a test are cleared after
  it by ``idp``, the per-test view of the same server.
- autouse: ``sender.instance.reset()`` before and after every test (warm-instance state).

Hypothesis profiles (``ci`` by default, ``explore`` via ``HYPOTHESIS_PROFILE``) are registered
here, from `tests.support.hypothesis_profiles`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from sender.config import variable_names
from tests.support import hypothesis_profiles
from tests.support.certs import CertBundle, make_ca, make_untrusted_ca
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.emulators import Emulator, run_for_session, startup_lines
from tests.support.env import SenderEnv, function_env
from tests.support.fake_idp import FakeIdP
from tests.support.ff_process import MAIN_PY
from tests.support.loopback import OFFLINE_ENV
from tests.support.secret_manager_stub import SecretManagerStub
from tests.support.smtp_server import SmtpMode, SmtpTestServer

hypothesis_profiles.register()


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    """The CA the function is told to trust (``SMTP_CA_FILE``)."""
    return make_ca(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="session")
def untrusted_ca(tmp_path_factory: pytest.TempPathFactory) -> CertBundle:
    """A CA nobody trusts: a server using it must be refused."""
    return make_untrusted_ca(tmp_path_factory.mktemp("untrusted-ca"))


def _server(mode: SmtpMode, certs: CertBundle) -> Iterator[SmtpTestServer]:
    with SmtpTestServer(mode, certs=certs, users={SMTP_USER: CANARY_PASSWORD}) as server:
        yield server


@pytest.fixture
def smtp_ssl(test_ca: CertBundle) -> Iterator[SmtpTestServer]:
    """Implicit-TLS server (465 style)."""
    yield from _server(SmtpMode.SSL, test_ca)


@pytest.fixture
def smtp_starttls(test_ca: CertBundle) -> Iterator[SmtpTestServer]:
    """STARTTLS server (587 style); AUTH only after TLS."""
    yield from _server(SmtpMode.STARTTLS, test_ca)


@pytest.fixture
def smtp_plain(test_ca: CertBundle) -> Iterator[SmtpTestServer]:
    """No STARTTLS offered, AUTH advertised in clear (a trap: the client must not use it)."""
    yield from _server(SmtpMode.PLAIN, test_ca)


@pytest.fixture(scope="session")
def fake_idp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FakeIdP]:
    """One fake identity provider for the session (RSA keys and a CA are slow to make)."""
    with FakeIdP(tmp_path_factory.mktemp("fake-idp")) as idp:
        yield idp


@pytest.fixture
def idp(fake_idp: FakeIdP) -> Iterator[FakeIdP]:
    """The session's fake IdP, its faults and hangs cleared after the test."""
    yield fake_idp
    fake_idp.clear_faults()
    fake_idp.token_lifetime_s = 3600.0


@pytest.fixture
def secret_manager() -> Iterator[SecretManagerStub]:
    """A fresh plaintext-gRPC Secret Manager."""
    with SecretManagerStub() as stub:
        yield stub


@pytest.fixture
def sender_env(
    monkeypatch: pytest.MonkeyPatch,
    secret_manager: SecretManagerStub,
    test_ca: CertBundle,
    tmp_path: Path,
) -> SenderEnv:
    """Environment wired to the Secret Manager stub and the test CA (no profile stored yet)."""
    for name in variable_names():
        monkeypatch.delenv(name, raising=False)
    env = SenderEnv(monkeypatch, secret_manager, test_ca)
    env.set(
        **function_env(
            secret_manager=secret_manager.address,
            ca_file=test_ca.ca_pem,
            gcloud_config=tmp_path / "gcloud",
        ),
        **OFFLINE_ENV,
    )
    return env


@pytest.fixture
def server(smtp_ssl: SmtpTestServer, sender_env: SenderEnv) -> SmtpTestServer:
    """A working server and profile: whatever a test then sees fail, its own change caused."""
    sender_env.use(smtp_ssl)
    return smtp_ssl


def _reset_sender() -> None:
    from sender import instance

    instance.reset()


@pytest.fixture(autouse=True)
def _fresh_instance() -> Iterator[None]:
    """Every test starts on a cold instance (no cached profile, client or ledger)."""
    _reset_sender()
    yield
    _reset_sender()


def _create_app() -> Callable[..., Any]:
    """functions-framework's ``create_app`` (untyped upstream; typed here once)."""
    import functions_framework

    create: Callable[..., Any] = functions_framework.create_app
    return create


@pytest.fixture
def http_client() -> Any:
    """Flask test client of ``send_http`` as functions-framework serves it."""
    app = _create_app()(target="send_http", source=str(MAIN_PY))
    return app.test_client()


@pytest.fixture
def event_client() -> Any:
    """Flask test client of ``send_pubsub`` (CloudEvent signature)."""
    app = _create_app()(target="send_pubsub", source=str(MAIN_PY), signature_type="cloudevent")
    return app.test_client()


# --- gcloud emulators (session-wide; skipped, or under CI=true failed, when not installed) -------


@pytest.fixture(scope="session")
def firestore_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from run_for_session("firestore", tmp_path_factory.mktemp("firestore-emulator"))


@pytest.fixture(scope="session")
def pubsub_emulator(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Emulator]:
    yield from run_for_session("pubsub", tmp_path_factory.mktemp("pubsub-emulator"))


@pytest.fixture
def firestore_env(firestore_emulator: Emulator, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The emulator's variables in this process's environment (the client reads them)."""
    env = {**firestore_emulator.env(), "GOOGLE_CLOUD_PROJECT": "demo-test"}
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return env


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    for line in startup_lines():
        terminalreporter.write_line(line)
