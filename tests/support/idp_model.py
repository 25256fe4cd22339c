"""What the fake identity provider knows and answers with: its endpoints and flows, the
registered apps, accounts and tokens, and the shapes of its replies (see `tests.support.fake_idp`).
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import unquote, urlsplit

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa

Endpoint = Literal[
    "entra_discovery",
    "entra_token",
    "google_token",
    "sign_blob",
    "sign_jwt",
    "metadata",
    "metadata_token",
    "introspect",
]
# The token flows a request is counted under (the function's three, plus its own identity).
TokenFlow = Literal["microsoft", "google_service_account", "refresh_token", "metadata"]

GOOGLE_TOKEN_URL = "https://oauth2.googleapis.com/token"
GOOGLE_MAIL_SCOPE = "https://mail.google.com/"
MICROSOFT_SCOPE = "https://outlook.office365.com/.default"
CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
PUBLIC_HOSTS = (
    "iamcredentials.googleapis.com",
    "oauth2.googleapis.com",
    "login.microsoftonline.com",
)
# Scopes whose tokens the mail server (via introspection) accepts.
MAIL_SCOPES = frozenset({GOOGLE_MAIL_SCOPE, MICROSOFT_SCOPE})
ENTRA_TOKEN_CHARS = 2400
JWT_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
HANG_LIMIT_S = 120.0
# Entra's error numbers for the refusals it plays (the AADSTS codes users search for).
AADSTS = {
    "invalid_client": 7000215,
    "unauthorized_client": 700016,
    "invalid_scope": 1002012,
    "invalid_grant": 50173,
    "invalid_request": 900144,
}


# --- what the IdP knows -----------------------------------------------------------------------


@dataclass
class EntraApp:
    tenant: str
    client_id: str
    client_secret: str
    # The mailbox Exchange lets this app send as (Add-MailboxPermission in real life).
    mailbox: str
    tenant_id: str = field(default_factory=lambda: str(uuid.uuid4()))


@dataclass
class ServiceAccount:
    email: str
    key: rsa.RSAPrivateKey
    key_id: str
    delegated_scopes: frozenset[str]
    # Identities allowed to sign as this account (roles/iam.serviceAccountTokenCreator).
    token_creators: set[str] = field(default_factory=set)

    def key_info(self, token_uri: str = GOOGLE_TOKEN_URL) -> dict[str, str]:
        """The JSON key file Google would let you download for this account."""
        pem = self.key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        ).decode("ascii")
        return {
            "type": "service_account",
            "project_id": "fake-project",
            "private_key_id": self.key_id,
            "private_key": pem,
            "client_email": self.email,
            "client_id": str(abs(hash(self.email)) % 10**21),
            "auth_uri": "https://accounts.google.com/o/oauth2/auth",
            "token_uri": token_uri,
        }


@dataclass
class RefreshGrant:
    client_id: str
    client_secret: str
    user: str
    scopes: frozenset[str]
    revoked: bool = False


@dataclass
class IssuedToken:
    """A token the IdP handed out (``value`` is the bearer token itself)."""

    value: str = field(repr=False)
    flow: TokenFlow
    subject: str  # the mailbox (or, for "metadata", the identity) it speaks for
    scopes: frozenset[str]
    expires_at: float
    client: str = ""
    revoked: bool = False

    def live(self, now: float) -> bool:
        return not self.revoked and now < self.expires_at


@dataclass
class Hit:
    """One request the IdP answered (or hung on)."""

    endpoint: Endpoint
    flow: TokenFlow | None
    status: int


@dataclass
class Fault:
    kind: Literal["fail", "refuse", "hang"]
    status: int = 0
    code: str = ""
    times: int | None = None  # None: every time

    def take(self) -> bool:
        if self.times is None:
            return True
        if self.times <= 0:
            return False
        self.times -= 1
        return True


@dataclass
class Reply:
    status: int
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


def oauth_error(code: str, description: str, *, entra: bool = False) -> Reply:
    status = 401 if code == "invalid_client" else 400
    body: dict[str, Any] = {"error": code, "error_description": description}
    if entra and code in AADSTS:
        body["error_description"] = f"AADSTS{AADSTS[code]}: {description}"
        body["error_codes"] = [AADSTS[code]]
    return Reply(status, body)


def google_api_error(status: int, state: str, message: str) -> Reply:
    return Reply(status, {"error": {"code": status, "message": message, "status": state}})


def metadata_route(method: str, path: str) -> tuple[Endpoint, str] | None:
    if method != "GET":
        return None
    local = urlsplit(path).path
    return ("metadata_token" if local.endswith("/token") else "metadata"), local.lstrip("/")


def route(method: str, path: str) -> tuple[Endpoint, str] | None:  # noqa: PLR0911
    """(endpoint, argument) for a request path on the HTTPS listener, or None."""
    segments = [unquote(s) for s in urlsplit(path).path.split("/") if s]
    if method == "GET" and segments[1:] == ["v2.0", ".well-known", "openid-configuration"]:
        return "entra_discovery", segments[0]
    if method != "POST":
        return None
    if segments[1:] == ["oauth2", "v2.0", "token"]:
        return "entra_token", segments[0]
    if segments == ["token"]:
        return "google_token", ""
    if segments == ["introspect"]:
        return "introspect", ""
    if len(segments) == 5 and segments[:4] == ["v1", "projects", "-", "serviceAccounts"]:
        account, _, verb = segments[4].rpartition(":")
        if verb in ("signBlob", "signJwt"):
            return ("sign_blob" if verb == "signBlob" else "sign_jwt"), account
    return None


def flow_of(endpoint: Endpoint, form: Mapping[str, str]) -> TokenFlow | None:
    if endpoint == "entra_token":
        return "microsoft"
    if endpoint == "metadata_token":
        return "metadata"
    if endpoint == "google_token":
        grant = form.get("grant_type")
        if grant == JWT_GRANT:
            return "google_service_account"
        if grant == "refresh_token":
            return "refresh_token"
    return None
