"""A private, throw-away Postfix instance for tests: the MTA in front of mailbot.

It listens for SMTP on a loopback port of its own and hands mail for the brand
addresses to mailbot through a transport map, refusing other addresses of the
brand domains (relay_recipient_maps), with the main.cf lines docs/operations.md
§2 a) tells an admin to write (read from that file). Everything runs on 127.0.0.1; the master runs in the
foreground (`postfix start-fg`) in its own process group, which `stop()` ends by
its PID. Needs the Debian package `postfix` (`make deps-system`).

Retries are quick (`minimal_backoff_time = 1s`, `queue_run_delay = 1s`) so a
deferred mail is tried again within seconds; `flush()` asks for it at once.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import smtplib
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path

from tests.dovecot import live_group_members
from tests.procs import free_port, wait_until

HOST = "127.0.0.1"
INSTALL_HINT = "run `make deps-system` (installs the Debian package postfix)"

_SERVICES = """\
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def find_postfix() -> str | None:
    return shutil.which("postfix") or (
        "/usr/sbin/postfix" if os.access("/usr/sbin/postfix", os.X_OK) else None)


class PostfixError(RuntimeError):
    pass


class Postfix:
    """One private instance. `transport` maps an address or domain to a Postfix
    transport, e.g. {"support@kalra-plus.com": "smtp:[127.0.0.1]:2525"}."""

    def __init__(self, transport: Mapping[str, str], recipients: Iterable[str] | None = None,
                 relay_transport: str | None = None) -> None:
        """`relay_transport`: where mail for the relay domains that no transport line names
        goes (default: refused, nothing leaves the machine)."""
        self.relay_transport = relay_transport or "error:5.7.1 tests deliver to the transport map only"
        self.dir = Path(tempfile.mkdtemp(prefix="mailbot-postfix-"))
        self.port = free_port()
        self.transport = dict(transport)
        self.recipients = list(self.transport if recipients is None else recipients)
        self.proc: subprocess.Popen[bytes] | None = None
        self.master_pid: int | None = None  # the master starts a session (group) of its own

    # -- life cycle ---------------------------------------------------------
    def start(self, timeout: float = 20.0) -> None:
        if find_postfix() is None:
            raise PostfixError(f"postfix not found: {INSTALL_HINT}")
        self._write_config()
        self.postfix("check")
        self.proc = subprocess.Popen(  # noqa: S603 - fixed argv
            ["postfix", "-c", str(self.dir), "start-fg"], stdout=subprocess.DEVNULL,
            stderr=open(self.dir / "start.err", "wb"), start_new_session=True)  # noqa: SIM115
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise PostfixError(f"postfix exited {self.proc.returncode}: {self.diagnostics()}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), timeout=1) as s:
                if s.recv(100).startswith(b"220"):
                    self.master_pid = self._pid_file()
                    return
            time.sleep(0.1)
        self.stop()
        raise PostfixError(f"postfix did not greet on {HOST}:{self.port}: {self.diagnostics()}")

    def stop(self) -> None:
        """End the master's process group (by the PID it wrote), then the wrapper."""
        proc, self.proc = self.proc, None
        master, self.master_pid = self.master_pid or self._pid_file(), None  # (a failed start too)
        if master is not None:
            _end_group(master)
        if proc is not None:  # postfix-script, our child: it leaves with the master
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                _end_group(proc.pid)
                proc.wait(10)

    def _pid_file(self) -> int | None:
        """The PID the master wrote (it starts a session, hence a process group, of its own)."""
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int((self.dir / "queue/pid/master.pid").read_text().split()[0])
        return None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> Postfix:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    # -- use ----------------------------------------------------------------
    def send(self, mail_from: str, rcpts: list[str], raw: bytes) -> None:
        """Submit over SMTP, as a sender's server would: accepted = queued by Postfix."""
        with smtplib.SMTP(HOST, self.port, timeout=20) as c:
            refused = c.sendmail(mail_from, rcpts, raw)
        assert refused == {}, refused

    def queue(self) -> list[dict]:
        """The queue as `postqueue -j` lists it (one dict per queued mail)."""
        out = subprocess.run(["postqueue", "-c", str(self.dir), "-j"], capture_output=True,  # noqa: S603,S607
                             check=True, timeout=20).stdout.decode()
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def flush(self) -> None:
        """Try every deferred mail now."""
        subprocess.run(["postqueue", "-c", str(self.dir), "-f"], check=True, timeout=20,  # noqa: S603,S607
                       capture_output=True)

    def wait_queue_empty(self, timeout: float = 30.0) -> None:
        self.wait(lambda: not self.queue(), "the queue to empty", timeout)

    def wait(self, predicate: Callable[[], object], what: str, timeout: float = 20.0) -> None:
        """`tests.procs.wait_until`, with the end of Postfix's log when it times out."""
        try:
            wait_until(predicate, timeout=timeout, what=what, every=0.1)
        except AssertionError as exc:
            raise AssertionError(f"{exc}; queue {self.queue()}\n{self.log()[-3000:]}") from None

    def log(self) -> str:
        path = self.dir / "maillog"
        return path.read_text(errors="replace") if path.exists() else ""

    def postfix(self, *args: str) -> None:
        run = subprocess.run(["postfix", "-c", str(self.dir), *args], capture_output=True,  # noqa: S603,S607
                             timeout=60)
        if run.returncode:
            raise PostfixError(f"postfix {' '.join(args)}: {run.stderr.decode(errors='replace')}")

    def diagnostics(self) -> str:
        err = self.dir / "start.err"
        return (err.read_text(errors="replace") if err.exists() else "") + self.log()[-2000:]

    # -- files --------------------------------------------------------------
    def _write_config(self) -> None:
        d = self.dir
        d.chmod(0o755)  # Postfix's daemons (user postfix) reach their queue through it
        (d / "queue").mkdir(exist_ok=True)  # `postfix check` creates the rest
        (d / "data").mkdir(exist_ok=True)
        shutil.chown(d / "data", "postfix", "postfix")
        (d / "main.cf").write_text(f"""\
compatibility_level = 3.6
queue_directory = {d}/queue
data_directory = {d}/data
myhostname = mx.postfix-test.invalid
mydomain = postfix-test.invalid
myorigin = $myhostname
mydestination =
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtp_tls_security_level = none
smtpd_tls_security_level = none
maillog_file = {d}/maillog
maillog_file_prefixes = {d}
minimal_backoff_time = 1s
maximal_backoff_time = 2s
queue_run_delay = 1s
# nothing leaves the machine: what the transport map does not name fails here
default_transport = error:5.7.1 tests deliver to the transport map only
relay_transport = {self.relay_transport}
smtp_dns_support_level = disabled
# what docs/operations.md §2 a) asks of the admin, read from it:
{documented_main_cf().replace("/etc/postfix/", f"{d}/")}
""")
        (d / "master.cf").write_text(_SERVICES.format(host=HOST, port=self.port))
        (d / "mailbot_transport").write_text("".join(f"{k} {v}\n" for k, v in self.transport.items()))
        (d / "mailbot_recipients").write_text("".join(f"{k} OK\n" for k in self.recipients))
        for table in ("mailbot_transport", "mailbot_recipients"):
            subprocess.run(["postmap", "-c", str(d), f"hash:{d}/{table}"], check=True,  # noqa: S603,S607
                           capture_output=True, timeout=30)


OPERATIONS = Path(__file__).resolve().parent.parent / "docs" / "operations.md"


def documented_blocks(section: str = "### a) Postfix relays") -> dict[str, str]:
    """The code blocks of a docs/operations.md section whose first line names a file
    (`# /etc/postfix/main.cf`): file name -> the lines after it."""
    text = OPERATIONS.read_text().split(section, 1)[1].split("\n### ", 1)[0]
    out, block = {}, None
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            if block:
                first, _, rest = "".join(block).partition("\n")
                if first.startswith("# /etc/postfix/"):
                    out[first[2:].split()[0]] = rest
            block = [] if block is None else None
        elif block is not None:
            block.append(line)
    return out


def documented_main_cf() -> str:
    return documented_blocks()["/etc/postfix/main.cf"]


def _end_group(pgid: int, timeout: float = 10.0) -> None:
    """SIGTERM to the process group, SIGKILL to what is left (zombies aside) after `timeout`."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and live_group_members(pgid):
        time.sleep(0.05)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(pgid, signal.SIGKILL)
