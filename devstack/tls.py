"""The local certificate authority and the SMTP server's certificate.

Generated once into the state directory and reused, so a CA a developer chose to trust
(in a mail client, say) stays valid across runs. The function trusts it via `SMTP_CA_FILE`,
which exercises the same certificate verification a real provider gets.
"""

from __future__ import annotations

import os
import ssl
from dataclasses import dataclass
from pathlib import Path

import trustme

#: Names the server certificate is valid for: whatever a developer may type for loopback.
SERVER_NAMES = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class TlsFiles:
    ca_cert: Path
    server_chain: Path
    server_key: Path

    def server_context(self) -> ssl.SSLContext:
        """A server-side context for STARTTLS, TLS 1.2 or newer."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.server_chain, self.server_key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only the local CA (tests, examples)."""
        return ssl.create_default_context(cafile=str(self.ca_cert))


def _write_private(path: Path, data: bytes) -> None:
    """Write a key readable by the owner only, atomically so a crash leaves no half key."""
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)
    os.replace(tmp, path)


def ensure(state_dir: Path) -> TlsFiles:
    """Return the CA and server files in `state_dir`, creating them on first run."""
    files = TlsFiles(
        ca_cert=state_dir / "ca.pem",
        server_chain=state_dir / "smtp-server.pem",
        server_key=state_dir / "smtp-server.key",
    )
    if all(p.is_file() for p in (files.ca_cert, files.server_chain, files.server_key)):
        return files
    state_dir.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name="smtp-sender dev stack")
    cert = ca.issue_cert(*SERVER_NAMES)
    _write_private(files.server_key, cert.private_key_pem.bytes())
    files.server_chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    # The CA certificate last: its presence marks the set as complete.
    files.ca_cert.write_bytes(ca.cert_pem.bytes())
    return files
