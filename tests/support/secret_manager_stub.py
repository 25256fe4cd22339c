"""A local Secret Manager: a plaintext gRPC server that the real google-cloud-secret-manager
client talks to (point ``SECRET_MANAGER_EMULATOR_HOST`` at `SecretManagerStub.address`).

The library ships the request/response message classes but no servicer, so the service is
assembled from generic method handlers using the proto-plus classes' (de)serializers.

In-process::

    with SecretManagerStub() as sm:
        sm.put_secret("projects/p/secrets/s", b'{"host": ...}')   # creates, adds version 1
        sm.add_version("projects/p/secrets/s", b"...")           # version 2 = latest
        sm.put_secret("projects/p/locations/europe-west1/secrets/s", b"...")  # a regional one
        sm.fail_next(3, grpc.StatusCode.UNAVAILABLE)               # next 3 RPCs fail
        sm.fail_next(None, grpc.StatusCode.PERMISSION_DENIED)      # every RPC fails until cleared
        sm.hang(10)                                                # every RPC waits 10 s
        sm.corrupt_checksum = True                                 # wrong data_crc32c
        sm.call_count("AccessSecretVersion")                       # RPCs seen (incl. failed)
        sm.names_asked("AccessSecretVersion")                      # the names those RPCs named

Secret names are global (``projects/P/secrets/S``) or regional
(``projects/P/locations/L/secrets/S``); one stub serves both, as if it were every endpoint. A
name of neither shape is INVALID_ARGUMENT, as the real service answers.

As a separate process from a test: `SecretManagerStubProcess`. From a shell (prints the bound
port alone on the first stdout line, then serves until SIGTERM)::

    python -m tests.support.secret_manager_stub --port 0 \\
        --secret projects/p/secrets/s=/path/profile.json

Served RPCs: AccessSecretVersion (``versions/latest`` or a number), AddSecretVersion,
CreateSecret, GetSecret, GetSecretVersion. Missing secrets/versions -> NOT_FOUND (as the real
service does).
"""

from __future__ import annotations

import argparse
import os
import re
import selectors
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from concurrent import futures
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any, Self

import google_crc32c
import grpc
from google.cloud.secretmanager_v1 import types as sm_types

from tests.support.lifecycle import StartStop

SERVICE = "google.cloud.secretmanager.v1.SecretManagerService"
SECRET_NAME = re.compile(r"^projects/[^/]+/(?:locations/[^/]+/)?secrets/[^/]+$")
PARENT_NAME = re.compile(r"^projects/[^/]+(?:/locations/[^/]+)?$")


def crc32c(data: bytes) -> int:
    """CRC32C as Secret Manager reports it in ``SecretPayload.data_crc32c``."""
    return int(google_crc32c.value(data))


@dataclass
class _Version:
    number: int
    data: bytes


@dataclass
class _Secret:
    name: str
    versions: list[_Version] = field(default_factory=list)


class _AbortError(Exception):
    def __init__(self, code: grpc.StatusCode, detail: str) -> None:
        super().__init__(detail)
        self.code = code
        self.detail = detail


