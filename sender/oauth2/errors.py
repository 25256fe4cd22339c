"""What a failed token request comes to: the IdP refused us (an operator must act) or it could
not answer (try again later).

Texts name the flow, the OAuth2 error code and (for Entra) the AADSTS number: never the IdP's
free-text description, a URL with a query, a client secret or a token.
"""

from __future__ import annotations

import re
import ssl
from collections.abc import Iterable

import google.auth.exceptions
import msal.exceptions
import requests

from sender.errors import (
    IdentityProviderRefusedError,
    IdentityProviderUnavailableError,
    SendError,
)

# Codes that say "not now" (RFC 6749 temporarily_unavailable, Google's internal_failure).
TRANSIENT_CODES = frozenset(
    {"temporarily_unavailable", "server_error", "internal_failure", "slow_down"}
)
_CODE = re.compile(r"^[a-z][a-z0-9_]{0,63}$")


def safe_code(raw: object) -> str:
    """The IdP's ``error`` if it looks like an OAuth2 code, else ``unknown_error``."""
    return raw if isinstance(raw, str) and _CODE.match(raw) else "unknown_error"


def _aadsts(error_codes: object) -> str:
    if isinstance(error_codes, Iterable) and not isinstance(error_codes, str | bytes):
        numbers = [str(c) for c in error_codes if isinstance(c, int) and not isinstance(c, bool)]
        if numbers:
            return " (" + ", ".join(f"AADSTS{n}" for n in numbers[:3]) + ")"
    return ""


def from_error_response(
    flow: str, code: object, *, retryable: bool = False, aadsts: object = None
) -> SendError:
    """An OAuth2 error answer (``{"error": code, ...}``) as the error the function reports.

    "Not now" codes (or a *retryable* answer) are transient; every other code, above all the
    RFC 6749 section 5.2 ones (``invalid_client``, ``unauthorized_client``, ``invalid_grant``,
    ``invalid_scope``, ``invalid_request``, ``unsupported_grant_type``) is a refusal that only an
    operator can fix.
    """
    name = safe_code(code)
    if retryable or name in TRANSIENT_CODES:
        return IdentityProviderUnavailableError(
            flow, f"the identity provider answered {name}; try again later"
        )
    return IdentityProviderRefusedError(
        flow, name, f"the identity provider answered {name}{_aadsts(aadsts)}"
    )


def _network_reason(exc: BaseException) -> str:
    if isinstance(exc, requests.exceptions.SSLError | ssl.SSLError):
        return (
            "TLS to the identity provider failed (certificate not trusted? "
            "OAUTH_CA_FILE names an extra CA for a private identity provider)"
        )
    if isinstance(exc, requests.exceptions.Timeout | TimeoutError):
        return "the identity provider did not answer in time"
    if isinstance(exc, requests.exceptions.HTTPError) and exc.response is not None:
        return f"the identity provider answered HTTP {exc.response.status_code}"
    return "the identity provider could not be reached"


def _transport_cause(exc: BaseException) -> BaseException | None:
    """The network error behind a google-auth exception (it wraps requests' as its cause or
    first argument)."""
    seen: BaseException | None = exc
    for _ in range(5):
        if seen is None:
            return None
        if isinstance(seen, requests.exceptions.RequestException | OSError):
            return seen
        nested = seen.args[0] if seen.args and isinstance(seen.args[0], BaseException) else None
        seen = seen.__cause__ or nested
    return None


def _google_error(flow: str, exc: google.auth.exceptions.GoogleAuthError) -> SendError:
    if isinstance(exc, google.auth.exceptions.RefreshError):
        data = exc.args[1] if len(exc.args) > 1 and isinstance(exc.args[1], dict) else {}
        if "error" in data:  # the token endpoint's OAuth2 error answer
            return from_error_response(flow, data["error"], retryable=bool(exc.retryable))
        cause = _transport_cause(exc)
        if cause is None and not exc.retryable:
            return IdentityProviderRefusedError(
                flow, "unknown_error", "the identity provider refused the token request"
            )
        return IdentityProviderUnavailableError(flow, _network_reason(cause or exc))
    if isinstance(exc, google.auth.exceptions.DefaultCredentialsError):
        return IdentityProviderRefusedError(
            flow,
            "no_identity",
            "keyless signing needs the function's own identity (Application Default "
            "Credentials) and none was found: run on Cloud Run, or give oauth2.key",
        )
    # TransportError and the rest: the network, the metadata server or the IAM API.
    return IdentityProviderUnavailableError(flow, _network_reason(_transport_cause(exc) or exc))


def classify_token_error(flow: str, exc: BaseException) -> SendError:
    """Map what MSAL, google-auth or requests raised during a token fetch to one `SendError`.

    Raises *exc* again when it is none of theirs (a bug should surface, not be relabelled).
    """
    if isinstance(exc, SendError):
        return exc
    if isinstance(exc, google.auth.exceptions.GoogleAuthError):
        return _google_error(flow, exc)
    if isinstance(exc, msal.exceptions.MsalServiceError):
        # MSAL raises this for a 5xx from discovery or the token endpoint (a 4xx comes back as
        # an error dict, handled by the flow).
        return IdentityProviderUnavailableError(
            flow, "the identity provider answered with a server error"
        )
    if isinstance(exc, requests.exceptions.RequestException | OSError):
        return IdentityProviderUnavailableError(flow, _network_reason(exc))
    raise exc
