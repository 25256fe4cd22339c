"""A throwaway Postfix + Dovecot SASL tier on loopback, everything inside one state directory.

Nothing is written to /etc/postfix or /etc/dovecot: Postfix runs with `postfix -c STATE/postfix`
(the `postfix` command, run as root, accepts any absolute config directory; the
`alternate_config_directories` list in the default main.cf only guards the set-gid
`postdrop`/`postqueue` run by non-root users — postconf(5) — and the tier never uses them),
and Dovecot with `dovecot -c STATE/dovecot/dovecot.conf`.

Listeners (127.0.0.1, free high ports picked at start):
- ``ssl``: implicit TLS, AUTH required (465-style);
- ``starttls``: STARTTLS required before anything, AUTH only over TLS (587-style);
- ``plain``: no STARTTLS offered at all, AUTH still advertised and accepted if a client asks,
  and mail from loopback accepted without AUTH — so a client that wrongly sends in the clear,
  or sends credentials there, leaves a trace (delivered mail, ``auth=`` in the log).

OAuth2 (optional, `OAuth2Introspection`): Dovecot's ``oauth2`` passdb verifies XOAUTH2 and
OAUTHBEARER logins by RFC 7662 introspection (``introspection_mode = post``, over HTTPS, trusting
the identity provider's CA) next to the password logins, on every listener. Postfix's
``line_length_limit`` is raised so a real-sized bearer token (Entra's are ~2.4 KB) fits on the AUTH
line. Dovecot's auth debug stays off: it would print the tokens.

Every recipient at any domain is delivered by virtual(8) to one Maildir, which prepends
``X-Original-To``/``Delivered-To``. Recipients whose local part starts with ``reject550`` get
550 at RCPT, ``defer450`` get 450; messages over ``MESSAGE_SIZE_LIMIT`` get 552.

Run by hand: ``python -m tests.support.mta_tier start DIR`` (prints ports as JSON), ``... stop
DIR``;
``start DIR --oauth2-introspection URL --oauth2-ca FILE`` adds the OAuth2 logins (the URL may
carry the introspection client's credentials as ``https://id:secret@host:port/path``).
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import json
import os
import shlex
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from urllib.parse import quote

import trustme

POSTFIX = "/usr/sbin/postfix"
DOVECOT = "/usr/sbin/dovecot"
MESSAGE_SIZE_LIMIT = 200_000
DEFAULT_USER = "alerts@mta.test"
DEFAULT_PASSWORD = "initial-Passw0rd"
# virtual(8) writes the Maildir as this uid/gid (must be >= virtual_minimum_uid).
MAIL_UID = MAIL_GID = 65534
START_TIMEOUT_S = 20.0
# Postfix cuts lines at 2048 bytes by default; an XOAUTH2 AUTH line with an Entra token is ~3.4 KB
# and tokens with many claims are larger still.
LINE_LENGTH_LIMIT = 16_384
# Where a message sits between "250 queued" and delivery (relative to queue_directory).
QUEUE_DIRS = ("maildrop", "incoming", "active", "deferred", "hold")
STOP_TIMEOUT_S = 15.0


class TierError(RuntimeError):
    """The tier could not be started (config rejected, port taken, daemon died)."""


def missing_components() -> str | None:
    """Why the tier cannot run here (None when it can): binaries absent or not root."""
    absent = [p for p in (POSTFIX, DOVECOT) if not os.access(p, os.X_OK)]
    if absent:
        return f"{' and '.join(absent)} not installed (run: sudo bash tests/mta/install.sh)"
    if os.geteuid() != 0:
        return "the Postfix tier must run as root (postfix start drops privileges itself)"
    return None


@dataclass(frozen=True)
class Ports:
    """The three SMTP listeners on 127.0.0.1."""

    ssl: int
    starttls: int
    plain: int


@dataclass(frozen=True)
class OAuth2Introspection:
    """Where Dovecot checks bearer tokens: an RFC 7662 endpoint and the CA its certificate is
    issued by. ``client_id``/``client_secret`` authenticate Dovecot to it (HTTP Basic)."""

    url: str
    ca_file: str
    client_id: str = ""
    client_secret: str = ""

    def url_with_credentials(self) -> str:
        """The URL as Dovecot takes it: credentials in the authority part, percent-encoded."""
        if not self.client_id:
            return self.url
        scheme, rest = self.url.split("://", 1)
        user = quote(self.client_id, safe="")
        secret = quote(self.client_secret, safe="")
        return f"{scheme}://{user}:{secret}@{rest}"


@dataclass(frozen=True)
class TierState:
    """Where everything lives; saved as ``STATE/tier.json`` so ``stop`` works from a new shell."""

    state_dir: str
    ports: Ports
    user: str
    oauth2: bool = False

    @property
    def root(self) -> Path:
        return Path(self.state_dir)

    @property
    def postfix_dir(self) -> Path:
        return self.root / "postfix"

    @property
    def dovecot_conf(self) -> Path:
        return self.root / "dovecot" / "dovecot.conf"

    @property
    def dovecot_pid(self) -> Path:
        return self.root / "dovecot" / "run" / "master.pid"

    @property
    def master_pid(self) -> Path:
        return self.root / "spool" / "pid" / "master.pid"

    @property
    def passwd_file(self) -> Path:
        return self.root / "dovecot" / "passwd"

    @property
    def auth_socket(self) -> Path:
        return self.root / "dovecot" / "auth-postfix"

    @property
    def ca_file(self) -> Path:
        return self.root / "tls" / "ca.pem"

    @property
    def oauth2_conf(self) -> Path:
        return self.root / "dovecot" / "oauth2.conf.ext"

    @property
    def idp_ca_file(self) -> Path:
        """Dovecot's copy of the identity provider's CA (its auth process must read it)."""
        return self.root / "dovecot" / "idp-ca.pem"

    @property
    def maildir(self) -> Path:
        """The single mailbox every recipient lands in."""
        return self.root / "mail" / "inbox"

    @property
    def postfix_log(self) -> Path:
        return self.root / "log" / "postfix.log"

    @property
    def dovecot_log(self) -> Path:
        return self.root / "log" / "dovecot.log"

    def save(self) -> None:
        (self.root / "tier.json").write_text(json.dumps(asdict(self)))

    @classmethod
    def load(cls, state_dir: Path) -> TierState:
        raw = json.loads((state_dir / "tier.json").read_text())
        return cls(
            state_dir=raw["state_dir"],
            ports=Ports(**raw["ports"]),
            user=raw["user"],
            oauth2=bool(raw.get("oauth2", False)),
        )


def hash_password(password: str) -> str:
    """Dovecot ``{SSHA512}`` of the UTF-8 bytes: any character, ':' included, is safe."""
    salt = os.urandom(16)
    digest = hashlib.sha512(password.encode("utf-8") + salt).digest()
    return "{SSHA512}" + base64.b64encode(digest + salt).decode("ascii")


def write_passwd(state: TierState, users: dict[str, str]) -> None:
    """(Re)write Dovecot's passwd-file atomically; Dovecot re-reads it on the next lookup."""
    lines = "".join(f"{user}:{hash_password(pw)}::::::\n" for user, pw in users.items())
    tmp = state.passwd_file.with_suffix(".tmp")
    tmp.write_text(lines, encoding="utf-8")
    # Dovecot's auth worker runs as the unprivileged `dovecot` user and must read the file.
    tmp.chmod(0o644)
    # Dovecot notices a change by (mtime in whole seconds, size); a hash of the same length
    # written within the same second would go unseen, so move mtime past the old one.
    rewrite = state.passwd_file.exists()
    if rewrite:
        stamp = max(int(time.time()), int(state.passwd_file.stat().st_mtime) + 1)
        os.utime(tmp, (stamp, stamp))
    tmp.replace(state.passwd_file)
    if rewrite:
        # ... and it stats the file at most once per second of its loop clock: once the wall
        # clock has moved to the next second, the next lookup is sure to see the new file.
        time.sleep(1.05 - time.time() % 1)


