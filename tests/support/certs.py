"""A certificate authority made at test time (trustme), written as PEM files under a directory.

Use `make_ca(directory)` for the CA the function is told to trust (``SMTP_CA_FILE``) and the
matching server certificate for ``127.0.0.1`` / ``localhost`` / ``::1``. A second call gives an
independent CA: a server certificate issued by it is "untrusted" from the first CA's point of view,
which is how the "untrusted certificate refused" tests are built (`make_untrusted_ca` says so).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from pathlib import Path

import trustme

SERVER_NAMES: tuple[str, ...] = ("127.0.0.1", "localhost", "::1")


@dataclass(frozen=True)
class CertBundle:
    """PEM files of one test CA and one server certificate it issued.

    Attributes:
        ca_pem: the CA certificate (what a client must trust, e.g. ``SMTP_CA_FILE``).
        server_chain_pem: server certificate followed by its chain.
        server_key_pem: the server's private key.
    """

    ca_pem: Path
    server_chain_pem: Path
    server_key_pem: Path
    ca: trustme.CA = field(repr=False, compare=False)

    def reissue(self, directory: Path, *names: str) -> CertBundle:
        """A server certificate from the same CA but for other *names* (e.g. ``other.example``):
        trusted issuer, wrong host name."""
        return _write(self.ca, self.ca_pem, directory, "-".join(names) or "noname", names)

    def server_context(self) -> ssl.SSLContext:
        """A TLS server context presenting this bundle's server certificate."""
        ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        ctx.load_cert_chain(str(self.server_chain_pem), str(self.server_key_pem))
        return ctx

    def client_context(self) -> ssl.SSLContext:
        """A verifying client context that trusts only this bundle's CA."""
        return ssl.create_default_context(cafile=str(self.ca_pem))


def make_ca(directory: Path, name: str = "smtp-sender-test-ca") -> CertBundle:
    """Create a fresh CA and a server certificate for the loopback names, as files in *directory*.

    The files are named after *name*, so several CAs can share one directory.
    """
    directory.mkdir(parents=True, exist_ok=True)
    ca = trustme.CA(organization_name=name)
    ca_pem = directory / f"{name}.ca.pem"
    ca.cert_pem.write_to_path(str(ca_pem))
    return _write(ca, ca_pem, directory, name, SERVER_NAMES)


def _write(
    ca: trustme.CA, ca_pem: Path, directory: Path, name: str, names: tuple[str, ...]
) -> CertBundle:
    leaf = ca.issue_cert(*names)
    chain = directory / f"{name}.server-chain.pem"
    key = directory / f"{name}.server-key.pem"
    # The chain blobs are leaf first, then intermediates (none here); write them all.
    with chain.open("wb") as fh:
        for blob in leaf.cert_chain_pems:
            fh.write(blob.bytes())
    leaf.private_key_pem.write_to_path(str(key))
    return CertBundle(
        ca_pem=ca_pem,
        server_chain_pem=chain,
        server_key_pem=key,
        ca=ca,
    )


def make_untrusted_ca(directory: Path) -> CertBundle:
    """An independent CA whose server certificate nothing trusts unless told to.

    Start a server with this bundle while the function trusts `make_ca`'s CA: the TLS handshake
    must fail certificate verification.
    """
    return make_ca(directory, name="smtp-sender-untrusted-ca")
