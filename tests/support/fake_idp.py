"""A fake identity provider on loopback that the real ``msal`` and ``google-auth`` talk to as is.

It plays, on one HTTPS port (certificate from a trustme CA made at start, issued for 127.0.0.1,
localhost and the public names below):

- Entra ID: ``GET /<tenant>/v2.0/.well-known/openid-configuration`` (MSAL's discovery) and
  ``POST /<tenant>/oauth2/v2.0/token`` (client credentials: client id, secret and the scope
  ``https://outlook.office365.com/.default`` checked; ~2.4 KB RS256 JWTs like real Entra tokens).
- Google's token endpoint ``POST /token``: the JWT-bearer grant (RS256 signature checked against
  the service account's public key, ``aud`` Google's token URL or ours, ``sub`` recorded, the
  delegated scope checked) and the refresh grant (client and refresh token checked).
- IAM Credentials ``POST /v1/projects/-/serviceAccounts/<sa>:signBlob`` (what google-auth's
  ``iam.Signer`` calls) and ``:signJwt``: the caller's bearer token must be one the metadata
  server issued, to an identity allowed to sign as ``<sa>`` (what
  ``roles/iam.serviceAccountTokenCreator`` grants).
- RFC 7662 introspection ``POST /introspect`` (HTTP Basic client credentials) for Dovecot's
  ``oauth2`` passdb: ``{"active": true, "username": <mailbox>}`` for a live mail token.

and, on a plain-HTTP port, a GCE metadata server (``Metadata-Flavor: Google``): the function's
own identity and its token, for keyless signing. A `ConnectProxy` routes the fixed public hosts
(``iamcredentials.googleapis.com``, ``oauth2.googleapis.com``, ``login.microsoftonline.com``) to
the HTTPS port, so the libraries' default URLs work too. `process_env` gives a function process
every variable it needs.

Controls (thread-safe, while running): `fail` (HTTP 500/503), `refuse` (an OAuth2 error code),
`hang` (no answer until `release` or stop), each for the next *times* requests to one endpoint
or all of them; `revoke`/`expire` a token; `token_lifetime_s`; `deny_signing`. Records:
`count`/`token_requests` per endpoint and flow, `issued` tokens, `jwt_subjects`.
Nothing is ever logged: the server's request log is off (it would print tokens).
"""

from __future__ import annotations

import base64
import contextlib
import json
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self
from urllib.parse import parse_qs

from cryptography.hazmat.primitives.asymmetric import rsa

from tests.support import jwt_rs256
from tests.support.certs import CertBundle, make_ca
from tests.support.connect_proxy import ConnectProxy
from tests.support.idp_model import (
    CLOUD_PLATFORM_SCOPE,
    ENTRA_TOKEN_CHARS,
    GOOGLE_MAIL_SCOPE,
    GOOGLE_TOKEN_URL,
    HANG_LIMIT_S,
    JWT_GRANT,
    MAIL_SCOPES,
    MICROSOFT_SCOPE,
    PUBLIC_HOSTS,
    Endpoint,
    EntraApp,
    Fault,
    Hit,
    IssuedToken,
    RefreshGrant,
    Reply,
    ServiceAccount,
    TokenFlow,
    flow_of,
    google_api_error,
    metadata_route,
    oauth_error,
    route,
)
from tests.support.lifecycle import StartStop

__all__ = ["PUBLIC_HOSTS", "EntraApp", "FakeIdP", "IssuedToken", "ServiceAccount", "TokenFlow"]

# --- the server -------------------------------------------------------------------------------