def free_ports(count: int) -> list[int]:
    """Ports the kernel calls free right now (a race with other processes is retried by start).

    Not `tests.support.loopback.free_ports`: this file also runs as a plain script (README), where
    the project root is not on ``sys.path``, so it imports nothing from ``tests``.
    """
    socks: list[socket.socket] = []
    try:
        for _ in range(count):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            s.bind(("127.0.0.1", 0))
            socks.append(s)
        return [s.getsockname()[1] for s in socks]
    finally:
        for s in socks:
            s.close()


def _make_certs(state: TierState) -> None:
    ca = trustme.CA()
    server = ca.issue_cert("127.0.0.1", "localhost")
    tls = state.root / "tls"
    tls.mkdir(mode=0o755)
    ca.cert_pem.write_to_path(str(state.ca_file))
    # smtpd reads its key as root before dropping privileges: keep it root-only.
    chain = tls / "server.pem"
    chain.touch(mode=0o600)
    server.private_key_and_cert_chain_pem.write_to_path(str(chain))


def _main_cf(state: TierState) -> str:
    root = state.root
    etc = state.postfix_dir
    return f"""\
# Generated by tests/support/mta_tier.py: a loopback-only test MTA that relays nothing.
compatibility_level = 3.6
queue_directory = {root}/spool
data_directory = {root}/data
maillog_file = {state.postfix_log}
maillog_file_prefixes = {root}
inet_interfaces = 127.0.0.1
inet_protocols = ipv4
myhostname = mta.test
mydomain = mta.test
myorigin = mta.test
mydestination =
mynetworks = 127.0.0.1/32
relayhost =
biff = no
readme_directory = no
# Relay nothing: anything not handled by the virtual mailbox below fails with an error.
default_transport = error:5.7.1 the test tier relays nothing
relay_transport = error:5.7.1 the test tier relays nothing
local_transport = error:5.7.1 no local delivery in the test tier
# Every address at every domain goes to one Maildir (trailing slash = Maildir format).
virtual_mailbox_domains = regexp:{etc}/any_domain
virtual_mailbox_maps = regexp:{etc}/one_mailbox
virtual_mailbox_base = {root}/mail
virtual_uid_maps = static:{MAIL_UID}
virtual_gid_maps = static:{MAIL_GID}
virtual_minimum_uid = 100
virtual_mailbox_limit = 0
message_size_limit = {MESSAGE_SIZE_LIMIT}
enable_original_recipient = yes
# No local aliases at all (the default also asks NIS and /etc/aliases.db).
alias_maps =
alias_database =
local_recipient_maps =
smtpd_banner = $myhostname ESMTP test tier
smtpd_tls_chain_files = {root}/tls/server.pem
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
smtpd_sasl_type = dovecot
smtpd_sasl_path = {state.auth_socket}
smtpd_sasl_auth_enable = no
line_length_limit = {LINE_LENGTH_LIMIT}
smtpd_recipient_restrictions = check_recipient_access regexp:{etc}/recipient_rules
smtpd_relay_restrictions = permit_sasl_authenticated, reject
# Nothing in this tier should be slow: fail fast instead of hanging a test.
smtpd_timeout = 30s
"""


