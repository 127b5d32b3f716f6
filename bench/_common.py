"""Helpers shared by the benchmarks: a throwaway App on a fresh database.

`--db` everywhere accepts `sqlite` (default: a fresh file in a temp dir), `pg`
(a throwaway schema in the `test` database at 127.0.0.1:5432, created for the
run and dropped after it) or a full SQLAlchemy URL (used as is, not dropped).
Work directories (SQLite file, sent mail) are removed when the benchmark exits;
`MAILBOT_BENCH_KEEP=1` keeps them.
"""

from __future__ import annotations

import atexit
import email
import os
import shutil
import sys
import tempfile
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from mailbot.app import App  # noqa: E402
from mailbot.config import parse_config  # noqa: E402


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_ticks() -> tuple[int, int]:
    """(busy, total) clock ticks so far of the CPUs this process may run on (Linux
    /proc/stat): busy is user, nice, system, irq and softirq time; total adds idle,
    iowait and steal. Two readings give how busy those CPUs were in between."""
    usable = {f"cpu{n}" for n in os.sched_getaffinity(0)}
    busy = total = 0
    for line in Path("/proc/stat").read_text().splitlines():
        name, *values = line.split()
        if name in usable:
            user, nice, system, idle, iowait, irq, softirq, steal = map(int, values[:8])
            busy += user + nice + system + irq + softirq
            total += user + nice + system + idle + iowait + irq + softirq + steal
    return busy, total


def mailbot_cpu_seconds() -> dict[str, float]:
    """CPU time so far of this process (the daemon's part) and of the analysis workers."""
    from mailbot.ingest import analysis

    workers = [pid for pool in analysis._POOL.values() for pid in pool._processes]  # noqa: SLF001
    return {"daemon": cpu_seconds(os.getpid()), "workers": sum(map(cpu_seconds, workers))}


def start_like_the_daemon(app: App) -> None:
    """What `mailbot run` does before its first mail (mailbot.ops.daemon.Daemon.serve): the
    analysis workers started, each brand's calendar built, every template compiled."""
    from mailbot.ingest import analysis
    from mailbot.outgoing import templating
    from mailbot.outgoing.templating import Renderer

    analysis.warm_up(app.config)
    app.warm_up()
    app.derived[Renderer] = templating.compiled(app.config)


def scratch_dir(prefix: str = "mailbot-bench-") -> str:
    """A temporary directory, removed when the benchmark exits (a 10,000-mail drain
    leaves ~180 MB) unless MAILBOT_BENCH_KEEP is set."""
    path = tempfile.mkdtemp(prefix=prefix)
    if not os.environ.get("MAILBOT_BENCH_KEEP"):
        atexit.register(shutil.rmtree, path, True)
    return path


def bench_config(db_url: str | None = None, workdir: str | None = None, **over: object) -> dict:
    """The shipped config as a dict, on `db_url` (SQLite in workdir by default)."""
    work = Path(workdir or scratch_dir())
    data = tomllib.loads((ROOT / "config.toml").read_text())
    data["templates_dir"] = str(ROOT / "templates")
    data["database"] = {"url": db_url or f"sqlite:///{work}/bench.db"}
    data["outbound"] = {"transport": "maildir", "path": str(work / "sent")}
    data["security"] = {"secret": "bench-secret-0123456789"}
    data["limits"] = {"ack_limit": 1000, "first_contact_acks": 100_000}
    data.update(over)
    return data


def bench_app(db_url: str | None = None, workdir: str | None = None, **over: object) -> App:
    """The shipped config on a fresh database (SQLite in a temp dir by default)."""
    work = Path(workdir or scratch_dir())
    data = bench_config(db_url, str(work), **over)
    return App.open(parse_config(data, str(work / "config.toml")), upgrade=True)


def db_label(db: str | None) -> str:
    if db in (None, "", "sqlite"):
        return "sqlite"
    if db == "pg":
        return "postgresql"
    return db.split(":")[0].split("+")[0]


@contextmanager
def database(db: str | None, workdir: str) -> Iterator[str]:
    """A database URL for one benchmark run (see the module docstring)."""
    if db in (None, "", "sqlite"):
        yield f"sqlite:///{workdir}/bench.db"
        return
    if db != "pg":
        yield db
        return
    from tests.pg import throwaway_schema

    with throwaway_schema("bench") as url:
        yield url


def rss_kb() -> tuple[int, int]:
    """(current VmRSS, peak VmHWM) of this process, in kB."""
    cur = peak = 0
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                cur = int(line.split()[1])
            elif line.startswith("VmHWM:"):
                peak = int(line.split()[1])
    return cur, peak


def machine() -> str:
    import os
    import platform

    from mailbot.ingest.analysis import usable_cpus

    usable = usable_cpus()
    cores = f"{os.cpu_count()} cores" + (f" ({usable} usable)" if usable != os.cpu_count() else "")
    return f"{cores}, Python {platform.python_version()}"


def stdlib_handle(raw: bytes) -> None:
    """The baseline: the least work any ingest must do — parse, find the body, decode every attachment."""
    msg = email.message_from_bytes(raw, policy=policy.default)
    body = msg.get_body(preferencelist=("plain", "html"))
    if body is not None:
        body.get_content()
    for att in msg.iter_attachments():
        att.get_content()
