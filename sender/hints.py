"""One sentence of cause and fix for every failure the SMTP server or the identity provider caused.

`HINTS` is the one table: each row names what it matches — the provider (the profile's preset, or
the preset its host belongs to), the reply code, the enhanced status code, words of the reply,
the error's condition (`SendError.condition`: set by `sender.classify`, the transport and the
OAuth2 flows), the OAuth2 flow, whether the profile signs in with a token, its security and port —
and the sentence. The first row that matches wins, so specific rows come before general ones and
the table ends with a row per condition and per kind of error. A row's text may name the
profile's ``{host}`` and ``{port}``; nothing else of the profile ever goes into a hint.

`annotate` puts the sentence on the error (`SendError.hint`), which puts it in the response body
and the log line; `python -m sender check` prints it under a failed step.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sender.errors import (
    ConfigurationError,
    IdentityProviderRefusedError,
    InvalidRequestError,
    RejectedError,
    SendError,
    TransientError,
)
from sender.profile import SmtpProfile
from sender.providers import provider_for_host

_ENHANCED = re.compile(r"^([245])\.(\d{1,3})\.(\d{1,3})\b")
CHECK = "run `python -m sender check` with the same profile to see which step fails"


@dataclass(frozen=True, slots=True)
class Situation:
    """What a hint is looked up by (from the error and the profile)."""

    condition: str | None = None
    code: int | None = None
    status: str | None = None  # the enhanced status code ("5.7.139")
    reply: str = ""  # the reply text, lower case
    provider: str | None = None
    flow: str | None = None  # the profile's oauth2 flow
    security: str | None = None
    port: int | None = None

    @property
    def oauth2(self) -> bool:
        return self.flow is not None


@dataclass(frozen=True, slots=True)
class Hint:
    """One row: every field that is set must match; `text` is the sentence."""

    text: str
    condition: str | tuple[str, ...] | None = None
    code: int | None = None
    status: str | None = None
    reply: str | None = None  # lower-case words the reply text contains
    provider: str | None = None
    flow: str | None = None
    oauth2: bool | None = None
    security: str | None = None
    ports: tuple[int, ...] | None = None
    kind: type[SendError] | None = None  # the error's class
    generic: bool = False  # a last resort that only says where to look next

    def matches(self, situation: Situation, error: SendError) -> bool:
        conditions = (self.condition,) if isinstance(self.condition, str) else self.condition
        checks = (
            conditions is None or situation.condition in conditions,
            self.code is None or situation.code == self.code,
            self.status is None or situation.status == self.status,
            self.reply is None or self.reply in situation.reply,
            self.provider is None or situation.provider == self.provider,
            self.flow is None or situation.flow == self.flow,
            self.oauth2 is None or situation.oauth2 == self.oauth2,
            self.security is None or situation.security == self.security,
            self.ports is None or situation.port in self.ports,
            self.kind is None or isinstance(error, self.kind),
        )
        return all(checks)


_MS = "microsoft365"
_README_MS = 'see README "Microsoft 365"'
_README_GOOGLE = 'see README "Google Workspace"'
_USE_OAUTH2 = "use oauth2 flow microsoft (no password)"

HINTS: tuple[Hint, ...] = (
    # --- Microsoft 365 / Exchange Online
    Hint("Microsoft 365 no longer accepts a password for SMTP (Basic authentication is off): "
         f"sign in with oauth2 flow microsoft ({_README_MS})", code=550, status="5.7.30"),
    Hint("SMTP AUTH is turned off for the whole tenant: in the Exchange admin center → Settings "
         "→ Mail flow untick \"Turn off SMTP AUTH protocol for your organization\", or enable it "
         "for this mailbox only (Set-CASMailbox -Identity <mailbox> "
         "-SmtpClientAuthenticationDisabled $false)",
         status="5.7.139", reply="disabled for the tenant"),
    Hint("SMTP AUTH is turned off for this mailbox: Set-CASMailbox -Identity <mailbox> "
         "-SmtpClientAuthenticationDisabled $false (or Microsoft 365 admin center → Active users "
         "→ Mail → Manage email apps → Authenticated SMTP)",
         status="5.7.139", reply="disabled for the mailbox"),
    Hint("Basic authentication (a password) is disabled for this tenant: "
         f"{_USE_OAUTH2}, {_README_MS}",
         status="5.7.139", reply="basic authentication is disabled"),
    Hint("The tenant's security defaults block SMTP sign-in with a password for this user: "
         f"{_USE_OAUTH2}, which signs in as the app and is not blocked, {_README_MS}",
         status="5.7.139", reply="security defaults"),
    Hint("Microsoft 365 refused the sign-in by policy (Conditional Access, MFA, or SMTP AUTH "
         f"off for the mailbox): {_USE_OAUTH2}, or enable Authenticated SMTP for the "
         "mailbox and exclude it from the blocking policy",
         status="5.7.139", reply="did not meet the criteria"),
    Hint("Microsoft 365 refused the username or password: check both (the username is the full "
         "address); an account with MFA cannot sign in with a password — use oauth2 flow "
         "microsoft", status="5.7.139", reply="credentials were incorrect"),
    Hint("Microsoft 365 refused the password sign-in (5.7.139: Basic authentication is off for "
         f"the tenant, the mailbox or by a policy): {_USE_OAUTH2}, or enable SMTP AUTH "
         "for the mailbox (Set-CASMailbox -SmtpClientAuthenticationDisabled $false)",
         status="5.7.139"),
    Hint("Exchange Online refused the app's token: the Entra app's service principal is not "
         "registered in Exchange or lacks the mailbox permission — run New-ServicePrincipal "
         "-AppId <client_id> -ObjectId <enterprise app object id> and Add-MailboxPermission "
         "-Identity <username> -User <that object id> -AccessRights FullAccess, then allow "
         f"30 minutes ({_README_MS})",
         status="5.7.3", oauth2=True),
    Hint("Microsoft 365 refused the username or password (5.7.3): check both; with MFA or "
         "Basic authentication off a password cannot work — use oauth2 flow microsoft",
         status="5.7.3", provider=_MS),
    Hint("Microsoft 365 allows 3 concurrent SMTP connections per mailbox and this send made one "
         "too many: Pub/Sub retries; keep SMTP_POOL_SIZE (the preset caps it at 3) times "
         "MAX_INSTANCES at 3 or fewer (deploy with MAX_INSTANCES=1)",
         code=432, status="4.3.2", provider=_MS),
    Hint("The mailbox may not send as this From address: use the mailbox's own address in from, "
         "or grant it Send As on that address (Add-RecipientPermission <from address> -Trustee "
         "<mailbox> -AccessRights SendAs)", reply="sendas"),
    Hint("The mailbox may not send as this From address: use the mailbox's own address in from, "
         "or grant it Send As on that address", status="5.7.60"),
    Hint("Exchange Online's sending limits were exceeded (30 messages a minute, 10,000 "
         "recipients a day per mailbox): Pub/Sub retries later; spread the load or use a "
         "bulk-sending service", reply="submissionquotaexceeded"),
    Hint("Microsoft 365 wants the client to sign in before MAIL (5.7.57): give the profile a "
         "username and oauth2 (flow microsoft)", status="5.7.57"),
    # --- Gmail / Google Workspace
    Hint("Google wants an app password for this account (2-Step Verification is on): create one "
         "at myaccount.google.com → Security → App passwords and put it in the profile, or sign "
         f"in with oauth2 ({_README_GOOGLE})", code=534, status="5.7.9"),
    Hint("Google blocked this sign-in as coming from an unknown app: use an app password, or "
         f"oauth2 flow google_service_account ({_README_GOOGLE})", code=534, status="5.7.14"),
    Hint("Google refused the token for this mailbox: with domain-wide delegation, the Workspace "
         "admin must authorise the service account's client ID for https://mail.google.com/, "
         f"and username must be a user of that domain ({_README_GOOGLE})",
         status="5.7.8", oauth2=True, provider="gmail"),
    Hint("Google refused the username and password: a normal password is refused, use an app "
         "password; where the Workspace admin turned app passwords off, use oauth2 flow "
         f"google_service_account ({_README_GOOGLE})", code=535, status="5.7.8",
         provider="gmail"),
    Hint("Google throttles this account's sign-ins after failures or too many connections: fix "
         "the credentials, then wait; Pub/Sub retries", code=454, provider="gmail"),
    Hint("Google's daily sending limit for this account is used up: Pub/Sub retries, but only "
         "tomorrow's quota will send it; use Workspace's SMTP relay or a sending service for "
         "volume", status="5.4.5", provider="gmail"),
    # --- any provider: replies
    Hint("The server allows fewer concurrent connections than this instance opened (432 4.3.2): "
         "lower SMTP_POOL_SIZE, CONCURRENCY or MAX_INSTANCES; Pub/Sub retries",
         code=432, status="4.3.2"),
    Hint("The server is throttling (421): it closed the session to slow this sender down; "
         "Pub/Sub retries with backoff — lower the rate (MAX_INSTANCES, CONCURRENCY, "
         "SMTP_POOL_SIZE) or ask the provider for a higher limit", code=421),
    Hint("The server wants a signed-in client before MAIL (530): add username and password (or "
         "oauth2) to the profile; for a relay that trusts the network instead, put the "
         "function's egress address on its allow-list (deploy with EGRESS=static)",
         condition="auth_required"),
    # --- TLS and ports
    Hint("The server on port {port} answered in plaintext, not TLS: it speaks STARTTLS, so set "
         "security starttls (or use port 465 with ssl)", condition="tls_wrong_version"),
    Hint("Port 465 expects TLS from the first byte, so with security starttls the client waits "
         "for a plaintext greeting that never comes: set security ssl (or use port 587 with "
         "starttls)", condition=("no_greeting", "timeout", "deadline", "disconnected"),
         security="starttls", ports=(465,)),
    Hint("The server on port {port} sent no greeting: it expects TLS from the first byte (as "
         "port 465 does), so set security ssl (or use port 587 with starttls)",
         condition="no_greeting", security="starttls"),
    Hint("The server accepted the connection but sent no greeting: it is overloaded, or not an "
         "SMTP server; check host and port", condition="no_greeting"),
    Hint("The server's certificate is issued for another name than {host}: set host to the "
         "name on the certificate (the provider's SMTP host name, not an IP address or an "
         "alias)", condition="certificate_name_mismatch"),
    Hint("The server's certificate is self-signed or from a CA this function does not know: "
         "put that CA's PEM certificate in SMTP_CA_FILE (certificates are always verified)",
         condition="certificate_untrusted"),
    Hint("The server's certificate has expired or is not valid yet: its operator must renew it "
         "(on a local run, check this machine's clock)", condition="certificate_expired"),
    Hint("The server's certificate failed verification: check host is the provider's SMTP "
         "name, and SMTP_CA_FILE for a private CA", condition="certificate"),
    Hint("The server on port {port} does not offer STARTTLS: use the provider's submission port "
         "(587 with starttls, or 465 with ssl); if the provider does offer it, something on the "
         "network strips it", condition="starttls_missing"),
    Hint("TLS could not be negotiated: check that security fits the port (465 ssl, 587 "
         "starttls); servers offering only TLS 1.0/1.1 are refused", condition="tls_handshake"),
    # --- the conversation
    Hint("The server refused EHLO and speaks only old-style SMTP, without STARTTLS or AUTH: point "
         "host and port at the provider's submission service (587 or 465), not a port-25 MX",
         condition="helo_only"),
    Hint("The server refused EHLO and HELO: it does not accept this client (the reply says "
         "why); check host is the provider's submission server", condition="ehlo_refused"),
    Hint("The server does not offer XOAUTH2 or OAUTHBEARER, so it cannot take a token: use the "
         "provider's OAuth2 submission server (Microsoft 365: smtp.office365.com, Gmail: "
         "smtp.gmail.com) or a password", condition="auth_mechanism", oauth2=True),
    Hint("The server offers no AUTH mechanism this function speaks (PLAIN, LOGIN, XOAUTH2, "
         "OAUTHBEARER): use the provider's submission port", condition="auth_mechanism"),
    Hint("The server offers no AUTH on this connection: many offer it only after STARTTLS or on "
         "the submission port (587/465); for a relay that trusts your address, remove username",
         condition="auth_not_offered"),
    Hint("The server refused the token although the identity provider issued it: check that "
         "the app or service account may send as username on this server",
         condition="auth_refused", oauth2=True),
    Hint("The server refused the username and password: check both, then add the right ones as "
         "a new secret version (the function re-reads the secret after a refusal)",
         condition="auth_refused"),
    Hint("The server could not check the credentials just now (454): Pub/Sub retries; a 454 "
         "that persists often means too many failed sign-ins from this address",
         condition="auth_temporary"),
    Hint("The server refused every recipient (see refused): check the addresses; a relay "
         "refusal (5.7.1) means this login may not send to them", condition="recipients_refused"),
    Hint("The server refused the sender: use the signed-in mailbox's own address (or one it may "
         "send as) in from", condition="sender_refused"),
    Hint("The server refused the message after DATA: its reply names the cause (size, content "
         "filter, sending quota)", condition="message_refused"),
    Hint("The server refused this client in its greeting: the function's address is blocked or "
         "not on its allow-list (deploy with EGRESS=static for a fixed address)",
         condition="greeting_refused", kind=RejectedError),
    Hint("The server is busy and refused the session in its greeting: Pub/Sub retries",
         condition="greeting_refused"),
    Hint("The connection broke after the whole message was sent, so it may have arrived: the "
         "retry may deliver it twice (with the same Message-ID)", condition="outcome_unknown"),
    Hint("Every pooled SMTP session stayed busy until the deadline: raise SMTP_POOL_SIZE (within "
         "the provider's connection limit) or lower CONCURRENCY", condition="pool_busy"),
    Hint("Credentials are only ever sent over TLS: set security ssl (port 465) or starttls "
         "(port 587), or remove the username for a loopback relay", condition="tls_required"),
    # --- the network
    Hint("Nothing accepts connections on {host} port {port}: check host and port (465 ssl, 587 "
         "starttls); Google Cloud blocks outbound port 25", condition="connection_refused"),
    Hint("{host} does not resolve: check the host name (or the provider and its region)",
         condition="dns"),
    Hint("Nothing answered on {host} port {port} in time: outbound port 25 is blocked on Google "
         "Cloud, use 587 or 465", condition=("timeout", "deadline"), ports=(25,)),
    Hint("The server did not answer in time: check that {host} port {port} is reachable from "
         "the function (firewall rules, a relay's IP allow-list — deploy with EGRESS=static), "
         "and that security fits the port", condition="timeout"),
    Hint("The send ran past SEND_DEADLINE_S (a slow SMTP server or identity provider): Pub/Sub "
         "retries; raise SEND_DEADLINE_S only for a server that is slow but working",
         condition="deadline"),
    Hint("A network error broke the connection to {host}: Pub/Sub retries; if it lasts, check "
         "the network path (egress firewall rules, proxies)", condition="network"),
    Hint("The server closed the connection without a reply: often a TLS mode that does not fit "
         f"the port, or a connection limit; {CHECK}", condition="disconnected"),
    # --- the identity provider
    Hint("Entra ID refused the client secret, most often because it expired: create a new one "
         "under App registrations → Certificates & secrets and store it in oauth2.client_secret "
         "as a new secret version", condition="invalid_client", flow="microsoft"),
    Hint("The token endpoint refused client_id or client_secret: check both (the OAuth client "
         "that issued the refresh token)", condition="invalid_client"),
    Hint("Domain-wide delegation does not authorise this service account for "
         "https://mail.google.com/: in the Google Admin console → Security → API controls → "
         "Domain-wide delegation, add the service account's client ID with that scope",
         condition="unauthorized_client", flow="google_service_account"),
    Hint("Entra ID does not know client_id in this tenant: check client_id and tenant (the app "
         "registration's Application and Directory IDs)", condition="unauthorized_client"),
    Hint("The refresh token was revoked or has expired: sign in again for a new one and store it "
         "as a new secret version", condition="invalid_grant", flow="refresh_token"),
    Hint("Google refused the signed grant: username must be a user of the Workspace domain, and "
         "the service account (and its key) must still exist", condition="invalid_grant",
         flow="google_service_account"),
    Hint("The identity provider refused the grant: check the app registration and that its "
         "client secret or certificate still exists", condition="invalid_grant"),
    Hint("The scope must be https://outlook.office365.com/.default, with the app's SMTP.SendAsApp "
         "permission granted admin consent", condition="invalid_scope", flow="microsoft"),
    Hint("The identity provider refused the scope: Gmail needs https://mail.google.com/",
         condition="invalid_scope"),
    Hint("The function's service account may not sign as oauth2.service_account: grant it "
         "roles/iam.serviceAccountTokenCreator on that account (deploy.sh does for a keyless "
         "profile)", condition="iam_permission_denied"),
    Hint("Entra ID does not know this tenant: use the Directory (tenant) ID or the tenant's "
         "domain (contoso.onmicrosoft.com)", condition="invalid_tenant"),
    Hint("oauth2.key is not a usable service account key: paste the downloaded JSON key "
         "unchanged, or drop it for keyless signing", condition="invalid_key"),
    Hint("Keyless signing needs the function's own identity: run on Cloud Run (or set "
         "GOOGLE_APPLICATION_CREDENTIALS locally), or give oauth2.key", condition="no_identity"),
    Hint("The identity provider did not give a token in time (down, slow or unreachable): "
         "Pub/Sub retries; if it lasts, check egress to the token endpoint, and OAUTH_CA_FILE "
         "for a private identity provider", condition="idp_unavailable"),
    Hint("The identity provider refused the token request (the detail names its error code): "
         "check the profile's oauth2 settings against the app registration",
         kind=IdentityProviderRefusedError),
    # --- whatever else: by kind
    Hint("The server refused permanently (5xx): its reply names the cause; " + CHECK,
         kind=RejectedError, generic=True),
    Hint("A temporary failure (4xx, network or timeout): Pub/Sub retries; if it lasts, " + CHECK,
         kind=TransientError, generic=True),
    Hint("The profile does not fit this server: " + CHECK, kind=ConfigurationError,
         generic=True),
)  # fmt: skip


def _enhanced(text: str) -> str | None:
    match = _ENHANCED.match(text.strip())
    return ".".join(match.groups()) if match else None


def situation(error: SendError, profile: SmtpProfile | None) -> Situation:
    code, message = error.smtp_code, error.smtp_message or ""
    if code is None and error.refused:
        first = next(iter(error.refused.values()))  # every recipient was refused: say why
        code, message = first.code, first.message
    provider = None
    if profile is not None:
        provider = profile.provider or provider_for_host(profile.host)
    flow = getattr(error, "flow", None)
    if flow is None and profile is not None and profile.oauth2 is not None:
        flow = profile.oauth2.flow
    return Situation(
        condition=error.condition,
        code=code,
        status=_enhanced(message),
        reply=message.lower(),
        provider=provider,
        flow=flow,
        security=profile.security if profile else None,
        port=profile.port if profile else None,
    )


def hint_for(error: SendError, profile: SmtpProfile | None, *, generic: bool = True) -> str | None:
    """The sentence for *error* (None for an invalid request: that is the caller's business).

    *generic* False leaves out the last-resort rows that only point at `check` (which uses it)."""
    if isinstance(error, InvalidRequestError):
        return None
    seen = situation(error, profile)
    for row in HINTS:
        if (generic or not row.generic) and row.matches(seen, error):
            fields = {"host": profile.host, "port": profile.port} if profile else {}
            try:
                return row.text.format_map(fields)
            except KeyError:  # a row naming the host, without a profile
                return row.text
    return None


def annotate(error: SendError, profile: SmtpProfile | None) -> SendError:
    """*error* with its hint set (kept when it has one already); returns *error*."""
    if error.hint is None:
        error.hint = hint_for(error, profile)
    return error