class SecretManagerStub(StartStop):
    """A thread-safe in-memory Secret Manager behind a real gRPC server on 127.0.0.1."""

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._secrets: dict[str, _Secret] = {}
        self._calls: Counter[str] = Counter()
        self._asked: list[tuple[str, str]] = []  # (method, resource name) per RPC
        self._fail_remaining: int | None = 0
        self._hang_s = 0.0
        self._fail_code = grpc.StatusCode.UNAVAILABLE
        self._fail_methods: frozenset[str] | None = None
        self.corrupt_checksum = False
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
        self._server.add_generic_rpc_handlers((self._handlers(),))
        self.port: int = self._server.add_insecure_port(f"127.0.0.1:{port}")
        if self.port == 0:
            raise RuntimeError("could not bind the Secret Manager stub")
        self._started = False

    @property
    def address(self) -> str:
        """``host:port`` for ``SECRET_MANAGER_EMULATOR_HOST``."""
        return f"127.0.0.1:{self.port}"

    # -- lifecycle ---------------------------------------------------------------------------
    def start(self) -> Self:
        """Start serving; returns self."""
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        if self._started:
            self._started = False
            self._server.stop(grace=None).wait(5)

    # -- data --------------------------------------------------------------------------------
    def put_secret(self, name: str, data: bytes | str) -> int:
        """Create *name* (``projects/P/secrets/S`` or ``projects/P/locations/L/secrets/S``) if
        needed and add a version; returns its number."""
        if not SECRET_NAME.match(name):
            raise ValueError(f"not a secret name: {name!r}")
        with self._lock:
            self._secrets.setdefault(name, _Secret(name))
        return self.add_version(name, data)

    def add_version(self, name: str, data: bytes | str) -> int:
        """Add a version to an existing secret; it becomes ``latest``. Returns its number."""
        raw = data.encode("utf-8") if isinstance(data, str) else data
        with self._lock:
            secret = self._secrets[name]
            number = len(secret.versions) + 1
            secret.versions.append(_Version(number, raw))
            return number

    # -- faults and counters -----------------------------------------------------------------
    def fail_next(
        self,
        count: int | None,
        code: grpc.StatusCode = grpc.StatusCode.UNAVAILABLE,
        methods: set[str] | None = None,
    ) -> None:
        """Fail the next *count* RPCs (``None`` = all until `clear_faults`) with *code*.

        *methods* limits the failure to those RPC names (e.g. ``{"AccessSecretVersion"}``).
        """
        with self._lock:
            self._fail_remaining = count
            self._fail_code = code
            self._fail_methods = frozenset(methods) if methods else None

    def hang(self, seconds: float) -> None:
        """Make every RPC wait *seconds* before it is answered (a Secret Manager that hangs)."""
        with self._lock:
            self._hang_s = seconds

    def clear_faults(self) -> None:
        """Stop failing RPCs and stop corrupting checksums."""
        with self._lock:
            self._fail_remaining = 0
            self._fail_methods = None
            self._hang_s = 0.0
            self.corrupt_checksum = False

    def call_count(self, method: str = "AccessSecretVersion") -> int:
        """How many RPCs of *method* arrived (failed ones included)."""
        with self._lock:
            return self._calls[method]

    def names_asked(self, method: str = "AccessSecretVersion") -> list[str]:
        """The resource names the RPCs of *method* named, in order (failed ones included)."""
        with self._lock:
            return [name for m, name in self._asked if m == method]

    # -- gRPC plumbing -----------------------------------------------------------------------
    def _handlers(self) -> grpc.GenericRpcHandler:
        def unary(
            method: str, fn: Callable[[Any], Any], req_cls: Any, resp_cls: Any
        ) -> grpc.RpcMethodHandler:
            def handle(request: Any, context: grpc.ServicerContext) -> Any:
                try:
                    self._before(method, request)
                    return fn(request)
                except _AbortError as err:
                    context.abort(err.code, err.detail)

            return grpc.unary_unary_rpc_method_handler(
                handle,
                request_deserializer=req_cls.deserialize,
                response_serializer=resp_cls.serialize,
            )

        t = sm_types
        methods = {
            "AccessSecretVersion": unary(
                "AccessSecretVersion",
                self._access,
                t.AccessSecretVersionRequest,
                t.AccessSecretVersionResponse,
            ),
            "AddSecretVersion": unary(
                "AddSecretVersion", self._add, t.AddSecretVersionRequest, t.SecretVersion
            ),
            "CreateSecret": unary("CreateSecret", self._create, t.CreateSecretRequest, t.Secret),
            "GetSecret": unary("GetSecret", self._get, t.GetSecretRequest, t.Secret),
            "GetSecretVersion": unary(
                "GetSecretVersion", self._get_version, t.GetSecretVersionRequest, t.SecretVersion
            ),
        }
        return grpc.method_handlers_generic_handler(SERVICE, methods)

    def _before(self, method: str, request: Any) -> None:
        name = getattr(request, "name", "") or getattr(request, "parent", "")
        with self._lock:
            hang_s = self._hang_s
        if hang_s:
            time.sleep(hang_s)
        with self._lock:
            self._calls[method] += 1
            self._asked.append((method, name))
            if self._fail_methods is not None and method not in self._fail_methods:
                return
            if self._fail_remaining is None:
                raise _AbortError(self._fail_code, f"injected {self._fail_code.name}")
            if self._fail_remaining > 0:
                self._fail_remaining -= 1
                raise _AbortError(self._fail_code, f"injected {self._fail_code.name}")

    def _resolve(self, version_name: str) -> tuple[_Secret, _Version]:
        secret_name, sep, version_id = version_name.partition("/versions/")
        if not sep or not SECRET_NAME.match(secret_name):
            detail = f"bad version name {version_name!r}"
            raise _AbortError(grpc.StatusCode.INVALID_ARGUMENT, detail)
        with self._lock:
            secret = self._secrets.get(secret_name)
            if secret is None:
                raise _AbortError(grpc.StatusCode.NOT_FOUND, f"Secret [{secret_name}] not found")
            if version_id == "latest":
                if not secret.versions:
                    raise _AbortError(grpc.StatusCode.NOT_FOUND, f"{secret_name} has no version")
                return secret, secret.versions[-1]
            if not version_id.isdigit() or not 1 <= int(version_id) <= len(secret.versions):
                detail = f"Secret Version [{version_name}] not found"
                raise _AbortError(grpc.StatusCode.NOT_FOUND, detail)
            return secret, secret.versions[int(version_id) - 1]

    def _version_message(self, secret: _Secret, version: _Version) -> Any:
        return sm_types.SecretVersion(
            name=f"{secret.name}/versions/{version.number}",
            state=sm_types.SecretVersion.State.ENABLED,
        )

    def _access(self, request: Any) -> Any:
        secret, version = self._resolve(request.name)
        checksum = crc32c(version.data)
        if self.corrupt_checksum:
            checksum ^= 0x5A5A
        return sm_types.AccessSecretVersionResponse(
            name=f"{secret.name}/versions/{version.number}",
            payload=sm_types.SecretPayload(data=version.data, data_crc32c=checksum),
        )

    def _add(self, request: Any) -> Any:
        with self._lock:
            if request.parent not in self._secrets:
                raise _AbortError(grpc.StatusCode.NOT_FOUND, f"Secret [{request.parent}] not found")
        number = self.add_version(request.parent, bytes(request.payload.data))
        with self._lock:
            secret = self._secrets[request.parent]
            return self._version_message(secret, secret.versions[number - 1])

    def _create(self, request: Any) -> Any:
        if not PARENT_NAME.match(request.parent):
            detail = f"bad parent {request.parent!r}"
            raise _AbortError(grpc.StatusCode.INVALID_ARGUMENT, detail)
        name = f"{request.parent}/secrets/{request.secret_id}"
        with self._lock:
            if name in self._secrets:
                raise _AbortError(grpc.StatusCode.ALREADY_EXISTS, f"Secret [{name}] already exists")
            self._secrets[name] = _Secret(name)
        return sm_types.Secret(name=name)

    def _get(self, request: Any) -> Any:
        with self._lock:
            if request.name not in self._secrets:
                raise _AbortError(grpc.StatusCode.NOT_FOUND, f"Secret [{request.name}] not found")
        return sm_types.Secret(name=request.name)

    def _get_version(self, request: Any) -> Any:
        secret, version = self._resolve(request.name)
        return self._version_message(secret, version)