class FakeIdP(StartStop):
    """See the module docstring. ``with FakeIdP(tmp_dir) as idp: ...``"""

    def __init__(self, directory: Path, *, token_lifetime_s: float = 3600.0) -> None:
        self.directory = directory
        self.token_lifetime_s = token_lifetime_s
        self.runtime_identity = "function-runtime@fake-project.iam.gserviceaccount.com"
        self.introspection_client = ("dovecot", secrets.token_urlsafe(18))
        self._lock = threading.Lock()
        self._released = threading.Event()
        self._apps: dict[tuple[str, str], EntraApp] = {}
        self._accounts: dict[str, ServiceAccount] = {}
        self._refresh: dict[str, RefreshGrant] = {}
        self._tokens: dict[str, IssuedToken] = {}
        self._faults: dict[Endpoint, Fault] = {}
        self._hits: list[Hit] = []
        self.jwt_subjects: list[str | None] = []
        self._certs: CertBundle | None = None
        self._signing_key: rsa.RSAPrivateKey | None = None
        self._https: _Server | None = None
        self._metadata: _Server | None = None
        self._threads: list[threading.Thread] = []
        self.proxy: ConnectProxy | None = None

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        self.directory.mkdir(parents=True, exist_ok=True)
        ca = make_ca(self.directory, name="fake-idp")
        self._certs = ca.reissue(self.directory, "127.0.0.1", "localhost", *PUBLIC_HOSTS)
        self.ca_file = ca.ca_pem
        self._signing_key = jwt_rs256.new_key()
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(str(self._certs.server_chain_pem), str(self._certs.server_key_pem))
        self._released.clear()
        self._https = _Server(self, context)
        self._metadata = _Server(self, None)
        for server in (self._https, self._metadata):
            thread = threading.Thread(
                target=server.serve_forever,
                kwargs={"poll_interval": 0.1},
                name="fake-idp",
                daemon=True,
            )
            thread.start()
            self._threads.append(thread)
        self.proxy = ConnectProxy(dict.fromkeys(PUBLIC_HOSTS, ("127.0.0.1", self.port))).start()
        return self

    def stop(self) -> None:
        self._released.set()  # let hanging handlers go
        if self.proxy is not None:
            self.proxy.stop()
            self.proxy = None
        for server in (self._https, self._metadata):
            if server is not None:
                server.shutdown()
                server.server_close()
        for thread in self._threads:
            thread.join(timeout=5)
        self._threads.clear()
        self._https = self._metadata = None

    # -- addresses ---------------------------------------------------------------------------
    @property
    def port(self) -> int:
        assert self._https is not None, "not started"
        return int(self._https.server_address[1])

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.port}"

    @property
    def google_token_uri(self) -> str:
        return f"{self.url}/token"

    def authority(self, tenant: str) -> str:
        """An Entra authority URL on this IdP (MSAL's ``authority``)."""
        return f"{self.url}/{tenant}"

    @property
    def introspection_url(self) -> str:
        return f"{self.url}/introspect"

    @property
    def metadata_host(self) -> str:
        assert self._metadata is not None, "not started"
        return f"127.0.0.1:{self._metadata.server_address[1]}"

    def process_env(self) -> dict[str, str]:
        """Variables a function process needs to get every flow's token from this IdP:
        its CA, the proxy for Google's fixed hosts, and the metadata server as its own identity
        (these override `tests.support.loopback.OFFLINE_ENV`'s dead metadata address)."""
        assert self.proxy is not None, "not started"
        return {
            "OAUTH_CA_FILE": str(self.ca_file),
            "HTTPS_PROXY": self.proxy.url,
            "https_proxy": self.proxy.url,
            "NO_PROXY": "127.0.0.1,localhost",
            "no_proxy": "127.0.0.1,localhost",
            "GCE_METADATA_HOST": self.metadata_host,
            "GCE_METADATA_IP": self.metadata_host,
            "GCE_METADATA_ROOT": self.metadata_host,
            "NO_GCE_CHECK": "false",
        }

    # -- registry ----------------------------------------------------------------------------
    def add_entra_app(
        self, tenant: str, client_id: str, client_secret: str, mailbox: str
    ) -> EntraApp:
        app = EntraApp(tenant.lower(), client_id, client_secret, mailbox)
        with self._lock:
            self._apps[(app.tenant, client_id)] = app
        return app

    def set_entra_secret(self, tenant: str, client_id: str, client_secret: str) -> None:
        """Rotate an app's client secret (the old one is refused from now on)."""
        with self._lock:
            self._apps[(tenant.lower(), client_id)].client_secret = client_secret

    def add_service_account(
        self, email: str, *, delegated_scopes: Iterable[str] = (GOOGLE_MAIL_SCOPE,)
    ) -> ServiceAccount:
        """A service account whose key the IdP knows; DWD authorised for *delegated_scopes*.
        ``.key_info()`` is its downloadable key; for keyless use, `allow_signing` instead."""
        account = ServiceAccount(
            email, jwt_rs256.new_key(), secrets.token_hex(20), frozenset(delegated_scopes)
        )
        with self._lock:
            self._accounts[email.lower()] = account
        return account

    def allow_signing(self, account: str, identity: str | None = None) -> None:
        """Grant *identity* (default: the function's own) tokenCreator on *account*."""
        with self._lock:
            self._accounts[account.lower()].token_creators.add(identity or self.runtime_identity)

    def deny_signing(self, account: str) -> None:
        with self._lock:
            self._accounts[account.lower()].token_creators.clear()

    def add_refresh_token(
        self,
        client_id: str,
        client_secret: str,
        user: str,
        *,
        scopes: Iterable[str] = (GOOGLE_MAIL_SCOPE,),
    ) -> str:
        """Register a refresh token for *user*; returns it."""
        value = "1//" + secrets.token_urlsafe(48)
        with self._lock:
            self._refresh[value] = RefreshGrant(client_id, client_secret, user, frozenset(scopes))
        return value

    def revoke_refresh_token(self, value: str) -> None:
        with self._lock:
            self._refresh[value].revoked = True

    # -- controls ----------------------------------------------------------------------------
    def fail(self, endpoint: Endpoint, status: int = 503, *, times: int | None = None) -> None:
        """Answer *endpoint* with HTTP *status* (500/503...) instead of working."""
        with self._lock:
            self._faults[endpoint] = Fault("fail", status=status, times=times)

    def refuse(self, endpoint: Endpoint, code: str, *, times: int | None = None) -> None:
        """Answer *endpoint* with the OAuth2 error *code* (``invalid_client``, ...)."""
        with self._lock:
            self._faults[endpoint] = Fault("refuse", code=code, times=times)

    def hang(self, endpoint: Endpoint, *, times: int | None = None) -> None:
        """Read the request, then answer nothing until `release` (or stop)."""
        with self._lock:
            self._released.clear()
            self._faults[endpoint] = Fault("hang", times=times)

    def release(self) -> None:
        """End every hang: those requests' connections are closed without an answer."""
        with self._lock:
            self._faults = {k: f for k, f in self._faults.items() if f.kind != "hang"}
        self._released.set()

    def clear_faults(self) -> None:
        self.release()
        with self._lock:
            self._faults.clear()

    def revoke(self, value: str) -> None:
        """The token is refused from now on (introspection says inactive; IAM refuses it)."""
        with self._lock:
            self._tokens[value].revoked = True

    def expire(self, value: str) -> None:
        with self._lock:
            self._tokens[value].expires_at = time.time() - 1

    def revoke_all(self, flow: TokenFlow | None = None) -> None:
        with self._lock:
            for token in self._tokens.values():
                if flow is None or token.flow == flow:
                    token.revoked = True

    # -- records -----------------------------------------------------------------------------
    def count(self, endpoint: Endpoint | None = None, *, flow: TokenFlow | None = None) -> int:
        with self._lock:
            return sum(
                1
                for h in self._hits
                if (endpoint is None or h.endpoint == endpoint) and (flow is None or h.flow == flow)
            )

    def token_requests(self, flow: TokenFlow) -> int:
        """Token requests of *flow* received (answered or not)."""
        return self.count(flow=flow)

    def issued(self, flow: TokenFlow | None = None) -> list[IssuedToken]:
        with self._lock:
            return [t for t in self._tokens.values() if flow is None or t.flow == flow]

    def reset_records(self) -> None:
        with self._lock:
            self._hits.clear()
            self.jwt_subjects.clear()

    # -- request handling (called from handler threads) --------------------------------------
    def _record(self, endpoint: Endpoint, flow: TokenFlow | None, status: int) -> None:
        with self._lock:
            self._hits.append(Hit(endpoint, flow, status))

    def _fault_for(self, endpoint: Endpoint) -> Fault | None:
        with self._lock:
            fault = self._faults.get(endpoint)
            return fault if fault is not None and fault.take() else None

    def _issue(
        self, flow: TokenFlow, subject: str, scopes: frozenset[str], value: str, client: str = ""
    ) -> Reply:
        lifetime = self.token_lifetime_s
        token = IssuedToken(value, flow, subject, scopes, time.time() + lifetime, client)
        with self._lock:
            self._tokens[value] = token
        body: dict[str, Any] = {
            "access_token": value,
            "expires_in": int(lifetime),
            "token_type": "Bearer",
        }
        if flow == "microsoft":
            body["ext_expires_in"] = int(lifetime)
        if flow == "refresh_token":
            body["scope"] = " ".join(sorted(scopes))
        return Reply(200, body)

    def _entra_jwt(self, app: EntraApp) -> str:
        """An app-only Exchange token shaped like Entra's (claims and ~2.4 KB size)."""
        assert self._signing_key is not None
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": "https://outlook.office365.com",
            "iss": f"https://sts.windows.net/{app.tenant_id}/",
            "iat": now,
            "nbf": now,
            "exp": now + int(self.token_lifetime_s),
            "aio": "",
            "app_displayname": "smtp-sender",
            "appid": app.client_id,
            "appidacr": "1",
            "idp": f"https://sts.windows.net/{app.tenant_id}/",
            "idtyp": "app",
            "oid": str(uuid.uuid4()),
            "rh": "0.A" + secrets.token_urlsafe(60),
            "roles": ["SMTP.SendAsApp"],
            "sid": str(uuid.uuid4()),
            "sub": str(uuid.uuid4()),
            "tid": app.tenant_id,
            "uti": secrets.token_urlsafe(16),
            "ver": "1.0",
            "wids": ["0997a1d0-0d1d-4acb-b408-d5ca73121e90"],
            "xms_idrel": "7 12",
        }
        # Real tokens carry opaque claims (aio, xms_*) that make them ~2.4 KB; pad "aio" to that.
        bare = len(jwt_rs256.encode(claims, self._signing_key, "k1"))
        claims["aio"] = secrets.token_urlsafe(max((ENTRA_TOKEN_CHARS - bare) * 3 // 4 * 3 // 4, 1))
        return jwt_rs256.encode(claims, self._signing_key, "k1")

    def handle(
        self,
        metadata: bool,
        request: tuple[str, str, str],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Reply:
        """Route one request (*request*: method, host, path; *metadata*: it came to the metadata
        listener); records it and applies faults."""
        method, host, path = request
        found = metadata_route(method, path) if metadata else route(method, path)
        if found is None:
            return Reply(404, {"error": "not_found"})
        endpoint, arg = found
        form = {k: v[0] for k, v in parse_qs(body.decode("utf-8", "replace")).items()}
        flow = flow_of(endpoint, form)
        fault = self._fault_for(endpoint)
        if fault is not None and fault.kind == "hang":
            self._record(endpoint, flow, 0)
            self._released.wait(HANG_LIMIT_S)
            return Reply(0, None)
        if fault is not None and fault.kind == "fail":
            reply = Reply(
                fault.status,
                {"error": "server_error" if fault.status == 500 else "temporarily_unavailable"},
            )
        elif fault is not None:
            reply = oauth_error(
                fault.code, f"{fault.code} (injected by the test)", entra=endpoint == "entra_token"
            )
        else:
            reply = self._answer(
                endpoint=endpoint, arg=arg, host=host, headers=headers, body=body, form=form
            )
        self._record(endpoint, flow, reply.status)
        return reply

    def _answer(
        self,
        *,
        endpoint: Endpoint,
        arg: str,
        host: str,
        headers: Mapping[str, str],
        body: bytes,
        form: dict[str, str],
    ) -> Reply:
        if endpoint == "entra_discovery":
            return self._entra_discovery(arg, host)
        if endpoint == "entra_token":
            return self._entra_token(arg, form)
        if endpoint == "google_token":
            return self._google_token(host, form)
        if endpoint in ("sign_blob", "sign_jwt"):
            return self._sign(endpoint, arg, headers, body)
        if endpoint == "introspect":
            return self._introspect(headers, form)
        return self._metadata_answer(arg, headers)

    # Entra ----------------------------------------------------------------------------------
    def _entra_discovery(self, tenant: str, host: str) -> Reply:
        with self._lock:
            known = any(app.tenant == tenant.lower() for app in self._apps.values())
        if not known:
            return Reply(
                400,
                {
                    "error": "invalid_tenant",
                    "error_description": f"AADSTS90002: Tenant '{tenant}' not found.",
                },
            )
        base = f"https://{host}/{tenant}"
        return Reply(
            200,
            {
                "token_endpoint": f"{base}/oauth2/v2.0/token",
                "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
                "device_authorization_endpoint": f"{base}/oauth2/v2.0/devicecode",
                "issuer": f"https://{host}/{tenant}/v2.0",
                "jwks_uri": f"{base}/discovery/v2.0/keys",
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                    "private_key_jwt",
                ],
                "response_types_supported": ["code", "id_token", "code id_token", "token id_token"],
                "scopes_supported": ["openid", "profile", "email", "offline_access"],
                "tenant_region_scope": "EU",
            },
        )

    def _entra_token(self, tenant: str, form: dict[str, str]) -> Reply:
        if form.get("grant_type") != "client_credentials":
            return oauth_error("unsupported_grant_type", "only client_credentials here", entra=True)
        with self._lock:
            app = self._apps.get((tenant.lower(), form.get("client_id", "")))
        if app is None:
            return oauth_error(
                "unauthorized_client", "Application was not found in the directory.", entra=True
            )
        if not secrets.compare_digest(form.get("client_secret", ""), app.client_secret):
            return oauth_error("invalid_client", "Invalid client secret provided.", entra=True)
        scopes = set(form.get("scope", "").split()) - {"openid", "profile", "offline_access"}
        if scopes != {MICROSOFT_SCOPE}:
            return oauth_error("invalid_scope", "The provided scope is not valid.", entra=True)
        return self._issue(
            "microsoft", app.mailbox, frozenset(scopes), self._entra_jwt(app), client=app.client_id
        )

    # Google ---------------------------------------------------------------------------------
    def _google_token(self, host: str, form: dict[str, str]) -> Reply:
        grant = form.get("grant_type")
        if grant == JWT_GRANT:
            return self._jwt_bearer(host, form.get("assertion", ""))
        if grant == "refresh_token":
            return self._refresh_grant(form)
        return oauth_error("unsupported_grant_type", "Invalid grant_type.")

    def _jwt_bearer(self, host: str, assertion: str) -> Reply:  # noqa: PLR0911 - one per check
        try:
            issuer = str(jwt_rs256.claims_of(assertion).get("iss", ""))
        except ValueError:
            return oauth_error("invalid_grant", "Invalid JWT.")
        with self._lock:
            account = self._accounts.get(issuer.lower())
        if account is None:
            return oauth_error("invalid_grant", "Invalid grant: account not found")
        try:
            claims = jwt_rs256.verify(assertion, account.key.public_key())
        except ValueError:
            return oauth_error("invalid_grant", "Invalid JWT Signature.")
        now = time.time()
        # google-auth always puts Google's token URL in aud, even with another token_uri.
        if claims.get("aud") not in (GOOGLE_TOKEN_URL, f"https://{host}/token"):
            return oauth_error("invalid_grant", "Invalid JWT: audience mismatch.")
        exp, iat = claims.get("exp"), claims.get("iat")
        if (
            not isinstance(exp, int)
            or not isinstance(iat, int)
            or not iat - 300 <= now < exp
            or exp - iat > 3600
        ):
            return oauth_error("invalid_grant", "Invalid JWT: Token must be a short-lived token.")
        scopes = frozenset(str(claims.get("scope", "")).split())
        subject = claims.get("sub")
        with self._lock:
            self.jwt_subjects.append(subject if isinstance(subject, str) else None)
        if isinstance(subject, str) and (not scopes or not scopes <= account.delegated_scopes):
            return oauth_error(
                "unauthorized_client",
                "Client is unauthorized to retrieve access tokens using this method, or client "
                "not authorized for any of the scopes requested.",
            )
        value = "ya29.c." + secrets.token_urlsafe(120)
        return self._issue(
            "google_service_account",
            subject if isinstance(subject, str) else account.email,
            scopes,
            value,
            client=account.email,
        )

    def _refresh_grant(self, form: dict[str, str]) -> Reply:
        with self._lock:
            grant = self._refresh.get(form.get("refresh_token", ""))
        if grant is not None and form.get("client_id") != grant.client_id:
            grant = None
        if grant is None or grant.revoked:
            return oauth_error("invalid_grant", "Token has been expired or revoked.")
        if not secrets.compare_digest(form.get("client_secret", ""), grant.client_secret):
            return oauth_error("invalid_client", "Unauthorized")
        asked = frozenset(form.get("scope", "").split())
        if asked and not asked <= grant.scopes:
            return oauth_error("invalid_scope", "Bad Request")
        value = "ya29.r." + secrets.token_urlsafe(120)
        return self._issue(
            "refresh_token", grant.user, asked or grant.scopes, value, client=grant.client_id
        )

    # IAM Credentials ------------------------------------------------------------------------
    def _caller(self, headers: Mapping[str, str]) -> IssuedToken | None:
        auth = headers.get("authorization", "")
        if not auth.lower().startswith("bearer "):
            return None
        with self._lock:
            token = self._tokens.get(auth[7:].strip())
        if token is None or token.flow != "metadata" or not token.live(time.time()):
            return None
        return token

    def _sign(
        self, endpoint: Endpoint, account_email: str, headers: Mapping[str, str], body: bytes
    ) -> Reply:
        caller = self._caller(headers)
        if caller is None:
            return google_api_error(
                401, "UNAUTHENTICATED", "Request had invalid authentication credentials."
            )
        with self._lock:
            account = self._accounts.get(account_email.lower())
            allowed = account is not None and caller.subject in account.token_creators
        if account is None:
            return google_api_error(404, "NOT_FOUND", "Not found; Gaia id not found for email.")
        if not allowed:
            verb = "signBlob" if endpoint == "sign_blob" else "signJwt"
            return google_api_error(
                403,
                "PERMISSION_DENIED",
                f"Permission 'iam.serviceAccounts.{verb}' denied on resource "
                "(or it may not exist).",
            )
        try:
            request = json.loads(body)
            if endpoint == "sign_blob":
                signature = jwt_rs256.sign(
                    account.key, base64.b64decode(request["payload"], validate=True)
                )
                return Reply(
                    200,
                    {"keyId": account.key_id, "signedBlob": base64.b64encode(signature).decode()},
                )
            claims = json.loads(request["payload"])
        except (ValueError, KeyError, TypeError):
            return google_api_error(400, "INVALID_ARGUMENT", "Invalid payload.")
        return Reply(
            200,
            {
                "keyId": account.key_id,
                "signedJwt": jwt_rs256.encode(claims, account.key, account.key_id),
            },
        )

    # Introspection (RFC 7662) ----------------------------------------------------------------
    def _introspect(self, headers: Mapping[str, str], form: dict[str, str]) -> Reply:
        expected = base64.b64encode(":".join(self.introspection_client).encode()).decode()
        if not secrets.compare_digest(headers.get("authorization", ""), f"Basic {expected}"):
            return Reply(
                401, {"error": "invalid_client"}, {"WWW-Authenticate": 'Basic realm="idp"'}
            )
        with self._lock:
            token = self._tokens.get(form.get("token", ""))
        if token is None or not token.live(time.time()) or not token.scopes & MAIL_SCOPES:
            return Reply(200, {"active": False})
        return Reply(
            200,
            {
                "active": True,
                "username": token.subject,
                "client_id": token.client,
                "scope": " ".join(sorted(token.scopes)),
                "token_type": "Bearer",
                "exp": int(token.expires_at),
            },
        )

    # GCE metadata ---------------------------------------------------------------------------
    def _metadata_answer(  # noqa: PLR0911 - one return per path
        self, path: str, headers: Mapping[str, str]
    ) -> Reply:
        flavor = {"Metadata-Flavor": "Google"}
        if headers.get("metadata-flavor") != "Google":
            return Reply(403, "Missing Metadata-Flavor:Google header.", flavor)
        if path in ("", "computeMetadata/v1/"):
            return Reply(200, "computeMetadata/\n", flavor)
        if path == "computeMetadata/v1/project/project-id":
            return Reply(200, "fake-project", flavor)
        if path == "computeMetadata/v1/universe/universe-domain":
            return Reply(200, "googleapis.com", flavor)
        account_path = "computeMetadata/v1/instance/service-accounts/"
        if path.startswith(account_path):
            name, _, rest = path[len(account_path) :].partition("/")
            if name not in ("default", self.runtime_identity):
                return Reply(404, "not found", flavor)
            if rest == "":
                return Reply(
                    200,
                    {
                        "email": self.runtime_identity,
                        "aliases": ["default"],
                        "scopes": [CLOUD_PLATFORM_SCOPE],
                    },
                    flavor,
                )
            if rest == "email":
                return Reply(200, self.runtime_identity, flavor)
            if rest == "token":
                value = "ya29.m." + secrets.token_urlsafe(120)
                reply = self._issue(
                    "metadata", self.runtime_identity, frozenset({CLOUD_PLATFORM_SCOPE}), value
                )
                reply.headers.update(flavor)
                return reply
        return Reply(404, "not found", flavor)


class _Server(ThreadingHTTPServer):
    """One listener of the IdP; TLS (when *context* is set) is set up in the handler's thread,
    so a client that never finishes its handshake blocks nobody else."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, idp: FakeIdP, context: ssl.SSLContext | None) -> None:
        self.idp = idp
        self.context = context
        super().__init__(("127.0.0.1", 0), _Handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        if self.context is not None:
            request.settimeout(10)
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-idp"
    timeout = 30
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: a request log would hold tokens."""

    def _serve(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {k.lower(): v for k, v in self.headers.items()}
        host = headers.get("host", f"127.0.0.1:{self.server.server_address[1]}")
        metadata = self.server.context is None
        reply = self.server.idp.handle(metadata, (self.command, host, self.path), headers, body)
        if reply.status == 0:  # a hang that was released: no answer at all
            self.close_connection = True
            return
        if isinstance(reply.body, str):
            data, kind = reply.body.encode(), "application/text"
        else:
            data, kind = json.dumps(reply.body).encode(), "application/json; charset=utf-8"
        self.send_response(reply.status)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(data)))
        self.send_header("Cache-Control", "no-store")
        for name, value in reply.headers.items():
            self.send_header(name, value)
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        with contextlib.suppress(OSError):
            self._serve()

    def do_POST(self) -> None:
        with contextlib.suppress(OSError):
            self._serve()
