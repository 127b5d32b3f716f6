"""A private, throw-away Dovecot IMAP server for tests (library + pytest plugin).

Register with ``pytest_plugins = ["tests.dovecot"]`` (or ``-p tests.dovecot``).

Fixtures
--------
``dovecot``        session-scoped :class:`Dovecot`, started once, stopped at session end.
``dovecot_fresh``  function-scoped :class:`Dovecot` of its own (own dir, ports, mail
                   store) for tests that stop / restart / reset the server.
``dovecot_user``   function-scoped ``(address, password)`` of a brand-new, empty
                   mailbox on the session server (fast per-test isolation).
``dovecot_tls``    session-scoped ``(cert_path, key_path)`` self-signed cert used by all
                   instances (CN=localhost, SAN IP:127.0.0.1 + DNS:localhost).

Everything runs on 127.0.0.1 only.  Nothing outside this file is needed at run time
except the Debian ``dovecot-imapd`` package and ``openssl``.
"""

from __future__ import annotations

import atexit
import contextlib
import grp
import itertools
import os
import pwd
import re
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator
from pathlib import Path

import imapclient
import pytest
from imapclient.imap_utf7 import encode as _utf7_encode

HOST = "127.0.0.1"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 10.0
DEFAULT_PASSWORD = "secret"
DEFAULT_USERS = {
    "support@kalra-plus.com": DEFAULT_PASSWORD,
    "info@divikeys.com": DEFAULT_PASSWORD,
    "agent@kalra-plus.com": DEFAULT_PASSWORD,
}
INSTALL_HINT = "run `make deps-system` (installs the Debian packages dovecot-imapd/dovecot-lmtpd)"

_APPENDUID_RE = re.compile(rb"\[APPENDUID (\d+) ([0-9:,]+)\]", re.IGNORECASE)
_user_counter = itertools.count(1)


class DovecotError(RuntimeError):
    pass


def find_dovecot() -> str:
    """Path of the dovecot binary, or raise DovecotError telling how to install it."""
    path = shutil.which("dovecot") or next(
        (p for p in ("/usr/sbin/dovecot", "/usr/local/sbin/dovecot") if os.access(p, os.X_OK)),
        None,
    )
    if path is None:
        raise DovecotError(f"dovecot is not installed: {INSTALL_HINT}")
    return path


def make_self_signed_cert(directory: str | os.PathLike) -> tuple[str, str]:
    """Create cert.pem/key.pem (CN=localhost, SAN IP:127.0.0.1, DNS:localhost) in directory."""
    openssl = shutil.which("openssl")
    if openssl is None:
        raise DovecotError("openssl is not installed: apt-get install openssl")
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    cert, key = d / "cert.pem", d / "key.pem"
    subprocess.run(
        [
            openssl,
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            str(key),
            "-out",
            str(cert),
            "-days",
            "7",
            "-subj",
            "/CN=localhost",
            "-addext",
            "subjectAltName=IP:127.0.0.1,DNS:localhost",
            "-addext",
            "basicConstraints=critical,CA:TRUE",
        ],
        check=True,
        capture_output=True,
    )
    os.chmod(key, 0o600)
    return str(cert), str(key)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def _flatten(resp: object) -> bytes:
    """imapclient returns APPEND responses as bytes, str or (typ, [data]) -- flatten them."""
    if isinstance(resp, bytes):
        return resp
    if isinstance(resp, str):
        return resp.encode()
    if isinstance(resp, list | tuple):
        return b" ".join(_flatten(x) for x in resp)
    return b""