def _master_cf(state: TierState) -> str:
    p = state.ports
    # Nothing chrooted: paths (SASL socket, Maildir) are absolute inside the state dir.
    auth = "-o smtpd_sasl_auth_enable=yes"
    return f"""\
# Generated by tests/support/mta_tier.py
127.0.0.1:{p.ssl} inet n - n - - smtpd -o syslog_name=postfix/ssl
  -o smtpd_tls_wrappermode=yes -o smtpd_tls_security_level=encrypt {auth}
127.0.0.1:{p.starttls} inet n - n - - smtpd -o syslog_name=postfix/starttls
  -o smtpd_tls_security_level=encrypt -o smtpd_tls_auth_only=yes {auth}
127.0.0.1:{p.plain} inet n - n - - smtpd -o syslog_name=postfix/plain
  -o smtpd_tls_security_level=none -o smtpd_tls_auth_only=no {auth}
  -o smtpd_relay_restrictions=permit_sasl_authenticated,permit_mynetworks,reject
cleanup   unix n - n - 0 cleanup
qmgr      unix n - n 300 1 qmgr
tlsmgr    unix - - n 1000? 1 tlsmgr
rewrite   unix - - n - - trivial-rewrite
bounce    unix - - n - 0 bounce
defer     unix - - n - 0 bounce
trace     unix - - n - 0 bounce
verify    unix - - n - 1 verify
flush     unix n - n 1000? 0 flush
proxymap  unix - - n - - proxymap
proxywrite unix - - n - 1 proxymap
showq     unix n - n - - showq
error     unix - - n - - error
retry     unix - - n - - error
discard   unix - - n - - discard
virtual   unix - n n - - virtual
anvil     unix - - n - 1 anvil
scache    unix - - n - 1 scache
postlog   unix-dgram n - n - 1 postlogd
"""


