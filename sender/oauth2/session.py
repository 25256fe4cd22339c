"""The HTTP client MSAL and google-auth use: requests, with our trust store and time budget.

- Trust: what requests trusts anyway (certifi and the system's roots, or the bundle an operator
  named in ``REQUESTS_CA_BUNDLE``), plus ``OAUTH_CA_FILE`` when set (a private IdP, or the tests'
  throwaway CA). requests alone would *replace* its roots with an extra file, not add to them.
- Time: every connect and read is bounded by what is left of the send's budget, whatever timeout
  the library asks for (google-auth asks for 120 s, MSAL for none).
- Proxies: the standard ``HTTPS_PROXY``/``NO_PROXY`` variables apply (requests' ``trust_env``).
"""

from __future__ import annotations

import os
import ssl
import threading
from typing import Any

import certifi
import requests
from requests.adapters import HTTPAdapter

from sender.errors import ConfigurationError


def trust_context(ca_file: str | None, base: str | None = None) -> ssl.SSLContext:
    """A verifying client context: *base* (a CA file or directory) or else certifi and the
    system roots, plus *ca_file* when given."""
    if base is None:
        context = ssl.create_default_context(cafile=certifi.where())
        context.load_default_certs()
    elif os.path.isdir(base):
        context = ssl.create_default_context(capath=base)
    else:
        context = ssl.create_default_context(cafile=base)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if ca_file:
        try:
            context.load_verify_locations(cafile=ca_file)
        except (OSError, ssl.SSLError):
            raise ConfigurationError(
                f"OAUTH_CA_FILE {ca_file} cannot be read as a PEM CA bundle"
            ) from None
    return context


def _clamp(timeout: Any, budget_s: float) -> float | tuple[float, float]:
    if isinstance(timeout, tuple):
        return tuple(min(t, budget_s) if t is not None else budget_s for t in timeout)  # type: ignore[return-value]
    if isinstance(timeout, int | float):
        return min(float(timeout), budget_s)
    return budget_s


class _BudgetAdapter(HTTPAdapter):
    """Bounds each connect/read by the budget and verifies with `trust_context`."""

    def __init__(self, ca_file: str | None, budget_s: float) -> None:
        self._ca_file = ca_file
        self._budget_s = budget_s
        self._contexts: dict[str | None, ssl.SSLContext] = {}
        self._contexts_lock = threading.Lock()
        super().__init__()

    def _context(self, verify: Any) -> ssl.SSLContext:
        base = verify if isinstance(verify, str) else None
        with self._contexts_lock:
            if base not in self._contexts:
                self._contexts[base] = trust_context(self._ca_file, base)
            return self._contexts[base]

    def build_connection_pool_key_attributes(
        self, request: requests.PreparedRequest, verify: Any, cert: Any = None
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        host_params, pool_kwargs = super().build_connection_pool_key_attributes(
            request, verify, cert
        )
        if verify is not False:
            # The context holds every root; no CA path for urllib3 to load into it again.
            pool_kwargs.pop("ca_certs", None)
            pool_kwargs.pop("ca_cert_dir", None)
            pool_kwargs["ssl_context"] = self._context(verify)
        return host_params, pool_kwargs

    def cert_verify(self, conn: Any, url: str, verify: Any, cert: Any) -> None:
        super().cert_verify(conn, url, verify, cert)
        if verify is not False and url.lower().startswith("https"):
            conn.ca_certs = None
            conn.ca_cert_dir = None

    def send(  # noqa: PLR0917 - requests' own signature
        self,
        request: requests.PreparedRequest,
        stream: bool = False,
        timeout: Any = None,
        verify: Any = True,
        cert: Any = None,
        proxies: dict[str, str] | None = None,
    ) -> requests.Response:
        return super().send(
            request,
            stream=stream,
            timeout=_clamp(timeout, self._budget_s),
            verify=verify,
            cert=cert,
            proxies=proxies,
        )


def http_session(ca_file: str | None, budget_s: float) -> requests.Session:
    """A session for one token fetch: trusts *ca_file* too, never waits longer than *budget_s*
    for a connect or a read. Close it when done."""
    # One adapter for both schemes: http:// is the metadata server (Cloud Run's own identity).
    adapter = _BudgetAdapter(ca_file, max(budget_s, 0.1))
    session = requests.Session()
    session.mount("https://", adapter)
    session.mount("http://", adapter)
    return session