def live_group_members(pgid: int) -> list[int]:
    """PIDs of non-zombie processes in process group pgid (Linux /proc)."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            with open(f"/proc/{entry.name}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            continue
        fields = stat[stat.rfind(b")") + 2 :].split()
        if int(fields[2]) == pgid and fields[0] not in (b"Z", b"X"):
            pids.append(int(entry.name))
    return pids


def _parse_uid_set(text: str) -> list[int]:
    out: list[int] = []
    for part in text.split(","):
        if ":" in part:
            lo, hi = (int(x) for x in part.split(":"))
            out.extend(range(min(lo, hi), max(lo, hi) + 1))
        elif part:
            out.append(int(part))
    return out


class Dovecot:
    """One private Dovecot instance living in its own temp dir."""

    def __init__(
        self,
        users: dict[str, str] | None = None,
        *,
        cert: tuple[str, str] | None = None,
        separator: str = ".",
        base: str | os.PathLike | None = None,
    ) -> None:
        self.host = HOST
        self.port = 0
        self.ssl_port = 0
        self.users: dict[str, str] = dict(DEFAULT_USERS if users is None else users)
        self.separator = separator
        self.dir = Path(tempfile.mkdtemp(prefix="mailbot-dovecot-", dir=base))
        # Mail processes run as the `dovecot` user: the dir must be traversable.
        os.chmod(self.dir, 0o755)
        if cert is None:
            cert = make_self_signed_cert(self.dir / "tls")
        self.cert_path, self.key_path = cert
        self.conf_path = self.dir / "dovecot.conf"
        self.passwd_dir = self.dir / "passwd.d"
        self.mail_root = self.dir / "mail"
        self.log_path = self.dir / "dovecot.log"
        self.instance_name = f"mailbot-test-{secrets.token_hex(4)}"
        self.proc: subprocess.Popen | None = None
        self._last_pgid: int | None = None
        self._binary: str | None = None
        atexit.register(self.cleanup)  # safety net if a test run is interrupted

    # ------------------------------------------------------------------ lifecycle
    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def start(self) -> None:
        if self.running:
            return
        self._binary = find_dovecot()
        first = self.port == 0
        attempts = 3 if first else 1
        for attempt in range(attempts):
            if first:
                self.port, self.ssl_port = _free_port(), _free_port()
                while self.ssl_port == self.port:
                    self.ssl_port = _free_port()
            self._write_files()
            try:
                self._spawn_and_wait()
                return
            except DovecotError as exc:
                in_use = "in use" in str(exc).lower()
                if not (first and in_use and attempt + 1 < attempts):
                    raise

    def stop(self) -> None:
        """Stop this instance and every process it spawned; safe to call twice.

        Dovecot's master leaves imap/log/stats children running for a while after it
        exits, so the whole process group (created by us at start) is signalled.
        """
        proc, self.proc = self.proc, None
        if proc is None:
            return
        pgid = proc.pid  # start_new_session=True: the master leads its own group
        self._last_pgid = pgid
        deadline = time.monotonic() + STOP_TIMEOUT
        # Re-signal until done: a child forked during shutdown misses the first signal
        # and the master then waits ~5 s for it.
        while proc.poll() is None or live_group_members(pgid):
            sig = signal.SIGTERM if time.monotonic() < deadline else signal.SIGKILL
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pgid, sig)
            try:
                proc.wait(0.05)
            except subprocess.TimeoutExpired:
                pass
            if time.monotonic() > deadline + STOP_TIMEOUT:
                raise DovecotError(f"dovecot group {pgid} did not exit")

    def leftover_processes(self) -> list[int]:
        """Live (non-zombie) processes of the last stopped/running instance's group."""
        pgid = self.proc.pid if self.proc is not None else self._last_pgid
        return live_group_members(pgid) if pgid else []

    def restart(self) -> None:
        """Stop and start again on the same ports with the same mail store."""
        self.stop()
        self.start()

    def cleanup(self) -> None:
        """Stop and delete the instance's directory."""
        self.stop()
        if os.environ.get("MAILBOT_KEEP_DOVECOT"):
            return
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Dovecot:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def _mail_ids(self) -> tuple[int, int, str | None]:
        """uid, gid for mail files, and the user internal processes run as (None = default)."""
        if os.geteuid() == 0:
            try:
                pw = pwd.getpwnam("dovecot")
            except KeyError as exc:
                raise DovecotError(f"no `dovecot` system user: {INSTALL_HINT}") from exc
            return pw.pw_uid, pw.pw_gid, None
        return os.getuid(), os.getgid(), pwd.getpwuid(os.getuid()).pw_name

    def _write_files(self) -> None:
        uid, gid, run_as = self._mail_ids()
        self.mail_root.mkdir(exist_ok=True)
        if os.geteuid() == 0:
            os.chown(self.mail_root, uid, gid)
        (self.dir / "run").mkdir(exist_ok=True)
        (self.dir / "state").mkdir(exist_ok=True)
        self._write_passwd()
        unprivileged = ""
        if run_as is not None:
            unprivileged = (
                f"default_internal_user = {run_as}\n"
                f"default_login_user = {run_as}\n"
                f"default_internal_group = {grp.getgrgid(gid).gr_name}\n"
            )
        # Unprivileged: no chroot possible for anvil / imap-login.
        login_chroot = anvil_chroot = "  chroot =\n" if run_as is not None else ""
        conf = f"""\
# generated by tests/dovecot.py -- private test instance
instance_name = {self.instance_name}
base_dir = {self.dir}/run
state_dir = {self.dir}/state
log_path = {self.log_path}
protocols = imap
listen = {HOST}
disable_plaintext_auth = no
auth_mechanisms = plain login
auth_failure_delay = 0
mail_fsync = never
first_valid_uid = 1
first_valid_gid = 1
mail_location = maildir:{self.mail_root}/%d/%n
ssl = yes
ssl_cert = <{self.cert_path}
ssl_key = <{self.key_path}
{unprivileged}
namespace inbox {{
  inbox = yes
  separator = {self.separator}
  mailbox Drafts {{
    special_use = \\Drafts
  }}
  mailbox Junk {{
    special_use = \\Junk
  }}
  mailbox Sent {{
    special_use = \\Sent
  }}
  mailbox Trash {{
    special_use = \\Trash
  }}
}}

passdb {{
  driver = passwd-file
  args = scheme=PLAIN {self.passwd_dir}/%u
}}
userdb {{
  driver = static
  args = uid={uid} gid={gid} home={self.mail_root}/%d/%n
}}

# mode 0: auth cannot reach anvil -> no growing per-IP penalty after bad logins
service anvil {{
{anvil_chroot}  unix_listener anvil-auth-penalty {{
    mode = 0
  }}
}}

service imap-login {{
{login_chroot}  inet_listener imap {{
    address = {HOST}
    port = {self.port}
  }}
  inet_listener imaps {{
    address = {HOST}
    port = {self.ssl_port}
    ssl = yes
  }}
}}

protocol imap {{
  mail_max_userip_connections = 100
}}
"""
        self.conf_path.write_text(conf)

    def _write_passwd(self) -> None:
        # One passwd-file per user: Dovecot re-reads a changed passwd-file at most once a
        # second, but a file it has never opened is read at once -> new_user() is instant.
        for user in self.users:
            self._write_user_file(user)

    def _write_user_file(self, user: str) -> None:
        name = user.lower()  # auth_username_format = %Lu
        if "/" in name or name.startswith("."):
            raise ValueError(f"unsupported test address {user!r}")
        self.passwd_dir.mkdir(exist_ok=True)
        path = self.passwd_dir / name
        tmp = path.with_name(name + ".tmp")
        tmp.write_text(f"{name}:{{PLAIN}}{self.users[user]}::::::\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)

    def _spawn_and_wait(self) -> None:
        assert self._binary is not None
        stderr_path = self.dir / "dovecot.stderr"
        with open(stderr_path, "ab") as err:
            self.proc = subprocess.Popen(
                [self._binary, "-F", "-c", str(self.conf_path)],
                stdin=subprocess.DEVNULL,
                stdout=err,
                stderr=err,
                start_new_session=True,
            )
        deadline = time.monotonic() + START_TIMEOUT
        while True:
            if self.proc.poll() is not None:
                rc = self.proc.returncode
                self.proc = None
                raise DovecotError(f"dovecot exited with {rc} at start:\n{self._diagnostics()}")
            if self._greets(self.port) and self._accepts(self.ssl_port):
                return
            if time.monotonic() > deadline:
                self.stop()
                raise DovecotError(
                    f"dovecot not ready on {HOST}:{self.port}/{self.ssl_port} "
                    f"after {START_TIMEOUT}s:\n{self._diagnostics()}"
                )
            time.sleep(0.02)

    def _greets(self, port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1) as s:
                return s.recv(4).startswith(b"* OK")
        except OSError:
            return False

    def _accepts(self, port: int) -> bool:
        try:
            with socket.create_connection((HOST, port), timeout=1):
                return True
        except OSError:
            return False

    def _diagnostics(self) -> str:
        out = []
        for p in (self.dir / "dovecot.stderr", self.log_path):
            with contextlib.suppress(OSError):
                out.append(f"--- {p.name}\n" + p.read_text(errors="replace")[-4000:])
        return "\n".join(out)

    # ------------------------------------------------------------------ users
    def new_user(
        self, prefix: str = "user", domain: str = "kalra-plus.com", password: str = DEFAULT_PASSWORD
    ) -> tuple[str, str]:
        """Add a brand-new (empty) mailbox; usable at once, also while running."""
        address = f"{prefix}-{next(_user_counter)}-{secrets.token_hex(3)}@{domain}"
        self.add_user(address, password)
        return address, password

    def add_user(self, address: str, password: str = DEFAULT_PASSWORD) -> None:
        self.users[address] = password
        self._write_user_file(address)

    def write_password_file(self, user: str, path: str | os.PathLike) -> str:
        p = Path(path)
        p.write_text(self.users[user] + "\n")
        os.chmod(p, 0o600)
        return str(p)

    # ------------------------------------------------------------------ IMAP helpers
    def client(self, user: str, timeout: float = 10.0) -> imapclient.IMAPClient:
        """A logged-in client on the plain port (use as a context manager to log out)."""
        c = imapclient.IMAPClient(self.host, self.port, ssl=False, timeout=timeout)
        try:
            c.login(user, self.users[user])
        except Exception:
            with contextlib.suppress(Exception):
                c.shutdown()
            raise
        return c

    def ssl_context(self) -> ssl.SSLContext:
        """Client SSL context that trusts (only) this server's self-signed cert."""
        return ssl.create_default_context(cafile=self.cert_path)

    def ssl_client(self, user: str, timeout: float = 10.0) -> imapclient.IMAPClient:
        c = imapclient.IMAPClient(
            self.host, self.ssl_port, ssl=True, ssl_context=self.ssl_context(), timeout=timeout
        )
        c.login(user, self.users[user])
        return c

    @staticmethod
    def _ensure_folder(c: imapclient.IMAPClient, folder: str) -> None:
        if folder.upper() != "INBOX" and not c.folder_exists(folder):
            c.create_folder(folder)

    def append(self, user: str, raw: bytes, folder: str = "INBOX", flags=()) -> int:
        """APPEND one message (folder created if missing); returns its UID (APPENDUID)."""
        with self.client(user) as c:
            self._ensure_folder(c, folder)
            resp = c.append(folder, raw, flags=tuple(flags))
        m = _APPENDUID_RE.search(_flatten(resp))
        if not m:
            raise DovecotError(f"no APPENDUID in {resp!r}")
        return int(m.group(2))

    def append_many(
        self, user: str, raws: Iterable[bytes], folder: str = "INBOX", batch: int = 200
    ) -> list[int]:
        """APPEND many messages over one connection (MULTIAPPEND batches); returns UIDs."""
        uids: list[int] = []
        with self.client(user, timeout=60) as c:
            self._ensure_folder(c, folder)
            chunk: list[bytes] = []

            def flush() -> None:
                if chunk:
                    resp = c.multiappend(folder, chunk)
                    m = _APPENDUID_RE.search(_flatten(resp))
                    if m:
                        uids.extend(_parse_uid_set(m.group(2).decode()))
                    chunk.clear()

            for raw in raws:
                chunk.append(raw)
                if len(chunk) >= batch:
                    flush()
            flush()
        return uids

    def uids(self, user: str, folder: str = "INBOX", criteria="ALL") -> list[int]:
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            return sorted(c.search(criteria))

    def fetch_flags(self, user: str, folder: str = "INBOX") -> dict[int, tuple]:
        """uid -> flags (bytes, as imapclient gives them; session-dependent \\Recent dropped)."""
        with self.client(user) as c:
            c.select_folder(folder, readonly=True)
            uids = c.search("ALL")
            if not uids:
                return {}
            return {
                uid: tuple(f for f in flags if f != b"\\Recent")
                for uid, flags in sorted(c.get_flags(uids).items())
            }

    def folder_count(self, user: str, folder: str) -> int:
        """Number of messages in folder, 0 if it does not exist."""
        with self.client(user) as c:
            if not c.folder_exists(folder):
                return 0
            return int(c.folder_status(folder, [b"MESSAGES"])[b"MESSAGES"])

    def folders(self, user: str) -> list[str]:
        with self.client(user) as c:
            return [name for _flags, _sep, name in c.list_folders()]

    def create_folder(self, user: str, folder: str) -> None:
        with self.client(user) as c:
            self._ensure_folder(c, folder)

    def uidvalidity(self, user: str, folder: str = "INBOX") -> int:
        with self.client(user) as c:
            return int(c.folder_status(folder, [b"UIDVALIDITY"])[b"UIDVALIDITY"])

    def empty_mailbox(self, user: str) -> None:
        """Expunge every message in every folder and delete all folders but INBOX."""
        with self.client(user) as c:
            names = [name for _flags, _sep, name in c.list_folders()]
            for name in names:
                if name.upper() == "INBOX":
                    continue
                with contextlib.suppress(imapclient.exceptions.IMAPClientError):
                    c.delete_folder(name)
            c.select_folder("INBOX")
            msgs = c.search("ALL")
            if msgs:
                c.delete_messages(msgs)
                c.expunge()
            c.close_folder()

    def _maildir(self, user: str, folder: str) -> Path:
        local, _, domain = user.lower().partition("@")  # auth_username_format = %Lu
        root = self.mail_root / domain / local
        if folder.upper() == "INBOX":
            return root
        fs_name = _utf7_encode(folder).decode("ascii")
        if self.separator != ".":
            fs_name = fs_name.replace(self.separator, ".")
        return root / ("." + fs_name)

    def reset_uidvalidity(self, user: str, folder: str = "INBOX") -> None:
        """Make folder's UIDVALIDITY change while keeping its messages.

        Restarts the server (open connections are dropped): prefer ``dovecot_fresh``.
        """
        before = self.uidvalidity(user, folder)
        path = self._maildir(user, folder)
        if not path.is_dir():
            raise DovecotError(f"no maildir for {user}/{folder} at {path}")
        self.stop()
        victims = ["dovecot-uidlist", "dovecot-uidlist.lock", "dovecot.index*"]
        if folder.upper() == "INBOX":
            victims.append("dovecot.list.index*")
        for pattern in victims:
            for f in path.glob(pattern):
                f.unlink()
        self.start()
        after = self.uidvalidity(user, folder)
        if after == before:
            raise DovecotError(f"UIDVALIDITY of {user}/{folder} did not change ({before})")


def fresh_mailbox(dovecot: Dovecot, user: str) -> None:
    """Empty all of user's folders (for tests sharing the session instance)."""
    dovecot.empty_mailbox(user)


# ---------------------------------------------------------------------- pytest plugin
def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "dovecot: needs a real Dovecot IMAP server")