# The access-table action "5NN text" / "4NN text" makes smtpd answer RCPT with exactly that code.
RECIPIENT_RULES = """\
/^reject550[^@]*@/ 550 5.1.1 Mailbox does not exist (test tier rule reject550)
/^defer450[^@]*@/ 450 4.2.1 Mailbox temporarily unavailable (test tier rule defer450)
"""


def _passdbs(state: TierState) -> str:
    """Passwords from the passwd-file; with OAuth2, bearer tokens by introspection. Each passdb
    takes only its own mechanisms, so a password never travels to the identity provider and a
    token is never compared with a password hash."""
    passwd = f"""\
passdb {{
  driver = passwd-file
  args = scheme=SSHA512 {state.passwd_file}
  mechanisms = plain login
}}
"""
    if not state.oauth2:
        return passwd
    return (
        passwd
        + f"""\
passdb {{
  driver = oauth2
  args = {state.oauth2_conf}
  mechanisms = xoauth2 oauthbearer
}}
"""
    )


def _dovecot_conf(state: TierState) -> str:
    d = state.root / "dovecot"
    mechanisms = "plain login xoauth2 oauthbearer" if state.oauth2 else "plain login"
    return f"""\
# Generated by tests/support/mta_tier.py: Dovecot as a SASL server for Postfix only (no IMAP/POP).
protocols =
instance_name = smtp-sender-mta-{state.ports.ssl}
base_dir = {d}/run
state_dir = {d}/lib
log_path = {state.dovecot_log}
info_log_path = {state.dovecot_log}
ssl = no
# The plain listener must accept AUTH if a client sends it there (that is what the test proves
# the function never does), so Dovecot may not refuse plaintext mechanisms itself.
disable_plaintext_auth = no
auth_mechanisms = {mechanisms}
auth_verbose = yes
# Debug logging prints passwords and bearer tokens: off, whatever a default might become.
auth_debug = no
auth_debug_passwords = no
auth_verbose_passwords = no
auth_cache_size = 0
{_passdbs(state)}userdb {{
  driver = static
  args = uid={MAIL_UID} gid={MAIL_GID} home={d}/home
}}
service auth {{
  unix_listener {state.auth_socket} {{
    mode = 0666
  }}
}}
service anvil {{
  chroot =
  # No auth penalty: it delays every login from an IP after failures (2, 4, 8, 15 s), and all
  # test clients are 127.0.0.1, so a few refused tokens would stall the next tests' logins until
  # Postfix gives up on Dovecot ("Connection lost to authentication server").
  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}
"""


def _oauth2_conf(state: TierState, oauth2: OAuth2Introspection) -> str:
    """Dovecot's oauth2 passdb settings: RFC 7662 introspection by POST, the login's username
    must equal the token's ``username``, and ``active`` must be true."""
    return f"""\
# Generated by tests/support/mta_tier.py
introspection_mode = post
introspection_url = {oauth2.url_with_credentials()}
force_introspection = yes
username_attribute = username
active_attribute = active
active_value = true
tls_ca_cert_file = {state.idp_ca_file}
timeout_msecs = 5000
debug = no
"""


