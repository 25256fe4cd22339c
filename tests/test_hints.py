"""Each hint fires for its reply: a scripted SMTP server plays Microsoft's, Google's and a generic
server's replies (and TLS faults), and the caller sees the hint in the 500/502/503 body and in
the log line that reports the failure (ERROR for 500/502, WARNING for 503).

Through the HTTP trigger in process (functions-framework's app), the profile in the Secret
Manager stand-in; OAuth2 rows get their tokens from the fake identity provider through the real
MSAL/google-auth. The reply texts are the providers' own.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest

from tests.support import pubsub
from tests.support.certs import CertBundle
from tests.support.checks import assert_no_secret, log_records
from tests.support.constants import CANARY_PASSWORD, SMTP_USER
from tests.support.env import SenderEnv
from tests.support.fake_idp import FakeIdP
from tests.support.fault_server import FaultServer, Mode, Script, Step, reply
from tests.support.oauth_accounts import entra_app, refresh_token_account

TENANT = "contoso.onmicrosoft.com"
MS_TAIL = " Visit https://aka.ms/smtp_auth_disabled for more information."
GOOGLE_CHALLENGE = base64.b64encode(
    json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}).encode()
).decode()
MESSAGE = {"to": "ops@example.com", "subject": "Disk 91% on db-1", "text": "db-1 is full"}


@dataclass(frozen=True)
class Case:
    """One reply (or fault) and the hint it must produce."""

    name: str
    script: Script
    status: int
    hint: str  # words the hint must contain
    provider: str | None = None
    mode: Mode = "ssl"
    security: str | None = None  # the profile's; default: what fits the mode
    login: Literal["password", "microsoft", "refresh_token", "none"] = "password"
    cert: Literal["trusted", "untrusted", "wrong-name"] = "trusted"
    settings: dict[str, str] = field(default_factory=dict)


def auth(code: int, text: str) -> Script:
    return Script(replies={"AUTH": reply(code, text)})


def at(point: str, step: Step) -> Script:
    return Script(replies={point: step})


OAUTH_EXTENSIONS = (
    "PIPELINING",
    "SIZE 35882577",
    "STARTTLS",
    "ENHANCEDSTATUSCODES",
    "AUTH LOGIN XOAUTH2",
)
GOOGLE_EXTENSIONS = ("SIZE 35882577", "8BITMIME", "AUTH LOGIN PLAIN XOAUTH2 PLAIN-CLIENTTOKEN "
                     "OAUTHBEARER XOAUTH", "ENHANCEDSTATUSCODES", "PIPELINING")  # fmt: skip

CASES = [
    # --- Microsoft 365 ----------------------------------------------------------------------
    Case("ms-basic-auth-off-5.7.30",
         auth(550, "5.7.30 Basic authentication is not supported for Client Submission."),
         500, "oauth2 flow microsoft", provider="microsoft365", mode="starttls"),
    Case("ms-5.7.139-tenant",
         auth(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
              "for the Tenant." + MS_TAIL),
         500, "Turn off SMTP AUTH protocol", provider="microsoft365", mode="starttls"),
    Case("ms-5.7.139-mailbox",
         auth(535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
              "for the Mailbox." + MS_TAIL),
         500, "SMTP AUTH is turned off for this mailbox", provider="microsoft365",
         mode="starttls"),
    Case("ms-5.7.139-basic-disabled",
         auth(535, "5.7.139 Authentication unsuccessful, basic authentication is disabled."),
         500, "Basic authentication (a password) is disabled", provider="microsoft365",
         mode="starttls"),
    Case("ms-5.7.139-security-defaults",
         auth(535, "5.7.139 Authentication unsuccessful, user is locked by your "
              "organization's security defaults policy. Contact your administrator."),
         500, "security defaults", provider="microsoft365", mode="starttls"),
    Case("ms-5.7.139-criteria",
         auth(535, "5.7.139 Authentication unsuccessful, the request did not meet the criteria "
              "to be authenticated successfully. Contact your administrator."),
         500, "Conditional Access", provider="microsoft365", mode="starttls"),
    Case("ms-5.7.139-credentials",
         auth(535, "5.7.139 Authentication unsuccessful, the user credentials were incorrect."),
         500, "refused the username or password", provider="microsoft365", mode="starttls"),
    Case("ms-5.7.139-bare",
         auth(535, "5.7.139 Authentication unsuccessful"),
         500, "(5.7.139: Basic authentication is off", provider="microsoft365", mode="starttls"),
    Case("ms-5.7.3-after-xoauth2",
         Script(replies={"AUTH": reply(535, "5.7.3 Authentication unsuccessful "
                                            "[SN4PR0501CA0054.namprd05.prod.outlook.com]")},
                extensions=OAUTH_EXTENSIONS),
         500, "New-ServicePrincipal", provider="microsoft365", mode="starttls",
         login="microsoft"),
    Case("ms-5.7.3-password",
         auth(535, "5.7.3 Authentication unsuccessful [BN0PR04CA0001.namprd04.prod.outlook.com]"),
         500, "Microsoft 365 refused the username or password (5.7.3)", provider="microsoft365",
         mode="starttls"),
    Case("ms-432-concurrent-connections",
         at("MAIL", reply(432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded "
                               "[Hostname=AM0PR02MB1234.eurprd02.prod.outlook.com]")),
         503, "3 concurrent SMTP connections per mailbox", provider="microsoft365",
         mode="starttls"),
    Case("ms-send-as-denied",
         at("after-dot", reply(554, "5.2.252 SendAsDenied; alerts@example.com not allowed to "
                                    "send as ops@other.example; STOREDRV.Submission.Exception:"
                                    "SendAsDeniedException.MapiExceptionSendAsDenied")),
         502, "Send As", provider="microsoft365", mode="starttls"),
    Case("ms-530-5.7.57",
         at("MAIL", reply(530, "5.7.57 Client not authenticated to send mail. [AM0PR02CA0001]")),
         500, "(5.7.57)", provider="microsoft365", mode="starttls", login="none"),
    # --- Gmail ---------------------------------------------------------------------------------
    Case("gmail-534-5.7.9",
         auth(534, "5.7.9 Application-specific password required. Learn more at "
              "https://support.google.com/mail/?p=InvalidSecondFactor"),
         500, "app password", provider="gmail"),
    Case("gmail-535-5.7.8-password",
         auth(535, "5.7.8 Username and Password not accepted. For more information, go to "
              "https://support.google.com/mail/?p=BadCredentials"),
         500, "a normal password is refused", provider="gmail"),
    Case("gmail-535-5.7.8-after-xoauth2",
         Script(replies={"AUTH": reply(334, GOOGLE_CHALLENGE),
                         "auth-final": reply(535, "5.7.8 Username and Password not accepted. "
                                                  "For more information, go to https://"
                                                  "support.google.com/mail/?p=BadCredentials")},
                extensions=GOOGLE_EXTENSIONS),
         500, "authorise the service account's client ID", provider="gmail",
         login="refresh_token"),
    # --- any server ----------------------------------------------------------------------------
    Case("421-throttling",
         at("MAIL", reply(421, "4.7.0 Try again later, closing connection.", then="close")),
         503, "throttling"),
    Case("530-at-mail-without-username",
         at("MAIL", reply(530, "5.7.0 Authentication Required.")),
         500, "wants a signed-in client before MAIL", login="none"),
    Case("ehlo-refused-helo-only",
         Script(replies={"EHLO": reply(502, "5.5.2 Error: command not recognized")}),
         500, "refused EHLO and speaks only old-style SMTP"),
    Case("ehlo-and-helo-refused",
         Script(replies={"EHLO": reply(550, "5.7.1 Go away"), "HELO": reply(550, "5.7.1 No")}),
         502, "refused EHLO and HELO"),
    # --- TLS and ports -------------------------------------------------------------------------
    Case("ssl-on-a-starttls-port", Script(), 503, "answered in plaintext, not TLS",
         mode="starttls", security="ssl"),
    Case("starttls-on-an-implicit-tls-port", Script(), 503, "set security ssl",
         mode="ssl", security="starttls", settings={"SMTP_TIMEOUT_S": "1"}),
    Case("certificate-for-another-name", Script(), 503, "issued for another name",
         cert="wrong-name"),
    Case("self-signed-or-unknown-ca", Script(), 503, "SMTP_CA_FILE", cert="untrusted"),
    Case("no-starttls-offered", Script(), 503, "does not offer STARTTLS", mode="plain",
         security="starttls"),
]  # fmt: skip


@pytest.fixture(scope="module")
def wrong_name_certs(tmp_path_factory: pytest.TempPathFactory, test_ca: CertBundle) -> CertBundle:
    return test_ca.reissue(tmp_path_factory.mktemp("wrong-name"), "smtp.other.example")


def _oauth2(kind: str, idp: FakeIdP) -> dict[str, Any]:
    if kind == "microsoft":
        return entra_app(idp, SMTP_USER, tenant=TENANT)
    return refresh_token_account(idp, SMTP_USER)


@pytest.fixture
def serve(
    sender_env: SenderEnv,
    test_ca: CertBundle,
    untrusted_ca: CertBundle,
    wrong_name_certs: CertBundle,
    idp: FakeIdP,
) -> Iterator[Any]:
    servers: list[FaultServer] = []

    def start(case: Case) -> tuple[FaultServer, list[str]]:
        certs = {"trusted": test_ca, "untrusted": untrusted_ca, "wrong-name": wrong_name_certs}
        server = FaultServer(
            case.script,
            mode=case.mode,
            certs=certs[case.cert] if case.mode != "plain" else None,
            users={SMTP_USER: CANARY_PASSWORD},
        ).start()
        servers.append(server)
        profile: dict[str, Any] = server.profile(security=case.security)
        secrets = [CANARY_PASSWORD]
        if case.provider:
            profile["provider"] = case.provider
        if case.login == "password":
            profile.update(username=SMTP_USER, password=CANARY_PASSWORD)
        elif case.login != "none":
            oauth2 = _oauth2(case.login, idp)
            profile.update(username=SMTP_USER, oauth2=oauth2)
            secrets += [oauth2["client_secret"], oauth2.get("refresh_token", "x" * 20)]
        sender_env.store(json.dumps(profile))
        sender_env.set(OAUTH_CA_FILE=str(idp.ca_file), SEND_DEADLINE_S="8", **case.settings)
        return server, secrets

    yield start
    for server in servers:
        server.stop()


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_each_hint_fires_for_its_reply(
    case: Case, serve: Any, http_client: Any, idp: FakeIdP, capfd: pytest.CaptureFixture[str]
) -> None:
    server, secrets = serve(case)
    issued_before = len(idp.issued())
    response = http_client.post("/", json=MESSAGE)
    out, err = capfd.readouterr()

    assert response.status_code == case.status, response.get_data(as_text=True)
    body = response.get_json()
    assert case.hint in body["hint"], body
    assert "\n" not in body["hint"]
    [line] = [r for r in log_records(out) if r.get("message") == "email not sent"]
    assert line["hint"] == body["hint"]
    assert line["severity"] == ("WARNING" if case.status == 503 else "ERROR")
    assert server.delivered == []
    tokens = [t.value for t in idp.issued()[issued_before:]]
    assert_no_secret(out, err, response.get_data(as_text=True), secrets=[*secrets, *tokens])
    # Credentials only ever inside TLS, whatever the reply.
    assert all(attempt.encrypted for attempt in server.auth_attempts)


def test_the_error_challenge_is_answered_and_a_just_fetched_token_is_not_fetched_again(
    serve: Any, http_client: Any, idp: FakeIdP
) -> None:
    """The 334 error challenge is answered with an empty line (XOAUTH2) to get the final reply.
    The refused token was fetched for this very send, so a fresh one would be refused alike: no
    second token, no second login; the secret re-read finds it unchanged: 500."""
    case = next(c for c in CASES if c.name == "gmail-535-5.7.8-after-xoauth2")
    server, _ = serve(case)
    before = idp.token_requests("refresh_token")
    response = http_client.post("/", json=MESSAGE)
    assert response.status_code == 500
    assert [a.mechanism for a in server.auth_attempts] == ["XOAUTH2"]
    assert [s.auth_answers for s in server.sessions if s.auth_answers] == [[""]]
    assert idp.token_requests("refresh_token") == before + 1


def test_the_hint_is_in_the_pubsub_error_line_too(
    serve: Any, event_client: Any, capfd: pytest.CaptureFixture[str]
) -> None:
    serve(next(c for c in CASES if c.name == "ms-basic-auth-off-5.7.30"))
    response = pubsub.post_event(event_client, MESSAGE)
    out, _ = capfd.readouterr()
    assert response.status_code == 500  # misconfigured: raised for redelivery
    [line] = [r for r in log_records(out) if r.get("message") == "email not sent"]
    assert line["severity"] == "ERROR"
    assert "oauth2 flow microsoft" in line["hint"]