def _started(d: Dovecot) -> Dovecot:
    try:
        d.start()
    except DovecotError as exc:
        d.cleanup()
        pytest.fail(str(exc), pytrace=False)
    return d


@pytest.fixture(scope="session")
def dovecot_tls() -> Iterator[tuple[str, str]]:
    """(cert_path, key_path) of a self-signed cert for 127.0.0.1/localhost, made once."""
    try:
        find_dovecot()
    except DovecotError as exc:
        pytest.fail(str(exc), pytrace=False)
    d = tempfile.mkdtemp(prefix="mailbot-tls-")
    os.chmod(d, 0o755)
    try:
        yield make_self_signed_cert(d)
    finally:
        shutil.rmtree(d, ignore_errors=True)


@pytest.fixture(scope="session")
def dovecot(dovecot_tls: tuple[str, str]) -> Iterator[Dovecot]:
    """Session-wide Dovecot with the default users; see also ``dovecot_user``."""
    d = _started(Dovecot(cert=dovecot_tls))
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def dovecot_fresh(dovecot_tls: tuple[str, str]) -> Iterator[Dovecot]:
    """A brand-new Dovecot for one test (may be stopped / restarted / reset freely)."""
    d = _started(Dovecot(cert=dovecot_tls))
    try:
        yield d
    finally:
        d.cleanup()


@pytest.fixture
def dovecot_user(dovecot: Dovecot) -> tuple[str, str]:
    """(address, password) of a new, empty mailbox on the session Dovecot."""
    return dovecot.new_user("test")