def _write(path: Path, text: str, mode: int = 0o644) -> None:
    path.write_text(text, encoding="utf-8")
    path.chmod(mode)


def _run_daemonizing(argv: list[str], log: Path) -> subprocess.CompletedProcess[str]:
    """Run a command that forks a daemon: the daemon inherits stdout/stderr, so a pipe would
    never close; send both to a file and read it back."""
    with log.open("a+", encoding="utf-8") as out:
        start = out.tell()
        proc = subprocess.run(
            argv, stdout=out, stderr=subprocess.STDOUT, timeout=30, check=False, text=True
        )
        out.seek(start)
        return subprocess.CompletedProcess(argv, proc.returncode, out.read(), "")


def _pid_alive(pid: int) -> bool:
    """Running (a zombie counts as gone: a daemon's parent is init, which reaps when it likes)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None


def _wait_tcp(port: int, deadline: float) -> bool:
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 1):
            return True
        time.sleep(0.05)
    return False


def _layout(state: TierState, password: str, oauth2: OAuth2Introspection | None) -> None:
    root = state.root
    # Postfix daemons (uid postfix) and virtual(8) (uid 65534) must traverse the tree.
    root.chmod(0o755)
    for sub in ("postfix", "spool", "log", "dovecot", "dovecot/run", "dovecot/lib", "mail"):
        (root / sub).mkdir(mode=0o755, parents=True, exist_ok=True)
    os.chown(root / "mail", MAIL_UID, MAIL_GID)
    _make_certs(state)
    etc = state.postfix_dir
    _write(etc / "main.cf", _main_cf(state))
    _write(etc / "master.cf", _master_cf(state))
    _write(etc / "any_domain", "/./ OK\n")
    _write(etc / "one_mailbox", "/./ inbox/\n")
    _write(etc / "recipient_rules", RECIPIENT_RULES)
    _write(state.dovecot_conf, _dovecot_conf(state))
    if oauth2 is not None:
        shutil.copyfile(oauth2.ca_file, state.idp_ca_file)
        state.idp_ca_file.chmod(0o644)
        # Holds the introspection client's secret: readable by Dovecot's auth process only.
        _write(state.oauth2_conf, _oauth2_conf(state, oauth2), mode=0o640)
        shutil.chown(state.oauth2_conf, group="dovecot")
    write_passwd(state, {state.user: password})
    state.save()


def _start_daemons(state: TierState) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    startup_log = state.root / "log" / "startup.log"
    dv = _run_daemonizing([DOVECOT, "-c", str(state.dovecot_conf)], startup_log)
    if dv.returncode != 0:
        raise TierError(f"dovecot failed to start: {dv.stdout.strip()}")
    # `postfix check` validates the config and creates the queue tree (owned by postfix).
    # Before postlogd runs, the postfix command reports problems only to a terminal (else to
    # the postlog socket nobody reads yet), so it runs under script(1)'s pty to show why.
    check = [POSTFIX, "-c", str(state.postfix_dir), "check"]
    if shutil.which("script"):
        check = ["script", "-qec", shlex.join(check), "/dev/null"]
    for argv in (check, [POSTFIX, "-c", str(state.postfix_dir), "start"]):
        pf = _run_daemonizing(argv, startup_log)
        if pf.returncode != 0:
            raise TierError(f"{shlex.join(argv)} failed: {pf.stdout.strip()}")
    while not state.auth_socket.exists():
        if time.monotonic() > deadline:
            raise TierError("dovecot auth socket did not appear")
        time.sleep(0.05)
    for port in asdict(state.ports).values():
        if not _wait_tcp(port, deadline):
            raise TierError(f"postfix is not listening on 127.0.0.1:{port}")


def start(
    state_dir: Path,
    user: str = DEFAULT_USER,
    password: str = DEFAULT_PASSWORD,
    oauth2: OAuth2Introspection | None = None,
) -> TierState:
    """Configure and start the tier in ``state_dir`` (an empty directory); return its state.

    With *oauth2*, XOAUTH2/OAUTHBEARER logins are verified at that introspection endpoint.

    Ports are picked free just before start; another process may grab one in between, so a
    bind failure is retried with new ports (bounded).
    """
    reason = missing_components()
    if reason:
        raise TierError(reason)
    last: Exception | None = None
    for _attempt in range(3):
        for leftover in state_dir.iterdir():  # a failed attempt's files
            if leftover.is_dir():
                shutil.rmtree(leftover)
            else:
                leftover.unlink()
        state = TierState(str(state_dir), Ports(*free_ports(3)), user, oauth2 is not None)
        _layout(state, password, oauth2)
        try:
            _start_daemons(state)
        except (TierError, subprocess.TimeoutExpired) as exc:
            last = exc
            stop(state)
            if "in use" not in f"{exc}{log_tail(state)}":
                break
            continue
        return state
    raise TierError(f"{last}\n--- postfix log tail ---\n{log_tail(state)}")


def log_tail(state: TierState, lines: int = 30) -> str:
    """The last lines of both logs, for failure messages."""
    out = []
    for log in (state.postfix_log, state.dovecot_log):
        with contextlib.suppress(OSError):
            out.append(f"[{log.name}]")
            out.extend(log.read_text(errors="replace").splitlines()[-lines:])
    return "\n".join(out)


def stop(state: TierState) -> None:
    """Stop Postfix and Dovecot by their recorded PIDs; safe to call twice or after a crash.

    SIGTERM to Postfix's master is exactly what `postfix stop` sends; doing it here skips
    postfix-script's one-second polling loop (3-4 s per stop). Children exit with their master.
    """
    pids = [p for p in (_read_pid(state.master_pid), _read_pid(state.dovecot_pid)) if p]
    for pid in pids:
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + STOP_TIMEOUT_S
    while any(_pid_alive(p) for p in pids) and time.monotonic() < deadline:
        time.sleep(0.05)
    for pid in pids:  # still there after the grace period: no mercy, but only our own PIDs
        if _pid_alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def ssl_context(state: TierState) -> ssl.SSLContext:
    """A client context trusting only the tier's throwaway CA."""
    return ssl.create_default_context(cafile=str(state.ca_file))


