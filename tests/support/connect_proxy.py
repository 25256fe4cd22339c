"""An HTTPS (CONNECT) proxy on loopback that tunnels only to the hosts a test maps.

Some clients reach a fixed public host whatever they are configured with: google-auth's
``iam.Signer`` always calls ``https://iamcredentials.googleapis.com``. A process started with
``HTTPS_PROXY=<proxy.url>`` and ``NO_PROXY=127.0.0.1,localhost`` sends such requests here, and
the proxy tunnels them to a local server instead (the fake IdP, whose certificate is issued for
those names by the test CA). Nothing else gets through: a CONNECT to an unmapped host is
answered 403 and recorded in `refused`, so a test can prove nothing tried to leave the machine.

::

    with ConnectProxy({"iamcredentials.googleapis.com": ("127.0.0.1", idp_port)}) as proxy:
        env = {"HTTPS_PROXY": proxy.url, "NO_PROXY": "127.0.0.1,localhost"}
        ...
        proxy.tunnels   # ["iamcredentials.googleapis.com:443", ...]
"""

from __future__ import annotations

import contextlib
import selectors
import socket
import threading
from collections.abc import Mapping
from typing import Self

from tests.support.lifecycle import StartStop

_IDLE_S = 30.0
_HEADER_LIMIT = 16_384


class ConnectProxy(StartStop):
    """CONNECT-only proxy; see the module docstring."""

    def __init__(self, routes: Mapping[str, tuple[str, int]]) -> None:
        """*routes*: ``"host"`` or ``"host:port"`` -> the loopback address to tunnel to."""
        self._routes = {name.lower(): target for name, target in routes.items()}
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self.tunnels: list[str] = []
        self.refused: list[str] = []
        self.port = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> Self:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.bind(("127.0.0.1", 0))
        listener.listen(32)
        listener.settimeout(0.2)
        self._listener = listener
        self.port = int(listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, name="connect-proxy", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _target(self, authority: str) -> tuple[str, int] | None:
        name = authority.lower()
        host = name.rsplit(":", 1)[0] if ":" in name else name
        return self._routes.get(name) or self._routes.get(host)

    def _serve(self, client: socket.socket) -> None:
        with contextlib.closing(client):
            client.settimeout(_IDLE_S)
            head = b""
            while b"\r\n\r\n" not in head and len(head) < _HEADER_LIMIT:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            request_line = head.split(b"\r\n", 1)[0].decode("latin-1")
            parts = request_line.split()
            target = self._target(parts[1]) if len(parts) == 3 and parts[0] == "CONNECT" else None
            if target is None:
                with self._lock:
                    self.refused.append(request_line)
                client.sendall(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return
            with self._lock:
                self.tunnels.append(parts[1])
            try:
                upstream = socket.create_connection(target, timeout=5)
            except OSError:
                client.sendall(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return
            with contextlib.closing(upstream):
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                # Bytes the client sent after the CONNECT head (a TLS ClientHello, usually none).
                extra = head.split(b"\r\n\r\n", 1)[1]
                if extra:
                    upstream.sendall(extra)
                self._pipe(client, upstream)

    def _pipe(self, a: socket.socket, b: socket.socket) -> None:
        with selectors.DefaultSelector() as selector:
            selector.register(a, selectors.EVENT_READ, b)
            selector.register(b, selectors.EVENT_READ, a)
            while not self._stopping.is_set():
                events = selector.select(timeout=_IDLE_S)
                if not events:
                    return
                for key, _ in events:
                    source: socket.socket = key.fileobj  # type: ignore[assignment]
                    try:
                        data = source.recv(65536)
                        if not data:
                            return
                        key.data.sendall(data)
                    except OSError:
                        return