class SecretManagerStubProcess(StartStop):
    """The stub as a separate process (for functions-framework-as-a-process tests).

    ::

        with SecretManagerStubProcess({SECRET_NAME: profile_path}) as sm:
            env["SECRET_MANAGER_EMULATOR_HOST"] = sm.address

    Stopped by PID (SIGTERM, then SIGKILL), also when starting failed.
    """

    def __init__(self, secrets: Mapping[str, Path], start_timeout: float = 20.0) -> None:
        self.secrets = dict(secrets)
        self.start_timeout = start_timeout
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``host:port`` for ``SECRET_MANAGER_EMULATOR_HOST``."""
        return f"127.0.0.1:{self.port}"

    def start(self) -> Self:
        """Start the process and read the port it printed."""
        root = Path(__file__).resolve().parents[2]
        cmd = [sys.executable, "-m", "tests.support.secret_manager_stub", "--port", "0"]
        for name, path in self.secrets.items():
            cmd += ["--secret", f"{name}={path}"]
        self._proc = subprocess.Popen(
            cmd,
            cwd=root,
            env={**os.environ, "PYTHONPATH": str(root)},
            stdout=subprocess.PIPE,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        try:
            assert self._proc.stdout is not None
            with selectors.DefaultSelector() as sel:
                sel.register(self._proc.stdout, selectors.EVENT_READ)
                if not sel.select(self.start_timeout):
                    raise TimeoutError(f"stub printed no port in {self.start_timeout}s")
            line = self._proc.stdout.readline().decode().strip()
            if not line.isdigit():
                raise RuntimeError(f"stub did not start (exit {self._proc.poll()}): {line!r}")
            self.port = int(line)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """End the process by PID (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


def main(argv: list[str] | None = None) -> int:
    """Serve until SIGTERM/SIGINT; the first stdout line is the bound port."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument(
        "--secret",
        action="append",
        default=[],
        metavar="projects/P[/locations/L]/secrets/S=FILE",
        help="create a secret whose version 1 is FILE's bytes (repeatable)",
    )
    args = parser.parse_args(argv)
    stub = SecretManagerStub(port=args.port)
    for spec in args.secret:
        name, sep, path = spec.partition("=")
        if not sep:
            parser.error(f"--secret wants NAME=FILE, got {spec!r}")
        stub.put_secret(name, Path(path).read_bytes())
    stop = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    stub.start()
    sys.stdout.write(f"{stub.port}\n")
    sys.stdout.flush()
    stop.wait()
    stub.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