def _parse_oauth2_args(args: list[str]) -> OAuth2Introspection | None:
    """``--oauth2-introspection URL --oauth2-ca FILE`` (both or neither)."""
    options = dict(zip(args[::2], args[1::2], strict=False))
    if len(args) % 2 or set(options) - {"--oauth2-introspection", "--oauth2-ca"}:
        raise ValueError("unknown options")
    if not options:
        return None
    if len(options) != 2:
        raise ValueError("--oauth2-introspection and --oauth2-ca go together")
    return OAuth2Introspection(options["--oauth2-introspection"], options["--oauth2-ca"])


def _cli(argv: list[str]) -> int:
    usage = (
        "usage: tier.py start STATE_DIR [--oauth2-introspection URL --oauth2-ca FILE]\n"
        "       tier.py stop STATE_DIR"
    )
    if len(argv) < 2 or argv[0] not in ("start", "stop") or (argv[0] == "stop" and len(argv) > 2):
        print(usage, file=sys.stderr)
        return 2
    try:
        oauth2 = _parse_oauth2_args(argv[2:])
    except ValueError as exc:
        print(f"{exc}\n{usage}", file=sys.stderr)
        return 2
    state_dir = Path(argv[1]).resolve()
    if argv[0] == "start":
        state_dir.mkdir(parents=True, exist_ok=True)
        t0 = time.monotonic()
        state = start(state_dir, oauth2=oauth2)
        print(
            json.dumps(
                {
                    **asdict(state),
                    "ca_file": str(state.ca_file),
                    "startup_s": round(time.monotonic() - t0, 2),
                }
            )
        )
    else:
        stop(TierState.load(state_dir))
    return 0


if __name__ == "__main__":
    sys.exit(_cli(sys.argv[1:]))
