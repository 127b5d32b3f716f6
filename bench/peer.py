#!/usr/bin/env python3
"""mailbot against a peer: django-helpdesk's `get_email` and mailbot's IMAP poller
drain the same mails from the same private Dovecot mailbox, in one run.

    python bench/peer.py [--n 500] [--repeat 3] [--db sqlite|pg|URL] [--cpus 0,1] [--cache /tmp/mailbot-peer-venv] [--json]

Adapted from ../shared/peer/run_peer_bench.sh. The peer, django-helpdesk
(`django-helpdesk>=2,<3`, as the script installs; 2.6.1 when measured), lives in
its own venv under `--cache` (created once, reused afterwards; needs PyPI the
first time) with a minimal Django project on SQLite, outgoing mail to Django's
in-memory backend. A private Dovecot (tests/dovecot.py, 127.0.0.1 only) is filled
with N generated complaint mails (bench/gen_mails.generate_bytes) by MULTIAPPEND;

- peer: a fresh helpdesk database with one IMAP queue on that mailbox, then
  `manage.py get_email` (a subprocess) until it returns; the rate is reported
  gross (N / wall time) and net of its start-up (the wall time of the same
  command on an empty mailbox is subtracted: Django's start, and its IMAP
  connection, LOGIN, SELECT and SEARCH);
- mailbot: the mailbox refilled with the same mails, then a new
  `ImapPoller(app, cfg)` calls `poll_once()` until the INBOX is empty, on a
  fresh database (SQLite by default) — every mail stored, parsed, routed into
  a case with acknowledgement and agent notification queued, committed, and
  only then \\Seen + MOVE to Processed (commit before the mailbox is touched).
  Reported the same way: gross, and net of its start-up, the same thing on an
  empty mailbox (a new poller's `poll_once()`: connection, LOGIN, the
  Processed and Quarantine folders created, SELECT, SEARCH; the drain then
  creates the folders again, as the mailbox is emptied of them in between).

The ratio compares the two net rates (`ratio`); `ratio_mailbot_gross` compares
mailbot's gross rate with the peer's net one, the figure most favourable to the
peer (until 2026-12-04 the only ratio printed).

Also printed: the CPU time per mail of each side (medians; the peer's net of
its empty run, from the children's rusage; mailbot's daemon + analysis workers,
from /proc; Dovecot's own CPU not counted on either side). Both sides are
CPU-bound, so this ratio moves much less with the machine's speed than the
rates do; `--json` adds `mailbot_cpu_ms_per_mail`, `peer_cpu_ms_per_mail` and
`cpu_ratio`. And how busy the CPUs were while mailbot drained
(`mailbot_cpus_busy`, from /proc/stat, everything on them counted): what is
left of them is what better parallelism could still win.

Both sides are checked: N tickets / N inbound rows, nothing left in the INBOX.
The two sides take turns `--repeat` times (default 3), each starting after an
`os.sync()` (so neither pays for writing back the other's files), and the
medians are compared: on a shared machine one run of either side can be off by a third
(the peer's rate also follows the disk's fsync latency: it commits 5-6 times a mail).
Dovecot is stopped by its process group when done.

`--cpus` runs everything (this process, Dovecot, the peer's commands and
mailbot's analysis workers, which inherit the affinity mask) on the CPUs given,
e.g. `--cpus 0` on one: the peer is one process and uses one CPU whatever the
machine has, while mailbot starts a worker per usable CPU beyond the first, so
the ratio grows with the CPUs (bench/README.md has it for one and two).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _common import (
    bench_app,
    cpu_ticks,
    database,
    db_label,
    machine,
    mailbot_cpu_seconds,
    scratch_dir,
    start_like_the_daemon,
)
from gen_mails import generate_bytes
from sqlalchemy import func, select

from mailbot.channels.imap import ImapPoller, Timings
from mailbot.config import ImapConfig
from mailbot.ingest import analysis
from mailbot.models import Inbound
from tests.dovecot import Dovecot

PEER_SPEC = "django-helpdesk>=2,<3"  # as ../shared/peer/run_peer_bench.sh installs it
USER = "support@kalra-plus.com"  # a brand address of the shipped config; the peer's queue address too

MANAGE_PY = '''\
#!/usr/bin/env python
import os, sys
if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peersite.settings")
    from django.core.management import execute_from_command_line
    execute_from_command_line(sys.argv)
'''

SETTINGS_PY = '''\
"""Minimal Django project hosting django-helpdesk for the ingestion benchmark (from run_peer_bench.sh)."""
import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent
SECRET_KEY = "peer-bench-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
SITE_ID = 1
INSTALLED_APPS = [
    "django.contrib.admin", "django.contrib.auth", "django.contrib.contenttypes",
    "django.contrib.sessions", "django.contrib.messages", "django.contrib.staticfiles",
    "django.contrib.sites", "django.contrib.humanize", "rest_framework", "helpdesk",
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "peersite.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [], "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.debug",
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {"default": {"ENGINE": "django.db.backends.sqlite3",
                         "NAME": os.environ.get("PEER_DB", str(BASE_DIR / "db.sqlite3"))}}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
LANGUAGE_CODE = "fr-fr"
TIME_ZONE = "Europe/Paris"
USE_I18N = True
USE_TZ = True
STATIC_URL = "/static/"
MEDIA_ROOT = os.environ.get("PEER_MEDIA", str(BASE_DIR / "media"))
MEDIA_URL = "/media/"
LOGIN_URL = "/login/"
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"  # no network I/O measured
DEFAULT_FROM_EMAIL = "support@kalra-plus.com"
HELPDESK_TEAMS_MODE_ENABLED = False
HELPDESK_DEFAULT_SETTINGS = {"use_email_as_submitter": True, "email_on_ticket_assign": True,
                             "email_on_ticket_change": True, "login_view_ticketlist": True,
                             "tickets_per_page": 25}
LOGGING = {"version": 1, "disable_existing_loggers": False,
           "handlers": {"console": {"class": "logging.StreamHandler"}},
           "root": {"handlers": ["console"], "level": "WARNING"}}
'''

URLS_PY = '''\
from django.contrib import admin
from django.urls import include, path
urlpatterns = [path("admin/", admin.site.urls), path("", include("helpdesk.urls", namespace="helpdesk"))]
'''

PEER_DB_PY = '''\
"""reset: a fresh DB (copy of a migrated template) with one IMAP queue; count: tickets as JSON."""
import json, os, shutil, sys
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "peersite.settings")
import django
from django.conf import settings

if sys.argv[1] == "reset":
    db = settings.DATABASES["default"]["NAME"]
    tmpl = os.path.join(os.path.dirname(os.path.abspath(__file__)), "db.template.sqlite3")
    if not os.path.exists(tmpl):
        if os.path.exists(db):
            os.unlink(db)
        django.setup()
        from django.core.management import call_command
        call_command("migrate", verbosity=0)
        from django.db import connections
        connections.close_all()
        shutil.copyfile(db, tmpl)
    else:
        shutil.copyfile(tmpl, db)
        django.setup()
    shutil.rmtree(settings.MEDIA_ROOT, ignore_errors=True)
    os.makedirs(settings.MEDIA_ROOT, exist_ok=True)
    from helpdesk.models import Queue
    Queue.objects.all().delete()
    Queue.objects.create(
        title="Support", slug="support", email_address=os.environ["PEER_IMAP_USER"],
        allow_email_submission=True, email_box_type="imap", email_box_host="127.0.0.1",
        email_box_port=int(os.environ["PEER_IMAP_PORT"]), email_box_ssl=False,
        email_box_user=os.environ["PEER_IMAP_USER"], email_box_pass=os.environ["PEER_IMAP_PASSWORD"],
        email_box_imap_folder="INBOX", email_box_interval=0, logging_type="none",
    )
elif sys.argv[1] == "count":
    django.setup()
    from helpdesk.models import FollowUp, FollowUpAttachment, Ticket
    print(json.dumps({"tickets": Ticket.objects.count(), "followups": FollowUp.objects.count(),
                      "attachments": FollowUpAttachment.objects.count()}))
'''


def log(msg: str) -> None:
    print(f"[peer] {msg}", file=sys.stderr, flush=True)


def ensure_peer(cache: Path) -> tuple[Path, Path, str]:
    """The peer's venv (created once) and Django site; returns (python, site dir, version)."""
    venv = cache / "venv"
    vpy = venv / "bin" / "python"
    if not vpy.exists():
        log(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    if subprocess.run([str(vpy), "-c", "import helpdesk"], capture_output=True).returncode != 0:
        log(f"installing {PEER_SPEC} from PyPI (once)")
        subprocess.run([str(vpy), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=True)
        subprocess.run([str(vpy), "-m", "pip", "install", "-q", PEER_SPEC], check=True)
    site = cache / "site"
    (site / "peersite").mkdir(parents=True, exist_ok=True)
    files = {site / "manage.py": MANAGE_PY, site / "peer_db.py": PEER_DB_PY,
             site / "peersite" / "__init__.py": "", site / "peersite" / "settings.py": SETTINGS_PY,
             site / "peersite" / "urls.py": URLS_PY}
    for path, text in files.items():
        if not path.exists() or path.read_text() != text:
            path.write_text(text)
            (site / "db.template.sqlite3").unlink(missing_ok=True)  # settings changed: migrate again
    version = subprocess.run(
        [str(vpy), "-c", "import importlib.metadata as m, django, sys; "
         "print('django-helpdesk', m.version('django-helpdesk'), '/ Django', django.get_version(), "
         "'/ Python', sys.version.split()[0])"], capture_output=True, text=True, check=True).stdout.strip()
    return vpy, site, version


def run_peer(vpy: Path, site: Path, d: Dovecot, raws: list[bytes], workdir: Path) -> dict:
    env = {**os.environ, "PEER_DB": str(workdir / "peer.sqlite3"), "PEER_MEDIA": str(workdir / "peer-media"),
           "PEER_IMAP_PORT": str(d.port), "PEER_IMAP_USER": USER, "PEER_IMAP_PASSWORD": d.users[USER],
           "PYTHONDONTWRITEBYTECODE": "1"}
    env.pop("PYTHONPATH", None)

    def sh(*args: str) -> subprocess.CompletedProcess:
        out = subprocess.run([str(vpy), *args], cwd=site, env=env, capture_output=True, text=True, timeout=3600)
        if out.returncode != 0:
            raise SystemExit(f"peer {' '.join(args)} failed ({out.returncode}):\n{out.stderr[-3000:]}")
        return out

    # start-up cost: the same command on an empty mailbox
    d.empty_mailbox(USER)
    sh("peer_db.py", "reset")
    t0, c0 = time.perf_counter(), _children_cpu()
    sh("manage.py", "get_email")
    empty_s, empty_cpu = time.perf_counter() - t0, _children_cpu() - c0

    d.empty_mailbox(USER)
    d.append_many(USER, raws)
    sh("peer_db.py", "reset")
    os.sync()  # start with no dirty pages of the other side's run being written back
    t0, c0 = time.perf_counter(), _children_cpu()
    out = sh("manage.py", "get_email")
    wall, cpu = time.perf_counter() - t0, _children_cpu() - c0
    counts = json.loads(sh("peer_db.py", "count").stdout.strip().splitlines()[-1])
    left = len(d.uids(USER))
    errors = sum(1 for line in (out.stdout + out.stderr).splitlines()
                 if any(w in line.lower() for w in ("error", "exception", "traceback")))
    return {"wall_s": wall, "startup_s": empty_s, "tickets": counts["tickets"], "left": left,
            "error_lines": errors, "per_s": len(raws) / wall, "net_per_s": len(raws) / max(wall - empty_s, 1e-9),
            "cpu_ms_per_mail": (cpu - empty_cpu) / len(raws) * 1000}


def _children_cpu() -> float:
    """User + system CPU of the waited-for children so far (the peer's `manage.py` runs)."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_mailbot(d: Dovecot, raws: list[bytes], db: str, workdir: Path, batch: int, workers: int) -> dict:
    d.empty_mailbox(USER)
    pw_file = d.write_password_file(USER, workdir / "imap.pw")
    cfg = ImapConfig(host=d.host, port=d.port, tls=False, username=USER, password_file=pw_file,
                     batch_size=batch)
    with database(db, str(workdir)) as url:
        app = bench_app(url, str(workdir), limits={"ack_limit": 100_000, "first_contact_acks": 100_000}, ingest={"workers": workers})
        start_like_the_daemon(app)
        # start-up cost, as for the peer: a poll of the empty mailbox by a new poller (connect,
        # LOGIN, Processed/Quarantine created, SELECT, SEARCH); the drain below starts from scratch too
        probe = ImapPoller(app, cfg, Timings())
        t0 = time.perf_counter()
        probe.poll_once()
        empty_s = time.perf_counter() - t0
        probe.close()
        d.empty_mailbox(USER)  # (its folders too: the drain creates them again)
        d.append_many(USER, raws)
        poller = ImapPoller(app, cfg, Timings())
        os.sync()  # as for the peer: no dirty pages of the other side's run in the way
        t0, cpu0, ticks0 = time.perf_counter(), mailbot_cpu_seconds(), cpu_ticks()
        handled = 0
        while n := poller.poll_once():
            handled += n
        wall = time.perf_counter() - t0
        cpu = sum(mailbot_cpu_seconds().values()) - sum(cpu0.values())
        busy, total = (b - a for a, b in zip(ticks0, cpu_ticks(), strict=True))
        poller.close()
        with app.engine.connect() as conn:
            recorded = conn.execute(select(func.count()).select_from(Inbound.__table__)).scalar_one()
        app.close()
    left = len(d.uids(USER))
    return {"wall_s": wall, "startup_s": empty_s, "handled": handled, "recorded": recorded, "left": left,
            "per_s": len(raws) / wall, "net_per_s": len(raws) / max(wall - empty_s, 1e-9),
            "processed": d.folder_count(USER, cfg.processed_folder), "cpu_ms_per_mail": cpu / len(raws) * 1000,
            "cpus_busy": busy / max(total, 1)}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--db", default="sqlite", help="mailbot's database: sqlite (default), pg or a URL")
    ap.add_argument("--batch", type=int, default=100, help="mailbot's IMAP batch_size")
    ap.add_argument("--workers", type=int, default=-1,
                    help="mailbot's [ingest] workers (-1, the default: one per usable CPU beyond the first)")
    ap.add_argument("--cpus", help="comma-separated CPU numbers to run everything on (default: all "
                                   "this process may use)")
    ap.add_argument("--repeat", type=int, default=3,
                    help="rounds, each the peer then mailbot; the medians are compared (default 3)")
    ap.add_argument("--cache", default="/tmp/mailbot-peer-venv", help="where the peer's venv and site live")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    if args.cpus:  # before anything starts: Dovecot, the peer and the workers inherit it
        os.sched_setaffinity(0, {int(c) for c in args.cpus.split(",")})

    vpy, site, version = ensure_peer(Path(args.cache))
    raws = generate_bytes(args.n)
    peers: list[dict] = []
    mbs: list[dict] = []
    with Dovecot(users={USER: "secret"}) as d:
        log(f"{version}; Dovecot on 127.0.0.1:{d.port} (pid {d.pid}); {args.n} mails, {args.repeat} rounds")
        for _ in range(max(1, args.repeat)):
            workdir = Path(scratch_dir(prefix="mailbot-bench-peer-"))
            peers.append(run_peer(vpy, site, d, raws, workdir))
            log(f"peer: {peers[-1]}")
            mbs.append(run_mailbot(d, raws, args.db, workdir, args.batch, args.workers))
            log(f"mailbot: {mbs[-1]}")
    problems = []
    for peer in peers:
        if peer["tickets"] != args.n or peer["left"]:
            problems.append(f"peer: {peer['tickets']} tickets, {peer['left']} left in INBOX")
    for mb in mbs:
        if mb["recorded"] != args.n or mb["left"] or mb["processed"] != args.n:
            problems.append(f"mailbot: {mb['recorded']} recorded, {mb['left']} left, {mb['processed']} in Processed")
    mb_rate = statistics.median(mb["net_per_s"] for mb in mbs)
    mb_gross = statistics.median(mb["per_s"] for mb in mbs)
    peer_rate = statistics.median(p["net_per_s"] for p in peers)
    mb_cpu = statistics.median(mb["cpu_ms_per_mail"] for mb in mbs)
    peer_cpu = statistics.median(p["cpu_ms_per_mail"] for p in peers)
    result = {
        "n": args.n, "db": db_label(args.db), "peer": version, "rounds": len(mbs), "cpus": analysis.usable_cpus(),
        "mailbot_per_s": round(mb_rate, 1), "peer_per_s": round(peer_rate, 1),
        "peer_gross_per_s": round(statistics.median(p["per_s"] for p in peers), 1),
        "peer_startup_s": round(statistics.median(p["startup_s"] for p in peers), 2),
        "mailbot_gross_per_s": round(mb_gross, 1),
        "mailbot_startup_s": round(statistics.median(mb["startup_s"] for mb in mbs), 3),
        "ratio": round(mb_rate / peer_rate, 2),
        "ratio_mailbot_gross": round(mb_gross / peer_rate, 2),
        "mailbot_cpu_ms_per_mail": round(mb_cpu, 3), "peer_cpu_ms_per_mail": round(peer_cpu, 3),
        "cpu_ratio": round(peer_cpu / mb_cpu, 2),
        "mailbot_cpus_busy": round(statistics.median(mb["cpus_busy"] for mb in mbs), 3),
        "rounds_mailbot_per_s": [round(mb["net_per_s"], 1) for mb in mbs],
        "rounds_peer_per_s": [round(p["net_per_s"], 1) for p in peers],
        "problems": problems,
    }
    if args.json:
        print(json.dumps(result))
    else:
        print(f"{args.n} mails drained from one Dovecot INBOX (127.0.0.1), {machine()}; "
              f"{len(mbs)} rounds (the peer, then mailbot), medians compared")
        print(f"  peer {version}: {result['peer_per_s']} mails/s net of its start-up "
              f"(rounds: {result['rounds_peer_per_s']}; gross {result['peer_gross_per_s']}, "
              f"start-up {result['peer_startup_s']:.2f} s)")
        print(f"  mailbot ImapPoller ({result['db']}, batch {args.batch}): {result['mailbot_per_s']} mails/s "
              f"net of its start-up (rounds: {result['rounds_mailbot_per_s']}; gross {result['mailbot_gross_per_s']}, "
              f"start-up {result['mailbot_startup_s']:.3f} s)")
        print(f"  ratio mailbot/peer (medians, both net of their start-up): {result['ratio']} "
              f"(mailbot gross against the peer net: {result['ratio_mailbot_gross']})")
        print(f"  CPU per mail (medians; Dovecot's not counted): peer {result['peer_cpu_ms_per_mail']} ms "
              f"net of its start-up, mailbot {result['mailbot_cpu_ms_per_mail']} ms (daemon + analysis "
              f"workers) -> {result['cpu_ratio']}x less")
        print(f"  while mailbot drained, its CPUs were {result['mailbot_cpus_busy']:.0%} busy "
              f"(everything on them, Dovecot included; /proc/stat)")
    if problems:
        raise SystemExit("incomplete drain: " + "; ".join(problems))


if __name__ == "__main__":
    main()
